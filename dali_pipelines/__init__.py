"""Data loading: the `DicomLoader` (CPU workers or the DALI GPU pipeline) and DALI graphs."""

from .loader import DEVICES, DicomLoader, SampleReader, resolve_device

__all__ = ["DEVICES", "DicomLoader", "SampleReader", "resolve_device"]
