"""Can the LLM answer a picture's question when the picture is described in words? (no image at all)

    python -m vita.cli.tools described --model runs/mini/skeleton [--families colour,position] [--n 60] [--json]

For each family, `n` pictures of `vita.datasets.mini.images` are drawn from held-out generators (seed `seed`, other
than the data's), and the model is asked, typed and greedy, "<caption> <question> Answer with one word."; a reply is
right when it contains the answer as a word. Chance is one over the family's options (colour 1/6, position and
which-red 1/2-1/3, count 1/5). A model that fails here cannot answer from image rows either, whatever the projector
writes: the relational questions need the LLM itself to learn them (`scene_text` in `vita data mini`).
"""

from __future__ import annotations

import re

import numpy as np

FAMILIES = ("colour", "count", "position", "which_red", "scene")
SUFFIX = " Answer with one word."


def _right(answer: str, reply: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(answer.lower())}(?![\w-])", reply.lower()) is not None


def measure(vm, families: tuple[str, ...] | list[str] = FAMILIES, n: int = 60, seed: int = 777,
            max_new_tokens: int = 8) -> dict[str, dict]:
    """{family: {"n", "right", "accuracy", "examples": [(prompt, answer, reply), ...3]}} for a loaded `vita.Vita`."""
    from vita.datasets.mini.images import make_image

    out: dict[str, dict] = {}
    for k, family in enumerate(families):
        rng = np.random.default_rng([seed, k])
        right, examples = 0, []
        for _ in range(n):
            item = make_image(family, rng, held_out=True)
            prompt = f"{item.caption} {item.question}{SUFFIX}"
            reply = vm.generate(prompt, max_new_tokens=max_new_tokens).text
            right += _right(item.answer, reply)
            if len(examples) < 3:
                examples.append((prompt, item.answer, reply))
        out[family] = {"n": n, "right": right, "accuracy": right / max(n, 1), "examples": examples}
    return out


def report(model: str, res: dict[str, dict]) -> str:
    lines = [f"described scenes: {model} (typed, greedy; the picture in words, no image)", "",
             "| family | right / n | accuracy |", "|---|---|---|"]
    lines += [f"| {f} | {r['right']} / {r['n']} | {r['accuracy']:.1%} |" for f, r in res.items()]
    return "\n".join(lines)
