"""Charts of ``bench report`` beside ``decode.png``: where the loader's time goes, and inference end to end.

* ``pipeline.png`` — from ``bench pipeline`` and ``bench infer --e2e`` documents: images/s of
  each loader stage in the loader's order (read, decode, VOI, crop, resize, collate, h2d)
  and of the loader end to end, one panel per run and codec, on a log scale; the slowest
  stage (the bottleneck, as ``summary.stages`` names it) is red, the loader green,
  reduced-resolution rows (``NAME@SCALE``) hatched.
* ``e2e.png`` — from ``bench infer --e2e`` documents: per model variant (eager, compiled,
  onnx), the loader alone, the model alone on a batch in memory and ``predict`` end to
  end, with the overlap efficiency (end to end / slowest of the two; 1.0 = fully
  overlapped), one panel per run and codec.

Figures are drawn headless (Agg canvas, no pyplot) like :mod:`training.plots`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from .report_text import codec_name, num, run_name
from .schema import BenchResult, validate

PIPELINE_COMMANDS = ("bench pipeline", "bench infer --e2e")
E2E_COMMAND = "bench infer --e2e"
#: Loader stages in the loader's order (as ``bench pipeline`` measures them), then the loader itself.
STAGE_ORDER = ("read", "decode", "voi", "crop", "resize", "collate", "h2d", "loader")
#: Stages that may be the bottleneck (``pipeline_summary``: not the loader, not the host→device copy).
SERIAL_STAGES = ("read", "decode", "voi", "crop", "resize", "collate")


@dataclass(frozen=True)
class StageBar:
    """One bar of ``pipeline.png``: ``kind`` is ``bottleneck``, ``stage``, ``loader`` or ``reduced``."""

    label: str
    images_per_s: float | None
    kind: str


@dataclass(frozen=True)
class E2EGroup:
    """One variant of ``e2e.png``: images/s of the loader, the model and ``predict`` end to end."""

    variant: str
    loader: float | None
    model: float | None
    e2e: float | None

    @property
    def overlap(self) -> float | None:
        """End to end over the slower of loader and model (``summary.e2e``'s overlap efficiency)."""
        parts = [v for v in (self.loader, self.model) if v]
        if not self.e2e or len(parts) < 2:
            return None
        return round(self.e2e / min(parts), 3)


def _panels(docs: Sequence[tuple[str, dict]], commands: Sequence[str]) -> list[tuple[str, str, list[BenchResult]]]:
    """``(panel title, transfer syntax, all the document's rows)`` per document of ``commands`` and codec."""
    chosen = [doc for _path, doc in docs if doc["config"].get("command") in commands]
    names = [run_name(doc) for doc in chosen]
    out = []
    for doc, name in zip(chosen, names):
        tag = name if names.count(name) == 1 else f"{name} {doc['config']['command']}"
        rows = validate(doc)
        for ts in sorted({r.transfer_syntax for r in rows if r.transfer_syntax}):
            out.append((f"{tag} — {codec_name(ts)}", ts, rows))
    return out


def pipeline_bars(docs: Sequence[tuple[str, dict]]) -> dict[str, list[StageBar]]:
    """Bars of ``pipeline.png`` per panel title (``run — codec``), in the loader's order.

    Within a stage the full-resolution row comes first, then the reduced-resolution ones.
    """
    panels: dict[str, list[StageBar]] = {}
    for title, ts, rows in _panels(docs, PIPELINE_COMMANDS):
        staged = [r for r in rows if r.stage in STAGE_ORDER and r.transfer_syntax == ts]
        if not staged:
            continue
        serial = [r for r in staged if r.stage in SERIAL_STAGES and "@" not in r.backend and r.images_per_s]
        slowest = min(serial, key=lambda r: r.images_per_s) if serial else None
        staged.sort(key=lambda r: (STAGE_ORDER.index(r.stage), "@" in r.backend))
        bars = []
        for r in staged:
            if "@" in r.backend:
                kind, label = "reduced", f"{r.stage} {r.backend}"
            elif r.stage == "loader":
                kind, label = "loader", f"loader {r.backend}, {r.workers} worker{'s' if r.workers != 1 else ''}"
            else:
                kind = "bottleneck" if r is slowest else "stage"
                label = f"{r.stage} ({r.backend})" if r.stage == "decode" else r.stage
            if r.stage == "loader" and "@" in r.backend:
                label += f", {r.workers} worker{'s' if r.workers != 1 else ''}"
            bars.append(StageBar(label, r.images_per_s, kind))
        panels[title] = bars
    return panels


def e2e_groups(docs: Sequence[tuple[str, dict]]) -> dict[str, list[E2EGroup]]:
    """Groups of ``e2e.png`` per panel title (``run — codec``), one per variant in the run's order."""
    panels: dict[str, list[E2EGroup]] = {}
    for title, ts, rows in _panels(docs, (E2E_COMMAND,)):
        models = {r.backend.removeprefix("memory-"): r.images_per_s for r in rows if r.stage == "infer"}
        mine = [r for r in rows if r.transfer_syntax == ts]
        loader = next((r.images_per_s for r in mine if r.stage == "loader" and "@" not in r.backend), None)
        groups = [E2EGroup(r.backend, loader, models.get(r.backend), r.images_per_s) for r in mine if r.stage == "e2e"]
        if groups:
            panels[title] = groups
    return panels


COLORS = {"bottleneck": "#d62728", "stage": "#1f77b4", "loader": "#2ca02c", "reduced": "#9467bd"}


def plot_pipeline(docs: Sequence[tuple[str, dict]], path: str) -> str | None:
    """``pipeline.png``; None when no document has loader-stage rows."""
    from matplotlib.patches import Patch

    from training.plots import new_figure, save_figure

    panels = pipeline_bars(docs)
    if not panels:
        return None
    n = len(panels)
    tallest = max(len(b) for b in panels.values())
    fig = new_figure(6.5 * min(n, 2), (0.32 * tallest + 1.3) * ((n + 1) // 2) + 0.5)
    axes = fig.subplots((n + 1) // 2, min(n, 2), squeeze=False).ravel()
    for ax, (title, bars) in zip(axes, panels.items()):
        ys = list(range(len(bars)))[::-1]
        values = [b.images_per_s or 0.0 for b in bars]
        positive = [v for v in values if v > 0] or [1.0]
        for y, b, v in zip(ys, bars, values):
            ax.barh(
                y,
                v,
                color=COLORS[b.kind],
                hatch="//" if b.kind == "reduced" else None,
                edgecolor="black",
                linewidth=0.5,
            )
            ax.text(v * 1.08 if v else min(positive), y, num(b.images_per_s), va="center", fontsize=8)
        ax.set_xscale("log")
        ax.set_xlim(min(positive) / 2, max(positive) * 6)
        ax.set_yticks(ys)
        ax.set_yticklabels([b.label for b in bars], fontsize=8)
        ax.set_xlabel("images / s (log scale)")
        ax.set_title(title, fontsize=9)
        ax.set_axisbelow(True)
        ax.grid(axis="x", alpha=0.3)
    for ax in axes[n:]:
        ax.axis("off")
    handles = [
        Patch(facecolor=COLORS["bottleneck"], edgecolor="black", label="slowest stage (bottleneck)"),
        Patch(facecolor=COLORS["stage"], edgecolor="black", label="stage, one core"),
        Patch(facecolor=COLORS["loader"], edgecolor="black", label="DicomLoader end to end"),
    ]
    if any(b.kind == "reduced" for bars in panels.values() for b in bars):
        handles.append(Patch(facecolor=COLORS["reduced"], hatch="//", edgecolor="black", label="reduced resolution"))
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=8, frameon=False)
    return save_figure(fig, path)


def plot_e2e(docs: Sequence[tuple[str, dict]], path: str) -> str | None:
    """``e2e.png``; None when no document is a ``bench infer --e2e`` run."""
    import numpy as np

    from training.plots import new_figure, save_figure

    panels = e2e_groups(docs)
    if not panels:
        return None
    n = len(panels)
    widest = max(len(g) for g in panels.values())
    fig = new_figure(max(5.0, 1.6 * widest + 2.5) * min(n, 2), 3.8 * ((n + 1) // 2))
    axes = fig.subplots((n + 1) // 2, min(n, 2), squeeze=False).ravel()
    parts = (("loader", "loader alone", "#2ca02c"), ("model", "model alone (batch in memory)", "#1f77b4"))
    parts += (("e2e", "predict end to end", "#d62728"),)
    for ax, (title, groups) in zip(axes, panels.items()):
        x = np.arange(len(groups))
        top = max((getattr(g, a) or 0.0) for g in groups for a, *_ in parts) or 1.0
        for k, (attr, label, color) in enumerate(parts):
            values = [getattr(g, attr) or 0.0 for g in groups]
            ax.bar(x + (k - 1) * 0.27, values, 0.27, color=color, edgecolor="black", linewidth=0.5, label=label)
            for xi, v in zip(x, values):
                ax.text(xi + (k - 1) * 0.27, v + 0.01 * top, num(v), ha="center", va="bottom", fontsize=7)
        ax.set_xticks(x)
        ax.set_xticklabels([g.variant + ("" if g.overlap is None else f"\noverlap {g.overlap:.2f}") for g in groups])
        ax.set_ylim(0, top * 1.35)
        ax.set_ylabel("images / s")
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7, loc="upper right")
    for ax in axes[n:]:
        ax.axis("off")
    return save_figure(fig, path)


def write_charts(docs: Sequence[tuple[str, dict]], out: str) -> list[tuple[str, str]]:
    """Draw ``pipeline.png`` and ``e2e.png`` under ``out`` where documents have their rows.

    Returns:
        ``(path, alt text)`` of each chart written.
    """
    charts = (
        (plot_pipeline, "pipeline.png", "loader stages and the loader end to end, images/s per codec"),
        (plot_e2e, "e2e.png", "inference end to end: loader, model and predict, images/s per variant"),
    )
    written = []
    for draw, name, alt in charts:
        png = draw(docs, os.path.join(out, name))
        if png:
            written.append((png, alt))
    return written
