#!/usr/bin/env bash
# The end of each release recipe since s41: a new parts folder NEW becomes OUT/parts with its state biases calibrated
# by s36's method (the mean P(<2>) of the four stage-3 runs s29-s32, assembled in RUNS, on DATA's calibration
# records), is assembled to OUT/vita-mini and scored on DATA's held-out cases (float32, 48 new tokens).
#   bash recipes/mini/finish.sh NEW DATA RUNS OUT
set -euo pipefail
cd "$(dirname "$0")/../.."
NEW=$1; DATA=$2; RUNS=$3; OUT=$4; VITA=${VITA:-.venv/bin/vita}; PY=${PY:-.venv/bin/python}
if [ ! -f $OUT/parts/parts.json ]; then
    $VITA mini assemble --parts $NEW --out $NEW-mini
    cp -r $NEW $OUT/parts
    $PY -m vita.cli.tools state_bias --model $NEW-mini \
        --like $RUNS/s29/vita-mini $RUNS/s30/vita-mini $RUNS/s31/vita-mini $RUNS/s32/vita-mini \
        --manifest $DATA/train/calib.jsonl --write $OUT/parts --threads 2 > $OUT/bias.json
fi
[ -f $OUT/vita-mini/config.json ] || $VITA mini assemble --parts $OUT/parts --out $OUT/vita-mini
$VITA eval --manifest $DATA/eval/all.jsonl --model $OUT/vita-mini --dtype fp32 --max-new-tokens 48 --quiet \
    --out $OUT/eval_all.json
echo "parts: $OUT/parts (copy model.safetensors and parts.json over vita/assets/mini to ship)"
