"""One version everywhere, and the generic top-level package names map to this distribution."""

import json
import os
import subprocess
import sys
from importlib import metadata

import pytest

import decode
from decode import __version__
from decode.provenance import TOP_LEVEL, package_origins, provenance
from training.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_top_level_packages_belong_to_this_distribution_and_tree():
    owners = metadata.packages_distributions()
    assert TOP_LEVEL == ("decode", "dali_pipelines", "training", "benchmarks")
    for name in TOP_LEVEL:
        assert sorted(set(owners.get(name, []))) == ["rsna-mammo"], (name, owners.get(name))
    assert os.path.realpath(decode.__file__) == os.path.realpath(os.path.join(ROOT, "decode", "__init__.py"))
    origins = package_origins()
    assert [o.name for o in origins] == list(TOP_LEVEL)
    assert [o.problem for o in origins] == [None] * 4
    assert all(os.path.realpath(o.path) == os.path.realpath(os.path.join(ROOT, o.name)) for o in origins)


def test_a_second_distribution_claiming_a_package_is_named(tmp_path, monkeypatch):
    info = tmp_path / "other_project-2.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: other-project\nVersion: 2.0\n")
    (info / "top_level.txt").write_text("training\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    problems = {o.name: o.problem for o in package_origins()}
    assert problems["decode"] is None
    assert "training is also installed by other-project" in problems["training"]
    assert "own venv" in problems["training"]


def test_a_package_shadowed_by_another_folder_is_named(tmp_path, monkeypatch):
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "benchmarks", raising=False)
    problems = {o.name: o.problem for o in package_origins()}
    assert f"imported from {tmp_path / 'benchmarks'}" in problems["benchmarks"]
    assert problems["training"] is None


def test_env_reports_version_and_package_origins(capsys):
    assert main(["env", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["rsna-mammo"] == __version__
    assert info["packages"] == dict.fromkeys(TOP_LEVEL, "ok")
    assert os.path.realpath(info["source"]) == os.path.realpath(ROOT)
    assert info["scikit-learn"] and info["kornia"]
    assert provenance()["installed"] is not None  # installed (editable or not), not only on PYTHONPATH


def test_one_version_for_setup_cli_and_machine_record(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out == f"rsna-mammo {__version__}\n"
    out = subprocess.run(
        [sys.executable, "setup.py", "--version"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert out.strip().splitlines()[-1] == __version__
    from benchmarks.machine import machine_record

    assert machine_record()["versions"]["rsna-mammo"] == __version__
