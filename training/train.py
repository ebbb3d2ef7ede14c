"""The training loop, streaming raw DICOMs through :class:`~dali_pipelines.loader.DicomLoader`.

AdamW with linear warm-up and cosine decay per optimizer step (timm's ``CosineLRScheduler``),
AMP (bf16 on CUDA), channels_last, EMA with warm-up (timm's ``ModelEmaV3``),
gradient accumulation, a balanced sampler, soft positive labels, on-device batch
augmentation, breast-level validation each epoch (AUC, pF1, binarized pF1 at the searched
threshold), DDP under torchrun. Writes ``RUN/{best,last}.pt``, ``RUN/metrics.json`` and
``RUN/config.yaml`` atomically; ``resume=True`` continues from ``last.pt`` and ends where
an uninterrupted run would have (the order, augmentations and dropout of every epoch are
seeded from ``(seed, epoch, rank)``; optimizer, scheduler, EMA, sampler and RNG states are
restored).
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import time
from collections.abc import Callable

import numpy as np

from decode._version import __version__
from decode.atomic import atomic_write, remove_stale_temps
from decode.chain import CHAIN_VERSION

from . import plots
from .config import TrainConfig, save_yaml
from .predict import CKPT_FORMAT, autocast_ctx, autocast_dtype, infer

log = logging.getLogger(__name__)


def rng_state() -> dict:
    """Torch (CPU, CUDA), numpy and Python RNG states, as weights_only-loadable objects."""
    import torch

    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    import torch

    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    v, internal, gauss = state["python"]
    random.setstate((v, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_epoch(seed: int, epoch: int, rank: int) -> int:
    """Seed every global RNG for one epoch of one process; returns the seed."""
    import torch

    s = (int(seed) * 1_000_003 + int(epoch) * 7919 + int(rank) * 104_729) % (2**31)
    torch.manual_seed(s)
    np.random.seed(s)
    random.seed(s)
    return s


def save_checkpoint(path: str, obj: dict) -> str:
    import torch

    return atomic_write(path, lambda f: torch.save(obj, f))


def _json_safe(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _select_key(m: dict, select: str):
    """Sort key of an epoch record for best.pt: the chosen metric, then AUC, then pF1."""

    def val(x):
        return -1.0 if x is None or not math.isfinite(x) else float(x)

    return (val(m.get(f"val_{select}")), val(m.get("val_auc")), val(m.get("val_pf1")))


def train(
    cfg: TrainConfig, *, resume: bool = False, stop_after: int | None = None, progress: Callable | None = None
) -> dict:
    """Train one fold; returns the metrics dict also written to ``RUN/metrics.json``.

    Args:
        cfg: the run's options (``cfg.data`` and ``cfg.out`` are required).
        resume: continue from ``RUN/last.pt`` when it exists.
        stop_after: stop after this many epochs in this call, as an interruption would
            (checkpoints are complete; a later ``resume`` finishes the run).
        progress: a ``tqdm``-like factory for progress bars (CLI), None for silence.
    """
    import torch
    import torch.nn.functional as F

    from dali_pipelines.loader import DicomLoader
    from decode.parallel import default_workers

    from .augment import augment_batch
    from .distributed import all_gather_objects, barrier, broadcast_module, init_distributed
    from .ema import create_ema, ema_state, load_ema_state
    from .manifest import assign_folds, breast_prior, load_manifest
    from .metrics import breast_metrics
    from .model import create_model
    from .notes import collect as collect_notes
    from .notes import write_notes
    from .sampler import BalancedSampler
    from .schedule import create_scheduler, load_scheduler_state

    if not cfg.data:
        raise ValueError("train needs --data (the folder holding train.csv and train_images/)")
    info = init_distributed(cfg.device)
    device = info.device
    dev_kind = "cuda" if device.startswith("cuda") else "cpu"
    if dev_kind == "cuda":
        torch.backends.cudnn.benchmark = True
    man = load_manifest(cfg.data, "train")
    refused = man[man["path_error"] != ""]
    errors = {
        ("manifest", r.path or r.image_id): (r.image_id, r.path, "manifest", r.path_error) for r in refused.itertuples()
    }
    man = man[man["path_error"] == ""].reset_index(drop=True)
    notes: dict = {}
    if "cancer" not in man.columns:
        raise ValueError(f"{cfg.data}/train.csv has no 'cancer' column")
    fold_of = assign_folds(man, folds=cfg.folds, seed=cfg.seed)
    tr, va = man[fold_of != cfg.fold].reset_index(drop=True), man[fold_of == cfg.fold].reset_index(drop=True)
    prior = breast_prior(tr)
    labels = tr["cancer"].to_numpy(np.float32)
    workers = (
        cfg.workers
        if cfg.workers is not None
        else max(1, default_workers() // int(os.environ.get("LOCAL_WORLD_SIZE", info.world)))
    )
    sampler = BalancedSampler(
        labels,
        batch_size=cfg.batch_size,
        pos_ratio=cfg.pos_ratio,
        world=info.world,
        seed=cfg.seed,
        max_batches=cfg.steps_per_epoch,
    )
    common = dict(
        size=cfg.img_size,
        device=dev_kind,
        workers=workers,
        shard=(info.rank, info.world),
        backend=cfg.backend,
        data_root=cfg.data,
        engine=cfg.engine,
        decode_scale=cfg.decode_scale,
        for_processing=cfg.for_processing,
        laterality=cfg.laterality,
    )
    train_loader = DicomLoader(tr["path"].tolist(), labels, batch_size=cfg.batch_size, sampler=sampler, **common)
    val_loader = DicomLoader(
        va["path"].tolist(),
        va["cancer"].to_numpy(np.float32),
        batch_size=cfg.val_batch_size or 2 * cfg.batch_size,
        **common,
    )
    decode_scale = train_loader.effective_decode_scale()
    say = log.info if info.is_main else log.debug
    say(
        "fold %d/%d: %d train images (%d positive), %d validation images; breast prior %.4f; %s x%d",
        cfg.fold,
        cfg.folds,
        len(tr),
        int(labels.sum()),
        len(va),
        prior,
        device,
        info.world,
    )

    torch.manual_seed(cfg.seed)
    model = create_model(
        cfg.model,
        pretrained=cfg.pretrained,
        drop_rate=cfg.drop_rate,
        drop_path_rate=cfg.drop_path_rate,
        head_prior=cfg.pos_ratio * cfg.pos_label,
    ).to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    ema = create_ema(model, cfg.ema_decay) if cfg.ema_decay > 0 else None
    lr = cfg.effective_lr()
    decay, no_decay = [], []
    for _name, p in model.named_parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=lr
    )
    batches = len(train_loader)
    steps_per_epoch = math.ceil(batches / cfg.accum)
    sched = create_scheduler(
        opt,
        total_steps=steps_per_epoch * cfg.epochs,
        warmup_steps=round(cfg.warmup_epochs * steps_per_epoch),
        min_lr_ratio=cfg.min_lr_ratio,
    )
    amp_dtype = autocast_dtype(cfg.amp, device)
    scaler = torch.amp.GradScaler(dev_kind, enabled=amp_dtype == torch.float16)
    net = model
    if info.enabled:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[info.local_rank] if dev_kind == "cuda" else None
        )

    out = cfg.out
    last_path, best_path = os.path.join(out, "last.pt"), os.path.join(out, "best.pt")
    start_epoch, history, best, global_step = 0, [], None, 0
    if resume and os.path.exists(last_path):
        ck = torch.load(last_path, map_location="cpu", weights_only=True)
        if ck.get("model_name") != cfg.model or tuple(ck.get("img_size", ())) != tuple(cfg.img_size):
            raise ValueError(
                f"{last_path} is for {ck.get('model_name')} at {ck.get('img_size')}, not "
                f"{cfg.model} at {list(cfg.img_size)}"
            )
        if int(ck["config"].get("epochs", cfg.epochs)) != cfg.epochs:
            log.warning(
                "resuming a %s-epoch run with epochs=%d: the LR schedule changes from here on",
                ck["config"].get("epochs"),
                cfg.epochs,
            )
        model.load_state_dict(ck["model"])
        if ema is not None and ck.get("ema"):
            load_ema_state(ema, ck["ema"])
        opt.load_state_dict(ck["optimizer"])
        load_scheduler_state(sched, ck["scheduler"], int(ck["global_step"]))
        sampler.load_state_dict(ck["sampler"])
        if ck.get("scaler"):
            scaler.load_state_dict(ck["scaler"])
        set_rng_state(ck["rng"][info.rank] if info.rank < len(ck["rng"]) else ck["rng"][0])
        start_epoch, history, best = int(ck["epoch"]), list(ck["history"]), ck.get("best")
        global_step = int(ck["global_step"])
        say("resumed from %s at epoch %d", last_path, start_epoch)
    elif resume:
        log.warning("--resume: %s not found, starting from scratch", last_path)
    if info.is_main:
        os.makedirs(out, exist_ok=True)
        for stale in remove_stale_temps(out):  # left by a run killed while writing
            log.info("removed %s", stale)
        save_yaml(cfg, os.path.join(out, "config.yaml"))

    t_start = time.perf_counter()
    epochs_run = 0
    for epoch in range(start_epoch, cfg.epochs):
        gen = torch.Generator(device=device).manual_seed(seed_epoch(cfg.seed, epoch, info.rank) + 1)
        train_loader.set_epoch(epoch)
        expected = set(train_loader.rows())
        ok_rows, failed_rows = set(), {}
        net.train()
        t0 = time.perf_counter()
        n_img, loss_sum, micro = 0, 0.0, 0
        bar = (
            progress(total=batches, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch")
            if progress and info.is_main
            else None
        )
        opt.zero_grad(set_to_none=True)
        for b_i, batch in enumerate(train_loader):
            x, y = batch["image"], batch["label"]
            failed_rows.update({f["index"]: f for f in batch["failed"]})
            empty = x is None or x.shape[0] == 0
            if not empty:
                ok_rows.update(batch["index"].tolist())
            if empty:  # every row of this batch failed: keep the step (and DDP) in lockstep
                x = torch.zeros((1, 1, *cfg.img_size), device=device)
                y = torch.zeros(1, device=device)
            x = augment_batch(x.to(device, non_blocking=True), cfg.augment, gen)
            if cfg.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            target = torch.where(y.to(device) > 0.5, cfg.pos_label, 0.0).float()
            micro += 1
            sync = micro % cfg.accum == 0 or b_i == batches - 1
            ctx = net.no_sync() if info.enabled and not sync else _null()
            with ctx:
                with autocast_ctx(device, amp_dtype):
                    logits = net(x).float().reshape(-1)
                loss = F.binary_cross_entropy_with_logits(logits, target) * (0.0 if empty else 1.0)
                scaler.scale(loss / cfg.accum).backward()
            if sync:
                if cfg.grad_clip:
                    scaler.unscale_(opt)
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                scaler.step(opt)
                scaler.update()
                opt.zero_grad(set_to_none=True)
                global_step += 1
                sched.step_update(num_updates=global_step)
                if ema is not None:
                    ema.update(model, step=global_step)
            if not empty:
                n_img += x.shape[0]
                loss_sum += float(loss.detach()) * x.shape[0]
            if bar is not None:
                bar.update(1)
                bar.set_postfix(
                    loss=f"{loss_sum / max(n_img, 1):.4f}", img_s=f"{n_img / max(time.perf_counter() - t0, 1e-9):.1f}"
                )
        if bar is not None:
            bar.close()
        train_s = time.perf_counter() - t0
        parts = all_gather_objects((n_img, loss_sum, expected, ok_rows, failed_rows))
        n_all, loss_all = sum(p[0] for p in parts), sum(p[1] for p in parts)
        exp_all = set().union(*(p[2] for p in parts))
        ok_all = set().union(*(p[3] for p in parts))
        fail_all = {k: v for p in parts for k, v in p[4].items()}
        for i, f in fail_all.items():
            errors[("train", f["path"])] = (tr["image_id"].iloc[i], f["path"], f"train {f['stage']}", f["reason"])

        # validation, breast level, with the weights best.pt would hold
        eval_model = ema.module if ema is not None else model
        if ema is not None:
            broadcast_module(ema.module)
        t1 = time.perf_counter()
        idx, probs, failed = infer(eval_model, val_loader, device=device, amp=cfg.amp, channels_last=cfg.channels_last)
        val_s = time.perf_counter() - t1
        gathered = all_gather_objects((idx, probs, failed))
        idx = np.concatenate([g[0] for g in gathered])
        probs = np.concatenate([g[1] for g in gathered])
        val_failed = [f for g in gathered for f in g[2]]
        for f in val_failed:
            errors[("val", f["path"])] = (
                va["image_id"].iloc[f["index"]],
                f["path"],
                f"validation {f['stage']}",
                f["reason"],
            )
        m = breast_metrics(va["prediction_id"].iloc[idx].tolist(), probs, va["cancer"].to_numpy()[idx], agg=cfg.agg)
        # notes about rows that were used (FOR PROCESSING, laterality, ...): RUN/notes.csv
        mine = [("train", n) for n in train_loader.notes] + [("val", n) for n in val_loader.notes]
        train_loader.notes.clear()
        val_loader.notes.clear()
        for part in all_gather_objects(mine):
            for split, n in part:
                notes.update(collect_notes([n], (tr if split == "train" else va)["image_id"].to_numpy()))
        rec = {
            "epoch": epoch + 1,
            "train_loss": loss_all / max(n_all, 1),
            "lr": float(opt.param_groups[0]["lr"]),
            "train_images": n_all,
            "train_seconds": round(train_s, 3),
            "train_images_per_s": round(n_all / max(train_s, 1e-9), 2),
            "val_auc": m["auc"],
            "val_pf1": m["pf1"],
            "val_bin_pf1": m["bin_pf1"],
            "threshold": m["threshold"],
            "train_rows": len(exp_all),
            "train_ok": len(ok_all & exp_all),
            "train_failed": len(set(fail_all) - ok_all),
            "train_unaccounted": len(exp_all - ok_all - set(fail_all)),
            "val_breasts": m["breasts"],
            "val_rows": len(va),
            "val_failed": len(val_failed),
            "val_unaccounted": len(va) - len(idx) - len(val_failed),
            "manifest_refused": len(refused),
            "val_images_per_s": round(len(idx) / max(val_s, 1e-9), 2),
        }
        history.append({k: _json_safe(v) for k, v in rec.items()})
        say(
            "epoch %d/%d: loss %.4f, %.1f img/s train, val AUC %.4f pF1 %.4f bin-pF1 %.4f @%.3f",
            epoch + 1,
            cfg.epochs,
            rec["train_loss"],
            rec["train_images_per_s"],
            m["auc"],
            m["pf1"],
            m["bin_pf1"],
            m["threshold"],
        )
        common_ck = {
            "format": CKPT_FORMAT,
            "version": __version__,
            "model_name": cfg.model,
            "img_size": list(cfg.img_size),
            "config": cfg.to_dict(),
            "decode_scale": decode_scale,
            "chain_version": CHAIN_VERSION,
            "prior": prior,
            "agg": cfg.agg,
        }
        is_best = best is None or _select_key(rec, cfg.select) > _select_key(best, cfg.select)
        if is_best:
            best = dict(history[-1])
        if info.is_main:
            if is_best:
                save_checkpoint(
                    best_path,
                    {
                        **common_ck,
                        "kind": "best",
                        "epoch": epoch + 1,
                        "threshold": float(m["threshold"]),
                        "metrics": dict(history[-1]),
                        "model": eval_model.state_dict(),
                    },
                )
            rngs = all_gather_objects(rng_state())
            save_checkpoint(
                last_path,
                {
                    **common_ck,
                    "kind": "last",
                    "epoch": epoch + 1,
                    "global_step": global_step,
                    "threshold": float(best["threshold"]),
                    "model": model.state_dict(),
                    "ema": ema_state(ema) if ema is not None else None,
                    "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(),
                    "scaler": scaler.state_dict() if scaler.is_enabled() else None,
                    "sampler": {**sampler.state_dict(), "epoch": epoch + 1},
                    "rng": rngs,
                    "history": history,
                    "best": best,
                },
            )
            _write_metrics(cfg, history, best, prior, info.world, device, train_loader.engine_name, decode_scale)
            _write_errors(out, errors)
            write_notes(os.path.join(out, "notes.csv"), notes, keep_existing=True)
        else:
            all_gather_objects(rng_state())
        barrier()
        epochs_run += 1
        if stop_after is not None and epochs_run >= stop_after and epoch + 1 < cfg.epochs:
            log.info("stopping after %d epoch(s) as asked; --resume continues", epochs_run)
            break
        if cfg.time_limit_s and time.perf_counter() - t_start > cfg.time_limit_s and epoch + 1 < cfg.epochs:
            log.warning("time limit %.0f s reached after epoch %d of %d", cfg.time_limit_s, epoch + 1, cfg.epochs)
            break
    train_loader.close()
    val_loader.close()
    if info.is_main and history:
        plots.write_curves(os.path.join(out, "metrics.json"), os.path.join(out, "curves.png"))
    return _metrics_dict(cfg, history, best, prior, info.world, device, train_loader.engine_name, decode_scale)


def _null():
    import contextlib

    return contextlib.nullcontext()


def _metrics_dict(cfg, history, best, prior, world, device, engine: str, decode_scale: str) -> dict:
    best = best or {}
    tr = [h["train_images_per_s"] for h in history]
    va = [h["val_images_per_s"] for h in history]
    return {
        "val_auc": best.get("val_auc"),
        "val_pf1": best.get("val_pf1"),
        "val_bin_pf1": best.get("val_bin_pf1"),
        "threshold": best.get("threshold"),
        "best_epoch": best.get("epoch"),
        "epochs_done": len(history),
        "epochs": cfg.epochs,
        "train_images_per_s": round(float(np.mean(tr)), 2) if tr else None,
        "val_images_per_s": round(float(np.mean(va)), 2) if va else None,
        "prior": prior,
        "model": cfg.model,
        "img_size": list(cfg.img_size),
        "decode_scale": decode_scale,  # what the loader decoded at (full on the GPU pipeline)
        "device": device,
        "engine": engine,
        "world": world,
        "select": cfg.select,
        "history": history,
    }


def _write_errors(out: str, errors: dict) -> None:
    """``RUN/errors.csv``: every row that could not be used (image_id, path, stage, reason)."""
    import csv
    import io

    old = os.path.join(out, "errors.csv")
    rows = {}
    if os.path.exists(old):  # keep what earlier (resumed) runs recorded
        with open(old, newline="") as f:
            for r in csv.DictReader(f):
                rows[(r["stage"], r["path"])] = (r["image_id"], r["path"], r["stage"], r["reason"])
    rows.update({(v[2], v[1]): v for v in errors.values()})
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["image_id", "path", "stage", "reason"])
    w.writerows(sorted(rows.values(), key=lambda v: (v[2], v[1])))
    atomic_write(old, buf.getvalue())


def _write_metrics(cfg, history, best, prior, world, device, engine: str, decode_scale: str) -> None:
    d = _metrics_dict(cfg, history, best, prior, world, device, engine, decode_scale)
    atomic_write(os.path.join(cfg.out, "metrics.json"), json.dumps(d, indent=2) + "\n")
