"""The classifier: any timm backbone, one input channel, one logit.

Weights never come from the network (``pretrained=False``); ``load_pretrained`` reads a
local file (timm/torchvision ``.pth``/``.bin``/``.safetensors`` or one of our checkpoints),
sums a 3-channel stem into one channel (timm's ``adapt_input_conv``), and drops a
classifier whose shape does not match.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

from decode.errors import UsageError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


def create_model(
    name: str,
    *,
    pretrained: str | None = None,
    drop_rate: float = 0.0,
    drop_path_rate: float = 0.0,
    head_prior: float = 0.5,
):
    """A timm model with ``in_chans=1, num_classes=1`` (float32, on the CPU).

    Args:
        name: timm model name (e.g. ``convnext_small``, ``tf_efficientnetv2_s``, ``efficientnet_b0``).
        pretrained: local weights file, or None for random initialisation.
        drop_rate: dropout before the classifier.
        drop_path_rate: stochastic depth.
        head_prior: the classifier starts out predicting this probability (see :func:`init_head`).

    Raises:
        UsageError: unknown model name, or a weights file that is missing,
            unreadable or matches none of the model's tensors.
    """
    import timm

    kwargs = dict(pretrained=False, in_chans=1, num_classes=1, drop_rate=drop_rate)
    if drop_path_rate:
        kwargs["drop_path_rate"] = drop_path_rate
    try:
        model = timm.create_model(name, **kwargs)
    except RuntimeError as exc:  # timm: "Unknown model (...)"
        raise UsageError(f"timm model {name!r}: {exc}") from None
    except TypeError:  # a model without drop_path_rate
        kwargs.pop("drop_path_rate", None)
        model = timm.create_model(name, **kwargs)
    init_head(model, head_prior)
    if pretrained:
        load_pretrained(model, pretrained)
    return model


def init_head(model, prior: float = 0.5) -> None:
    """Re-initialise the one-logit classifier: weights N(0, 0.01²), bias ``logit(prior)``.

    timm scales some classifier inits by ``1/sqrt(num_classes)`` (EfficientNet: uniform
    ±1 for one class), which starts training with huge logits and unstable losses.
    """
    import math

    import torch

    head = model.get_classifier()
    if not isinstance(head, torch.nn.Linear):
        return
    p = min(max(float(prior), 1e-4), 1 - 1e-4)
    with torch.no_grad():
        torch.nn.init.normal_(head.weight, std=0.01)
        if head.bias is not None:
            head.bias.fill_(math.log(p / (1 - p)))


def _read_state_dict(path: str) -> dict[str, torch.Tensor]:
    import torch

    if not os.path.isfile(path):
        raise UsageError(f"{path}: pretrained weights file not found")
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        sd = load_file(path)
    else:
        try:
            sd = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise UsageError(f"{path}: cannot read weights ({type(exc).__name__}: {exc})") from None
    for key in ("model", "state_dict", "model_state_dict", "ema"):
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
            break
    if not isinstance(sd, dict):
        raise UsageError(f"{path}: not a state dict")
    return {k[7:] if k.startswith("module.") else k: v for k, v in sd.items() if hasattr(v, "shape")}


def load_pretrained(model, path: str) -> dict:
    """Load local weights into ``model`` in place, adapting the stem to one channel.

    Returns:
        ``{"loaded", "adapted", "skipped", "missing"}`` lists of parameter names.
    """
    from timm.models._manipulate import adapt_input_conv

    sd = _read_state_dict(path)
    own = model.state_dict()
    out, adapted, skipped = {}, [], []
    for k, v in sd.items():
        if k not in own:
            skipped.append(k)
            continue
        target = own[k]
        if (
            v.shape != target.shape
            and v.ndim == 4
            and target.ndim == 4
            and v.shape[0] == target.shape[0]
            and v.shape[2:] == target.shape[2:]
            and target.shape[1] == 1
        ):
            v = adapt_input_conv(1, v.float()).to(target.dtype)
            adapted.append(k)
        if v.shape != target.shape:
            skipped.append(k)  # e.g. a 1000-class head
            continue
        out[k] = v
    missing = [k for k in own if k not in out]
    model.load_state_dict(out, strict=False)
    if not out:
        raise UsageError(f"{path}: no tensor matches the model's parameters")
    log.info(
        "pretrained %s: %d tensors loaded, stem adapted: %s, skipped: %d, left at init: %d",
        path,
        len(out),
        adapted or "-",
        len(skipped),
        len(missing),
    )
    return {"loaded": sorted(out), "adapted": adapted, "skipped": skipped, "missing": missing}
