"""The steps of ``benchmarks/gpu_check.py``: test data, the five checks, timed GPU stages.

Every step takes ``device`` ("cuda", or "cpu" to exercise the script without a GPU):
CUDA events time GPU work on the current stream, ``perf_counter`` CPU work; peak device
memory is ``cudaMemGetInfo`` above the level when the step started (DALI's pool is not
torch's or CuPy's, so their counters would miss it).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from benchmarks.measure import Timer

log = logging.getLogger("gpu_check")

FULL = (3328, 2560)


def to_host(arr) -> np.ndarray:
    from dali_pipelines.handoff import to_host as _to_host

    return _to_host(arr)


class GpuMemory:
    """Peak device memory in use (``cudaMemGetInfo``) above the level at creation; None on the CPU."""

    def __init__(self, device: str):
        self._info = None
        if device == "cuda":
            import cupy

            self._info = cupy.cuda.runtime.memGetInfo
            free, total = self._info()
            self.base = self.peak = total - free

    def sample(self) -> None:
        if self._info is not None:
            free, total = self._info()
            self.peak = max(self.peak, total - free)

    @property
    def mb(self) -> float | None:
        return None if self._info is None else round((self.peak - self.base) / 2**20, 1)


def _stream_ptr(device: str) -> int:
    if device != "cuda":
        return 0
    import torch

    return int(torch.cuda.current_stream().cuda_stream)


# --- data ---------------------------------------------------------------------------------


def make_files(folder: str, files: int, size=FULL) -> dict[tuple, list[str]]:
    """Synthetic files: ``{(transfer_syntax, bits): [paths]}`` for .90 / .70 at 12 and 14 bits."""
    from benchmarks.synthdata import synthesize

    out = {}
    for bits in (12, 14):
        for ts, paths in synthesize(folder, size=size, files=files, bits=bits, workers=0, progress=False).items():
            out[(ts, bits)] = paths
    return out


def _pydicom_pixels(path: str) -> np.ndarray:
    import pydicom

    return pydicom.dcmread(path).pixel_array


def references(paths: Sequence[str]) -> dict[str, np.ndarray]:
    """pydicom's ``pixel_array`` of every file (a process pool over all cores)."""
    from decode.parallel import map_files

    refs = {}
    for path, ok, res in map_files(_pydicom_pixels, list(paths), workers=0):
        if not ok:
            raise RuntimeError(f"pydicom cannot decode its own reference file {path}: {res}")
        refs[path] = res
    return refs


# --- checks -------------------------------------------------------------------------------


def check_dali(runner, paths: Sequence[str], refs, ts_of: dict[str, str]) -> dict[str, object]:
    """Decode every file once through the GPU pipeline; exactness and route per syntax."""
    ok: dict[str, bool] = {}
    routes: dict[str, list[str]] = {}
    keep = []
    for batch in runner.epoch(range(len(paths))):
        keep.append(batch)
        for s in batch.samples:
            p = paths[s.index]
            ts = ts_of[p]
            routes.setdefault(ts, []).append(s.route)
            same = bool(np.array_equal(to_host(s.image), refs[p])) and s.route == "decoder"
            ok[ts] = ok.get(ts, True) and same
        for i, reason in batch.failed:
            ok[ts_of[paths[i]]] = False
            log.error("DALI check: %s failed: %s", paths[i], reason)
    return {
        "exact": ok,
        "routes": {ts: sorted(set(r)) for ts, r in routes.items()},
        "modes": dict(runner.modes),
        "keep": keep,
    }


def check_nvimgcodec(decoder, paths: Sequence[str], refs, ts_of, batch: int = 8) -> dict[str, bool]:
    """Batched nvImageCodec decode of every file vs pydicom; a syntax the probe rejected is False."""
    from decode.dicom import read_dicom

    ok: dict[str, bool] = {ts: False for ts in set(ts_of.values()) if ts not in decoder.modes}
    usable = [p for p in paths if ts_of[p] in decoder.modes]
    for i in range(0, len(usable), batch):
        chunk = usable[i : i + batch]
        out = decoder.decode_exact(
            [read_dicom(p).codestream() for p in chunk],
            [ts_of[p] for p in chunk],
            cuda_stream=_stream_ptr("cuda" if decoder.device == "cuda" else "cpu"),
        )
        for p, arr in zip(chunk, out):
            same = arr is not None and bool(np.array_equal(to_host(arr), refs[p]))
            ok[ts_of[p]] = ok.get(ts_of[p], True) and same
    return ok


def check_voi(paths: Sequence[str], refs, device: str, size) -> dict[str, object]:
    """CuPy chain vs numpy chain (VOI; crop + resize to ``size``): max |difference|."""
    from dali_pipelines.handoff import to_device
    from decode.chain import preprocess
    from decode.dicom import read_dicom
    from decode.gpu_chain import preprocess_image, record_params

    worst, boxes = 0.0, True
    for p in paths:
        meta = read_dicom(p).meta
        raw_dev = to_device(refs[p], device)
        for stage, out_size in (("voi", None), ("crop", size)):
            want = preprocess(refs[p], meta, stage=stage, size=out_size)
            got = preprocess_image(raw_dev, record_params(meta), stage=stage, size=out_size)
            boxes &= got.box == want.box and got.flipped == want.flipped
            worst = max(worst, float(np.abs(to_host(got.image) - want.image).max()))
    return {"ok": bool(boxes and worst <= 1e-5), "max_abs_diff": worst, "same_boxes": bool(boxes)}


def check_zero_copy(dali_keep, decoder, path: str) -> dict[str, object]:
    from dali_pipelines import handoff
    from decode.dicom import read_dicom

    device = "cuda" if decoder.device == "cuda" else "cpu"
    dali_ok, nv_ok, pointers = False, False, []
    batch = next((b for b in dali_keep if b.keep is not None), None)  # None: every DALI batch fell back
    if batch is not None:
        tensor = batch.keep[0][0]  # sample 0 of a batch that came out of the pipeline
        arr = handoff.dali_to_array(tensor)
        t = handoff.to_torch(arr)
        dali_ok = t.device.type == device and handoff.data_ptr(tensor) == handoff.data_ptr(arr) == t.data_ptr()
        pointers = [hex(handoff.data_ptr(tensor)), hex(t.data_ptr())]
    img = decoder.decode_images([read_dicom(path).codestream()])[0]
    if img is not None:  # None: nvImageCodec could not decode it
        arr2 = handoff.nvimgcodec_to_array(img)
        t2 = handoff.to_torch(arr2)
        nv_ok = t2.device.type == device and handoff.data_ptr(img) == handoff.data_ptr(arr2) == t2.data_ptr()
    return {"ok": bool(dali_ok and nv_ok), "dali": bool(dali_ok), "nvimgcodec": bool(nv_ok), "pointers": pointers}


def check_fallback(paths: Sequence[str], refs, workers: int, device: str) -> dict[str, object]:
    from dali_pipelines.pipelines import DecodeRunner

    broken = [1]
    got, failed = {}, {}
    with DecodeRunner(paths, batch_size=4, device=device, workers=workers, fail_indices=broken) as r:
        pipe = r._pipe
        for batch in r.epoch(range(len(paths))):
            got.update({s.index: s for s in batch.samples})
            failed.update(dict(batch.failed))
        rebuilt = r._pipe is not pipe or r.stats["rebuilds"] > 0
        stats = dict(r.stats)
    exact = all(np.array_equal(to_host(got[i].image), refs[p]) for i, p in enumerate(paths) if i in got)
    ok = (
        not failed
        and len(got) == len(paths)
        and exact
        and not rebuilt
        and got[1].route == "cpu"
        and stats["batch_failures"] >= 1
        and all(got[i].route != "cpu" for i in got if i not in broken)
    )
    return {"ok": bool(ok), "stats": stats, "routes": {str(i): s.route for i, s in sorted(got.items())}}


# --- benchmarks ---------------------------------------------------------------------------


def bench_dali_decode(runner, rows: Sequence[int], repeats: int) -> tuple:
    """Seconds per epoch over ``rows`` (timed around the whole epoch), and peak device MiB."""
    mem = GpuMemory(runner.device)
    secs = []
    for r in range(repeats + 1):  # first epoch: warm-up
        with Timer(runner.device) as t:
            for _batch in runner.epoch(rows):
                mem.sample()
        if r:
            secs.append(t.seconds)
    return secs, mem.mb


def bench_nvimgcodec_decode(decoder, streams, syntaxes, batch: int, repeats: int) -> tuple:
    device = "cuda" if decoder.device == "cuda" else "cpu"
    mem = GpuMemory(device)
    secs = []
    for r in range(repeats + 1):
        with Timer(device) as t:
            for i in range(0, len(streams), batch):
                decoder.decode_exact(streams[i : i + batch], syntaxes[i : i + batch], cuda_stream=_stream_ptr(device))
                mem.sample()
        if r:
            secs.append(t.seconds)
    return secs, mem.mb


def bench_loader(loader, rows: Sequence[int], repeats: int, device: str) -> tuple:
    """The DALI loader end to end: decode → VOI → crop → resize → torch ``[B, 1, H, W]``."""
    from dali_pipelines.gpu_loader import iterate_dali

    mem = GpuMemory(device)
    loader.sampler = list(rows)
    secs, images = [], 0
    for r in range(repeats + 1):
        n = 0
        with Timer(device) as t:
            for batch in iterate_dali(loader, device=device):
                n += 0 if batch["image"] is None else int(batch["image"].shape[0])
                mem.sample()
        if r:
            secs.append(t.seconds)
            images = n
    return secs, mem.mb, images


def bench_nvimgcodec_chain(decoder, streams, syntaxes, params, batch: int, repeats: int, size) -> tuple:
    from dali_pipelines import handoff
    from decode.gpu_chain import preprocess_batch

    device = "cuda" if decoder.device == "cuda" else "cpu"
    mem = GpuMemory(device)
    secs = []
    for r in range(repeats + 1):
        with Timer(device) as t:
            for i in range(0, len(streams), batch):
                raws = decoder.decode_exact(
                    streams[i : i + batch], syntaxes[i : i + batch], cuda_stream=_stream_ptr(device)
                )
                with handoff.on_current_stream():
                    out, _ = preprocess_batch(raws, params[i : i + batch], size=size)
                    handoff.to_torch(out)
                mem.sample()
        if r:
            secs.append(t.seconds)
    return secs, mem.mb


def row(stage, backend, device, ts, images, secs, batch_size, workers, peak_gpu_mb, exact, hw):
    from benchmarks.measure import summarize
    from benchmarks.schema import BenchResult

    stats = (
        summarize(secs, images, images * hw[0] * hw[1])
        if exact is not False
        else {"images_per_s": None, "mpix_per_s": None, "spread": None}
    )
    return BenchResult(
        stage=stage,
        backend=backend,
        device=device,
        transfer_syntax=ts,
        height=hw[0],
        width=hw[1],
        images=images,
        workers=workers,
        batch_size=batch_size,
        peak_host_mb=None,
        peak_gpu_mb=peak_gpu_mb,
        exact=exact,
        **stats,
    )
