"""Ratios of a decode run: the project's default and per-core figures against the baselines."""

from __future__ import annotations

from collections.abc import Sequence

from .schema import BenchResult


def decode_summary(rows: Sequence[BenchResult]) -> dict[str, dict]:
    """Ratios per transfer syntax: the default (auto, all workers) and per-core auto vs the rest.

    CPU rows only, except ``gpu_best`` / ``gpu_vs_pydicom``: the fastest exact CUDA decode
    row (e.g. from ``gpu_check.sh``) against the same run's pydicom loop.

    Returns:
        ``{ts: {"default_vs_pydicom", "default_workers", "per_core_vs_pydicom",
        "fastest_single", "fastest_single_images_per_s", "per_core_vs_fastest_single",
        "gpu_best", "gpu_vs_pydicom"}}`` (values None where a figure is missing).
    """
    out: dict[str, dict] = {}
    for ts in sorted({r.transfer_syntax for r in rows if r.transfer_syntax}):
        every = [r for r in rows if r.transfer_syntax == ts and r.stage in ("baseline", "decode")]
        rs = [r for r in every if r.device == "cpu"]
        ref = next((r for r in rs if r.stage == "baseline" and r.backend == "pydicom"), None)
        auto = [r for r in rs if r.stage == "decode" and r.backend == "auto"]
        default = max(auto, key=lambda r: r.workers, default=None)
        core = next((r for r in auto if r.workers == 1), None)
        # decode-scale rows (``NAME@SCALE``, reduced resolution) are not full decodes: never "the fastest single"
        singles = [r for r in rs if r.workers == 1 and r.backend != "auto" and "@" not in r.backend and r.images_per_s]
        best = max(singles, key=lambda r: r.images_per_s, default=None)
        gpu = max(
            (r for r in every if r.device == "cuda" and r.images_per_s), key=lambda r: r.images_per_s, default=None
        )

        def ratio(a, b):
            return round(a.images_per_s / b.images_per_s, 3) if a and b and a.images_per_s and b.images_per_s else None

        out[ts] = {
            "default_vs_pydicom": ratio(default, ref),
            "default_workers": default.workers if default else None,
            "per_core_vs_pydicom": ratio(core, ref),
            "fastest_single": (f"{best.backend}{' (baseline)' if best.is_baseline else ''}" if best else None),
            "fastest_single_images_per_s": best.images_per_s if best else None,
            "per_core_vs_fastest_single": ratio(core, best),
            "gpu_best": f"{gpu.backend} (batch {gpu.batch_size})" if gpu else None,
            "gpu_vs_pydicom": ratio(gpu, ref),
        }
    return out
