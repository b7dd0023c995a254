#!/usr/bin/env bash
# s45 (2026-12-07, seventeenth session): s43's trained model, its picture projector trained on pictures alone (frames
# have their own since s43): 6,000 new typed image questions (image_more.py: the data's weighted task cycle, never an
# eval picture) and the 5,400 stage-3 records with a picture and no video (image_projector.yaml). Frames, text and
# speech pass through nothing it changes. Its steps ran one by one in the session (runs/s45/go.sh); this script was
# not re-run as a whole.
#   bash recipes/mini/s45/run.sh DATA RUNS S43 BASE OUT
# DATA: the `vita data mini` folder of recipes/mini/s34/run.sh; RUNS: that script's OUT (s29-s32 assembled, for the
# calibration; the session ran runs/s41/bias.py: the same method with s36's targets on calib36.jsonl); S43: the OUT of
# recipes/mini/s43/run.sh (its train/final); BASE: the release whose parts get the new picture projector (the OUT of
# recipes/mini/s44/run.sh); OUT: new folder.
set -euo pipefail
cd "$(dirname "$0")/../../.."
DATA=$1; RUNS=$2; S43=$3; BASE=$4; OUT=$5; VITA=${VITA:-.venv/bin/vita}; PY=${PY:-.venv/bin/python}
export HF_HUB_OFFLINE=1 VITA_MINI_DATA=$(realpath $DATA) VITA_MINI_INIT=$(realpath $S43/train/final) \
    VITA_S45_IMAGE=$(realpath -m $OUT/image)
[ -f $OUT/image/train/image_more.json ] || $PY recipes/mini/s45/image_more.py 6000 $DATA $OUT/image/train
[ -f $DATA/train/instruct_image.json ] || $PY -c "import json, sys; d = json.load(open(sys.argv[1] + '/train/instruct.json'))
json.dump([r for r in d if 'image' in r and 'video' not in r], open(sys.argv[1] + '/train/instruct_image.json', 'w'))" $DATA
[ -f $OUT/train/final/config.json ] || $VITA train --recipe recipes/mini/s45/image_projector.yaml --output $OUT/train
[ -f $OUT/proj/parts.json ] || $PY recipes/mini/s42/with_projector.py $BASE/parts $OUT/train/final $OUT/proj vision_projector.
bash recipes/mini/finish.sh $OUT/proj $DATA $RUNS $OUT
