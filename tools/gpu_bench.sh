#!/usr/bin/env bash
# Everything a GPU session owes (issues #15, #24), in one command that fits a short GPU slot:
# at most 8 minutes on an H200 with the sizes below. Each bench writes OUT/<name>.json and
# OUT/<name>.log; OUT/device.txt holds the nvidia-smi line and the versions.
#
#   1. esm2_650M_300aa: the product's target workload, an ESM2-650M-shaped encoder (random
#      weights, no download) under the default model's decoders, N proteins of 300 residues, all
#      default tasks (all per-residue, decoded in one pass: --compile has no step to compile there,
#      the note says so), --max-tokens auto (the search is logged), packed and padded encoder,
#      encoder alone, NAIVE_N through the naive path, and one more screen under
#      torch.cuda.set_sync_debug_mode("warn") that counts the synchronizing calls by line.
#   2. host: host cost per record with the model replaced by a no-op, N records.
#   3. default_2tasks, default_all: the bundled default model with 2 and with all tasks, N
#      proteins of 50-800 residues, --max-tokens auto; default_all also times --compile on its
#      scalar twin (regression + class heads, decoded step by step): eager beside --compile, the
#      compiles included and then again, the graphs counted.
#
# Sizes (N=20000, NAIVE_N=8): at the 2.5M sequences per GPU-hour goal, each N-protein screen of
# the 650M shape takes ~30 s; the default model's are a few seconds each.
#
#   tools/gpu_bench.sh [OUT]                          # default OUT: docs/bench/gpu/<date>/
#   DEVICE=cpu N=6 NAIVE_N=1 SHAPE=esm2_t6_8M_UR50D LENGTH=60 MAX_LEN=80 COMPILE_BACKEND=eager tools/gpu_bench.sh /tmp/gb   # the CPU smoke run (tests/tools)
#
# On the lent GPU machine (no network): python3 there has torch but not fair-esm; carry its
# wheel in .whl/ (pip download --no-deps --only-binary=:all: fair-esm==2.0.0 -d .whl) and this
# script installs it into /tmp/p2t-site.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-docs/bench/gpu/$(date +%F)}
DEVICE=${DEVICE:-cuda}
N=${N:-20000}
NAIVE_N=${NAIVE_N:-8}
SHAPE=${SHAPE:-esm2_t33_650M_UR50D}
LENGTH=${LENGTH:-300}  # residues of every protein of the shaped bench
MAX_LEN=${MAX_LEN:-800}  # the default model's benches: proteins of 50..MAX_LEN residues
COMPILE_BACKEND=${COMPILE_BACKEND:-inductor}  # the smoke run traces only (eager): inductor's C++ builds take minutes on CPU
mkdir -p "$OUT"
. tools/gpu_env.sh
{ nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader || echo "no nvidia-smi"; } > "$OUT/device.txt" 2>&1
"$PY" -c "import torch, sys; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'python', sys.version.split()[0])" >> "$OUT/device.txt"

bench() {  # bench NAME ARGS...: one p2t bench run, its table in NAME.log and figures in NAME.json
    local name=$1; shift
    echo "== $name: p2t bench $*"
    local t0=$SECONDS
    "$PY" -m p2t_screen bench --device "$DEVICE" --max-tokens auto --json "$OUT/$name.json" "$@" \
        2>&1 | tee "$OUT/$name.log"
    echo "== $name took $((SECONDS - t0)) s" | tee -a "$OUT/$name.log"
}
started=$SECONDS
bench esm2_650M_300aa --encoder-shape "$SHAPE" --n "$N" --length "$LENGTH" --tasks all --naive-n "$NAIVE_N" \
    --compile --compile-backend "$COMPILE_BACKEND" --sync-debug
bench host --host --n "$N"
bench default_2tasks --n "$N" --max-len "$MAX_LEN" --naive-n "$NAIVE_N"
bench default_all --n "$N" --max-len "$MAX_LEN" --tasks all --naive-n "$NAIVE_N" --compile --compile-backend "$COMPILE_BACKEND"
echo "all benches in $((SECONDS - started)) s; figures in $OUT/"
