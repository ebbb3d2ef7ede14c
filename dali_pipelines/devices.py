"""Where the loader runs: the user's ``--device`` choice resolved to ``cpu`` or ``cuda``.

This is the one ``resolve_device`` of the project. The DALI graphs' own placement
(:data:`dali_pipelines.pipelines.PIPELINE_DEVICES`), nvImageCodec's decoder placement
(:data:`decode.backends.nvimgcodec_backend.DECODER_DEVICES`) and a benchmark row's
device (:data:`benchmarks.schema.ROW_DEVICES`) are other things with other names.
"""

from __future__ import annotations

from typing import Literal

from decode.errors import UsageError

Device = Literal["auto", "cpu", "cuda"]
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")


def resolve_device(device: str) -> Literal["cpu", "cuda"]:
    """``auto`` → ``cuda`` when torch sees a GPU, else ``cpu``; ``cuda`` without a GPU is refused.

    Raises:
        UsageError: an unknown name, or ``cuda`` where torch sees no CUDA GPU.
    """
    if device not in DEVICES:
        raise UsageError(f"unknown device {device!r}; allowed: {', '.join(DEVICES)}")
    if device == "cpu":
        return "cpu"
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if device == "cuda":
        raise UsageError("device 'cuda' requested but torch sees no CUDA GPU")
    return "cpu"
