"""Mixed precision: which autocast dtype a run uses, and the context that applies it."""

from __future__ import annotations

import contextlib


def autocast_dtype(amp: str, device: str):
    """``torch`` dtype for autocast, or None for float32 (``auto``: bf16 on CUDA only)."""
    import torch

    if amp == "off" or (amp == "auto" and not device.startswith("cuda")):
        return None
    return torch.float16 if amp == "fp16" else torch.bfloat16


def autocast_ctx(device: str, dtype):
    """``torch.autocast`` for ``dtype`` on ``device``'s type, or a no-op for float32."""
    import torch

    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast("cuda" if str(device).startswith("cuda") else "cpu", dtype=dtype)
