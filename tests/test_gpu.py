"""GPU engine checks (marker ``gpu``; skipped with the reason when CUDA is absent).

DALI (``mixed``) and nvImageCodec decode bit-exact against pydicom for .90 and .70 at 12,
14 and 16 bits (a 9–15-bit lossless JPEG decoded to zeros by nvJPEG before 13.0.2 fails
here), the CuPy chain equals the numpy chain within 1e-5, a corrupt sample inside a GPU
batch falls back without losing its neighbours, and the torch tensor shares memory with
the decoder output. The DALI tests skip themselves where DALI does not import (the GPU
check's quick tier); the nvImageCodec engine's own GPU tests are in test_nvimgcodec_engine.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from decode import syntax as TS
from tests.dali_cases import Case, pydicom_pixels, write_case, write_corrupt

pytestmark = pytest.mark.gpu

SHAPE = (512, 384)
EXACT_CASES = (
    Case("J2K_16_12_MONO1", TS.JPEG2000_LOSSLESS, 12, "MONOCHROME1"),
    Case("J2K_16_14_MONO2", TS.JPEG2000_LOSSLESS, 14, "MONOCHROME2", "SIGMOID"),
    Case("J2K_16_16_MONO2", TS.JPEG2000_LOSSLESS, 16),
    Case("JLL_16_12_MONO1", TS.JPEG_LOSSLESS_SV1, 12, "MONOCHROME1"),
    Case("JLL_16_14_MONO2", TS.JPEG_LOSSLESS_SV1, 14, "MONOCHROME2", "SIGMOID"),
    Case("JLL_16_16_MONO2", TS.JPEG_LOSSLESS_SV1, 16),
    Case("HTJ2K_16_12_MONO2", TS.HTJ2K_LOSSLESS, 12),
)
NAMES = [c.name for c in EXACT_CASES]


@pytest.fixture(scope="module")
def gpu_files(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("gpu_cases"))
    return {
        c.name: write_case(folder, c, shape=SHAPE, seed=k, side="R" if k % 2 else "L")
        for k, c in enumerate(EXACT_CASES)
    }


@pytest.fixture(scope="module")
def refs(gpu_files):
    return {n: pydicom_pixels(p) for n, p in gpu_files.items()}


@pytest.fixture(scope="module")
def dali_epoch(gpu_files):
    """One epoch of every exact case through the GPU pipeline (batch 4), with the runner."""
    pytest.importorskip("nvidia.dali")
    from dali_pipelines.pipelines import DecodeRunner

    paths = [gpu_files[n] for n in NAMES]
    runner = DecodeRunner(paths, batch_size=4, device="cuda", workers=2, threads=2).start()
    samples, batches = {}, []
    for batch in runner.epoch(range(len(paths))):
        batches.append(batch)  # keeps the DALI outputs alive
        samples.update({s.index: s for s in batch.samples})
    yield runner, samples, batches
    runner.close()


@pytest.mark.parametrize("name", NAMES)
def test_dali_gpu_decode_is_bit_exact(dali_epoch, refs, name):
    import cupy

    runner, samples, _ = dali_epoch
    s = samples[NAMES.index(name)]
    ts = EXACT_CASES[NAMES.index(name)].transfer_syntax
    assert ts in runner.syntaxes, f"the start-up probe found the GPU decoder wrong for {ts} (nvJPEG < 13.0.2?)"
    assert s.route == "decoder", (s.route, s.message)
    assert isinstance(s.image, cupy.ndarray)
    got = cupy.asnumpy(s.image)
    assert got.max() > 0, "all-zero output: nvJPEG's 9-15-bit lossless JPEG bug"
    assert got.dtype == refs[name].dtype and np.array_equal(got, refs[name]), (name, runner.modes.get(ts))


def test_lossless_jpeg_12bit_single_decode_not_zero(dali_epoch):
    from decode.backends.depth import classify
    from decode.backends.probes import probe_codestreams

    runner = dali_epoch[0]
    ((cs, expected),) = probe_codestreams([TS.JPEG_LOSSLESS_SV1]).values()
    out = runner.decode_one(cs)
    assert out is not None and int(out.max()) > 0, "nvJPEG returned an all-zero 12-bit lossless JPEG"
    assert classify(out, expected, 12) in ("exact", "scaled")


@pytest.mark.parametrize("name", NAMES)
def test_nvimgcodec_gpu_decode_is_bit_exact(gpu_files, refs, name):
    import cupy

    from decode.backends.nvimgcodec_backend import NvImageCodecDecoder
    from decode.dicom import read_dicom
    from decode.routing import GPU_SYNTAXES

    dec = _nvimgcodec_decoder()
    assert set(dec.modes) == set(GPU_SYNTAXES), f"probe rejected: {set(GPU_SYNTAXES) - set(dec.modes)}"
    dfile = read_dicom(gpu_files[name])
    other = read_dicom(gpu_files[NAMES[0]])
    out = dec.decode_exact(
        [other.codestream(), dfile.codestream()], [other.meta.transfer_syntax, dfile.meta.transfer_syntax]
    )
    assert isinstance(out[1], cupy.ndarray)
    assert np.array_equal(cupy.asnumpy(out[1]), refs[name]), (name, dec.modes)
    assert isinstance(dec, NvImageCodecDecoder)


_DEC = {}


def _nvimgcodec_decoder():
    from decode.backends.nvimgcodec_backend import NvImageCodecDecoder
    from decode.routing import GPU_SYNTAXES

    if "d" not in _DEC:
        _DEC["d"] = NvImageCodecDecoder(device="cuda")
        _DEC["d"].calibrate(GPU_SYNTAXES)
    return _DEC["d"]


@pytest.mark.parametrize("name", ["J2K_16_12_MONO1", "J2K_16_14_MONO2", "JLL_16_16_MONO2"])
def test_cupy_chain_equals_numpy_chain(gpu_files, refs, name):
    import cupy

    from decode.chain import preprocess
    from decode.dicom import read_dicom
    from decode.fused_chain import preprocess_image, record_params, voi_fused
    from decode.voi import apply_voi

    meta = read_dicom(gpu_files[name]).meta
    raw = refs[name]
    params = record_params(meta)
    raw_gpu = cupy.asarray(raw)
    np.testing.assert_allclose(cupy.asnumpy(voi_fused(raw_gpu, params)), apply_voi(raw, meta), atol=1e-5, rtol=0)
    np.testing.assert_allclose(cupy.asnumpy(apply_voi(raw_gpu, meta)), apply_voi(raw, meta), atol=1e-5, rtol=0)
    half = voi_fused(raw_gpu, params, out_dtype=np.float16)
    assert half.dtype == np.float16
    np.testing.assert_allclose(cupy.asnumpy(half).astype(np.float32), apply_voi(raw, meta), atol=1e-3)
    for stage, size in (("voi", None), ("crop", None), ("crop", (256, 128))):
        want = preprocess(raw, meta, stage=stage, size=size)
        got = preprocess_image(raw_gpu, params, stage=stage, size=size)
        assert got.box == want.box and got.flipped == want.flipped
        np.testing.assert_allclose(cupy.asnumpy(got.image), want.image, atol=1e-5, rtol=0)


def test_corrupt_sample_in_a_gpu_batch_falls_back(gpu_files, refs, tmp_path):
    pytest.importorskip("nvidia.dali")
    from dali_pipelines.pipelines import DecodeRunner

    paths = [gpu_files[n] for n in NAMES[:6]]
    corrupt = write_corrupt(str(tmp_path), gpu_files[NAMES[0]])
    paths.insert(2, corrupt)  # a truly damaged file in the first batch
    broken = [3]  # and a J2K codestream the decoder is made to fail on, in the same batch
    with DecodeRunner(paths, batch_size=4, device="cuda", workers=2, fail_indices=broken) as r:
        pipe = r._pipe
        got, failed = {}, {}
        for batch in r.epoch(range(len(paths))):
            got.update({s.index: s for s in batch.samples})
            failed.update(dict(batch.failed))
        assert r._pipe is pipe and r.stats["rebuilds"] == 0
    assert sorted(list(got) + list(failed)) == list(range(len(paths)))  # nothing lost
    assert r.stats["batch_failures"] >= 1 and r.stats["cpu_fallback"] >= 1
    assert got[3].route == "cpu"
    assert {got[i].route for i in (0, 1)} == {"retry"}  # neighbours decoded on the GPU one by one
    assert "cpu" not in {got[i].route for i in (4, 5, 6)}  # the next batch is untouched
    import cupy

    for i in range(len(paths)):
        if i == 2:
            continue
        name = NAMES[i if i < 2 else i - 1]
        assert np.array_equal(cupy.asnumpy(got[i].image), refs[name]), name


def test_torch_tensor_shares_memory_with_decoder_output(dali_epoch, gpu_files):
    import cupy
    import torch

    from dali_pipelines import handoff
    from decode.dicom import read_dicom

    _, _, batches = dali_epoch
    images = batches[0].keep[0]  # TensorListGPU of the first batch
    tensor = images[0]
    arr = handoff.dali_to_array(tensor)
    t = handoff.to_torch(arr)
    assert t.is_cuda and handoff.data_ptr(tensor) == arr.data.ptr == t.data_ptr()
    before = int(arr[0, 0, 0])
    cupy.asarray(tensor)[0, 0, 0] = (before + 1) % 65536  # written through a fresh view of DALI's buffer ...
    cupy.cuda.get_current_stream().synchronize()
    assert int(t[0, 0, 0].to(torch.int32).item()) == (before + 1) % 65536  # ... is seen by torch
    arr[0, 0, 0] = before

    dec = _nvimgcodec_decoder()
    img = dec.decode_images([read_dicom(gpu_files[NAMES[0]]).codestream()])[0]
    arr = handoff.nvimgcodec_to_array(img)
    t = handoff.to_torch(arr)
    assert t.data_ptr() == arr.data.ptr == img.__cuda_array_interface__["data"][0]


@pytest.mark.parametrize("engine", ["dali", "nvimgcodec"])
def test_loader_gpu_engine_matches_cpu_engine(gpu_files, engine):
    import torch

    from dali_pipelines.loader import DicomLoader

    if engine == "dali":
        pytest.importorskip("nvidia.dali")
    paths = [gpu_files[n] for n in NAMES]
    labels = np.arange(len(paths), dtype=np.float32)
    cpu = DicomLoader(paths, labels, batch_size=4, size=(256, 128), device="cpu", engine="cpu", workers=0)
    with DicomLoader(paths, labels, batch_size=4, size=(256, 128), device="cuda", engine=engine, workers=2) as gpu:
        assert gpu.engine_name == engine
        for a, b in zip(gpu, cpu, strict=True):
            assert a["image"].is_cuda and a["image"].shape == b["image"].shape and a["image"].dtype == torch.float32
            assert a["index"].tolist() == b["index"].tolist() and a["label"].tolist() == b["label"].tolist()
            np.testing.assert_allclose(a["image"].cpu().numpy(), b["image"].numpy(), atol=1e-5, rtol=0)


@pytest.mark.parametrize("engine", ["dali", "nvimgcodec"])
def test_decode_cli_on_the_gpu(gpu_files, tmp_path, engine):
    from decode.chain import preprocess
    from decode.dicom import read_dicom
    from training.cli import main

    if engine == "dali":
        pytest.importorskip("nvidia.dali")
    paths = [gpu_files[n] for n in NAMES]
    args = ["--device", "cuda", "--engine", engine]
    assert main(["decode", *paths, "--out", str(tmp_path), *args, "--stage", "crop", "--size", "256x128"]) == 0
    for n, p in zip(NAMES, paths):
        got = np.load(tmp_path / f"{n}.npy")
        want = preprocess(pydicom_pixels(p), read_dicom(p).meta, size=(256, 128)).image
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    assert main(["decode", *paths, "--out", str(tmp_path / "raw"), *args]) == 0
    for n, p in zip(NAMES, paths):
        assert np.array_equal(np.load(tmp_path / "raw" / f"{n}.npy"), pydicom_pixels(p)), n
