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
