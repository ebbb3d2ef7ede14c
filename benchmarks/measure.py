"""Measuring helpers: repeat statistics, peak host / GPU memory, CUDA-event timing.

Host memory is sampled (psutil, every 10 ms) as the summed resident set of this
process and all its children, so process pools count; without psutil the peak comes
from ``resource.getrusage`` (self + waited-for children, high-water marks).
"""

from __future__ import annotations

import logging
import statistics
import threading
import time
from collections.abc import Callable, Sequence

log = logging.getLogger(__name__)

MIB = 1024.0 * 1024.0


def summarize(seconds: Sequence[float], images: int, pixels: int) -> dict[str, float | None]:
    """Median images/s and MPix/s over repeats, and their spread.

    Args:
        seconds: wall (or CUDA-event) seconds of each timed repeat.
        images: images per repeat.
        pixels: pixels per repeat.

    Returns:
        ``{"images_per_s", "mpix_per_s", "spread"}``; spread is (max − min) / median of
        the per-repeat images/s (0.0 for one repeat); values are None without repeats.
    """
    rates = [images / s for s in seconds if s > 0]
    if not rates:
        return {"images_per_s": None, "mpix_per_s": None, "spread": None}
    med = statistics.median(rates)
    return {
        "images_per_s": round(med, 4),
        "mpix_per_s": round(med * pixels / max(images, 1) / 1e6, 4),
        "spread": round((max(rates) - min(rates)) / med, 4) if med > 0 else None,
    }


class PeakHostMemory:
    """Context manager: peak resident memory (MiB) of this process tree while inside.

    >>> with PeakHostMemory() as mem:
    ...     work()
    >>> mem.peak_mb
    """

    def __init__(self, interval: float = 0.01, pid: int | None = None):
        self.interval = interval
        self.pid = pid  # whose tree to sample (default: this process)
        self.peak_mb: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._peak = 0

    def _sample(self, proc) -> int:
        import psutil

        total = 0
        try:
            total = proc.memory_info().rss
            for child in proc.children(recursive=True):
                try:
                    total += child.memory_info().rss
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    pass
        except psutil.Error:
            pass
        return total

    def _loop(self, proc) -> None:
        while not self._stop.is_set():
            self._peak = max(self._peak, self._sample(proc))
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakHostMemory:
        try:
            import psutil
        except ImportError:
            psutil = None
        if psutil is not None:
            proc = psutil.Process(self.pid)
            self._peak = self._sample(proc)
            self._thread = threading.Thread(target=self._loop, args=(proc,), daemon=True, name="peak-host-mem")
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self.peak_mb = round(self._peak / MIB, 1)
        else:  # high-water marks only (KiB on Linux)
            import resource

            kib = (
                resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                + resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            )
            self.peak_mb = round(kib / 1024.0, 1)


def reset_gpu_peak() -> None:
    """Reset torch's peak-memory counter when torch with CUDA is already loaded."""
    import sys

    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def gpu_peak_mb() -> float | None:
    """GPU memory in MiB: torch's allocator peak since :func:`reset_gpu_peak` plus what CuPy's pool holds.

    CuPy's part is the pool's current size (it keeps freed blocks, so it is close to its
    peak). None when neither torch (with CUDA) nor CuPy has been used in this process.
    """
    import sys

    total, seen = 0, False
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        total += torch.cuda.max_memory_allocated()
        seen = True
    cupy = sys.modules.get("cupy")
    if cupy is not None:
        try:
            total += cupy.get_default_memory_pool().total_bytes()
            seen = True
        except Exception:  # no device
            pass
    return round(total / MIB, 1) if seen else None


def time_cuda(fn: Callable[[], object], *, repeats: int, warmup: int = 1) -> list[float]:
    """Seconds per call of ``fn`` (asynchronous torch CUDA work) timed with CUDA events.

    Each repeat records an event before and after ``fn`` on the current stream and
    synchronizes on the end event: the figure is GPU-timeline time, never a bare wall
    clock around work that is still queued.
    """
    import torch

    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    out = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        out.append(start.elapsed_time(end) / 1000.0)
    return out


class Timer:
    """Times a ``with`` block: CUDA events on the current stream (``device="cuda"``),
    ``perf_counter`` on the CPU. ``seconds`` is the last block, ``windows`` every block."""

    def __init__(self, device: str):
        self.cuda = device == "cuda"
        self.seconds: float = 0.0
        self.windows: list[float] = []

    def __enter__(self):
        if self.cuda:
            import torch

            self._start, self._end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            self._start.record()
        else:
            self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        if self.cuda:
            self._end.record()
            self._end.synchronize()
            self.seconds = self._start.elapsed_time(self._end) / 1000.0
        else:
            self.seconds = time.perf_counter() - self._t0
        self.windows.append(self.seconds)
        return False
