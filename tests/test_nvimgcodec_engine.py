"""The nvImageCodec loader engine, and the routing / probe / exactness rules both GPU engines share.

Here (no GPU) the engine runs with nvImageCodec's ``CPU_ONLY`` backend — JPEG 2000 and HTJ2K
are decoded by it, lossless JPEG takes the CPU route — and the numpy chain; the tests marked
``gpu`` run the same engine on CUDA against the CPU path.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from decode import syntax as TS
from decode.backends.depth import codestream_precision, stretch
from decode.backends.nvimgcodec_backend import NvImageCodecDecoder
from decode.backends.probes import PROBE_BITS, probe_codestreams, probe_pixels
from decode.routing import CPU_SYNTAXES, GPU_SYNTAXES, calibrate, exact_output
from tests.dali_cases import CPU_CASES, GPU_CASES, pydicom_pixels, write_case, write_corrupt

pytest.importorskip("nvidia.nvimgcodec")

ALL_CASES = GPU_CASES + CPU_CASES
BAD = ("J2K_ROWS_MISMATCH", "CORRUPT_TRUNCATED")
#: On the CPU_ONLY decoder: unsigned 16-bit JPEG 2000 / HTJ2K (the rest takes the CPU route).
ON_CPU_DECODER = ("J2K_16_12_MONO2", "J2K_16_14_MONO1", "J2K_16_16_MONO2", "HTJ2K_16_12_MONO1")
GPU_CASES_NAMES = [c.name for c in GPU_CASES]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """``{case name: path}`` plus ``CORRUPT_TRUNCATED``; shapes differ per file."""
    folder = str(tmp_path_factory.mktemp("nvimgcodec_cases"))
    out = {}
    for k, case in enumerate(ALL_CASES):
        shape = (48 + 4 * (k % 3), 40 + 2 * (k % 2))
        out[case.name] = write_case(folder, case, shape=shape, seed=k, side="R" if k % 2 else "L")
    out["CORRUPT_TRUNCATED"] = write_corrupt(folder, out["J2K_16_12_MONO2"])
    return out


@pytest.fixture(scope="module")
def loader(files):
    from dali_pipelines.loader import DicomLoader

    paths = list(files.values())
    labels = np.arange(len(paths), dtype=np.float32)
    with DicomLoader(paths, labels, batch_size=3, size=(32, 24), device="cpu", engine="nvimgcodec", workers=2) as ld:
        yield ld


def _runner(paths, **kw):
    from dali_pipelines.nvimgcodec_engine import NvImageCodecRunner

    kw.setdefault("batch_size", 4)
    kw.setdefault("device", "cpu")
    kw.setdefault("workers", 2)
    return NvImageCodecRunner(paths, **kw)


def _collect(runner, rows):
    samples, failed, batches = {}, {}, []
    for batch in runner.epoch(rows):
        batches.append([s.index for s in batch.samples] + [i for i, _ in batch.failed])
        samples.update({s.index: s for s in batch.samples})
        failed.update(dict(batch.failed))
    return samples, failed, batches


# --------------------------------------------------------------------------- probes and calibration
def test_probe_codestreams_are_12_bit_and_decode_to_the_probe_image():
    import imagecodecs
    import libjpeg
    import openjpeg

    x = probe_pixels()
    assert x.dtype == np.uint16 and x.min() == 0 and x.max() == (1 << PROBE_BITS) - 1
    probes = probe_codestreams(GPU_SYNTAXES | {TS.EXPLICIT_LE})
    assert set(probes) == set(GPU_SYNTAXES)  # no probe for a native syntax
    independent = {
        TS.JPEG2000_LOSSLESS: (imagecodecs.jpeg2k_decode, openjpeg.decode),
        TS.HTJ2K_LOSSLESS: (imagecodecs.htj2k_decode, openjpeg.decode),
        TS.HTJ2K_LOSSLESS_RPCL: (imagecodecs.htj2k_decode, openjpeg.decode),
        TS.JPEG_LOSSLESS_SV1: (imagecodecs.jpeg8_decode, libjpeg.decode),
    }
    for ts, (cs, expected) in probes.items():
        assert cs.dtype == np.uint8 and cs.size < 4096, ts  # a few KB each
        assert codestream_precision(ts, bytes(cs)) == PROBE_BITS, ts  # SIZ / SOF precision 12, HTJ2K too
        assert np.array_equal(expected, x)
        for decode in independent[ts]:
            assert np.array_equal(np.asarray(decode(bytes(cs))), x), (ts, decode)


PYLIBJPEG_ONLY = """
import sys

class _Block:
    def find_spec(self, name, path=None, target=None):
        if name == "imagecodecs" or name.startswith("imagecodecs."):
            raise ImportError("imagecodecs is blocked for this test")

sys.meta_path.insert(0, _Block())
import libjpeg, openjpeg
from decode.routing import GPU_SYNTAXES, calibrate

def decode_one(cs):
    cs = bytes(cs)
    return libjpeg.decode(cs) if cs[:2] == b"\\xff\\xd8" else openjpeg.decode(cs)

modes = calibrate(decode_one, GPU_SYNTAXES, who="pylibjpeg")
assert modes == dict.fromkeys(GPU_SYNTAXES, "exact"), modes
assert "imagecodecs" not in sys.modules
print("ok")
"""


def test_probing_a_decoder_needs_no_encoder():
    """The probes are constants: with imagecodecs unimportable the start-up probe still runs."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run(
        [sys.executable, "-c", PYLIBJPEG_ONLY],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, PYTHONPATH=root),
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]


class StretchingDecoder(NvImageCodecDecoder):
    """nvImageCodec's CPU decoder plus DALI mixed's documented transform: ``p``-bit output stretched to 16 bits.

    ``p`` is the codestream's own precision (SIZ / SOF), as DALI reads it.
    """

    def __init__(self):
        super().__init__(device="cpu")

    def decode_batch(self, codestreams, *, cuda_stream=0):
        out = super().decode_batch(codestreams, cuda_stream=cuda_stream)
        return [
            None if a is None else stretch(a, codestream_precision(TS.JPEG2000_LOSSLESS, bytes(cs)))
            for a, cs in zip(out, codestreams)
        ]


def test_calibrate_says_exact_scaled_or_drops_the_codec(caplog):
    cpu = NvImageCodecDecoder(device="cpu")
    assert calibrate(lambda cs: cpu.decode_batch([cs])[0], GPU_SYNTAXES, who="cpu") == dict.fromkeys(
        CPU_SYNTAXES, "exact"
    )  # lossless JPEG: no image from CPU_ONLY, so it is left out
    assert StretchingDecoder().calibrate(CPU_SYNTAXES) == CPU_SYNTAXES
    with caplog.at_level(logging.WARNING, logger="decode.routing"):
        zeros = calibrate(lambda cs: np.zeros((40, 56), np.uint16), [TS.JPEG_LOSSLESS_SV1], who="all-zero")
        raising = calibrate(lambda cs: 1 / 0, [TS.JPEG2000_LOSSLESS], who="raising")
        wrong_shape = calibrate(lambda cs: probe_pixels()[:-1], [TS.JPEG2000_LOSSLESS], who="cropped")
    assert zeros == raising == wrong_shape == {}
    said = [r.message.split()[0] for r in caplog.records if "decoded on the CPU this run" in r.message]
    assert said[-3:] == ["all-zero", "raising", "cropped"]


def test_a_stretching_decoder_is_undone_per_codestream_precision():
    """A 12-bit HTJ2K comes back ×16 from a stretching decoder, a 16-bit one unchanged: both exact."""
    import imagecodecs

    dec = StretchingDecoder()
    dec.calibrate(CPU_SYNTAXES)
    assert dec.modes == dict.fromkeys(CPU_SYNTAXES, "scaled")
    x12 = probe_pixels()
    ht12, _ = probe_codestreams([TS.HTJ2K_LOSSLESS])[TS.HTJ2K_LOSSLESS]  # SIZ precision 12
    rng = np.random.default_rng(0)
    x16 = rng.integers(0, 65536, size=(24, 20), dtype=np.uint16)
    ht16 = imagecodecs.htj2k_encode(x16, level=0, reversible=True)  # SIZ precision 16
    x14 = (x16 >> 2).astype(np.uint16)
    j2k14 = imagecodecs.jpeg2k_encode(x14, level=0, codecformat="J2K", reversible=True, bitspersample=14)
    assert [codestream_precision(TS.HTJ2K_LOSSLESS, bytes(c)) for c in (ht12, ht16)] == [12, 16]
    raw = dec.decode_batch([ht12])[0]
    assert raw.max() == 65535 and not np.array_equal(raw, x12)  # what a stretching decoder returns
    out = dec.decode_exact([ht12, ht16, j2k14], [TS.HTJ2K_LOSSLESS, TS.HTJ2K_LOSSLESS, TS.JPEG2000_LOSSLESS])
    for got, want in zip(out, (x12, x16, x14)):
        assert got.dtype == np.uint16 and np.array_equal(got, want)
    # the same rule is what DALI's runner applies, by the precision in each sample's record
    again = exact_output(stretch(x12, 12), TS.HTJ2K_LOSSLESS, 12, dec.modes)
    assert np.array_equal(again, x12)
    assert np.array_equal(exact_output(x16.copy(), TS.HTJ2K_LOSSLESS, 16, dec.modes), x16)
    assert np.array_equal(exact_output(stretch(x12, 12), TS.HTJ2K_LOSSLESS, 12, {}), stretch(x12, 12))


def test_fused_voi_kernel_is_compiled_without_fused_multiply_add():
    from decode.fused_chain import KERNEL_OPTIONS, voi_kernel

    assert "--fmad=false" in KERNEL_OPTIONS
    assert "--fmad=false" in voi_kernel().kwargs["options"]  # built without a GPU; compiled on first call


@pytest.mark.parametrize("module", ["cupy", "nvidia.dali", "nvidia.nvimgcodec"])
def test_worker_pools_spawn_once_a_cuda_library_is_loaded(monkeypatch, module):
    from decode import parallel

    for name in parallel.CUDA_MODULES:
        monkeypatch.delitem(sys.modules, name, raising=False)
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():  # pragma: no cover - a GPU machine
        pytest.skip("torch holds CUDA in this process: pools always spawn here")
    assert parallel._context().get_start_method() == "fork"
    monkeypatch.setitem(sys.modules, module, object())
    assert parallel._context().get_start_method() == "spawn"


def test_dali_shared_memory_hint_fits_what_dev_shm_has(monkeypatch, caplog, tmp_path):
    from dali_pipelines import pipelines

    hint = pipelines.BYTES_PER_SAMPLE_HINT
    real = os.statvfs

    class Free:
        def __init__(self, free):
            self.f_bavail, self.f_frsize = free // 4096, 4096

    assert pipelines.shm_bytes_per_sample(12, 3, folder=str(tmp_path)) in (hint, *range(1 << 20, hint))
    monkeypatch.setattr(pipelines.os, "statvfs", lambda p: Free(12 * 3 * hint))
    assert pipelines.shm_bytes_per_sample(12, 3) == hint  # exactly enough
    free = 100 << 20
    monkeypatch.setattr(pipelines.os, "statvfs", lambda p: Free(free))
    with caplog.at_level(logging.WARNING, logger="dali_pipelines.pipelines"):
        small = pipelines.shm_bytes_per_sample(12, 3)
    assert small == int(0.8 * (free // 4096 * 4096)) // 36 and 3 * 12 * small <= free
    assert "/dev/shm has 100 MB free" in caplog.text and "lowered" in caplog.text
    monkeypatch.setattr(pipelines.os, "statvfs", lambda p: Free(1 << 20))
    assert pipelines.shm_bytes_per_sample(64, 3) == 1 << 20  # never below 1 MiB
    monkeypatch.setattr(pipelines.os, "statvfs", lambda p: (_ for _ in ()).throw(OSError("no shm")))
    assert pipelines.shm_bytes_per_sample(12, 3) == hint
    monkeypatch.setattr(pipelines.os, "statvfs", real)


# --------------------------------------------------------------------------- engine choice
def test_auto_engine_choice_follows_what_imports(monkeypatch):
    from dali_pipelines import engines
    from dali_pipelines.loader import DicomLoader

    state = {"dali": None, "nvimgcodec": None}
    monkeypatch.setattr(engines, "engine_unavailable_reason", lambda e, d: None if e == "cpu" else state[e])
    assert engines.resolve_engine("auto", "cuda") == ("dali", "DALI imports and CUDA is available")
    state["dali"] = "nvidia.dali does not import (ImportError)"
    name, why = engines.resolve_engine("auto", "cuda")
    assert name == "nvimgcodec" and "DALI unavailable: nvidia.dali does not import" in why
    state["nvimgcodec"] = "CuPy sees no CUDA GPU"
    name, why = engines.resolve_engine("auto", "cuda")
    assert name == "cpu" and "CuPy sees no CUDA GPU" in why
    state["dali"] = state["nvimgcodec"] = None
    assert engines.resolve_engine("auto", "cpu") == ("cpu", "the device is the CPU")
    assert engines.resolve_engine("nvimgcodec", "cpu") == ("nvimgcodec", "asked for")
    state["dali"] = "nvidia.dali does not import (ImportError)"
    with pytest.raises(ValueError, match="engine 'dali' cannot run on cuda here: nvidia.dali does not import"):
        engines.resolve_engine("dali", "cuda")
    with pytest.raises(ValueError, match="allowed: auto, dali, nvimgcodec, cpu"):
        engines.resolve_engine("gpu", "cuda")
    with pytest.raises(ValueError, match="allowed: auto, dali, nvimgcodec, cpu"):
        DicomLoader(["x.dcm"], engine="fast")
    with pytest.raises(ValueError, match="custom reader or a tensor cache runs on the cpu engine"):
        DicomLoader(["x.dcm"], engine="nvimgcodec", device="cpu", reader=lambda i: np.zeros((2, 2), np.float32))
    ld = DicomLoader(["x.dcm"], engine="auto", device="cpu", reader=lambda i: np.zeros((2, 2), np.float32))
    assert ld.engine_name == "cpu" and "custom reader" in ld.engine_reason


def test_engine_unavailable_reasons_here():
    from dali_pipelines.engines import engine_unavailable_reason

    assert engine_unavailable_reason("cpu", "cuda") is None
    assert engine_unavailable_reason("nvimgcodec", "cpu") is None  # imports; CPU_ONLY needs no GPU
    import torch

    if not torch.cuda.is_available():
        assert engine_unavailable_reason("nvimgcodec", "cuda") == "torch sees no CUDA GPU"


# --------------------------------------------------------------------------- the engine on the CPU
def test_engine_batches_equal_the_cpu_engine(loader, files):
    from dali_pipelines.loader import DicomLoader

    assert loader.engine_name == "nvimgcodec" and loader.engine_reason == "asked for"
    got = list(loader)
    want = list(
        DicomLoader(loader.paths, loader.labels, batch_size=3, size=(32, 24), device="cpu", engine="cpu", workers=0)
    )
    assert len(got) == len(want) == len(loader)
    for a, b in zip(got, want):
        assert a["index"].tolist() == b["index"].tolist()
        assert a["label"].tolist() == b["label"].tolist() == [float(i) for i in a["index"].tolist()]
        assert a["image"].dtype == b["image"].dtype and a["image"].shape == b["image"].shape
        assert a["image"].is_contiguous()
        np.testing.assert_allclose(a["image"].numpy(), b["image"].numpy(), atol=1e-6, rtol=0)
        assert [f["index"] for f in a["failed"]] == [f["index"] for f in b["failed"]]
    names = list(files)
    assert {f["index"] for d in got for f in d["failed"]} == {names.index(n) for n in BAD}
    stats = loader.stats
    assert stats["decoded"] == len(ON_CPU_DECODER) and stats["errors"] == len(BAD)
    assert stats["routed_raw"] == len(names) - len(ON_CPU_DECODER) - len(BAD)


def test_every_row_takes_its_route_and_decodes_exactly(files):
    names = list(files)
    with _runner(list(files.values())) as r:
        samples, failed, batches = _collect(r, range(len(names)))
    assert [i for b in batches for i in b] == list(range(len(names)))  # row order kept, 4 per batch
    assert [len(b) for b in batches] == [4, 4, 4]
    for i, name in enumerate(names):
        if name in BAD:
            assert i in failed and i not in samples, name
            continue
        s = samples[i]
        ref = pydicom_pixels(files[name])
        assert s.image.dtype == ref.dtype and np.array_equal(s.image, ref), name
        assert s.route == ("decoder" if name in ON_CPU_DECODER else "raw"), (name, s.route, s.message)
    assert "header says 30x" in failed[names.index("J2K_ROWS_MISMATCH")]
    assert "truncated" in failed[names.index("CORRUPT_TRUNCATED")]


def test_a_sample_the_decoder_fails_on_is_decoded_on_the_cpu_alone(files, caplog):
    names = list(files)
    broken = [names.index("J2K_16_14_MONO1"), names.index("HTJ2K_16_12_MONO1")]
    with (
        caplog.at_level(logging.WARNING, logger="dali_pipelines.nvimgcodec_engine"),
        _runner(list(files.values()), fail_indices=broken) as r,
    ):
        samples, failed, _ = _collect(r, range(len(names)))
        stats = dict(r.stats)
    assert stats["decoder_failures"] == stats["cpu_fallback"] == 2
    assert sorted(list(samples) + list(failed)) == list(range(len(names)))  # nothing lost
    assert {samples[i].route for i in broken} == {"cpu"}
    for i in broken:
        assert np.array_equal(samples[i].image, pydicom_pixels(files[names[i]]))
        assert samples[i].message and "imagecodecs" in samples[i].message
    assert {samples[names.index(n)].route for n in ON_CPU_DECODER if names.index(n) not in broken} == {"decoder"}
    assert "returned no image; decoded with imagecodecs on the CPU instead" in caplog.text


def test_an_injected_failing_decoder_loses_nothing(files):
    """A decoder that returns no image for every second sample of each batch: those go to the CPU."""

    class EverySecondFails(NvImageCodecDecoder):
        def decode_batch(self, codestreams, *, cuda_stream=0):
            out = super().decode_batch(codestreams, cuda_stream=cuda_stream)
            return out if len(out) == 1 else [None if k % 2 else a for k, a in enumerate(out)]

    names = list(files)
    good = [files[n] for n in ON_CPU_DECODER]
    with _runner(good, decoder=EverySecondFails(device="cpu")) as r:
        samples, failed, _ = _collect(r, range(len(good)))
    assert not failed and sorted(samples) == list(range(len(good)))
    assert [samples[i].route for i in range(len(good))] == ["decoder", "cpu", "decoder", "cpu"]
    for i, p in enumerate(good):
        assert np.array_equal(samples[i].image, pydicom_pixels(p)), names[i]


def test_sampler_order_shards_and_drop_last(files):
    from dali_pipelines.loader import DicomLoader

    paths = list(files.values())
    sampler = [10, 1, 8, 3, 6, 5, 4]
    with DicomLoader(
        paths, batch_size=2, size=(32, 24), device="cpu", engine="nvimgcodec", workers=1, sampler=sampler, shard=(1, 2)
    ) as ld:
        assert [d["index"].tolist() for d in ld] == [[1, 3], [5]]
        ld.shard = (0, 2)  # rows 10, 8, 6, 4 (10 is the corrupt file)
        out = list(ld)
        assert [d["index"].tolist() for d in out] == [[8], [6, 4]]
        assert [f["index"] for f in out[0]["failed"]] == [10] and out[0]["failed"][0]["path"] == paths[10]
        ld.drop_last, ld.shard = True, (1, 2)
        assert [d["index"].tolist() for d in ld] == [[1, 3]]


def test_stopping_early_and_closing_release_workers_and_thread(files):
    from dali_pipelines.loader import DicomLoader

    paths = list(files.values())
    ld = DicomLoader(paths, batch_size=2, size=(32, 24), device="cpu", engine="nvimgcodec", workers=2, prefetch=1)
    it = iter(ld)
    first = next(it)
    assert first["index"].tolist() == [0, 1]
    it.close()  # the consumer stops after one batch
    assert not any(t.name == "rsna-mammo-prefetch" and t.is_alive() for t in threading.enumerate())
    again = [d["index"].tolist() for d in ld]  # the next epoch is whole
    assert [i for b in again for i in b] + [10, 11] == sorted([i for b in again for i in b] + [10, 11])
    assert sum(len(b) for b in again) == len(paths) - 2 and set(sum(again, [])) == set(range(len(paths))) - {10, 11}
    procs = [w.proc for w in ld.engine.runner._pool._workers]
    assert procs and all(p.is_alive() for p in procs)
    ld.close()
    assert ld.engine.runner is None and not any(p.is_alive() for p in procs)
    ld.close()  # closing twice is fine
    assert [i for d in ld for i in d["index"].tolist()] == sum(again, [])  # a closed loader starts afresh


def test_a_hung_or_crashing_read_costs_its_row_only(files):
    from tests.engine_helpers import CrashingPrepareRow, HangingPrepareRow

    paths = tuple(files[n] for n in ON_CPU_DECODER)
    t0 = time.monotonic()
    with _runner(paths, timeout=3, task=HangingPrepareRow(paths, hang_rows=frozenset({1}))) as r:
        samples, failed, _ = _collect(r, range(len(paths)))
    assert time.monotonic() - t0 < 60
    assert list(failed) == [1] and "timed out after 3 s" in failed[1] and sorted(samples) == [0, 2, 3]
    with _runner(paths, task=CrashingPrepareRow(paths, crash_rows=frozenset({2}))) as r:
        samples, failed, _ = _collect(r, range(len(paths)))
    assert list(failed) == [2] and "crashed" in failed[2] and sorted(samples) == [0, 1, 3]


def test_dali_source_reads_each_row_in_a_contained_child(files):
    """The DALI source's per-file timeout: a hung read becomes its row's error record."""
    import pickle

    from dali_pipelines.records import ROUTE_DECODER, ROUTE_ERROR, ContainedPreparer
    from dali_pipelines.source import DicomSource
    from tests.engine_helpers import HangingPrepareRow

    paths = tuple(files[n] for n in ON_CPU_DECODER)
    prep = ContainedPreparer(HangingPrepareRow(paths, hang_rows=frozenset({0})), timeout=2)
    try:
        bad = prep(0, CPU_SYNTAXES)
        good = prep(1, CPU_SYNTAXES)
    finally:
        prep.close()
    assert bad.route == ROUTE_ERROR and bad.index == 0 and "timed out after 2 s" in bad.message
    assert good.route == ROUTE_DECODER and good.index == 1
    src = DicomSource(paths, str(files["J2K_16_12_MONO2"]) + ".plan", timeout=7)
    assert src._prepare.timeout == 7
    copy = pickle.loads(pickle.dumps(src))  # what DALI sends to its workers: no live child process
    assert copy._prepare._pool is None and copy._prepare.timeout == 7


def test_decode_command_gpu_flow_honours_the_timeout(files, tmp_path):
    from dali_pipelines.decode_files import decode_jobs
    from decode.cli_decode import DecodeJob, output_stems, write_outputs
    from tests.engine_helpers import HangingPrepareRow

    paths = [files[n] for n in ON_CPU_DECODER]
    jobs = [
        DecodeJob(p, o, "raw", None, "auto", True, False) for p, o in zip(paths, output_stems(paths, str(tmp_path)))
    ]
    task = HangingPrepareRow(tuple(paths), hang_rows=frozenset({3}))
    got = {
        job.path: (ok, res)
        for job, ok, res in decode_jobs(
            jobs, engine="nvimgcodec", device="cpu", workers=2, timeout=3, write=write_outputs, task=task
        )
    }
    assert len(got) == 4
    ok, err = got[paths[3]]
    assert not ok and "timed out after 3 s" in err.reason and err.path == paths[3]
    for p in paths[:3]:
        ok, res = got[p]
        assert ok and res["route"] == "decoder"
        assert np.array_equal(np.load(res["out"]), pydicom_pixels(p))


def test_prefetcher_hands_on_exceptions_and_stops_on_close():
    from dali_pipelines.engines import Prefetcher

    def produce(_ptr):
        yield {"image": None, "label": None, "index": None, "n": 1}
        raise RuntimeError("decoder thread broke")

    pf = Prefetcher(produce, depth=1, device="cpu", stop=threading.Event())
    it = iter(pf)
    assert next(it)["n"] == 1
    with pytest.raises(RuntimeError, match="decoder thread broke"):
        next(it)
    pf.close()

    made = []

    def forever(_ptr):
        n = 0
        while True:
            n += 1
            made.append(n)
            yield {"image": None, "label": None, "index": None, "n": n}

    pf = Prefetcher(forever, depth=2, device="cpu", stop=threading.Event())
    it = iter(pf)
    assert next(it)["n"] == 1
    time.sleep(0.5)  # the consumer works on batch 1 ...
    assert made[:3] == [1, 2, 3]  # ... while batches 2 and 3 are prepared (the queue holds 2) and 4 waits
    assert [next(it)["n"], next(it)["n"]] == [2, 3]
    t0 = time.monotonic()
    pf.close()
    assert not pf.thread.is_alive() and time.monotonic() - t0 < 5


# --------------------------------------------------------------------------- on a GPU
@pytest.mark.gpu
def test_probes_decode_exactly_with_nvimgcodec_on_the_gpu():
    dec = NvImageCodecDecoder(device="cuda")
    assert dec.calibrate(GPU_SYNTAXES) == GPU_SYNTAXES, f"probe rejected: {set(GPU_SYNTAXES) - set(dec.modes)}"


@pytest.mark.gpu
def test_gpu_engine_batches_equal_the_cpu_engine(files):
    import torch

    from dali_pipelines.loader import DicomLoader

    paths = list(files.values())
    labels = np.arange(len(paths), dtype=np.float32)
    with DicomLoader(paths, labels, batch_size=3, size=(64, 48), device="cuda", engine="nvimgcodec", workers=2) as g:
        got = list(g)
        stats = g.stats
    want = list(DicomLoader(paths, labels, batch_size=3, size=(64, 48), device="cpu", engine="cpu", workers=0))
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert a["image"].is_cuda and a["image"].dtype == torch.float32 and a["image"].is_contiguous()
        assert a["index"].tolist() == b["index"].tolist() and a["label"].tolist() == b["label"].tolist()
        np.testing.assert_allclose(a["image"].cpu().numpy(), b["image"].numpy(), atol=1e-5, rtol=0)
        assert [f["index"] for f in a["failed"]] == [f["index"] for f in b["failed"]]
    assert stats["decoded"] >= len(GPU_CASES), stats  # every GPU case on the GPU decoder


@pytest.mark.gpu
def test_gpu_routes_fallback_and_zero_copy(files):
    import cupy
    import torch

    from dali_pipelines import handoff
    from decode.dicom import read_dicom

    names = list(files)
    broken = [names.index("J2K_16_14_MONO1")]
    with _runner(list(files.values()), device="cuda", fail_indices=broken) as r:
        samples, failed, _ = _collect(r, range(len(names)))
        img = r.decoder.decode_images([read_dicom(files["J2K_16_12_MONO2"]).codestream()])[0]
    assert set(failed) == {names.index(n) for n in BAD}
    for i, name in enumerate(names):
        if name in BAD:
            continue
        s = samples[i]
        assert isinstance(s.image, cupy.ndarray)
        assert np.array_equal(cupy.asnumpy(s.image), pydicom_pixels(files[name])), name
        if name in GPU_CASES_NAMES:
            assert s.route == ("cpu" if i in broken else "decoder"), (name, s.route)
    arr = handoff.nvimgcodec_to_array(img)
    t = torch.from_dlpack(arr)
    assert t.is_cuda and t.data_ptr() == arr.data.ptr == img.__cuda_array_interface__["data"][0]
