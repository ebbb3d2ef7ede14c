"""How the report names things: figures, runs and codecs (shared by the tables and the charts)."""

from __future__ import annotations


def num(v: float | None) -> str:
    """A figure for people: 1,234 / 56.7 / 0.123; "-" for None."""
    if v is None:
        return "-"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.3g}"


def run_name(doc: dict) -> str:
    """``<machine slug> <date>`` of a result document."""
    from .machine import machine_slug

    return f"{machine_slug(doc['machine'])} {str(doc['machine'].get('date') or '')[:10]}".strip()


def codec_name(ts: str | None) -> str:
    """The short name of a transfer syntax (``"-"`` for none)."""
    from decode.syntax import short_name

    return short_name(ts) if ts else "-"
