"""`vita bench decode`: prefill and decode tokens/s at batch 1, against the memory-bandwidth bound.

Batch-1 decoding is memory-bound: every step reads every weight the step uses once. So the ceiling is

    bound_tok_s = measured copy bandwidth (bytes/s, read + write counted, like STREAM copy) / weight bytes per token

where weight bytes per token counts each tensor a decode step reads: all linear weights and norms, the output head
(for a tied model that is the embedding matrix, read in full), one embedding row, and for a MoE only the k routed
experts of each layer. The KV cache reads (small at these lengths) are left out, which makes the bound optimistic.

The same weights also run through `transformers`' `generate` (greedy, its default dynamic cache) in the same
process, so the speed-up is measured side by side on the same machine state. Both sides are timed the same way,
from the arrival time of each new token in one run: prefill tok/s = L / (first token - start), decode tok/s =
(N - 1) / (last token - first token); each figure is the best of a few runs (noise only slows a run down).

`--quantize int8 [int4]` adds weight-only quantized copies of the model (`vita.nn.quant`) and llama.cpp's Q4_1 of
SmolLM2-135M, all timed interleaved round by round with the float model (`vita.bench.decode_quant`); the JSON then
carries one entry per variant in `variants` (tok/s, bytes per token, bound, fraction, speed-ups vs llama.cpp and vs
the float model) and, with int8, issue 15's speed criteria in `acceptance`.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file

from vita.bench.decode_quant import arrival_rates, weight_bytes_per_token
from vita.models.llm import LLM


@dataclass
class DecodeBench:
    model: str
    dtype: str
    threads: int
    prompt_len: int
    new_tokens: int
    compiled: bool
    prefill_tok_s: float
    decode_tok_s: float
    weight_bytes: int
    bandwidth_gb_s: float
    bound_tok_s: float
    fraction_of_bound: float
    decode_step: str = "compiled"  # "native" (vita.generation.native_step), "compiled" (inductor) or "eager"
    gemv: str = "torch.mv"  # the one-row bf16 kernel of the module path: "native" (vita.nn.native) or "torch.mv"
    transformers_decode_tok_s: float | None = None
    speedup_vs_transformers: float | None = None
    variants: list[dict] | None = None  # --quantize: the float model and each quantized copy, interleaved
    llama_cpp_decode_tok_s: float | None = None  # --quantize: llama.cpp Q4_1 of SmolLM2-135M, same rounds
    llama_cpp: str | None = None  # what ran as llama.cpp, or why it did not
    acceptance: dict | None = None  # --quantize int8: issue 15's speed criteria (`decode_quant.acceptance`)


def copy_bandwidth(nbytes: int = 1 << 30, repeats: int = 5) -> float:
    """Best copy rate in bytes/s over a buffer far larger than the caches, read + write counted."""
    src = torch.ones(nbytes // 4, dtype=torch.float32)
    dst = torch.empty_like(src)
    dst.copy_(src)  # fault the pages in
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        dst.copy_(src)
        best = min(best, time.perf_counter() - t0)
    return 2 * nbytes / best


def _best_rates(run: Callable[[], tuple[list[float], float]], prompt_len: int, repeats: int) -> tuple[float, float]:
    """The best prefill and the best decode rate over `repeats` runs (noise only ever slows a run down)."""
    rates = [arrival_rates(*run(), prompt_len) for _ in range(repeats)]
    return max(r[0] for r in rates), max(r[1] for r in rates)


def bench_vita(llm: LLM, prompt: torch.Tensor, new_tokens: int, *, compile: bool, repeats: int,
               native: bool = True) -> tuple[float, float]:
    """(prefill tok/s, decode tok/s) of our `generate` on prompt [1, L]."""
    from vita.generation.generate import generate

    def run() -> tuple[list[float], float]:
        t0 = time.perf_counter()
        times = [time.perf_counter() for _ in generate(llm, token_ids=prompt, max_new_tokens=new_tokens,
                                                        compile=compile, native=native)]
        assert len(times) == new_tokens, "bench prompts have no stop ids, so every step must produce a token"
        return times, t0

    with torch.inference_mode():
        run()  # warm-up: compiles the decode step, allocates the cache
        return _best_rates(run, prompt.shape[1], repeats)


class ArrivalClock:
    """A transformers streamer that only notes when each new token arrives (its first `put` is the prompt)."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if self.prompt_seen:
            self.times.append(time.perf_counter())
        self.prompt_seen = True

    def end(self) -> None:
        pass


def transformers_copy(llm: LLM):
    """`transformers`' model class over the same weights, on `llm`'s device and dtype, or raise ImportError.

    Made through an on-disk HF checkpoint, so transformers applies its own layout conversions (e.g. fused experts).
    """
    import transformers

    from vita.checkpoint.hf_llm import llm_config_to_hf, llm_export_keymap
    from vita.checkpoint.keymap import map_keys

    with tempfile.TemporaryDirectory() as tmp:
        hf_cfg = llm_config_to_hf(llm.config)
        (Path(tmp) / "config.json").write_text(json.dumps(hf_cfg))
        state = map_keys(llm.state_dict(), llm_export_keymap(llm.config, prefix=""), source="bench model")
        save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, str(Path(tmp) / "model.safetensors"))
        cls = getattr(transformers, hf_cfg["architectures"][0])
        return cls.from_pretrained(tmp, dtype=llm.dtype).to(llm.device).eval()


def bench_transformers(llm: LLM, prompt: torch.Tensor, new_tokens: int, *, repeats: int) -> float:
    """Decode tok/s of `transformers` generate (greedy) on the same weights, or raise ImportError."""
    model = transformers_copy(llm)

    def run() -> tuple[list[float], float]:
        clock = ArrivalClock()
        t0 = time.perf_counter()
        model.generate(prompt, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                       pad_token_id=0, streamer=clock)
        assert len(clock.times) == new_tokens
        return clock.times, t0

    with torch.inference_mode():
        run()  # warm-up
        return _best_rates(run, prompt.shape[1], repeats)[1]


def run_bench(
    model: str = "smollm2-135m-random",
    *,
    dtype: str = "bf16",
    prompt_len: int = 64,
    new_tokens: int = 64,
    threads: int | None = None,
    compile: bool = True,
    transformers: bool = True,
    repeats: int = 3,
    native: bool = True,
    quantize: list[str] | None = None,
) -> DecodeBench:
    from vita.checkpoint.load import load_model

    if threads:
        torch.set_num_threads(threads)
    vita_model, _ = load_model(model, dtype=dtype)
    llm = vita_model.llm
    del vita_model
    gen = torch.Generator().manual_seed(0)
    prompt = torch.randint(3, llm.config.vocab_size, (1, prompt_len), generator=gen)  # [1, L]
    weight_bytes = weight_bytes_per_token(llm)
    bandwidth = copy_bandwidth()

    hf_tok_s = None
    if transformers:
        try:
            hf_tok_s = bench_transformers(llm, prompt, new_tokens, repeats=repeats)
        except ImportError:
            print("transformers is not installed: skipping the comparison", file=sys.stderr)
    variants = llama_tok_s = llama_note = accept = None
    if quantize:
        from vita.bench.decode_quant import (
            acceptance,
            bench_interleaved,
            open_llama_cpp,
            quantized_copies,
            variant_rows,
        )

        copies = quantized_copies(llm, quantize)  # before fusing: the quantizer reads the separate projections
        llm.fuse_()
        llama, llama_note = open_llama_cpp(model, torch.get_num_threads(), prompt_len + new_tokens + 8)
        rates, llama_tok_s = bench_interleaved({dtype: llm, **copies}, prompt, new_tokens, compile=compile,
                                               native=native, repeats=repeats, llama=llama)
        prefill_tok_s, decode_tok_s = rates[dtype]
        variants = variant_rows({dtype: llm, **copies}, rates, dtype, bandwidth, llama_tok_s, compile=compile,
                                native=native)
        accept = acceptance(variants)
    else:
        llm.fuse_()  # after the transformers copy, which reads the unfused parameters
        prefill_tok_s, decode_tok_s = bench_vita(llm, prompt, new_tokens, compile=compile, repeats=repeats,
                                                 native=native)
    bound = bandwidth / weight_bytes
    from vita.generation.generate import decode_step_kind
    from vita.nn.native import native_gemv

    return DecodeBench(
        model=model, dtype=dtype, threads=torch.get_num_threads(), prompt_len=prompt_len, new_tokens=new_tokens,
        compiled=compile, prefill_tok_s=prefill_tok_s, decode_tok_s=decode_tok_s, weight_bytes=weight_bytes,
        bandwidth_gb_s=bandwidth / 1e9, bound_tok_s=bound, fraction_of_bound=decode_tok_s / bound,
        decode_step=decode_step_kind(llm, compile, native), gemv="native" if native_gemv() is not None else "torch.mv",
        transformers_decode_tok_s=hf_tok_s,
        speedup_vs_transformers=None if hf_tok_s is None else decode_tok_s / hf_tok_s,
        variants=variants, llama_cpp_decode_tok_s=llama_tok_s, llama_cpp=llama_note, acceptance=accept,
    )


def format_table(r: DecodeBench) -> str:
    rows = [
        ("model", f"{r.model} ({r.dtype}, {r.threads} threads, {r.decode_step} decode step)"),
        ("prefill", f"{r.prefill_tok_s:.0f} tok/s ({r.prompt_len}-token prompt)"),
        ("decode", f"{r.decode_tok_s:.1f} tok/s ({r.new_tokens} new tokens, batch 1)"),
        ("weights read per token", f"{r.weight_bytes / 1e6:.1f} MB"),
        ("copy bandwidth", f"{r.bandwidth_gb_s:.1f} GB/s"),
        ("bandwidth bound", f"{r.bound_tok_s:.1f} tok/s"),
        ("fraction of bound", f"{100 * r.fraction_of_bound:.0f} %"),
    ]
    if r.transformers_decode_tok_s is not None:
        rows.append(("transformers generate", f"{r.transformers_decode_tok_s:.1f} tok/s"))
        rows.append(("speed-up vs transformers", f"{r.speedup_vs_transformers:.2f}x"))
    if r.variants is not None:
        llama = f"{r.llama_cpp_decode_tok_s:.1f} tok/s" if r.llama_cpp_decode_tok_s is not None else "-"
        rows.append(("llama.cpp Q4_1", f"{llama} ({r.llama_cpp})"))
        for v in r.variants:
            vs = f", {v['speedup_vs_float']:.2f}x {r.dtype}"
            vs += "" if v["speedup_vs_llama_cpp"] is None else f", {v['speedup_vs_llama_cpp']:.2f}x llama.cpp"
            rows.append((f"decode {v['weights']}", f"{v['decode_tok_s']:.1f} tok/s, {v['weight_bytes'] / 1e6:.1f} MB"
                         f"/token, bound {v['bound_tok_s']:.1f} tok/s ({100 * v['fraction_of_bound']:.0f} %){vs}"))
    if r.acceptance is not None:
        a = r.acceptance
        ok = {True: "met", False: "NOT met", None: "not measured"}
        vs = "-" if a["int8_vs_llama_cpp"] is None else f"{a['int8_vs_llama_cpp']:.2f}x"
        rows.append(("int8 >= 2.0x llama.cpp", f"{vs}: {ok[a['int8_vs_llama_cpp_ok']]}"))
        rows.append(("int8 >= 75 % of its bound", f"{100 * a['int8_fraction_of_bound']:.0f} %: "
                                                   f"{ok[a['int8_fraction_ok']]}"))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
