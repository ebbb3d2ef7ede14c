"""Data loading: the `DicomLoader` and its engines (CPU workers, DALI, nvImageCodec), DALI graphs, hand-off to torch."""

from .devices import DEVICES, resolve_device
from .engines import ENGINES, engine_unavailable_reason, resolve_engine
from .loader import DicomLoader, SampleReader

__all__ = [
    "DEVICES",
    "ENGINES",
    "DicomLoader",
    "SampleReader",
    "engine_unavailable_reason",
    "resolve_device",
    "resolve_engine",
]
