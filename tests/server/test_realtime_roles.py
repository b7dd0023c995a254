"""The realtime server's role engine builds the duplex engine's jobs (end-of-turn score, state bias), bounded."""

from __future__ import annotations

import numpy as np

from vita.config import SAMPLE_RATE
from vita.processor import Audio, Turn
from vita.server.realtime_roles import BoundedJob, BoundedRoles


def test_served_jobs_score_the_end_of_turn_and_skip_the_bias_over_a_reply(model):
    roles = BoundedRoles(model, max_seq_len=1024, max_new_tokens=4)
    assert roles.turn_end is not None
    speech = np.sin(np.arange(SAMPLE_RATE) * 2 * np.pi * 220 / SAMPLE_RATE).astype(np.float32) * 0.3
    turns = [Turn("user", [Audio(speech, SAMPLE_RATE)])]
    first, over = roles.start(roles.new_cache(), turns), roles.start(roles.new_cache(), turns, over_reply=True)
    assert isinstance(first, BoundedJob) and isinstance(over, BoundedJob)
    assert first.state_bias and not over.state_bias
    assert first.turn_end is roles.turn_end  # the pause rule's score (it was missing from served jobs before)
    while not first.done:
        first.step()
    assert first.finish_reason in ("stop", "length")
