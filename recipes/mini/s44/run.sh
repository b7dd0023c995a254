#!/usr/bin/env bash
# s44 (2026-12-07, seventeenth session): s43's trained model, its video projector trained on further: 2,000 new spoken
# video questions (video_spoken.py: training voices, augmented as the data folder says, never an eval video), s43's
# 3,000 typed ones and the 900 stage-3 video records (video_spoken.yaml). Pictures, text and speech pass through
# nothing it changes. About 37 min here: spoken items 4, training 19 (with image generation beside it), biases 4,
# eval apart. Its steps ran one by one in the session (runs/s44/go.sh); this script was not re-run as a whole.
#   bash recipes/mini/s44/run.sh DATA RUNS S43 OUT
# DATA: the `vita data mini` folder of recipes/mini/s34/run.sh; RUNS: that script's OUT (s29-s32 assembled, for the
# calibration; the session ran runs/s41/bias.py: the same method with s36's targets on calib36.jsonl); S43: the OUT
# of recipes/mini/s43/run.sh (its train/final, video/train/video_more.json, parts); OUT: new folder.
set -euo pipefail
cd "$(dirname "$0")/../../.."
DATA=$1; RUNS=$2; S43=$3; OUT=$4; VITA=${VITA:-.venv/bin/vita}; PY=${PY:-.venv/bin/python}
export HF_HUB_OFFLINE=1 VITA_MINI_DATA=$(realpath $DATA) VITA_MINI_INIT=$(realpath $S43/train/final) \
    VITA_S41_VIDEO=$(realpath $S43/video) VITA_S44_VIDEO=$(realpath -m $OUT/video)
[ -f $OUT/video/train/video_spoken.json ] || $PY recipes/mini/s44/video_spoken.py 2000 $DATA $OUT/video/train
[ -f $OUT/train/final/config.json ] || $VITA train --recipe recipes/mini/s44/video_spoken.yaml --output $OUT/train
[ -f $OUT/proj/parts.json ] || $PY recipes/mini/s42/with_projector.py $S43/parts $OUT/train/final $OUT/proj video_projector.
bash recipes/mini/finish.sh $OUT/proj $DATA $RUNS $OUT
