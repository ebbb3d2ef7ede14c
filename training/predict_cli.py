"""``rsna-mammo predict``: a complete submission from a checkpoint and raw test DICOMs."""

from __future__ import annotations

import argparse
import json
import os
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, metavar="DIR", help="dataset root holding the CSV and its images")
    p.add_argument(
        "--ckpt",
        required=True,
        nargs="+",
        metavar="FILE",
        help="model file(s): checkpoints (RUN/best.pt), .onnx or .pt2 exports; several = an ensemble (each image "
        "decoded once); they give the model, image size, chain and threshold",
    )
    p.add_argument("--out", required=True, metavar="FILE.csv", help="submission (errors.csv goes beside it)")
    p.add_argument("--csv", default="test.csv", help="image list (default test.csv; train*.csv reads train_images)")
    p.add_argument("--images", metavar="SUBDIR", help="image folder under --data (default <split>_images)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument(
        "--engine",
        default="auto",
        choices=["auto", "dali", "nvimgcodec", "cpu"],
        help="loader engine (default auto: DALI when it imports and CUDA is there, else nvImageCodec on CUDA, "
        "else CPU workers)",
    )
    p.add_argument("--tta", action="store_true", help="average with the vertically flipped image")
    p.add_argument("--agg", choices=["mean", "max"], help="breast aggregation (default: the checkpoint's)")
    p.add_argument(
        "--threshold",
        default="none",
        metavar="none|best|X",
        help="none: probabilities; best: binarize at the validation threshold; X: at X",
    )
    p.add_argument("--batch-size", type=int, help="default: twice the training batch")
    p.add_argument("--workers", type=int, help="decode processes (default: all cores)")
    p.add_argument(
        "--decode-scale",
        choices=["auto", "full", "1/2", "1/4"],
        help="JPEG 2000 decode resolution (default: the checkpoint's, else auto: each image at the coarsest "
        "level whose breast crop still covers the model's input size)",
    )
    p.add_argument(
        "--for-processing",
        choices=["warn", "skip", "error"],
        help="FOR PROCESSING images (raw detector data): warn = use and list in notes.csv; skip or error = "
        "leave out and list in errors.csv (default: the checkpoint's setting)",
    )
    p.add_argument(
        "--ensemble",
        choices=["mean", "logit-mean"],
        default="mean",
        help="several models (and --tta views): mean of probabilities (default) or sigmoid of the mean logit",
    )
    p.add_argument(
        "--compile",
        nargs="?",
        const="default",
        choices=["default", "reduce-overhead", "max-autotune"],
        metavar="MODE",
        help="torch.compile the checkpoints (MODE default; reduce-overhead captures CUDA graphs on the GPU)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from decode.progress import progress_factory

    from .distributed import cleanup, env_world
    from .predict import parse_threshold, predict

    parse_threshold(args.threshold)  # bad values fail before any work
    try:
        summary = predict(
            data=args.data,
            ckpt=args.ckpt,
            out=args.out,
            csv=args.csv,
            images=args.images,
            device=args.device,
            engine=args.engine,
            tta=args.tta,
            agg=args.agg,
            threshold=args.threshold,
            batch_size=args.batch_size,
            workers=args.workers,
            progress=progress_factory(not args.no_progress),
            decode_scale=args.decode_scale,
            for_processing=args.for_processing,
            ensemble=args.ensemble,
            compile_mode=args.compile,
        )
        if int(os.environ.get("RANK", "0")) == 0:
            print(json.dumps(summary))
            print(
                f"{summary['ok_images']} ok, {summary['failed_images']} failed, "
                f"{summary['unaccounted_images']} unaccounted; {summary['rows']} prediction rows written "
                f"({len(summary['prior_breasts'])} from the prior)",
                file=sys.stderr,
            )
    finally:
        if env_world() > 1:
            cleanup()
    return 0
