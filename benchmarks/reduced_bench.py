"""Reduced-resolution JPEG 2000 decode, measured: CPU images/s per scale, the loader, and fidelity.

Reusable pieces (schema rows, any caller, e.g. a GPU box's quick tier):

* :func:`bench_reduced_decode` — OpenJPEG (through glymur) decoding the files at each
  scale (``full``, ``1/2``, ``1/4``, ``1/8``) over N worker processes: ``decode`` rows,
  backend ``openjpeg@<scale>``, ``exact`` checked against pydicom for ``full`` (null for
  reduced scales, which have no pydicom reference).
* :func:`bench_loader_scales` — :class:`~dali_pipelines.loader.DicomLoader` end to end at
  a size per decode scale, interleaved: ``loader`` rows, backend ``auto@<scale>``.
* :func:`measure_quality` — ``auto`` vs ``full`` at the target size per file: mean and
  max absolute error in [0, 1] units, PSNR, the scale ``auto`` chose, and how far the
  crop box found at that scale is from the full-resolution box.

A backend name ``NAME@SCALE`` marks a decode-scale row; height × width stay the frame
size (so MPix/s is frame pixels per second, comparable with full-resolution rows).

``rsna-mammo bench reduced`` is the reference run (committed as
``benchmarks/results/{machine}-{date}-reduced.json``): all three on full-size synthetic
files, a hold-out style synthetic set (the test split of ``rsna-mammo synth`` at full
size: every synthetic machine, both codecs) and pydicom's bundled files.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections import Counter
from collections.abc import Sequence

import numpy as np

from decode.errors import UsageError

from .schema import BenchResult

log = logging.getLogger(__name__)

#: Scales measured by default: the CLI's fixed ones plus the 1/8 thumbnail ``auto`` uses.
REDUCED_SCALES = ("full", "1/2", "1/4", "1/8")
REDUCTION_OF = {"full": 0, "1/2": 1, "1/4": 2, "1/8": 3}
GOAL_LOADER_SPEEDUP = 2.5  # auto vs full, DicomLoader at 1024x512 from JPEG 2000 on the CPU
QUALITY_BOUND_MAE = 0.01


# --- worker jobs (top level: picklable) ---------------------------------------------------------


def _decode_job(job: tuple[str, int, bool]) -> tuple[tuple[int, int], str | None]:
    """Read one file and decode it at ``1/2^r`` with OpenJPEG; the shape and (if asked) a digest."""
    from decode.dicom import read_dicom
    from decode.openjpeg import J2kCodestream, conform_reduced

    from .baselines import pixel_digest

    path, r, check = job
    dfile = read_dicom(path)
    with J2kCodestream(dfile.codestream(), path) as j:
        arr = conform_reduced(j.read(min(r, j.levels)), dfile)
    return arr.shape, (pixel_digest(arr) if check else None)


def _quality_job(job: tuple[str, tuple[int, int]]) -> dict:
    """``auto`` vs ``full`` for one file at ``size`` (runs in a worker)."""
    from decode.sample import read_sample

    path, size = job
    t0 = time.perf_counter()
    full = read_sample(path, size=size, decode_scale="full")
    t1 = time.perf_counter()
    auto = read_sample(path, size=size, decode_scale="auto")
    t2 = time.perf_counter()
    return {
        **image_difference(auto.pre.image, full.pre.image),
        "path": path,
        "transfer_syntax": full.meta.transfer_syntax,
        "frame": list(full.meta.shape),
        "auto_scale": auto.decode_scale,
        "box_full": list(full.pre.box),
        "box_auto": list(auto.pre.box),
        "box_max_abs_diff": int(max(abs(a - b) for a, b in zip(auto.pre.box, full.pre.box))),
        "thumbnail_step": int(np.ceil(max(full.meta.shape) / 256)),
        "seconds_full": round(t1 - t0, 4),
        "seconds_auto": round(t2 - t1, 4),
    }


def image_difference(a: np.ndarray, b: np.ndarray) -> dict:
    """Mean / max absolute difference of two [0, 1] images and the PSNR (dB, peak 1; null when equal)."""
    d = np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))
    mse = float((d**2).mean())
    return {
        "mean_abs_error": round(float(d.mean()), 6),
        "max_abs_error": round(float(d.max()), 6),
        "psnr_db": round(10.0 * float(np.log10(1.0 / mse)), 2) if mse > 0 else None,
    }


# --- decode rows ---------------------------------------------------------------------------------


def _frame_groups(paths: Sequence[str]) -> dict[str, tuple[list[str], tuple[int, int]]]:
    """JPEG 2000 / HTJ2K files by transfer syntax, with their most common frame size."""
    import pydicom

    from decode.openjpeg import handles

    groups: dict[str, list] = {}
    for p in paths:
        ds = pydicom.dcmread(p, stop_before_pixels=True)
        ts = str(ds.file_meta.TransferSyntaxUID)
        if not handles(ts):
            log.info("%s: %s has no resolution levels; not measured", p, ts)
            continue
        groups.setdefault(ts, []).append((p, (int(ds.Rows), int(ds.Columns))))
    return {
        ts: ([p for p, _ in items], Counter(s for _, s in items).most_common(1)[0][0]) for ts, items in groups.items()
    }


def _run_pass(pool, jobs: list, workers: int) -> list:
    """One pass over ``jobs``: in this process (``pool`` None) or through the worker pool."""
    from decode.errors import DicomError

    if pool is None:
        out = []
        for job in jobs:
            try:
                out.append((job, True, _decode_job(job)))
            except DicomError as exc:
                out.append((job, False, exc))
        return out
    for k, job in enumerate(jobs):
        pool.submit(k, job)
    res = {}
    for _ in jobs:
        key, ok, value = pool.next_result()
        res[key] = (jobs[key], ok, value)
    return [res[k] for k in range(len(jobs))]


def bench_reduced_decode(
    paths: Sequence[str],
    *,
    scales: Sequence[str] = REDUCED_SCALES,
    workers: int = 1,
    repeats: int = 3,
    device: str = "cpu",
) -> list[BenchResult]:
    """CPU decode images/s of JPEG 2000 / HTJ2K files at each decode scale, over ``workers`` processes.

    Each pass reads every file (pydicom header + codestream) and decodes it with OpenJPEG
    at the scale (capped at the codestream's levels). The first pass is the warm-up and,
    for ``full``, the exactness check against pydicom's ``pixel_array``; then
    ``repeats`` interleaved rounds over the scales.

    Args:
        paths: DICOM files; files without resolution levels (lossless JPEG...) are skipped.
        scales: names from :data:`REDUCED_SCALES`.
        workers: decode processes (1: serially in this process).
        repeats: timed rounds.
        device: the ``device`` field of the rows (the decode itself always runs on the CPU).

    Returns:
        One ``decode`` row per (transfer syntax, scale): backend ``openjpeg@<scale>``.
    """
    from decode.parallel import WorkerPool

    from .baselines import decode_pydicom_loop, pixel_digest
    from .measure import PeakHostMemory, summarize

    unknown = [s for s in scales if s not in REDUCTION_OF]
    if unknown or repeats < 1 or workers < 1:
        raise UsageError(
            f"scales must be among {', '.join(REDUCED_SCALES)} (got {list(scales)}); repeats and workers >= 1"
        )
    rows: list[BenchResult] = []
    pool = WorkerPool(_decode_job, workers, path_of=lambda j: j[0]) if workers > 1 else None
    try:
        for ts, (files, (height, width)) in sorted(_frame_groups(paths).items()):
            refs = {p: pixel_digest(decode_pydicom_loop(p)) for p in files} if "full" in scales else {}
            exact: dict[str, bool | None] = {}
            for s in scales:  # warm-up and exactness
                out = _run_pass(pool, [(p, REDUCTION_OF[s], s == "full") for p in files], workers)
                failed = [(job[0], val) for job, ok, val in out if not ok]
                if failed:
                    raise RuntimeError(f"OpenJPEG failed at {s} on {failed[0][0]}: {failed[0][1]}")
                exact[s] = all(val[1] == refs[job[0]] for job, _ok, val in out) if s == "full" else None
            seconds: dict[str, list[float]] = {s: [] for s in scales}
            peak: dict[str, float] = dict.fromkeys(scales, 0.0)
            for _ in range(repeats):
                for s in scales:
                    jobs = [(p, REDUCTION_OF[s], False) for p in files]
                    with PeakHostMemory() as mem:
                        t0 = time.perf_counter()
                        _run_pass(pool, jobs, workers)
                        seconds[s].append(time.perf_counter() - t0)
                    peak[s] = max(peak[s], mem.peak_mb or 0.0)
            for s in scales:
                ok = exact[s] is not False
                stats = summarize(seconds[s], len(files), len(files) * height * width)
                rows.append(
                    BenchResult(
                        stage="decode",
                        backend=f"openjpeg@{s}",
                        device=device,
                        transfer_syntax=ts,
                        height=height,
                        width=width,
                        images=len(files),
                        images_per_s=stats["images_per_s"] if ok else None,
                        mpix_per_s=stats["mpix_per_s"] if ok else None,
                        spread=stats["spread"] if ok else None,
                        workers=workers,
                        batch_size=1,
                        peak_host_mb=peak[s] if ok else None,
                        peak_gpu_mb=None,
                        exact=exact[s],
                    )
                )
    finally:
        if pool is not None:
            pool.close()
    return rows


# --- loader rows ---------------------------------------------------------------------------------


def bench_loader_scales(
    paths: Sequence[str],
    *,
    size: tuple[int, int] = (1024, 512),
    scales: Sequence[str] = ("full", "auto"),
    workers: int = 2,
    batch_size: int = 4,
    repeats: int = 3,
) -> list[BenchResult]:
    """``DicomLoader`` (CPU workers) end to end per decode scale: one warm-up epoch each, then
    ``repeats`` interleaved epochs (a repeat includes the loader's worker start-up, as an epoch does).

    Returns:
        One ``loader`` row per scale: backend ``auto@<scale>``, height × width = ``size``.
    """
    from dali_pipelines.loader import DicomLoader

    from .measure import PeakHostMemory, summarize

    loaders = {
        s: DicomLoader(list(paths), batch_size=batch_size, size=size, device="cpu", workers=workers, decode_scale=s)
        for s in scales
    }

    def epoch(loader) -> int:
        return sum(int(b["image"].shape[0]) for b in loader if b["image"] is not None)

    counts = {s: epoch(ld) for s, ld in loaders.items()}
    seconds: dict[str, list[float]] = {s: [] for s in scales}
    peak: dict[str, float] = dict.fromkeys(scales, 0.0)
    for _ in range(repeats):
        for s, ld in loaders.items():
            with PeakHostMemory() as mem:
                t0 = time.perf_counter()
                counts[s] = epoch(ld)
                seconds[s].append(time.perf_counter() - t0)
            peak[s] = max(peak[s], mem.peak_mb or 0.0)
    rows = []
    ts = _common_syntax(paths)
    for s, ld in loaders.items():
        if ld.failures:
            log.warning("loader %s: %d file(s) failed, e.g. %s", s, len(ld.failures), ld.failures[0])
        stats = summarize(seconds[s], counts[s], counts[s] * size[0] * size[1])
        rows.append(
            BenchResult(
                stage="loader",
                backend=f"auto@{ld.effective_decode_scale()}",
                device="cpu",
                transfer_syntax=ts,
                height=size[0],
                width=size[1],
                images=counts[s],
                workers=max(1, workers),
                batch_size=batch_size,
                peak_host_mb=peak[s],
                peak_gpu_mb=None,
                exact=None,
                **stats,
            )
        )
    return rows


def _common_syntax(paths: Sequence[str]) -> str | None:
    import pydicom

    found = {str(pydicom.dcmread(p, stop_before_pixels=True).file_meta.TransferSyntaxUID) for p in paths}
    return found.pop() if len(found) == 1 else None


# --- fidelity ------------------------------------------------------------------------------------


def measure_quality(paths: Sequence[str], *, size: tuple[int, int] = (1024, 512), workers: int = 1) -> dict:
    """``auto`` vs ``full`` at ``size`` on every file: per-file figures and a summary.

    Returns:
        ``{"size", "files": [per-file dicts], "errors": [...], "summary": {...}}``; the
        summary covers the files ``auto`` decoded below full resolution (``reduced``) and
        all files (``all``): mean of the mean absolute errors, the largest max error, the
        lowest PSNR, and the share of boxes within ``2^r`` pixels of the full box.
    """
    from decode.parallel import map_files

    jobs = [(p, tuple(size)) for p in paths]
    files, errors = [], []
    for job, ok, res in map_files(_quality_job, jobs, workers=workers, path_of=lambda j: j[0]):
        if ok:
            files.append(res)
        else:
            errors.append({"path": job[0], "reason": getattr(res, "reason", str(res))})
    files.sort(key=lambda r: r["path"])
    return {"size": list(size), "files": files, "errors": errors, "summary": quality_summary(files)}


def quality_summary(files: Sequence[dict]) -> dict:
    """Aggregate :func:`measure_quality`'s per-file figures (see there)."""

    def agg(rs: Sequence[dict]) -> dict:
        if not rs:
            return {"files": 0}
        psnrs = [r["psnr_db"] for r in rs if r["psnr_db"] is not None]
        within = [r["box_max_abs_diff"] <= 2 ** REDUCTION_OF[r["auto_scale"]] for r in rs]
        within_step = [
            r["box_max_abs_diff"] <= max(2 ** REDUCTION_OF[r["auto_scale"]], r["thumbnail_step"]) for r in rs
        ]
        return {
            "files": len(rs),
            "mean_abs_error": round(float(np.mean([r["mean_abs_error"] for r in rs])), 6),
            "worst_mean_abs_error": max(r["mean_abs_error"] for r in rs),
            "max_abs_error": max(r["max_abs_error"] for r in rs),
            "min_psnr_db": min(psnrs) if psnrs else None,
            "median_psnr_db": round(float(np.median(psnrs)), 2) if psnrs else None,
            "box_within_2r": round(float(np.mean(within)), 4),
            "box_within_max_2r_or_thumbnail_step": round(float(np.mean(within_step)), 4),
            "box_max_abs_diff": max(r["box_max_abs_diff"] for r in rs),
            "auto_scales": dict(Counter(r["auto_scale"] for r in rs)),
            "seconds_full": round(float(np.sum([r["seconds_full"] for r in rs])), 3),
            "seconds_auto": round(float(np.sum([r["seconds_auto"] for r in rs])), 3),
        }

    reduced = [r for r in files if r["auto_scale"] != "full"]
    out = {"reduced": agg(reduced), "all": agg(list(files))}
    worst = out["reduced"].get("worst_mean_abs_error")
    out["within_bound"] = None if worst is None else bool(worst <= QUALITY_BOUND_MAE)
    out["bound_mean_abs_error"] = QUALITY_BOUND_MAE
    return out


def holdout_files(
    root: str, *, patients: int = 3, height: int = 3328, width: int = 2560, seed: int = 2026
) -> list[str]:
    """A hold-out style synthetic set: the test split of an RSNA-layout dataset (every machine,
    both codecs, 12–16 bits, MONOCHROME1/2, LINEAR and SIGMOID), written once under ``root``."""
    from decode.cli_decode import find_dicoms
    from decode.parallel import default_workers
    from decode.testing.synth import make_dataset

    folder = os.path.join(root, f"holdout-{height}x{width}-{patients}p-{seed}")
    done = os.path.join(folder, "test.csv")
    if not os.path.exists(done):
        make_dataset(
            folder, patients=1, test_patients=patients, height=height, width=width, seed=seed, workers=default_workers()
        )
    return find_dicoms([os.path.join(folder, "test_images")])


def pydicom_files() -> list[str]:
    """pydicom's bundled greyscale single-frame files that decode here (the exactness test's set)."""
    import glob
    import warnings

    import pydicom

    from decode.decoding import decode_file

    out = []
    for p in sorted(glob.glob(os.path.join(os.path.dirname(pydicom.data.__file__), "test_files", "*.dcm"))):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                decode_file(p)
            except Exception:  # not decodable here (colour, multi-frame, ...): not in the set
                continue
        out.append(p)
    return out


# --- the reference run ---------------------------------------------------------------------------


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", metavar="DIR", help="JPEG 2000 files to time (default: synthetic full-size .90 files)")
    p.add_argument("--files", type=int, default=6, help="synthetic files (default: 6)")
    p.add_argument("--size", default="1024x512", metavar="HxW", help="loader / quality target size (default: 1024x512)")
    p.add_argument("--workers", type=int, default=0, help="processes (default: all cores)")
    p.add_argument("--repeats", type=int, default=3, help="timed rounds (default: 3)")
    p.add_argument("--batch-size", type=int, default=4, help="loader batch size (default: 4)")
    p.add_argument("--holdout-patients", type=int, default=3, help="test patients of the hold-out style set")
    p.add_argument("--cache", metavar="DIR", help="synthetic file cache (default: ~/.cache/rsna-mammo/bench)")
    p.add_argument("--json", metavar="FILE", help="write the results; {machine} and {date} are filled in")


def run(args: argparse.Namespace) -> int:
    from decode.chain import parse_size
    from decode.parallel import default_workers
    from decode.syntax import JPEG2000_LOSSLESS

    from .machine import expand_path, machine_record
    from .schema import dump, make_document, options_of
    from .synthdata import bench_files, default_cache

    size = parse_size(args.size)
    if args.files < 1 or args.repeats < 1 or args.batch_size < 1 or args.holdout_patients < 1 or args.workers < 0:
        raise UsageError(
            "--files, --repeats, --batch-size and --holdout-patients must be >= 1; --workers >= 0 (0: all cores)"
        )
    import pydicom  # noqa: F401  (pydicom sets its logger's level when imported: import it first)

    logging.getLogger("pydicom").setLevel(logging.CRITICAL)  # its decoders log tracebacks for files it refuses
    workers = args.workers or default_workers()
    cache = args.cache or default_cache()
    paths = bench_files(args.data, cache=cache, files=args.files, progress=False)
    j2k = [q for q in paths if _common_syntax([q]) == JPEG2000_LOSSLESS] if not args.data else paths
    say = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    say(f"decode rows: {len(j2k)} files, 1 and {workers} workers")
    rows = bench_reduced_decode(j2k, workers=1, repeats=args.repeats)
    if workers > 1:
        rows += bench_reduced_decode(j2k, workers=workers, repeats=args.repeats)
    say("loader rows: full vs auto")
    rows += bench_loader_scales(j2k, size=size, workers=workers, batch_size=args.batch_size, repeats=args.repeats)
    say("quality: synthetic files, hold-out style set, pydicom files")
    quality = {
        "bench_files": measure_quality(j2k, size=size, workers=workers),
        "holdout_synthetic": measure_quality(
            holdout_files(cache, patients=args.holdout_patients), size=size, workers=workers
        ),
        "pydicom_files": measure_quality(pydicom_files(), size=size, workers=workers),
        "pydicom_files_at_a_third_of_their_size": _pydicom_third(),
    }
    loader = {r.backend: r.images_per_s for r in rows if r.stage == "loader"}
    full, auto = loader.get("auto@full"), loader.get("auto@auto")
    speedup = round(auto / full, 3) if full and auto else None
    decode_1 = {r.backend: r.images_per_s for r in rows if r.stage == "decode" and r.workers == 1}
    summary = {
        "loader_auto_vs_full": speedup,
        "goal_loader_auto_vs_full": GOAL_LOADER_SPEEDUP,
        "meets_goal": None if speedup is None else speedup >= GOAL_LOADER_SPEEDUP,
        "decode_vs_full_one_core": {
            k: round(v / decode_1["openjpeg@full"], 3)
            for k, v in decode_1.items()
            if v and decode_1.get("openjpeg@full")
        },
        "quality": {k: v["summary"] for k, v in quality.items()},
        "quality_files": {k: v["files"] for k, v in quality.items()},
        "quality_errors": {k: v["errors"] for k, v in quality.items() if v["errors"]},
    }
    machine = machine_record(with_torch=True)
    from decode.openjpeg import openjpeg_library

    config = {
        "command": "reduced-bench",
        "options": options_of(args),
        "size": list(size),
        "workers": workers,
        "files": len(j2k),
        "openjpeg_library": os.path.basename(openjpeg_library() or ""),
        "timing": "perf_counter per full pass; decode scales and loader scales in interleaved rounds",
        "note": "a machine shared with other jobs: compare rows of this run with each other (ratios), not across runs",
    }
    doc = make_document(machine, config, rows, summary)
    for r in rows:
        say(f"{r.stage:7s} {r.backend:16s} w{r.workers} {r.images_per_s} img/s (spread {r.spread})")
    say(f"loader auto vs full at {size[0]}x{size[1]}: {speedup}x (goal {GOAL_LOADER_SPEEDUP}x)")
    for k, v in summary["quality"].items():
        say(f"quality {k}: {v}")
    if args.json:
        say(f"wrote {dump(doc, expand_path(args.json, machine))}")
    return 0


def _pydicom_third() -> dict:
    """pydicom's JPEG 2000 files at a third of their frame size (small files: there ``auto`` can reduce)."""
    import pydicom

    from decode.openjpeg import handles

    def syntax(p: str) -> str:
        return str(pydicom.dcmread(p, stop_before_pixels=True).file_meta.TransferSyntaxUID)

    files = [p for p in pydicom_files() if handles(syntax(p))]
    out = {"size": "per file: (rows // 3, columns // 3)", "files": [], "errors": []}
    for p in files:
        ds = pydicom.dcmread(p, stop_before_pixels=True)
        res = measure_quality([p], size=(int(ds.Rows) // 3, int(ds.Columns) // 3), workers=1)
        out["files"] += res["files"]
        out["errors"] += res["errors"]
    out["summary"] = quality_summary(out["files"])
    return out
