"""Batch inference: checkpoint + CSV of images → a complete submission and an error report.

Every image is streamed through the same :class:`~dali_pipelines.loader.DicomLoader` as in
training. The submission has exactly one row per ``prediction_id`` of the CSV; an image
that cannot be used is listed in ``errors.csv`` (``image_id,path,reason``) and a breast
whose images all failed gets the training prior (and its rows in ``errors.csv`` say so).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

import numpy as np

from decode.atomic import atomic_write
from decode.errors import UsageError

from . import plots
from .amp import autocast_ctx, autocast_dtype
from .metrics import aggregate_breasts
from .notes import collect, write_notes

log = logging.getLogger(__name__)


def infer(
    model,
    loader,
    *,
    device: str,
    amp: str = "auto",
    tta: bool = False,
    channels_last: bool = True,
    progress: Callable | None = None,
) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """Run ``model`` over ``loader``'s rows (this process's shard).

    Returns:
        ``(row indices int64 [N], probabilities float64 [N] in [0, 1], failures)``;
        with ``tta`` the probability averages the image and its vertical flip.
    """
    import torch

    dtype = autocast_dtype(amp, device)
    idx, probs, failed = [], [], []
    bar = progress(total=len(loader), desc="infer", unit="batch") if progress else None
    n_img = 0
    import time

    t0 = time.perf_counter()
    model.eval()
    with torch.inference_mode():
        for batch in loader:
            failed.extend(batch["failed"])
            if batch["image"] is not None and batch["index"].numel():
                x = batch["image"].to(device, non_blocking=True)
                if channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                with autocast_ctx(device, dtype):
                    p = torch.sigmoid(model(x).float().reshape(-1))
                    if tta:
                        p = 0.5 * (p + torch.sigmoid(model(x.flip(2)).float().reshape(-1)))
                idx.append(batch["index"].cpu().numpy())
                probs.append(p.double().cpu().numpy())
                n_img += len(idx[-1])
            if bar is not None:
                bar.update(1)
                bar.set_postfix(img_s=f"{n_img / max(time.perf_counter() - t0, 1e-9):.1f}")
    if bar is not None:
        bar.close()
    if not idx:
        return np.zeros(0, np.int64), np.zeros(0, np.float64), failed
    return np.concatenate(idx).astype(np.int64), np.concatenate(probs), failed


def parse_threshold(value: str) -> str | float | None:
    """``none`` → None, ``best`` → ``"best"``, a number in [0, 1] → float."""
    v = str(value).strip().lower()
    if v == "none":
        return None
    if v == "best":
        return "best"
    try:
        t = float(v)
    except ValueError:
        raise UsageError(f"threshold {value!r}: allowed none, best or a number in [0, 1]") from None
    if not 0.0 <= t <= 1.0:
        raise UsageError(f"threshold {value!r} must be in [0, 1]")
    return t


def infer_predictors(
    predictors,
    loader,
    *,
    tta: bool = False,
    ensemble: str = "mean",
    pad_to: int | None = None,
    progress: Callable | None = None,
) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """Score ``loader``'s rows with one or several models (each image decoded once).

    Args:
        predictors: :class:`~training.inference_models.Predictor` objects (logits out).
        loader: the batches (the loader decodes batch k+1 while the models run batch k:
            worker processes on the CPU, a side CUDA stream on the nvImageCodec engine).
        tta: also score each image's vertical flip.
        ensemble: ``"mean"`` of probabilities or ``"logit-mean"`` over models (and views).
        pad_to: fixed batch shape: a shorter batch is padded with zero images to this many
            rows and the pad rows are dropped (compiled models and CUDA graphs see one shape).
        progress: a ``tqdm``-like factory.

    Returns:
        ``(row indices int64 [N], probabilities float64 [N] in [0, 1], failures)``.
    """
    import time

    import torch

    from .inference_models import combine

    idx, probs, failed = [], [], []
    bar = progress(total=len(loader), desc="infer", unit="batch") if progress else None
    n_img, t0 = 0, time.perf_counter()
    for batch in loader:
        failed.extend(batch["failed"])
        if batch["image"] is not None and batch["index"].numel():
            x = batch["image"]
            n = int(x.shape[0])
            if pad_to and n < pad_to:
                x = torch.cat([x, x.new_zeros((pad_to - n, *x.shape[1:]))])
            logits = []
            for predictor in predictors:
                logits.append(predictor(x)[:n])
                if tta:
                    logits.append(predictor(x.flip(2))[:n])
            p = combine(logits, ensemble)
            idx.append(batch["index"].cpu().numpy())
            probs.append(p.cpu().numpy())
            n_img += n
        if bar is not None:
            bar.update(1)
            bar.set_postfix(img_s=f"{n_img / max(time.perf_counter() - t0, 1e-9):.1f}")
    if bar is not None:
        bar.close()
    if not idx:
        return np.zeros(0, np.int64), np.zeros(0, np.float64), failed
    return np.concatenate(idx).astype(np.int64), np.concatenate(probs).astype(np.float64), failed


def predict(
    *,
    data: str,
    ckpt,
    out: str,
    csv: str | None = None,
    images: str | None = None,
    device: str = "auto",
    engine: str = "auto",
    tta: bool = False,
    agg: str | None = None,
    threshold: str = "none",
    batch_size: int | None = None,
    workers: int | None = None,
    progress: Callable | None = None,
    decode_scale: str | None = None,
    for_processing: str | None = None,
    ensemble: str = "mean",
    compile_mode: str | None = None,
) -> dict[str, object]:
    """Write the submission ``out``, ``errors.csv`` and ``notes.csv`` beside it (rank 0 under torchrun).

    Args:
        ckpt: one model file or several (an ensemble, e.g. the four folds): training
            checkpoints (``.pt``), ONNX models (``.onnx``, run by ONNX Runtime) or
            ``torch.export`` programs (``.pt2``) from ``rsna-mammo export``. Each image is
            decoded once and every model scores it; the members must agree on image size,
            chain version, decode scale, flip and laterality (a clear error otherwise).
        ensemble: ``"mean"`` of the models' probabilities or ``"logit-mean"``.
        compile_mode: ``torch.compile`` the checkpoints (``default``, ``reduce-overhead``:
            CUDA graphs on the GPU, ``max-autotune``); None: eager.

    The flip follows the model's ``laterality`` setting (as in training); ``for_processing``
    defaults to the model's (``warn``: used and noted; ``skip`` / ``error``: listed in
    ``errors.csv``, the breast predicted from its other images). ``decode_scale``
    (:mod:`decode.scale`): None takes the model's (the training run's, so inference sees
    what training saw), or ``"auto"`` for a checkpoint without one. Batches have a fixed
    shape (the last one padded, pad rows dropped). An ensemble's prior and ``best``
    threshold are the mean of its members'.

    Returns:
        Summary: ``rows``, ``images``, ``failed_images``, ``prior_breasts`` (list of ids),
        ``images_per_s``, ``threshold``, ``models``, paths written.
    """
    import time

    from .distributed import all_gather_objects, barrier, init_distributed
    from .inference_models import ENSEMBLES
    from .manifest import load_manifest

    thr = parse_threshold(threshold)
    if ensemble not in ENSEMBLES:
        raise UsageError(f"unknown ensemble {ensemble!r}; allowed: {', '.join(ENSEMBLES)}")
    files = [ckpt] if isinstance(ckpt, str | os.PathLike) else list(ckpt)
    if not files:
        raise UsageError("predict needs at least one --ckpt")
    info = init_distributed(device)
    predictors, shared = load_models(files, info.device, compile_mode)
    meta = predictors[0].meta
    agg = agg or meta.get("agg", "mean")
    if agg not in ("mean", "max"):
        raise UsageError(f"unknown aggregation {agg!r}; allowed: mean, max")
    man = load_manifest(data, csv=csv or "test.csv", images=images)
    ok_rows = np.flatnonzero(man["path_error"].to_numpy() == "")
    batch = batch_size or 2 * int(meta.get("batch_size", 8))
    options = dict(workers=workers, decode_scale=decode_scale, for_processing=for_processing, engine=engine)
    loader = make_loader([man["path"].iloc[i] for i in ok_rows], data, shared, meta, info, batch, **options)
    if compile_mode:  # compile now, on the fixed batch shape, not inside the first batch's wait
        _warm_up(predictors, batch, loader.size, info.device)
    t0 = time.perf_counter()
    idx, probs, failed = infer_predictors(
        predictors, loader, tta=tta, ensemble=ensemble, pad_to=batch, progress=progress if info.is_main else None
    )
    seconds = time.perf_counter() - t0
    loader.close()
    parts = all_gather_objects((idx, probs, failed, len(idx), seconds, loader.notes))
    summary: dict[str, object] = {}
    if info.is_main:
        idx = np.concatenate([p[0] for p in parts])
        probs = np.concatenate([p[1] for p in parts])
        failed = [f for p in parts for f in p[2]]
        n_done, secs = sum(p[3] for p in parts), max(p[4] for p in parts)
        stats = {
            "prior": float(np.mean([p.meta.get("prior", 0.0) for p in predictors])),
            "threshold": float(np.mean([p.meta.get("threshold", 0.5) for p in predictors])),
        }
        summary = _write_outputs(man, ok_rows, idx, probs, failed, out=out, agg=agg, thr=thr, ck=stats)
        summary["roc"] = plots.write_prediction_roc(
            out, man, ok_rows, idx, probs, data=data, csv=csv or "test.csv", agg=agg, **stats
        )
        notes = [n for p in parts for n in p[5]]
        ids = man["image_id"].to_numpy()[ok_rows]
        summary["notes"] = write_notes(
            os.path.join(os.path.dirname(os.path.abspath(out)), "notes.csv"), collect(notes, ids)
        )
        summary["noted_images"] = len({n["index"] for n in notes})
        summary["images_per_s"] = round(n_done / max(secs, 1e-9), 2)
        summary["engine"] = loader.engine_name
        summary["seconds"] = round(secs, 2)
        summary["decode_scale"] = loader.effective_decode_scale()
        summary["models"] = [{"path": p.path, "kind": p.kind, "compile": compile_mode} for p in predictors]
        summary["ensemble"] = ensemble if len(predictors) > 1 or tta else None
        summary["batch_size"] = batch
    barrier()
    return summary


def load_models(files, device: str, compile_mode: str | None):
    """``(predictors, shared)``: every model file loaded, and the loader settings they agree on.

    Raises:
        UsageError: a file cannot be loaded, or the members disagree on image size, chain
            version, decode scale, flip or laterality.
    """
    from decode.chain import CHAIN_VERSION

    from .inference_models import check_compatible, load_predictor

    predictors = [load_predictor(os.fspath(f), device, compile_mode=compile_mode) for f in files]
    shared = check_compatible(predictors)
    if shared["chain_version"] != CHAIN_VERSION:
        log.warning(
            "%s was trained on chain version %s; this code preprocesses with version %s (outputs may shift)",
            files[0],
            shared["chain_version"],
            CHAIN_VERSION,
        )
    return predictors, shared


def make_loader(paths, data, shared: dict, meta: dict, info, batch: int, **options):
    """The loader that feeds inference: the models' image size, decode scale and laterality.

    The flip is the loader's default (on), as in training, which has no other setting.
    """
    from dali_pipelines.loader import DicomLoader
    from decode.parallel import default_workers

    workers = options.get("workers")
    return DicomLoader(
        paths,
        batch_size=batch,
        size=tuple(int(v) for v in shared["img_size"]),
        device="cuda" if info.device.startswith("cuda") else "cpu",
        workers=default_workers() if workers is None else workers,
        shard=(info.rank, info.world),
        backend=meta.get("backend", "auto"),
        data_root=data,
        engine=options.get("engine") or "auto",
        decode_scale=options.get("decode_scale") or shared["decode_scale"] or "auto",
        for_processing=options.get("for_processing") or meta.get("for_processing", "warn"),
        laterality=shared.get("laterality") or "content",
    )


def _warm_up(predictors, batch: int, size, device: str) -> None:
    import torch

    warm = torch.zeros((batch, 1, *size), device=device)
    for p in predictors:
        p(warm)


def _write_outputs(man, ok_rows, idx, probs, failed, *, out, agg, thr, ck) -> dict[str, object]:
    import pandas as pd

    prior = float(ck.get("prior", 0.0))
    rows = ok_rows[idx] if len(idx) else np.zeros(0, np.int64)  # loader index → manifest row
    scored = aggregate_breasts(man["prediction_id"].iloc[rows].tolist(), probs, agg=agg)
    score_of = dict(zip(scored.ids, scored.scores))
    pids = list(dict.fromkeys(man["prediction_id"].tolist()))  # CSV order, one per breast
    prior_breasts = [p for p in pids if p not in score_of]
    scores = np.array([score_of.get(p, prior) for p in pids], dtype=np.float64)
    t = ck.get("threshold", 0.5) if thr == "best" else thr
    errors = []
    for i, reason in zip(
        np.flatnonzero(man["path_error"].to_numpy() != ""), man["path_error"][man["path_error"] != ""]
    ):
        errors.append((man["image_id"].iloc[i], man["path"].iloc[i] or _intended(man, i), f"path: {reason}", i))
    for f in failed:
        i = int(ok_rows[int(f["index"])])
        errors.append((man["image_id"].iloc[i], man["path"].iloc[i], f"{f['stage']}: {f['reason']}", i))
    prior_set = set(prior_breasts)
    err = pd.DataFrame(
        [
            (
                iid,
                path,
                reason
                + (
                    f" [breast {man['prediction_id'].iloc[i]}: all images failed, "
                    f"predicted the training prior {prior:.4f}]"
                    if man["prediction_id"].iloc[i] in prior_set
                    else ""
                ),
            )
            for iid, path, reason, i in sorted(errors, key=lambda e: e[3])
        ],
        columns=["image_id", "path", "reason"],
    )
    if t is None:
        sub = pd.DataFrame({"prediction_id": pids, "cancer": scores})
        text = sub.to_csv(index=False, float_format="%.6f", lineterminator="\n")
    else:
        sub = pd.DataFrame({"prediction_id": pids, "cancer": (scores >= float(t)).astype(np.int64)})
        text = sub.to_csv(index=False, lineterminator="\n")
    atomic_write(out, text)
    err_path = os.path.join(os.path.dirname(os.path.abspath(out)), "errors.csv")
    atomic_write(err_path, err.to_csv(index=False, lineterminator="\n"))
    for p in prior_breasts:
        log.warning("breast %s: all images failed; predicted the training prior %.4f", p, prior)
    used = len(set(rows.tolist()))
    return {
        "submission": out,
        "errors": err_path,
        "rows": len(pids),
        "images": len(man),
        "ok_images": used,
        "failed_images": len(err),
        "unaccounted_images": len(man) - used - len(err),
        "prior_breasts": prior_breasts,
        "prior": prior,
        "agg": agg,
        "threshold": None if t is None else float(t),
    }


def _intended(man, i: int) -> str:
    return f"{man['patient_id'].iloc[i]}/{man['image_id'].iloc[i]}.dcm"
