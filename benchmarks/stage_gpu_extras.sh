#!/usr/bin/env bash
# Stage the few pure-Python / small packages the GPU check's quick tier needs beyond
# ../shared/tools/stage-gpu-wheels' quick piece: glymur (reduced-resolution JPEG 2000 through
# the libopenjp2 imagecodecs ships) and lxml (glymur imports it), for CPython 3.12 x86-64.
#
#   benchmarks/stage_gpu_extras.sh            # writes .gpuwheels/x/site (ignored by git)
#
# Carry it with the quick piece: carry [".gpuwheels/bin", ".gpuwheels/q", ".gpuwheels/x"];
# benchmarks/gpu_check.sh puts .gpuwheels/x/site on PYTHONPATH when it is there.
set -euo pipefail
root=$(git rev-parse --show-toplevel)
cd "$root"
out=.gpuwheels/x
grep -qx '/.gpuwheels/' .git/info/exclude 2>/dev/null || echo '/.gpuwheels/' >> .git/info/exclude
rm -rf "$out" && mkdir -p "$out/wheels" "$out/site"
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d "$out/wheels" "glymur==0.14.8" "lxml==6.0.2" 2>&1 | grep -v 'is ignored' || true
for w in "$out"/wheels/*.whl; do python3 -m zipfile -e "$w" "$out/site"; done
rm -rf "$out/wheels"
echo "staged: $out/site ($(du -sh "$out" | cut -f1))"
