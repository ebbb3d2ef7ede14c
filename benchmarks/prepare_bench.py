"""``rsna-mammo bench caches``: decode once, measured: JPEG 2000 vs its HTJ2K transcode, and raw
decode+chain vs the tensor cache.

On 12-bit synthetic JPEG 2000 mammograms (:mod:`decode.testing.synth`; full size, 3328×2560, unless
``--height``/``--width`` say otherwise):

* ``decode`` rows: :func:`decode.decoding.decode_file` (backend ``auto``, the same path
  for both) on the original .90 files and on the ``rsna-mammo prepare --format htj2k``
  cache (.201); the HTJ2K output is checked equal to the original's stored values.
* ``crop`` row: the loader's default reader (:class:`dali_pipelines.loader.SampleReader`:
  decode → VOI → breast crop → flip → resize/pad) on the raw JPEG 2000 files.
* ``read`` row: :class:`dali_pipelines.tensor_cache.TensorCacheReader` on the
  ``prepare --format tensor`` cache of the same files and size (page cache warm).
* ``loader`` row: :class:`~dali_pipelines.loader.DicomLoader` batches from the tensor cache.

All timings are single-process wall clock on the CPU (no asynchronous work): warm-up,
then timed repeats over every file; figures are medians over the repeats. Goals
(:data:`GOALS`, ``summary.goals_met``): the HTJ2K transcode decodes at least 10× faster than
the JPEG 2000 original, and the tensor cache feeds at least 50× faster than raw decode+chain.
``bench decode --caches`` runs the same measurement (:func:`run_bench`) beside the raw figures.

The document keeps this benchmark's own row layout (schema row fields plus
``seconds_per_image`` and ``repeats``), so ``bench report`` does not read it. Run::

    rsna-mammo bench caches --json 'benchmarks/results/prepare-cpu-{date}.json'
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable

import numpy as np

from decode.errors import UsageError

GOALS = {"htj2k_vs_j2k_decode": 10.0, "tensor_cache_vs_j2k_decode_chain": 50.0}
NOTE = (
    "Measured on a machine shared with other jobs: timings are noisy (see spread); the lead may re-run "
    "`rsna-mammo bench caches`. Single process, CPU, page cache warm for every reader."
)


def make_files(root: str, n: int, height: int, width: int, seed: int = 7, workers: int = 2) -> list[str]:
    """Write ``n`` 12-bit JPEG 2000 MONOCHROME2 mammograms in the RSNA layout (with train.csv): the first
    ``n`` training images of a :func:`~decode.testing.synth.make_dataset` made with that one machine."""
    import pandas as pd

    from decode.testing.synth import MACHINES, make_dataset

    m = next(x for x in MACHINES if x.transfer_syntax.endswith(".90") and x.bits == 12)
    make_dataset(
        root,
        patients=-(-n // 4),
        test_patients=0,
        height=height,
        width=width,
        seed=seed,
        workers=workers,
        machines=(m,),
    )
    train = pd.read_csv(os.path.join(root, "train.csv"))
    return [os.path.join(root, "train_images", str(p), f"{i}.dcm") for p, i in zip(train.patient_id, train.image_id)][
        :n
    ]


def timed(fn: Callable[[int], object], n: int, repeats: int, warmup: int = 1) -> list[float]:
    """Seconds per pass over items ``0..n-1`` (after ``warmup`` calls on item 0)."""
    for _ in range(warmup):
        fn(0)
    passes = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for i in range(n):
            fn(i)
        passes.append(time.perf_counter() - t0)
    return passes


def interleaved(plan: dict[str, tuple], rounds: int) -> dict[str, list[float]]:
    """Alternate the timed passes of several paths, so load changes on a shared machine hit all alike.

    Args:
        plan: name → ``(fn, n, passes per round)``.
    """
    for fn, _n, _k in plan.values():
        fn(0)  # warm-up
    out: dict[str, list[float]] = {name: [] for name in plan}
    for _ in range(rounds):
        for name, (fn, n, k) in plan.items():
            out[name].extend(timed(fn, n, k, warmup=0))
    return out


def row(
    stage: str,
    backend: str,
    syntax: str | None,
    shape,
    n: int,
    passes: list[float],
    *,
    exact: bool | None = None,
    batch_size: int = 1,
) -> dict[str, object]:
    """A result row (the field names of ``benchmarks/schema.py``), plus seconds per image."""
    ips = sorted(n / s for s in passes)
    med = statistics.median(ips)
    h, w = shape
    return {
        "stage": stage,
        "backend": backend,
        "device": "cpu",
        "transfer_syntax": syntax,
        "height": h,
        "width": w,
        "images": n,
        "images_per_s": round(med, 3),
        "mpix_per_s": round(med * h * w / 1e6, 3),
        "spread": round((ips[-1] - ips[0]) / med, 3) if len(ips) > 1 else 0.0,
        "workers": 1,
        "batch_size": batch_size,
        "peak_host_mb": None,
        "peak_gpu_mb": None,
        "exact": exact,
        "seconds_per_image": float(f"{1.0 / med:.4g}"),
        "repeats": len(passes),
    }


def run_bench(work: str, *, files: int, height: int, width: int, size, repeats: int, workers: int) -> dict:
    """Make the files under ``work``, build both caches with ``run_prepare``, time every path.

    Returns:
        ``{"rows": [row dicts, see :func:`row`], "summary": {ratios, goals, goals_met, ...}}``.

    Raises:
        RuntimeError: ``prepare`` failed on a file.
    """
    from dali_pipelines.loader import DicomLoader, SampleReader
    from dali_pipelines.tensor_cache import TensorCacheReader
    from decode import syntax as TS
    from decode.decoding import decode_file
    from training.prepare import PrepareConfig, run_prepare

    data, htj2k, tensor = (os.path.join(work, d) for d in ("data", "htj2k", "tensor"))
    t0 = time.perf_counter()
    src = make_files(data, files, height, width, workers=workers)
    t_synth = time.perf_counter() - t0
    prep = {}
    for name, cfg in (
        ("htj2k", PrepareConfig(data=data, out=htj2k, format="htj2k", workers=workers)),
        ("tensor", PrepareConfig(data=data, out=tensor, format="tensor", size=size, workers=workers)),
    ):
        t0 = time.perf_counter()
        rep = run_prepare(cfg)
        prep[name] = {"seconds": round(time.perf_counter() - t0, 3), "workers": workers, "line": rep.line()}
        if rep.failed or rep.unaccounted:
            raise RuntimeError(f"prepare {name} failed: {rep.errors}")
    ht = [p.replace(data, htj2k, 1) for p in src]
    ref = [decode_file(p).pixels for p in src]
    exact = all(np.array_equal(decode_file(p).pixels, r) for p, r in zip(ht, ref))
    backends = {"j2k": decode_file(src[0]).backend, "htj2k": decode_file(ht[0]).backend}
    del ref
    n = len(src)
    rows = []
    raw_reader = SampleReader(tuple(src), tuple(size))
    cache_reader = TensorCacheReader.open(tensor, src, tuple(size))
    dec = interleaved(
        {"j2k": (lambda i: decode_file(src[i]), n, 1), "htj2k": (lambda i: decode_file(ht[i]), n, 3)}, repeats
    )
    p_j2k, p_ht = dec["j2k"], dec["htj2k"]
    rows.append(row("decode", backends["j2k"], TS.JPEG2000_LOSSLESS, (height, width), n, p_j2k))
    rows.append(row("decode", backends["htj2k"], TS.HTJ2K_LOSSLESS, (height, width), n, p_ht, exact=exact))
    feed = interleaved({"chain": (raw_reader, n, 1), "cache": (cache_reader, n, 25)}, repeats)
    p_chain, p_cache = feed["chain"], feed["cache"]
    rows.append(row("crop", "auto", TS.JPEG2000_LOSSLESS, size, n, p_chain))
    rows.append(row("read", "tensor-cache", None, size, n, p_cache))
    diff = max(float(np.abs(cache_reader(i) - raw_reader(i)).max()) for i in range(n))
    loader = DicomLoader(src, batch_size=n, size=tuple(size), device="cpu", workers=0, data_root=tensor)
    p_loader = timed(lambda _i: [b["image"] for b in loader], 1, 20)
    rows.append(row("loader", "tensor-cache", None, size, n, p_loader, batch_size=n))

    spi = {
        "j2k_decode": rows[0]["seconds_per_image"],
        "htj2k_decode": rows[1]["seconds_per_image"],
        "j2k_decode_chain": rows[2]["seconds_per_image"],
        "tensor_cache_read": rows[3]["seconds_per_image"],
        "tensor_cache_loader": rows[4]["seconds_per_image"],
    }
    ratios = {
        "htj2k_vs_j2k_decode": spi["j2k_decode"] / spi["htj2k_decode"],
        "tensor_cache_vs_j2k_decode_chain": spi["j2k_decode_chain"] / spi["tensor_cache_read"],
        "tensor_cache_loader_vs_j2k_decode_chain": spi["j2k_decode_chain"] / spi["tensor_cache_loader"],
    }
    summary = {
        "ratios": {k: round(v, 1) for k, v in ratios.items()},
        "goals": GOALS,
        "goals_met": {k: bool(ratios[k] >= GOALS[k]) for k in GOALS},
        "seconds_per_image": spi,
        "htj2k_bit_exact": exact,
        "tensor_cache_max_abs_diff_vs_raw_chain": diff,
        "bytes_per_image": {
            "j2k": int(np.mean([os.path.getsize(p) for p in src])),
            "htj2k": int(np.mean([os.path.getsize(p) for p in ht])),
            "tensor": int(2 * size[0] * size[1]),
        },
        "prepare": prep,
        "synth_seconds": round(t_synth, 2),
    }
    return {"rows": rows, "summary": summary}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--files", type=int, default=6, help="synthetic JPEG 2000 files (default: 6)")
    p.add_argument("--height", type=int, default=3328, help="synthetic image height (default: 3328)")
    p.add_argument("--width", type=int, default=2560, help="synthetic image width (default: 2560)")
    p.add_argument("--size", default="2048x1024", metavar="HxW", help="tensor cache size (default: 2048x1024)")
    p.add_argument("--repeats", type=int, default=3, help="timed passes over the files for the slow paths")
    p.add_argument("--workers", type=int, default=0, help="processes for synth and prepare (default: all cores)")
    p.add_argument("--work", metavar="DIR", help="scratch folder, kept (default: a temporary one, removed)")
    p.add_argument("--json", metavar="FILE", help="write the results; {machine} and {date} are filled in")


def run(args: argparse.Namespace) -> int:
    from decode.atomic import atomic_write
    from decode.chain import parse_size
    from decode.parallel import default_workers

    from .machine import expand_path, machine_record
    from .schema import options_of

    size = parse_size(args.size)
    if args.files < 1 or args.height < 1 or args.width < 1 or args.repeats < 1 or args.workers < 0:
        raise UsageError("--files, --height, --width and --repeats must be >= 1; --workers >= 0 (0: all cores)")
    workers = args.workers or default_workers()
    opts = dict(files=args.files, height=args.height, width=args.width, size=size, repeats=args.repeats)
    if args.work:
        os.makedirs(args.work, exist_ok=True)
        res = run_bench(args.work, workers=workers, **opts)
    else:
        with tempfile.TemporaryDirectory(prefix="prepare-bench-") as work:
            res = run_bench(work, workers=workers, **opts)
    machine = machine_record(with_torch=False)
    machine["date"] = datetime.date.today().isoformat()
    doc = {
        "machine": machine,
        "config": {
            "schema_version": 1,
            "command": "bench caches",
            "options": options_of(args),
            "files": args.files,
            "height": args.height,
            "width": args.width,
            "bits": 12,
            "source_syntax": "1.2.840.10008.1.2.4.90",
            "tensor_size": list(size),
            "tensor_dtype": "uint16",
            "repeats": args.repeats,
            "prepare_workers": workers,
            "note": NOTE,
        },
        "results": res["rows"],
        "summary": res["summary"],
    }
    out = None
    if args.json:
        out = atomic_write(expand_path(args.json, machine), json.dumps(doc, indent=1, default=str) + "\n")
        print(f"wrote {out}", file=sys.stderr)
    s = res["summary"]
    print(
        json.dumps(
            {"out": out, **s["ratios"], "goals_met": s["goals_met"], "seconds_per_image": s["seconds_per_image"]},
            indent=1,
        )
    )
    return 0
