"""The model thread: every use of the shared model runs on one worker thread, so the event loop stays free.

    worker = ModelWorker(max_queued=8)
    ticket = worker.admit()                       # 429 when 1 running + max_queued waiting are already admitted
    value = await worker.call(fn, *args)          # run fn on the model thread, await its result
    value = await worker.call(fn, priority=URGENT)  # ahead of every SOON and NORMAL job still waiting
    events = worker.stream(produce)               # run produce(cancel) on the model thread, in slices; async-iterate
    ticket.release()                              # idempotent; pass it as on_done to release when a job ends
    worker.submit(fn, *args, tag=T)               # a job a running one may take over: worker.claim(T, accept)

Jobs run one at a time (one model): URGENT ones first, then SOON, then NORMAL ones, each class in submission
order. The realtime sessions submit their turn work (a user waiting for the end of their turn to be answered) as
URGENT, the decoding of a reply whose queued audio runs low (`Session.starving`: the speaker would run dry) as SOON,
and everything else (decoding a reply with audio queued ahead, chat requests) as NORMAL, so with many sessions a turn
never queues behind the others' decode steps, nor a reply's next words behind decoding that can wait. Each realtime
submission is bounded (`tick_budget_s`, `turn_budget_s`), so the higher classes cannot starve the rest for long; a
stream (a chat reply) runs in slices of `slice_s` (NORMAL jobs, each at the back of the queue), so it never holds the
model for longer either. A stream's `cancel` event is set when its consumer stops iterating (client gone), and the
producer checks it between tokens. The realtime websocket shares the same worker, so chat requests and duplex
sessions never touch the model at the same time.

`threads`: torch's intra-op threads for the jobs, set on the model thread before each one (None: the count the
process had). The realtime hub lowers it while sessions are open: their audio work (VAD, echo gate, TTS, the event
loop) needs a core, and the native decode step's threads meet at barriers, so one of them preempted stalls the
step (vita-mini on 2 cores beside one busy process: 17 ms a token on 1 thread, 370-730 ms on 2).
A running job may take over waiting jobs submitted with the same `tag` (`claim`, on the model thread): the realtime
sessions' batches do, so that the replies of several sessions decode side by side in one batched forward
(`vita.server.realtime_batch`); the claimer then owns their futures.
`waits` keeps the latest queueing delays (priority, seconds from submit to start) for `vita bench serve`, `rounds`
the sizes of the latest rounds of decode steps run side by side.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Future
from typing import Any, TypeVar

from vita.server.errors import APIError

T = TypeVar("T")
URGENT, SOON, NORMAL = 0, 1, 2  # job priorities (lower runs first)


class Ticket:
    def __init__(self, worker: ModelWorker) -> None:
        self._worker = worker
        self._released = False

    def release(self, *_: Any) -> None:
        with self._worker._lock:
            if not self._released:
                self._released = True
                self._worker._admitted -= 1


class ModelWorker:
    def __init__(self, max_queued: int = 8, *, slice_s: float = 0.05) -> None:
        self.max_queued, self.slice_s = max_queued, slice_s
        self._lock = threading.Lock()  # admission
        self._admitted = 0
        self._cond = threading.Condition()  # the queue below
        self._queue: list[tuple[int, int, float, Future, Callable[..., Any], tuple, object]] = []  # a heap
        self._order = itertools.count()
        self._thread: threading.Thread | None = None  # started by the first job
        self._closed = False
        self.threads: int | None = None  # torch intra-op threads for the jobs (None: the process's count)
        self.waits: deque[tuple[int, float]] = deque(maxlen=4096)  # (priority, seconds queued), newest last
        self.rounds: deque[int] = deque(maxlen=4096)  # decode steps run side by side per batched round (claimers)

    @property
    def admitted(self) -> int:
        return self._admitted

    def admit(self) -> Ticket:
        with self._lock:
            if self._admitted >= 1 + self.max_queued:
                raise APIError(429, f"the server is busy: 1 request running and {self.max_queued} waiting "
                               f"(--max-queued {self.max_queued}); retry later", type="rate_limit_error",
                               code="server_busy")
            self._admitted += 1
        return Ticket(self)

    def submit(self, fn: Callable[..., T], *args: Any, on_done: Callable[[Future], None] | None = None,
               priority: int = NORMAL, tag: object = None) -> Future:
        future: Future = Future()
        if on_done is not None:
            future.add_done_callback(on_done)
        with self._cond:
            if self._closed:
                raise RuntimeError("the model worker is shut down")
            heapq.heappush(self._queue, (priority, next(self._order), time.monotonic(), future, fn, args, tag))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="vita-model", daemon=True)
                self._thread.start()
            self._cond.notify()
        return future

    async def call(self, fn: Callable[..., T], *args: Any, on_done: Callable[[Future], None] | None = None,
                   priority: int = NORMAL) -> T:
        return await asyncio.wrap_future(self.submit(fn, *args, on_done=on_done, priority=priority))

    def stream(self, produce: Callable[[threading.Event], Iterator[T]], *,
               on_done: Callable[[Future], None] | None = None) -> EventStream[T]:
        return EventStream(self, produce, on_done, self.slice_s)

    def claim(self, tag: object, accept: Callable[[tuple], bool]) -> list[tuple[Future, tuple]]:
        """From the running job: take over the waiting jobs submitted with `tag` whose args `accept` (asked in queue
        order, under the queue's lock: it must not block), as (future, args); they count as started now and the
        caller resolves their futures. Cancelled ones are dropped."""
        taken: list[tuple[Future, tuple]] = []
        with self._cond:
            keep = []
            for job in sorted(self._queue):
                if tag is None or job[6] != tag or not accept(job[5]):
                    keep.append(job)
                elif job[3].set_running_or_notify_cancel():
                    self.waits.append((job[0], time.monotonic() - job[2]))
                    taken.append((job[3], job[5]))
            if len(keep) < len(self._queue):
                heapq.heapify(keep)
                self._queue = keep
        return taken

    def shutdown(self) -> None:
        """Cancel the jobs still waiting; the running one finishes (its thread then ends)."""
        with self._cond:
            self._closed = True
            waiting, self._queue = self._queue, []
            self._cond.notify_all()
        for job in waiting:
            job[3].cancel()

    def _run(self) -> None:
        import torch

        default = torch.get_num_threads()
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if not self._queue:
                    return
                priority, _, queued, future, fn, args, _ = heapq.heappop(self._queue)
            if not future.set_running_or_notify_cancel():
                continue
            self.waits.append((priority, time.monotonic() - queued))
            if torch.get_num_threads() != (self.threads or default):
                torch.set_num_threads(self.threads or default)  # this thread's (OpenMP's are per thread)
            try:
                result = fn(*args)
            except BaseException as exc:  # noqa: BLE001 - handed to whoever awaits the future
                future.set_exception(exc)
            else:
                future.set_result(result)
            del fn, args, future  # the job's references (a closed session's) go now, not at the next job


class EventStream(AsyncIterator[T]):
    """Items of `produce(cancel)` delivered to the event loop. The producer runs on the model thread a slice at a time
    (items for up to `slice_s` seconds per worker job, then the job is queued again behind the others), so it must
    leave no thread state set across its yields (an `inference_mode` block around a `yield` would stay on for the
    jobs in between). `future` is done when the producer has ended (`on_done` is called then)."""

    def __init__(self, worker: ModelWorker, produce: Callable[[threading.Event], Iterator[T]],
                 on_done: Callable[[Future], None] | None, slice_s: float) -> None:
        self.cancel = threading.Event()
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._finished = False
        self._worker, self._produce, self._slice_s = worker, produce, slice_s
        self._items: Iterator[T] | None = None
        self.future: Future = Future()
        if on_done is not None:
            self.future.add_done_callback(on_done)
        self._next_slice()

    def _next_slice(self) -> None:
        try:
            self._worker.submit(self._slice).add_done_callback(self._dropped)
        except RuntimeError as exc:  # the worker is shut down
            self._end(("error", exc))

    def _dropped(self, job: Future) -> None:
        if job.cancelled():  # the worker shut down with this slice waiting
            self._end(("error", RuntimeError("the model worker is shut down")))

    def _put(self, kind: str, value: Any) -> None:
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, (kind, value))
        except RuntimeError:  # the loop is gone (server shutting down): nobody is listening
            self.cancel.set()

    def _slice(self) -> None:
        end = time.monotonic() + self._slice_s
        try:
            if self._items is None:
                self._items = self._produce(self.cancel)
            while not self.cancel.is_set():
                self._put("item", next(self._items))
                if time.monotonic() > end:
                    self._next_slice()
                    return
        except StopIteration:
            pass
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which decides
            self._end(("error", exc))
            return
        self._end(("end", None))

    def _end(self, message: tuple[str, Any]) -> None:
        if self.future.done():
            return
        close = getattr(self._items, "close", None)
        if close is not None:
            close()  # on the model thread (or at shutdown, where nothing runs there any more)
        self.future.set_result(None)  # before the consumer hears the end: a finished stream's future is done
        self._put(*message)

    def __aiter__(self) -> EventStream[T]:
        return self

    async def __anext__(self) -> T:
        if self._finished:
            raise StopAsyncIteration
        try:
            kind, value = await self._queue.get()
        except BaseException:
            self.cancel.set()
            raise
        if kind == "item":
            return value
        self._finished = True
        if kind == "error":
            raise value
        raise StopAsyncIteration

    def close(self) -> None:
        self.cancel.set()
