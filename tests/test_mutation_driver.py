"""`benchmarks.mutation`: which mutants it makes, how it scopes them and what it leaves out."""

from __future__ import annotations

import pytest

pytest.importorskip("mutmut")

from benchmarks.mutation import ModuleSpec, enumerate_mutants, markdown, scratch_copy

SOURCE = '''import logging

log = logging.getLogger(__name__)


def kept(x):
    """Docstrings are never mutated."""
    log.warning("x is %d", x + 1)
    return x < 3


class Other:
    def left_out(self):
        return 1 + 2
'''


def test_mutants_are_scoped_and_log_calls_left_out(tmp_path):
    (tmp_path / "m.py").write_text(SOURCE)
    everything, log_only = enumerate_mutants(str(tmp_path), ModuleSpec("m.py", ()))
    assert log_only == 3  # the message, `+` and `1` of the log call only change a log record
    scoped, _ = enumerate_mutants(str(tmp_path), ModuleSpec("m.py", (), scope=("kept",)))
    assert [(m.line_number, m.mutated.strip()) for m in scoped] == [(9, "return x <= 3"), (9, "return x < 4")]
    assert all(m.function == "kept" for m in scoped)
    assert {m.function for m in everything} == {"", "kept", "Other.left_out"}
    m = scoped[0]
    assert m.source.splitlines()[8] == "    return x <= 3" and m.original.strip() == "return x < 3"
    with pytest.raises(ValueError, match="no top-level function or class 'gone'"):
        enumerate_mutants(str(tmp_path), ModuleSpec("m.py", (), scope=("gone",)))


def test_scratch_copy_takes_tracked_and_untracked_files_but_not_ignored_ones(tmp_path):
    import subprocess

    repo, dest = tmp_path / "repo", tmp_path / "copy"
    (repo / "pkg").mkdir(parents=True)
    (repo / "pkg" / "a.py").write_text("A = 1\n")
    (repo / "new.py").write_text("B = 2\n")
    (repo / "junk.pyc").write_text("")
    (repo / ".gitignore").write_text("*.pyc\n")
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run(["git", "-C", str(repo), "add", "pkg/a.py", ".gitignore"], check=True)
    scratch_copy(str(repo), str(dest))
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()) == [
        ".gitignore",
        "new.py",
        "pkg/a.py",
    ]


def test_markdown_lists_figures_and_survivors():
    doc = {
        "machine": {"date": "2026-12-01T00:00:00+00:00"},
        "results": [
            {
                "module": "m",
                "path": "m.py",
                "scope": None,
                "mutants": 10,
                "killed": 9,
                "survived": 1,
                "equivalent": 0,
                "log_only": 2,
                "score": 0.9,
                "mutant_rows": [
                    {"line": 9, "function": "kept", "original": "x < 3", "mutated": "x <= 3", "status": "survived"}
                ],
            }
        ],
    }
    text = markdown(doc)
    assert "| m (`m.py`) | 10 | 9 | 1 | 0 | 2 | 90.0% |" in text
    assert "- `m.py:9` (kept): `x < 3` → `x <= 3`" in text


TINY_MODULE = "def below(x):\n    return x < 3\n\n\ndef untested(x):\n    return x + 1\n"
TINY_TEST = "from decode.tiny import below\n\n\ndef test_below():\n    assert below(2) and not below(3)\n"
RUN_TINY = """
import json, sys
import decode  # the checkout's package, imported before the driver runs (as importing benchmarks does)
from benchmarks import mutation
mutation._REPO = sys.argv[1]
mutation.MODULES = {"tiny": mutation.ModuleSpec("decode/tiny.py", ("tests/test_tiny.py",))}
code = mutation.main(["--modules", "tiny", "--json", sys.argv[2]])
print(json.dumps({"code": code}))
"""


def test_a_run_mutates_the_copy_not_the_already_imported_checkout(tmp_path):
    """End to end on a tiny project whose package name (``decode``) is already imported from
    this checkout: mutants of the copy must be the code the tests run."""
    import json
    import os
    import subprocess
    import sys

    repo = tmp_path / "repo"
    (repo / "decode").mkdir(parents=True)
    (repo / "tests").mkdir()
    (repo / "decode" / "__init__.py").write_text("")
    (repo / "decode" / "tiny.py").write_text(TINY_MODULE)
    (repo / "tests" / "test_tiny.py").write_text(TINY_TEST)
    (repo / "pyproject.toml").write_text('[tool.pytest.ini_options]\npythonpath = ["."]\n')
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    report = tmp_path / "mutation.json"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run(
        [sys.executable, "-c", RUN_TINY, str(repo), str(report)],
        capture_output=True,
        text=True,
        cwd=root,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"code": 2}  # below the goal: one survivor
    (tiny,) = json.loads(report.read_text())["results"]
    survivors = {(r["original"], r["mutated"], r["status"]) for r in tiny["mutant_rows"]}  # killed: counted
    assert survivors == {("return x + 1", "return x - 1", "survived"), ("return x + 1", "return x + 2", "survived")}
    assert (tiny["killed"], tiny["survived"], tiny["score"]) == (2, 2, 0.5)
    assert (tiny_md := report.with_suffix(".md").read_text()).count("survived") >= 1 and "decode/tiny.py" in tiny_md
    assert (repo / "decode" / "tiny.py").read_text() == TINY_MODULE  # the checkout never holds a mutant


def test_selected_tests_keep_the_order_they_ran_in():
    from benchmarks.mutation import Mutant, _select

    mutant = Mutant("m.py", 9, 0, "return x < 3", "return x <= 3", "kept", "")
    stats = {
        "lines": {"9": ["t.py::b_last", "t.py::z_first"], "2": ["t.py::a_other"]},
        "durations": {"t.py::z_first": 0.1, "t.py::a_other": 0.1, "t.py::b_last": 0.1},
    }
    spec = ModuleSpec("m.py", ("t.py",))
    assert _select(mutant, [(8, 9, "kept")], stats, spec) == ["t.py::z_first", "t.py::b_last"]
    assert _select(mutant, [], stats, spec) == ["t.py"]  # module level: the whole file
    assert _select(mutant, [(8, 9, "kept")], {"lines": {}, "durations": {}}, spec) == ["t.py"]
