"""Shared fixtures: tiny synthetic DICOMs and datasets, generated at test time."""

from __future__ import annotations

import os

# One torch (OpenMP) thread per test process: `make test` runs one pytest-xdist worker per core,
# and tests start loader workers and CLI subprocesses beside it; more threads than cores makes
# OpenMP's spin-waiting threads take the CPU from each other (the suite ran 2-3x slower on 2 cores).
# Set before torch is imported anywhere; subprocesses (CLI runs, notebook kernels) inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")

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


def _keep_xdist_groups(config, items):
    """Give each ``xdist_group`` test its ``@group`` node id suffix under ``--dist loadgroup``.

    The suffix is how the loadgroup scheduler knows the group. pytest-xdist 3.8 writes it to
    ``Node._nodeid``, which pytest 9.2 no longer reads (the id lives in ``Node._id``), so there
    every test was scheduled on its own and a group's module fixture ran once per worker
    (https://github.com/pytest-dev/pytest-xdist/issues/1386). Where xdist's suffix took, nothing changes.
    """
    if not getattr(config.option, "loadgroup", False):
        return
    try:
        from _pytest.nodeid import NodeId
    except ImportError:  # a pytest before 9.2 reads xdist's own suffix
        return

    for item in items:
        names = {
            str(m.args[0] if m.args else m.kwargs.get("name", "default")) for m in item.iter_markers("xdist_group")
        }
        if not names:
            continue
        suffix = "@" + "_".join(sorted(names))
        if not item.nodeid.endswith(suffix) and isinstance(getattr(item, "_id", None), NodeId):
            item._id = NodeId.parse(item.nodeid + suffix)


def _slow_first(items):
    """Move the tests marked ``slow`` to the front, keeping the order within each part.

    pytest-xdist hands tests out one at a time as workers free up (groups first); started
    last, a 30 s test kept one core busy for its length while the other had finished (the
    longest-first rule of thumb for packing jobs onto machines). Tests must not depend on
    their order, so this changes only when each one runs.
    """
    items[:] = sorted(items, key=lambda item: item.get_closest_marker("slow") is None)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    _slow_first(items)
    _keep_xdist_groups(config, items)
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
