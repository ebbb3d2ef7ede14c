"""``rsna-mammo export``: a checkpoint as ONNX or a ``torch.export`` program (see :mod:`training.export`)."""

from __future__ import annotations

import argparse
import json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ckpt", required=True, metavar="FILE", help="training checkpoint (RUN/best.pt)")
    p.add_argument(
        "--format",
        choices=["onnx", "exported"],
        default="onnx",
        help="onnx: for ONNX Runtime (*.onnx); exported: a torch.export program (*.pt2)",
    )
    p.add_argument("--out", required=True, metavar="FILE", help="output file (.onnx or .pt2)")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset (default 18)")


def run(args: argparse.Namespace) -> int:
    from .export import export_model

    print(json.dumps(export_model(args.ckpt, args.out, format=args.format, opset=args.opset)))
    return 0
