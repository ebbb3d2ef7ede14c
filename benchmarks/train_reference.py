"""``rsna-mammo bench train-reference --json FILE``: the CPU reference training run.

Runs, as separate processes, exactly what a user would type::

    rsna-mammo synth --out OUT/data --patients 100 --height 512 --width 384
    rsna-mammo train --data OUT/data --out OUT/run1 --img-size 256x192 --model efficientnet_b0 \\
        --epochs 8 --device cpu --no-progress
    rsna-mammo predict --data OUT/data --ckpt OUT/run1/best.pt --out OUT/submission.csv --no-progress

then scores the submission per breast against the synthetic answers (``test_labels.csv``)
and writes a :mod:`benchmarks.schema` document: the machine, the command and the resolved
training config, a ``train`` and an ``infer`` row (images/s from raw DICOM), and a summary
with test AUC / pF1 / binarized pF1, the validation figures and the per-epoch history. The
quality figures are the point (they must stay in the same range when the training code
changes); images/s on a shared machine are indicative only.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import subprocess
import sys
import time

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="/tmp/acc", metavar="DIR", help="work folder (data, run, submission)")
    p.add_argument("--json", required=True, metavar="FILE", help="result document ({machine} and {date} expand)")
    p.add_argument("--patients", type=int, default=100, help="training patients (4 images each)")
    p.add_argument("--size", default="512x384", help="synthetic image size HxW")
    p.add_argument("--img-size", default="256x192", help="model input HxW")
    p.add_argument("--model", default="efficientnet_b0")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--notes", default="", help="free text recorded in config.notes")


def _cli(*argv: str) -> tuple[float, float, str, float | None]:
    """Run ``rsna-mammo ARGV`` as a child process.

    Returns:
        (wall s, CPU user s of the child and its workers, stdout, peak resident MiB of the
        child's process tree, sampled every 0.5 s; None without psutil).
    """
    from .measure import PeakHostMemory

    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "training.cli", *argv], stdout=subprocess.PIPE, text=True)
    with PeakHostMemory(interval=0.5, pid=proc.pid) as mem:
        stdout, _ = proc.communicate()
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise subprocess.CalledProcessError(proc.returncode, ["rsna-mammo", *argv])
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime - before
    return wall, cpu, stdout, mem.peak_mb


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import pandas as pd
    import yaml

    from decode.chain import parse_size
    from decode.errors import UsageError
    from decode.parallel import default_workers
    from training.manifest import assign_folds, load_manifest
    from training.metrics import best_threshold, binarized_pf1, pfbeta, roc_auc

    from .machine import expand_path, machine_record
    from .schema import BenchResult, dump, make_document

    out = os.path.abspath(args.out)
    data, run_dir, sub = os.path.join(out, "data"), os.path.join(out, "run1"), os.path.join(out, "submission.csv")
    sh, sw = parse_size(args.size)
    ih, iw = parse_size(args.img_size)
    if args.patients < 1 or args.epochs < 1:
        raise UsageError("--patients and --epochs must be >= 1")
    synth = ["synth", "--out", data, "--patients", str(args.patients), "--height", str(sh), "--width", str(sw)]
    train = ["train", "--data", data, "--out", run_dir, "--img-size", args.img_size, "--model", args.model]
    train += ["--epochs", str(args.epochs), "--device", "cpu", "--no-progress"]
    predict = ["predict", "--data", data, "--ckpt", os.path.join(run_dir, "best.pt"), "--out", sub, "--no-progress"]
    command = " && ".join("rsna-mammo " + " ".join(a) for a in (synth, train, predict))

    machine = machine_record(with_torch=True)  # before the run: the code and the tree that ran
    _cli(*synth)
    train_wall, train_cpu, _, train_peak_mb = _cli(*train)
    predict_wall, _, stdout, _ = _cli(*predict)
    ps = json.loads(stdout.strip().splitlines()[0])

    with open(os.path.join(run_dir, "metrics.json")) as f:
        metrics = json.load(f)
    with open(os.path.join(run_dir, "config.yaml")) as f:
        cfg = yaml.safe_load(f)
    truth = pd.read_csv(os.path.join(data, "test_labels.csv"), dtype={"prediction_id": str})
    pred = pd.read_csv(sub, dtype={"prediction_id": str})
    both = truth.merge(pred, on="prediction_id", suffixes=("_true", ""))
    y, p = both["cancer_true"].to_numpy(), both["cancer"].to_numpy()
    thr = float(metrics["threshold"])
    train_csv = pd.read_csv(os.path.join(data, "train.csv"))
    test_csv = pd.read_csv(os.path.join(data, "test.csv"))
    hist = metrics["history"]
    man = load_manifest(data, "train")
    folds = assign_folds(man, folds=int(cfg["folds"]), seed=int(cfg["seed"]))
    rates = [h["train_images_per_s"] for h in hist]
    med = float(np.median(rates))
    r4 = lambda v: None if v is None or not np.isfinite(v) else round(float(v), 4)  # noqa: E731
    rows = [
        BenchResult(
            stage="train",
            backend="loader",
            device="cpu",
            transfer_syntax=None,
            height=ih,
            width=iw,
            images=int(hist[0]["train_images"]),
            images_per_s=round(med, 2),
            mpix_per_s=round(med * ih * iw / 1e6, 4),
            spread=round((max(rates) - min(rates)) / med, 4),
            workers=default_workers(),
            batch_size=int(cfg["batch_size"]),
            peak_host_mb=train_peak_mb,
            peak_gpu_mb=None,
            exact=None,
        ),
        BenchResult(
            stage="infer",
            backend="loader",
            device="cpu",
            transfer_syntax=None,
            height=ih,
            width=iw,
            images=int(ps["ok_images"]),
            images_per_s=ps["images_per_s"],
            mpix_per_s=round(ps["images_per_s"] * ih * iw / 1e6, 4),
            spread=0.0,
            workers=default_workers(),
            batch_size=2 * int(cfg["batch_size"]),
            peak_host_mb=None,
            peak_gpu_mb=None,
            exact=None,
        ),
    ]
    summary = {
        "test_auc": r4(roc_auc(y, p)),
        "test_pf1": r4(pfbeta(y, p)),
        "test_bin_pf1_at_val_threshold": r4(binarized_pf1(y, p, thr)),
        "val_threshold": thr,
        "test_bin_pf1_oracle": r4(best_threshold(y, p)[0]),
        "submission_rows": int(len(pred)),
        "submission_complete": bool(len(pred) == len(truth) == len(both)),
        "failed_images": int(ps["failed_images"]),
        "val_auc": r4(metrics["val_auc"]),
        "val_pf1": r4(metrics["val_pf1"]),
        "val_bin_pf1": r4(metrics["val_bin_pf1"]),
        "best_epoch": metrics["best_epoch"],
        "train_images_per_s_median": round(med, 2),
        "val_images_per_s_median": round(float(np.median([h["val_images_per_s"] for h in hist])), 2),
        "predict_images_per_s": ps["images_per_s"],
        "train_wall_s": round(train_wall, 1),
        "train_cpu_user_s": round(train_cpu, 1),
        "predict_wall_s": round(predict_wall, 2),
        "predict_infer_s": ps["seconds"],
        "history": hist,
    }
    config = {
        "command": command,
        "what": "CPU reference run: train from raw synthetic DICOMs, predict the test split, score it per breast "
        "against test_labels.csv",
        "dataset": {
            "train_patients": int(train_csv["patient_id"].nunique()),
            "test_patients": int(test_csv["patient_id"].nunique()),
            "train_images": len(train_csv),
            "test_images": len(test_csv),
            "source_size": [sh, sw],
            "train_fold_images": int((folds != int(cfg["fold"])).sum()),
            "val_images": int((folds == int(cfg["fold"])).sum()),
            "test_breasts": int(len(truth)),
            "test_positive_breasts": int(truth["cancer"].sum()),
        },
        "train_config": cfg,
        "notes": args.notes,
    }
    path = dump(make_document(machine, config, rows, summary), expand_path(args.json, machine))
    print(json.dumps({k: v for k, v in summary.items() if k != "history"}, indent=2))
    print(f"wrote {path}", file=sys.stderr)
    return 0
