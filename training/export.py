"""``rsna-mammo export``: a training checkpoint as an ONNX model or a ``torch.export`` program.

Both take ``[B, 1, H, W]`` float32 images in [0, 1] (the loader's batches) with a dynamic
batch axis and return ``[B, 1]`` logits. The checkpoint's image size, chain version,
decode scale, threshold, prior and aggregation travel with the file — ONNX metadata
``rsna_mammo`` (JSON), or ``rsna_mammo.json`` inside the ``.pt2`` archive — and
``predict --ckpt FILE`` reads and checks them (:mod:`training.inference_models`). The
exported file is checked against the checkpoint's eager model (max |logit difference|
≤ 1e-3 on a random batch) before it is renamed into place.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
from typing import Literal

from decode.atomic import atomic_write
from decode.errors import UsageError

from .inference_models import META_KEY, checkpoint_meta, load_predictor

log = logging.getLogger(__name__)

ExportFormat = Literal["onnx", "exported"]
FORMATS = ("onnx", "exported")
SUFFIX = {"onnx": ".onnx", "exported": ".pt2"}
TOLERANCE = 1e-3


def export_model(ckpt: str, out: str, *, format: ExportFormat = "onnx", opset: int = 18) -> dict:
    """Export ``ckpt`` to ``out``; returns the metadata written with it and the check's figures.

    Raises:
        UsageError: unknown format, a wrong suffix, or a file that is not an rsna-mammo checkpoint.
        ValueError: the exported model's logits differ from the checkpoint's (nothing is written).
    """
    import torch

    from .checkpoint import load_checkpoint, model_from_checkpoint

    if format not in FORMATS:
        raise UsageError(f"unknown export format {format!r}; allowed: {', '.join(FORMATS)}")
    if not out.lower().endswith(SUFFIX[format]):
        raise UsageError(f"--out {out}: a {format} export is written as *{SUFFIX[format]}")
    ck = load_checkpoint(ckpt)
    meta = checkpoint_meta(ck)
    model = model_from_checkpoint(ck, "cpu").to(memory_format=torch.contiguous_format).float().eval()
    h, w = meta["img_size"]
    example = torch.rand(2, 1, h, w, generator=torch.Generator().manual_seed(0))
    batch = torch.export.Dim("batch", min=1, max=4096)
    shapes = {"x": {0: batch}}
    text = json.dumps(meta, sort_keys=True)
    chatter = io.StringIO()
    with contextlib.redirect_stdout(chatter), torch.no_grad():
        if format == "onnx":
            program = torch.onnx.export(
                model,
                (example,),
                input_names=["image"],
                output_names=["logit"],
                dynamic_shapes=shapes,
                dynamo=True,
                opset_version=opset,
                verbose=False,
            )
            proto = program.model_proto
            proto.metadata_props.add(key=META_KEY, value=text)
            data = proto.SerializeToString()
            atomic_write(out, data, verify=lambda tmp: _verify(tmp, model, example, ".onnx"))
        else:
            program = torch.export.export(model, (example,), dynamic_shapes=shapes)

            def write(f):
                torch.export.save(program, f, extra_files={f"{META_KEY}.json": text})

            atomic_write(out, write, verify=lambda tmp: _verify(tmp, model, example, ".pt2"))
    log.debug("exporter output: %s", chatter.getvalue())
    return {"out": out, "format": format, "bytes": os.path.getsize(out), **meta}


def _verify(tmp: str, model, example, suffix: str) -> None:
    """The written file must give the eager model's logits (another batch size too)."""
    import torch

    link = tmp + suffix  # the loader picks the format by suffix
    os.link(tmp, link)
    try:
        predictor = load_predictor(link, "cpu")
        for x in (example, example[:1]):
            got = predictor(x)
            with torch.no_grad():
                want = model(x).float().reshape(-1)
            diff = float((got - want).abs().max())
            if not diff <= TOLERANCE:
                raise ValueError(f"the exported model's logits differ from the checkpoint's by {diff:.2e}")
    finally:
        os.unlink(link)
