"""Realtime sessions' batches on the model worker (`vita.server.realtime_batch`): a batch whose next unit is a decode
step takes over the waiting batches that decode too, their forwards run as one batched step, each session gets the
ids it gets alone, a joined batch is handed back as soon as it is over, and turn work runs without joiners."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import pytest
import torch

from tests.generation.test_loop import _embeds, _llm
from vita.generation.loop import PromptCache, TokenLoop
from vita.server.realtime_batch import TAG, Batch, run
from vita.server.realtime_gate import BatchGate
from vita.server.worker import NORMAL, URGENT, ModelWorker

pytestmark = pytest.mark.usefixtures("requires_native")


@dataclass(frozen=True)
class Budgets:
    tick_budget_s: float = 30.0
    turn_budget_s: float = 30.0
    turn_max_s: float = 30.0


class FakeSession:
    """What `run` uses of a duplex `Session`, over one real reply loop: a tick is one step of it."""

    def __init__(self, loop: TokenLoop, *, prefill_first: bool = True) -> None:
        self.loop, self.ids, self.ticks = loop, [], 0
        if prefill_first:
            self.tick()  # the prompt (and the first id): the next unit is a decode step

    def pending_step(self):
        return self.loop.pending_step()

    def tick(self) -> list:
        self.ticks += 1
        tok = self.loop.step()
        if tok is not None:
            self.ids.append(tok)
        return [tok] if tok is not None else []

    @property
    def has_work(self) -> bool:
        return not self.loop.done

    turn_pending = starving = deciding = False


PROMPTS = [torch.tensor([5, 17, 33, 2, 81, 40]), torch.tensor([9, 12, 60]), torch.tensor([7, 7, 1, 90, 33, 12, 44])]


def _loop(llm, ids, n: int = 10) -> TokenLoop:
    return TokenLoop(llm, PromptCache(llm, 64), _embeds(llm, ids), max_new_tokens=n)


def _blocked(worker: ModelWorker) -> threading.Event:
    """Hold the model thread in a job until the event is set (so the batches submitted meanwhile wait together)."""
    go = threading.Event()
    worker.submit(go.wait, 10)
    return go


def test_waiting_decode_batches_join_and_each_gets_its_own_ids():
    llm = _llm(torch.bfloat16)
    alone = [list(_loop(llm, p)) for p in PROMPTS]
    sessions = [FakeSession(_loop(llm, p)) for p in PROMPTS]
    for s, ids in zip(sessions, alone, strict=True):
        assert s.ids == ids[:1]
    worker = ModelWorker()
    go = _blocked(worker)
    batches = [Batch(s, NORMAL, BatchGate(), Budgets(), lambda: False) for s in sessions]
    futures = [worker.submit(run, b, worker, priority=NORMAL, tag=TAG) for b in batches]
    go.set()
    outs = [f.result(timeout=30) for f in futures]
    worker.shutdown()
    assert [s.ids for s in sessions] == alone  # the same greedy ids as each reply decoded alone
    assert outs == [ids[1:] for ids in alone]  # each batch's events went to its own future
    assert all(b.gate.started for b in batches)
    assert max(worker.rounds) == 3 and sum(worker.rounds) == sum(len(ids) - 1 for ids in alone)


def test_a_joined_batch_is_handed_back_when_over_and_turn_work_runs_alone():
    llm = _llm(torch.bfloat16)
    short = FakeSession(_loop(llm, PROMPTS[1], n=3))  # over after two more ids
    long = FakeSession(_loop(llm, PROMPTS[0], n=12))
    worker = ModelWorker()
    go = _blocked(worker)
    lead = worker.submit(run, Batch(long, NORMAL, BatchGate(), Budgets(), lambda: False), worker, tag=TAG)
    joined = worker.submit(run, Batch(short, NORMAL, BatchGate(), Budgets(), lambda: False), worker, tag=TAG)
    handed_back = threading.Event()
    joined.add_done_callback(lambda f: handed_back.set() if not lead.done() else None)
    go.set()
    lead.result(timeout=30)
    assert joined.result(timeout=5) == short.ids[1:] and handed_back.is_set()  # back before the lead ended

    # a lead whose unit is turn work (its prompt) takes nobody: the waiting decode batch keeps its own turn
    turn = FakeSession(_loop(llm, PROMPTS[2]), prefill_first=False)
    other = FakeSession(_loop(llm, PROMPTS[0]))
    budgets = Budgets(tick_budget_s=0.0, turn_budget_s=0.0, turn_max_s=0.0)  # one tick per batch
    go = _blocked(worker)
    first = worker.submit(run, Batch(turn, URGENT, BatchGate(), budgets, lambda: False), worker, tag=TAG,
                          priority=URGENT)
    second = worker.submit(run, Batch(other, NORMAL, BatchGate(), budgets, lambda: False), worker, tag=TAG)
    go.set()
    first.result(timeout=30)
    second.result(timeout=30)
    worker.shutdown()
    assert turn.ticks == 1 and other.ticks == 2  # the prompt ran alone; the other batch ran on its own turn


def test_a_batch_whose_driver_is_mid_step_is_not_taken():
    llm = _llm(torch.bfloat16)
    a, b = FakeSession(_loop(llm, PROMPTS[0])), FakeSession(_loop(llm, PROMPTS[1]))
    worker = ModelWorker()
    go = _blocked(worker)
    busy = BatchGate()
    assert busy.enter()  # b's driver is in a step: its batch must wait, not join
    fa = worker.submit(run, Batch(a, NORMAL, BatchGate(), Budgets(), lambda: False), worker, tag=TAG)
    fb = worker.submit(run, Batch(b, NORMAL, busy, Budgets(), lambda: False), worker, tag=TAG)
    go.set()
    fa.result(timeout=30)
    assert not fb.done() and max(worker.rounds) == 1
    busy.exit()
    fb.result(timeout=30)
    worker.shutdown()
    assert a.loop.done and b.loop.done
