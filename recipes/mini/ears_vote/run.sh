#!/usr/bin/env bash
# How the two ears' vote settings were chosen (2026-12-08), on development clips only, never the eval split:
#   bash recipes/mini/ears_vote/run.sh DATA OUT    (DATA: a `vita data mini` folder; ~6 min on 2 cores)
set -euo pipefail
DATA=$1; OUT=$2; mkdir -p "$OUT"
export HF_HUB_OFFLINE=1
here=$(dirname "$0")
python "$here/make_dev.py" "$DATA" "$OUT"
python -m vita.cli.tools real_speech --out "$OUT" --split dev --fetch
python "$here/score.py" "$OUT/dev.jsonl" "$OUT/synthetic.json" > "$OUT/synthetic.log" &
python "$here/score.py" "$OUT/real_speech_dev.jsonl" "$OUT/real.json" > "$OUT/real.log"
python "$here/score.py" "$OUT/noise.jsonl" "$OUT/noise.json" > "$OUT/noise.log"
wait
python "$here/choose.py" "$OUT/synthetic.json" "$OUT/real.json" "$OUT/noise.json" | tee "$OUT/choose.txt"
