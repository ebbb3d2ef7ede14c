"""The GPU check's CPU phase, run in a process of its own (no CUDA, so its pools fork).

    python -m benchmarks.gpu_check_cpu --out ROWS.json --cores N --size HxW --budget S \\
        --baseline FILES... --reduced FILES...

Writes ``{"rows": [BenchResult dicts], "summary": {...}}``: for the ``--baseline`` files (one
transfer syntax after another) the serial pydicom and dicomsdl loops and ``auto`` over all
cores and on one core (:func:`benchmarks.decode_bench.bench_group`), then OpenJPEG's
reduced-resolution decode of the ``--reduced`` files at full, 1/2 and 1/4 over all cores,
while the budget lasts.
"""

from __future__ import annotations

import argparse
import json
import sys
import time


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--cores", type=int, required=True)
    p.add_argument("--size", required=True)
    p.add_argument("--budget", type=float, default=60.0)
    p.add_argument("--baseline", nargs="*", default=[])
    p.add_argument("--reduced", nargs="*", default=[])
    args = p.parse_args(argv)

    from benchmarks.decode_bench import Group, bench_group, scan
    from benchmarks.reduced_bench import bench_reduced_decode
    from decode.chain import parse_size
    from decode.openjpeg import unavailable_reason

    t0 = time.monotonic()
    size = parse_size(args.size)
    rows, summary = [], {}
    groups, _errors = scan(args.baseline)
    for ts in sorted(groups):
        if time.monotonic() - t0 > args.budget - 10:
            summary.setdefault("cpu_skipped", []).append(ts)
            continue
        ps = groups[ts].paths
        got, _ = bench_group(Group(ts, list(ps), [size] * len(ps)), backends=["auto"], workers=args.cores, repeats=1)
        rows.extend(got)
    why = unavailable_reason()
    if why:
        summary["reduced_cpu"] = f"not measured: {why}"
    elif args.reduced and time.monotonic() - t0 < args.budget - 10:
        rows.extend(bench_reduced_decode(args.reduced, scales=("full", "1/2", "1/4"), workers=args.cores, repeats=1))
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump({"rows": [r.to_dict() for r in rows], "summary": summary}, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
