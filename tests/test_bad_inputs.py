"""Bad inputs: each gives one clear, typed, one-line error naming the file; the rest complete."""
from __future__ import annotations

import os

import numpy as np
import pydicom
import pytest
from pydicom.encaps import encapsulate, generate_frames

from decode import syntax as TS
from decode.decoding import decode_file
from decode.errors import CorruptDicomError, DicomError, UnreadableDicomError, UnsupportedDicomError
from decode.synth import write_dicom
from training.cli import main


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    rng = np.random.default_rng(0)
    px = rng.integers(0, 4096, (64, 48)).astype(np.uint16)
    good_j = write_dicom(str(d / "good_j2k.dcm"), px, transfer_syntax=TS.JPEG2000_LOSSLESS)
    good_l = write_dicom(str(d / "good_jll.dcm"), px, transfer_syntax=TS.JPEG_LOSSLESS_SV1)
    raw = open(good_j, "rb").read()
    cases = {}

    def put(name, data):
        p = str(d / f"{name}.dcm")
        with open(p, "wb") as f:
            f.write(data)
        cases[name] = p

    put("empty", b"")
    put("not_dicom", b"hello, this is a text file, not a mammogram\n" * 20)
    put("truncated_header", raw[:300])
    put("truncated_codestream", raw[: len(raw) * 2 // 3])
    ds = pydicom.dcmread(good_j)
    cs = next(generate_frames(ds.PixelData, number_of_frames=1))
    ds.PixelData = encapsulate([b"\xff\x4f\xff\x51" + rng.integers(0, 256, 300, dtype=np.uint8).tobytes()])
    ds.save_as(str(d / "garbage_codestream.dcm"))
    cases["garbage_codestream"] = str(d / "garbage_codestream.dcm")
    ds = pydicom.dcmread(good_j)
    del ds.PixelData
    ds.save_as(str(d / "no_pixel_data.dcm"))
    cases["no_pixel_data"] = str(d / "no_pixel_data.dcm")
    ds = pydicom.dcmread(good_j)
    ds.Rows, ds.Columns = 65535, 65535
    ds.save_as(str(d / "absurd_dims.dcm"))
    cases["absurd_dims"] = str(d / "absurd_dims.dcm")
    ds = pydicom.dcmread(good_l)
    ds.Rows = 80
    ds.save_as(str(d / "dims_disagree.dcm"))
    cases["dims_disagree"] = str(d / "dims_disagree.dcm")
    ds = pydicom.dcmread(good_j)
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.save_as(str(d / "colour.dcm"))
    cases["colour"] = str(d / "colour.dcm")
    os.mkdir(d / "a_directory.dcm")
    cases["directory"] = str(d / "a_directory.dcm")
    cases["missing"] = str(d / "does_not_exist.dcm")
    return {"good": [good_j, good_l], "bad": cases, "dir": str(d), "pixels": px}


EXPECTED = {
    "empty": UnreadableDicomError,
    "not_dicom": UnreadableDicomError,
    "truncated_header": UnreadableDicomError,
    "truncated_codestream": CorruptDicomError,
    "garbage_codestream": CorruptDicomError,
    "no_pixel_data": UnsupportedDicomError,
    "absurd_dims": UnsupportedDicomError,
    "dims_disagree": CorruptDicomError,
    "colour": UnsupportedDicomError,
    "directory": UnreadableDicomError,
    "missing": UnreadableDicomError,
}


@pytest.mark.parametrize("name", list(EXPECTED))
def test_bad_input_typed_one_line_error(name, corpus):
    path = corpus["bad"][name]
    with pytest.raises(DicomError) as info:
        decode_file(path)
    err = info.value
    assert isinstance(err, EXPECTED[name]), (type(err), str(err))
    assert err.path == path and str(err).startswith(path + ": ")
    assert "\n" not in str(err) and err.reason


def test_absurd_header_refused_before_allocation(corpus):
    with pytest.raises(UnsupportedDicomError, match="absurd dimensions 65535x65535"):
        decode_file(corpus["bad"]["absurd_dims"])


def test_good_files_still_exact(corpus):
    for p in corpus["good"]:
        assert np.array_equal(decode_file(p).pixels, corpus["pixels"])


def test_cli_decode_mixed_batch_reports_each_bad_file(corpus, tmp_path, capsys):
    bad = {k: v for k, v in corpus["bad"].items() if k != "directory"}  # a folder given is searched
    files = corpus["good"] + list(bad.values())
    rc = main(["decode", *files, "--out", str(tmp_path / "out"), "--workers", "2"])
    err = capsys.readouterr().err
    assert rc == 1
    for p in bad.values():
        assert f"error: {p}: " in err, p
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    assert len(lines) == len(bad)
    assert f"2 ok, {len(bad)} failed, 0 unaccounted" in err
    for p in corpus["good"]:
        stem = os.path.splitext(os.path.basename(p))[0]
        assert np.array_equal(np.load(tmp_path / "out" / f"{stem}.npy"), corpus["pixels"])


def test_errors_pickle_round_trip():
    import pickle

    e = CorruptDicomError("/x/y.dcm", "bad\nthing")
    e2 = pickle.loads(pickle.dumps(e))
    assert type(e2) is CorruptDicomError and e2.path == "/x/y.dcm" and e2.reason == "bad thing"
