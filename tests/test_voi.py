"""VOI at its boundaries: window widths pydicom accepts or refuses, VOI LUT bit depths, LUT edges.

Reference: pydicom's own ``apply_voi_lut(apply_modality_lut(...))`` scaled by its output range
(:func:`tests.helpers.pydicom_voi_scaled`), on tiny native files written to disk.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from decode import syntax as TS
from decode.dicom import read_dicom
from decode.meta import Lut
from decode.testing.synth import write_dicom
from decode.voi import WindowParams, apply_voi, lut_lookup, modality, window_params, window_problem
from tests.helpers import pydicom_voi_scaled

RAMP = np.arange(64, dtype=np.uint16).reshape(8, 8) * 64  # 0 .. 4032, 12-bit


def _file(tmp_path, pixels=RAMP, name="v.dcm", **kw):
    path = write_dicom(str(tmp_path / name), pixels, transfer_syntax=TS.EXPLICIT_LE, **kw)
    return read_dicom(path).meta, pydicom.dcmread(path)


def _voi_lut(bits: int, entries: int, first_map: int, data) -> Sequence:
    item = Dataset()
    item.LUTDescriptor = [entries, first_map, bits]
    item.LUTData = [int(v) for v in data]
    item["LUTData"].VR = "US"
    return Sequence([item])


# --- window widths at pydicom's limits -------------------------------------------------------------


def test_linear_width_exactly_one_is_a_step_at_the_center(tmp_path):
    meta, ds = _file(tmp_path, window=([2048.0], [1.0]))
    assert window_problem(meta) is None  # width 1 is allowed for LINEAR
    p = window_params(meta)
    assert (p.kind, p.center, p.scale) == ("step", 2047.5, 1.0)
    got = apply_voi(ds.pixel_array, meta)
    np.testing.assert_array_equal(got, pydicom_voi_scaled(ds).astype(np.float32))
    np.testing.assert_array_equal(got, (RAMP > 2047.5).astype(np.float32))
    meta, ds = _file(tmp_path, name="h.dcm", window=([2048.5], [1.0]))  # the step lands on a stored value
    got = apply_voi(ds.pixel_array, meta)
    assert got[4, 0] == 0.0 and RAMP[4, 0] == 2048  # at c - 1/2 itself: the low side, as pydicom
    np.testing.assert_array_equal(got, pydicom_voi_scaled(ds).astype(np.float32))


def test_a_voi_lut_wins_over_a_window_pydicom_would_refuse(tmp_path):
    meta, _ = _file(tmp_path, window=([2048.0], [0.5]), extra={"VOILUTSequence": _voi_lut(16, 2, 0, [0, 1])})
    assert window_problem(meta) is None and window_params(meta).kind == "lut"


def test_linear_width_below_one_falls_back_to_min_max_with_a_note(tmp_path):
    meta, ds = _file(tmp_path, window=([2048.0], [0.5]))
    assert window_problem(meta) == "Window Width 0.5 < 1 for LINEAR (pydicom refuses it); using min-max"
    assert window_params(meta).kind == "minmax"
    np.testing.assert_allclose(apply_voi(ds.pixel_array, meta), RAMP / 4032.0, atol=1e-7)


@pytest.mark.parametrize("func", ["SIGMOID", "LINEAR_EXACT"])
def test_width_zero_is_refused_for_sigmoid_and_linear_exact(tmp_path, func):
    meta, _ = _file(tmp_path, window=([2048.0], [0.0]), voi_function=func)
    assert window_problem(meta) == f"Window Width 0 <= 0 for {func} (pydicom refuses it); using min-max"
    assert window_params(meta).kind == "minmax"


@pytest.mark.parametrize(
    "func,width", [("SIGMOID", 0.5), ("LINEAR_EXACT", 0.5), ("LINEAR_EXACT", 1.0), ("SIGMOID", 300.0)]
)
def test_small_positive_widths_follow_pydicom(tmp_path, func, width):
    meta, ds = _file(tmp_path, window=([2016.0], [width]), voi_function=func)
    assert window_problem(meta) is None
    np.testing.assert_allclose(apply_voi(ds.pixel_array, meta), pydicom_voi_scaled(ds), atol=1e-6)


def test_linear_exact_uses_center_and_width_as_given(tmp_path):
    meta, ds = _file(tmp_path, window=([2000.0], [1000.0]), voi_function="LINEAR_EXACT")
    p = window_params(meta)
    assert (p.kind, p.center, p.scale, p.offset) == ("linear", 2000.0, 1 / 1000.0, 0.5)
    np.testing.assert_allclose(apply_voi(ds.pixel_array, meta), pydicom_voi_scaled(ds), atol=1e-6)
    meta, ds = _file(tmp_path, window=([2000.0], [1000.0]))  # LINEAR: c - 0.5, w - 1
    p = window_params(meta)
    assert (p.kind, p.center, p.scale) == ("linear", 1999.5, 1 / 999.0)
    np.testing.assert_allclose(apply_voi(ds.pixel_array, meta), pydicom_voi_scaled(ds), atol=1e-6)


def test_window_index_selects_the_window(tmp_path):
    meta, ds = _file(tmp_path, window=([1000.0, 3000.0], [500.0, 2000.0]))
    first = apply_voi(ds.pixel_array, meta)
    second = apply_voi(ds.pixel_array, meta, index=1)
    np.testing.assert_allclose(first, pydicom_voi_scaled(ds, 0), atol=1e-6)
    np.testing.assert_allclose(second, pydicom_voi_scaled(ds, 1), atol=1e-6)
    assert not np.allclose(first, second)
    assert window_params(meta, 1).center == 2999.5
    assert window_problem(meta, 1) is None


def test_rescaled_window_and_zero_slope(tmp_path):
    meta, ds = _file(tmp_path, window=([100.0], [400.0]), rescale=(0.5, -900.0))
    p = window_params(meta)
    assert (p.kind, p.center, p.scale) == ("linear", (99.5 + 900.0) / 0.5, 0.5 / 399.0)
    np.testing.assert_allclose(apply_voi(ds.pixel_array, meta), pydicom_voi_scaled(ds), atol=1e-6)
    meta, _ = _file(tmp_path, window=([100.0], [400.0]), rescale=(0.0, 5.0))
    assert window_params(meta).kind == "minmax"
    meta, ds = _file(tmp_path, window=([100.0], [1.0]), rescale=(-2.0, 10.0))  # negative slope step
    p = window_params(meta)
    assert (p.kind, p.scale) == ("step", -1.0)
    np.testing.assert_array_equal(apply_voi(ds.pixel_array, meta), pydicom_voi_scaled(ds).astype(np.float32))


def test_sigmoid_over_a_rescale_follows_pydicom(tmp_path):
    meta, ds = _file(tmp_path, window=([500.0], [900.0]), voi_function="SIGMOID", rescale=(0.5, -300.0))
    p = window_params(meta)
    assert (p.kind, p.center, p.scale) == ("sigmoid", (500.0 + 300.0) / 0.5, 4.0 * 0.5 / 900.0)
    np.testing.assert_allclose(apply_voi(ds.pixel_array, meta), pydicom_voi_scaled(ds), atol=1e-6)


def test_the_first_window_is_the_default_and_params_are_frozen(tmp_path):
    meta, ds = _file(tmp_path, window=([1000.0, 3000.0], [0.5, 2000.0]))
    assert window_problem(meta) == "Window Width 0.5 < 1 for LINEAR (pydicom refuses it); using min-max"
    assert window_problem(meta, 1) is None
    assert window_params(meta).kind == "minmax" and window_params(meta, 1).kind == "linear"
    with pytest.raises(dataclasses.FrozenInstanceError):
        window_params(meta).kind = "linear"


def test_sigmoid_params(tmp_path):
    meta, ds = _file(tmp_path, window=([2000.0], [800.0]), voi_function="SIGMOID", photometric="MONOCHROME1")
    p = window_params(meta)
    assert (p.kind, p.center, p.scale, p.offset, p.invert) == ("sigmoid", 2000.0, 4.0 / 800.0, 0.0, True)
    np.testing.assert_allclose(apply_voi(ds.pixel_array, meta), pydicom_voi_scaled(ds), atol=1e-6)


# --- VOI LUT and modality LUT ----------------------------------------------------------------------


@pytest.mark.parametrize("bits", [8, 10, 12, 16])
def test_voi_lut_is_scaled_by_its_own_bit_depth(tmp_path, bits):
    top = 2**bits - 1
    data = np.linspace(0, top, 4033).round().astype(int)[::-1]  # a decreasing table over 0..4032
    meta, ds = _file(tmp_path, extra={"VOILUTSequence": _voi_lut(bits, 4033, 0, data)})
    assert meta.voi_lut.bits == bits and window_params(meta).kind == "lut"
    got = apply_voi(ds.pixel_array, meta)
    want = data[RAMP] / top
    np.testing.assert_allclose(got, want, atol=1e-6)  # a 1/2^bits slip is 0.4 % at 8 bits
    if bits != 8:  # pydicom indexes an 8-bit table with uint8: entries past 255 wrap (see below)
        np.testing.assert_allclose(got, pydicom_voi_scaled(ds), atol=1e-6)
    assert got.dtype == np.float32 and got.min() == 0.0 and got.max() == 1.0


def test_8_bit_voi_lut_matches_pydicom_inside_the_table(tmp_path):
    """pydicom (3.x) builds its index array with the table's dtype, uint8 for an 8-bit table, so an
    index past 255 wraps around before it is clamped; this project clamps it to the last entry. They
    agree while every stored value minus the first mapped value stays below 256."""
    px = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 4) + 10  # 10 .. 262: below and inside the table
    data = (np.arange(256) * 7) % 256
    meta, ds = _file(tmp_path, pixels=px, extra={"VOILUTSequence": _voi_lut(8, 256, 20, data)})
    got = apply_voi(ds.pixel_array, meta)
    want = data[np.clip(px.astype(int) - 20, 0, 255)] / 255.0
    np.testing.assert_allclose(got, want, atol=1e-6)
    np.testing.assert_allclose(got, pydicom_voi_scaled(ds), atol=1e-6)


def test_lut_lookup_clamps_below_first_map_and_above_the_table():
    lut = Lut(first_map=10, bits=8, data=np.array([5, 6, 7], np.uint8))
    x = np.array([0, 9, 10, 11, 12, 13, 400], np.int32)
    assert lut_lookup(x, lut).tolist() == [5, 5, 5, 6, 7, 7, 7]
    xf = np.array([9.5, 10.0, 10.9, 11.999, 12.5], np.float64)
    assert lut_lookup(xf, lut).tolist() == [5, 5, 5, 6, 7]  # float indices truncate
    neg = Lut(first_map=-2, bits=8, data=np.array([1, 2, 3, 4], np.uint8))
    assert lut_lookup(np.array([-3, -2, 0, 1, 2], np.int16), neg).tolist() == [1, 1, 3, 4, 4]
    low = Lut(first_map=-3, bits=8, data=np.array([1, 2, 3, 4], np.uint8))
    assert lut_lookup(np.array([-1.5, -3.5]), low).tolist() == [2, 1]  # offset first, then truncated


def test_modality_is_lut_then_rescale_then_identity(tmp_path):
    meta, ds = _file(tmp_path, rescale=(2.0, -10.0))
    out = modality(ds.pixel_array, meta)
    assert out.dtype == np.float64 and out.tolist() == (RAMP * 2.0 - 10.0).tolist()
    meta, ds = _file(tmp_path)
    assert modality(ds.pixel_array, meta) is ds.pixel_array or np.array_equal(modality(ds.pixel_array, meta), RAMP)


def test_window_over_a_modality_lut_ignores_rescale(tmp_path):
    mlut = _voi_lut(16, 4033, 0, np.arange(4033)[::-1] * 3)  # pydicom reads 8- and 16-bit modality LUTs
    meta, ds = _file(tmp_path, window=([1000.0], [2000.0]), extra={"ModalityLUTSequence": mlut})
    p = window_params(meta)
    assert (p.kind, p.center, p.scale) == ("linear", 999.5, 1 / 1999.0)
    np.testing.assert_allclose(apply_voi(ds.pixel_array, meta), pydicom_voi_scaled(ds), atol=1e-6)


# --- min-max, inversion, parameters ----------------------------------------------------------------


def test_min_max_of_a_flat_image_is_zero_not_nan(tmp_path):
    meta, ds = _file(tmp_path, pixels=np.full((3, 5), 77, np.uint16))
    out = apply_voi(ds.pixel_array, meta)
    assert out.dtype == np.float32 and (out == 0).all()
    meta, ds = _file(tmp_path, pixels=np.full((3, 5), 77, np.uint16), photometric="MONOCHROME1")
    assert (apply_voi(ds.pixel_array, meta) == 1).all()


def test_min_max_spans_zero_to_one_from_the_image_minimum(tmp_path):
    px = np.array([[100, 150], [200, 300]], np.uint16)
    meta, ds = _file(tmp_path, pixels=px)
    np.testing.assert_allclose(apply_voi(ds.pixel_array, meta), [[0, 0.25], [0.5, 1]], atol=1e-7)


def test_precomputed_params_are_used_as_given(tmp_path):
    meta, ds = _file(tmp_path, window=([2048.0], [4096.0]))
    p = WindowParams("linear", center=0.0, scale=1 / 4032.0, offset=0.0, invert=True)
    np.testing.assert_allclose(apply_voi(ds.pixel_array, meta, params=p), 1.0 - RAMP / 4032.0, atol=1e-6)
    step = WindowParams("step", center=1000.0, scale=1.0)
    assert apply_voi(ds.pixel_array, meta, params=step).tolist() == (RAMP > 1000).astype(np.float32).tolist()


def test_window_params_as_array_codes():
    for code, kind in enumerate(("linear", "sigmoid", "step", "lut", "minmax")):
        arr = WindowParams(kind, center=1.5, scale=2.0, offset=0.5, invert=bool(code % 2)).as_array()
        assert arr.dtype == np.float32 and arr.tolist() == [code, 1.5, 2.0, 0.5, float(code % 2)]
    assert WindowParams("linear").as_array().tolist() == [0, 0.0, 1.0, 0.0, 0.0]


def test_min_max_over_a_span_below_one_still_fills_zero_to_one(tmp_path):
    """A rescale can shrink the value range below 1 (slope 0.0001 over 0..4032): min–max still
    divides by that span and reaches 1 at the maximum (only an all-equal image divides by 1)."""
    meta, ds = _file(tmp_path, rescale=(0.0001, 0.0))
    assert window_params(meta).kind == "minmax"
    got = apply_voi(ds.pixel_array, meta)
    x = RAMP.astype(np.float32) * np.float32(0.0001)
    assert 0 < x.max() - x.min() < 1
    np.testing.assert_allclose(got, (x - x.min()) / (x.max() - x.min()), rtol=0, atol=1e-6)
    assert got.min() == 0.0 and got.max() == pytest.approx(1.0, abs=1e-6)
