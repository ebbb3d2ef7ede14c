"""The notebooks under ``notebooks/``: committed without outputs, and executed top to bottom.

Each notebook runs in a Jupyter kernel (nbclient) in a fresh working directory with its
small defaults (a synthetic dataset, a few training steps on the CPU); the figures it
saves under ``notebook_out/<name>/figures/`` are decoded and checked, and the executed
notebook must carry them as displayed PNG outputs.
"""

from __future__ import annotations

import glob
import os
import time

import pytest

from tests.pictures import check_png

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = sorted(glob.glob(os.path.join(REPO, "notebooks", "*.ipynb")))
#: The figures each notebook must write (its defaults have labels, so the ROC is drawn too).
FIGURES = {
    "train": ("chain.png", "batch.png", "curves.png"),
    "inference": ("scores.png", "roc.png", "extremes.png"),
}
#: Pictures the library's own hooks wrote while the notebook ran (train: curves; predict: ROC).
HOOK_PICTURES = {"train": "notebook_out/train/run/curves.png", "inference": "notebook_out/inference/roc.png"}
CELL_TIMEOUT_S = 240


def test_every_notebook_is_known_and_committed_without_outputs():
    nbformat = pytest.importorskip("nbformat")
    assert {os.path.splitext(os.path.basename(p))[0] for p in NOTEBOOKS} == set(FIGURES)
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        assert nb.metadata.get("kernelspec", {}).get("name") == "python3", path
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert code, path
        for cell in code:
            where = f"{path}: cell {cell.source[:40]!r}"
            assert cell.outputs == [] and cell.execution_count is None, f"{where}: outputs not stripped"
            assert "execution" not in cell.metadata, f"{where}: execution timing left in its metadata"
        # the first code cell holds the parameters a user edits to point at real data
        assert code[0].source.startswith("DATA = None"), path


@pytest.mark.slow  # a Jupyter kernel that imports torch and timm, and a short training run
@pytest.mark.parametrize("name", sorted(FIGURES))
def test_notebook_executes_and_writes_its_figures(name, tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    # the kernel imports this checkout's packages whether or not they are installed
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (REPO, os.environ.get("PYTHONPATH")) if p))
    nb = nbformat.read(os.path.join(REPO, "notebooks", f"{name}.ipynb"), as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=CELL_TIMEOUT_S, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    t0 = time.perf_counter()
    client.execute()
    seconds = time.perf_counter() - t0
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    shown = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    assert len(shown) == len(FIGURES[name]), f"{len(shown)} figures displayed"
    fig_dir = tmp_path / "notebook_out" / name / "figures"
    assert sorted(os.listdir(fig_dir)) == sorted(FIGURES[name])
    for fig in FIGURES[name]:
        check_png(fig_dir / fig)
    check_png(tmp_path / HOOK_PICTURES[name])
    print(f"{name}.ipynb executed in {seconds:.1f} s")
