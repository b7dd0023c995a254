"""`python -m vita.cli.tools quant_quality`: how far int8 / int4 weights move a model's predictions from its bf16 ones.

For each text of a small packaged set (`TEXTS`: twenty short passages of plain prose and question-and-answer pairs
written for this check, not taken from any evaluation set), the bf16 model's next-token distribution p at every
position is compared with the quantized model's q over the same tokens (teacher-forced, one full forward each):

    KL(p || q) = sum_v p_v (log p_v - log q_v)     averaged over every position of every text (nats)
    greedy agreement = share of positions where argmax p == argmax q

Variants: int8 and int4 (group 32), each with the output head quantized (int8 for both) and with the head left in
bf16 (for a tied model the head is the embedding matrix, a large share of the bytes read per token). The quantized
layers run the module path (dequantized weights, float32 sums). Where the native library is available, each fully
quantized variant is also run token by token through the native decode step ("int8 native step", ...), whose integer
kernels also round each GEMV's input to int16: that is what `generate` decodes with.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from vita.generation.native_step import NativeStep
from vita.models.llm import LLM

TEXTS = (
    "The old lighthouse stood at the end of the harbour wall, and every evening its keeper climbed the spiral stairs.",
    "Question: What do plants need to make their own food? Answer: Sunlight, water and carbon dioxide from the air.",
    "She packed a small bag with bread, cheese and two apples before setting out along the river path.",
    "Question: How many days are there in a leap year? Answer: There are 366 days in a leap year.",
    "The committee met on Tuesday to discuss the new library, but they could not agree on where to build it.",
    "Rain had fallen all night, so the streets were shining when the first buses left the depot at dawn.",
    "Question: Why does ice float on water? Answer: Because ice is less dense than the liquid water around it.",
    "My grandfather kept a notebook of every bird he saw, with the date, the weather and a tiny drawing.",
    "To make a simple soup, soften an onion in butter, add chopped carrots and stock, and simmer for twenty minutes.",
    "Question: What is the largest planet in our solar system? Answer: Jupiter is the largest planet.",
    "The train was late again, and the passengers on the platform looked at their watches and sighed.",
    "A good password is long, hard to guess and never used for more than one account.",
    "Question: Who wrote letters to explain the rules of the game? Answer: The club secretary wrote them each spring.",
    "In the workshop, the smell of sawdust mixed with coffee as the carpenter measured the oak boards twice.",
    "Children in the village learned to swim in the lake, where the water stayed cold even in August.",
    "Question: What happens when you mix red and blue paint? Answer: You get purple.",
    "The museum opens at nine, closes at five, and is free for everyone on the first Sunday of the month.",
    "When the power went out, we lit candles, played cards and listened to the wind rattle the windows.",
    "Question: How can I keep bread fresh for longer? Answer: Store it in a cool, dry place in a paper bag.",
    "He finally fixed the bicycle chain, wiped the grease from his hands and rode off down the hill laughing.",
)


@dataclass
class QuantQuality:
    model: str
    variant: str  # "int8", "int4", "int8 (bf16 head)", ...
    positions: int
    kl_nats: float  # mean KL(bf16 || variant) per position
    kl_max: float  # the largest KL at one position
    greedy_agreement: float  # share of positions with the same argmax


def kl_and_agreement(ref: torch.Tensor, other: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-position KL(ref || other) [L] and argmax equality [L] from logits [L, V] (float32 math)."""
    logp = torch.log_softmax(ref.float(), dim=-1)
    logq = torch.log_softmax(other.float(), dim=-1)
    kl = (logp.exp() * (logp - logq)).sum(dim=-1)
    return kl, ref.argmax(dim=-1) == other.argmax(dim=-1)


@torch.inference_mode()
def measure(model: str = "smollm2-135m", *, modes: tuple[str, ...] = ("int8", "int4"),
            texts: tuple[str, ...] = TEXTS) -> list[QuantQuality]:
    """KL and greedy agreement of each quantized variant against the bf16 model (module docstring)."""
    from vita.checkpoint.load import load_model
    from vita.checkpoint.quantized import bits_of
    from vita.nn.quant import quantize_llm_

    vita_model, tokenizer = load_model(model, dtype="bf16")
    llm = vita_model.llm
    ids = [torch.tensor([tokenizer.encode(t)]) for t in texts]  # [1, L] each
    reference = [llm(x)[0] for x in ids]  # [L, V] each
    results = []
    for mode in modes:
        for head in (True, False):
            variant = quantize_llm_(copy.deepcopy(llm), bits_of(mode), head=head)
            kls, same = [], []
            for x, ref in zip(ids, reference, strict=True):
                kl, eq = kl_and_agreement(ref, variant(x)[0])
                kls.append(kl)
                same.append(eq)
            kl, eq = torch.cat(kls), torch.cat(same)
            results.append(QuantQuality(model, mode if head else f"{mode} (bf16 head)", int(kl.numel()),
                                        float(kl.mean()), float(kl.max()), float(eq.float().mean())))
            if head and NativeStep.unsupported(variant) is None:
                kls, same = [], []
                for x, ref in zip(ids, reference, strict=True):
                    kl, eq = kl_and_agreement(ref, native_logits(variant, x[0].tolist()))
                    kls.append(kl)
                    same.append(eq)
                kl, eq = torch.cat(kls), torch.cat(same)
                results.append(QuantQuality(model, f"{mode} native step", int(kl.numel()), float(kl.mean()),
                                            float(kl.max()), float(eq.float().mean())))
            del variant
    return results


def native_logits(llm: LLM, ids: list[int]) -> torch.Tensor:
    """Logits [L, V] of `ids` teacher-forced one token at a time through the native decode step."""
    llm.setup_caches(1, len(ids))
    step = NativeStep(llm)
    return torch.cat([step(tok, pos) for pos, tok in enumerate(ids)])  # [L, V]
