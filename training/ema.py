"""Exponential moving average of the model weights: timm's ``ModelEmaV3`` with decay warm-up.

The update after optimizer step ``n`` (1-based) is ``ema ← d·ema + (1−d)·model`` over every
floating-point parameter and buffer (BatchNorm statistics included; integer buffers are
copied). timm's warm-up is ``d = min(decay, 1 − (1 + (n−1)/γ)^−p)``; with ``γ = 9, p = 1``
that is ``d = min(decay, (n − 1)/(n + 8))``, the TensorFlow-style ``(1 + k)/(10 + k)`` warm-up
(k = updates so far) shifted by one step: the first update copies the model, ``d`` first
exceeds 0.9 at step 83 and 0.99 at step 893, so the EMA averages over about the last n/9
steps. timm's own suggestion for short runs (``γ = 1, p = 3/4``, a window of about n^¾ steps)
lags too far behind a model trained from scratch for a few hundred steps: on the CPU
reference run its EMA weights scored validation AUC 0.47 at epoch 4 while the live weights
scored 1.0. ``n`` is the training loop's ``global_step``, so a resumed run continues the
warm-up where it stopped.
"""

from __future__ import annotations

#: ``warmup_gamma`` and ``warmup_power`` of timm's EMA warm-up (see the module docstring).
WARMUP_GAMMA = 9.0
WARMUP_POWER = 1.0


def create_ema(model, decay: float = 0.999):
    """A frozen, eval-mode copy of ``model`` whose weights trail it.

    Args:
        model: the live model (unwrapped, not the DDP wrapper), on its training device.
        decay: the long-run decay, in [0, 1).

    Returns:
        ``timm.utils.ModelEmaV3``; call ``update(model, step=global_step)`` after every
        optimizer step and evaluate ``.module``.
    """
    from timm.utils import ModelEmaV3

    if not 0.0 <= decay < 1.0:
        raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
    ema = ModelEmaV3(model, decay=float(decay), use_warmup=True, warmup_gamma=WARMUP_GAMMA, warmup_power=WARMUP_POWER)
    for p in ema.module.parameters():
        p.requires_grad_(False)
    return ema


def ema_state(ema) -> dict:
    """The checkpoint entry: ``{"model": EMA weights, "decay": long-run decay}``.

    The warm-up position is the checkpoint's ``global_step``.
    """
    return {"model": ema.module.state_dict(), "decay": float(ema.decay)}


def load_ema_state(ema, state: dict) -> None:
    """Restore the EMA weights written by :func:`ema_state`."""
    ema.module.load_state_dict(state["model"])
