"""The GPU check: exactness checks, the ``gpu`` tests and GPU-vs-CPU figures in one run (< 5 min).

Run through ``benchmarks/gpu_check.sh OUTDIR`` on a GPU machine where torch, CuPy, DALI,
nvImageCodec and the DICOM codecs import from ``PYTHONPATH`` (no install, no network).
It writes ``OUTDIR/gpu-<card>-<date>.json`` in the benchmark result format
(:mod:`benchmarks.schema`), with the checks under ``summary.checks``:

* ``j2k_exact`` / ``jll_exact``: DALI (``mixed``) and nvImageCodec decode of full-size
  3328×2560 12- and 14-bit .90 / .70 files equals pydicom's ``pixel_array`` and the
  codec was decoded on the GPU (not routed to the CPU by the start-up probe);
* ``voi_match``: the CuPy chain (fused VOI kernel, crop, resize) equals the numpy chain
  within 1e-5;
* ``zero_copy``: DALI output, the CuPy view and the torch tensor share one device
  pointer, and so do an nvImageCodec image and its tensor;
* ``fallback``: a sample the decoder fails on inside a GPU batch is decoded on the CPU,
  its neighbours on the GPU, nothing lost, the pipeline not rebuilt;

and rows: GPU decode (DALI, nvImageCodec), the whole chain decode → VOI → crop → resize →
torch (DALI loader, nvImageCodec + CuPy), timed with CUDA events, beside the CPU
backends (pydicom / dicomsdl baselines, ``auto`` over all cores) on the same machine.
The JSON is rewritten after every phase, so a crash leaves what was measured.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence

from .gpu_check_steps import (
    FULL,
    bench_dali_decode,
    bench_loader,
    bench_nvimgcodec_chain,
    bench_nvimgcodec_decode,
    check_dali,
    check_fallback,
    check_nvimgcodec,
    check_voi,
    check_zero_copy,
    make_files,
    references,
    row,
)

log = logging.getLogger("gpu_check")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHAIN_SIZE = (2048, 1024)


class Budget:
    """Wall-clock budget: later phases are skipped (and said so) once it is spent."""

    def __init__(self, seconds: float):
        self.t0 = time.monotonic()
        self.seconds = seconds
        self.skipped: list[str] = []

    def left(self) -> float:
        return self.seconds - (time.monotonic() - self.t0)

    def allow(self, phase: str, need: float) -> bool:
        if self.left() >= need:
            return True
        self.skipped.append(phase)
        log.warning("skipping %s: %.0f s left, about %.0f s needed", phase, self.left(), need)
        return False


# --- driver -------------------------------------------------------------------------------


def run_pytest(out_dir: str, timeout: float) -> dict[str, object]:
    """``pytest -m gpu tests/test_gpu.py`` in a subprocess; junit XML and log into ``out_dir``."""
    xml = os.path.join(out_dir, "pytest-gpu.xml")
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-m",
        "gpu",
        "-p",
        "no:cacheprovider",
        f"--junitxml={xml}",
        os.path.join(ROOT, "tests", "test_gpu.py"),
    ]
    t0 = time.monotonic()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
        text, rc = proc.stdout + proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as exc:
        text, rc = f"{exc.stdout or ''}{exc.stderr or ''}\npytest timed out after {timeout:.0f} s", -1
    with open(os.path.join(out_dir, "pytest-gpu.log"), "w", encoding="utf-8") as f:
        f.write(text if isinstance(text, str) else text.decode("utf-8", "replace"))
    counts = {k: int(v) for v, k in re.findall(r"(\d+) (passed|failed|skipped|error|errors)", str(text))}
    return {"rc": rc, "seconds": round(time.monotonic() - t0, 1), **counts, "ok": rc == 0}


def card_name(gpu: str | None) -> str:
    words = [w for w in re.split(r"[^a-z0-9]+", (gpu or "").lower()) if w and w not in ("nvidia", "tesla")]
    return words[0] if words else "nogpu"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="folder for gpu-<card>-<date>.json")
    p.add_argument("--files", type=int, default=6, help="files per codec and bit depth (default 6)")
    p.add_argument("--repeat-files", type=int, default=4, help="each file decoded this often per timed epoch")
    p.add_argument("--batch", type=int, default=12, help="GPU batch size (default 12)")
    p.add_argument("--workers", type=int, default=0, help="DALI source workers (default: cores / 2)")
    p.add_argument("--repeats", type=int, default=2, help="timed repeats after a warm-up (default 2)")
    p.add_argument("--budget", type=float, default=270.0, help="seconds for everything (default 270)")
    p.add_argument("--pytest-timeout", type=float, default=120.0)
    p.add_argument("--data", help="keep the synthetic files here (default: a temporary folder, removed)")
    p.add_argument("--no-pytest", action="store_true")
    p.add_argument(
        "--device",
        default="cuda",
        choices=["cuda", "cpu"],
        help="cpu: the same flow on DALI CPU / CPU_ONLY / numpy, to test this script without a GPU",
    )
    p.add_argument("--size", default=f"{FULL[0]}x{FULL[1]}", metavar="HxW", help="image size (default 3328x2560)")
    p.add_argument(
        "--chain-size",
        default=f"{CHAIN_SIZE[0]}x{CHAIN_SIZE[1]}",
        metavar="HxW",
        help="output size of the chain (default 2048x1024)",
    )
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    budget = Budget(args.budget)
    os.makedirs(args.out, exist_ok=True)
    device = args.device

    import torch

    from benchmarks.machine import machine_record
    from benchmarks.schema import dump, make_document
    from decode.chain import parse_size
    from decode.parallel import default_workers

    if device == "cuda" and not torch.cuda.is_available():
        print("gpu_check: torch sees no CUDA GPU", file=sys.stderr)
        return 2
    size, chain_size = parse_size(args.size), parse_size(args.chain_size)
    machine = machine_record(with_torch=True)
    date = datetime.date.today().isoformat()
    card = card_name(machine.get("gpu")) if device == "cuda" else "cpu"
    out_json = os.path.join(args.out, f"gpu-{card}-{date}.json")
    cores = default_workers()
    workers = args.workers or max(2, cores // 2)
    rows, checks, summary = (
        [],
        dict.fromkeys(("j2k_exact", "jll_exact", "voi_match", "zero_copy", "fallback"), False),
        {},
    )
    config = {
        "command": "benchmarks/gpu_check.sh",
        "options": dict(vars(args)),
        "device": device,
        "rows": "height/width: the decoded (input) size; loader rows end at chain_size [B, 1, H, W] tensors",
        "size": list(size),
        "chain_size": list(chain_size),
        "bits": [12, 14],
        "timing": "CUDA events around whole epochs / passes (GPU rows); perf_counter (CPU rows)",
        "peak_gpu_mb": "device memory in use (cudaMemGetInfo) above the level before the phase",
    }
    row_bits: list[int] = []  # Bits Stored of each results row (the schema has no column for it)

    def save():
        summary["checks"] = dict(checks)
        summary["row_bits"] = list(row_bits)
        summary["skipped"] = list(budget.skipped)
        summary["elapsed_s"] = round(time.monotonic() - budget.t0, 1)
        dump(make_document(machine, config, rows, summary), out_json)

    data = args.data or tempfile.mkdtemp(prefix="rsna-gpu-check-")
    try:
        t = time.monotonic()
        groups = make_files(data, args.files, size)
        paths = [p for ps in groups.values() for p in ps]
        ts_of = {p: ts for (ts, _b), ps in groups.items() for p in ps}
        refs = references(paths)
        summary["data"] = {"files": len(paths), "seconds": round(time.monotonic() - t, 1)}
        save()

        run_cpu_bench(groups, cores, size, rows, row_bits, budget, save)
        if not args.no_pytest and budget.allow("pytest", 60):
            summary["pytest"] = run_pytest(args.out, max(30.0, min(args.pytest_timeout, budget.left() - 90)))
            save()
        exact_by = run_checks(device, groups, paths, ts_of, refs, args, workers, chain_size, checks, summary, save)
        try:
            run_benches(device, groups, paths, args, workers, size, chain_size, exact_by, rows, row_bits, budget, save)
        except Exception as exc:
            _record_error(summary.setdefault("errors", {}), "benches", exc)
        summary["goals"] = goals(rows, row_bits)
        save()
    finally:
        if not args.data:
            shutil.rmtree(data, ignore_errors=True)
    print(json.dumps({"checks": checks, "json": out_json, "skipped": budget.skipped}, indent=2))
    return 0 if all(checks.values()) else 1


def _record_error(errors: dict, name: str, exc: BaseException) -> None:
    """Log a phase that raised and keep its reason in ``summary.errors`` (its check stays False)."""
    log.exception("gpu_check: %s raised", name)
    errors[name] = " ".join(f"{type(exc).__name__}: {exc}".split())[:500]


def run_checks(device, groups, paths, ts_of, refs, args, workers, chain_size, checks, summary, save) -> dict:
    """The five checks, into ``checks`` (booleans) and ``summary`` (details).

    Returns:
        ``{(backend, transfer_syntax): exact}`` for the benchmark rows.
    """
    from dali_pipelines.pipelines import DecodeRunner
    from decode.backends.nvimgcodec_backend import CPU_SYNTAXES, GPU_SYNTAXES, NvImageCodecDecoder
    from decode.syntax import JPEG2000_LOSSLESS, JPEG_LOSSLESS_SV1, short_name

    errors = summary.setdefault("errors", {})  # a check that raises is False, the others still run
    exact_by: dict = {}
    try:
        with DecodeRunner(paths, batch_size=args.batch, device=device, workers=workers, threads=4) as runner:
            dali = check_dali(runner, paths, refs, ts_of)
            decoder = NvImageCodecDecoder(device=device)
            decoder.calibrate(GPU_SYNTAXES if device == "cuda" else CPU_SYNTAXES)
            nv = check_nvimgcodec(decoder, paths, refs, ts_of)
            summary["dali"] = {
                "exact": {short_name(k): v for k, v in dali["exact"].items()},
                "routes": {short_name(k): v for k, v in dali["routes"].items()},
                "modes": {short_name(k): v for k, v in dali["modes"].items()},
                "syntaxes_on_decoder": sorted(short_name(s) for s in runner.syntaxes),
            }
            summary["nvimgcodec"] = {
                "exact": {short_name(k): v for k, v in nv.items()},
                "modes": {short_name(k): v for k, v in decoder.modes.items()},
            }
            exact_by = {("dali", ts): bool(v) for ts, v in dali["exact"].items()}
            exact_by.update({("nvimgcodec", ts): bool(v) for ts, v in nv.items()})
            checks["j2k_exact"] = bool(dali["exact"].get(JPEG2000_LOSSLESS) and nv.get(JPEG2000_LOSSLESS))
            checks["jll_exact"] = bool(dali["exact"].get(JPEG_LOSSLESS_SV1) and nv.get(JPEG_LOSSLESS_SV1))
            zc = check_zero_copy(dali["keep"], decoder, paths[0])
            checks["zero_copy"] = zc["ok"]
            summary["zero_copy"] = zc
            del dali
    except Exception as exc:
        _record_error(errors, "dali_nvimgcodec", exc)
    save()
    voi_paths = [groups[(ts, 12)][0] for ts in (JPEG2000_LOSSLESS, JPEG_LOSSLESS_SV1)] + [
        groups[(JPEG2000_LOSSLESS, 14)][0]
    ]
    try:
        voi = check_voi(voi_paths, refs, device, chain_size)
        checks["voi_match"] = voi["ok"]
        summary["voi"] = voi
    except Exception as exc:
        _record_error(errors, "voi_match", exc)
    save()
    try:
        fb = check_fallback(
            groups[(JPEG2000_LOSSLESS, 12)][:4] + groups[(JPEG_LOSSLESS_SV1, 12)][:4], refs, workers=2, device=device
        )
        checks["fallback"] = fb["ok"]
        summary["fallback"] = fb
    except Exception as exc:
        _record_error(errors, "fallback", exc)
    save()
    return exact_by


def run_benches(device, groups, paths, args, workers, size, chain_size, exact_by, rows, row_bits, budget, save) -> None:
    """Decode alone and the whole chain (DALI, nvImageCodec) per codec and bit depth."""
    from dali_pipelines.gpu_loader import close_runner
    from dali_pipelines.loader import DicomLoader
    from dali_pipelines.pipelines import DecodeRunner
    from decode.backends.nvimgcodec_backend import CPU_SYNTAXES, GPU_SYNTAXES, NvImageCodecDecoder
    from decode.dicom import read_dicom
    from decode.gpu_chain import record_params
    from decode.syntax import short_name

    index = {p: i for i, p in enumerate(paths)}
    decoder = NvImageCodecDecoder(device=device)
    decoder.calibrate(GPU_SYNTAXES if device == "cuda" else CPU_SYNTAXES)
    loader = DicomLoader(paths, batch_size=args.batch, size=chain_size, device=device, workers=workers)
    with DecodeRunner(paths, batch_size=args.batch, device=device, workers=workers, threads=4) as runner:
        for (ts, bits), ps in groups.items():
            if not budget.allow(f"{device} bench {short_name(ts)} {bits}-bit", 25):
                continue
            rows_idx = [index[p] for p in ps] * args.repeat_files
            exact, nv_exact = exact_by.get(("dali", ts), False), exact_by.get(("nvimgcodec", ts), False)
            first = len(rows)
            secs, mb = bench_dali_decode(runner, rows_idx, args.repeats)
            rows.append(row("decode", "dali", device, ts, len(rows_idx), secs, args.batch, workers, mb, exact, size))
            streams = [read_dicom(p).codestream() for p in ps] * args.repeat_files
            if ts in decoder.modes:
                syn = [ts] * len(streams)
                secs, mb = bench_nvimgcodec_decode(decoder, streams, syn, args.batch, args.repeats)
                rows.append(
                    row("decode", "nvimgcodec", device, ts, len(streams), secs, args.batch, 1, mb, nv_exact, size)
                )
            secs, mb, n = bench_loader(loader, rows_idx, args.repeats, device)
            rows.append(
                row("loader", "dali", device, ts, n or len(rows_idx), secs, args.batch, workers, mb, exact, size)
            )
            if ts in decoder.modes:
                params = [record_params(read_dicom(p).meta) for p in ps] * args.repeat_files
                secs, mb = bench_nvimgcodec_chain(decoder, streams, syn, params, args.batch, args.repeats, chain_size)
                rows.append(
                    row("loader", "nvimgcodec", device, ts, len(streams), secs, args.batch, 1, mb, nv_exact, size)
                )
            row_bits.extend([bits] * (len(rows) - first))
            save()
    close_runner(loader)


def run_cpu_bench(groups, cores, size, rows, row_bits, budget, save) -> None:
    """The CPU backends on this machine (12-bit, a few files): pydicom / dicomsdl baselines, ``auto``.

    Runs before anything touches the GPU: its process pool forks, and a fork must not
    inherit DALI's threads or a CUDA context.
    """
    from benchmarks.decode_bench import Group, bench_group
    from decode.syntax import JPEG2000_LOSSLESS, JPEG_LOSSLESS_SV1, short_name

    for ts in (JPEG2000_LOSSLESS, JPEG_LOSSLESS_SV1):
        if not budget.allow(f"cpu bench {short_name(ts)}", 40):
            continue
        ps = groups[(ts, 12)][: max(2, min(len(groups[(ts, 12)]), cores // 4 or 2))]
        cpu_rows, _ = bench_group(Group(ts, list(ps), [size] * len(ps)), backends=["auto"], workers=cores, repeats=1)
        rows.extend(cpu_rows)
        row_bits.extend([12] * len(cpu_rows))
        save()


def goals(rows, row_bits: Sequence[int]) -> dict[str, object]:
    """The issue's targets on 12-bit files: DALI decode images/s, and the chain within 15 % of it."""
    from decode.syntax import JPEG2000_LOSSLESS, JPEG_LOSSLESS_SV1, short_name

    out = {}
    twelve = [r for r, b in zip(rows, row_bits) if b == 12 and r.backend == "dali"]
    for ts, goal, stretch in ((JPEG2000_LOSSLESS, 60, 100), (JPEG_LOSSLESS_SV1, 200, 400)):
        dec = next((r for r in twelve if r.stage == "decode" and r.backend == "dali" and r.transfer_syntax == ts), None)
        chain = next(
            (r for r in twelve if r.stage == "loader" and r.backend == "dali" and r.transfer_syntax == ts), None
        )
        ips = dec.images_per_s if dec else None
        ratio = round(chain.images_per_s / ips, 3) if ips and chain and chain.images_per_s else None
        out[short_name(ts)] = {
            "decode_images_per_s": ips,
            "goal": goal,
            "stretch": stretch,
            "meets_goal": None if ips is None else ips >= goal,
            "meets_stretch": None if ips is None else ips >= stretch,
            "chain_over_decode": ratio,
            "chain_within_15pct": None if ratio is None else ratio >= 0.85,
        }
    return out


if __name__ == "__main__":
    sys.exit(main())
