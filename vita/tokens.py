"""Every special string and sentinel id in one place.

Media placeholders are negative sentinel ids (as in the official code) so they can never collide with a real
vocabulary id; `vita.media.prompt` expands each one to the exact number of feature rows it will receive, and
`vita.models.fusion.splice` replaces those rows in one vectorized step.
"""

from __future__ import annotations

from typing import Any

IMAGE_PLACEHOLDER = "<image>"
VIDEO_PLACEHOLDER = "<video>"
AUDIO_PLACEHOLDER = "<audio>"

IMAGE_TOKEN_ID = -200  # one per tile or video frame before expansion; tokens_per_tile after
AUDIO_TOKEN_ID = -500  # one per clip before expansion; adapter frames after
IGNORE_INDEX = -100  # label of positions that are not supervised

# Reply states (VITA-1.0 writes them as plain text at the start of every reply).
STATE_QUERY_AUDIO = "<1>"  # an effective spoken query: answer it
STATE_NOT_QUERY = "<2>"  # noise or speech not meant for the assistant: stay silent
STATE_QUERY_TEXT = "<3>"  # a typed query
STATE_TOKENS = (STATE_QUERY_AUDIO, STATE_NOT_QUERY, STATE_QUERY_TEXT)
# VITA-1.5 uses single characters for the same three states.
STATE_TOKENS_V15 = {"☞": STATE_QUERY_AUDIO, "☟": STATE_NOT_QUERY, "☜": STATE_QUERY_TEXT}

# Video sampling limits of the official code (frames per clip).
MIN_VIDEO_FRAMES = 4
MAX_VIDEO_FRAMES = 16


def split_state(text: str) -> tuple[str | None, str]:
    """Split a decoded reply into (state token or None, visible text).

    Leading whitespace before the state is tolerated; the visible text is stripped of the separating space.
    """
    stripped = text.lstrip()
    for state in STATE_TOKENS:
        if stripped.startswith(state):
            return state, stripped[len(state) :].lstrip()
    for char, state in STATE_TOKENS_V15.items():
        if stripped.startswith(char):
            return state, stripped[len(char) :].lstrip()
    return None, text


def state_lead(tokenizer: Any) -> int | None:
    """The id every state token starts with when each is several ids sharing the first ("<" of "<1>", "<2>", "<3>"
    in a tokenizer without them as special tokens); None otherwise (e.g. one id per state)."""
    ids = [tokenizer.encode(s, add_special_tokens=False) for s in STATE_TOKENS]
    firsts = {i[0] for i in ids if i}
    return firsts.pop() if all(len(i) > 1 for i in ids) and len(firsts) == 1 else None


def state_decision(tokenizer: Any, state: str = STATE_NOT_QUERY) -> tuple[tuple[int, ...], int] | None:
    """(the ids before it, the id) that decides `state` among the state tokens: the first id where its ids differ
    from every other state's ("2" after "<" for "<2>" in SmolLM2's tokenizer); None where none does."""
    ids = {s: tokenizer.encode(s, add_special_tokens=False) for s in STATE_TOKENS}
    mine = ids.get(state)
    if not mine:
        return None
    k = 0
    while k < len(mine) and any(len(o) > k and o[k] == mine[k] for s, o in ids.items() if s != state):
        k += 1
    return (tuple(mine[:k]), mine[k]) if k < len(mine) else None
