"""What a clinic's mammograms have and RSNA's do not: Pixel Padding, FOR PROCESSING images,
and a header laterality the image content contradicts."""

from __future__ import annotations

import json
import os

import numpy as np
import pydicom
import pytest

from dali_pipelines.loader import DicomLoader
from decode import syntax as TS
from decode.chain import preprocess
from decode.decoding import decode_file
from decode.dicom import read_dicom
from decode.errors import SkippedDicomError, UnsupportedDicomError
from decode.intent import apply_intent_policy
from decode.laterality import LateralityCheck, check_laterality, header_chest_wall_side
from decode.meta import DicomMeta
from decode.padding import padding_mask
from decode.testing.synth import write_dicom
from decode.voi import apply_voi
from tests.helpers import pydicom_voi_scaled
from training.cli import main
from training.config import TrainConfig

H, W = 160, 120


def _meta(**kw) -> DicomMeta:
    base = dict(
        path="x.dcm",
        rows=H,
        columns=W,
        bits_allocated=16,
        bits_stored=12,
        pixel_representation=0,
        photometric="MONOCHROME2",
        transfer_syntax=TS.EXPLICIT_LE,
        window_centers=(2048.0,),
        window_widths=(4096.0,),
    )
    return DicomMeta(**{**base, **kw})


def padded_scene(photometric: str, pad_value: int):
    """Stored values: a breast (chest wall left) in an exposed field of air, the rest padding.

    After VOI: breast ≈ 0.75, air ≈ 0.3, padding 0 or 1 (MONOCHROME1 padded with the
    maximum turns black, padded with 0 turns white). Padding is 75% of the frame.
    """
    rng = np.random.default_rng(0)
    img = np.full((H, W), 0.3, np.float32) + rng.normal(0, 0.01, (H, W)).astype(np.float32)
    yy, xx = np.mgrid[0:H, 0:W]
    breast = ((yy - 80) / 30.0) ** 2 + (xx / 30.0) ** 2 < 1
    img[breast] = 0.75 + rng.normal(0, 0.03, int(breast.sum()))
    stored = np.round(np.clip(img, 0, 1) * 4095).astype(np.uint16)
    if photometric == "MONOCHROME1":
        stored = (4095 - stored).astype(np.uint16)
    pad = np.ones((H, W), bool)
    pad[40:120, 0:60] = False
    stored[pad] = pad_value
    return stored, breast, pad


BREAST_BOX = (51, 110, 0, 30)  # the breast's extent in padded_scene


@pytest.mark.parametrize(
    "photometric,pad_value",
    [("MONOCHROME1", 4095), ("MONOCHROME1", 0), ("MONOCHROME2", 0), ("MONOCHROME2", 4095)],
    ids=["MONO1_MAX", "MONO1_ZERO", "MONO2_ZERO", "MONO2_MAX"],
)
def test_padding_is_background_for_box_and_threshold(photometric, pad_value):
    stored, _breast, _pad = padded_scene(photometric, pad_value)
    meta = _meta(photometric=photometric, pixel_padding=(pad_value, pad_value))
    box = preprocess(stored, meta, stage="crop", flip=False).box
    y0, y1, x0, x1 = BREAST_BOX
    assert abs(box[0] - y0) <= 2 and abs(box[1] - y1) <= 2 and box[2] == x0 and abs(box[3] - x1) <= 2, box
    # the same frame without the padding declared: the box takes in the air or the padding
    blind = preprocess(stored, meta.replace(pixel_padding=None), stage="crop", flip=False).box
    assert (blind[1] - blind[0]) * (blind[3] - blind[2]) > 2 * (box[1] - box[0]) * (box[3] - box[2]), blind


def test_padded_pixels_are_zero_in_the_crop_output_and_untouched_by_voi():
    stored, breast, _pad = padded_scene("MONOCHROME1", 0)
    stored[60:100, 10] = 0  # a padded (dead) column inside the breast box
    meta = _meta(photometric="MONOCHROME1", pixel_padding=(0, 0))
    res = preprocess(stored, meta, stage="crop", flip=False)
    y0, _, x0, _ = res.box
    assert np.all(res.image[60 - y0 : 100 - y0, 10 - x0] == 0.0)
    assert res.image[80 - y0, 5 - x0] > 0.5  # tissue next to it is kept
    voi = preprocess(stored, meta, stage="voi").image  # the voi stage is pydicom's VOI, unchanged
    assert np.array_equal(voi, apply_voi(stored, meta)) and voi[70, 10] == 1.0


def test_padding_range_and_signed_values():
    raw = np.array([[0, 5, 10, 11, 4095]], np.uint16)
    assert padding_mask(raw, _meta(pixel_padding=None)) is None
    assert padding_mask(raw, _meta(pixel_padding=(5, 10))).tolist() == [[False, True, True, False, False]]
    assert padding_mask(raw, _meta(pixel_padding=(4095, 4095))).tolist() == [[False] * 4 + [True]]
    assert not padding_mask(raw, _meta(pixel_padding=(70000, 80000))).any()  # beyond uint16: nothing
    signed = np.array([[-32768, -1, 0, 7]], np.int16)
    m = _meta(pixel_representation=1, pixel_padding=(-32768, -32768))
    assert padding_mask(signed, m).tolist() == [[True, False, False, False]]
    assert padding_mask(signed, m.replace(pixel_padding=(-100000, 0))).tolist() == [[True, True, True, False]]


def _dicom(path, pixels, **extra) -> str:
    kw = {k: extra.pop(k) for k in ("photometric", "laterality", "transfer_syntax") if k in extra}
    write_dicom(str(path), pixels, bits_stored=12, window=([2048.0], [4096.0]), voi_function="LINEAR", **kw)
    ds = pydicom.dcmread(str(path))
    for k, v in extra.items():
        if isinstance(v, tuple):  # (VR, value): written with that VR
            ds.add_new(k, *v)
        elif k.startswith("PixelPadding"):  # VR "US or SS": as Pixel Representation says
            ds.add_new(k, "SS" if pixels.dtype.kind == "i" else "US", v)
        else:
            setattr(ds, k, v)
    ds.save_as(str(path))
    return str(path)


def test_padding_read_from_the_header(tmp_path):
    px = np.zeros((8, 6), np.uint16)
    meta = read_dicom(_dicom(tmp_path / "a.dcm", px, PixelPaddingValue=4095, PixelPaddingRangeLimit=4000)).meta
    assert meta.pixel_padding == (4000, 4095)  # the range's ends in either order
    meta = read_dicom(_dicom(tmp_path / "b.dcm", px, PixelPaddingValue=0)).meta
    assert meta.pixel_padding == (0, 0)
    meta = read_dicom(_dicom(tmp_path / "c.dcm", px, PixelPaddingRangeLimit=7)).meta
    assert meta.pixel_padding is None and any("without Pixel Padding Value" in n for n in meta.header_notes)
    signed = np.zeros((8, 6), np.int16)
    meta = read_dicom(_dicom(tmp_path / "d.dcm", signed, PixelPaddingValue=("US", 65535))).meta
    assert meta.pixel_padding == (-1, -1)  # written as US for signed data: the same bits, signed
    meta = read_dicom(_dicom(tmp_path / "e.dcm", px, PixelPaddingValue=None)).meta
    assert meta.pixel_padding is None and meta.header_notes == ()  # present but empty: absent


def test_padded_file_decodes_exactly_and_crops_to_the_breast(tmp_path):
    stored, _breast, _pad = padded_scene("MONOCHROME1", 4095)
    path = _dicom(tmp_path / "mono1.dcm", stored, photometric="MONOCHROME1", PixelPaddingValue=4095)
    dec = decode_file(path)
    assert np.array_equal(dec.pixels, pydicom.dcmread(path).pixel_array)
    assert float(np.abs(apply_voi(dec.pixels, dec.meta) - pydicom_voi_scaled(pydicom.dcmread(path))).max()) <= 1e-4
    box = preprocess(dec.pixels, dec.meta, stage="crop", flip=False).box
    assert box[1] - box[0] < 70 and box[3] - box[2] < 40, box


# --- FOR PROCESSING -------------------------------------------------------------------------------


def test_intent_policy():
    proc = _meta(presentation_intent="FOR PROCESSING")
    assert proc.for_processing and not _meta(presentation_intent="FOR PRESENTATION").for_processing
    assert "FOR PROCESSING" in apply_intent_policy(proc, "warn")
    with pytest.raises(SkippedDicomError, match="skipped"):
        apply_intent_policy(proc, "skip")
    with pytest.raises(UnsupportedDicomError, match=r"refused \(--for-processing error\)"):
        apply_intent_policy(proc, "error")
    for policy in ("warn", "skip", "error"):
        assert apply_intent_policy(_meta(presentation_intent="FOR PRESENTATION"), policy) is None
    with pytest.raises(ValueError, match="warn, skip, error"):
        apply_intent_policy(proc, "ignore")


@pytest.fixture
def intent_files(tmp_path):
    stored, _b, _p = padded_scene("MONOCHROME2", 0)
    folder = tmp_path / "in"
    folder.mkdir()
    proc = _dicom(folder / "proc.dcm", stored, PresentationIntentType="FOR PROCESSING")
    pres = _dicom(folder / "pres.dcm", stored, PresentationIntentType="FOR PRESENTATION")
    return proc, pres


@pytest.mark.parametrize("policy", ["warn", "skip", "error"])
def test_decode_cli_for_processing(policy, intent_files, tmp_path, capsys):
    proc, pres = intent_files
    out, summary = tmp_path / "out", tmp_path / "s.json"
    rc = main(["decode", proc, pres, "--out", str(out), "--workers", "1", "--for-processing", policy])
    rc_summary = main(
        ["decode", proc, pres, "--out", str(out), "--workers", "1", "--for-processing", policy]
        + ["--summary", str(summary)]
    )
    err = capsys.readouterr().err
    doc = json.loads(summary.read_text())
    lines = [ln for ln in err.splitlines() if "proc.dcm" in ln]
    assert len(lines) == 2 and lines[0] == lines[1]  # one line per run
    assert not [ln for ln in err.splitlines() if "pres.dcm" in ln]
    if policy == "warn":
        assert rc == rc_summary == 0 and lines[0].startswith(f"warning: {proc}: FOR PROCESSING image")
        row = next(r for r in doc["results"] if r["path"] == proc)
        assert row["presentation_intent"] == "FOR PROCESSING" and os.path.exists(out / "proc.npy")
        assert "2 ok, 0 failed, 0 unaccounted" in err
    elif policy == "skip":
        assert rc == rc_summary == 0 and lines[0].startswith(f"skipped: {proc}: FOR PROCESSING image")
        assert doc["skipped"] == 1 and doc["ok"] == 1 and doc["failed"] == 0 and doc["unaccounted"] == 0
        assert not os.path.exists(out / "proc.npy")
        assert "1 ok, 0 failed, 0 unaccounted, 1 skipped" in err
    else:
        assert rc == rc_summary == 1 and lines[0].startswith(f"error: {proc}: FOR PROCESSING image")
        assert doc["failed"] == 1 and doc["errors"][0]["kind"] == "unsupported"


def test_loader_records_for_processing(intent_files):
    proc, pres = intent_files
    for policy, stage in (("warn", None), ("skip", "skipped"), ("error", "decode")):
        loader = DicomLoader([proc, pres], batch_size=2, size=(32, 24), device="cpu", workers=0, for_processing=policy)
        batches = list(loader)
        if stage is None:
            assert batches[0]["image"].shape[0] == 2 and loader.failures == []
            assert [(n["index"], "FOR PROCESSING" in n["note"]) for n in loader.notes] == [(0, True)]
        else:
            assert batches[0]["image"].shape[0] == 1 and loader.notes == []
            assert [(f["index"], f["stage"]) for f in loader.failures] == [(0, stage)]
            assert "FOR PROCESSING" in loader.failures[0]["reason"]
    with pytest.raises(ValueError, match="warn, skip, error"):
        DicomLoader([proc], size=(32, 24), device="cpu", for_processing="maybe")


# --- laterality -----------------------------------------------------------------------------------


def test_laterality_check_rules():
    assert header_chest_wall_side(_meta(laterality="L")) == "left"
    assert header_chest_wall_side(_meta(laterality="R")) == "right"
    assert header_chest_wall_side(_meta(laterality="B")) == ""
    assert header_chest_wall_side(_meta(laterality="L", patient_orientation=("P", "FL"))) == "right"
    agree = check_laterality(_meta(laterality="R"), "right")
    assert agree.agrees is True and agree.note() is None and agree.laterality == "R" and agree.side == "right"
    clash = check_laterality(_meta(laterality="L"), "right")
    assert clash.agrees is False and clash.side == "right" and clash.laterality == "R"
    assert "says L" in clash.note() and "using the content" in clash.note()
    trust = check_laterality(_meta(laterality="L"), "right", "header")
    assert trust.side == "left" and trust.laterality == "L" and "using the header" in trust.note()
    unknown = check_laterality(_meta(laterality=""), "right", "header")
    assert unknown.agrees is None and unknown.side == "right" and unknown.laterality == "R" and unknown.note() is None
    mirrored = check_laterality(_meta(laterality="L", patient_orientation=("P", "FL")), "right")
    assert mirrored.agrees is True  # Patient Orientation says the chest wall is on the right
    with pytest.raises(ValueError, match="left, right"):
        LateralityCheck("L", "left", "middle")


def _breast_on_right(tmp_path, header: str) -> str:
    stored, _b, _p = padded_scene("MONOCHROME2", 0)
    return _dicom(tmp_path / f"right_{header}.dcm", stored[:, ::-1].copy(), laterality=header)


def test_chain_flips_by_the_chosen_source(tmp_path):
    dec = decode_file(_breast_on_right(tmp_path, "L"))
    by_content = preprocess(dec.pixels, dec.meta, stage="crop")
    assert by_content.flipped and by_content.laterality.agrees is False and len(by_content.notes) == 1
    by_header = preprocess(dec.pixels, dec.meta, stage="crop", laterality="header")
    assert not by_header.flipped and "using the header" in by_header.notes[0]
    assert np.array_equal(by_content.image, by_header.image[:, ::-1])
    right = decode_file(_breast_on_right(tmp_path, "R"))
    ok = preprocess(right.pixels, right.meta, stage="crop", laterality="header")
    assert ok.flipped and ok.notes == [] and ok.laterality.agrees


def test_decode_cli_reports_laterality_disagreement(tmp_path, capsys):
    path = _breast_on_right(tmp_path, "L")
    summary = tmp_path / "s.json"
    rc = main(
        ["decode", path, "--out", str(tmp_path / "o"), "--stage", "crop", "--workers", "1", "--summary", str(summary)]
    )
    err = capsys.readouterr().err
    row = json.loads(summary.read_text())["results"][0]
    assert rc == 0 and row["flipped"] is True
    assert row["laterality"]["header"] == "L" and row["laterality"]["agrees"] is False
    assert row["laterality"]["laterality"] == "R" and row["laterality"]["source"] == "content"
    assert f"warning: {path}: laterality: the header says L" in err
    rc = main(
        ["decode", path, "--out", str(tmp_path / "o"), "--stage", "crop", "--laterality", "header"]
        + ["--workers", "1", "--summary", str(summary)]
    )
    row = json.loads(summary.read_text())["results"][0]
    assert rc == 0 and row["flipped"] is False and row["laterality"]["laterality"] == "L"


def test_loader_notes_laterality_disagreement(tmp_path):
    path = _breast_on_right(tmp_path, "L")
    loader = DicomLoader([path], batch_size=1, size=(32, 24), device="cpu", workers=0)
    batch = next(iter(loader))
    assert (
        batch["notes"] == loader.notes and len(loader.notes) == 1 and loader.notes[0]["note"].startswith("laterality:")
    )


def test_train_config_validates_the_new_options():
    assert TrainConfig(for_processing="skip", laterality="header").laterality == "header"
    with pytest.raises(ValueError, match="for_processing 'x' is not one of: warn, skip, error"):
        TrainConfig(for_processing="x")
    with pytest.raises(ValueError, match="laterality 'x' is not one of: content, header"):
        TrainConfig(laterality="x")


# --- the same rules on the GPU engines (their CPU variants here) ----------------------------------


@pytest.mark.parametrize("engine", ["nvimgcodec", "dali"])
def test_gpu_engines_apply_padding_laterality_and_for_processing(engine, intent_files, tmp_path):
    pytest.importorskip("nvidia.nvimgcodec" if engine == "nvimgcodec" else "nvidia.dali")
    proc, pres = intent_files
    stored, _b, _p = padded_scene("MONOCHROME1", 4095)
    padded = _dicom(tmp_path / "padded.dcm", stored, photometric="MONOCHROME1", PixelPaddingValue=4095)
    clash = _breast_on_right(tmp_path, "L")
    paths = [proc, pres, padded, clash]
    common = dict(batch_size=4, size=(32, 24), device="cpu")
    for policy in ("warn", "skip"):
        cpu = DicomLoader(paths, engine="cpu", workers=0, for_processing=policy, decode_scale="full", **common)
        want = list(cpu)
        with DicomLoader(paths, engine=engine, workers=1, for_processing=policy, **common) as gpu:
            got = list(gpu)
        assert gpu.engine_name == engine
        assert [b["index"].tolist() for b in got] == [b["index"].tolist() for b in want]
        np.testing.assert_allclose(got[0]["image"].numpy(), want[0]["image"].numpy(), atol=1e-6, rtol=0)
        assert [(f["index"], f["stage"]) for f in gpu.failures] == [(f["index"], f["stage"]) for f in cpu.failures]
        noted = sorted((n["index"], n["note"].split(":")[0]) for n in gpu.notes)
        assert noted == sorted((n["index"], n["note"].split(":")[0]) for n in cpu.notes), gpu.notes
        assert any(i == 3 and n.startswith("laterality") for i, n in noted)
        assert (policy == "skip") == ((0, "skipped") in [(f["index"], f["stage"]) for f in gpu.failures])
