"""``rsna-mammo decode``: DICOM files → .npy on the CPU workers or a GPU engine; imports no torch.

The options, jobs, outputs, CPU path and summary are :mod:`decode.cli_decode`'s; this
module adds ``--engine`` and picks the device: ``--device cuda`` (or ``auto`` where a GPU
is usable) decodes in batches with nvImageCodec or DALI (:mod:`dali_pipelines.decode_files`).
"""

from __future__ import annotations

import argparse
import importlib
import logging
from functools import partial

from decode import cli_decode
from decode.errors import UsageError
from decode.parallel import default_workers

log = logging.getLogger(__name__)

GPU_ENGINES = ("auto", "nvimgcodec", "dali")


def add_arguments(p: argparse.ArgumentParser) -> None:
    cli_decode.add_arguments(p)
    p.add_argument(
        "--engine",
        default="auto",
        choices=GPU_ENGINES,
        help="GPU engine for --device cuda: nvimgcodec (batch decode, no DALI), dali, or auto (default: DALI when "
        "it imports, else nvImageCodec)",
    )


def _cuda_reason() -> str | None:
    """Why the GPU cannot be used here, without importing torch (CuPy must see a GPU)."""
    try:
        import cupy
    except Exception as exc:
        return f"CuPy does not import ({type(exc).__name__})"
    try:
        if not cupy.is_available():
            return "CuPy sees no CUDA GPU"
    except Exception as exc:  # pragma: no cover
        return f"CUDA is not usable: {exc}"
    return None


def _imports(module: str) -> str | None:
    try:
        importlib.import_module(module)
    except Exception as exc:
        return f"{module} does not import ({type(exc).__name__})"
    return None


def resolve(device: str, engine: str) -> tuple[str, str | None, str | None]:
    """``(device, engine or None, why not the GPU)``; device ``"error"`` when ``--device cuda`` cannot run."""
    if device == "cpu":
        return "cpu", None, None
    why = _cuda_reason()
    if why is None:
        names = ("dali", "nvimgcodec") if engine == "auto" else (engine,)
        reasons = []
        for name in names:
            bad = _imports("nvidia.dali" if name == "dali" else "nvidia.nvimgcodec")
            if bad is None:
                return "cuda", name, None
            reasons.append(bad)
        why = "; ".join(reasons)
    return ("error" if device == "cuda" else "cpu"), None, why


def run(args: argparse.Namespace) -> int:
    device, engine, why = resolve(args.device, args.engine)
    if device == "error":
        raise UsageError(f"--device cuda is not available here: {why}; use --device cpu or auto")
    if why and args.device == "auto":
        log.info("decoding on the CPU (%s)", why)
    args.device, args.engine = device, engine
    if device == "cpu":
        return cli_decode.run(args)
    from .decode_files import decode_jobs

    gpu = partial(_gpu_jobs, decode_jobs, engine)
    return cli_decode.run(args, gpu=gpu)


def _gpu_jobs(decode_jobs, engine: str, jobs: list, args: argparse.Namespace):
    return decode_jobs(
        jobs,
        engine=engine,
        device="cuda",
        workers=args.workers or default_workers(),
        timeout=args.timeout if args.timeout > 0 else None,
        write=cli_decode.write_outputs,
    )
