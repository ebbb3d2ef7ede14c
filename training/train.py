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

The parts, in the order :func:`train` runs them: :func:`load_folds` (manifest → train and
validation rows), :func:`make_loaders`, :func:`create_state` (model, EMA, optimizer,
scheduler, scaler, DDP) and :func:`resume_state`, then per epoch :func:`train_one_epoch`,
:func:`validate`, :func:`epoch_record` and :func:`save_epoch` (checkpoints, metrics,
errors, notes).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from decode.atomic import atomic_write, remove_stale_temps
from decode.errors import UsageError

from . import plots
from .amp import autocast_ctx, autocast_dtype
from .checkpoint import checkpoint_header, rng_state, save_checkpoint, set_rng_state
from .config import TrainConfig, save_yaml
from .predict import infer

log = logging.getLogger(__name__)


def seed_epoch(seed: int, epoch: int, rank: int) -> int:
    """Seed every global RNG for one epoch of one process; returns the seed."""
    import torch

    s = (int(seed) * 1_000_003 + int(epoch) * 7919 + int(rank) * 104_729) % (2**31)
    torch.manual_seed(s)
    np.random.seed(s)
    random.seed(s)
    return s


def _json_safe(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _select_key(m: dict, select: str):
    """Sort key of an epoch record for best.pt: the chosen metric, then AUC, then pF1."""

    def val(x):
        return -1.0 if x is None or not math.isfinite(x) else float(x)

    return (val(m.get(f"val_{select}")), val(m.get("val_auc")), val(m.get("val_pf1")))


# --- set-up -------------------------------------------------------------------------------


@dataclass
class Folds:
    """The run's rows: ``train`` and ``val`` manifests (index = loader row), and what was refused.

    ``errors`` maps ``(stage, path)`` → ``(image_id, path, stage, reason)`` and grows as
    rows fail; it becomes ``RUN/errors.csv``.
    """

    train: Any  # pandas.DataFrame
    val: Any
    prior: float
    refused: int
    errors: dict = field(default_factory=dict)

    @property
    def labels(self) -> np.ndarray:
        return self.train["cancer"].to_numpy(np.float32)


def load_folds(cfg: TrainConfig) -> Folds:
    """``train.csv`` → this fold's training and validation rows (patient-grouped, stratified folds).

    Raises:
        UsageError: no ``--data``, or a CSV without a ``cancer`` column.
    """
    from .manifest import assign_folds, breast_prior, load_manifest

    if not cfg.data:
        raise UsageError("train needs --data (the folder holding train.csv and train_images/)")
    man = load_manifest(cfg.data, "train")
    refused = man[man["path_error"] != ""]
    errors = {
        ("manifest", r.path or r.image_id): (r.image_id, r.path, "manifest", r.path_error) for r in refused.itertuples()
    }
    man = man[man["path_error"] == ""].reset_index(drop=True)
    if "cancer" not in man.columns:
        raise UsageError(f"{cfg.data}/train.csv has no 'cancer' column")
    fold_of = assign_folds(man, folds=cfg.folds, seed=cfg.seed)
    tr, va = man[fold_of != cfg.fold].reset_index(drop=True), man[fold_of == cfg.fold].reset_index(drop=True)
    return Folds(tr, va, breast_prior(tr), len(refused), errors)


def make_loaders(cfg: TrainConfig, folds: Folds, info) -> tuple:
    """``(train_loader, val_loader, sampler)``: the balanced sampler drives the training loader."""
    from dali_pipelines.loader import DicomLoader
    from decode.parallel import default_workers

    from .sampler import BalancedSampler

    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", info.world))
    workers = cfg.workers if cfg.workers is not None else max(1, default_workers() // local_world)
    labels = folds.labels
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
        device="cuda" if info.device.startswith("cuda") else "cpu",
        workers=workers,
        shard=(info.rank, info.world),
        backend=cfg.backend,
        data_root=cfg.data,
        engine=cfg.engine,
        decode_scale=cfg.decode_scale,
        for_processing=cfg.for_processing,
        laterality=cfg.laterality,
    )
    va = folds.val
    train_loader = DicomLoader(
        folds.train["path"].tolist(), labels, batch_size=cfg.batch_size, sampler=sampler, **common
    )
    val_batch = cfg.val_batch_size or 2 * cfg.batch_size
    val_loader = DicomLoader(va["path"].tolist(), va["cancer"].to_numpy(np.float32), batch_size=val_batch, **common)
    return train_loader, val_loader, sampler


@dataclass
class TrainState:
    """Everything an epoch updates and ``last.pt`` saves."""

    model: Any  # the bare module (its state_dict is what checkpoints hold)
    net: Any  # the module the loop calls: ``model`` or its DDP wrapper
    ema: Any
    opt: Any
    sched: Any
    scaler: Any
    sampler: Any
    amp_dtype: Any
    steps_per_epoch: int
    epoch: int = 0  # epochs completed
    global_step: int = 0  # optimizer steps taken
    history: list = field(default_factory=list)
    best: dict | None = None

    @property
    def eval_model(self):
        """The weights validation scores and ``best.pt`` holds (EMA's when the run uses EMA)."""
        return self.ema.module if self.ema is not None else self.model


def create_state(cfg: TrainConfig, info, sampler, batches: int) -> TrainState:
    """Model (seeded from ``cfg.seed``), EMA, AdamW (no decay on norms and biases), cosine schedule, scaler, DDP."""
    import torch

    from .ema import create_ema
    from .model import create_model
    from .schedule import create_scheduler

    device = info.device
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
    decay, no_decay = [], []
    for _name, p in model.named_parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=cfg.effective_lr())
    steps_per_epoch = math.ceil(batches / cfg.accum)
    sched = create_scheduler(
        opt,
        total_steps=steps_per_epoch * cfg.epochs,
        warmup_steps=round(cfg.warmup_epochs * steps_per_epoch),
        min_lr_ratio=cfg.min_lr_ratio,
    )
    amp_dtype = autocast_dtype(cfg.amp, device)
    dev_kind = "cuda" if device.startswith("cuda") else "cpu"
    scaler = torch.amp.GradScaler(dev_kind, enabled=amp_dtype == torch.float16)
    net = model
    if info.enabled:
        ids = [info.local_rank] if dev_kind == "cuda" else None
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
    return TrainState(model, net, ema, opt, sched, scaler, sampler, amp_dtype, steps_per_epoch)


def resume_state(state: TrainState, path: str, cfg: TrainConfig, rank: int) -> None:
    """Load ``last.pt`` into ``state``: weights, EMA, optimizer, schedule, sampler, scaler, this rank's RNGs.

    Raises:
        UsageError: the checkpoint is for another model or image size.
    """
    import torch

    from .ema import load_ema_state
    from .schedule import load_scheduler_state

    ck = torch.load(path, map_location="cpu", weights_only=True)
    if ck.get("model_name") != cfg.model or tuple(ck.get("img_size", ())) != tuple(cfg.img_size):
        raise UsageError(
            f"{path} is for {ck.get('model_name')} at {ck.get('img_size')}, not {cfg.model} at {list(cfg.img_size)}"
        )
    if int(ck["config"].get("epochs", cfg.epochs)) != cfg.epochs:
        log.warning(
            "resuming a %s-epoch run with epochs=%d: the LR schedule changes from here on",
            ck["config"].get("epochs"),
            cfg.epochs,
        )
    state.model.load_state_dict(ck["model"])
    if state.ema is not None and ck.get("ema"):
        load_ema_state(state.ema, ck["ema"])
    state.opt.load_state_dict(ck["optimizer"])
    load_scheduler_state(state.sched, ck["scheduler"], int(ck["global_step"]))
    state.sampler.load_state_dict(ck["sampler"])
    if ck.get("scaler"):
        state.scaler.load_state_dict(ck["scaler"])
    set_rng_state(ck["rng"][rank] if rank < len(ck["rng"]) else ck["rng"][0])
    state.epoch, state.history, state.best = int(ck["epoch"]), list(ck["history"]), ck.get("best")
    state.global_step = int(ck["global_step"])


# --- one epoch ----------------------------------------------------------------------------


@dataclass
class EpochTrain:
    """One process's training epoch: images used, summed loss, and which rows came out how."""

    images: int = 0
    loss_sum: float = 0.0
    expected: set = field(default_factory=set)
    ok_rows: set = field(default_factory=set)
    failed_rows: dict = field(default_factory=dict)
    seconds: float = 0.0


def train_one_epoch(
    state: TrainState, loader, cfg: TrainConfig, *, epoch: int, info, progress: Callable | None = None
) -> EpochTrain:
    """One pass over this rank's rows: augment, forward/backward under AMP, accumulate, step, EMA.

    A batch whose rows all failed still takes its step (a zero-weight loss on a blank image) so
    every rank stays in lockstep under DDP.
    """
    import torch
    import torch.nn.functional as F

    from .augment import augment_batch

    device = info.device
    gen = torch.Generator(device=device).manual_seed(seed_epoch(cfg.seed, epoch, info.rank) + 1)
    loader.set_epoch(epoch)
    res = EpochTrain(expected=set(loader.rows()))
    batches = len(loader)
    state.net.train()
    t0 = time.perf_counter()
    micro = 0
    desc = f"epoch {epoch + 1}/{cfg.epochs}"
    bar = progress(total=batches, desc=desc, unit="batch") if progress and info.is_main else None
    state.opt.zero_grad(set_to_none=True)
    for b_i, batch in enumerate(loader):
        x, y = batch["image"], batch["label"]
        res.failed_rows.update({f["index"]: f for f in batch["failed"]})
        empty = x is None or x.shape[0] == 0
        if not empty:
            res.ok_rows.update(batch["index"].tolist())
        else:
            x = torch.zeros((1, 1, *cfg.img_size), device=device)
            y = torch.zeros(1, device=device)
        x = augment_batch(x.to(device, non_blocking=True), cfg.augment, gen)
        if cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        target = torch.where(y.to(device) > 0.5, cfg.pos_label, 0.0).float()
        micro += 1
        sync = micro % cfg.accum == 0 or b_i == batches - 1
        with state.net.no_sync() if info.enabled and not sync else contextlib.nullcontext():
            with autocast_ctx(device, state.amp_dtype):
                logits = state.net(x).float().reshape(-1)
            loss = F.binary_cross_entropy_with_logits(logits, target) * (0.0 if empty else 1.0)
            state.scaler.scale(loss / cfg.accum).backward()
        if sync:
            _optimizer_step(state, cfg)
        if not empty:
            res.images += x.shape[0]
            res.loss_sum += float(loss.detach()) * x.shape[0]
        if bar is not None:
            bar.update(1)
            rate = res.images / max(time.perf_counter() - t0, 1e-9)
            bar.set_postfix(loss=f"{res.loss_sum / max(res.images, 1):.4f}", img_s=f"{rate:.1f}")
    if bar is not None:
        bar.close()
    res.seconds = time.perf_counter() - t0
    return res


def _optimizer_step(state: TrainState, cfg: TrainConfig) -> None:
    """Clip (when asked), step, update the scaler, advance the schedule and the EMA."""
    import torch

    if cfg.grad_clip:
        state.scaler.unscale_(state.opt)
        torch.nn.utils.clip_grad_norm_(state.model.parameters(), cfg.grad_clip)
    state.scaler.step(state.opt)
    state.scaler.update()
    state.opt.zero_grad(set_to_none=True)
    state.global_step += 1
    state.sched.step_update(num_updates=state.global_step)
    if state.ema is not None:
        state.ema.update(state.model, step=state.global_step)


@dataclass
class Validation:
    """Breast-level validation over all ranks: metrics, rows scored, failures, seconds."""

    metrics: dict
    rows: np.ndarray
    failed: list
    seconds: float


def validate(state: TrainState, loader, folds: Folds, cfg: TrainConfig, info) -> Validation:
    """Score the validation rows with the weights ``best.pt`` would hold; AUC, pF1 and threshold per breast."""
    from .distributed import all_gather_objects, broadcast_module
    from .metrics import breast_metrics

    if state.ema is not None:
        broadcast_module(state.ema.module)
    t1 = time.perf_counter()
    idx, probs, failed = infer(
        state.eval_model, loader, device=info.device, amp=cfg.amp, channels_last=cfg.channels_last
    )
    seconds = time.perf_counter() - t1
    gathered = all_gather_objects((idx, probs, failed))
    idx = np.concatenate([g[0] for g in gathered])
    probs = np.concatenate([g[1] for g in gathered])
    failed = [f for g in gathered for f in g[2]]
    va = folds.val
    m = breast_metrics(va["prediction_id"].iloc[idx].tolist(), probs, va["cancer"].to_numpy()[idx], agg=cfg.agg)
    return Validation(m, idx, failed, seconds)


def gather_epoch(part: EpochTrain, folds: Folds) -> dict:
    """All ranks' training epochs as counts; failed rows are added to ``folds.errors``."""
    from .distributed import all_gather_objects

    parts = all_gather_objects((part.images, part.loss_sum, part.expected, part.ok_rows, part.failed_rows))
    n_all, loss_all = sum(p[0] for p in parts), sum(p[1] for p in parts)
    exp_all = set().union(*(p[2] for p in parts))
    ok_all = set().union(*(p[3] for p in parts))
    fail_all = {k: v for p in parts for k, v in p[4].items()}
    for i, f in fail_all.items():
        image_id = folds.train["image_id"].iloc[i]
        folds.errors[("train", f["path"])] = (image_id, f["path"], f"train {f['stage']}", f["reason"])
    return {
        "images": n_all,
        "loss": loss_all / max(n_all, 1),
        "rows": len(exp_all),
        "ok": len(ok_all & exp_all),
        "failed": len(set(fail_all) - ok_all),
        "unaccounted": len(exp_all - ok_all - set(fail_all)),
    }


def epoch_record(epoch: int, tr: dict, train_s: float, val: Validation, folds: Folds, lr: float) -> dict:
    """The line ``metrics.json`` keeps for one epoch (validation failures go to ``folds.errors``)."""
    va = folds.val
    for f in val.failed:
        image_id = va["image_id"].iloc[f["index"]]
        folds.errors[("val", f["path"])] = (image_id, f["path"], f"validation {f['stage']}", f["reason"])
    m = val.metrics
    return {
        "epoch": epoch + 1,
        "train_loss": tr["loss"],
        "lr": lr,
        "train_images": tr["images"],
        "train_seconds": round(train_s, 3),
        "train_images_per_s": round(tr["images"] / max(train_s, 1e-9), 2),
        "val_auc": m["auc"],
        "val_pf1": m["pf1"],
        "val_bin_pf1": m["bin_pf1"],
        "threshold": m["threshold"],
        "train_rows": tr["rows"],
        "train_ok": tr["ok"],
        "train_failed": tr["failed"],
        "train_unaccounted": tr["unaccounted"],
        "val_breasts": m["breasts"],
        "val_rows": len(va),
        "val_failed": len(val.failed),
        "val_unaccounted": len(va) - len(val.rows) - len(val.failed),
        "manifest_refused": folds.refused,
        "val_images_per_s": round(len(val.rows) / max(val.seconds, 1e-9), 2),
    }


def gather_notes(loaders: dict, folds: Folds, notes: dict) -> None:
    """Move the loaders' notes about used rows (FOR PROCESSING, laterality...) into ``notes``, all ranks."""
    from .distributed import all_gather_objects
    from .notes import collect

    mine = [(split, n) for split, loader in loaders.items() for n in loader.notes]
    for loader in loaders.values():
        loader.notes.clear()
    for part in all_gather_objects(mine):
        for split, n in part:
            frame = folds.train if split == "train" else folds.val
            notes.update(collect([n], frame["image_id"].to_numpy()))


# --- checkpoints and run files ------------------------------------------------------------


def save_epoch(state: TrainState, cfg: TrainConfig, *, header: dict, threshold: float, is_best: bool, info) -> None:
    """``best.pt`` (when this epoch is the best so far, at this epoch's validation ``threshold``) and
    ``last.pt``; every rank's RNG state goes in."""
    from .distributed import all_gather_objects

    rngs = all_gather_objects(rng_state())
    if not info.is_main:
        return
    if is_best:
        save_checkpoint(
            os.path.join(cfg.out, "best.pt"),
            {
                **header,
                "kind": "best",
                "epoch": state.epoch,
                "threshold": float(threshold),
                "metrics": dict(state.history[-1]),
                "model": state.eval_model.state_dict(),
            },
        )
    save_checkpoint(
        os.path.join(cfg.out, "last.pt"),
        {
            **header,
            "kind": "last",
            "epoch": state.epoch,
            "global_step": state.global_step,
            "threshold": float(state.best["threshold"]),
            "model": state.model.state_dict(),
            "ema": _ema_state(state),
            "optimizer": state.opt.state_dict(),
            "scheduler": state.sched.state_dict(),
            "scaler": state.scaler.state_dict() if state.scaler.is_enabled() else None,
            "sampler": {**state.sampler.state_dict(), "epoch": state.epoch},
            "rng": rngs,
            "history": state.history,
            "best": state.best,
        },
    )


def _ema_state(state: TrainState):
    from .ema import ema_state

    return ema_state(state.ema) if state.ema is not None else None


def _prepare_run_folder(cfg: TrainConfig) -> None:
    os.makedirs(cfg.out, exist_ok=True)
    for stale in remove_stale_temps(cfg.out):  # left by a run killed while writing
        log.info("removed %s", stale)
    save_yaml(cfg, os.path.join(cfg.out, "config.yaml"))


# --- the run ------------------------------------------------------------------------------


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

    from .distributed import barrier, init_distributed
    from .notes import write_notes

    folds = load_folds(cfg)
    info = init_distributed(cfg.device)
    if info.device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True
    train_loader, val_loader, sampler = make_loaders(cfg, folds, info)
    decode_scale = train_loader.effective_decode_scale()
    say = log.info if info.is_main else log.debug
    n_pos = int(folds.labels.sum())
    say(
        "fold %d/%d: %d train images (%d positive), %d validation images; breast prior %.4f; %s x%d",
        cfg.fold,
        cfg.folds,
        len(folds.train),
        n_pos,
        len(folds.val),
        folds.prior,
        info.device,
        info.world,
    )
    state = create_state(cfg, info, sampler, len(train_loader))
    last_path = os.path.join(cfg.out, "last.pt")
    if resume and os.path.exists(last_path):
        resume_state(state, last_path, cfg, info.rank)
        say("resumed from %s at epoch %d", last_path, state.epoch)
    elif resume:
        log.warning("--resume: %s not found, starting from scratch", last_path)
    if info.is_main:
        _prepare_run_folder(cfg)
    header = checkpoint_header(cfg, decode_scale=decode_scale, prior=folds.prior)
    notes: dict = {}
    run_info = (folds.prior, info.world, info.device, train_loader.engine_name, decode_scale)
    t_start, epochs_run = time.perf_counter(), 0
    for epoch in range(state.epoch, cfg.epochs):
        part = train_one_epoch(state, train_loader, cfg, epoch=epoch, info=info, progress=progress)
        tr = gather_epoch(part, folds)
        val = validate(state, val_loader, folds, cfg, info)
        gather_notes({"train": train_loader, "val": val_loader}, folds, notes)
        rec = epoch_record(epoch, tr, part.seconds, val, folds, float(state.opt.param_groups[0]["lr"]))
        state.history.append({k: _json_safe(v) for k, v in rec.items()})
        state.epoch = epoch + 1
        m = val.metrics
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
        is_best = state.best is None or _select_key(rec, cfg.select) > _select_key(state.best, cfg.select)
        if is_best:
            state.best = dict(state.history[-1])
        save_epoch(state, cfg, header=header, threshold=m["threshold"], is_best=is_best, info=info)
        if info.is_main:
            _write_metrics(cfg, state.history, state.best, *run_info)
            _write_errors(cfg.out, folds.errors)
            write_notes(os.path.join(cfg.out, "notes.csv"), notes, keep_existing=True)
        barrier()
        epochs_run += 1
        if epoch + 1 < cfg.epochs and stop_after is not None and epochs_run >= stop_after:
            log.info("stopping after %d epoch(s) as asked; --resume continues", epochs_run)
            break
        if epoch + 1 < cfg.epochs and cfg.time_limit_s and time.perf_counter() - t_start > cfg.time_limit_s:
            log.warning("time limit %.0f s reached after epoch %d of %d", cfg.time_limit_s, epoch + 1, cfg.epochs)
            break
    train_loader.close()
    val_loader.close()
    if info.is_main and state.history:
        plots.write_curves(os.path.join(cfg.out, "metrics.json"), os.path.join(cfg.out, "curves.png"))
    return _metrics_dict(cfg, state.history, state.best, *run_info)


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
