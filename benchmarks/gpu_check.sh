#!/usr/bin/env bash
# GPU check for the rsna-mammo engine, on a machine with a GPU, in one short run.
#
#   benchmarks/gpu_check.sh [--tier quick|full] OUTDIR [options of benchmarks/gpu_check.py]
#
# --tier quick (about 3 minutes, at most 4): needs torch, CuPy, nvImageCodec, pydicom and the CPU
#   codecs (imagecodecs, pylibjpeg, dicomsdl) -- never imports DALI. Checks and figures of the
#   nvImageCodec engine beside the CPU paths and pydicom with nvImageCodec's own pydicom plugin.
# --tier full (default, about 5 minutes): the quick tier plus everything about DALI.
#
# Installs nothing, needs no network: the packages are installed or staged wheels unpacked on
# PYTHONPATH (see ../shared/tools/stage-gpu-wheels). $PYTHON names the interpreter (default
# python3). The project root is put in front of PYTHONPATH (worker processes are spawned and
# import it from there).
#
# Writes OUTDIR/gpu-<card>-<date>[-quick].json (benchmark result format; summary.tier, and the
# checks j2k_exact, jll_exact, voi_match, zero_copy, fallback under summary.checks), rewritten after
# every phase, and OUTDIR/pytest-gpu.log / .xml. Exit status 0 when every check is true -- also when
# the time limit stopped the run after the checks were saved (the figures it had are kept); 3 when
# a package the tier needs does not import (gpu_check.py checks that first and names each one).
set -uo pipefail

PYTHON=${PYTHON:-python3}
TIER=full
if [ "${1:-}" = "--tier" ]; then
    TIER=${2:-}
    shift 2 || true
fi
case "$TIER" in quick|full) ;; *) echo "gpu_check: --tier must be quick or full, not '$TIER'" >&2; exit 2;; esac
if [ $# -lt 1 ]; then
    echo "usage: $0 [--tier quick|full] OUTDIR [options of benchmarks/gpu_check.py]" >&2
    exit 2
fi
OUT=$1
shift
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
# glymur + lxml for the reduced-resolution CPU rows (benchmarks/stage_gpu_extras.sh), when carried
[ -d "$ROOT/.gpuwheels/x/site" ] && export PYTHONPATH="$PYTHONPATH:$ROOT/.gpuwheels/x/site"
export PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
cd "$ROOT"

command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
df -h /dev/shm 2>/dev/null | tail -1

EXTRA=()
if ! "$PYTHON" -c "import pytest" 2>/dev/null; then
    echo "gpu_check: pytest does not import; the gpu tests are skipped (checks and figures still run)" >&2
    EXTRA=(--no-pytest)
fi

# Hard stop a little after the Python side's own budget (it stops starting phases when its
# budget is spent and rewrites the JSON after every phase).
if [ "$TIER" = quick ]; then LIMIT=${GPU_CHECK_LIMIT:-225}; else LIMIT=${GPU_CHECK_LIMIT:-295}; fi
BUDGET=$((LIMIT - 25))
timeout --signal=TERM --kill-after=10 "$LIMIT" "$PYTHON" -m benchmarks.gpu_check --tier "$TIER" --out "$OUT" \
    --budget "$BUDGET" ${EXTRA[@]+"${EXTRA[@]}"} "$@"
rc=$?
if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    echo "gpu_check: stopped at the ${LIMIT} s limit; judging by the checks already saved" >&2
    "$PYTHON" -m benchmarks.gpu_check --verdict "$OUT" --tier "$TIER"
    exit $?
fi
exit "$rc"
