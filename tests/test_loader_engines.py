"""The loader's GPU engines and the ``decode`` command's engine path, on each device.

``cpu``: the engine's CPU variant (DALI with ``device_id=None``, nvImageCodec CPU_ONLY, the
fused chain in numpy) always runs; ``cuda`` where a GPU is present. Either way the batches
equal the CPU engine's (same rows, labels, failures; images within float tolerance)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from decode.chain import preprocess
from decode.dicom import read_dicom
from tests.dali_cases import BAD, on_decoder, pydicom_pixels, write_all_cases
from tests.helpers import DEVICES, assert_batches_match

ENGINES = ("dali", "nvimgcodec")
ATOL = {"cpu": 1e-6, "cuda": 1e-5}


def _need(engine: str) -> None:
    pytest.importorskip("nvidia.dali" if engine == "dali" else "nvidia.nvimgcodec", reason=f"{engine} not installed")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return write_all_cases(str(tmp_path_factory.mktemp("loader_engine_cases")))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("engine", ENGINES)
def test_engine_batches_equal_the_cpu_engine(files, engine, device):
    from dali_pipelines.loader import DicomLoader

    _need(engine)
    paths = list(files.values())
    labels = np.arange(len(paths), dtype=np.float32)
    want = list(DicomLoader(paths, labels, batch_size=3, size=(32, 24), device="cpu", engine="cpu", workers=0))
    with DicomLoader(paths, labels, batch_size=3, size=(32, 24), device=device, engine=engine, workers=1) as ld:
        assert ld.engine_name == engine
        got = list(ld)
    assert len(got) == len(want) == -(-len(paths) // 3)
    for a, b in zip(got, want):
        assert_batches_match(a, b, device=device, atol=ATOL[device])
    bad = {f["index"] for batch in got for f in batch["failed"]}
    assert bad == {list(files).index(n) for n in BAD}


@pytest.mark.parametrize("device", DEVICES)
def test_dali_engine_takes_its_shard_in_the_samplers_order(files, device):
    from dali_pipelines.loader import DicomLoader

    _need("dali")
    paths = list(files.values())
    corrupt = list(files).index("CORRUPT_TRUNCATED")
    with DicomLoader(paths, batch_size=3, size=(32, 24), device=device, engine="dali", workers=1) as ld:
        ld.sampler = [corrupt, 1, 8, 3, 6, 5, 4]
        ld.shard = (1, 2)  # every other row of the sampler from the second: 1, 3, 5
        assert [i for d in ld for i in d["index"].tolist()] == [1, 3, 5]
        ld.shard = (0, 2)  # corrupt, 8, 6, 4
        out = list(ld)
        assert [i for d in out for i in d["index"].tolist()] == [8, 6, 4]
        assert [f["index"] for d in out for f in d["failed"]] == [corrupt]
        assert ld.stats["rebuilds"] == 0


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("engine", ENGINES)
def test_decode_command_engine_flow_equals_the_reference_chain(files, tmp_path, engine, device):
    """``rsna-mammo decode``'s engine path (batch decode + fused chain + .npy writes) on ``device``."""
    _need(engine)
    from dali_pipelines.decode_files import decode_jobs
    from decode.cli_decode import DecodeJob, output_stems, write_outputs

    names = list(files)
    paths = [files[n] for n in names]
    jobs = [
        DecodeJob(p, o, "crop", (32, 24), "auto", True, False)
        for p, o in zip(paths, output_stems(paths, str(tmp_path)))
    ]
    got = decode_jobs(jobs, engine=engine, device=device, workers=2, batch_size=3, write=write_outputs, timeout=60)
    results = {job.path: (ok, res) for job, ok, res in got}
    assert len(results) == len(paths)
    for name, path in files.items():
        ok, res = results[path]
        if name in BAD:
            assert not ok and res.path == path
            continue
        assert ok, (name, res)
        decoded = on_decoder(name, device) and name not in ("J2K_SIGNED_16_12", "J2K_8_8_MONO2")
        assert (res["backend"] == f"{engine}-{device}") == decoded, (name, res["backend"])
        assert res["route"] == ("decoder" if decoded else "raw")
        want = preprocess(pydicom_pixels(path), read_dicom(path).meta, size=(32, 24)).image
        np.testing.assert_allclose(np.load(res["out"]), want, atol=ATOL[device])


@pytest.mark.gpu
@pytest.mark.parametrize("engine", ENGINES)
def test_decode_command_on_the_gpu_writes_pydicoms_stored_values(files, tmp_path, engine):
    from training.cli import main

    _need(engine)
    names = [n for n in files if n not in BAD]
    paths = [files[n] for n in names]
    assert main(["decode", *paths, "--out", str(tmp_path), "--device", "cuda", "--engine", engine]) == 0
    for n, p in zip(names, paths):
        assert np.array_equal(np.load(tmp_path / f"{n}.npy"), pydicom_pixels(p)), n


@pytest.mark.parametrize("cuda_ok", [True, False])
def test_decode_command_device_choice_follows_what_is_usable(files, tmp_path, monkeypatch, cuda_ok):
    """``--device auto|cuda`` with a usable GPU and without one (availability faked both ways)."""
    from dali_pipelines import cli_decode
    from training.cli import main

    monkeypatch.setattr(cli_decode, "_cuda_reason", lambda: None if cuda_ok else "CuPy sees no CUDA GPU")
    missing = {"nvidia.dali": "nvidia.dali does not import (ImportError)"}
    monkeypatch.setattr(cli_decode, "_imports", lambda module: missing.get(module))
    assert cli_decode.resolve("cpu", "auto") == ("cpu", None, None)
    if cuda_ok:
        assert cli_decode.resolve("auto", "auto") == ("cuda", "nvimgcodec", None)  # DALI missing: nvImageCodec
        assert cli_decode.resolve("cuda", "nvimgcodec") == ("cuda", "nvimgcodec", None)
        device, engine, why = cli_decode.resolve("cuda", "dali")
        assert device == "error" and "nvidia.dali does not import" in why
        missing.clear()
        assert cli_decode.resolve("auto", "auto") == ("cuda", "dali", None)
        return
    assert cli_decode.resolve("auto", "auto") == ("cpu", None, "CuPy sees no CUDA GPU")
    device, _, why = cli_decode.resolve("cuda", "auto")
    assert device == "error" and why == "CuPy sees no CUDA GPU"
    path = files["J2K_16_12_MONO2"]
    assert main(["decode", path, "--out", str(tmp_path / "a"), "--device", "cuda"]) == 2  # refused, one line
    assert not os.path.exists(tmp_path / "a" / "J2K_16_12_MONO2.npy")
    args = ["--device", "auto", "--stage", "crop", "--size", "32x24", "--workers", "1"]
    assert main(["decode", path, "--out", str(tmp_path / "b"), *args]) == 0  # auto: the CPU workers
    got = np.load(tmp_path / "b" / "J2K_16_12_MONO2.npy")
    want = preprocess(pydicom_pixels(path), read_dicom(path).meta, size=(32, 24)).image
    np.testing.assert_allclose(got, want, atol=1e-6)
