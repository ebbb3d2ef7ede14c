"""Models for inference: a checkpoint (eager or ``torch.compile``), an ONNX model, a ``torch.export`` program.

:func:`load_predictor` turns one file into a :class:`Predictor` — ``x [B, 1, H, W] float32 on
the device → logits [B] float32`` — with the metadata every format carries (image size,
chain version, decode scale, threshold, prior, breast aggregation): a checkpoint holds it
itself, an exported model carries it (ONNX metadata ``rsna_mammo``; the ``torch.export``
archive's ``rsna_mammo.json``, see :mod:`training.export`). :func:`check_compatible` refuses
an ensemble whose members disagree on what the loader must produce for them, and
:func:`combine` averages their outputs (``mean`` of probabilities or ``logit-mean``).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from decode.errors import UsageError

log = logging.getLogger(__name__)

META_KEY = "rsna_mammo"
EXPORT_FORMAT = "rsna-mammo-export/1"
ENSEMBLES = ("mean", "logit-mean")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")
#: What the loader must produce identically for every member of an ensemble.
LOADER_KEYS = ("img_size", "chain_version", "decode_scale", "flip", "laterality")


@dataclass
class Predictor:
    """One model ready to score batches.

    Attributes:
        path: the file it came from.
        kind: ``"checkpoint"``, ``"onnx"`` or ``"exported"``.
        meta: image size, chain version, decode scale, threshold, prior, aggregation, ...
        fn: ``x [B, 1, H, W] float32 on the device → logits [B] float32`` (no grad).
    """

    path: str
    kind: str
    meta: dict
    fn: Callable = field(repr=False)

    def __call__(self, x):
        return self.fn(x)


def checkpoint_meta(ck: dict) -> dict:
    """The metadata an inference model carries, from a training checkpoint."""
    cfg = ck.get("config", {}) or {}
    return {
        "format": EXPORT_FORMAT,
        "model_name": ck.get("model_name"),
        "img_size": [int(v) for v in ck["img_size"]],
        # checkpoints from before the field were trained on chain version 1
        "chain_version": int(ck.get("chain_version", 1)),
        "decode_scale": ck.get("decode_scale", cfg.get("decode_scale")),
        "flip": bool(ck.get("flip", True)),
        "laterality": cfg.get("laterality", "content"),
        "for_processing": cfg.get("for_processing", "warn"),
        "backend": cfg.get("backend", "auto"),
        "threshold": float(ck.get("threshold", 0.5)),
        "prior": float(ck.get("prior", 0.0)),
        "agg": ck.get("agg", cfg.get("agg", "mean")),
        "batch_size": int(cfg.get("batch_size", 8)),
        "amp": cfg.get("amp", "auto"),
        "channels_last": bool(cfg.get("channels_last", True)),
    }


def load_predictor(path: str, device: str, *, compile_mode: str | None = None) -> Predictor:
    """A :class:`Predictor` for ``path`` (``.onnx``, ``.pt2``, else a training checkpoint) on ``device``.

    Args:
        path: the model file.
        device: ``"cpu"`` or ``"cuda[:i]"``.
        compile_mode: ``torch.compile`` mode for a checkpoint (None: eager); one of
            :data:`COMPILE_MODES` (``reduce-overhead`` captures CUDA graphs on the GPU).

    Raises:
        UsageError: unreadable file, not one of ours, or a bad option (one line).
    """
    if not os.path.isfile(path):
        raise UsageError(f"{path}: model file not found")
    if compile_mode is not None and compile_mode not in COMPILE_MODES:
        raise UsageError(f"compile mode {compile_mode!r}; allowed: {', '.join(COMPILE_MODES)}")
    low = path.lower()
    if low.endswith(".onnx"):
        if compile_mode:
            raise UsageError("--compile applies to checkpoints (.pt); an ONNX model runs in ONNX Runtime")
        return _onnx_predictor(path, device)
    if low.endswith(".pt2"):
        if compile_mode:
            raise UsageError("--compile applies to checkpoints (.pt); a .pt2 program runs as exported")
        return _exported_predictor(path, device)
    return _checkpoint_predictor(path, device, compile_mode)


def _autocast(device: str, amp: str):
    from .amp import autocast_ctx, autocast_dtype

    return autocast_ctx(device, autocast_dtype(amp, device))


def _checkpoint_predictor(path: str, device: str, compile_mode: str | None) -> Predictor:
    import torch

    from .checkpoint import load_checkpoint, model_from_checkpoint

    ck = load_checkpoint(path)
    meta = checkpoint_meta(ck)
    model = model_from_checkpoint(ck, device)
    net = torch.compile(model, mode=compile_mode, dynamic=False) if compile_mode else model
    channels_last = meta["channels_last"]

    def fn(x):
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), _autocast(device, meta["amp"]):
            return net(x).float().reshape(-1)

    return Predictor(path, "checkpoint", {**meta, "compile": compile_mode}, fn)


def _onnx_predictor(path: str, device: str) -> Predictor:
    import onnx
    import onnxruntime as ort
    import torch

    try:
        proto = onnx.load(path, load_external_data=False)
    except Exception as exc:
        raise UsageError(f"{path}: not an ONNX model ({type(exc).__name__}: {exc})") from None
    props = {p.key: p.value for p in proto.metadata_props}
    if META_KEY not in props:
        raise UsageError(f"{path}: an ONNX model without rsna-mammo metadata (export it with rsna-mammo export)")
    meta = json.loads(props[META_KEY])
    providers = ["CPUExecutionProvider"]
    if device.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    session = ort.InferenceSession(path, providers=providers)
    name = session.get_inputs()[0].name

    def fn(x):
        out = session.run(None, {name: x.detach().float().cpu().numpy()})[0]
        return torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32)).reshape(-1).to(x.device)

    return Predictor(path, "onnx", {**meta, "providers": session.get_providers()}, fn)


def _exported_predictor(path: str, device: str) -> Predictor:
    import torch

    extra = {f"{META_KEY}.json": ""}
    try:
        program = torch.export.load(path, extra_files=extra)
    except Exception as exc:
        raise UsageError(f"{path}: not a torch.export program ({type(exc).__name__}: {exc})") from None
    if not extra[f"{META_KEY}.json"]:
        raise UsageError(f"{path}: a torch.export program without rsna-mammo metadata")
    meta = json.loads(extra[f"{META_KEY}.json"])
    module = program.module().to(device)

    def fn(x):
        with torch.inference_mode(), _autocast(device, meta.get("amp", "auto")):
            return module(x).float().reshape(-1)

    return Predictor(path, "exported", meta, fn)


def check_compatible(predictors: Sequence[Predictor]) -> dict:
    """The shared loader settings of an ensemble; raises when members disagree.

    Raises:
        UsageError: one line naming the setting and the files that differ.
    """
    first = predictors[0]
    for p in predictors[1:]:
        for key in LOADER_KEYS:
            a, b = first.meta.get(key), p.meta.get(key)
            if a != b:
                raise UsageError(
                    f"ensemble members disagree on {key}: {first.path} has {a!r}, {p.path} has {b!r} "
                    "(every model must see the same preprocessed images)"
                )
    return {key: first.meta.get(key) for key in LOADER_KEYS}


def combine(logits: Sequence, how: str = "mean"):
    """Average the members' (and views') logits: ``mean`` of probabilities or sigmoid of the ``logit-mean``.

    Args:
        logits: ``[B]`` float32 tensors, one per model (or per model and TTA view).
        how: one of :data:`ENSEMBLES`.

    Returns:
        ``[B]`` float64 probabilities in [0, 1] (torch, on the input device).
    """
    import torch

    if how not in ENSEMBLES:
        raise UsageError(f"ensemble {how!r}; allowed: {', '.join(ENSEMBLES)}")
    stacked = torch.stack([t.double() for t in logits])
    if how == "logit-mean":
        return torch.sigmoid(stacked.mean(0))
    return torch.sigmoid(stacked).mean(0)
