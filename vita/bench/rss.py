"""Resident memory of the duplex engine with one role vs both roles active (one set of weights, a KV cache each).

`measure_rss_ratio(model)` runs a fresh Python process (`python -m vita.bench.rss SETTINGS_JSON`), so nothing else this
process loaded counts. The child loads the model, runs role 0 through a reply (embed, prefill, decode) and reads
VmRSS from /proc/self/status; then it creates role 1 (its own KV cache, taking the shared prefix from role 0 like
the session's listener does) and runs a reply on it, and reads VmRSS again. It prints one JSON line:
    {"model", "dtype", "max_seq_len", "rss_one_mb", "rss_two_mb", "ratio", "kv_cache_mb"}
"""

from __future__ import annotations

import json
import subprocess
import sys

from vita.errors import VitaError


def vm_rss_bytes() -> int:
    """This process's resident set size (VmRSS, /proc/self/status)."""
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS line in /proc/self/status")


def _measure(model: str, dtype: str, max_seq_len: int, new_tokens: int, threads: int) -> dict:
    import torch

    from vita.api import load
    from vita.duplex.roles import Engine
    from vita.processor import Turn

    torch.set_num_threads(threads)
    vita = load(model, dtype=dtype)
    engine = Engine(vita, max_seq_len=max_seq_len, max_new_tokens=new_tokens, prefill_chunk=64)

    def reply(cache, turns, donor=None) -> str:
        job = engine.start(cache, turns, donor=donor)
        while not job.done:
            job.step()
        return job.raw_text()

    question = [Turn("user", "What is the weather like today?")]
    one = engine.new_cache()
    answer = reply(one, question)
    rss_one = vm_rss_bytes()
    two = engine.new_cache()
    reply(two, [*question, Turn("assistant", answer), Turn("user", "And tomorrow?")], donor=one)
    rss_two = vm_rss_bytes()
    kv = sum(c.k_cache.numel() * c.k_cache.element_size() * 2 for c in two.caches)
    mb = 1024 * 1024
    return {"model": model, "dtype": dtype, "max_seq_len": engine.max_seq_len,
            "rss_one_mb": round(rss_one / mb, 1), "rss_two_mb": round(rss_two / mb, 1),
            "ratio": round(rss_two / rss_one, 4), "kv_cache_mb": round(kv / mb, 2)}


def measure_rss_ratio(model: str = "tiny-random", *, dtype: str = "fp32", max_seq_len: int = 512,
                      new_tokens: int = 8, threads: int = 1, timeout: float = 300.0) -> dict:
    """Run the measurement in a fresh subprocess; returns its JSON object (`ratio` = two roles / one)."""
    settings = {"model": model, "dtype": dtype, "max_seq_len": max_seq_len, "new_tokens": new_tokens,
                "threads": threads}
    cmd = [sys.executable, "-m", "vita.bench.rss", json.dumps(settings)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)  # offline: `vita/__init__.py`
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise VitaError(f"RSS measurement for {model} failed: {tail}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    """The child process: one JSON object of `_measure`'s keyword arguments in, one JSON line out."""
    settings = json.loads((sys.argv[1:] if argv is None else argv)[0])
    print(json.dumps(_measure(**settings)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
