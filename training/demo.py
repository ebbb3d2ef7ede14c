"""``python -m training.demo --out runs/demo`` (``make demo``): the whole path in a few minutes.

1. synthesize a small RSNA-layout dataset (``OUT/data``; kept between runs),
2. ``rsna-mammo decode`` its training images (in-process) → ``OUT/decode_summary.json``,
3. train a tiny model streaming the raw DICOMs (``OUT/run``; a time limit keeps it short),
4. ``predict`` the test split → ``OUT/submission.csv`` (+ ``OUT/errors.csv``),
5. score it against the synthetic answers → ``OUT/metrics.json`` and ``OUT/report.md``.

On a GPU machine the same command trains and predicts on the GPU with a larger input.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import time


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="runs/demo", metavar="DIR")
    p.add_argument("--patients", type=int, default=32, help="training patients (4 images each)")
    p.add_argument("--test-patients", type=int, default=10)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--minutes", type=float, default=2.0, help="training time limit (default 2)")
    p.add_argument("--epochs", type=int, default=None, help="default: 12 on the CPU, 10 on a GPU")
    p.add_argument("--workers", type=int, default=0, help="decode processes (default: all cores)")


def _pick(device: str) -> dict:
    """Tiny settings on the CPU, a somewhat larger model and input on a GPU."""
    if device == "cuda":
        return dict(model="efficientnet_b0", img_size=(256, 192), batch_size=16, epochs=10, synth=(320, 256))
    return dict(model="resnet10t", img_size=(96, 72), batch_size=8, epochs=12, synth=(192, 144))


def run(args: argparse.Namespace) -> int:
    from dali_pipelines.devices import resolve_device
    from decode.atomic import atomic_write
    from decode.liblog import install
    from decode.parallel import default_workers

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    install()
    logging.getLogger("training").setLevel(logging.INFO)
    out = os.path.abspath(args.out)
    device = resolve_device(args.device)
    s = _pick(device)
    workers = args.workers or default_workers()
    data = os.path.join(out, "data")
    times = {}
    with _timed(times, "synth_s"):
        _synthesize(args, data, s, workers)
    with _timed(times, "decode_s"):
        rc = _decode(out, data, s, workers)
    if rc not in (0, 1):
        print(f"decode failed with status {rc}", file=sys.stderr)
        return rc
    with _timed(times, "train_s"):
        cfg, tm = _train(args, data, out, s, device, workers)
    with _timed(times, "predict_s"):
        print("[4/5] predicting the test split → submission.csv", file=sys.stderr)
        from .predict import predict

        sub_path = os.path.join(out, "submission.csv")
        best = os.path.join(cfg.out, "best.pt")
        ps = predict(data=data, ckpt=best, out=sub_path, device=device, workers=workers)
    print("[5/5] scoring against test_labels.csv", file=sys.stderr)
    decode_summary = json.load(open(os.path.join(out, "decode_summary.json")))
    metrics = _score(args, data, sub_path, cfg, tm, ps, decode_summary, s, device, times)
    atomic_write(os.path.join(out, "metrics.json"), json.dumps(metrics, indent=2, default=str) + "\n")
    atomic_write(os.path.join(out, "report.md"), _report(metrics, out, decode_summary))
    test = metrics["test"]
    print(json.dumps({"submission": sub_path, "test_auc": test["auc"], "test_pf1": test["pf1"], "seconds": times}))
    return 0


@contextlib.contextmanager
def _timed(times: dict, key: str):
    t0 = time.perf_counter()
    yield
    times[key] = round(time.perf_counter() - t0, 2)


def _synthesize(args, data: str, s: dict, workers: int) -> None:
    """Step 1: the synthetic RSNA-layout dataset (kept between runs)."""
    from decode.testing.synth import make_dataset

    if os.path.exists(os.path.join(data, "test_labels.csv")):
        print(f"[1/5] reusing the dataset in {data}", file=sys.stderr)
        return
    print(f"[1/5] synthesizing {args.patients}+{args.test_patients} patients under {data}", file=sys.stderr)
    height, width = s["synth"]
    make_dataset(
        data,
        patients=args.patients,
        test_patients=args.test_patients,
        height=height,
        width=width,
        seed=0,
        cancer_rate=0.4,
        workers=workers,
    )


def _decode(out: str, data: str, s: dict, workers: int) -> int:
    """Step 2: ``rsna-mammo decode`` (crop stage) of the training images, in-process."""
    from .cli import main as cli_main

    print("[2/5] rsna-mammo decode (crop stage) → decode_summary.json", file=sys.stderr)
    h, w = s["img_size"]
    summary = os.path.join(out, "decode_summary.json")
    argv = ["decode", os.path.join(data, "train_images"), "--out", os.path.join(out, "decoded"), "--stage", "crop"]
    argv += ["--size", f"{h}x{w}", "--workers", str(workers), "--device", "cpu", "--summary", summary]
    return cli_main(argv)


def _train(args, data: str, out: str, s: dict, device: str, workers: int):
    """Step 3: a tiny model trained streaming the raw DICOMs, under a time limit."""
    from decode.progress import progress_factory

    from .config import TrainConfig
    from .train import train

    h, w = s["img_size"]
    print(f"[3/5] training {s['model']} at {h}x{w} on {device} (≤ {args.minutes:g} min)", file=sys.stderr)
    cfg = TrainConfig(
        data=data,
        out=os.path.join(out, "run"),
        model=s["model"],
        img_size=s["img_size"],
        epochs=args.epochs or s["epochs"],
        batch_size=s["batch_size"],
        pos_ratio=0.25,
        lr=2e-3,
        warmup_epochs=0.5,
        device=device,
        workers=workers,
        time_limit_s=60 * args.minutes,
    )
    return cfg, train(cfg, progress=progress_factory())


def _score(args, data, sub_path, cfg, tm, ps, decode_summary, s, device, times) -> dict:
    """Step 5: the submission against the synthetic answers, breast level, and what the run measured."""
    import pandas as pd

    from decode.env import collect

    from .metrics import best_threshold, binarized_pf1, pfbeta, roc_auc

    truth = pd.read_csv(os.path.join(data, "test_labels.csv"), dtype={"prediction_id": str})
    sub = pd.read_csv(sub_path, dtype={"prediction_id": str})
    both = truth.merge(sub, on="prediction_id", suffixes=("_true", ""))
    y, p = both["cancer_true"].to_numpy(), both["cancer"].to_numpy()
    thr = float(tm["threshold"]) if tm.get("threshold") is not None else 0.5
    oracle_f1, oracle_t = best_threshold(y, p)
    h, w = s["img_size"]
    return {
        "device": device,
        "model": s["model"],
        "img_size": list(s["img_size"]),
        "patients": {"train": args.patients, "test": args.test_patients},
        "test": {
            "breasts": int(len(both)),
            "positives": int(y.sum()),
            "auc": _f(roc_auc(y, p)),
            "pf1": _f(pfbeta(y, p)),
            "bin_pf1_at_val_threshold": _f(binarized_pf1(y, p, thr)),
            "val_threshold": thr,
            "bin_pf1_oracle": _f(oracle_f1),
            "oracle_threshold": oracle_t,
            "complete": bool(len(sub) == len(truth) == len(both)),
        },
        "validation": {k: v for k, v in tm.items() if k != "history"},
        "history": tm["history"],
        "throughput": {
            "decode_images_per_s": decode_summary.get("images_per_s"),
            "train_images_per_s": tm.get("train_images_per_s"),
            "val_images_per_s": tm.get("val_images_per_s"),
            "predict_images_per_s": ps.get("images_per_s"),
        },
        "predict": {k: v for k, v in ps.items() if k not in ("submission", "errors")},
        "seconds": times,
        "machine": collect(),
        "train_flags": (
            f"--model {cfg.model} --img-size {h}x{w} --epochs {cfg.epochs} --batch-size "
            f"{cfg.batch_size} --lr {cfg.lr:g} --pos-ratio {cfg.pos_ratio:g} --warmup-epochs "
            f"{cfg.warmup_epochs:g} --device {device}"
        ),
    }


def _f(v):
    import math

    return None if v is None or (isinstance(v, float) and not math.isfinite(v)) else round(float(v), 4)


def _report(m: dict, out: str, dec: dict) -> str:
    t, v, thr, sec = m["test"], m["validation"], m["throughput"], m["seconds"]
    mach = m["machine"]
    rows = "\n".join(
        f"| {h['epoch']} | {_f(h['train_loss'])} | {h['train_images_per_s']} | {_f(h['val_auc'])} | "
        f"{_f(h['val_pf1'])} | {_f(h['val_bin_pf1'])} |"
        for h in m["history"]
    )
    c = m["train_flags"]
    return f"""# rsna-mammo demo

Device: **{m["device"]}** ({mach.get("gpu") or mach.get("cpu")}); model `{m["model"]}` at
{m["img_size"][0]}×{m["img_size"][1]}, trained from scratch on raw synthetic DICOMs
({m["patients"]["train"]} training patients, {m["patients"]["test"]} test patients).

## Test split (breast level, {t["breasts"]} breasts, {t["positives"]} with cancer)

| AUC | pF1 | binarized pF1 @ validation threshold {t["val_threshold"]:.3f} | best binarized pF1 (oracle) |
| --- | --- | --- | --- |
| {t["auc"]} | {t["pf1"]} | {t["bin_pf1_at_val_threshold"]} | {t["bin_pf1_oracle"]} |

Submission complete (one row per prediction_id): **{t["complete"]}**; images that could not
be used: {m["predict"].get("failed_images")} (see `errors.csv`).

## Validation (fold 0, best epoch {v.get("best_epoch")} of {v.get("epochs_done")})

| epoch | train loss | train img/s | val AUC | val pF1 | val binarized pF1 |
| --- | --- | --- | --- | --- | --- |
{rows}

## Throughput and time

decode (crop stage, {dec.get("workers")} workers): {thr["decode_images_per_s"]} images/s ·
training: {thr["train_images_per_s"]} images/s · inference: {thr["predict_images_per_s"]} images/s ·
seconds: synth {sec["synth_s"]}, decode {sec["decode_s"]}, train {sec["train_s"]}, predict {sec["predict_s"]}.

Files: `submission.csv`, `errors.csv`, `roc.png`, `metrics.json`, `decode_summary.json`, `run/` (best.pt,
last.pt, metrics.json, curves.png, config.yaml), `data/` (the synthetic dataset). The same steps by hand:

```
rsna-mammo train --data {out}/data --out {out}/run {c}
rsna-mammo predict --data {out}/data --ckpt {out}/run/best.pt --out {out}/submission.csv
```
"""


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.demo", description=__doc__.splitlines()[0])
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
