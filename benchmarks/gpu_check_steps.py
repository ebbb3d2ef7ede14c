"""The data and the five checks of ``benchmarks/gpu_check.py``, for either engine.

Every step takes ``device`` ("cuda", or "cpu" to exercise the script without a GPU: the
engines' CPU decoders and numpy). A check that raises is recorded in ``summary.errors``
and stays False; the other checks still run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import numpy as np

from decode.xp import to_host

log = logging.getLogger("gpu_check")

FULL = (3328, 2560)


class Budget:
    """Wall-clock budget: later phases are skipped (and said so) once it is spent."""

    def __init__(self, seconds: float):
        self.t0 = time.monotonic()
        self.seconds = seconds
        self.skipped: list[str] = []

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def left(self) -> float:
        return self.seconds - self.elapsed()

    def allow(self, phase: str, need: float) -> bool:
        if self.left() >= need:
            return True
        self.skipped.append(phase)
        log.warning("skipping %s: %.0f s left, about %.0f s needed", phase, self.left(), need)
        return False


def record_error(errors: dict, name: str, exc: BaseException) -> None:
    """Log a phase that raised and keep its reason in ``summary.errors`` (its check stays False)."""
    log.exception("gpu_check: %s raised", name)
    errors[name] = " ".join(f"{type(exc).__name__}: {exc}".split())[:500]


def stream_ptr(device: str) -> int:
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


# --- runners ------------------------------------------------------------------------------


def nvimgcodec_runner(paths, *, device: str, workers: int, batch: int, fail_indices=()):
    from dali_pipelines.nvimgcodec_engine import NvImageCodecRunner

    return NvImageCodecRunner(paths, batch_size=batch, device=device, workers=workers, fail_indices=fail_indices)


def dali_runner(paths, *, device: str, workers: int, batch: int, fail_indices=()):
    from dali_pipelines.pipelines import DecodeRunner

    return DecodeRunner(paths, batch_size=batch, device=device, workers=workers, threads=4, fail_indices=fail_indices)


RUNNERS = {"nvimgcodec": nvimgcodec_runner, "dali": dali_runner}


def epoch(engine: str, runner, rows, device: str):
    """One pass of a runner over ``rows`` (the nvImageCodec runner on the current stream)."""
    if engine == "nvimgcodec":
        return runner.epoch(rows, cuda_stream=stream_ptr(device))
    return runner.epoch(rows)


# --- checks -------------------------------------------------------------------------------


def check_decode(engine: str, runner, paths: Sequence[str], refs, ts_of: dict[str, str], device: str) -> dict:
    """Decode every file once through the engine; per syntax: exact, equal and the routes taken.

    ``exact``: every file came from the GPU decoder (route ``decoder``) with pydicom's
    values; ``equal``: every file has pydicom's values, whichever route it took.
    """
    ok: dict[str, bool] = {}
    equal: dict[str, bool] = {}
    routes: dict[str, list[str]] = {}
    keep = []
    for batch in epoch(engine, runner, range(len(paths)), device):
        keep.append(batch)
        for s in batch.samples:
            p = paths[s.index]
            ts = ts_of[p]
            routes.setdefault(ts, []).append(s.route)
            same = bool(np.array_equal(to_host(s.image), refs[p]))
            equal[ts] = equal.get(ts, True) and same
            ok[ts] = ok.get(ts, True) and same and s.route == "decoder"
        for i, reason in batch.failed:
            ok[ts_of[paths[i]]] = equal[ts_of[paths[i]]] = False
            log.error("%s check: %s failed: %s", engine, paths[i], reason)
    routes = {ts: sorted(set(r)) for ts, r in routes.items()}
    return {"exact": ok, "equal": equal, "routes": routes, "keep": keep}


def check_voi(paths: Sequence[str], refs, device: str, size) -> dict[str, object]:
    """CuPy chain vs numpy chain (VOI; crop + resize to ``size``): max |difference| and boxes."""
    from dali_pipelines.handoff import to_device
    from decode.chain import preprocess
    from decode.dicom import read_dicom
    from decode.fused_chain import preprocess_image, record_params

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


def check_zero_copy_nvimgcodec(decoder, path: str, device: str) -> dict[str, object]:
    """An nvImageCodec image, its CuPy view and the torch tensor made from it share one pointer."""
    from dali_pipelines import handoff
    from decode.dicom import read_dicom

    img = decoder.decode_images([read_dicom(path).codestream()], cuda_stream=stream_ptr(device))[0]
    if img is None:  # nvImageCodec could not decode it
        return {"ok": False, "reason": "no image"}
    arr = handoff.nvimgcodec_to_array(img)
    t = handoff.to_torch(arr)
    ok = t.device.type == device and handoff.data_ptr(img) == handoff.data_ptr(arr) == t.data_ptr()
    return {"ok": bool(ok), "pointers": [hex(handoff.data_ptr(img)), hex(t.data_ptr())]}


def check_zero_copy_dali(keep, device: str) -> dict[str, object]:
    """A DALI output sample, its CuPy view and the torch tensor share one pointer."""
    from dali_pipelines import handoff

    batch = next((b for b in keep if b.keep is not None), None)  # None: every DALI batch fell back
    if batch is None:
        return {"ok": False, "reason": "every batch fell back"}
    tensor = batch.keep[0][0]  # sample 0 of a batch that came out of the pipeline
    arr = handoff.dali_to_array(tensor)
    t = handoff.to_torch(arr)
    ok = t.device.type == device and handoff.data_ptr(tensor) == handoff.data_ptr(arr) == t.data_ptr()
    return {"ok": bool(ok), "pointers": [hex(handoff.data_ptr(tensor)), hex(t.data_ptr())]}


def check_fallback(
    engine: str, paths: Sequence[str], refs, ts_of: dict, *, workers: int, device: str, corrupt: str
) -> dict:
    """A batch of 4 with one codestream the decoder is made to fail on (row 1) and a truncated file (row 2).

    Passes when row 1 is decoded on the CPU with pydicom's values, the truncated file is a
    failed row, every other row comes from the GPU decoder (DALI retries a failed batch's
    rows one by one: ``retry``) or, for a syntax the decoder does not take on this device,
    from the CPU route, with pydicom's values, and nothing is lost.
    """
    files = [*list(paths[:2]), corrupt, *list(paths[2:])]
    broken = [1]
    got, failed = {}, {}
    with RUNNERS[engine](files, device=device, workers=workers, batch=4, fail_indices=broken) as r:
        for batch in epoch(engine, r, range(len(files)), device):
            got.update({s.index: s for s in batch.samples})
            failed.update(dict(batch.failed))
        stats = dict(r.stats)
        on_decoder = {i: ts_of.get(f) in r.syntaxes for i, f in enumerate(files)}
    good = [i for i in range(len(files)) if i != 2]
    exact = all(i in got and np.array_equal(to_host(got[i].image), refs[files[i]]) for i in good)
    ok = (
        sorted(list(got) + list(failed)) == list(range(len(files)))
        and list(failed) == [2]
        and exact
        and on_decoder[1]
        and got[1].route == "cpu"
        and all(got[i].route in (("decoder", "retry") if on_decoder[i] else ("raw",)) for i in good if i != 1)
    )
    return {
        "ok": bool(ok),
        "stats": stats,
        "routes": {str(i): s.route for i, s in sorted(got.items())},
        "failed": {str(i): r for i, r in failed.items()},
    }


def write_truncated(folder: str, good_path: str) -> str:
    """A copy of ``good_path`` cut in the middle of its pixel data."""
    import os

    data = open(good_path, "rb").read()
    path = os.path.join(folder, "CORRUPT_TRUNCATED.dcm")
    with open(path, "wb") as f:
        f.write(data[: len(data) * 2 // 3])
    return path


def run_checks(ctx: dict, checks: dict, summary: dict, save) -> dict:
    """The five checks for the tier's engines, into ``checks`` (booleans) and ``summary`` (details).

    Returns:
        ``{(engine, transfer_syntax): exact}`` (decoded on the GPU decoder, pydicom's values) and
        ``{(engine + "-loader", transfer_syntax): equal}`` (pydicom's values by any route) for the rows.
    """
    import os
    import tempfile

    from decode.syntax import JPEG2000_LOSSLESS, JPEG_LOSSLESS_SV1, short_name

    args, device, groups, paths, refs = ctx["args"], ctx["device"], ctx["groups"], ctx["paths"], ctx["refs"]
    engines = ["nvimgcodec"] if args.tier == "quick" else ["nvimgcodec", "dali"]
    errors = summary.setdefault("errors", {})
    per: dict[str, dict[str, bool]] = {k: {} for k in ("j2k_exact", "jll_exact", "zero_copy", "fallback")}
    exact_by: dict = {}
    for engine in engines:
        try:
            with RUNNERS[engine](paths, device=device, workers=ctx["workers"], batch=8) as runner:
                res = check_decode(engine, runner, paths, refs, ctx["ts_of"], device)
                if engine == "nvimgcodec":
                    zc = check_zero_copy_nvimgcodec(runner.decoder, paths[0], device)
                    modes = runner.decoder.modes
                else:
                    zc = check_zero_copy_dali(res["keep"], device)
                    modes = runner.modes
                summary[engine] = {
                    "exact": {short_name(k): v for k, v in res["exact"].items()},
                    "routes": {short_name(k): v for k, v in res["routes"].items()},
                    "modes": {short_name(k): v for k, v in modes.items()},
                    "syntaxes_on_decoder": sorted(short_name(s) for s in runner.syntaxes),
                    "zero_copy": zc,
                }
                exact_by.update({(engine, ts): bool(v) for ts, v in res["exact"].items()})
                exact_by.update({(f"{engine}-loader", ts): bool(v) for ts, v in res["equal"].items()})
                per["j2k_exact"][engine] = bool(res["exact"].get(JPEG2000_LOSSLESS))
                per["jll_exact"][engine] = bool(res["exact"].get(JPEG_LOSSLESS_SV1))
                per["zero_copy"][engine] = bool(zc["ok"])
                del res
        except Exception as exc:
            record_error(errors, f"{engine}_decode", exc)
        save()
        try:
            folder = tempfile.mkdtemp(prefix="rsna-gpu-check-corrupt-")
            sample = groups[(JPEG2000_LOSSLESS, 12)][:3] + groups[(JPEG_LOSSLESS_SV1, 12)][:3]
            corrupt = write_truncated(folder, sample[0])
            fb = check_fallback(engine, sample, refs, ctx["ts_of"], workers=2, device=device, corrupt=corrupt)
            summary.setdefault("fallback", {})[engine] = fb
            per["fallback"][engine] = fb["ok"]
            os.unlink(corrupt)
        except Exception as exc:
            record_error(errors, f"{engine}_fallback", exc)
        save()
    voi_paths = [groups[(ts, 12)][0] for ts in (JPEG2000_LOSSLESS, JPEG_LOSSLESS_SV1)] + [
        groups[(JPEG2000_LOSSLESS, 14)][0]
    ]
    try:
        voi = check_voi(voi_paths, refs, device, ctx["chain_size"])
        checks["voi_match"] = voi["ok"]
        summary["voi"] = voi
    except Exception as exc:
        record_error(errors, "voi_match", exc)
    for name, by_engine in per.items():
        checks[name] = len(by_engine) == len(engines) and all(by_engine.values())
    return exact_by
