"""Fixtures for the benchmark-adapter tests: a fake model whose reply is a pure function of its inputs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from vita.api import Reply


class FakeModel:
    """`Vita.generate`'s interface; `answer(text, images, video, audio)` gives the reply text.

    Replies depend only on the inputs (never on call order), so a resumed run sees the same replies."""

    def __init__(self, answer: Callable[..., str], *, batch: bool = False) -> None:
        self.answer = answer
        self.calls: list[dict[str, Any]] = []
        self.batches: list[int] = []
        if batch:
            self.generate_batch = self._generate_batch

    def generate(self, text=None, *, images=(), video=None, audio=None, history=(), max_new_tokens=256,
                 sampling=None, seed=None) -> Reply:
        self.calls.append({"text": text, "images": list(images), "video": video, "audio": audio,
                           "max_new_tokens": max_new_tokens})
        reply = self.answer(text=text, images=list(images), video=video, audio=audio)
        return Reply("<3>", reply, token_ids=list(range(len(reply.split()))), finish_reason="stop")

    def _generate_batch(self, requests, *, max_new_tokens=256, sampling=None, seed=None) -> list[Reply]:
        self.batches.append(len(requests))
        return [self.generate(**r, max_new_tokens=max_new_tokens) for r in requests]


@pytest.fixture
def fake() -> type[FakeModel]:
    return FakeModel
