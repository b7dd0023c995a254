"""CUDA against the CPU on the tiny presets: the same greedy ids in float32, bf16 logits close to float32's.

Each model is built with seeded random weights on the CPU and moved (`vita.load(preset, device=...)`), so both
sides hold the same numbers. The prompts (text, and an image and a spoken clip for tiny-random) were chosen so that
every greedy step is decided by a clear margin on the CPU (`MIN_MARGIN`): a float32 rounding difference between
the devices cannot flip an argmax, so a different id means a real difference in the computation.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import vita
from vita.generation.sampling import SamplingConfig
from vita.processor import Audio

pytestmark = pytest.mark.gpu  # skipped without CUDA: tests/gpu/conftest.py

NEW_TOKENS = 24
MIN_MARGIN = 1e-3  # smallest top-1 minus top-2 logit gap over the greedy steps, checked on the CPU side
BF16_REL_TOL = 0.1  # max |bf16 - fp32| over max |fp32| of the prompt logits (CPU bf16 measures ~1-4 %)


def _inputs(model: vita.Vita, preset: str):
    if preset != "tiny-random":
        return model.inputs("The quick brown fox jumps over")
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (112, 112, 3), dtype=np.uint8))
    speech = (0.1 * rng.standard_normal(16000)).astype(np.float32)  # 1 s at 16 kHz
    return model.inputs("What is in the picture?", images=[image], audio=Audio(speech, 16000))


def _greedy(model: vita.Vita, inputs, **kw) -> list[int]:
    stream = model.stream(inputs, max_new_tokens=NEW_TOKENS, stop_strings=(), **kw)
    while True:
        try:
            next(stream)
        except StopIteration as stop:
            return stop.value.token_ids


@torch.inference_mode()
def _teacher_forced_logits(model: vita.Vita, inputs, ids: list[int]) -> torch.Tensor:
    """Logits [L + n, V] (float32, CPU) of the uncached forward over the prompt and `ids`."""
    m = model.model
    prompt = m.embed(inputs.token_ids.to(m.device), inputs.pixel_values, inputs.fbanks)  # [1, L, D]
    rest = m.llm.embed(torch.tensor([ids], dtype=torch.long, device=m.device))  # [1, n, D]
    return m.llm(input_embeds=torch.cat([prompt, rest], dim=1))[0].float().cpu()


@pytest.mark.parametrize("preset", ["tiny-random", "smollm2-135m-random"])
def test_greedy_ids_match_the_cpu(preset, cuda, report):
    cpu_model = vita.load(preset, device="cpu", dtype="fp32")
    gpu_model = vita.load(preset, device=cuda, dtype="fp32")
    assert gpu_model.model.device == cuda and gpu_model.model.llm.cache is None
    inputs = _inputs(cpu_model, preset)
    cpu_ids = _greedy(cpu_model, inputs)
    logits = _teacher_forced_logits(cpu_model, inputs, cpu_ids)[-len(cpu_ids) - 1 : -1]  # [n, V] deciding each id
    top2 = logits.topk(2, dim=-1).values  # [n, 2]
    margin = float((top2[:, 0] - top2[:, 1]).min())
    assert margin > MIN_MARGIN, f"the prompt has a near-tie ({margin:.2e}); pick another so the test can decide"
    gpu_ids = _greedy(gpu_model, inputs)
    assert gpu_ids == cpu_ids
    gpu_logits = _teacher_forced_logits(gpu_model, inputs, cpu_ids)[-len(cpu_ids) - 1 : -1]
    max_diff = float((gpu_logits - logits).abs().max() / logits.abs().max())  # relative to the largest logit
    assert max_diff < 1e-4, max_diff
    # seeded sampling: the generator stays on the CPU, so the same seed draws the same noise on both devices
    sampling = SamplingConfig(temperature=1.0)
    assert _greedy(gpu_model, inputs, sampling=sampling, seed=7) == _greedy(cpu_model, inputs, sampling=sampling,
                                                                             seed=7)
    report(preset=preset, new_tokens=len(cpu_ids), min_cpu_margin=margin, max_rel_logit_diff_fp32=max_diff)


@pytest.mark.parametrize("preset", ["tiny-random", "smollm2-135m-random"])
def test_bf16_on_cuda_is_close_to_float32_on_the_cpu(preset, cuda, report):
    reference = vita.load(preset, device="cpu", dtype="fp32")
    model = vita.load(preset, device=cuda)  # no dtype: bf16 on CUDA (the dry run on the CPU: asked for)
    if cuda.type == "cpu":
        model = vita.load(preset, device=cuda, dtype="bf16")
    assert model.model.llm.dtype == torch.bfloat16
    inputs = _inputs(reference, preset)
    want = _teacher_forced_logits(reference, inputs, [])
    got = _teacher_forced_logits(model, inputs, [])
    rel = float((got - want).abs().max() / want.abs().max())
    top1 = float((got.argmax(-1) == want.argmax(-1)).float().mean())
    report(preset=preset, bf16_max_rel_err=rel, top1_agreement=top1, positions=want.shape[0])
    assert rel < BF16_REL_TOL, rel
    assert top1 >= 0.9, top1
    assert len(_greedy(model, inputs)) == NEW_TOKENS  # the whole bf16 loop runs on the device
