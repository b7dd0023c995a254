"""`vita eval BENCH --data PATH --model M`: the paper's benchmarks in their public file formats.

    language   mmlu, ceval, agieval (multiple choice, 0- or k-shot)   vita.eval.bench.mcq_text
               gsm8k (final-number exact match)                      vita.eval.bench.gsm8k
    speech     librispeech (WER), wenetspeech (CER)                   vita.eval.bench.asr
    image      mme (acc + acc+), hallusionbench                       vita.eval.bench.mme, .hallusion
               mmbench (circular), mmstar, ai2d                       vita.eval.bench.mmbench, .image_mcq
               ocrbench                                               vita.eval.bench.ocrbench
    video      video-mme (with / without subtitles)                   vita.eval.bench.videomme

Each adapter's module docstring names the format's origin, the exact prompt and the scoring rule. The shared
machinery: `core` (the adapter contract), `store` (the resumable predictions file), `runner` (batches, progress,
resume), `report` (JSON + markdown with the paper's figures from `paper`), `table`
(vita-mini's table on the hand-made samples of `samples`). The command line is `vita.cli.eval`.
"""

from __future__ import annotations

from vita.eval.bench.asr import LibriSpeech, WenetSpeech
from vita.eval.bench.core import Benchmark, Item, Options, Score
from vita.eval.bench.gsm8k import GSM8K
from vita.eval.bench.hallusion import HallusionBench
from vita.eval.bench.image_mcq import AI2D, MMStar
from vita.eval.bench.mcq_text import MMLU, AGIEval, CEval
from vita.eval.bench.mmbench import MMBench
from vita.eval.bench.mme import MME
from vita.eval.bench.ocrbench import OCRBench
from vita.eval.bench.videomme import VideoMME

BENCHMARKS: dict[str, type[Benchmark]] = {
    b.name: b for b in (MMLU, CEval, AGIEval, GSM8K, LibriSpeech, WenetSpeech, MME, MMBench, MMStar, AI2D,
                        HallusionBench, OCRBench, VideoMME)
}


def get(name: str) -> Benchmark:
    """The adapter called `name` (as on the command line)."""
    from vita.errors import EvalError

    if name not in BENCHMARKS:
        raise EvalError(f"unknown benchmark {name!r} (one of {', '.join(BENCHMARKS)})")
    return BENCHMARKS[name]()


__all__ = ["BENCHMARKS", "Benchmark", "Item", "Options", "Score", "get"]
