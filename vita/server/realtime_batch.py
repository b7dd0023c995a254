"""A realtime session's batch of model work on the shared worker, and the batches of several sessions stepped together.

    batch = Batch(session, priority, gate, config, closed=lambda: conn.closed)     # one per submission
    worker.submit(run, batch, worker, priority=priority, tag=TAG)                  # -> that session's events

On the model thread `run` ticks the session until its batch is over: no work left, the user no longer waits (an
URGENT batch: the turn is decided and its first text is out), the audio no longer runs low (a SOON batch), or its
time budget is spent (`tick_budget_s`; `turn_budget_s` for URGENT and SOON, `turn_max_s` while a turn is undecided).

Replies of several sessions decode side by side: while the running batch's next unit is a decode step, the batches
of other sessions waiting in the queue whose next unit is a decode step too join it (`ModelWorker.claim`; a session
is only taken when its driver is between steps, `BatchGate`). Each round the pending forwards of all of them run as
one batched native step (`vita.generation.loop.run_batched`: every weight row is read once for all the replies),
then each session ticks on its own logits. A session leaves the group, its events handed to its driver at once,
when its own batch is over or its next unit is not a decode step (features, a prefill, a rendered chunk: those run
in its own batch, at its own priority); when the lead's unit is not a decode step (an URGENT turn's prefill) nobody
joins it, so turn work never waits behind the others' decoding; all leave when the lead's batch ends.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from vita.duplex.session import Session
from vita.generation.loop import run_batched
from vita.server.realtime_gate import BatchGate
from vita.server.worker import NORMAL, SOON, URGENT, ModelWorker

TAG = "realtime-batch"  # the worker tag of these batches (`ModelWorker.claim`)


@dataclass
class Batch:
    """One submission of a session's model work. `config` holds `tick_budget_s`, `turn_budget_s`, `turn_max_s`."""

    session: Session
    priority: int
    gate: BatchGate
    config: Any
    closed: Callable[[], bool]
    out: list = field(default_factory=list)
    t0: float = 0.0

    def begin(self) -> None:
        with self.gate.lock:
            self.gate.started = True
        self.t0 = time.monotonic()

    def tick(self) -> None:
        self.out += self.session.tick()

    def over(self) -> bool:
        s, c = self.session, self.config
        if self.closed() or not s.has_work:
            return True
        if (self.priority == URGENT and not s.turn_pending) or (self.priority == SOON and not s.starving):
            return True
        deciding = self.priority == URGENT and s.deciding
        budget = c.turn_max_s if deciding else c.tick_budget_s if self.priority == NORMAL else c.turn_budget_s
        return time.monotonic() - self.t0 > budget


def _joinable(args: tuple) -> bool:
    """(Under the worker's queue lock.) A waiting batch joins when its driver is between steps and the session's next
    unit is a decode step; it counts as started from here on."""
    batch: Batch = args[0]  # the args of `run` (only batches carry the tag)
    if not batch.gate.enter():
        return False
    try:
        if batch.closed() or batch.session.pending_step() is None:
            return False
        batch.gate.started = True
        batch.t0 = time.monotonic()
        return True
    finally:
        batch.gate.exit()


def _leave(batch: Batch, future: Future) -> None:
    if not future.done():
        future.set_result(batch.out)


def run(lead: Batch, worker: ModelWorker | None = None) -> list:
    """On the model thread: `lead`'s batch, with the sessions that join it (module docstring); `lead`'s events."""
    lead.begin()
    members: list[tuple[Batch, Future]] = []
    try:
        while not lead.closed():
            mine = lead.session.pending_step()
            if mine is None:  # turn work or a rendered chunk: the others go on in batches of their own
                for b, f in members:
                    _leave(b, f)
                members = []
            elif worker is not None:
                members += [(args[0], f) for f, args in worker.claim(TAG, _joinable)]
            pending = [mine] if mine is not None else []
            stepping = []
            for b, f in members:
                p = None if b.closed() else b.session.pending_step()
                if p is None:
                    _leave(b, f)
                else:
                    pending.append(p)
                    stepping.append((b, f))
            members = stepping
            if len(pending) > 1:
                run_batched(pending)
            if pending and worker is not None:
                worker.rounds.append(len(pending))
            lead.tick()
            staying = []
            for b, f in members:
                try:
                    b.tick()
                except BaseException as exc:  # noqa: BLE001 - that session's driver handles it, as for its own batch
                    f.set_exception(exc)
                    continue
                if b.over():
                    _leave(b, f)
                else:
                    staying.append((b, f))
            members = staying
            if lead.over():
                break
    finally:
        for b, f in members:
            _leave(b, f)
    return lead.out
