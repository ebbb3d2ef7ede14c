"""Throughput benchmarks: decode backends, loader stages and models, with JSON results and a report.

``rsna-mammo bench decode|pipeline|train|infer|report`` (see :mod:`benchmarks.cli`) and
``python -m benchmarks.decode_speedup``. Results follow :mod:`benchmarks.schema`; the
committed reference runs live in ``benchmarks/results/``. Nothing in ``decode``,
``dali_pipelines`` or ``training`` imports this package.
"""

from .schema import BASELINES, ROW_FIELDS, SCHEMA_VERSION, STAGES, BenchResult, dump, load, make_document, validate

__all__ = [
    "BASELINES",
    "ROW_FIELDS",
    "SCHEMA_VERSION",
    "STAGES",
    "BenchResult",
    "dump",
    "load",
    "make_document",
    "validate",
]
