"""Exponential moving average of model weights (with timm-style warm-up of the decay)."""

from __future__ import annotations

import copy


class ModelEma:
    """A frozen copy of a model whose weights trail the live model.

    Each :meth:`update` sets ``ema = d·ema + (1−d)·model`` for floating-point parameters
    and buffers (BatchNorm statistics included) and copies integer buffers, with
    ``d = min(decay, (1 + n) / (10 + n))`` after ``n`` updates, so a short run is not
    dominated by the initial weights.

    Args:
        model: the live model (unwrapped, not the DDP wrapper).
        decay: the long-run decay, in [0, 1).
    """

    def __init__(self, model, decay: float = 0.999):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay = float(decay)
        self.updates = 0

    def current_decay(self) -> float:
        return min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))

    def update(self, model) -> None:
        import torch

        d = self.current_decay()
        with torch.no_grad():
            live = model.state_dict()
            for k, e in self.module.state_dict().items():
                v = live[k].detach()
                if e.dtype.is_floating_point:
                    e.mul_(d).add_(v.to(e.dtype), alpha=1.0 - d)
                else:
                    e.copy_(v)
        self.updates += 1

    def state_dict(self) -> dict:
        return {"model": self.module.state_dict(), "updates": self.updates, "decay": self.decay}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["model"])
        self.updates = int(state["updates"])
