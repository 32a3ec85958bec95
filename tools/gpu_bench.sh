#!/usr/bin/env bash
# The measurements a GPU session owes (issue #15), in one command, so the few minutes a GPU is at
# hand go to measuring: the product's target workload (an ESM2-650M-shaped encoder, no download,
# 300-residue proteins, all default tasks), the bundled default model with 2 and with all tasks,
# and an ESM2-8M-shaped encoder; on CUDA each also times the padded encoder beside the packed one,
# and a last run times --compile. Each bench writes OUT/<name>.json and OUT/<name>.log.
#
#   tools/gpu_bench.sh [OUT]                         # default OUT: gpu-bench/
#   DEVICE=cpu N=6 NAIVE_N=1 SHAPES=esm2_t6_8M_UR50D tools/gpu_bench.sh /tmp/gb   # a smoke test of the script
#
# On the lent GPU machine (no network): python3 there has torch but not fair-esm; carry its
# wheel in .whl/ (pip download --no-deps --only-binary=:all: fair-esm==2.0.0 -d .whl) and this
# script installs it into /tmp/p2t-site.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-gpu-bench}
DEVICE=${DEVICE:-cuda}
N=${N:-20000}
NAIVE_N=${NAIVE_N:-8}
MAX_TOKENS=${MAX_TOKENS:-131072}
SHAPES=${SHAPES:-esm2_t33_650M_UR50D esm2_t6_8M_UR50D}
mkdir -p "$OUT"
. tools/gpu_env.sh
{ nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv || true; } > "$OUT/device.txt" 2>&1
"$PY" -c "import torch, sys; print('torch', torch.__version__, 'python', sys.version.split()[0])" >> "$OUT/device.txt"

bench() {  # bench NAME ARGS...: one p2t bench run, its table in NAME.log and figures in NAME.json
    local name=$1; shift
    echo "== $name: p2t bench $*"
    "$PY" -m p2t_screen bench --device "$DEVICE" --max-tokens "$MAX_TOKENS" --json "$OUT/$name.json" "$@" \
        2>&1 | tee "$OUT/$name.log"
}
for shape in $SHAPES; do
    bench "${shape}_300aa_all" --encoder-shape "$shape" --n "$N" --length 300 --tasks all --naive-n "$NAIVE_N"
done
bench host --host --n "$N"
bench default_2tasks --n "$N" --naive-n "$NAIVE_N"
bench default_all --n "$N" --tasks all --naive-n "$NAIVE_N"
# Last, as it may take longest: the decoder step compiled (CUDA graphs), on a smaller library.
bench default_all_compile --n "$((N / 5))" --tasks all --naive-n 1 --compile
echo "figures in $OUT/"
