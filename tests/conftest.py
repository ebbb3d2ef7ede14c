"""Shared fixtures: tiny synthetic DICOMs and datasets, generated at test time."""

from __future__ import annotations

import pytest

import decode  # noqa: F401  (sets the GPU libraries' log levels before any test imports them)


def _cuda_reason():
    try:
        import torch
    except Exception as exc:  # pragma: no cover
        return f"torch does not import: {exc}"
    if not torch.cuda.is_available():
        return "no CUDA GPU visible to torch on this machine"
    return None


def pytest_collection_modifyitems(config, items):
    reason = _cuda_reason()
    if reason is None:
        return
    skip = pytest.mark.skip(reason=f"gpu test skipped: {reason}")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """An RSNA-layout synthetic dataset: 6 train + 2 test patients at 96×72 (all machines)."""
    from decode.testing.synth import make_dataset

    out = str(tmp_path_factory.mktemp("tiny_rsna"))
    make_dataset(out, patients=6, test_patients=2, height=96, width=72, seed=1, cancer_rate=0.5, workers=1)
    return out
