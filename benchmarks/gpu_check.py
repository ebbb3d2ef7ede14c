"""The GPU check: exactness checks, GPU figures, the ``gpu`` tests and CPU baselines in one short run.

Run through ``benchmarks/gpu_check.sh [--tier quick|full] OUTDIR`` on a GPU machine where the
packages import from ``PYTHONPATH`` (no install, no network). It writes
``OUTDIR/gpu-<card>-<date>[-quick].json`` in the benchmark result format
(:mod:`benchmarks.schema`); ``summary.tier`` says which tier ran and ``summary.checks``:

* ``j2k_exact`` / ``jll_exact``: GPU decode of full-size 3328×2560 12- and 14-bit .90 / .70
  files through the engine's runner equals pydicom's ``pixel_array`` and every file was
  decoded by the GPU decoder (not routed to the CPU by the start-up probe);
* ``voi_match``: the CuPy chain (fused VOI kernel, crop, resize) equals the numpy chain
  within 1e-5, same crop boxes;
* ``zero_copy``: a decoder image, its CuPy view and the torch tensor share one device pointer;
* ``fallback``: a sample the decoder fails on inside a GPU batch is decoded on the CPU, its
  neighbours on the GPU, a truncated file is reported, nothing is lost.

Tier ``quick`` checks the nvImageCodec engine and never imports DALI; ``full`` checks both
engines (each check true only when it holds for both). Phases run in this order, each
guarded by the budget, and the JSON is rewritten after every one: data → checks → GPU
figures → the ``gpu`` tests → CPU baselines (figures: :mod:`benchmarks.gpu_check_bench`).
"""

from __future__ import annotations

import argparse
import datetime
import glob
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

from .gpu_check_steps import FULL, Budget, make_files, record_error, references, run_checks

log = logging.getLogger("gpu_check")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHAIN_SIZE = (2048, 1024)
TIERS = ("quick", "full")
CHECKS = ("j2k_exact", "jll_exact", "voi_match", "zero_copy", "fallback")
#: Seconds each phase needs at least to be started (budget guards).
NEED = {"checks": 20, "gpu_figures": 30, "pytest": 45, "cpu_baselines": 25}
#: What each tier must import before it starts (``main`` returns 3 naming each one that does not).
REQUIRED = {
    "quick": ("numpy", "torch", "cupy", "nvidia.nvimgcodec", "pydicom", "imagecodecs"),
    "full": ("numpy", "torch", "cupy", "nvidia.nvimgcodec", "pydicom", "imagecodecs", "nvidia.dali"),
}


#: The test files with ``cuda`` cases (device-parametrised, marked ``gpu``).
GPU_TEST_FILES = (
    "test_dali_runner.py",
    "test_fused_chain.py",
    "test_nvimgcodec_decoder.py",
    "test_loader_engines.py",
    "test_nvimgcodec_engine.py",
    "test_augment.py",
)


def run_pytest(out_dir: str, timeout: float, tier: str) -> dict[str, object]:
    """``pytest -m gpu`` in a subprocess (DALI's tests skip themselves in the quick tier)."""
    xml = os.path.join(out_dir, "pytest-gpu.xml")
    tests = [os.path.join(ROOT, "tests", n) for n in GPU_TEST_FILES]
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider", f"--junitxml={xml}", *tests]
    env = dict(os.environ, RSNA_GPU_CHECK_TIER=tier)
    t0 = time.monotonic()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)
        text, rc = proc.stdout + proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as exc:
        text, rc = f"{exc.stdout or ''}{exc.stderr or ''}\npytest timed out after {timeout:.0f} s", -1
    with open(os.path.join(out_dir, "pytest-gpu.log"), "w", encoding="utf-8") as f:
        f.write(text if isinstance(text, str) else text.decode("utf-8", "replace"))
    counts = {k: int(v) for v, k in re.findall(r"(\d+) (passed|failed|skipped|error|errors)", str(text))}
    return {"rc": rc, "seconds": round(time.monotonic() - t0, 1), **counts, "ok": rc == 0}


def missing_modules(tier: str) -> list[str]:
    """``REQUIRED[tier]`` modules that do not import, each as ``name (ErrorType: message)``.

    Checked here, in the process that goes on to use them, rather than in a separate
    interpreter first: torch and CuPy are imported once per run, not twice.
    """
    import importlib

    missing = []
    for name in REQUIRED[tier]:
        try:
            importlib.import_module(name)
        except Exception as exc:
            missing.append(f"{name} ({type(exc).__name__}: {exc})")
    return missing


def card_name(gpu: str | None) -> str:
    words = [w for w in re.split(r"[^a-z0-9]+", (gpu or "").lower()) if w and w not in ("nvidia", "tesla")]
    return words[0] if words else "nogpu"


def verdict(out_dir: str, tier: str) -> int:
    """Exit status from the newest saved document of ``tier`` in ``out_dir``: 0 when every check is true."""
    suffix = "-quick.json" if tier == "quick" else ".json"
    docs = [p for p in glob.glob(os.path.join(out_dir, "gpu-*.json")) if p.endswith(suffix)]
    if tier == "full":
        docs = [p for p in docs if not p.endswith("-quick.json")]
    if not docs:
        print(f"gpu_check: no {tier} result in {out_dir}", file=sys.stderr)
        return 1
    with open(max(docs, key=os.path.getmtime), encoding="utf-8") as f:
        checks = json.load(f).get("summary", {}).get("checks", {})
    ok = set(checks) == set(CHECKS) and all(checks.values())
    print(json.dumps({"checks": checks, "all_true": ok}))
    return 0 if ok else 1


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tier", choices=TIERS, default="full", help="quick: nvImageCodec only, no DALI; full: both")
    p.add_argument("--out", help="folder for the result JSON")
    p.add_argument("--verdict", metavar="OUTDIR", help="only judge the newest saved result of --tier in OUTDIR")
    p.add_argument("--files", type=int, default=6, help="files per codec and bit depth (default 6)")
    p.add_argument("--repeat-files", type=int, default=4, help="each file decoded this often per timed pass")
    p.add_argument("--batch", type=int, default=16, help="loader batch size (default 16)")
    p.add_argument("--workers", type=int, default=0, help="reader processes (default: half the cores, at least 2)")
    p.add_argument("--repeats", type=int, default=2, help="timed repeats after a warm-up (default 2)")
    p.add_argument("--budget", type=float, default=None, help="seconds for everything (quick 200, full 270)")
    p.add_argument("--pytest-timeout", type=float, default=90.0)
    p.add_argument("--data", help="keep the synthetic files here (default: a temporary folder, removed)")
    p.add_argument("--no-pytest", action="store_true")
    p.add_argument("--model", default="convnext_small", help="timm model for the inference figures")
    p.add_argument(
        "--e2e-compile",
        default="default",
        choices=["default", "reduce-overhead", "max-autotune", "none"],
        help="torch.compile mode of the compiled end-to-end figure (none: eager only)",
    )
    p.add_argument(
        "--device",
        default="cuda",
        choices=["cuda", "cpu"],
        help="cpu: the same flow on the engines' CPU decoders and numpy, to test this script without a GPU",
    )
    p.add_argument("--size", default=f"{FULL[0]}x{FULL[1]}", metavar="HxW", help="image size (default 3328x2560)")
    p.add_argument(
        "--chain-size",
        default=f"{CHAIN_SIZE[0]}x{CHAIN_SIZE[1]}",
        metavar="HxW",
        help="output size of the chain and the model input (default 2048x1024)",
    )
    args = p.parse_args(argv)
    if args.verdict is None and args.out is None:
        p.error("--out is required")
    if args.budget is None:
        args.budget = 200.0 if args.tier == "quick" else 270.0
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.verdict:
        return verdict(args.verdict, args.tier)
    missing = missing_modules(args.tier)
    if missing:
        print("gpu_check: cannot import: " + "; ".join(missing), file=sys.stderr)
        return 3
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    budget = Budget(args.budget)
    os.makedirs(args.out, exist_ok=True)
    device = args.device

    import torch

    from benchmarks.machine import machine_record
    from benchmarks.schema import dump, make_document
    from decode.chain import parse_size
    from decode.parallel import default_workers

    from .gpu_check_bench import run_cpu_baselines, run_gpu_figures

    if device == "cuda" and not torch.cuda.is_available():
        print("gpu_check: torch sees no CUDA GPU", file=sys.stderr)
        return 2
    if args.tier == "quick" and "nvidia.dali" in sys.modules:  # pragma: no cover - a guard, not a path
        log.warning("DALI was imported before the quick tier started")
    size, chain_size = parse_size(args.size), parse_size(args.chain_size)
    machine = machine_record(with_torch=True, no_import=("nvidia-dali",) if args.tier == "quick" else ())
    date = datetime.date.today().isoformat()
    card = card_name(machine.get("gpu")) if device == "cuda" else "cpu"
    out_json = os.path.join(args.out, f"gpu-{card}-{date}{'-quick' if args.tier == 'quick' else ''}.json")
    cores = default_workers()
    workers = args.workers or max(2, cores // 2)
    rows, row_bits = [], []  # Bits Stored of each results row (the schema has no column for it)
    checks = dict.fromkeys(CHECKS, False)
    summary: dict = {"tier": args.tier, "engines": ["nvimgcodec"] if args.tier == "quick" else ["nvimgcodec", "dali"]}
    config = {
        "command": f"benchmarks/gpu_check.sh --tier {args.tier}",
        "options": {k: v for k, v in vars(args).items() if k != "verdict"},
        "device": device,
        "tier": args.tier,
        "rows": "height/width: the decoded (input) size; loader rows end at chain_size [B, 1, H, W] torch tensors; "
        "the backend of decode/loader rows is the engine",
        "size": list(size),
        "chain_size": list(chain_size),
        "bits": [12, 14],
        "timing": "CUDA events around whole passes (GPU rows); perf_counter (CPU rows)",
        "peak_gpu_mb": "device memory in use (cudaMemGetInfo) above the level before the row's phase",
    }

    def save(phase: str | None = None):
        if phase:
            summary.setdefault("phases_done", []).append(phase)
        summary["checks"] = dict(checks)
        summary["row_bits"] = list(row_bits)
        summary["skipped"] = list(budget.skipped)
        summary["elapsed_s"] = round(budget.elapsed(), 1)
        dump(make_document(machine, config, rows, summary), out_json)

    data = args.data or tempfile.mkdtemp(prefix="rsna-gpu-check-")
    errors = summary.setdefault("errors", {})
    try:
        t = time.monotonic()
        groups = make_files(data, args.files, size)
        paths = [p for ps in groups.values() for p in ps]
        ts_of = {p: ts for (ts, _b), ps in groups.items() for p in ps}
        refs = references(paths)
        summary["data"] = {"files": len(paths), "seconds": round(time.monotonic() - t, 1)}
        save("data")
        ctx = dict(
            args=args,
            device=device,
            groups=groups,
            paths=paths,
            ts_of=ts_of,
            refs=refs,
            workers=workers,
            size=size,
            chain_size=chain_size,
            cores=cores,
            budget=budget,
            summary=summary,
        )
        exact_by: dict = {}
        if budget.allow("checks", NEED["checks"]):
            exact_by = run_checks(ctx, checks, summary, save)
            save("checks")
        if budget.allow("gpu figures", NEED["gpu_figures"]):
            try:
                run_gpu_figures(ctx, exact_by, rows, row_bits, summary, save)
            except Exception as exc:
                record_error(errors, "gpu_figures", exc)
            save("gpu_figures")
        if not args.no_pytest and budget.allow("pytest", NEED["pytest"]):
            summary["pytest"] = run_pytest(
                args.out, max(30.0, min(args.pytest_timeout, budget.left() - NEED["cpu_baselines"])), args.tier
            )
            save("pytest")
        if budget.allow("cpu baselines", NEED["cpu_baselines"]):
            try:
                run_cpu_baselines(ctx, rows, row_bits, save)
            except Exception as exc:
                record_error(errors, "cpu_baselines", exc)
            save("cpu_baselines")
    finally:
        if not args.data:
            shutil.rmtree(data, ignore_errors=True)
    print(json.dumps({"tier": args.tier, "checks": checks, "json": out_json, "skipped": budget.skipped}, indent=2))
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
