"""The published figures of the 47B VITA models, beside which our reports print our own numbers.

These are THOSE MODELS' figures (VITA-1.0: Mixtral-8x7B, 47B parameters; VITA-1.5: Qwen2.5-7B), copied from the
sources named on each entry, never measured here. Sources:
  - R1-IMG: the result images in the VITA-1.0 repository (github.com/VITA-MLLM/VITA at 360de22):
    `asset/language_eval2.png` (language: the row "Mixtral-8x7B Ours", i.e. VITA's bilingual LLM after its
    language tuning, not the multimodal model), `asset/audio_eval.jpg` (ASR error rates),
    `asset/visual_eval.jpg` (image and video benchmarks; the bar "VITA (Mixtral 8x7B)").
  - R1.5-README: the VITA-1.5 README at 35d064a as summarised in ../shared/reference/vita1.md §10.
Only figures we could read from those sources are listed; a missing VITA-1.5 entry means "not recorded here",
not "not reported" (the VITA-1.5 paper, arXiv 2501.01957, has more; they are not transcribed until checked).
Video-MME 59.2: the chart does not say whether with subtitles; the GPT-4o / Gemini bars beside it are their
with-subtitle scores, so it is probably with subtitles [inferred], and we list it under both settings, marked.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PaperFigure:
    model: str  # "VITA-1.0 (47B, Mixtral-8x7B)" / "VITA-1.5 (Qwen2.5-7B)"
    value: float
    source: str
    note: str = ""


V10 = "VITA-1.0 (Mixtral-8x7B, 47B)"
V15 = "VITA-1.5 (Qwen2.5-7B)"
_LANG = "R1-IMG asset/language_eval2.png, row 'Mixtral-8x7B Ours' (VITA's LLM after bilingual tuning)"
_ASR = "R1-IMG asset/audio_eval.jpg"
_VIS = "R1-IMG asset/visual_eval.jpg, bar 'VITA (Mixtral 8x7B)'"

PAPER: dict[str, list[PaperFigure]] = {
    "mmlu": [PaperFigure(V10, 70.98, _LANG)],
    "ceval": [PaperFigure(V10, 56.68, _LANG)],
    "agieval": [PaperFigure(V10, 46.17, _LANG)],
    "gsm8k": [PaperFigure(V10, 75.66, _LANG)],
    "wenetspeech/test_net": [PaperFigure(V10, 12.15, _ASR)],
    "wenetspeech/test_meeting": [PaperFigure(V10, 16.53, _ASR)],
    "librispeech/dev-clean": [PaperFigure(V10, 7.57, _ASR)],
    "librispeech/dev-other": [PaperFigure(V10, 16.57, _ASR)],
    "librispeech/test-clean": [PaperFigure(V10, 8.14, _ASR)],
    "librispeech/test-other": [PaperFigure(V10, 18.41, _ASR),
                               PaperFigure(V15, 7.5, "R1.5-README (LibriSpeech test-other WER 18.4 -> 7.5)")],
    "mme": [PaperFigure(V10, 2097.0, _VIS, "perception + cognition sum")],
    "mmbench": [PaperFigure(V10, 71.8, _VIS)],
    "mmstar": [PaperFigure(V10, 46.4, _VIS)],
    "hallusionbench": [PaperFigure(V10, 39.7, _VIS)],
    "ai2d": [PaperFigure(V10, 73.1, _VIS)],
    "ocrbench": [PaperFigure(V10, 678.0, _VIS)],
    "video-mme/with-subs": [PaperFigure(V10, 59.2, _VIS, "subtitle setting not stated; probably with [inferred]")],
    "video-mme/without-subs": [PaperFigure(V10, 59.2, _VIS, "subtitle setting not stated; probably WITH "
                                           "subtitles [inferred], so not comparable to this row")],
}


def figures_for(key: str) -> list[PaperFigure]:
    """The paper's figures for a headline key ("librispeech/test-other"); [] when none is recorded."""
    return PAPER.get(key, [])
