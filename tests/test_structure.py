"""The house rules, checked: every module imports on its own, no import cycles, the layers
(decode ← dali_pipelines ← training ← benchmarks) only import downward, test-data generators
stay out of the runtime path, no dead functions, no function over 80 lines in ``training/``,
and no docstring or comment points at an issue number instead of stating the requirement."""

from __future__ import annotations

import ast
import functools
import glob
import json
import os
import re
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("decode", "dali_pipelines", "training", "benchmarks")
LAYER = {name: i for i, name in enumerate(PACKAGES)}
#: Modules that may import the test-data generators (decode.testing): the synth command, the demo
#: (it runs on a synthetic dataset) and the benchmarks (they synthesize their inputs).
TESTING_USERS = ("decode.testing", "decode.cli_synth", "training.demo", "benchmarks")


def _module_files() -> dict[str, str]:
    out = {}
    for pkg in PACKAGES:
        for root, _dirs, files in os.walk(os.path.join(REPO, pkg)):
            for f in files:
                if f.endswith(".py"):
                    path = os.path.join(root, f)
                    rel = os.path.relpath(path, REPO)[:-3].replace(os.sep, ".")
                    out[rel.removesuffix(".__init__")] = path
    return dict(sorted(out.items()))


MODULES = _module_files()


def _is_package(name: str) -> bool:
    return MODULES.get(name, "").endswith("__init__.py")


def _resolve(name: str) -> str | None:
    """The project module an import target names (``pkg.mod.attr`` → ``pkg.mod``), or None."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


@functools.cache
def import_edges() -> tuple[tuple[str, str, bool], ...]:
    """``(importer, imported, lazy)`` for every project-internal import; ``lazy``: inside a function.
    Imports under ``if TYPE_CHECKING:`` do not run and are left out."""
    edges = []
    for mod, path in MODULES.items():
        tree = ast.parse(open(path, encoding="utf-8").read(), path)
        parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
        for node in ast.walk(tree):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            lazy, typing_only, n = False, False, node
            while n in parents:
                n = parents[n]
                if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef):
                    lazy = True
                if isinstance(n, ast.If) and "TYPE_CHECKING" in ast.unparse(n.test):
                    typing_only = True
            if typing_only:
                continue
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = mod.split(".") if _is_package(mod) else mod.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                names = [f"{target}.{a.name}" for a in node.names]
                targets = [t for t in names if t in MODULES] or [target]
                if len([t for t in names if t in MODULES]) < len(names):
                    targets.append(target)
            else:
                targets = [a.name for a in node.names]
            for t in targets:
                dep = _resolve(t) if t.split(".")[0] in PACKAGES else None
                if dep and dep != mod and not mod.startswith(dep + "."):
                    edges.append((mod, dep, lazy))
    return tuple(edges)


def strongly_connected(edges) -> list[list[str]]:
    """Tarjan's algorithm: the groups of modules that import each other (size > 1)."""
    graph: dict[str, set[str]] = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in list(graph):
        if v not in index:
            visit(v)
    return out


def test_cycle_finder_finds_a_cycle_and_a_self_contained_graph_has_none():
    assert strongly_connected([("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")]) == [["a", "b", "c"]]
    assert strongly_connected([("a", "b"), ("b", "c"), ("a", "c")]) == []


def test_the_import_graph_is_seen():
    edges = {(a, b) for a, b, _ in import_edges()}
    # a relative import, a lazy import and a package-relative one are all found
    assert ("decode.sample", "decode.scale") in edges
    assert ("dali_pipelines.loader", "dali_pipelines.engines") in edges
    assert ("training.prepare.run", "training.prepare.tasks") in edges
    assert ("training.prepare.run", "training.manifest") in edges


def test_no_import_cycles_not_even_through_imports_inside_functions():
    cycles = strongly_connected([(a, b) for a, b, _lazy in import_edges()])
    assert cycles == [], f"modules that import each other: {cycles}"


def test_layers_import_only_downward():
    upward = sorted(f"{a} -> {b}" for a, b, _ in import_edges() if LAYER[b.split(".")[0]] > LAYER[a.split(".")[0]])
    assert upward == [], "decode ← dali_pipelines ← training ← benchmarks: " + ", ".join(upward)


def test_runtime_code_does_not_import_the_test_data_generators():
    users = sorted(
        {a for a, b, _ in import_edges() if b.startswith("decode.testing") and not a.startswith(TESTING_USERS)}
    )
    assert users == [], f"runtime modules importing decode.testing: {users}"


SCRIPT = r"""
import dataclasses, importlib, inspect, json, sys, typing
names = json.loads(sys.argv[1])
tops = ("decode", "dali_pipelines", "training", "benchmarks")
project = tuple(n + "." for n in tops)
failed, hints = {}, {}
for name in names:
    for m in [m for m in sys.modules if m.startswith(project) or m in tops]:
        del sys.modules[m]
    try:
        mod = importlib.import_module(name)
    except Exception as exc:
        failed[name] = f"{type(exc).__name__}: {exc}"
        continue
    for attr, obj in vars(mod).items():
        if inspect.isclass(obj) and dataclasses.is_dataclass(obj) and obj.__module__ == name:
            try:
                typing.get_type_hints(obj)
            except Exception as exc:
                hints[f"{name}.{attr}"] = f"{type(exc).__name__}: {exc}"
print(json.dumps({"failed": failed, "hints": hints}))
"""


def test_every_module_imports_on_its_own_and_its_dataclasses_resolve_their_hints():
    # One interpreter; before each module the project's modules are dropped from sys.modules, so a
    # module that only imports when another project module came first (a cycle at import time, a
    # name missing from its own imports) fails here. Third-party modules stay cached (speed).
    names = list(MODULES)
    env = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps(names)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=240,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["failed"] == {}, res["failed"]
    assert res["hints"] == {}, res["hints"]


def _notebook_code(out_dir) -> str:
    """The notebooks' code cells as one Python file (they call the library too)."""
    cells = []
    for nb in sorted(glob.glob(os.path.join(REPO, "notebooks", "*.ipynb"))):
        with open(nb, encoding="utf-8") as f:
            doc = json.load(f)
        for cell in doc["cells"]:
            if cell["cell_type"] == "code":
                src = "".join(cell["source"])
                cells.append("\n".join(ln for ln in src.splitlines() if not ln.lstrip().startswith(("%", "!"))))
    path = os.path.join(out_dir, "notebooks_code.py")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n\n".join(cells) + "\n")
    return path


def test_no_dead_functions_classes_or_imports(tmp_path):
    vulture = pytest.importorskip("vulture", reason="vulture (the test extra) is not installed")
    del vulture
    notebooks = _notebook_code(tmp_path)
    out = subprocess.run(
        # pytest_* are hooks pytest calls by name
        [sys.executable, "-m", "vulture", *PACKAGES, "tests", notebooks, "--min-confidence", "60"]
        + ["--ignore-names", "pytest_*"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    kinds = ("unused function", "unused method", "unused class", "unused import")
    dead = [
        line
        for line in out.stdout.splitlines()
        if any(k in line for k in kinds) and not line.startswith(("tests", str(notebooks)))
    ]
    assert dead == [], "\n".join(dead)


def _function_lengths(path: str):
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            has_doc = isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant)
            start = body[0].end_lineno + 1 if has_doc and len(body) > 1 else node.lineno
            yield node.name, node.lineno, node.end_lineno - start + 1


def test_no_function_in_training_is_longer_than_80_lines():
    long = [
        f"{os.path.relpath(path, REPO)}:{line} {name} ({n} lines)"
        for mod, path in MODULES.items()
        if mod.startswith("training")
        for name, line, n in _function_lengths(path)
        if n > 80
    ]
    assert long == [], "split these into parts: " + ", ".join(long)


ISSUE_REF = re.compile(r"\b(issue|ticket)\s*#?\s*\d+|#\d{2,}\b", re.IGNORECASE)


def test_no_docstring_or_comment_refers_to_an_issue_number():
    hits = []
    for path in MODULES.values():
        text = open(path, encoding="utf-8").read()
        for i, line in enumerate(text.splitlines(), 1):
            if ISSUE_REF.search(line):
                hits.append(f"{os.path.relpath(path, REPO)}:{i}: {line.strip()}")
    assert hits == [], "state the requirement itself:\n" + "\n".join(hits)
