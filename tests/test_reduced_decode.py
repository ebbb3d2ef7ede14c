"""Reduced-resolution JPEG 2000 / HTJ2K decode (decode.openjpeg) and the decode scale (decode.scale).

OpenJPEG's reduction is checked against two routes that do not go through
``decode_reduced``: the JPEG 2000 Part 1 reversible 5/3 wavelet (Annex F, written out
below in numpy: what ``opj_decompress -r r`` must return is the level-``r`` LL band plus
the DC level shift, clipped to the sample range), and glymur reading the same
codestream from an ordinary file.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from decode import syntax as TS
from decode.chain import preprocess
from decode.crop import breast_bbox, reduce_box
from decode.decoding import decode_file
from decode.dicom import read_dicom
from decode.errors import DicomError
from decode.openjpeg import J2kCodestream, bundled_openjpeg, codestream_path, decode_reduced, glymur_module
from decode.sample import read_sample
from decode.scale import (
    DECODE_SCALES,
    check_decode_scale,
    crop_fits,
    effective_scale,
    header_reduction,
    require_reduced_decoder,
    scale_name,
)
from decode.testing.synth import make_mammogram, to_stored, write_dicom

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# --- the reference: JPEG 2000 Part 1, Annex F, reversible 5/3 forward transform -----------------


def _fwd53(x: np.ndarray, axis: int) -> np.ndarray:
    """Low-pass half of one 1-D 5/3 lifting step along ``axis`` (origin 0, symmetric extension)."""
    x = np.moveaxis(x, axis, 0)
    n = x.shape[0]
    if n == 1:
        return np.moveaxis(x, 0, axis)
    even, odd = x[0::2], x[1::2]
    right = np.concatenate([even[1:], x[n - 2 : n - 1]]) if n % 2 == 0 else even[1:]
    d = odd - np.floor_divide(even[: len(odd)] + right, 2)
    left_d = np.concatenate([d[:1], d])[: len(even)]
    right_d = d if n % 2 == 0 else np.concatenate([d, d[-1:]])
    s = even + np.floor_divide(left_d + right_d + 2, 4)
    return np.moveaxis(s, 0, axis)


def reference_reduced(stored: np.ndarray, r: int, precision: int, signed: bool) -> np.ndarray:
    """What OpenJPEG must return at ``1/2^r``: LL_r (vertical then horizontal each level) + DC shift, clipped."""
    x = stored.astype(np.int64)
    shift = 0 if signed else 1 << (precision - 1)
    x = x - shift
    for _ in range(r):
        x = _fwd53(_fwd53(x, 0), 1)
    lo, hi = (-(1 << (precision - 1)), (1 << (precision - 1)) - 1) if signed else (0, (1 << precision) - 1)
    return np.clip(x + shift, lo, hi)


# --- files ---------------------------------------------------------------------------------------

#: name → (shape, dtype, bits, transfer syntax, codestream precision, photometric)
CASES = {
    "J2K_12_ODD": ((37, 53), np.uint16, 12, TS.JPEG2000_LOSSLESS, 12, "MONOCHROME2"),
    "J2K_16_EVEN": ((64, 48), np.uint16, 16, TS.JPEG2000_LOSSLESS, 16, "MONOCHROME2"),
    "J2K_14_MONO1": ((101, 77), np.uint16, 14, TS.JPEG2000_LOSSLESS, 14, "MONOCHROME1"),
    "J2K_8": ((40, 33), np.uint8, 8, TS.JPEG2000_LOSSLESS, 8, "MONOCHROME2"),
    "J2K_S12_SIGNED": ((45, 38), np.int16, 12, TS.JPEG2000_LOSSLESS, 12, "MONOCHROME2"),
    "HTJ2K_12": ((45, 61), np.uint16, 12, TS.HTJ2K_LOSSLESS, 16, "MONOCHROME2"),
}


def _values(shape, dtype, bits: int, seed: int) -> np.ndarray:
    """Random stored values with flat extremes (the LL band overshoots there: the clip is tested)."""
    rng = np.random.default_rng(seed)
    signed = np.dtype(dtype).kind == "i"
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    arr = rng.integers(lo, hi + 1, size=shape)
    arr[: shape[0] // 4] = lo
    arr[: shape[0] // 4, ::2] = hi
    return arr.astype(dtype)


@pytest.fixture(scope="module")
def case_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("reduced_cases")
    out = {}
    for i, (name, (shape, dtype, bits, ts, prec, phot)) in enumerate(CASES.items()):
        values = _values(shape, dtype, bits, seed=i)
        path = write_dicom(str(root / f"{name}.dcm"), values, transfer_syntax=ts, bits_stored=bits, photometric=phot)
        out[name] = (path, values, prec, np.dtype(dtype).kind == "i")
    return out


def _mammo(path, h, w, *, seed, ts=TS.JPEG2000_LOSSLESS, bits=12, photometric="MONOCHROME2", side="L", fn="LINEAR"):
    stored, (c, ww) = to_stored(make_mammogram(np.random.default_rng(seed), h, w, side=side), bits, photometric)
    return write_dicom(
        str(path),
        stored,
        transfer_syntax=ts,
        bits_stored=bits,
        photometric=photometric,
        window=([c], [ww]),
        voi_function=fn,
        laterality=side,
    )


def _clean_breast(h: int, w: int, seed: int, side: str) -> np.ndarray:
    """A uniform half-ellipse breast (0.6) on black: edges whose threshold crossing is unambiguous."""
    rng = np.random.default_rng(seed)
    yy = (np.arange(h)[:, None] - h * rng.uniform(0.45, 0.55)) / (h * rng.uniform(0.38, 0.46))
    xx = np.arange(w)[None, :] / (w * rng.uniform(0.5, 0.75))
    img = np.where(np.sqrt(xx**2 + yy**2) < 1.0, 0.6, 0.0)
    img = img[:, ::-1] if side == "R" else img
    return np.round(img * 4095).astype(np.uint16)


@pytest.fixture(scope="module")
def mammo_files(tmp_path_factory):
    """400×320 mammograms: JPEG 2000 (side L and R, 12/14-bit), HTJ2K, lossless JPEG."""
    root = tmp_path_factory.mktemp("reduced_mammo")
    return {
        "j2k_L": _mammo(root / "j2k_L.dcm", 400, 320, seed=3),
        "j2k_R_mono1": _mammo(
            root / "j2k_R.dcm", 400, 320, seed=4, side="R", bits=14, photometric="MONOCHROME1", fn="SIGMOID"
        ),
        "htj2k": _mammo(root / "htj2k.dcm", 400, 320, seed=5, ts=TS.HTJ2K_LOSSLESS),
        "ljpeg": _mammo(root / "ljpeg.dcm", 400, 320, seed=6, ts=TS.JPEG_LOSSLESS_SV1),
    }


# --- OpenJPEG's reduction is the standard's LL band --------------------------------------------


@pytest.mark.parametrize("name", list(CASES))
def test_reduced_decode_equals_the_5_3_ll_band(case_files, name):
    path, values, prec, signed = case_files[name]
    dfile = read_dicom(path)
    with J2kCodestream(dfile.codestream(), path) as j:
        levels = j.levels
        assert levels >= 1
        full = decode_reduced(dfile, 0, stream=j)
    assert np.array_equal(full, dfile.ds.pixel_array) and np.array_equal(full, values)
    for r in range(1, min(3, levels) + 1):
        got = decode_reduced(dfile, r)
        want = reference_reduced(values, r, prec, signed)
        rows, cols = values.shape
        assert got.shape == (-(-rows // 2**r), -(-cols // 2**r)) == want.shape
        assert got.dtype == values.dtype and got.flags.c_contiguous and got.flags.writeable
        assert np.array_equal(got.astype(np.int64), want), f"{name} at 1/{2**r}"


def test_reduced_decode_equals_glymur_reading_the_codestream_from_a_file(mammo_files, tmp_path):
    glymur = glymur_module()
    for key in ("j2k_L", "htj2k"):
        dfile = read_dicom(mammo_files[key])
        file = tmp_path / f"{key}.j2k"
        file.write_bytes(dfile.codestream())
        jp2 = glymur.Jp2k(str(file))
        for r in (1, 2, 3):
            assert np.array_equal(decode_reduced(dfile, r), jp2[:: 2**r, :: 2**r]), f"{key} at 1/{2**r}"


def test_levels_cap_the_reduction(tmp_path):
    import imagecodecs

    values = _values((60, 50), np.uint16, 12, seed=9)
    cs = imagecodecs.jpeg2k_encode(values, level=0, codecformat="J2K", reversible=True, bitspersample=12, resolutions=2)
    with J2kCodestream(cs) as j:
        assert j.levels == 1 and j.shape_at(1) == (30, 25) and j.shape_at(0) == (60, 50)
        assert np.array_equal(j.read(1).astype(np.int64), reference_reduced(values, 1, 12, False))
        with pytest.raises(ValueError, match=r"reduction 2 outside 0\.\.1"):
            j.read(2)


def test_lossless_jpeg_has_no_resolution_levels(mammo_files):
    with pytest.raises(DicomError, match="no resolution levels"):
        decode_reduced(read_dicom(mammo_files["ljpeg"]), 1)


def test_truncated_codestream_fails_with_the_file_named(tmp_path):
    import imagecodecs

    values = _values((64, 64), np.uint16, 12, seed=2)
    cs = imagecodecs.jpeg2k_encode(values, level=0, codecformat="J2K", reversible=True, bitspersample=12)
    for cut in (len(cs) // 2, len(cs) - 3):
        with pytest.raises(DicomError, match="cut.j2k: OpenJPEG could not decode at 1/2"):
            with J2kCodestream(cs[:cut], "cut.j2k") as j:
                j.read(1)
    with pytest.raises(DicomError, match="garbage.j2k: OpenJPEG cannot read the codestream header"):
        with J2kCodestream(b"\xff\x4f\xff\x51" + b"\x00" * 10, "garbage.j2k"):
            pass


def test_codestream_is_an_in_memory_file_released_on_exit():
    data = bytes(range(256)) * 1000
    with codestream_path(data) as name:
        with open(name, "rb") as f:
            assert f.read() == data
        if name.startswith("/proc/self/fd/"):
            fd = int(name.rsplit("/", 1)[1])
            assert os.readlink(name).startswith("/memfd:")
    if name.startswith("/proc/self/fd/"):
        with pytest.raises(OSError):
            os.fstat(fd)
    else:
        assert not os.path.exists(name)


def test_glymur_is_bound_to_imagecodecs_openjpeg():
    glymur = glymur_module()
    version = tuple(int(v) for v in glymur.version.openjpeg_version.split(".")[:2])
    assert version >= (2, 5)
    bundled = bundled_openjpeg()
    assert bundled and os.path.exists(bundled)
    user_rc = [os.path.join(os.getcwd(), "glymurrc")]
    xdg = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    user_rc.append(os.path.join(xdg, "glymur", "glymurrc"))
    if not os.environ.get("RSNA_MAMMO_OPENJP2") and not any(os.path.exists(p) for p in user_rc):
        assert glymur.lib.openjp2.OPENJP2._name == bundled


def test_without_openjpeg_auto_decodes_full_and_fixed_scales_refuse(mammo_files, tmp_path):
    """A fresh interpreter whose OpenJPEG cannot load: ``auto`` falls back to the exact full path."""
    bogus = tmp_path / "libopenjp2-not-a-library.so"
    bogus.write_bytes(b"not an ELF file")
    script = textwrap.dedent(
        f"""
        import numpy as np
        from decode.sample import read_sample
        from decode.scale import effective_scale, require_reduced_decoder
        from decode.openjpeg import unavailable_reason
        from decode.chain import preprocess
        from decode.decoding import decode_file
        assert "OpenJPEG 0.0.0" in unavailable_reason(), unavailable_reason()
        assert effective_scale("auto") == "full" and effective_scale("full") == "full"
        try:
            require_reduced_decoder("1/2")
            raise SystemExit("1/2 was accepted")
        except ValueError as exc:
            assert "decode scale 1/2 needs OpenJPEG through glymur" in str(exc)
        require_reduced_decoder("auto")
        p = {mammo_files["j2k_L"]!r}
        res = read_sample(p, size=(50, 40), decode_scale="auto")
        dec = decode_file(p)
        want = preprocess(dec.pixels, dec.meta, stage="crop", size=(50, 40)).image
        assert res.pre.reduction == 0 and np.array_equal(res.pre.image, want)
        print("ok")
        """
    )
    env = dict(os.environ, RSNA_MAMMO_OPENJP2=str(bogus), PYTHONPATH=REPO)
    out = subprocess.run([sys.executable, "-c", script], cwd=str(tmp_path), env=env, capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


# --- the decode scale -----------------------------------------------------------------------------


def test_decode_scale_names():
    assert DECODE_SCALES == ("auto", "full", "1/2", "1/4")
    for s in DECODE_SCALES:
        assert check_decode_scale(s) == s
    with pytest.raises(ValueError, match=r"unknown decode scale '1/3'; allowed: auto, full, 1/2, 1/4"):
        check_decode_scale("1/3")
    assert [scale_name(r) for r in range(4)] == ["full", "1/2", "1/4", "1/8"]


@pytest.mark.parametrize(
    "frame, size, levels, want",
    [
        ((100, 60), (50, 30), 5, 1),  # exactly the target at 1/2
        ((100, 60), (51, 30), 5, 0),  # one row short
        ((100, 60), (50, 31), 5, 0),  # one column short
        ((101, 61), (51, 31), 5, 1),  # odd frames round up (ceil(101/2) = 51)
        ((100, 60), (25, 15), 5, 2),
        ((100, 60), (25, 15), 1, 1),  # capped by the codestream's levels
        ((100, 60), (25, 15), 0, 0),
        ((3328, 2560), (1024, 512), 5, 1),  # RSNA full size at the loader's 1024x512
        ((3328, 2560), (512, 256), 5, 2),
    ],
)
def test_header_reduction_boundaries(frame, size, levels, want):
    assert header_reduction(frame, size, levels) == want


def test_crop_fits_boundaries():
    frame = (100, 60)
    assert crop_fits((0, 100, 0, 60), 1, (50, 30), frame)
    assert not crop_fits((0, 100, 0, 60), 1, (51, 30), frame)
    assert crop_fits((1, 99, 1, 59), 1, (50, 30), frame)  # rounded outward: rows 0..50 at 1/2
    assert not crop_fits((2, 98, 0, 60), 1, (50, 30), frame)  # 48 rows at 1/2
    assert crop_fits((40, 41, 59, 60), 0, (1, 1), frame) and not crop_fits((40, 41, 59, 60), 0, (2, 1), frame)


def test_full_scale_is_the_exact_chain(mammo_files):
    for key, path in mammo_files.items():
        dec = decode_file(path)
        for stage, size in (("raw", None), ("voi", None), ("crop", (64, 48)), ("crop", None)):
            res = read_sample(path, stage=stage, size=size, decode_scale="full")
            want = preprocess(dec.pixels, dec.meta, stage=stage, size=size)
            assert res.pre.reduction == 0 and res.backend == dec.backend and res.decode_scale == "full"
            assert res.pre.box == want.box and np.array_equal(res.pre.image, want.image), (key, stage)


def test_raw_voi_lossless_jpeg_and_no_size_stay_full_under_auto(mammo_files):
    j2k, ljpeg = mammo_files["j2k_L"], mammo_files["ljpeg"]
    for path, stage, size in (
        (j2k, "raw", None),
        (j2k, "voi", (50, 40)),
        (j2k, "crop", None),
        (ljpeg, "crop", (50, 40)),
    ):
        dec = decode_file(path)
        res = read_sample(path, stage=stage, size=size, decode_scale="auto")
        want = preprocess(dec.pixels, dec.meta, stage=stage, size=size)
        assert res.pre.reduction == 0 and np.array_equal(res.pre.image, want.image), (path, stage)
    assert read_sample(ljpeg, size=(50, 40), decode_scale="1/2").pre.reduction == 0


@pytest.mark.parametrize("key", ["j2k_L", "j2k_R_mono1", "htj2k"])
def test_auto_picks_the_largest_reduction_whose_crop_covers_the_target(mammo_files, key):
    path = mammo_files[key]
    full_box = read_sample(path, size=(64, 48), decode_scale="full").pre.box
    bh, bw = full_box[1] - full_box[0], full_box[3] - full_box[2]
    for size in ((bh // 2 - 8, bw // 2 - 8), (bh // 4 - 6, bw // 4 - 6), (bh // 2 + 8, bw // 2 + 8), (bh, bw)):
        res = read_sample(path, size=size, decode_scale="auto")
        r = res.pre.reduction
        frame = (400, 320)
        shape_r = (-(-frame[0] // 2**r), -(-frame[1] // 2**r))
        y0, y1, x0, x1 = reduce_box(res.pre.box, r, shape_r)
        assert y1 - y0 >= size[0] and x1 - x0 >= size[1], (size, r)  # the resize only shrinks
        coarser = reduce_box(full_box, r + 1, (-(-frame[0] // 2 ** (r + 1)), -(-frame[1] // 2 ** (r + 1))))
        assert coarser[1] - coarser[0] < size[0] or coarser[3] - coarser[2] < size[1], (size, r)  # the largest
        assert res.pre.image.shape == size and res.pre.image.dtype == np.float32
        assert res.backend == ("openjpeg" if r else "imagecodecs")
    assert read_sample(path, size=(bh // 4 - 6, bw // 4 - 6), decode_scale="auto").pre.reduction == 2
    assert read_sample(path, size=(bh // 2 + 8, bw // 2 + 8), decode_scale="auto").pre.reduction == 0


def test_auto_steps_down_when_a_guess_is_too_coarse(mammo_files, monkeypatch):
    import decode.scale as scale

    path = mammo_files["j2k_L"]
    want = read_sample(path, size=(90, 60), decode_scale="auto")
    assert want.pre.reduction == 1
    monkeypatch.setattr(scale, "auto_reduction", lambda dfile, stream, size: 3)
    got = read_sample(path, size=(90, 60), decode_scale="auto")
    assert got.pre.reduction == 1 and np.array_equal(got.pre.image, want.pre.image)


def test_fixed_scales_report_the_box_in_frame_pixels(mammo_files):
    path = mammo_files["j2k_L"]
    for scale, r in (("1/2", 1), ("1/4", 2)):
        res = read_sample(path, size=None, decode_scale=scale, flip=False)
        assert res.pre.reduction == r and res.decode_scale == scale
        y0, y1, x0, x1 = res.pre.box
        assert 0 <= y0 < y1 <= 400 and 0 <= x0 < x1 <= 320
        ry0, ry1, rx0, rx1 = reduce_box(res.pre.box, r, (-(-400 // 2**r), -(-320 // 2**r)))
        assert res.pre.image.shape == (ry1 - ry0, rx1 - rx0)


@pytest.mark.parametrize("seed", range(4))
def test_box_at_reduced_resolution_is_the_full_box_within_2_to_the_r(tmp_path, seed):
    h, w = (512, 400) if seed % 2 else (509, 383)  # thumbnail step 2: finer than 2^r
    path = write_dicom(
        str(tmp_path / "clean.dcm"), _clean_breast(h, w, seed, "LR"[seed % 2]), window=([2047.5], [4095])
    )
    full = read_sample(path, size=(64, 48), decode_scale="full").pre.box
    assert full != (0, h, 0, w)
    dfile = read_dicom(path)
    from decode.voi import apply_voi

    for r in (1, 2, 3):
        box = breast_bbox(apply_voi(decode_reduced(dfile, r), dfile.meta), frame_shape=(h, w), reduction=r)
        assert max(abs(a - b) for a, b in zip(box, full)) <= 2**r, (r, box, full)
    for scale, r in (("1/2", 1), ("1/4", 2)):
        box = read_sample(path, size=(64, 48), decode_scale=scale).pre.box
        assert max(abs(a - b) for a, b in zip(box, full)) <= 2**r, (scale, box, full)


def test_breast_bbox_at_reduction_0_is_unchanged_and_checks_the_frame():
    img = np.zeros((90, 70), np.float32)
    img[10:80, 0:40] = 0.7
    assert breast_bbox(img) == breast_bbox(img, frame_shape=(90, 70), reduction=0)
    with pytest.raises(ValueError, match="differs from the image"):
        breast_bbox(img, frame_shape=(180, 140), reduction=0)
    with pytest.raises(ValueError, match="reduction must be >= 0"):
        breast_bbox(img, reduction=-1)
    with pytest.raises(ValueError, match="only the crop stage decodes below full resolution"):
        preprocess(np.zeros((4, 4), np.uint16), None, stage="voi", reduction=1)


def test_reduce_box_rounds_outward_and_clips():
    assert reduce_box((1, 99, 3, 59), 1, (50, 30)) == (0, 50, 1, 30)
    assert reduce_box((4, 8, 4, 8), 2, (25, 15)) == (1, 2, 1, 2)
    assert reduce_box((5, 9, 0, 61), 2, (25, 15)) == (1, 3, 0, 15)


@pytest.fixture(scope="module")
def big_j2k(tmp_path_factory):
    """One 2700×1900 12-bit JPEG 2000 mammogram: at 1024×512 its crop allows 1/2."""
    return _mammo(tmp_path_factory.mktemp("reduced_big") / "big.dcm", 2700, 1900, seed=21)


def test_auto_at_1024x512_is_within_0_01_of_full(big_j2k):
    full = read_sample(big_j2k, size=(1024, 512), decode_scale="full")
    auto = read_sample(big_j2k, size=(1024, 512), decode_scale="auto")
    assert auto.pre.reduction == 1 and auto.backend == "openjpeg"
    diff = np.abs(auto.pre.image.astype(np.float64) - full.pre.image)
    assert auto.pre.image.shape == (1024, 512) and diff.mean() <= 0.01, diff.mean()
    assert auto.pre.flipped == full.pre.flipped


def test_fixed_reduced_scale_refused_where_unavailable(monkeypatch):
    import decode.openjpeg as oj

    monkeypatch.setattr(oj, "unavailable_reason", lambda: "no glymur here")
    with pytest.raises(ValueError, match="decode scale 1/4 needs OpenJPEG through glymur.*no glymur here"):
        require_reduced_decoder("1/4")
    assert effective_scale("auto") == "full" and effective_scale("1/2") == "1/2"


def test_resize_pad_fits_the_frame_box_not_the_reduced_crop():
    from decode.resize import resize_pad

    ones = np.ones((50, 31), np.float32)
    assert resize_pad(ones, (20, 20))[:, 12].max() == 0.0  # 50x31 fits as 20x12
    out = resize_pad(ones, (20, 20), fit_shape=(100, 64))  # its frame box fits as 20x13
    assert out[:, 12].min() > 0.99 and out[:, 13:].max() == 0.0 and out.shape == (20, 20)


def test_loader_decode_scale(mammo_files):
    from dali_pipelines.loader import DicomLoader

    paths = [mammo_files["j2k_L"], mammo_files["ljpeg"], mammo_files["htj2k"]]
    size = (90, 60)
    full = DicomLoader(paths, batch_size=3, size=size, device="cpu", workers=0, decode_scale="full")
    auto = DicomLoader(paths, batch_size=3, size=size, device="cpu", workers=1)  # auto is the default
    assert auto.decode_scale == "auto" and auto.effective_decode_scale() == "auto"
    assert full.effective_decode_scale() == "full"
    (bf,), (ba,) = list(full), list(auto)
    assert not bf["failed"] and not ba["failed"] and ba["image"].shape == bf["image"].shape == (3, 1, 90, 60)
    for i, p in enumerate(paths):
        dec = decode_file(p)
        exact = preprocess(dec.pixels, dec.meta, stage="crop", size=size).image
        assert np.array_equal(bf["image"][i, 0].numpy(), exact)
        want = read_sample(p, size=size, decode_scale="auto")
        assert np.array_equal(ba["image"][i, 0].numpy(), want.pre.image)
        assert want.pre.reduction == (0 if p == mammo_files["ljpeg"] else 1)
    with pytest.raises(ValueError, match=r"unknown decode scale 'half'; allowed: auto, full, 1/2, 1/4"):
        DicomLoader(paths, size=size, device="cpu", decode_scale="half")
