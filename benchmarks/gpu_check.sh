#!/usr/bin/env bash
# GPU check for the rsna-mammo engine, in under 5 minutes, on a machine with a GPU.
#
#   benchmarks/gpu_check.sh OUTDIR [extra options of benchmarks/gpu_check.py]
#
# Needs: python3 (3.10+) where torch, CuPy, nvidia-dali, nvImageCodec, pydicom, pylibjpeg,
# imagecodecs, dicomsdl, numpy, pandas (and pytest, for the gpu tests) import -- installed, or staged wheels
# unpacked on PYTHONPATH. Installs nothing, needs no network. The project root is put in
# front of PYTHONPATH (the DALI workers are spawned processes and import it from there).
#
# Writes OUTDIR/gpu-<card>-<date>.json (benchmark result format; the checks j2k_exact,
# jll_exact, voi_match, zero_copy, fallback under summary.checks), OUTDIR/pytest-gpu.log
# and OUTDIR/pytest-gpu.xml. Exit status 0 only when every check is true.
set -euo pipefail

if [ $# -lt 1 ]; then
    echo "usage: $0 OUTDIR [options of benchmarks/gpu_check.py]" >&2
    exit 2
fi
OUT=$1
shift
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONDONTWRITEBYTECODE=1
export OPENCV_LOG_LEVEL=${OPENCV_LOG_LEVEL:-ERROR}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
cd "$ROOT"

command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
python3 - <<'PY'
import importlib, sys
need = ["numpy", "torch", "cupy", "nvidia.dali", "nvidia.nvimgcodec", "pydicom", "imagecodecs"]
missing = []
for name in need:
    try:
        importlib.import_module(name)
    except Exception as exc:
        missing.append(f"{name} ({type(exc).__name__}: {exc})")
if missing:
    print("gpu_check: cannot import: " + "; ".join(missing), file=sys.stderr)
    sys.exit(3)
PY

EXTRA=()
if ! python3 -c "import pytest" 2>/dev/null; then
    echo "gpu_check: pytest does not import; the gpu tests are skipped (checks and figures still run)" >&2
    EXTRA=(--no-pytest)
fi

# Hard stop at 5 minutes; the Python side keeps its own budget (270 s) and rewrites the
# JSON after every phase, so a stop leaves what was measured.
exec timeout --signal=TERM --kill-after=10 295 python3 -m benchmarks.gpu_check --out "$OUT" ${EXTRA[@]+"${EXTRA[@]}"} "$@"
