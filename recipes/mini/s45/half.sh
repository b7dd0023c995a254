#!/usr/bin/env bash
# s45h (2026-12-07, seventeenth session; shipped): s45 at half strength. The picture projector halfway between s45's
# start (s43's trained model: the picture projector every release since s36 ships) and s45's end (half.py), put into
# s44's parts, biases recalibrated, scored. Minutes once s45 has run. Its steps ran one by one in the session
# (runs/s45h/go.sh); this script was not re-run as a whole.
#   bash recipes/mini/s45/half.sh DATA RUNS S43 S44 S45 OUT
# DATA, RUNS as recipes/mini/s45/run.sh; S43, S44, S45: the OUT folders of recipes/mini/s43, s44 and s45's run.sh.
set -euo pipefail
cd "$(dirname "$0")/../../.."
DATA=$1; RUNS=$2; S43=$3; S44=$4; S45=$5; OUT=$6; PY=${PY:-.venv/bin/python}
export HF_HUB_OFFLINE=1
[ -f $OUT/half/model.safetensors ] || $PY recipes/mini/s45/half.py $S43/train/final $S45/train/final $OUT/half
[ -f $OUT/proj/parts.json ] || $PY recipes/mini/s42/with_projector.py $S44/parts $OUT/half $OUT/proj vision_projector.
bash recipes/mini/finish.sh $OUT/proj $DATA $RUNS $OUT
