"""A realtime session's model batch as its driver sees it while the batch waits for the shared model worker.

    gate = BatchGate()                     # one per batch; the batch sets `started` (under `lock`) as it begins
    if gate.enter():                       # the batch has not started: it is held off while this step runs
        try: ...touch the session...       # one synchronous step (never an await inside)
        finally: gate.exit()

`FREE` is the gate of no batch: every step may run. `vita.server.realtime_connection` feeds audio, collects
rendered speech and releases playback this way while the session's batch queues behind other sessions' work.
"""

from __future__ import annotations

import threading


class BatchGate:
    """A model batch's start, as the driver sees it: `started` is set under `lock` when the batch begins on the
    model thread; until then the driver may go on with the session, a step at a time (`enter`/`exit`: the lock is
    held only while a step runs, never across an await, so the model thread waits at most for that step)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.started = False

    def enter(self) -> bool:
        """Hold the batch off for one step: False once it has started (or is starting)."""
        if not self.lock.acquire(blocking=False):
            return False
        if self.started:
            self.lock.release()
            return False
        return True

    def exit(self) -> None:
        self.lock.release()


class _Free(BatchGate):
    """No batch waiting: every step may run."""

    def enter(self) -> bool:
        return True

    def exit(self) -> None:
        pass


FREE = _Free()  # outside a batch
