"""Stage timestamps of duplex turns (for `vita bench duplex` and the realtime server's latency figures).

A `StageLog` maps an utterance id to {stage: clock time} for the stages in `STAGES`; the session stamps each from
its clock when it first sees the stage done (right after the unit of work that did it). Only the latest
`MAX_STAGE_RECORDS` utterances are kept.
"""

from __future__ import annotations

STAGES = ("vad_end", "features", "prefill", "state", "first_text", "first_tts", "first_audio")
# vad_end: the turn was committed (the VAD closed the utterance, early when the state token allowed it, or text
# arrived); features: processor + media encoders done (embeddings); (speculative work stamps these before vad_end)
# prefill: the prompt's last chunk ran; state: the state token was read; first_text: first visible text of the
# reply; first_tts: its first clause synthesized; first_audio: its first samples released to the speaker
MAX_STAGE_RECORDS = 256


class StageLog(dict[int, dict[str, float]]):
    """utterance id -> stage -> clock time (see `STAGES`); the first stamp of a stage stays."""

    def stamp(self, utterance_id: int, stage: str, t: float) -> None:
        self.setdefault(utterance_id, {}).setdefault(stage, t)
        if len(self) > MAX_STAGE_RECORDS:
            del self[min(self)]
