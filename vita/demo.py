"""`make demo`: the main job. Runs the model on the bundled examples and prints state and answer for each.

Until the trained default model (vita-mini) ships, this runs the full VITA architecture on TINY RANDOM WEIGHTS:
every stage (tiling, InternViT, pixel shuffle, projector, fbank, whale encoder, adapter, splice, Mixtral-style
MoE LLM, KV-cached generation) really runs, but the answers are meaningless text. It then asks the packaged,
really pretrained SmolLM2-135M-Instruct (the LLM vita-mini will build on; text only so far) a typed question.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def main(model_name: str = "tiny-random") -> int:
    from vita.api import load

    t0 = time.perf_counter()
    model = load(model_name)
    print(f"model: {model_name} (random weights: the answers below are NOT meaningful) "
          f"loaded in {time.perf_counter() - t0:.2f} s")
    cases = [
        ("image + spoken question", dict(images=[EXAMPLES / "shapes.png"], audio=EXAMPLES / "question.wav")),
        ("video + typed question", dict(text="Which way does the dot move?", video=EXAMPLES / "moving_dot.mp4")),
        ("noise clip (expect silence)", dict(audio=EXAMPLES / "noise.wav")),
    ]
    for title, kwargs in cases:
        t1 = time.perf_counter()
        reply = model.generate(**kwargs, max_new_tokens=24, seed=0)
        print(f"\n== {title}")
        print(f"   state: {reply.state or 'none'}   tokens: {len(reply.token_ids)}   "
              f"time: {time.perf_counter() - t1:.2f} s")
        print(f"   answer: {reply.text!r}")
    _pretrained_text()
    print(f"\ntotal {time.perf_counter() - t0:.2f} s")
    return 0


def _pretrained_text() -> None:
    from vita.api import load
    from vita.errors import VitaError

    t1 = time.perf_counter()
    try:
        model = load("smollm2-135m")
    except VitaError as exc:
        print(f"\n(skipping the pretrained text model: {exc})")
        return
    question = "What is the capital of France? Answer in one sentence."
    reply = model.generate(question, max_new_tokens=32)
    print("\n== text only, real pretrained weights (SmolLM2-135M-Instruct from the packaged GGUF)")
    print(f"   question: {question!r}")
    print(f"   answer: {reply.text!r}   time: {time.perf_counter() - t1:.2f} s (load included)")


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
