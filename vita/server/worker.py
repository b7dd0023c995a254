"""The model thread: every use of the shared model runs on one worker thread, so the event loop stays free.

    worker = ModelWorker(max_queued=8)
    ticket = worker.admit()                       # 429 when 1 running + max_queued waiting are already admitted
    value = await worker.call(fn, *args)          # run fn on the model thread, await its result
    events = worker.stream(produce)               # start produce(cancel) on the model thread now; async-iterate
    ticket.release()                              # idempotent; pass it as on_done to release when a job ends

Jobs run one at a time in submission order (one model, one KV cache). A stream's `cancel` event is set when its
consumer stops iterating (client gone), and the producer checks it between tokens. The realtime websocket can
share the same worker, so chat requests and duplex sessions never touch the model at the same time.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from vita.server.errors import APIError

T = TypeVar("T")


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
    def __init__(self, max_queued: int = 8) -> None:
        self.max_queued = max_queued
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vita-model")
        self._lock = threading.Lock()
        self._admitted = 0

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

    def submit(self, fn: Callable[..., T], *args: Any, on_done: Callable[[Future], None] | None = None) -> Future:
        future = self._executor.submit(fn, *args)
        if on_done is not None:
            future.add_done_callback(on_done)
        return future

    async def call(self, fn: Callable[..., T], *args: Any, on_done: Callable[[Future], None] | None = None) -> T:
        return await asyncio.wrap_future(self.submit(fn, *args, on_done=on_done))

    def stream(self, produce: Callable[[threading.Event], Iterator[T]], *,
               on_done: Callable[[Future], None] | None = None) -> EventStream[T]:
        return EventStream(self, produce, on_done)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


class EventStream(AsyncIterator[T]):
    """Items of `produce(cancel)` (run on the model thread, started at once) delivered to the event loop."""

    def __init__(self, worker: ModelWorker, produce: Callable[[threading.Event], Iterator[T]],
                 on_done: Callable[[Future], None] | None) -> None:
        self.cancel = threading.Event()
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._finished = False
        self.future = worker.submit(self._run, produce, on_done=on_done)

    def _put(self, kind: str, value: Any) -> None:
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, (kind, value))
        except RuntimeError:  # the loop is gone (server shutting down): nobody is listening
            self.cancel.set()

    def _run(self, produce: Callable[[threading.Event], Iterator[T]]) -> None:
        items = produce(self.cancel)
        try:
            for item in items:
                self._put("item", item)
                if self.cancel.is_set():
                    break
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which decides
            self._put("error", exc)
        else:
            self._put("end", None)
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()  # here, on the model thread: a generator's context managers (inference_mode) are per thread

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
