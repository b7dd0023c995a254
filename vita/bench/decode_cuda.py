"""`vita bench decode --device cuda`: batch-1 prefill and decode tok/s on one CUDA device, beside `transformers`.

The figures mean what they mean on the CPU (`vita.bench.decode`): prefill tok/s = L / (first token - start),
decode tok/s = (N - 1) / (last token - first token), the best of a few runs, and the bound is the device's
measured copy bandwidth (read + write counted) over the weight bytes one decode step reads. Every new token is a
host-visible int (our loop reads it back; transformers' stopping check syncs each step), so wall-clock arrival times
are honest without extra synchronisation. The transformers side loads the same weights from an on-disk HF
checkpoint, moved to the same device in the same dtype.

Never run on a GPU yet in this repository (no GPU where it was written): `tests/gpu/run_on_device.sh`.
"""

from __future__ import annotations

import torch

from vita.bench.decode import ArrivalClock, DecodeBench, bench_vita, transformers_copy, weight_bytes_per_token
from vita.generation.generate import decode_step_kind
from vita.models.llm import LLM


def cuda_copy_bandwidth(device: torch.device, nbytes: int = 1 << 30, repeats: int = 5) -> float:
    """Best device-to-device copy rate in bytes/s (read + write counted), timed with CUDA events."""
    src = torch.ones(nbytes // 4, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    dst.copy_(src)
    best = float("inf")
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        dst.copy_(src)
        end.record()
        end.synchronize()
        best = min(best, start.elapsed_time(end) / 1e3)
    del src, dst
    torch.cuda.empty_cache()
    return 2 * nbytes / best


def transformers_decode_tok_s(llm: LLM, prompt: torch.Tensor, new_tokens: int, *, repeats: int) -> float:
    """Decode tok/s of transformers' greedy `generate` on the same weights and device; ImportError without it."""
    model = transformers_copy(llm)
    best = 0.0
    with torch.inference_mode():
        for i in range(repeats + 1):  # the first run warms up
            clock = ArrivalClock()
            model.generate(prompt, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                           pad_token_id=0, streamer=clock)
            if i:
                best = max(best, (len(clock.times) - 1) / (clock.times[-1] - clock.times[0]))
    del model
    torch.cuda.empty_cache()
    return best


def run_bench(model: str, device: torch.device, *, dtype: str = "bf16", prompt_len: int = 64, new_tokens: int = 64,
              compile: bool = False, transformers: bool = True, repeats: int = 3) -> DecodeBench:
    """The decode figures of `model` (preset or directory) on the CUDA `device`."""
    from vita.checkpoint.load import load_model

    vita_model, _ = load_model(model, dtype=dtype, device=device)
    llm = vita_model.llm
    del vita_model
    gen = torch.Generator().manual_seed(0)
    prompt = torch.randint(3, llm.config.vocab_size, (1, prompt_len), generator=gen).to(device)  # [1, L]
    weight_bytes = weight_bytes_per_token(llm)
    bandwidth = cuda_copy_bandwidth(device)
    hf_tok_s = None
    if transformers:
        try:
            hf_tok_s = transformers_decode_tok_s(llm, prompt, new_tokens, repeats=repeats)
        except ImportError:
            pass
    llm.fuse_()  # after the transformers copy, which reads the unfused parameters
    prefill_tok_s, decode_tok_s = bench_vita(llm, prompt, new_tokens, compile=compile, repeats=repeats)
    bound = bandwidth / weight_bytes
    return DecodeBench(
        model=f"{model} on {torch.cuda.get_device_name(device)} ({device})", dtype=dtype,
        threads=torch.get_num_threads(), prompt_len=prompt_len, new_tokens=new_tokens, compiled=compile,
        prefill_tok_s=prefill_tok_s,
        decode_tok_s=decode_tok_s, weight_bytes=weight_bytes, bandwidth_gb_s=bandwidth / 1e9, bound_tok_s=bound,
        fraction_of_bound=decode_tok_s / bound, decode_step=decode_step_kind(llm, compile), gemv="cuBLAS",
        transformers_decode_tok_s=hf_tok_s,
        speedup_vs_transformers=None if hf_tok_s is None else decode_tok_s / hf_tok_s,
    )
