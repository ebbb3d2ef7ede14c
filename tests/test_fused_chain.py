"""The fused preprocessing chain (:mod:`decode.fused_chain`) on each device: numpy on the CPU,
CuPy (the fused ``ElementwiseKernel``) on CUDA, against the reference chain
(:func:`decode.voi.apply_voi`, :func:`decode.chain.preprocess`) run in numpy."""

from __future__ import annotations

import numpy as np
import pytest

from decode.chain import preprocess
from decode.dicom import read_dicom
from decode.fused_chain import preprocess_batch, preprocess_image, record_params, voi_fused
from decode.voi import apply_voi
from tests.dali_cases import pydicom_pixels, write_all_cases
from tests.helpers import DEVICES, on_device, to_numpy

#: float32 on the CPU is the reference arithmetic; the GPU kernel is built without FMA contraction.
ATOL = {"cpu": 1e-6, "cuda": 1e-5}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return write_all_cases(str(tmp_path_factory.mktemp("fused_chain_cases")))


def _xp(device):
    if device == "cuda":
        import cupy

        return cupy
    return np


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    "name",
    [
        "J2K_16_12_MONO2",
        "J2K_16_14_MONO1",
        "JLL_16_12_MONO1",
        "NATIVE_16_12_MONO2",
        "J2K_SIGNED_16_12",
        "J2K_8_8_MONO2",
    ],
)
def test_fused_voi_equals_apply_voi(files, name, device):
    dfile = read_dicom(files[name])
    ref_raw = pydicom_pixels(files[name])
    raw = _xp(device).asarray(ref_raw)
    params = record_params(dfile.meta)
    got = voi_fused(raw, params)
    assert on_device(got, device) and got.dtype == np.float32 and got.shape == raw.shape
    np.testing.assert_allclose(to_numpy(got), apply_voi(ref_raw, dfile.meta), atol=ATOL[device], rtol=0)
    half = voi_fused(raw, params, out_dtype=np.float16)
    assert half.dtype == np.float16
    np.testing.assert_allclose(to_numpy(half).astype(np.float32), to_numpy(got), atol=1e-3)
    with pytest.raises(ValueError, match="allowed: float32, float16"):
        voi_fused(raw, params, out_dtype=np.float64)


@pytest.mark.parametrize("device", DEVICES)
def test_fused_voi_minmax_with_rescale(files, device):
    dfile = read_dicom(files["J2K_16_12_MONO2"])
    ref_raw = pydicom_pixels(files["J2K_16_12_MONO2"])
    raw = _xp(device).asarray(ref_raw)
    for slope in (2.0, -0.5):
        meta = dfile.meta.replace(window_centers=(), window_widths=(), rescale_slope=slope, rescale_intercept=-100.0)
        got = to_numpy(voi_fused(raw, record_params(meta)))
        np.testing.assert_allclose(got, apply_voi(ref_raw, meta), atol=ATOL[device])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", ["J2K_16_12_MONO2", "J2K_16_14_MONO1", "HTJ2K_16_12_MONO1", "JLL_16_16_MONO2"])
def test_fused_chain_equals_the_reference_chain(files, name, device):
    dfile = read_dicom(files[name])
    ref_raw = pydicom_pixels(files[name])
    raw = _xp(device).asarray(ref_raw)
    params = record_params(dfile.meta)
    for stage, size in (("voi", None), ("crop", None), ("crop", (32, 24)), ("crop", (33, 17))):
        want = preprocess(ref_raw, dfile.meta, stage=stage, size=size)
        got = preprocess_image(raw, params, stage=stage, size=size)
        assert got.box == want.box and got.flipped == want.flipped, (stage, size)
        assert on_device(got.image, device)
        np.testing.assert_allclose(to_numpy(got.image), want.image, atol=ATOL[device])
    batch, _per = preprocess_batch([raw, raw], [params, params], size=(32, 24))
    assert batch.shape == (2, 1, 32, 24) and batch.dtype == np.float32 and batch.flags.c_contiguous
    want = preprocess(ref_raw, dfile.meta, size=(32, 24)).image
    np.testing.assert_allclose(to_numpy(batch[1, 0]), want, atol=ATOL[device])


@pytest.mark.parametrize("device", DEVICES)
def test_lut_images_need_their_header(files, device):
    from decode.meta import Lut

    dfile = read_dicom(files["J2K_16_12_MONO2"])
    meta = dfile.meta.replace(voi_lut=Lut(first_map=0, bits=12, data=np.arange(4096, dtype=np.uint16)[::-1].copy()))
    ref_raw = pydicom_pixels(files["J2K_16_12_MONO2"])
    raw = _xp(device).asarray(ref_raw)
    with pytest.raises(ValueError, match="header"):
        preprocess_image(raw, record_params(meta), stage="voi")
    got = preprocess_image(raw, record_params(meta), meta=meta, stage="voi").image
    np.testing.assert_allclose(to_numpy(got), apply_voi(ref_raw, meta), atol=ATOL[device])
