"""Versions of everything the engine uses, and the GPU (what ``rsna-mammo env`` prints and every
benchmark JSON records; the command itself is :mod:`dali_pipelines.cli_env`)."""

from __future__ import annotations

import importlib
import platform

#: printed name → (import name, distribution names to ask for a version)
MODULES = {
    "numpy": ("numpy", ()),
    "pandas": ("pandas", ()),
    "pydicom": ("pydicom", ()),
    "pylibjpeg": ("pylibjpeg", ()),
    "pylibjpeg-openjpeg": ("openjpeg", ("pylibjpeg-openjpeg",)),
    "pylibjpeg-libjpeg": ("libjpeg", ("pylibjpeg-libjpeg",)),
    "dicomsdl": ("dicomsdl", ("dicomsdl",)),
    "imagecodecs": ("imagecodecs", ()),
    "torch": ("torch", ()),
    "timm": ("timm", ()),
    "scikit-learn": ("sklearn", ("scikit-learn",)),
    "kornia": ("kornia", ()),
    "nvidia-dali": ("nvidia.dali", ("nvidia-dali-cuda130", "nvidia-dali-cuda120")),
    "cupy": ("cupy", ()),
    "nvimgcodec": ("nvidia.nvimgcodec", ("nvidia-nvimgcodec-cu13", "nvidia-nvimgcodec-cu12")),
}


def _version(module: str, dists=(), *, load: bool = True) -> str | None:
    """The module's version, or None when it does not import.

    With ``load=False`` the module is not imported: the version comes from the package
    metadata of ``dists`` (None when none is installed).
    """
    from importlib import metadata

    if not load:
        for d in dists:
            try:
                return metadata.version(d)
            except metadata.PackageNotFoundError:
                continue
        return None
    try:
        m = importlib.import_module(module)
    except Exception:
        return None

    for d in dists:
        try:
            return metadata.version(d)
        except metadata.PackageNotFoundError:
            continue
    return str(getattr(m, "__version__", None) or "installed")


def gpu_info() -> dict[str, str | None]:
    """GPU name and count, and torch's CUDA build: ``torch_cuda`` always, ``cuda`` only when torch
    sees a GPU (both ``torch.version.cuda``, not the driver's; None when absent)."""
    info = {"gpu": None, "cuda": None, "torch_cuda": None, "gpu_count": 0}
    try:
        import torch

        info["torch_cuda"] = torch.version.cuda
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
            info["gpu_count"] = torch.cuda.device_count()
            info["cuda"] = torch.version.cuda
    except Exception:
        pass
    return info


def collect(with_torch: bool = True, *, no_import: tuple = ()) -> dict[str, object]:
    """Everything ``env`` prints, as a dict (also recorded in benchmark JSON).

    Args:
        with_torch: import torch (and timm, kornia) and ask torch for the GPU.
        no_import: printed names (e.g. ``"nvidia-dali"``) whose version is read from package
            metadata instead of importing the module (the GPU check's quick tier never imports DALI).
    """
    from ._version import __version__

    out: dict[str, object] = {
        "rsna-mammo": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": platform.processor() or platform.machine(),
    }
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    out["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    import os

    out["cpu_count"] = os.cpu_count()
    for name, (mod, dists) in MODULES.items():
        if not with_torch and name in ("torch", "timm", "kornia"):
            continue
        out[name] = _version(mod, dists, load=name not in no_import)
    from importlib import metadata

    from .openjpeg import openjpeg_version

    try:
        out["glymur"] = metadata.version("glymur")
    except metadata.PackageNotFoundError:
        out["glymur"] = None
    out["openjpeg"] = openjpeg_version()  # what glymur decodes reduced resolutions with (None: unavailable)
    if with_torch:
        out.update(gpu_info())
    return out
