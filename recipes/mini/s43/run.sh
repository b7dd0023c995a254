#!/usr/bin/env bash
# s43 (2026-12-07, sixteenth session): s36 + a projector of its own for video frames, trained alone on video questions
# (video_projector.yaml); pictures, text and speech pass through nothing it changes. About 35 min here: training 13,
# biases 5 (20 when the four runs' probabilities are measured again, as here), eval apart. Its steps ran one by one in
# the session (runs/s43); this script was not re-run as a whole.
#   bash recipes/mini/s43/run.sh DATA RUNS OUT
# DATA: the `vita data mini` folder of recipes/mini/s34/run.sh; RUNS: that script's OUT (s36's parts, s29-s32 assembled
# for the calibration, and its calib.jsonl: runs/s28/data/train/calib36.jsonl in the session); OUT: new folder.
set -euo pipefail
cd "$(dirname "$0")/../../.."
DATA=$1; RUNS=$2; OUT=$3; VITA=${VITA:-.venv/bin/vita}; PY=${PY:-.venv/bin/python}
export HF_HUB_OFFLINE=1 VITA_MINI_DATA=$(realpath $DATA) VITA_MINI_INIT=$(realpath -m $OUT/init) \
    VITA_S41_VIDEO=$(realpath -m $OUT/video)
[ -f $OUT/s36/config.json ] || $VITA mini assemble --parts $RUNS/s36/parts --out $OUT/s36
[ -f $OUT/init/config.json ] || $PY -m vita.cli.tools video_projector --model $OUT/s36 --out $OUT/init
[ -f $OUT/video/train/video_more.json ] || $PY recipes/mini/s40/video_more.py 3000 $DATA $OUT/video/train
[ -f $DATA/train/instruct_video.json ] || $PY -c "import json, sys; d = json.load(open(sys.argv[1] + '/train/instruct.json'))
json.dump([r for r in d if 'video' in r], open(sys.argv[1] + '/train/instruct_video.json', 'w'))" $DATA
[ -f $OUT/train/final/config.json ] || $VITA train --recipe recipes/mini/s43/video_projector.yaml --output $OUT/train
[ -f $OUT/proj/parts.json ] || $PY recipes/mini/s42/with_projector.py $RUNS/s36/parts $OUT/train/final $OUT/proj video_projector.
bash recipes/mini/finish.sh $OUT/proj $DATA $RUNS $OUT
