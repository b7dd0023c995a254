"""Text chat kept? Greedy answers of a model and of its base LLM to fixed text prompts, side by side.

    python -m vita.cli.tools text_compare [--model vita-mini] [--reference smollm2-135m] [--json]

vita-mini's LLM is SmolLM2-135M-Instruct with LoRA adapters merged in, so its text answers may drift from the
unmodified model's; this prints both (markdown table, or JSON) and how many are identical.
"""

from __future__ import annotations

PROMPTS = (
    "What is the capital of France?",
    "Give me three tips for staying healthy.",
    "Write a haiku about the sea.",
    "What is 12 times 3?",
    "Explain in one sentence what a computer is.",
)


def answers(model_name: str, prompts: tuple[str, ...], max_new_tokens: int) -> list[dict[str, str | None]]:
    from vita.api import load

    model = load(model_name)
    out = []
    for p in prompts:
        reply = model.generate(p, max_new_tokens=max_new_tokens)
        out.append({"state": reply.state, "text": reply.text})
    return out


def compare(model: str, reference: str, max_new_tokens: int = 48) -> dict:
    ours, ref = answers(model, PROMPTS, max_new_tokens), answers(reference, PROMPTS, max_new_tokens)
    rows = [{"prompt": p, "model": a["text"], "model_state": a["state"], "reference": b["text"],
             "identical": a["text"] == b["text"]} for p, a, b in zip(PROMPTS, ours, ref, strict=True)]
    return {"model": model, "reference": reference, "max_new_tokens": max_new_tokens,
            "identical": sum(r["identical"] for r in rows), "rows": rows}


def markdown(report: dict) -> str:
    def cell(s: str | None) -> str:
        return (s or "").replace("|", "\\|").replace("\n", " ")

    lines = [f"| prompt | {report['model']} | {report['reference']} | same |", "|---|---|---|---|"]
    lines += [f"| {cell(r['prompt'])} | {cell(r['model'])} | {cell(r['reference'])} | "
              f"{'yes' if r['identical'] else 'no'} |" for r in report["rows"]]
    lines.append(f"\n{report['identical']}/{len(report['rows'])} identical (greedy, {report['max_new_tokens']} "
                 "new tokens at most)")
    return "\n".join(lines) + "\n"
