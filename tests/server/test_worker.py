"""The model worker: one thread, URGENT jobs ahead of NORMAL ones, submission order within a class, results and
errors handed back, waiting jobs cancelled at shutdown."""

from __future__ import annotations

import asyncio
import threading

import pytest

from vita.server.worker import NORMAL, SOON, URGENT, ModelWorker


def test_urgent_then_soon_then_normal_jobs_each_in_submission_order():
    worker = ModelWorker()
    started, release, order = threading.Event(), threading.Event(), []
    worker.submit(lambda: started.set() or release.wait(10))  # occupies the thread while the rest queue up
    assert started.wait(10)
    futures = [worker.submit(order.append, name, priority=priority) for name, priority in
               [("n1", NORMAL), ("s1", SOON), ("u1", URGENT), ("n2", NORMAL), ("s2", SOON), ("u2", URGENT),
                ("n3", NORMAL)]]
    release.set()
    for f in futures:
        f.result(10)
    assert order == ["u1", "u2", "s1", "s2", "n1", "n2", "n3"]
    assert [p for p, _ in worker.waits][-7:] == [URGENT, URGENT, SOON, SOON, NORMAL, NORMAL, NORMAL]
    worker.shutdown()


def test_one_thread_results_errors_and_shutdown():
    worker = ModelWorker()

    async def main():
        names = {await worker.call(lambda: threading.current_thread().name) for _ in range(3)}
        assert names == {"vita-model"}
        assert await worker.call(lambda a, b: a + b, 2, 3, priority=URGENT) == 5
        with pytest.raises(ValueError, match="boom"):
            await worker.call(lambda: (_ for _ in ()).throw(ValueError("boom")))

    asyncio.run(main())
    started, release = threading.Event(), threading.Event()
    running = worker.submit(lambda: started.set() or release.wait(10) and "finished")
    assert started.wait(10)
    waiting = worker.submit(lambda: "never")
    worker.shutdown()
    assert waiting.cancelled()
    release.set()
    assert running.result(10) == "finished"  # the running job ends normally
    with pytest.raises(RuntimeError, match="shut down"):
        worker.submit(lambda: None)


def test_a_stream_runs_in_slices_and_other_jobs_run_between_them():
    worker = ModelWorker(slice_s=0.0)  # one item per slice
    order: list[str] = []

    def produce(cancel):
        for i in range(4):
            order.append(f"item{i}")
            if i == 0:
                worker.submit(order.append, "urgent", priority=URGENT)
                worker.submit(order.append, "normal")
            yield i

    async def main():
        events = worker.stream(produce)
        return [i async for i in events], events.future

    items, done = asyncio.run(main())
    assert items == [0, 1, 2, 3] and done.done()
    assert order[:3] == ["item0", "urgent", "normal"]  # both ran before the stream's next slice
    worker.shutdown()


def test_interleaved_chat_replies_equal_the_same_replies_one_at_a_time(model, kit):
    """Chat replies sliced one token at a time and interleaved on the model thread (each holds its own KV cache)
    give exactly the text each gives alone."""
    from concurrent.futures import ThreadPoolExecutor

    from fastapi.testclient import TestClient

    from vita.server.engine import Engine

    bodies = [{"model": "tiny-random", "max_tokens": 12, "seed": 7, "temperature": 0.8,
               "messages": [{"role": "user", "content": text}]} for text in ("hello there", "what is two plus two")]
    app = kit.make_app(Engine(model))
    with TestClient(app) as http:
        alone = [http.post("/v1/chat/completions", json=b).json()["choices"][0]["message"]["content"]
                 for b in bodies]
        app.state.vita.worker.slice_s = 0.0
        flight = {"now": 0, "max": 0, "replies": 0}
        step = app.state.vita.engine.token_ids

        def token_ids(inputs, params):
            flight["now"] += 1
            flight["max"], flight["replies"] = max(flight["max"], flight["now"]), flight["replies"] + 1
            try:
                yield from step(inputs, params)
            finally:
                flight["now"] -= 1

        app.state.vita.engine.token_ids = token_ids
        with ThreadPoolExecutor(2) as pool:
            together = list(pool.map(lambda b: http.post("/v1/chat/completions", json=b).json(), bodies * 2))
    assert [r["choices"][0]["message"]["content"] for r in together] == alone * 2
    assert flight["replies"] == 4 and flight["max"] == 2  # two replies were in flight at once


def test_jobs_run_with_the_workers_torch_threads():
    import torch

    worker = ModelWorker()
    default = worker.submit(torch.get_num_threads).result(10)
    worker.threads = 1
    assert worker.submit(torch.get_num_threads).result(10) == 1
    worker.threads = None
    assert worker.submit(torch.get_num_threads).result(10) == default
    worker.shutdown()
