#!/usr/bin/env bash
# One stage of pre-training the default model's next encoder (issue #13) on the device at hand:
# an ESM2-8M shape (6 layers x 320, 20 heads), masked LM on data/pretrain (`make data`), in
# stages. Each run trains for STAGE_HOURS, saves its state in OUT/esm2_t6_320_p2t.pt.train/ and
# stops; the same command again (with OUT brought back) continues, ending exactly where one
# uninterrupted run would. The last stage writes OUT/esm2_t6_320_p2t.pt and its .json (held-out
# loss, perplexity, accuracy).
#
#   tools/gpu_pretrain.sh [OUT]                      # default OUT: data/encoder-t6
#   DEVICE=cpu STEPS=3 STAGE_HOURS=0 MAX_TOKENS=4096 tools/gpu_pretrain.sh /tmp/gp   # smoke test: one step, then stop
#
# On the lent GPU machine: carry data/pretrain, .whl (the fair-esm wheel; tools/gpu_env.sh) and,
# to continue, OUT. The state (weights and optimiser, ~90 MB at this size) is what comes back.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-data/encoder-t6}
DEVICE=${DEVICE:-cuda}
STEPS=${STEPS:-30000}
STAGE_HOURS=${STAGE_HOURS:-0.12}
MAX_TOKENS=${MAX_TOKENS:-65536}
LR=${LR:-5e-4}
WARMUP=${WARMUP:-1500}
mkdir -p "$OUT"
. tools/gpu_env.sh
"$PY" -m p2t_screen pretrain data/pretrain/train.fasta --valid data/pretrain/valid.fasta \
    -o "$OUT/esm2_t6_320_p2t.pt" --layers 6 --dim 320 --heads 20 --steps "$STEPS" --warmup "$WARMUP" \
    --lr "$LR" --max-tokens "$MAX_TOKENS" --device "$DEVICE" --stage-hours "$STAGE_HOURS"
