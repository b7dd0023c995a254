"""`BatchGate`: the driver's steps hold a waiting batch off, one at a time, and none runs once it has started."""

from __future__ import annotations

import threading

from vita.server.realtime_gate import FREE, BatchGate


def test_a_step_holds_the_batch_off_and_none_runs_after_it_started():
    gate, seen = BatchGate(), []
    assert gate.enter()
    starter = threading.Thread(target=lambda: (gate.lock.acquire(), setattr(gate, "started", True),
                                               seen.append("started"), gate.lock.release()))
    starter.start()
    starter.join(0.2)
    assert starter.is_alive() and seen == []  # the batch waits for the step
    gate.exit()
    starter.join(5)
    assert seen == ["started"] and not gate.enter()  # started: no step any more
    assert FREE.enter() and FREE.enter()  # outside a batch every step runs
    FREE.exit()
