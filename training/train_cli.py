"""``rsna-mammo train``: train a timm model straight from the raw DICOMs (see :mod:`training.train`)."""

from __future__ import annotations

import argparse
import json
import os
import sys

#: flag dest → TrainConfig field (all default to None: only flags given on the command line override)
FLAGS = (
    "data",
    "out",
    "model",
    "img_size",
    "epochs",
    "batch_size",
    "lr",
    "device",
    "engine",
    "workers",
    "folds",
    "fold",
    "pretrained",
    "accum",
    "weight_decay",
    "warmup_epochs",
    "ema_decay",
    "pos_ratio",
    "pos_label",
    "seed",
    "amp",
    "agg",
    "select",
    "steps_per_epoch",
    "time_limit_s",
    "backend",
    "drop_path_rate",
    "decode_scale",
    "for_processing",
    "laterality",
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", metavar="DIR", help="dataset root holding train.csv and train_images/")
    p.add_argument("--out", metavar="RUN", help="run folder (default runs/train)")
    p.add_argument("--config", metavar="FILE", help="YAML file of options (flags given here override it)")
    p.add_argument("--model", help="timm model name (default convnext_small)")
    p.add_argument("--img-size", metavar="HxW", help="input size, breast crop padded to it (default 1536x768)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int, help="per process (default 8)")
    p.add_argument("--lr", type=float, help="AdamW peak LR (default 1e-3 from scratch, 2e-4 with --pretrained)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"])
    p.add_argument(
        "--engine",
        choices=["auto", "dali", "nvimgcodec", "cpu"],
        help="loader engine (default auto: DALI when it imports and CUDA is there, else nvImageCodec on CUDA, "
        "else CPU workers)",
    )
    p.add_argument(
        "--workers",
        type=int,
        help="decode processes per training process (default: all cores, shared among torchrun's local processes)",
    )
    p.add_argument("--folds", type=int, help="K folds grouped by patient, stratified by cancer (default 4)")
    p.add_argument("--fold", type=int, help="validation fold (default 0)")
    p.add_argument("--resume", action="store_true", help="continue from RUN/last.pt with its saved config")
    p.add_argument("--pretrained", metavar="PATH", help="local weights file (stem adapted to 1 channel)")
    g = p.add_argument_group("more options (also settable in --config)")
    g.add_argument("--accum", type=int, help="gradient accumulation steps (default 1)")
    g.add_argument("--weight-decay", type=float)
    g.add_argument("--warmup-epochs", type=float)
    g.add_argument("--ema-decay", type=float, help="0 disables EMA (default 0.999)")
    g.add_argument("--pos-ratio", type=float, help="share of positives per batch (default 0.125 = 1:7)")
    g.add_argument("--pos-label", type=float, help="soft target of positive images (default 0.9)")
    g.add_argument("--drop-path-rate", type=float)
    g.add_argument("--seed", type=int)
    g.add_argument("--amp", choices=["auto", "bf16", "fp16", "off"], help="auto: bf16 on CUDA, off on the CPU")
    g.add_argument("--agg", choices=["mean", "max"], help="breast aggregation for validation (default mean)")
    g.add_argument("--select", choices=["bin_pf1", "pf1", "auc"], help="best.pt criterion (default bin_pf1)")
    g.add_argument("--steps-per-epoch", type=int, help="cap on batches per epoch")
    g.add_argument("--time-limit-s", type=float, help="stop after the epoch that crosses this many seconds")
    g.add_argument("--backend", help="CPU decode backend (default auto)")
    g.add_argument(
        "--decode-scale",
        choices=["auto", "full", "1/2", "1/4"],
        help="JPEG 2000 decode resolution: auto (default) decodes each image at the coarsest level whose "
        "breast crop still covers --img-size; full decodes every pixel (recorded in metrics.json and checkpoints)",
    )
    g.add_argument(
        "--for-processing",
        choices=["warn", "skip", "error"],
        help="FOR PROCESSING images (raw detector data): warn = use and list in RUN/notes.csv (default), "
        "skip or error = leave out and list in RUN/errors.csv",
    )
    g.add_argument(
        "--laterality",
        choices=["content", "header"],
        help="which side decides the flip when the header's laterality and the image disagree (default "
        "content; disagreements are listed in RUN/notes.csv)",
    )
    g.add_argument("--no-progress", action="store_true", help="no progress bars")


def build_config(args: argparse.Namespace):
    """Defaults < --config YAML < the saved config of RUN (with --resume) < flags."""
    from .config import TrainConfig, load_yaml

    merged = {}
    if args.config:
        merged.update(load_yaml(args.config))
    out = args.out or merged.get("out") or TrainConfig.out
    saved = os.path.join(out, "config.yaml")
    if getattr(args, "resume", False) and os.path.exists(saved):
        merged.update(load_yaml(saved))
    for name in FLAGS:
        v = getattr(args, name, None)
        if v is not None:
            merged[name] = v
    merged["out"] = out
    return TrainConfig.from_dict(merged)


def run(args: argparse.Namespace) -> int:
    import logging

    from .distributed import cleanup, env_world
    from .train import train

    cfg = build_config(args)
    if args.verbose == 0:
        logging.getLogger("training").setLevel(logging.INFO)
    try:
        from decode.progress import progress_factory

        metrics = train(cfg, resume=args.resume, progress=progress_factory(not args.no_progress))
        if int(os.environ.get("RANK", "0")) == 0:
            short = {k: v for k, v in metrics.items() if k != "history"}
            print(json.dumps({"out": cfg.out, "best": os.path.join(cfg.out, "best.pt"), **short}))
            if metrics.get("history"):
                h = metrics["history"][-1]
                print(
                    f"last epoch: train {h['train_ok']} ok, {h['train_failed']} failed, "
                    f"{h['train_unaccounted']} unaccounted; validation {h['val_rows'] - h['val_failed']} ok, "
                    f"{h['val_failed']} failed, {h['val_unaccounted']} unaccounted; "
                    f"{h['manifest_refused']} refused by the manifest (see {cfg.out}/errors.csv)",
                    file=sys.stderr,
                )
    finally:
        if env_world() > 1:
            cleanup()
    return 0
