"""The one console script, ``rsna-mammo``, with argparse subcommands.

Each subcommand lives in its own module exposing ``add_arguments(parser)`` and
``run(args) -> int`` (its one-line help is in :data:`HELPS` here, so ``--help`` imports
nothing); only the invoked one is imported, so ``rsna-mammo decode`` starts without torch.
A :class:`decode.errors.UsageError` (a bad option or input location) is printed in one line
with exit status 2; any other exception is a bug and keeps its traceback. ``main(argv)`` is
what tests call in-process.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from decode._version import __version__
from decode.errors import UsageError

#: subcommand → module (imported lazily; ``bench`` is dispatched by name, so nothing
#: in the library imports ``benchmarks``).
COMMANDS: dict[str, str] = {
    "decode": "dali_pipelines.cli_decode",
    "synth": "decode.cli_synth",
    "env": "dali_pipelines.cli_env",
    "train": "training.train_cli",
    "predict": "training.predict_cli",
    "prepare": "training.prepare.cli",
    "export": "training.export_cli",
    "bench": "benchmarks.cli",
}

HELPS = {
    "decode": "decode DICOM files to .npy (raw stored values, VOI or cropped float32)",
    "synth": "write a synthetic RSNA-layout dataset (train.csv, test.csv, *_images/*.dcm)",
    "env": "print versions of Python, the codecs, torch, DALI, CuPy, nvImageCodec, CUDA and the GPU",
    "train": "train a classifier streaming raw DICOMs (AMP, EMA, balanced sampler, breast-level pF1, resume, torchrun)",
    "predict": "write a complete submission (one row per prediction_id) and errors.csv from raw DICOMs",
    "prepare": "decode once: lossless HTJ2K transcode or a preprocessed-tensor cache (atomic, resumable, sharded)",
    "export": "export a checkpoint as an ONNX model or a torch.export program for deployment",
    "bench": "benchmarks (decode, speedup, reduced, pipeline, caches, train, infer, reliability...) and reports",
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rsna-mammo",
        description="GPU DICOM decode, preprocessing, training and inference for RSNA screening mammography",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in COMMANDS.items():
        p = sub.add_parser(name, help=HELPS.get(name, ""), description=HELPS.get(name, ""))
        if name == command:
            importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command if command in COMMANDS else None)
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    logging.basicConfig(
        level=[logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)],
        format="%(levelname)s %(name)s: %(message)s",
    )
    from decode.liblog import install

    install()  # library log records: one line, never a traceback (see decode.liblog)
    try:
        return int(importlib.import_module(COMMANDS[args.command]).run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except UsageError as exc:  # bad option values: one line, no traceback
        print(f"rsna-mammo {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
