"""DALI pipelines on the CPU (device_id=None), the GPU chain's numpy path, and the nvImageCodec CPU backend.

The DALI pipelines start spawned worker processes (a few seconds each): one runner is
shared by the module, one more exercises the fallback, one serves the loader tests.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from decode import syntax as TS
from decode.backends.probes import probe_codestreams
from decode.chain import preprocess
from decode.dicom import read_dicom
from decode.fused_chain import preprocess_batch, preprocess_image, record_params, voi_fused
from decode.routing import CPU_SYNTAXES, GPU_SYNTAXES, gpu_unsupported_reason
from decode.voi import apply_voi
from tests.dali_cases import CPU_CASES, GPU_CASES, pydicom_pixels, write_case, write_corrupt

pytest.importorskip("nvidia.dali")

ALL_CASES = GPU_CASES + CPU_CASES


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """``{case name: path}`` plus ``CORRUPT_TRUNCATED``; shapes differ per file."""
    folder = str(tmp_path_factory.mktemp("dali_cases"))
    out = {}
    for k, case in enumerate(ALL_CASES):
        out[case.name] = write_case(
            folder, case, shape=(48 + 4 * (k % 3), 40 + 2 * (k % 2)), seed=k, side="R" if k % 2 else "L"
        )
    out["CORRUPT_TRUNCATED"] = write_corrupt(folder, out["J2K_16_12_MONO2"])
    return out


@pytest.fixture(scope="module")
def runner(files):
    from dali_pipelines.pipelines import DecodeRunner

    r = DecodeRunner(list(files.values()), batch_size=4, device="cpu", workers=2, threads=2)
    r.start()
    yield r
    r.close()


def _collect(runner, rows):
    samples, failed, batches = {}, {}, []
    for batch in runner.epoch(rows):
        batches.append([s.index for s in batch.samples] + [i for i, _ in batch.failed])
        samples.update({s.index: s for s in batch.samples})
        failed.update(dict(batch.failed))
    return samples, failed, batches


# --------------------------------------------------------------------------- routing (no DALI)
def test_gpu_route_rules(files):
    want_cpu = {
        "NATIVE_16_12_MONO2": "transfer syntax",
        "J2K_SIGNED_16_12": "signed",
        "J2K_8_8_MONO2": "Bits Allocated",
    }
    for name, path in files.items():
        if name == "CORRUPT_TRUNCATED":
            continue
        dfile = read_dicom(path)
        ts = dfile.meta.transfer_syntax
        cs = dfile.codestream() if ts in GPU_SYNTAXES else b""
        reason = gpu_unsupported_reason(dfile.meta, cs)
        if name in want_cpu:
            assert want_cpu[name] in reason, (name, reason)
        elif name == "J2K_ROWS_MISMATCH":
            assert "header says 30x" in reason
        else:
            assert reason is None, (name, reason)
        if ts == TS.JPEG_LOSSLESS_SV1:
            assert "decoded on the CPU" in gpu_unsupported_reason(dfile.meta, cs, CPU_SYNTAXES)


# --------------------------------------------------------------------------- DALI CPU pipeline
def test_cpu_pipeline_decodes_like_pydicom(runner, files):
    names = list(files)
    samples, failed, batches = _collect(runner, range(len(names)))
    assert sorted(list(samples) + list(failed)) == list(range(len(names)))  # every row accounted for
    assert [i for b in batches for i in b] == list(range(len(names)))  # row order kept
    assert all(len(b) <= 4 for b in batches) and len(batches) == -(-len(names) // 4)
    for i, name in enumerate(names):
        if name in ("J2K_ROWS_MISMATCH", "CORRUPT_TRUNCATED"):
            assert i in failed and i not in samples, name
            continue
        s = samples[i]
        ref = pydicom_pixels(files[name])
        assert s.image.dtype == ref.dtype and np.array_equal(s.image, ref), name
        ts = read_dicom(files[name]).meta.transfer_syntax
        expected_route = (
            "decoder"
            if name in ("J2K_16_12_MONO2", "J2K_16_14_MONO1", "J2K_16_16_MONO2", "HTJ2K_16_12_MONO1")
            else "raw"
        )
        assert s.route == expected_route, (name, s.route, s.message)
        if ts == TS.JPEG_LOSSLESS_SV1:  # lossless JPEG goes through the CPU branch on the CPU
            assert "decoded on the CPU" in s.message
    assert "header says 30x" in failed[names.index("J2K_ROWS_MISMATCH")]


def test_epochs_follow_the_plan_order_and_pad(runner, files):
    rows = [5, 0, 9, 2, 7]  # a sampler's order, not sorted; 4 + 1 (padded) batches
    samples, failed, batches = _collect(runner, rows)
    assert batches == [[5, 0, 9, 2], [7]]
    assert not failed
    assert list(runner.epoch([])) == []  # an empty shard
    assert _collect(runner, [3])[2] == [[3]]
    assert runner.stats["rebuilds"] == 0


def test_zero_copy_on_the_cpu(runner, files):
    from dali_pipelines import handoff

    batch = next(iter(runner.epoch([0, 1])))
    images = batch.keep[0]
    for j, s in enumerate(batch.samples):
        assert handoff.shares_memory(s.image, images[j])
        t = handoff.to_torch(s.image)
        assert t.data_ptr() == handoff.data_ptr(images[j])


def test_probe_drops_a_codec_the_decoder_gets_wrong(runner):
    # DALI's CPU decoder cannot decode lossless JPEG: the probe must route it away.
    good = runner._probe(frozenset(GPU_SYNTAXES))
    assert TS.JPEG_LOSSLESS_SV1 not in good
    assert {TS.JPEG2000_LOSSLESS, TS.HTJ2K_LOSSLESS} <= good


def test_failed_batch_falls_back_per_sample(files):
    from dali_pipelines.pipelines import DecodeRunner

    names = list(files)
    broken = [names.index("J2K_16_14_MONO1"), names.index("HTJ2K_16_12_MONO1")]
    paths = [files[n] for n in names[:8]]
    with DecodeRunner(paths, batch_size=4, device="cpu", workers=1, threads=1, fail_indices=broken) as r:
        pipe = r._pipe
        samples, failed, batches = _collect(r, range(len(paths)))
        assert r._pipe is pipe and r.stats["rebuilds"] == 0  # not rebuilt
    assert r.stats["batch_failures"] >= 1 and r.stats["cpu_fallback"] == len(broken)
    assert not failed and sorted(samples) == list(range(len(paths)))  # no sample lost
    assert [i for b in batches for i in b] == list(range(len(paths)))
    for i in range(len(paths)):
        assert np.array_equal(samples[i].image, pydicom_pixels(paths[i])), names[i]
    assert {samples[i].route for i in broken} == {"cpu"}
    neighbours = {samples[i].route for i in range(4) if i not in broken}
    assert neighbours <= {"retry", "raw"}


# --------------------------------------------------------------------------- loader GPU path, on the CPU
@pytest.fixture(scope="module")
def loader(files):
    from dali_pipelines.loader import DicomLoader

    paths = list(files.values())
    with DicomLoader(
        paths,
        labels=np.arange(len(paths), dtype=np.float32),
        batch_size=3,
        size=(32, 24),
        device="cpu",
        engine="dali",
        workers=1,
    ) as ld:
        yield ld


def test_loader_dali_engine_equals_cpu_engine(loader, files):
    from dali_pipelines.loader import DicomLoader

    assert loader.engine_name == "dali"
    dali = list(loader)
    cpu_loader = DicomLoader(
        loader.paths, labels=loader.labels, batch_size=3, size=(32, 24), device="cpu", engine="cpu", workers=0
    )
    cpu = list(cpu_loader)
    assert len(dali) == len(cpu) == len(loader)
    for a, b in zip(dali, cpu):
        assert a["image"].shape[1:] == (1, 32, 24) and a["image"].dtype == b["image"].dtype
        assert a["index"].tolist() == b["index"].tolist()
        assert a["label"].tolist() == b["label"].tolist() == [float(i) for i in a["index"].tolist()]
        np.testing.assert_allclose(a["image"].numpy(), b["image"].numpy(), atol=1e-6)
        assert [f["index"] for f in a["failed"]] == [f["index"] for f in b["failed"]]
    bad = {f["index"] for d in dali for f in d["failed"]}
    names = list(files)
    assert bad == {names.index("J2K_ROWS_MISMATCH"), names.index("CORRUPT_TRUNCATED")}


def test_loader_dali_engine_shards_and_sampler(loader):
    loader.sampler = [10, 1, 8, 3, 6, 5, 4]
    loader.shard = (1, 2)  # rows 1, 3, 5
    got = [i for d in loader for i in d["index"].tolist()]
    assert got == [1, 3, 5]
    loader.shard = (0, 2)  # rows 10, 8, 6, 4 (10 is the corrupt file)
    out = list(loader)
    assert [i for d in out for i in d["index"].tolist()] == [8, 6, 4]
    assert [f["index"] for d in out for f in d["failed"]] == [10]
    assert loader.stats["rebuilds"] == 0
    loader.sampler, loader.shard = None, (0, 1)


# --------------------------------------------------------------------------- GPU chain, numpy path
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
def test_fused_voi_numpy_path_equals_apply_voi(files, name):
    dfile = read_dicom(files[name])
    raw = pydicom_pixels(files[name])
    params = record_params(dfile.meta)
    got = voi_fused(raw, params)
    assert got.dtype == np.float32 and got.shape == raw.shape
    np.testing.assert_allclose(got, apply_voi(raw, dfile.meta), atol=1e-6, rtol=0)
    half = voi_fused(raw, params, out_dtype=np.float16)
    assert half.dtype == np.float16
    np.testing.assert_allclose(half.astype(np.float32), got, atol=1e-3)
    with pytest.raises(ValueError, match="allowed: float32, float16"):
        voi_fused(raw, params, out_dtype=np.float64)


def test_fused_voi_minmax_with_rescale(files):
    dfile = read_dicom(files["J2K_16_12_MONO2"])
    raw = pydicom_pixels(files["J2K_16_12_MONO2"])
    for slope in (2.0, -0.5):
        meta = dfile.meta.replace(window_centers=(), window_widths=(), rescale_slope=slope, rescale_intercept=-100.0)
        np.testing.assert_allclose(voi_fused(raw, record_params(meta)), apply_voi(raw, meta), atol=1e-6)


@pytest.mark.parametrize("name", ["J2K_16_12_MONO2", "J2K_16_14_MONO1", "HTJ2K_16_12_MONO1", "JLL_16_16_MONO2"])
def test_fused_chain_numpy_path_equals_cpu_chain(files, name):
    dfile = read_dicom(files[name])
    raw = pydicom_pixels(files[name])
    params = record_params(dfile.meta)
    for stage, size in (("voi", None), ("crop", None), ("crop", (32, 24))):
        want = preprocess(raw, dfile.meta, stage=stage, size=size)
        got = preprocess_image(raw, params, stage=stage, size=size)
        assert got.box == want.box and got.flipped == want.flipped
        np.testing.assert_allclose(got.image, want.image, atol=1e-6)
    batch, per = preprocess_batch([raw, raw], [params, params], size=(32, 24))
    assert batch.shape == (2, 1, 32, 24) and batch.dtype == np.float32
    np.testing.assert_allclose(batch[1, 0], preprocess(raw, dfile.meta, size=(32, 24)).image, atol=1e-6)


def test_fused_chain_lut_images_need_their_header(files):
    from decode.meta import Lut

    dfile = read_dicom(files["J2K_16_12_MONO2"])
    meta = dfile.meta.replace(voi_lut=Lut(first_map=0, bits=12, data=np.arange(4096, dtype=np.uint16)[::-1].copy()))
    raw = pydicom_pixels(files["J2K_16_12_MONO2"])
    with pytest.raises(ValueError, match="header"):
        preprocess_image(raw, record_params(meta), stage="voi")
    got = preprocess_image(raw, record_params(meta), meta=meta, stage="voi").image
    np.testing.assert_allclose(got, apply_voi(raw, meta), atol=1e-6)


# --------------------------------------------------------------------------- nvImageCodec, CPU_ONLY
def test_nvimgcodec_cpu_batch_decode_is_exact(files):
    pytest.importorskip("nvidia.nvimgcodec")
    from decode.backends.nvimgcodec_backend import NvImageCodecDecoder

    names = ["J2K_16_12_MONO2", "J2K_16_16_MONO2", "HTJ2K_16_12_MONO1"]
    streams = [read_dicom(files[n]).codestream() for n in names]
    out = NvImageCodecDecoder(device="cpu").decode_batch(streams[:2] + [b"\xff\x4f\xff\x51junk" * 8] + streams[2:])
    assert out[2] is None  # the bad sample only
    for arr, n in zip(out[:2] + out[3:], names):
        assert isinstance(arr, np.ndarray) and np.array_equal(arr, pydicom_pixels(files[n])), n
    for ts, (cs, expected) in probe_codestreams(CPU_SYNTAXES).items():
        assert np.array_equal(NvImageCodecDecoder(device="cpu").decode_batch([cs])[0], expected), ts


def test_nvimgcodec_registry_backend_is_opt_in(files):
    pytest.importorskip("nvidia.nvimgcodec")
    from decode.backends import AUTO_ORDER, BACKENDS
    from decode.backends.nvimgcodec_backend import register
    from decode.decoding import decode_file

    assert "nvimgcodec" not in BACKENDS  # not at import: it cannot decode signed J2K
    order = list(AUTO_ORDER)
    try:
        assert register()
        assert AUTO_ORDER.index("nvimgcodec") > AUTO_ORDER.index("imagecodecs")
        dec = decode_file(files["J2K_16_14_MONO1"], "nvimgcodec", fallback=False)
        assert dec.backend == "nvimgcodec" and np.array_equal(dec.pixels, pydicom_pixels(files["J2K_16_14_MONO1"]))
        assert decode_file(files["JLL_16_12_MONO1"], "nvimgcodec").backend != "nvimgcodec"  # not its syntax
        signed = decode_file(files["J2K_SIGNED_16_12"], "nvimgcodec")  # fails in it, pydicom takes over
        assert signed.backend == "pydicom" and np.array_equal(signed.pixels, pydicom_pixels(files["J2K_SIGNED_16_12"]))
    finally:
        BACKENDS.pop("nvimgcodec", None)
        AUTO_ORDER[:] = order


# --------------------------------------------------------------------------- CLI --device
def test_decode_cli_device(files, tmp_path):
    from dali_pipelines.cli_decode import resolve
    from training.cli import main

    path = files["J2K_16_12_MONO2"]
    device, engine, why = resolve("cuda", "auto")
    if device == "error":  # no GPU here: refused with the reason, nothing written
        assert why
        assert main(["decode", path, "--out", str(tmp_path / "a"), "--device", "cuda"]) == 2
        assert not os.path.exists(tmp_path / "a" / "J2K_16_12_MONO2.npy")
        assert resolve("auto", "auto")[:2] == ("cpu", None)
    args = ["--device", "auto", "--stage", "crop", "--size", "32x24", "--workers", "1"]
    assert main(["decode", path, "--out", str(tmp_path / "b"), *args]) == 0
    got = np.load(tmp_path / "b" / "J2K_16_12_MONO2.npy")
    dfile = read_dicom(path)
    np.testing.assert_allclose(got, preprocess(pydicom_pixels(path), dfile.meta, size=(32, 24)).image, atol=1e-5)


# --------------------------------------------------------------------------- decoder bit depth
@pytest.mark.parametrize("precision", [9, 12, 14, 15, 16])
def test_stretched_decoder_output_is_undone_exactly(precision):
    from decode.backends.depth import classify, stretch, undo_stretch

    x = np.arange(1 << precision, dtype=np.uint16).reshape(-1, 1 << min(precision, 8))
    y = stretch(x, precision)  # what DALI's mixed decoder returns for a `precision`-bit frame
    if precision < 16:
        assert y.max() == 65535 and not np.array_equal(y, x)
        assert classify(y, x, precision) == "scaled"
    assert np.array_equal(undo_stretch(y.copy(), precision), x)
    assert classify(x, x, precision) == "exact"
    assert classify(np.zeros_like(x), x, precision) is None  # nvJPEG's all-zero lossless output


def test_records_carry_codestream_precision_and_syntax(files):
    from dali_pipelines.records import ROUTE_DECODER, ROUTE_RAW, I, prepare_sample
    from decode.backends.depth import SYNTAX_CODES

    rec = prepare_sample(files["J2K_16_14_MONO1"], 7)
    assert rec.route == ROUTE_DECODER and rec.info[I["index"]] == 7
    assert rec.info[I["precision"]] == 14 and SYNTAX_CODES[rec.info[I["syntax"]]] == TS.JPEG2000_LOSSLESS
    assert rec.info[I["monochrome1"]] == 1 and rec.params.dtype == np.float32
    rec = prepare_sample(files["JLL_16_12_MONO1"], 3, gpu_syntaxes=CPU_SYNTAXES)
    assert rec.route == ROUTE_RAW and rec.raw.shape[-1] == 1 and rec.raw.dtype == np.uint16
    assert np.array_equal(rec.raw[..., 0], pydicom_pixels(files["JLL_16_12_MONO1"]))


@pytest.mark.parametrize("engine", ["nvimgcodec", "dali"])
def test_gpu_decode_cli_flow_on_the_engines_cpu_decoders(files, tmp_path, engine):
    """``rsna-mammo decode --device cuda``'s batch flow, run with the engine's CPU decoder + numpy."""
    pytest.importorskip("nvidia.nvimgcodec")
    from dali_pipelines.decode_files import decode_jobs
    from decode.cli_decode import DecodeJob, output_stems, write_outputs

    names = list(files)
    paths = [files[n] for n in names]
    jobs = [
        DecodeJob(p, o, "crop", (32, 24), "auto", True, False)
        for p, o in zip(paths, output_stems(paths, str(tmp_path)))
    ]
    got = decode_jobs(jobs, engine=engine, device="cpu", workers=2, batch_size=3, write=write_outputs, timeout=60)
    results = {job.path: (ok, res) for job, ok, res in got}
    assert len(results) == len(paths)
    for name, path in files.items():
        ok, res = results[path]
        if name in ("J2K_ROWS_MISMATCH", "CORRUPT_TRUNCATED"):
            assert not ok and res.path == path
            continue
        assert ok, (name, res)
        ts = read_dicom(path).meta.transfer_syntax
        on_decoder = ts in CPU_SYNTAXES and name not in ("J2K_SIGNED_16_12", "J2K_8_8_MONO2")
        assert (res["backend"] == f"{engine}-cpu") == on_decoder, (name, res["backend"])
        assert res["route"] == ("decoder" if on_decoder else "raw")
        want = preprocess(pydicom_pixels(path), read_dicom(path).meta, size=(32, 24)).image
        np.testing.assert_allclose(np.load(res["out"]), want, atol=1e-6)


def test_a_hung_read_in_a_dali_worker_costs_its_row_only(files):
    """DALI's source workers read each row in a contained child with a per-file timeout."""
    from dali_pipelines.pipelines import DecodeRunner
    from tests.engine_helpers import HangingPrepareRow

    names = ["J2K_16_12_MONO2", "J2K_16_16_MONO2", "HTJ2K_16_12_MONO1", "NATIVE_16_12_MONO2"]
    paths = tuple(files[n] for n in names)
    task = HangingPrepareRow(paths, hang_rows=frozenset({1}))
    with DecodeRunner(paths, batch_size=2, device="cpu", workers=1, threads=1, timeout=3, task=task) as r:
        samples, failed, batches = _collect(r, range(len(paths)))
        assert r.stats["rebuilds"] == 0
    assert list(failed) == [1] and "timed out after 3 s" in failed[1]
    assert batches == [[0, 1], [2, 3]]
    for i in (0, 2, 3):
        assert np.array_equal(samples[i].image, pydicom_pixels(paths[i])), names[i]
