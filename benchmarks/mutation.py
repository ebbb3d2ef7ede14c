"""Mutation testing of the core modules: does the suite catch a one-token bug?

    python -m benchmarks.mutation --json 'benchmarks/results/mutation-{date}.json' [--modules voi,crop]

mutmut's mutation operators (``mutmut.list_mutations`` / ``mutmut.mutate``: ``<`` → ``<=``,
``+`` → ``-``, ``n`` → ``n+1``, ``True`` → ``False``, ``x = ...`` → ``x = None``,
``"s"`` → ``"XXsXX"``, ``and`` → ``or``, ...) put one small bug at a time into a module;
each mutant is run against that module's own fast test files (:data:`MODULES`) and is
*killed* when a test fails (or the run times out) and *survives* when all pass. mutmut's
own runner is not used: it restarts pytest for every mutant over one test command and
cannot scope a module to some of its classes; this driver keeps mutmut's operators and
adds what the 2-core machine needs:

- **a scratch copy**: the tracked and untracked (not ignored) files are copied to a
  temporary folder and only that copy is ever mutated, so the checkout is never left
  holding a mutant (an interrupted run leaves nothing behind);
- **test selection by coverage**: one instrumented run per module records which test
  executes which line (coverage.py dynamic contexts, one per test); a mutant inside a
  function runs only the tests that execute that function, a mutant at module level (or
  in code only worker processes run) runs all of the module's test files;
- **a fork server**: pytest, numpy, pandas, pydicom, scikit-learn and torch are imported
  once; each mutant runs ``pytest.main`` in a forked child (own process group, killed
  with its workers on timeout), which imports the project's modules fresh from the
  mutated copy (no bytecode is written, so a stale ``.pyc`` never stands in for a mutant).

Mutants that can only change a log record's text (inside a ``log.debug/info/warning/
error`` call) are counted apart (``log_only``) and not run: log wording is not behaviour
the suite pins. A surviving mutant judged equivalent (no input can tell it from the
original) is listed in :data:`EQUIVALENT` with the reason; the markdown written beside the
JSON repeats the list. Per module the report gives killed / survived / equivalent and
``score = killed / (mutants − equivalent)``; the goal is ≥ 0.9 in every module.

Run it alone on a quiet machine (``make mutate``, under ``nice``): it takes about an hour
on 2 cores.
"""

from __future__ import annotations

import argparse
import ast
import datetime
import gc
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

GOAL = 0.9


@dataclass(frozen=True)
class ModuleSpec:
    """One module under mutation: its file, the fast test files that cover it, and its scope.

    ``scope``: top-level function / class names whose lines are mutated (None: the whole file).
    """

    path: str
    tests: tuple[str, ...]
    scope: tuple[str, ...] | None = None


MODULES: dict[str, ModuleSpec] = {
    "voi": ModuleSpec("decode/voi.py", ("tests/test_voi.py", "tests/test_header_values.py")),
    "crop": ModuleSpec("decode/crop.py", ("tests/test_crop.py", "tests/test_geometry.py")),
    "resize": ModuleSpec("decode/resize.py", ("tests/test_crop.py", "tests/test_geometry.py")),
    "chain": ModuleSpec("decode/chain.py", ("tests/test_chain.py", "tests/test_geometry.py")),
    "dicom": ModuleSpec("decode/dicom.py", ("tests/test_dicom.py", "tests/test_header_values.py")),
    "codestream": ModuleSpec("decode/codestream.py", ("tests/test_codestream.py",)),
    "parallel": ModuleSpec("decode/parallel.py", ("tests/test_parallel.py",)),
    "metrics": ModuleSpec("training/metrics.py", ("tests/test_metrics.py",)),
    "sampler": ModuleSpec("training/sampler.py", ("tests/test_sampler.py",)),
    "manifest": ModuleSpec("training/manifest.py", ("tests/test_manifest.py",)),
    "engines": ModuleSpec("dali_pipelines/engines.py", ("tests/test_loader.py",), scope=("CpuEngine", "_host_batch")),
    "loader": ModuleSpec("dali_pipelines/loader.py", ("tests/test_loader.py",)),
}

#: Surviving mutants judged equivalent: ``(file, original line, mutated line)`` (both
#: stripped) → why no input tells them apart. Matched by text, so line moves keep them.
EQUIVALENT: dict[tuple[str, str, str], str] = {
    # --- decode/voi.py
    **{
        ("decode/voi.py", 'VoiKind = Literal["linear", "sigmoid", "step", "lut", "minmax"]', mutated): (
            "a type alias: only type checkers read it"
        )
        for mutated in (
            'VoiKind = Literal["XXlinearXX", "sigmoid", "step", "lut", "minmax"]',
            'VoiKind = Literal["linear", "XXsigmoidXX", "step", "lut", "minmax"]',
            'VoiKind = Literal["linear", "sigmoid", "XXstepXX", "lut", "minmax"]',
            'VoiKind = Literal["linear", "sigmoid", "step", "XXlutXX", "minmax"]',
            'VoiKind = Literal["linear", "sigmoid", "step", "lut", "XXminmaxXX"]',
            "VoiKind = None",
        )
    },
    (
        "decode/voi.py",
        "y = (x - lo) / xp.where(span > 0, span, 1).astype(np.float32)",
        "y = (x - lo) / xp.where(span > 0, span, 2).astype(np.float32)",
    ): "the divisor for a zero span: every x - lo is 0 there, 0/1 = 0/2",
    (
        "decode/voi.py",
        "y = y.astype(np.float32, copy=False)",
        "y = y.astype(np.float32, copy=True)",
    ): "the same values; copy=False only saves a copy when y is float32 already",
    # --- decode/crop.py, decode/resize.py, decode/chain.py
    (
        "decode/crop.py",
        "between[~np.isfinite(between)] = -1  # no split: an empty class",
        "between[~np.isfinite(between)] = -2  # no split: an empty class",
    ): "finite entries are >= 0 (a square over positive counts): any negative marker loses to them, and "
    "when every entry is marked argmax returns 0 either way",
    **{
        ("decode/resize.py", "@lru_cache(maxsize=64)", mutated): (
            "the weights cache only saves recomputing the same read-only weights: its size or absence "
            "changes speed, not a value"
        )
        for mutated in (
            "@lru_cache(maxsize=65)",
            "scale = n_in / n_out",
            '"""The band of :func:`resample_weights`: ``(index, weight)``, each ``(n_out, K)``."""',
        )
    },
    (
        "decode/resize.py",
        "x = img.astype(np.float32, copy=False)",
        "x = img.astype(np.float32, copy=True)",
    ): "x is only read and never returned (the same-shape path copies it): an extra copy, same values",
    # --- decode/dicom.py, decode/codestream.py
    # --- training/metrics.py, training/sampler.py, training/manifest.py
    **{
        ("training/metrics.py", 'Agg = Literal["mean", "max"]', mutated): "a type alias: only type checkers read it"
        for mutated in ('Agg = Literal["XXmeanXX", "max"]', 'Agg = Literal["mean", "XXmaxXX"]', "Agg = None")
    },
    **{
        (path, line, line.replace(".reshape(-1)", ".reshape(-2)")): (
            "numpy reads any negative size as the one unknown dimension: reshape(-2) is reshape(-1)"
        )
        for path, line in (
            ("training/metrics.py", "return np.asarray(labels, dtype=np.float64).reshape(-1) > 0.5"),
            ("training/metrics.py", "s = np.asarray(scores, dtype=np.float64).reshape(-1)"),
            ("training/metrics.py", "p = np.clip(np.asarray(scores, dtype=np.float64).reshape(-1), 0.0, 1.0)"),
            (
                "training/metrics.py",
                "p = (np.asarray(scores, dtype=np.float64).reshape(-1) >= threshold).astype(np.float64)",
            ),
            (
                "training/metrics.py",
                'df = pd.DataFrame({"pid": list(prediction_ids), "s": np.asarray(scores, dtype=np.float64)'
                ".reshape(-1)})",
            ),
            ("training/metrics.py", 'df["y"] = np.asarray(labels, dtype=np.float64).reshape(-1)'),
            ("training/sampler.py", "y = np.asarray(labels, dtype=np.float64).reshape(-1) > 0.5"),
        )
    },
    # --- decode/parallel.py, dali_pipelines/engines.py, dali_pipelines/loader.py
    **{
        ("decode/parallel.py", 'READY = ("ready",)', mutated): (
            "one constant is both what a worker sends and what the pool compares with; any value other than"
            " a 3-tuple result (None included) tells the two apart the same way"
        )
        for mutated in ('READY = ("XXreadyXX",)', "READY = None")
    },
    **{
        ("decode/parallel.py", original, original.replace(" | None", " & None")): (
            "an annotation of an attribute inside a function: never evaluated"
        )
        for original in ("self.key: Hashable | None = None", "self.started: float | None = None")
    },
    ("decode/parallel.py", "self.item = None", 'self.item = ""'): (
        "overwritten before use: item is read only while key is set, and _feed sets both together"
    ),
    ("decode/parallel.py", "self.started: float | None = None", 'self.started: float | None = ""'): (
        "overwritten before use: started is read only once ready, and reading READY sets it"
    ),
    (
        "decode/parallel.py",
        "self.ready = False  # set when its READY message is read: only then does an item's clock run",
        "self.ready = None  # set when its READY message is read: only then does an item's clock run",
    ): "ready is only ever tested for truth; None and False are both false",
    ("decode/parallel.py", "failure = None", 'failure = ""'): (
        "failure is only tested for truth; None and an empty string are both false"
    ),
    (
        "decode/parallel.py",
        'cuda_on = bool(torch is not None and getattr(torch.cuda, "is_initialized", lambda: False)())',
        'cuda_on = bool(torch is not None and getattr(torch.cuda, "is_initialized", lambda: None)())',
    ): "the fallback's result only passes through bool(): None and False are both false",
    ("decode/parallel.py", "if left is not None and left <= 0:", "if left is not None and left < 0:"): (
        "left is exactly 0.0 only when the clock reads the deadline to the nanosecond, an instant no input"
        " selects; the mutant then makes one more poll, whose wait is zero seconds"
    ),
    ("decode/parallel.py", "if due is not None and now >= due:", "if due is not None and now > due:"): (
        "now equals due only when the clock reads the due time to the nanosecond, an instant no input selects;"
        " the mutant then fails the item on the next poll, whose wait is zero seconds"
    ),
    (
        "dali_pipelines/engines.py",
        "images = images.pin_memory().to(loader.device, non_blocking=True)",
        "images = images.pin_memory().to(loader.device, non_blocking=False)",
    ): (
        "the same values on the same device: the copy is queued on the current stream before any use of the"
        " batch, and non_blocking only lets the host go on before it ends (torch keeps the pinned source alive)"
    ),
}

#: Top-level packages of the project: never imported by the server before a fork.
_PROJECT_PACKAGES = ("decode", "dali_pipelines", "training")
_LOG_METHODS = {"debug", "info", "warning", "error", "exception", "critical"}
#: Imported once in the server so each forked run starts warm (never a project module).
_WARM_IMPORTS = (
    "numpy",
    "pandas",
    "pydicom",
    "sklearn.metrics",
    "sklearn.model_selection",
    "torch",
    "pytest",
    "hypothesis",
    "hypothesis.strategies",
    "_hypothesis_pytestplugin",
    "pytest_timeout",
    "anyio.pytest_plugin",
    "platformdirs.pytest_plugin",
)


# --- enumerating mutants -------------------------------------------------------------------------


@dataclass(frozen=True)
class Mutant:
    path: str
    line_number: int  # 1-based
    index: int  # mutmut's index among the mutants of that line
    original: str
    mutated: str
    function: str  # innermost enclosing function's qualified name ("" at module level)
    source: str  # the whole mutated file

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.path, self.original.strip(), self.mutated.strip())


def _spans(tree: ast.AST) -> tuple[list[tuple[int, int, str]], list[tuple[int, int]]]:
    """``([(first, last, qualname) of every function], [(first, last) of every log call])``."""
    funcs, logs = [], []

    def walk(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    funcs.append((child.lineno, child.end_lineno, name))
                walk(child, name + ".")
                continue
            if (
                isinstance(child, ast.Expr)
                and isinstance(child.value, ast.Call)
                and isinstance(child.value.func, ast.Attribute)
                and isinstance(child.value.func.value, ast.Name)
                and child.value.func.value.id in ("log", "logger")
                and child.value.func.attr in _LOG_METHODS
            ):
                logs.append((child.lineno, child.end_lineno))
            walk(child, prefix)

    walk(tree, "")
    return funcs, logs


def _top_level_span(tree: ast.Module, name: str) -> tuple[int, int]:
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == name:
            first = min([node.lineno] + [d.lineno for d in node.decorator_list])
            return first, node.end_lineno
    raise ValueError(f"no top-level function or class {name!r}")


def enumerate_mutants(root: str, spec: ModuleSpec) -> tuple[list[Mutant], int]:
    """``(mutants in scope, number of log-only mutants left out)`` of ``spec.path`` under ``root``."""
    from mutmut import Context, list_mutations, mutate

    with open(os.path.join(root, spec.path), encoding="utf-8") as f:
        source = f.read()
    tree = ast.parse(source)
    funcs, logs = _spans(tree)
    scope = None if spec.scope is None else [_top_level_span(tree, n) for n in spec.scope]
    lines = source.split("\n")
    out, log_only = [], 0
    for mid in list_mutations(Context(source=source, filename=spec.path, dict_synonyms=[])):
        n = mid.line_number + 1
        if scope is not None and not any(a <= n <= b for a, b in scope):
            continue
        if any(a <= n <= b for a, b in logs):
            log_only += 1
            continue
        mutated, count = mutate(Context(source=source, filename=spec.path, mutation_id=mid, dict_synonyms=[]))
        if count != 1:
            raise RuntimeError(f"{spec.path}:{n}: mutmut applied {count} mutations for one id")
        inner = [f for f in funcs if f[0] <= n <= f[1]]
        func = min(inner, key=lambda f: f[1] - f[0])[2] if inner else ""
        new_line = mutated.split("\n")[mid.line_number]
        out.append(Mutant(spec.path, n, mid.index, lines[mid.line_number], new_line, func, mutated))
    return out, log_only


# --- the fork server -----------------------------------------------------------------------------


_STOP = []  # set by SIGTERM; checked between and during runs (raising inside the handler can be swallowed)


def _fork_run(fn, timeout: float) -> tuple[int | None, float]:
    """Run ``fn()`` (returns an exit code) in a forked child in its own process group.

    Returns ``(exit code, or None on timeout, seconds)``; on timeout the whole group is killed.
    """
    t0 = time.monotonic()
    pid = os.fork()
    if pid == 0:  # child
        code = 70
        try:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.setpgid(0, 0)
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            code = int(fn())
        except BaseException:
            code = 70
        finally:
            os._exit(code)
    deadline = t0 + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if _STOP or time.monotonic() > deadline:
            _kill_group(pid)
            os.waitpid(pid, 0)
            if _STOP:
                raise SystemExit(143)
            return None, time.monotonic() - t0
        time.sleep(0.02)
    _kill_group(pid)  # worker processes a test left behind
    code = os.waitstatus_to_exitcode(status)
    return code, time.monotonic() - t0


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


#: ``--assert=plain``: no assertion rewriting (it cannot be cached without bytecode and
#: costs seconds per run; pass/fail is all a mutant run needs).
_PYTEST_ARGS = ("-x", "-q", "-p", "no:cacheprovider", "--assert=plain", "-p", "no:unraisableexception", "-W", "ignore")


def _stats_run(root: str, spec: ModuleSpec, out_json: str) -> int:
    """Child: run the module's tests under coverage, one context per test; write ``{line: [tests]}``."""
    import coverage
    import pytest

    target = os.path.join(root, spec.path)
    cov = coverage.Coverage(data_file=None, include=[target], branch=False)
    durations: dict[str, float] = {}

    class Contexts:
        @pytest.hookimpl(hookwrapper=True)
        def pytest_runtest_protocol(self, item, nextitem):
            cov.switch_context(item.nodeid)
            t0 = time.monotonic()
            yield
            durations[item.nodeid] = time.monotonic() - t0
            cov.switch_context("")

    cov.start()
    try:
        code = pytest.main([*_PYTEST_ARGS[1:], *spec.tests], plugins=[Contexts()])
    finally:
        cov.stop()
    data = cov.get_data()
    by_line = {str(k): sorted(c for c in v if c) for k, v in (data.contexts_by_lineno(target) or {}).items()}
    with open(out_json, "w", encoding="utf-8") as f:
        json.dump({"lines": by_line, "durations": durations}, f)
    return int(code)


def _pytest_run(args: Sequence[str]) -> int:
    import pytest

    return int(pytest.main([*_PYTEST_ARGS, *args]))


def _select(mutant: Mutant, funcs: list[tuple[int, int, str]], stats: dict, spec: ModuleSpec) -> list[str]:
    """The tests that execute the mutant's function (all of the module's files when none or at module level).

    They keep the order the instrumented run executed them in (``stats["durations"]``): a test
    that imports a CUDA library makes later worker pools spawn instead of fork, so sorting them
    by name can slow a run past its budget and count a survivor as killed by timeout.
    """
    inner = [f for f in funcs if f[0] <= mutant.line_number <= f[1]]
    if not inner:
        return list(spec.tests)
    a, b, _ = min(inner, key=lambda f: f[1] - f[0])
    chosen = {t for n in range(a, b + 1) for t in stats["lines"].get(str(n), ())}
    order = {t: i for i, t in enumerate(stats["durations"])}
    tests = sorted(chosen, key=lambda t: (order.get(t, len(order)), t))
    return tests or list(spec.tests)


def run_module(root: str, name: str, spec: ModuleSpec, *, log) -> dict:
    """Every mutant of one module against its tests; returns the module's report entry."""
    present = tuple(t for t in spec.tests if os.path.exists(os.path.join(root, t)))
    if not present:
        raise RuntimeError(f"{name}: none of its test files exists: {' '.join(spec.tests)}")
    spec = ModuleSpec(spec.path, present, spec.scope)
    mutants, log_only = enumerate_mutants(root, spec)
    stats_file = os.path.join(root, f".mutation-stats-{name}.json")
    t0 = time.monotonic()
    code, secs = _fork_run(lambda: _stats_run(root, spec, stats_file), timeout=1800)
    if code != 0:
        raise RuntimeError(f"{name}: the unmutated tests do not pass (exit {code}): {' '.join(spec.tests)}")
    with open(stats_file, encoding="utf-8") as f:
        stats = json.load(f)
    if not stats["lines"]:
        raise RuntimeError(f"{name}: its tests never ran {spec.path} of the copy (imported from elsewhere?)")
    log(f"{name}: {len(mutants)} mutants ({log_only} log-only left out), baseline {secs:.1f} s")
    with open(os.path.join(root, spec.path), encoding="utf-8") as f:
        original = f.read()
    funcs, _ = _spans(ast.parse(original))
    target = os.path.join(root, spec.path)
    rows = []
    try:
        for k, m in enumerate(mutants):
            tests = _select(m, funcs, stats, spec)
            budget = sum(stats["durations"].get(t, 0.0) for t in tests) if "::" in tests[0] else secs
            with open(target, "w", encoding="utf-8") as f:
                f.write(m.source)
            code, took = _fork_run(lambda tests=tests: _pytest_run(tests), timeout=30 + 4 * budget)
            status = "timeout" if code is None else "survived" if code == 0 else "killed"
            if code == 5:
                raise RuntimeError(f"{name}: no test collected for {tests}")
            if status == "survived" and m.key in EQUIVALENT:
                status = "equivalent"
            rows.append(
                {
                    "line": m.line_number,
                    "function": m.function,
                    "original": m.original.strip(),
                    "mutated": m.mutated.strip(),
                    "status": status,
                    "tests_run": len(tests),
                    "seconds": round(took, 2),
                }
            )
            if status == "survived":
                log(f"  survived {spec.path}:{m.line_number} {m.original.strip()!r} -> {m.mutated.strip()!r}")
            if (k + 1) % 25 == 0:
                log(f"  {name}: {k + 1}/{len(mutants)}")
    finally:
        with open(target, "w", encoding="utf-8") as f:
            f.write(original)
    counts = {s: sum(r["status"] == s for r in rows) for s in ("killed", "timeout", "survived", "equivalent")}
    judged = len(rows) - counts["equivalent"]
    killed = counts["killed"] + counts["timeout"]
    return {
        "module": name,
        "path": spec.path,
        "scope": list(spec.scope) if spec.scope else None,
        "tests": list(spec.tests),
        "mutants": len(rows),
        "killed": killed,
        "killed_by_timeout": counts["timeout"],
        "survived": counts["survived"],
        "equivalent": counts["equivalent"],
        "log_only": log_only,
        "score": round(killed / judged, 4) if judged else 1.0,
        "seconds": round(time.monotonic() - t0, 1),
        "mutant_rows": [r for r in rows if r["status"] != "killed"],  # the killed ones are only counted
    }


# --- the copy, the report -------------------------------------------------------------------------


def scratch_copy(repo: str, dest: str) -> None:
    """Copy the tracked and untracked-but-not-ignored files of ``repo`` to ``dest``."""
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=repo,
        capture_output=True,
        check=True,
    ).stdout
    for rel in filter(None, out.decode().split("\0")):
        src = os.path.join(repo, rel)
        if not os.path.isfile(src):
            continue
        os.makedirs(os.path.dirname(os.path.join(dest, rel)) or dest, exist_ok=True)
        shutil.copy2(src, os.path.join(dest, rel))


def markdown(doc: dict) -> str:
    """The list beside the JSON: per module the figures, then every surviving or equivalent mutant."""
    lines = [
        f"# Mutation report {doc['machine']['date'][:10]}",
        "",
        f"`python -m benchmarks.mutation` (`make mutate`): mutmut's operators, each module's mutants run "
        f"against its own test files; score = killed / (mutants − equivalent), goal ≥ {GOAL:.0%}.",
        "",
        "| module | mutants | killed | survived | equivalent | log-only (not run) | score |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for m in doc["results"]:
        lines.append(
            f"| {m['module']} (`{m['path']}`{', ' + ', '.join(m['scope']) if m['scope'] else ''}) | {m['mutants']} "
            f"| {m['killed']} | {m['survived']} | {m['equivalent']} | {m['log_only']} | {m['score']:.1%} |"
        )
    for status, title in (
        ("equivalent", "Equivalent mutants (why no input tells them apart)"),
        ("survived", "Survivors"),
    ):
        rows = [(m, r) for m in doc["results"] for r in m["mutant_rows"] if r["status"] == status]
        if not rows:
            continue
        lines += ["", f"## {title}", ""]
        for m, r in rows:
            why = EQUIVALENT.get((m["path"], r["original"], r["mutated"]), "")
            lines.append(
                f"- `{m['path']}:{r['line']}` ({r['function'] or 'module'}): `{r['original']}` → `{r['mutated']}`"
            )
            if why:
                lines.append(f"  — {why}")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--modules", default=",".join(MODULES), help=f"comma-separated, from: {', '.join(MODULES)}")
    ap.add_argument("--json", default="benchmarks/results/mutation-{date}.json", help="report path ({date} filled)")
    ap.add_argument("--list", action="store_true", help="only count the mutants per module")
    ap.add_argument(
        "--update", action="store_true", help="keep the other modules' entries of an existing report (rerun some)"
    )
    args = ap.parse_args(argv)
    names = [n.strip() for n in args.modules.split(",") if n.strip()]
    unknown = [n for n in names if n not in MODULES]
    if unknown:
        ap.error(f"unknown module(s) {', '.join(unknown)}; allowed: {', '.join(MODULES)}")
    if args.list:
        for n in names:
            mutants, log_only = enumerate_mutants(_REPO, MODULES[n])
            print(f"{n}: {len(mutants)} mutants, {log_only} log-only")
        return 0

    def log(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)

    signal.signal(signal.SIGTERM, lambda *_: _STOP.append(1))  # a kill still restores and removes the copy
    scratch = tempfile.mkdtemp(prefix="rsna-mutate-")
    started = datetime.datetime.now().astimezone()
    try:
        scratch_copy(_REPO, scratch)
        # the forked runs import the project from the copy only, and never write bytecode
        os.environ["PYTHONPATH"] = scratch
        os.environ["PYTHONDONTWRITEBYTECODE"] = "1"
        sys.dont_write_bytecode = True
        sys.path[:] = [scratch] + [p for p in sys.path if os.path.abspath(p or ".") != _REPO]
        os.chdir(scratch)
        # importing this package already imported project modules from the checkout (benchmarks
        # → schema → decode): forget them, so the forked runs import the mutated copy
        for mod in [m for m in sys.modules if m.split(".")[0] in _PROJECT_PACKAGES]:
            del sys.modules[mod]
        for mod in _WARM_IMPORTS:
            try:
                __import__(mod)
            except ImportError:
                pass
        gc.freeze()  # the forked runs' collections skip everything imported so far
        results = []
        for n in names:
            results.append(run_module(scratch, n, MODULES[n], log=log))
            results[-1]["finished"] = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
            m = results[-1]
            figures = f"killed {m['killed']}, survived {m['survived']}, equivalent {m['equivalent']}"
            log(f"{n}: {figures}, score {m['score']:.1%}")
    finally:
        os.chdir(_REPO)
        shutil.rmtree(scratch, ignore_errors=True)
    sys.path[:] = [_REPO] + [p for p in sys.path if p != scratch]
    from benchmarks.machine import machine_record
    from benchmarks.schema import SCHEMA_VERSION
    from decode.atomic import atomic_write

    machine = machine_record()
    doc = {
        "machine": machine,
        "config": {
            "schema_version": SCHEMA_VERSION,
            "command": "python -m benchmarks.mutation " + " ".join(argv if argv is not None else sys.argv[1:]),
            "tool": "mutmut " + _dist_version("mutmut") + " operators; coverage-selected tests, forked pytest",
            "goal": GOAL,
            "started": started.isoformat(timespec="seconds"),
        },
        "results": results,
        "summary": {
            m["module"]: {k: m[k] for k in ("mutants", "killed", "survived", "equivalent", "log_only", "score")}
            for m in results
        },
    }
    date = machine["date"][:10]
    path = os.path.join(_REPO, args.json.replace("{date}", date)) if not os.path.isabs(args.json) else args.json
    if args.update and os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            kept = [m for m in json.load(f)["results"] if m["module"] not in names]
        results = sorted(kept + results, key=lambda m: list(MODULES).index(m["module"]))
        doc["results"] = results
        doc["summary"] = {
            m["module"]: {k: m[k] for k in ("mutants", "killed", "survived", "equivalent", "log_only", "score")}
            for m in results
        }
    atomic_write(path, json.dumps(doc, indent=1) + "\n")
    md = os.path.splitext(path)[0] + ".md"
    with open(md, "w", encoding="utf-8") as f:
        f.write(markdown(doc))
    log(f"wrote {path} and {md}")
    return 0 if all(m["score"] >= GOAL for m in results) else 2


def _dist_version(name: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "?"


if __name__ == "__main__":
    sys.exit(main())
