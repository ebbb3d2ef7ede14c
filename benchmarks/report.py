"""``rsna-mammo bench report RESULTS.json... [--out DIR]``: a markdown table and PNG charts.

The table lists every row of every file (one run per file, named by machine and
date), with images/s against the same run's pydicom baseline for decode rows. The
plot shows decode images/s per backend and codec, one panel per codec; baselines are
grey and hatched, rows that failed the exactness gate are marked WRONG.
``pipeline.png`` (loader stages) and ``e2e.png`` (inference end to end) are drawn by
:mod:`benchmarks.report_charts` when pipeline or ``bench infer --e2e`` files are given.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from .report_text import codec_name, num, run_name
from .schema import BenchResult, load, validate

DECODE_STAGES = ("baseline", "decode")
#: Documents whose baseline/decode rows are decode-throughput runs (plotted and compared with pydicom).
DECODE_COMMANDS = ("bench decode", "decode-speedup", "benchmarks/gpu_check.sh")


def is_decode_run(doc: dict) -> bool:
    return doc["config"].get("command") in DECODE_COMMANDS


def _fmt(v, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def _cache_lines(c: dict) -> list[str]:
    """The decode-once figures of ``bench decode --caches`` as a small table."""
    spi = c.get("seconds_per_image", {})
    ratios = c.get("ratios", {})
    out = [
        "",
        "Decode once (`--caches`, one process, s/image):",
        "",
        "| path | s/image | × faster than JPEG 2000 |",
        "| --- | ---: | ---: |",
        f"| JPEG 2000 decode | {_fmt(spi.get('j2k_decode'), '.4g')} | 1× |",
        f"| HTJ2K transcode decode (bit-exact: {c.get('htj2k_bit_exact')}) | {_fmt(spi.get('htj2k_decode'), '.4g')}"
        f" | {_fmt(ratios.get('htj2k_vs_j2k_decode'), '.1f')}× |",
        f"| JPEG 2000 decode + chain | {_fmt(spi.get('j2k_decode_chain'), '.4g')} | 1× |",
        f"| tensor cache read | {_fmt(spi.get('tensor_cache_read'), '.4g')}"
        f" | {_fmt(ratios.get('tensor_cache_vs_j2k_decode_chain'), '.0f')}× |",
        f"| tensor cache through DicomLoader | {_fmt(spi.get('tensor_cache_loader'), '.4g')}"
        f" | {_fmt(ratios.get('tensor_cache_loader_vs_j2k_decode_chain'), '.0f')}× |",
        "",
    ]
    return out


def _summary_lines(key: str, value) -> list[str]:
    if key == "caches" and isinstance(value, dict):
        return _cache_lines(value)
    if isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
        return [f"- {key}, {_name(k)}: " + ", ".join(f"{kk} {vv}" for kk, vv in v.items()) for k, v in value.items()]
    if isinstance(value, dict):
        return [f"- {key}: " + ", ".join(f"{_name(k)} {v}" for k, v in value.items())]
    return [f"- {key}: {value}"]


def _name(key) -> str:
    return codec_name(key) if str(key).startswith("1.2.") else str(key)


def backend_label(r: BenchResult) -> str:
    return f"{r.backend} (baseline)" if r.is_baseline else r.backend


def pydicom_ratio(r: BenchResult, rows: Sequence[BenchResult]) -> float | None:
    """``r``'s images/s over the same run's pydicom baseline on the same codec (decode rows only)."""
    if r.stage not in DECODE_STAGES or not r.images_per_s:
        return None
    ref = next(
        (
            b
            for b in rows
            if b.stage == "baseline"
            and b.backend == "pydicom"
            and b.transfer_syntax == r.transfer_syntax
            and b.images_per_s
        ),
        None,
    )
    return round(r.images_per_s / ref.images_per_s, 2) if ref else None


def markdown(docs: Sequence[tuple[str, dict]]) -> str:
    """The report as markdown: per run, a header line and one table of all rows, then ratios."""
    from .ratios import decode_summary

    out: list[str] = []
    for name, doc in docs:
        rows = validate(doc)
        m = doc["machine"]
        out.append(f"### {run_name(doc)} — `{doc['config'].get('command')}`\n")
        out.append(
            f"CPU: {m.get('cpu')} ({m.get('cpus_usable') or m.get('cpu_count')} usable cores); "
            f"GPU: {m.get('gpu') or 'none'}; Python {m.get('python')}; "
            f"commit {str(m.get('git_commit') or 'unknown')[:10]}{' (dirty)' if m.get('git_dirty') else ''}; "
            f"file `{os.path.basename(name)}`\n"
        )
        out.append(
            "| stage | codec | backend | device | workers | batch | size | images | images/s | spread | "
            "MPix/s | × pydicom | peak host MB | peak GPU MB | exact |"
        )
        out.append(
            "| --- | --- | --- | --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
        )
        for r in rows:
            size = f"{r.height}×{r.width}" if r.height and r.width else "-"
            ratio = pydicom_ratio(r, rows) if is_decode_run(doc) else None
            ips = num(r.images_per_s) if r.exact is not False else "**WRONG**"
            out.append(
                f"| {r.stage} | {codec_name(r.transfer_syntax)} | {backend_label(r)} | {r.device} | {r.workers} | "
                f"{r.batch_size} | {size} | {r.images} | {ips} | "
                f"{_fmt(None if r.spread is None else 100 * r.spread, '.0f')}{'%' if r.spread is not None else ''} | "
                f"{num(r.mpix_per_s)} | {_fmt(ratio, '.2f')}{'×' if ratio else ''} | "
                f"{_fmt(r.peak_host_mb, '.0f')} | {_fmt(r.peak_gpu_mb, '.0f')} | "
                f"{'-' if r.exact is None else ('yes' if r.exact else 'NO')} |"
            )
        ratios = decode_summary(rows) if is_decode_run(doc) else {}
        out.append("")
        if ratios:
            for ts, s in ratios.items():
                parts = []
                if s["default_vs_pydicom"] is not None:
                    parts.append(
                        f"the default (`auto`, {s['default_workers']} workers) decodes "
                        f"{s['default_vs_pydicom']:.2f}× the serial pydicom loop"
                    )
                if s["per_core_vs_pydicom"] is not None:
                    parts.append(
                        f"per core, `auto` is {s['per_core_vs_pydicom']:.2f}× pydicom and "
                        f"{_fmt(s['per_core_vs_fastest_single'], '.2f')}× the fastest single library "
                        f"({s['fastest_single']})"
                    )
                if s.get("gpu_vs_pydicom") is not None:
                    parts.append(f"on the GPU, {s['gpu_best']} decodes {s['gpu_vs_pydicom']:.2f}× pydicom")
                if parts:
                    out.append(f"- {codec_name(ts)}: " + "; ".join(parts) + ".")
        for key, value in (doc.get("summary") or {}).items():
            if key in ("ratios", "errors"):
                continue
            out.extend(_summary_lines(key, value))
        errors = (doc.get("summary") or {}).get("errors") or []
        if errors:
            out.append(
                f"- {len(errors)} error(s): " + "; ".join(f"{e.get('path')}: {e.get('reason')}" for e in errors[:5])
            )
        out.append("")
    return "\n".join(out)


def plot(docs: Sequence[tuple[str, dict]], path: str) -> str | None:
    """Decode images/s per backend, one panel per codec; baselines grey and hatched.

    Returns:
        ``path``, or None when no document has decode rows.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from decode.atomic import atomic_write

    bars: dict[str, list[tuple[str, float | None, bool, bool | None, bool]]] = {}
    decode_docs = [doc for _n, doc in docs if is_decode_run(doc)]
    names = [run_name(doc) for doc in decode_docs]
    tags = [n if names.count(n) == 1 else f"{n} {doc['config']['command']}" for n, doc in zip(names, decode_docs)]
    for run, doc in zip(tags, decode_docs):
        rows = validate(doc)
        auto = [r for r in rows if r.stage == "decode" and r.backend == "auto"]
        for r in rows:
            if r.stage not in DECODE_STAGES:
                continue
            is_default = r.backend == "auto" and r.workers == max(
                (a.workers for a in auto if a.transfer_syntax == r.transfer_syntax), default=0
            )
            label = f"{backend_label(r)}, {r.workers} worker{'s' if r.workers > 1 else ''}"
            if r.device != "cpu":
                label = f"{backend_label(r)} ({r.device}), batch {r.batch_size}"
            if len(decode_docs) > 1:
                label = f"{run}: {label}"
            bars.setdefault(codec_name(r.transfer_syntax), []).append(
                (label, r.images_per_s, r.is_baseline, r.exact, is_default)
            )
    if not bars:
        return None
    codecs = sorted(bars)
    height = max(2.5, 0.35 * max(len(v) for v in bars.values()) + 1.2)
    longest = max(len(it[0]) for v in bars.values() for it in v)
    fig, axes = plt.subplots(1, len(codecs), figsize=((4.0 + 0.07 * longest) * len(codecs), height), squeeze=False)
    for ax, codec in zip(axes[0], codecs):
        items = bars[codec]
        ys = list(range(len(items)))[::-1]
        top = max((v or 0.0) for _l, v, *_ in items) or 1.0
        for y, (label, value, baseline, exact, default) in zip(ys, items):
            color = (
                "#9e9e9e" if baseline else ("#d62728" if default else ("#2ca02c" if "(cuda)" in label else "#1f77b4"))
            )
            ax.barh(y, value or 0.0, color=color, hatch="//" if baseline else None, edgecolor="black", linewidth=0.5)
            text = "WRONG (not exact)" if exact is False else num(value)
            ax.text((value or 0.0) + 0.01 * top, y, text, va="center", fontsize=8)
        ax.set_yticks(ys)
        ax.set_yticklabels([it[0] for it in items], fontsize=8)
        ax.set_xlim(0, top * 1.25)
        ax.set_xlabel("images / s (median of repeats)")
        ax.set_title(codec)
    from matplotlib.patches import Patch

    handles = [
        Patch(facecolor="#9e9e9e", hatch="//", edgecolor="black", label="baseline (plain library loop)"),
        Patch(facecolor="#d62728", edgecolor="black", label="project default (auto, all workers)"),
        Patch(facecolor="#1f77b4", edgecolor="black", label="project backend (CPU)"),
    ]
    if any("(cuda)" in it[0] for v in bars.values() for it in v):
        handles.append(Patch(facecolor="#2ca02c", edgecolor="black", label="GPU"))
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.08, 1, 1))

    def write(f):
        fig.savefig(f, format="png", dpi=120)

    atomic_write(path, write)
    plt.close(fig)
    return path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("results", nargs="+", metavar="RESULTS.json", help="result files written by `bench ... --json`")
    p.add_argument(
        "--out",
        default=os.path.join("runs", "bench-report"),
        metavar="DIR",
        help="folder for report.md and the charts: decode.png, pipeline.png, e2e.png (default: runs/bench-report)",
    )


def run(args: argparse.Namespace) -> int:
    """Render every valid file; a file that is not a result document gets one line on stderr."""
    from decode.atomic import atomic_write

    docs, bad = [], 0
    for path in args.results:
        try:
            docs.append((path, load(path)))
        except (OSError, ValueError) as exc:
            bad += 1
            print(f"error: {exc if str(path) in str(exc) else f'{path}: {exc}'}", file=sys.stderr)
    if not docs:
        print("bench report: no valid result file", file=sys.stderr)
        return 1
    text = markdown(docs)
    os.makedirs(args.out, exist_ok=True)
    from .report_charts import write_charts

    png = plot(docs, os.path.join(args.out, "decode.png"))
    charts = ([(png, "decode images/s per backend and codec")] if png else []) + write_charts(docs, args.out)
    for path, alt in charts:
        text += f"\n![{alt}]({os.path.basename(path)})\n"
    md = atomic_write(os.path.join(args.out, "report.md"), text)
    print(text)
    print(f"wrote {md}" + "".join(f" and {p}" for p, _ in charts), file=sys.stderr)
    return 1 if bad else 0
