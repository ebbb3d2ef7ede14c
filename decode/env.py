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


def nvidia_smi() -> dict[str, object]:
    """GPU name, count, driver and the driver's CUDA version from ``nvidia-smi`` (None without one)."""
    import re
    import shutil
    import subprocess

    info: dict[str, object] = {"gpu": None, "gpu_count": 0, "driver": None, "cuda": None}
    if shutil.which("nvidia-smi") is None:
        return info

    def run(cmd):
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=10.0)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    names = run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"])
    if names:
        lines = [ln.split(",") for ln in names.splitlines() if ln.strip()]
        info["gpu"] = lines[0][0].strip()
        info["gpu_count"] = len(lines)
        info["driver"] = lines[0][1].strip() if len(lines[0]) > 1 else None
    m = re.search(r"CUDA Version:\s*([\d.]+)", run(["nvidia-smi"]) or "")
    if m:
        info["cuda"] = m.group(1)
    return info


def gpu_info() -> dict[str, object]:
    """The GPU as the driver and torch see it.

    ``gpu``, ``gpu_count``, ``driver`` and ``cuda`` (the driver's CUDA version) from
    ``nvidia-smi``; ``torch_cuda``: the CUDA torch was built with. A GPU torch sees but
    ``nvidia-smi`` does not list is named from torch. None / 0 where absent.
    """
    info = {**nvidia_smi(), "torch_cuda": None}
    try:
        import torch

        info["torch_cuda"] = torch.version.cuda
        if info["gpu"] is None and torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
            info["gpu_count"] = torch.cuda.device_count()
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
