"""Checkpoint files: the format ``train`` writes and ``predict``/``export`` read, and RNG states.

A checkpoint is a ``torch.save``'d dict of tensors and plain values (``torch.load(...,
weights_only=True)`` reads it): ``format``, ``version``, ``model_name``, ``img_size``,
``config``, ``decode_scale``, ``chain_version``, ``prior``, ``agg``, ``threshold`` and
``model``: in ``best.pt`` the weights validation scored (EMA's when the run used EMA), in
``last.pt`` the live training weights, beside ``ema`` and everything a resumed run needs
(optimizer, scheduler, scaler, sampler, per-rank RNG states, history).
"""

from __future__ import annotations

import os
import random

import numpy as np

from decode._version import __version__
from decode.atomic import atomic_write
from decode.chain import CHAIN_VERSION
from decode.errors import UsageError

CKPT_FORMAT = "rsna-mammo-ckpt/1"


def checkpoint_header(cfg, *, decode_scale: str, prior: float) -> dict:
    """The fields every checkpoint of a run carries (what inference needs to preprocess alike)."""
    return {
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


def save_checkpoint(path: str, obj: dict) -> str:
    """Write ``obj`` to ``path`` atomically (a reader never sees half a file)."""
    import torch

    return atomic_write(path, lambda f: torch.save(obj, f))


def load_checkpoint(path: str) -> dict:
    """Read a checkpoint written by ``rsna-mammo train`` (``torch.load(weights_only=True)``).

    Raises:
        UsageError: the file is missing, unreadable or not an rsna-mammo checkpoint.
    """
    import torch

    if not os.path.isfile(path):
        raise UsageError(f"{path}: checkpoint not found")
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UsageError(f"{path}: cannot read checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(ck, dict) or ck.get("format") != CKPT_FORMAT:
        raise UsageError(f"{path}: not an rsna-mammo checkpoint (format {CKPT_FORMAT})")
    return ck


def model_from_checkpoint(ck: dict, device: str):
    """The inference model of a checkpoint, in eval mode: the weights validation scored.

    Those are the EMA weights when the run used EMA: ``model`` in ``best.pt``; in ``last.pt``,
    whose ``model`` holds the live training weights (what a resumed run continues from), the
    ones under ``ema``.
    """
    import torch

    from .model import create_model

    model = create_model(ck["model_name"])
    ema = ck.get("ema") if ck.get("kind") == "last" else None
    model.load_state_dict(ema["model"] if ema else ck["model"])
    model = model.to(device).eval()
    if ck.get("config", {}).get("channels_last", True):
        model = model.to(memory_format=torch.channels_last)
    return model


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
    """Restore what :func:`rng_state` saved."""
    import torch

    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    v, internal, gauss = state["python"]
    random.setstate((v, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
