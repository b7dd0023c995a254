#!/usr/bin/env bash
# The VITA-1.0 training pipeline, stage after stage; each stage initialises from the previous one's DIR/final.
# Rerunning resumes: a finished stage is a no-op, an interrupted one continues from its newest checkpoint.
#   VITA_BASE_LLM  HF Mixtral-8x7B directory with the extended vocabulary (stage 0 input)
#   VITA_INIT      a VITA checkpoint (stage-0 LLM + InternViT-300M-448px + whale encoder) for stage 1
#   VITA_DATA, VITA_MEDIA   data files / media folder;  RUNS  output root (default runs/vita1);  NPROC  ranks per node
set -euo pipefail
RUNS=${RUNS:-runs/vita1}
NPROC=${NPROC:-8}
here=$(dirname "$0")
stage() {  # stage NAME [key=value ...]
  python -m torch.distributed.run --nproc_per_node "$NPROC" -m vita.cli.train \
    --recipe "$here/$1.yaml" --output "$RUNS/$1" "${@:2}"
}
stage stage0_llm_bilingual
# stage 1 starts from VITA_INIT (assembled from stage 0's LLM and the pretrained encoders)
stage stage1_vision_align
VITA_STAGE1=$RUNS/stage1_vision_align/final stage stage2_audio_align
VITA_STAGE2=$RUNS/stage2_audio_align/final stage stage3_multimodal_sft
VITA_STAGE3=$RUNS/stage3_multimodal_sft/final stage stage4_continual_task
