"""The loader's GPU path: DALI decode → CuPy chain → torch, batch by batch.

:class:`~dali_pipelines.loader.DicomLoader` calls :func:`gpu_pipeline_available` and
:func:`iterate_gpu` when ``device`` resolves to ``"cuda"``. Batches are the same dicts
as the CPU path::

    {"image": float32 [B, 1, H, W] on cuda, "label": [B] or None,
     "index": LongTensor [B] (on the image's device), "failed": [{index, path, stage, reason}]}

One :class:`~dali_pipelines.pipelines.DecodeRunner` is kept per loader (its spawned
workers outlive an epoch; the sampler's order for each epoch reaches them through an
epoch plan). :func:`iterate_dali` is the same code for either device: with
``device="cpu"`` it runs the DALI CPU pipeline (``device_id=None``) and the numpy
chain, which is how this path is tested without a GPU.
"""

from __future__ import annotations

import importlib.util
import logging
import weakref
from collections.abc import Iterator

import numpy as np

from decode.dicom import read_dicom
from decode.errors import DicomError, as_dicom_error
from decode.gpu_chain import preprocess_batch

from . import handoff
from .pipelines import DecodeRunner
from .source import I

log = logging.getLogger(__name__)

_RUNNER_ATTR = "_dali_runner"


def gpu_pipeline_available() -> bool:
    """True when torch sees CUDA and DALI and a working CuPy are installed."""
    try:
        import torch

        if not torch.cuda.is_available():
            return False
        if importlib.util.find_spec("nvidia.dali") is None or importlib.util.find_spec("cupy") is None:
            return False
        import cupy

        return bool(cupy.is_available())
    except Exception as exc:
        log.debug("GPU pipeline unavailable: %s", exc)
        return False


def runner_for(loader, device: str) -> DecodeRunner:
    """The loader's :class:`DecodeRunner` (made and started on first use, closed with the loader)."""
    runner = getattr(loader, _RUNNER_ATTR, None)
    if runner is not None and runner.device == device:
        return runner
    if runner is not None:
        runner.close()
    threads = max(1, loader.workers)
    runner = DecodeRunner(
        loader.paths,
        batch_size=loader.batch_size,
        device=device,
        device_id=_device_index() if device == "cuda" else 0,
        workers=max(1, loader.workers),
        threads=threads,
        prefetch=max(1, loader.prefetch),
        backend=loader.backend,
        fail_indices=getattr(loader, "dali_fail_indices", ()),
    )
    runner.start()
    setattr(loader, _RUNNER_ATTR, runner)
    weakref.finalize(loader, runner.close)
    return runner


def close_runner(loader) -> None:
    """Stop the loader's DALI pipeline and workers (a later epoch starts new ones)."""
    runner = getattr(loader, _RUNNER_ATTR, None)
    if runner is not None:
        runner.close()
        setattr(loader, _RUNNER_ATTR, None)


def _device_index() -> int:
    """torch's current GPU, without creating a CUDA context when torch has none yet."""
    import torch

    return torch.cuda.current_device() if torch.cuda.is_initialized() else 0


def iterate_gpu(loader) -> Iterator[dict]:
    """Batches for ``DicomLoader`` on CUDA (DALI ``mixed`` decode, CuPy chain, zero-copy torch)."""
    yield from iterate_dali(loader, device="cuda")


def iterate_dali(loader, *, device: str) -> Iterator[dict]:
    """One epoch of ``loader`` through the DALI pipeline on ``device`` ("cuda" or "cpu")."""
    import torch

    runner = runner_for(loader, device)
    rows = [r for batch in loader._batches() for r in batch]
    for batch in runner.epoch(rows):
        failed = [{"index": i, "path": loader.paths[i], "stage": "decode", "reason": r} for i, r in batch.failed]
        good, raws, params, metas = [], [], [], []
        for s in batch.samples:
            meta = None
            if int(s.info[I["needs_meta"]]):
                try:
                    meta = read_dicom(loader.paths[s.index]).meta
                except DicomError as exc:
                    failed.append(
                        {"index": s.index, "path": loader.paths[s.index], "stage": "decode", "reason": exc.reason}
                    )
                    continue
            good.append(s.index)
            raws.append(s.image)
            params.append(s.params)
            metas.append(meta)
        images = None
        if good:
            images, good, more = _chain(loader, good, raws, params, metas)
            failed.extend(more)
        failed.sort(key=lambda f: f["index"])
        loader.failures.extend(failed)
        if images is None:
            if failed:
                yield {"image": None, "label": None, "index": torch.empty((0,), dtype=torch.long), "failed": failed}
            continue
        idx = torch.tensor(good, dtype=torch.long, device=images.device)
        label = None
        if loader.labels is not None:
            label = torch.from_numpy(loader.labels[np.asarray(good)]).to(images.device)
        yield {"image": images, "label": label, "index": idx, "failed": failed}


def _chain(loader, rows: list[int], raws, params, metas):
    """VOI → crop → flip → resize for a batch on the device; a failing image drops out alone."""
    failed = []
    with handoff.on_current_stream():
        try:
            out, _ = preprocess_batch(raws, params, metas=metas, size=loader.size, flip=loader.flip)
            return handoff.to_torch(out), rows, failed
        except Exception as exc:  # find the culprit(s), keep the rest
            log.warning("batch preprocessing failed (%s); retrying image by image", exc)
        keep = []
        for k, row in enumerate(rows):
            try:
                preprocess_batch([raws[k]], [params[k]], metas=[metas[k]], size=loader.size, flip=loader.flip)
                keep.append(k)
            except Exception as exc:
                failed.append(
                    {
                        "index": row,
                        "path": loader.paths[row],
                        "stage": "preprocess",
                        "reason": as_dicom_error(loader.paths[row], exc).reason,
                    }
                )
        if not keep:
            return None, [], failed
        out, _ = preprocess_batch(
            [raws[k] for k in keep],
            [params[k] for k in keep],
            metas=[metas[k] for k in keep],
            size=loader.size,
            flip=loader.flip,
        )
        return handoff.to_torch(out), [rows[k] for k in keep], failed


def last_stats(loader) -> dict | None:
    """The runner's counters (batches, batch_failures, retried, cpu_fallback, ...) or None."""
    runner = getattr(loader, _RUNNER_ATTR, None)
    return None if runner is None else dict(runner.stats)
