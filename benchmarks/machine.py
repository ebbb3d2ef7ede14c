"""The machine record written next to every benchmark figure, and a short machine name.

The record says what produced the numbers: CPU model and count, GPU name (or null),
driver and CUDA versions, this project's version (``versions["rsna-mammo"]``), Python and
library versions (from :func:`decode.env.collect`) and the git commit of the code that ran.
"""

from __future__ import annotations

import datetime
import logging
import os
import re
import shutil
import subprocess
import sys
from typing import Any

from decode.env import nvidia_smi

log = logging.getLogger(__name__)

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(cmd, timeout: float = 10.0) -> str | None:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=_REPO)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_state() -> dict[str, Any]:
    """``{"git_commit": sha or None, "git_dirty": bool or None}`` of the repository that ran."""
    if shutil.which("git") is None:
        return {"git_commit": None, "git_dirty": None}
    sha = _run(["git", "rev-parse", "HEAD"])
    status = _run(["git", "status", "--porcelain", "--untracked-files=no"]) if sha else None
    return {"git_commit": sha, "git_dirty": None if status is None else bool(status)}


def _dist_version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def machine_record(*, with_torch: bool = False, no_import: tuple = ()) -> dict[str, Any]:
    """Describe this machine and the code that runs on it.

    Args:
        with_torch: import torch to ask it for the GPU and its CUDA build. Without it
            (the decode benchmarks, which must not carry torch into their worker
            processes) torch and timm versions come from package metadata and the GPU
            from ``nvidia-smi``.
        no_import: library names whose version comes from package metadata without importing
            them (see :func:`decode.env.collect`).

    Returns:
        A JSON-ready dict with at least :data:`benchmarks.schema.MACHINE_KEYS`.
    """
    from decode.env import collect
    from decode.parallel import default_workers

    env = collect(with_torch=with_torch, no_import=no_import)
    versions = {
        k: env.get(k)
        for k in (
            "rsna-mammo",
            "numpy",
            "pandas",
            "pydicom",
            "pylibjpeg",
            "pylibjpeg-openjpeg",
            "pylibjpeg-libjpeg",
            "dicomsdl",
            "imagecodecs",
            "glymur",
            "openjpeg",
            "torch",
            "timm",
            "scikit-learn",
            "kornia",
            "nvidia-dali",
            "cupy",
            "nvimgcodec",
        )
    }
    if not with_torch:
        versions["torch"] = _dist_version("torch")
        versions["timm"] = _dist_version("timm")
        versions["kornia"] = _dist_version("kornia")
    for extra in ("psutil", "matplotlib", "tqdm"):
        versions[extra] = _dist_version(extra)
    gpu = nvidia_smi()
    if with_torch and env.get("gpu"):
        gpu["gpu"] = gpu["gpu"] or env.get("gpu")
        gpu["gpu_count"] = gpu["gpu_count"] or env.get("gpu_count", 0)
    rec: dict[str, Any] = {
        "cpu": env.get("cpu"),
        "cpu_count": env.get("cpu_count"),
        "cpus_usable": default_workers(),
        "gpu": gpu["gpu"],
        "gpu_count": gpu["gpu_count"],
        "driver": gpu["driver"],
        "cuda": gpu["cuda"],
        "torch_cuda": env.get("torch_cuda") if with_torch else None,
        "python": env.get("python") or sys.version.split()[0],
        "platform": env.get("platform"),
        "versions": versions,
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
    }
    rec.update(git_state())
    return rec


def _cpu_word(cpu: str) -> str:
    text = re.sub(r"\((r|tm)\)|@.*$|\bcpu\b|\bprocessor\b|\d+-core", " ", (cpu or "").lower())
    words = [w for w in re.split(r"[^a-z0-9]+", text) if w and w not in ("amd", "intel", "genuine", "authentic")]
    return words[0] if words else "cpu"


def _gpu_word(gpu: str) -> str:
    words = [w for w in re.split(r"[^a-z0-9]+", (gpu or "").lower()) if w and w not in ("nvidia", "tesla", "geforce")]
    return words[0] if words else "gpu"


def machine_slug(rec: dict[str, Any]) -> str:
    """A short file-name-safe machine name: ``cpu-2core-epyc`` or ``h100x1-16core-epyc``."""
    cores = rec.get("cpus_usable") or rec.get("cpu_count") or 0
    cpu = f"{cores}core-{_cpu_word(rec.get('cpu') or '')}"
    if rec.get("gpu"):
        return f"{_gpu_word(rec['gpu'])}x{rec.get('gpu_count') or 1}-{cpu}"
    return f"cpu-{cpu}"


def expand_path(template: str, rec: dict[str, Any]) -> str:
    """Fill ``{machine}`` and ``{date}`` (YYYY-MM-DD) in an output path template."""
    date = str(rec.get("date") or datetime.date.today().isoformat())[:10]
    return template.replace("{machine}", machine_slug(rec)).replace("{date}", date)
