"""``rsna-mammo bench WHAT``: the benchmark suite's CLI, one sub-subcommand per benchmark.

Each sub-subcommand lives in its own module with ``add_arguments(parser)`` and
``run(args) -> int``; only the one invoked is imported (no torch at import time).
"""

from __future__ import annotations

import argparse
import importlib

#: sub-subcommand → (module, help)
SUBCOMMANDS = {
    "decode": (
        "benchmarks.decode_bench",
        "images/s per decode backend and transfer syntax, against the pydicom and dicomsdl baselines in the same run",
    ),
    "pipeline": (
        "benchmarks.pipeline_bench",
        "images/s of each loader stage (read, decode, VOI, crop, resize, "
        "host→device, collate) and of the loader end to end",
    ),
    "train": ("benchmarks.model_bench", "training images/s of a timm backbone: data from the loader vs in memory"),
    "infer": ("benchmarks.model_bench", "inference images/s of a timm backbone: data from the loader vs in memory"),
    "speedup": (
        "benchmarks.decode_speedup",
        "the rsna-mammo decode command (all cores) vs a serial pydicom loop, per codec, in one run",
    ),
    "caches": (
        "benchmarks.prepare_bench",
        "decode once: JPEG 2000 vs its HTJ2K transcode, raw decode+chain vs the tensor cache",
    ),
    "reduced": (
        "benchmarks.reduced_bench",
        "reduced-resolution JPEG 2000 decode (--decode-scale): images/s per scale, the loader, fidelity",
    ),
    "reliability": (
        "benchmarks.reliability",
        "malformed corpus, fuzzing and a loader soak: inputs handled, crashes, hangs, memory growth, leaks",
    ),
    "train-reference": (
        "benchmarks.train_reference",
        "the CPU reference training run (synth, train, predict as separate processes), scored per breast",
    ),
    "report": ("benchmarks.report", "markdown table and PNG plot from result JSON files"),
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="bench_command", metavar="WHAT", required=True)
    for name, (module, help_) in SUBCOMMANDS.items():
        sp = sub.add_parser(name, help=help_, description=help_)
        mod = importlib.import_module(module)
        if name in ("train", "infer"):
            mod.add_arguments(sp, mode=name)
        else:
            mod.add_arguments(sp)


def run(args: argparse.Namespace) -> int:
    module = importlib.import_module(SUBCOMMANDS[args.bench_command][0])
    if args.bench_command in ("train", "infer"):
        return int(module.run(args, mode=args.bench_command) or 0)
    return int(module.run(args) or 0)
