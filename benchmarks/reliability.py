"""``rsna-mammo bench reliability``: malformed corpus, fuzzing, a loader soak, and the row account.

    rsna-mammo bench reliability --json 'benchmarks/results/reliability-{date}.json'

Writes inputs tried, handled (typed one-line error or exact pixels), crashed and hung
(on the default decode path; other backends' contained native crashes are listed),
resident-memory growth over the soak, leaked worker processes, and rows unaccounted.
The document has ``machine``, ``config`` and ``summary`` but no result rows (it counts
outcomes, it times nothing), so ``bench report`` does not read it. :func:`run_soak` is also
the loader soak test's measurement.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import shutil
import sys
import tempfile
import time

from decode.atomic import atomic_write
from decode.errors import UsageError


def run_corpus(folder: str) -> dict[str, object]:
    """Every malformed case through ``decode_file`` and through ``rsna-mammo decode``."""
    import io
    from contextlib import redirect_stderr

    from decode.decoding import decode_file
    from decode.errors import DicomError
    from decode.testing.corpus import build_corpus
    from training.cli import main

    good, bad, _ = build_corpus(folder)
    handled, wrong_type = 0, []
    for name, (path, expected) in bad.items():
        try:
            decode_file(path)
            wrong_type.append(f"{name}: decoded without error")
        except DicomError as exc:
            if isinstance(exc, expected) and "\n" not in str(exc) and str(exc).startswith(path):
                handled += 1
            else:
                wrong_type.append(f"{name}: {type(exc).__name__}")
    files = list(good.values()) + [p for n, (p, _) in bad.items() if n != "directory"]
    err = io.StringIO()
    with redirect_stderr(err):
        rc = main(["decode", *files, "--out", os.path.join(folder, "out"), "--workers", "2"])
    lines = err.getvalue().splitlines()
    named = sum(1 for ln in lines if ln.startswith("error: "))
    return {
        "cases": len(bad),
        "handled": handled,
        "wrong": wrong_type,
        "cli_exit": rc,
        "cli_files": len(files),
        "cli_errors_named": named,
        "cli_traceback": "Traceback" in err.getvalue(),
        "cli_summary": lines[-1] if lines else "",
    }


def run_fuzz_figures(folder: str, n: int, seed: int) -> dict[str, object]:
    from decode.testing.fuzz import fuzz_sources, random_mutation, run_fuzz

    rng = random.Random(seed)
    sources = fuzz_sources(os.path.join(folder, "src"))
    muts = [random_mutation(rng) for _ in range(n)]
    t0 = time.perf_counter()
    counts, problems = run_fuzz(sources, muts, os.path.join(folder, "fuzz"), workers=2, timeout=20)
    counts["seconds"] = round(time.perf_counter() - t0, 1)
    counts["problems"] = problems
    return counts


def run_soak(folder: str, files: int, epochs: int, workers: int = 2) -> dict[str, object]:
    """The CPU loader over ``files`` small DICOMs for ``epochs``; RSS and child processes."""
    import psutil

    from dali_pipelines.loader import DicomLoader
    from decode.testing.fuzz import fuzz_sources

    src_dir = os.path.join(folder, "soak_src")
    sources = fuzz_sources(src_dir, size=(48, 40))
    os.makedirs(os.path.join(folder, "soak"), exist_ok=True)
    paths = []
    for i in range(files):
        p = os.path.join(folder, "soak", f"{i:05d}.dcm")
        with open(p, "wb") as f:
            f.write(sources[i % len(sources)])
        paths.append(p)
    me = psutil.Process()
    before = {c.pid for c in me.children(recursive=True)}  # e.g. multiprocessing's resource tracker
    rss, seen, failed = [], 0, 0
    loader = DicomLoader(paths, batch_size=32, size=(32, 32), device="cpu", workers=workers)
    t0 = time.perf_counter()
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        for batch in loader:
            seen += 0 if batch["image"] is None else batch["image"].shape[0]
            failed += len(batch["failed"])
        rss.append(me.memory_info().rss / 2**20)
    leaked = [c.pid for c in me.children(recursive=True) if c.is_running() and c.pid not in before]
    return {
        "files": files,
        "epochs": epochs,
        "images": seen,
        "failed": failed,
        "unaccounted": files * epochs - seen - failed,
        "seconds": round(time.perf_counter() - t0, 1),
        "rss_mb_per_epoch": [round(r, 1) for r in rss],
        "rss_growth_mb": round(rss[-1] - rss[0], 1) if rss else None,
        "leaked_workers": len(leaked),
    }


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", required=True, metavar="FILE", help="result file; {machine} and {date} are filled in")
    p.add_argument("--fuzz", type=int, default=1000, help="mutated inputs to try (default: 1000)")
    p.add_argument("--soak-files", type=int, default=3000, help="small DICOMs the loader soak reads (default: 3000)")
    p.add_argument("--soak-epochs", type=int, default=3, help="loader soak epochs (default: 3)")
    p.add_argument("--seed", type=int, default=0, help="seed of the fuzz mutations (default: 0)")


def run(args: argparse.Namespace) -> int:
    from .machine import expand_path, machine_record

    if args.fuzz < 0 or args.soak_files < 1 or args.soak_epochs < 1:
        raise UsageError("--fuzz must be >= 0; --soak-files and --soak-epochs >= 1")
    tmp = tempfile.mkdtemp(prefix="rsna-reliability-")
    try:
        corpus = run_corpus(os.path.join(tmp, "corpus"))
        print(f"corpus: {corpus['handled']}/{corpus['cases']} handled", file=sys.stderr)
        fuzz = run_fuzz_figures(os.path.join(tmp, "fz"), args.fuzz, args.seed)
        print(
            f"fuzz: {fuzz['inputs']} inputs, {fuzz['checks']} checks, problems {len(fuzz['problems'])}", file=sys.stderr
        )
        soak = run_soak(os.path.join(tmp, "soak"), args.soak_files, args.soak_epochs)
        print(f"soak: growth {soak['rss_growth_mb']} MB, leaked {soak['leaked_workers']}", file=sys.stderr)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    default_crashes = sum(v for k, v in fuzz["crashed"].items() if k in ("native", "imagecodecs", "pydicom"))
    default_hangs = sum(v for k, v in fuzz["hung"].items() if k in ("native", "imagecodecs", "pydicom"))
    doc = {
        "date": datetime.date.today().isoformat(),
        "machine": machine_record(),
        "config": {
            "fuzz_inputs": args.fuzz,
            "soak_files": args.soak_files,
            "soak_epochs": args.soak_epochs,
            "seed": args.seed,
        },
        "summary": {
            "inputs_tried": corpus["cases"] + fuzz["inputs"],
            "handled": corpus["handled"] + fuzz["inputs"] - len(fuzz["problems"]),
            "crashed": default_crashes,
            "hung": default_hangs,
            "contained_native_crashes_other_backends": {
                k: v for k, v in fuzz["crashed"].items() if k not in ("native", "imagecodecs", "pydicom")
            },
            "memory_growth_mb": soak["rss_growth_mb"],
            "leaked_workers": soak["leaked_workers"],
            "rows_unaccounted": soak["unaccounted"],
        },
        "corpus": corpus,
        "fuzz": fuzz,
        "soak": soak,
    }
    out = atomic_write(expand_path(args.json, doc["machine"]), json.dumps(doc, indent=2))
    print(json.dumps(doc["summary"], indent=2))
    print(f"wrote {out}", file=sys.stderr)
    return 0
