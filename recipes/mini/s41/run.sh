#!/usr/bin/env bash
# s41 (2026-12-07, sixteenth session): the s36 release continued on more video questions with the stage-3 mix replayed
# (continue.yaml), its LoRA stacked onto s36's in the parts (`soup --chain`: the exact sum of the two changes), the
# state biases recalibrated by s36's method (the mean P(<2>) of s29-s32 on the same training records). About 35 min
# here: training 27, packing 1, biases 5 (20 when the four runs' probabilities are measured again, as here), eval
# apart. Its steps ran one by one in the session (runs/s41); this script was not re-run as a whole.
#   bash recipes/mini/s41/run.sh DATA RUNS OUT
# DATA: the `vita data mini` folder of recipes/mini/s34/run.sh; RUNS: that script's OUT (s29-s32 assembled, for the
# calibration, and its calib.jsonl: runs/s28/data/train/calib36.jsonl in the session); OUT: new folder. Needs recipes/mini/s40/video_more.py's 3,000 video questions (made here if absent).
set -euo pipefail
cd "$(dirname "$0")/../../.."
DATA=$1; RUNS=$2; OUT=$3; VITA=${VITA:-.venv/bin/vita}; PY=${PY:-.venv/bin/python}
export HF_HUB_OFFLINE=1 VITA_MINI_DATA=$(realpath $DATA) VITA_MINI_INIT=$(realpath -m $OUT/s36) \
    VITA_S41_VIDEO=$(realpath -m $OUT/video)
[ -f $OUT/s36/config.json ] || $VITA mini assemble --parts $RUNS/s36/parts --out $OUT/s36
[ -f $OUT/video/train/video_more.json ] || $PY recipes/mini/s40/video_more.py 3000 $DATA $OUT/video/train
[ -f $OUT/train/final/config.json ] || $VITA train --recipe recipes/mini/s41/continue.yaml --output $OUT/train
[ -f $OUT/cont/parts.json ] || $VITA mini pack --run $OUT/train --out $OUT/cont
[ -f $OUT/chained/parts.json ] || $PY -m vita.cli.tools soup --chain --out $OUT/chained $RUNS/s36/parts $OUT/cont
bash recipes/mini/finish.sh $OUT/chained $DATA $RUNS $OUT
