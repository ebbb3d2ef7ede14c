"""``rsna-mammo bench speedup``: ``rsna-mammo decode`` on all cores vs a serial pydicom loop, per codec.

    rsna-mammo bench speedup --json FILE [--data DIR] [--files N] [--repeats R]

Side by side in one run, on the same full-size synthetic files (3328×2560, 12-bit,
JPEG 2000 lossless .90 and lossless JPEG SV1 .70; made once in the bench cache) or on
the files of ``--data``: the command ``rsna-mammo decode FILES --out TMP --stage raw``
(called in-process through ``training.cli.main``: a process pool over all cores,
writing one ``.npy`` per file, as a user runs it) against
``for p in files: pydicom.dcmread(p).pixel_array``. The first pass is the warm-up and
checks the command's ``.npy`` outputs against pydicom exactly; then ``--repeats``
interleaved rounds; medians are compared. The goal: the command decodes at least 1.6×
as many images per second as the serial pydicom loop on 2 cores (:data:`GOAL`;
``summary.meets_goal`` per codec).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence

import numpy as np

from decode.errors import UsageError

from .schema import BenchResult

log = logging.getLogger(__name__)

GOAL = 1.6


def pydicom_loop(paths: Sequence[str]) -> list[np.ndarray]:
    """The baseline: a serial ``dcmread(...).pixel_array`` loop (arrays kept only when asked)."""
    import pydicom

    return [pydicom.dcmread(p).pixel_array for p in paths]


def cli_decode(paths: Sequence[str], out: str, workers: int) -> float:
    """Run ``rsna-mammo decode PATHS --out OUT --stage raw`` in-process; seconds taken.

    Raises:
        RuntimeError: the command failed on any file (its stderr is in the message).
    """
    from training.cli import main

    argv = ["decode", *paths, "--out", out, "--stage", "raw"] + (["--workers", str(workers)] if workers else [])
    err = io.StringIO()
    t0 = time.perf_counter()
    with contextlib.redirect_stderr(err):
        rc = main(argv)
    seconds = time.perf_counter() - t0
    if rc != 0:
        raise RuntimeError(f"rsna-mammo decode exited {rc}: {err.getvalue().strip()}")
    return seconds


def check_outputs(paths: Sequence[str], out: str) -> bool:
    """Whether every ``OUT/<stem>.npy`` equals pydicom's ``pixel_array`` (dtype and values)."""
    from decode.cli_decode import output_stems

    refs = pydicom_loop(paths)
    for p, stem, ref in zip(paths, output_stems(list(paths), out), refs):
        got = np.load(stem + ".npy")
        if got.dtype != ref.dtype or not np.array_equal(got, ref):
            log.warning("%s: rsna-mammo decode output differs from pydicom's pixel_array", p)
            return False
    return True


def measure(paths: Sequence[str], ts: str, *, repeats: int, workers: int, tmp: str) -> list[BenchResult]:
    """Both rows for one codec: the pydicom baseline and ``rsna-mammo decode``."""
    from collections import Counter

    import pydicom

    from decode.parallel import default_workers

    from .measure import PeakHostMemory, summarize

    shapes = [(int(d.Rows), int(d.Columns)) for d in (pydicom.dcmread(p, stop_before_pixels=True) for p in paths)]
    pixels = sum(h * w for h, w in shapes)
    h, w = Counter(shapes).most_common(1)[0][0]
    out = tempfile.mkdtemp(prefix="decode-speedup-", dir=tmp)
    try:
        cli_decode(paths, out, workers)  # warm-up + exactness
        exact = check_outputs(paths, out)
        base_s, cli_s, base_mb, cli_mb = [], [], 0.0, 0.0
        for _ in range(repeats):
            with PeakHostMemory() as mem:
                t0 = time.perf_counter()
                for p in paths:  # the arrays are dropped as they come, like a decode loop that writes nothing
                    _ = pydicom.dcmread(p).pixel_array
                base_s.append(time.perf_counter() - t0)
            base_mb = max(base_mb, mem.peak_mb or 0.0)
            with PeakHostMemory() as mem:
                cli_s.append(cli_decode(paths, out, workers))
            cli_mb = max(cli_mb, mem.peak_mb or 0.0)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    n = len(paths)
    none = {"images_per_s": None, "mpix_per_s": None, "spread": None}
    common = dict(device="cpu", transfer_syntax=ts, height=h, width=w, images=n, batch_size=1, peak_gpu_mb=None)
    return [
        BenchResult(
            stage="baseline",
            backend="pydicom",
            workers=1,
            peak_host_mb=base_mb,
            exact=True,
            **summarize(base_s, n, pixels),
            **common,
        ),
        BenchResult(
            stage="decode",
            backend="auto",
            workers=workers or default_workers(),
            peak_host_mb=cli_mb if exact else None,
            exact=exact,
            **(summarize(cli_s, n, pixels) if exact else none),
            **common,
        ),
    ]


def speedups(rows: Sequence[BenchResult]) -> dict[str, float | None]:
    """``{transfer syntax: rsna-mammo decode images/s ÷ pydicom loop images/s}``."""
    out: dict[str, float | None] = {}
    for ts in sorted({r.transfer_syntax for r in rows}):
        base = next((r for r in rows if r.transfer_syntax == ts and r.stage == "baseline"), None)
        cli = next((r for r in rows if r.transfer_syntax == ts and r.stage == "decode"), None)
        out[ts] = (
            round(cli.images_per_s / base.images_per_s, 3)
            if base and cli and base.images_per_s and cli.images_per_s
            else None
        )
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", required=True, metavar="FILE", help="result file; {machine} and {date} are filled in")
    p.add_argument("--data", metavar="DIR", help="folder searched for *.dcm (default: synthetic full-size files)")
    p.add_argument("--files", type=int, default=6, help="synthetic files per codec (default: 6)")
    p.add_argument("--limit", type=int, default=0, help="with --data: at most N files per transfer syntax")
    p.add_argument("--size", default="3328x2560", metavar="HxW", help="synthetic size (default: 3328x2560)")
    p.add_argument("--repeats", type=int, default=3, help="timed rounds after the warm-up (default: 3)")
    p.add_argument("--workers", type=int, default=0, help="rsna-mammo decode --workers (default: all cores)")
    p.add_argument("--cache", metavar="DIR", help="synthetic file cache (default: ~/.cache/rsna-mammo/bench)")


def run(args: argparse.Namespace) -> int:
    from decode.chain import parse_size
    from decode.cli_decode import find_dicoms
    from decode.parallel import default_workers
    from decode.syntax import short_name

    from .decode_bench import scan
    from .machine import expand_path, machine_record
    from .schema import dump, make_document, options_of
    from .synthdata import default_cache, synthesize

    if args.repeats < 1:
        raise UsageError("--repeats must be >= 1")
    if args.files < 1 or args.workers < 0 or args.limit < 0:
        raise UsageError("--files must be >= 1; --workers and --limit >= 0 (0: all cores / no limit)")
    cache = args.cache or default_cache()
    if args.data:
        paths = find_dicoms([args.data])
    else:
        made = synthesize(cache, size=parse_size(args.size), files=args.files)
        paths = [q for qs in made.values() for q in qs]
    groups, errors = scan(paths, args.limit)
    if not groups:
        raise UsageError(f"no readable DICOM files in {args.data or cache}")
    tmp = os.path.join(cache, "tmp")
    os.makedirs(tmp, exist_ok=True)
    rows: list[BenchResult] = []
    for ts in sorted(groups):
        print(f"{short_name(ts)}: {len(groups[ts].paths)} files, {args.repeats} rounds ...", file=sys.stderr)
        rows += measure(groups[ts].paths, ts, repeats=args.repeats, workers=args.workers, tmp=tmp)
    ratios = speedups(rows)
    workers = args.workers or default_workers()
    machine = machine_record(with_torch=False)
    config = {
        "command": "decode-speedup",
        "options": options_of(args),
        "workers": workers,
        "files": {ts: len(g.paths) for ts, g in groups.items()},
        "compared": "rsna-mammo decode FILES --out TMP --stage raw (in-process main, process pool) vs "
        "a serial pydicom dcmread(...).pixel_array loop; interleaved rounds; medians",
    }
    summary = {
        "speedup_vs_pydicom": ratios,
        "goal": GOAL,
        "meets_goal": {ts: (r is not None and r >= GOAL) for ts, r in ratios.items()},
        "errors": errors,
    }
    doc = make_document(machine, config, rows, summary)
    for r in rows:
        print(
            f"{short_name(r.transfer_syntax):14s} {('pydicom loop' if r.is_baseline else 'rsna-mammo decode'):18s} "
            f"workers {r.workers}: {r.images_per_s} images/s (spread {r.spread}), exact {r.exact}"
        )
    for ts, ratio in ratios.items():
        print(
            f"{short_name(ts)}: rsna-mammo decode ({workers} workers) = {ratio}x the serial pydicom loop "
            f"(goal {GOAL}x: {'met' if ratio is not None and ratio >= GOAL else 'NOT met'})"
        )
    print(f"wrote {dump(doc, expand_path(args.json, machine))}", file=sys.stderr)
    return 0
