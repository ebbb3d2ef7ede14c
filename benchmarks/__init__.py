"""Throughput benchmarks: decode backends, loader stages and models, with JSON results and a report.

Every benchmark is a ``rsna-mammo bench`` subcommand (decode, pipeline, train, infer,
speedup, caches, reduced, reliability, train-reference, report; see :mod:`benchmarks.cli`);
``benchmarks/gpu_check.sh`` is the GPU box's check. Results follow :mod:`benchmarks.schema`;
the committed reference runs live in ``benchmarks/results/``. Nothing in ``decode``,
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
