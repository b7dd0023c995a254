"""Stage timestamps of duplex turns (for `vita bench duplex` and the realtime server's latency figures).

A `StageLog` maps an utterance id to {stage: clock time} for the stages in `STAGES`; the session stamps each from
its clock when it first sees the stage done (right after the unit of work that did it; `stamp_step` reads a turn's
job after one of its steps). Only the latest `MAX_STAGE_RECORDS` utterances are kept.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vita.duplex.roles import Job

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

    def stamp_step(self, utterance_id: int, job: Job, delta: str, t: float) -> None:
        """Stamp what a turn's `job` has done once a step of it returned `delta`: the media encoded (`features`), the
        prompt prefilled, the state token read, the first visible text."""
        phase = getattr(job, "phase", None)  # ReplyJob's; a test double may have none
        if phase in ("prefill", "decode", "done"):
            self.stamp(utterance_id, "features", t)
        if phase in ("decode", "done"):
            self.stamp(utterance_id, "prefill", t)
        if job.state_resolved:
            self.stamp(utterance_id, "state", t)
        if delta.strip():
            self.stamp(utterance_id, "first_text", t)
