#!/usr/bin/env bash
# Every tiny stage in order on CPU, each starting from the previous stage's weights (a few seconds per stage).
#   bash recipes/tiny/run.sh [RUNS]   (default runs/tiny); NPROC=2 for torchrun with 2 gloo ranks
set -euo pipefail
RUNS=${1:-runs/tiny}
NPROC=${NPROC:-1}
PY=${PY:-python}
here=$(dirname "$0")
prev=tiny-random
for s in stage0_llm_bilingual stage1_vision_align stage2_audio_align stage3_multimodal_sft stage4_continual_task; do
  if [ "$NPROC" = 1 ]; then launch=("$PY" -m vita.cli.train); else
    launch=("$PY" -m torch.distributed.run --nproc_per_node "$NPROC" -m vita.cli.train); fi
  "${launch[@]}" --recipe "$here/$s.yaml" --output "$RUNS/$s" --threads 1 "model.init=$prev"
  prev=$RUNS/$s/final
done
