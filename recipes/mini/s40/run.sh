#!/usr/bin/env bash
# s40 (2026-12-07, fifteenth session): a diagnostic, NOT a release. 150 LoRA steps on top of the shipped vita-mini
# (s36) with 3,000 more generated video questions and the instruct records as replay (weight 0.3): can the LLM learn
# the video tasks from more items? (docs/history/vita-mini.md, first paragraph, has the figures.) About 20 min here.
# Its steps ran one by one in the session (runs/s40: the same generator, seed, recipe and init); this script was
# not re-run as a whole.
#   bash recipes/mini/s40/run.sh DATA OUT      (DATA: a `vita data mini` folder, e.g. runs/s28/data)
set -euo pipefail
cd "$(dirname "$0")/../../.."
DATA=$1; OUT=$2; VITA=${VITA:-.venv/bin/vita}; PY=${PY:-.venv/bin/python}
export HF_HUB_OFFLINE=1 VITA_MINI_DATA=$(realpath $DATA) VITA_MINI_INIT=$(realpath -m $OUT/shipped) \
    VITA_S40_VIDEO=$(realpath -m $OUT/video)
[ -f $OUT/shipped/config.json ] || $VITA mini assemble --parts vita/assets/mini --out $OUT/shipped
[ -f $OUT/video/video_more.json ] || $PY recipes/mini/s40/video_more.py 3000 $DATA $OUT/video
[ -f $OUT/train/final/config.json ] || $VITA train --recipe recipes/mini/s40/video.yaml --output $OUT/train
$VITA eval --manifest $DATA/eval/all.jsonl --model $OUT/train/final --dtype fp32 --max-new-tokens 48 --quiet \
    --out $OUT/eval_all.json
