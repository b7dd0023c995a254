"""Text-only instruction data for vita-mini, so the LLM keeps chatting in full sentences while its LoRA learns media.

    prompts = chat_prompts("train", 300)                 # deterministic, templated over offline vocabularies
    answers = reference_answers(prompts, "cache.jsonl")  # SmolLM2-135M-Instruct's own greedy answers, cached
    records = chat_records(prompts, answers)             # official VITA JSON records for instruct.json

Prompt families (`ChatPrompt.family`; the vocabularies are below and in `emoji.CONCEPTS`):
    define      "What is a violin?" / "What does a dolphin look like?" / "Describe a kite in one sentence."
    tip         "Give me a tip for learning a language." / "How can I get better at chess?"
    sentence    "Write one sentence about autumn."
    poem        "Write a short poem about the moon."
    cook        "How do you make pancakes?" / "What do I need to make soup?"
    animal      "Tell me a fun fact about owls." / "Where do penguins live?"
    name_three  "Name three fruit." / "Can you list three birds?"
    capital     "What is the capital of Peru?" -> "The capital of Peru is Lima."   (exact, from `CAPITALS`)
    arithmetic  "What is 7 times 8?"           -> "7 times 8 is 56."               (exact; plus, minus, times)
Answers of the first seven come from the unmodified SmolLM2-135M-Instruct (`vita.load("smollm2-135m")`, greedy,
`max_new_tokens` 64; a reply cut off by the limit loses its unfinished sentence or line, `trim_reply`); capitals and
arithmetic are computed, so they are right. Train and eval prompts are disjoint by content (every phrasing of "7
times 8" or "the capital of Peru" falls on one side: `split_of`). The five fixed prompts of `vita.eval.text_compare`
and their trivial paraphrases never appear: no prompt mentions France, health / fitness, a haiku, the sea or ocean,
a computer, or the operands 12 and 3 (`is_excluded`).

Records carry no state token: `vita.training.sample` prefixes a typed reply with "<3>" (a spoken one with "<1>"), as
for the typed chat of `build`. Run once: `python -m vita.cli.tools mini_chat --cache FILE [--train 300 --eval 30]`
(`fill_cache`) fills the cache and prints tokens/s; later builds read the cache and generate only prompts it lacks.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vita.datasets.mini.emoji import CONCEPTS, PLURAL_NAMES, plural, stable_hash, with_article

REFERENCE_MODEL = "smollm2-135m"
MAX_NEW_TOKENS = 64
EVAL_FRACTION = 10  # one content key in ten is eval-only

CAPITALS = {
    "Argentina": "Buenos Aires", "Australia": "Canberra", "Austria": "Vienna", "Belgium": "Brussels",
    "Brazil": "Brasilia", "Canada": "Ottawa", "Chile": "Santiago", "China": "Beijing", "Colombia": "Bogota",
    "Cuba": "Havana", "Czechia": "Prague", "Denmark": "Copenhagen", "Egypt": "Cairo", "Ethiopia": "Addis Ababa",
    "Finland": "Helsinki", "Germany": "Berlin", "Ghana": "Accra", "Greece": "Athens", "Hungary": "Budapest",
    "Iceland": "Reykjavik", "India": "New Delhi", "Indonesia": "Jakarta", "Iran": "Tehran", "Iraq": "Baghdad",
    "Ireland": "Dublin", "Israel": "Jerusalem", "Italy": "Rome", "Japan": "Tokyo", "Kenya": "Nairobi",
    "Mexico": "Mexico City", "Morocco": "Rabat", "Nepal": "Kathmandu", "the Netherlands": "Amsterdam",
    "New Zealand": "Wellington", "Nigeria": "Abuja", "Norway": "Oslo", "Pakistan": "Islamabad", "Peru": "Lima",
    "the Philippines": "Manila", "Poland": "Warsaw", "Portugal": "Lisbon", "Romania": "Bucharest",
    "Russia": "Moscow", "Saudi Arabia": "Riyadh", "Senegal": "Dakar", "South Korea": "Seoul", "Spain": "Madrid",
    "Sweden": "Stockholm", "Switzerland": "Bern", "Thailand": "Bangkok", "Turkey": "Ankara", "Ukraine": "Kyiv",
    "the United Kingdom": "London", "the United States": "Washington, D.C.", "Vietnam": "Hanoi",
}
ACTIVITIES = (
    "learning a language", "saving money", "sleeping better", "cooking rice", "baking bread", "gardening",
    "studying for an exam", "public speaking", "writing an essay", "taking photos", "making new friends",
    "travelling on a budget", "keeping houseplants alive", "painting with watercolours", "playing chess",
    "learning the guitar", "riding a bike in the city", "cleaning the kitchen", "packing a suitcase",
    "staying focused while working", "a job interview", "camping in the woods", "learning to swim",
    "reading more books", "drawing faces", "writing a thank-you letter", "hiking in the mountains",
    "training a puppy", "organising a desk", "learning to type faster", "remembering names", "planning a party",
    "waking up early", "learning to code", "growing tomatoes", "caring for a cat", "driving in the rain",
    "making coffee at home", "keeping a diary", "learning to juggle", "building a birdhouse", "shopping for groceries",
)
TOPICS = (
    "autumn", "winter", "spring", "summer", "a rainy day", "the moon", "the stars", "a quiet library", "a busy market",
    "a mountain lake", "the desert", "a thunderstorm", "an old bridge", "a train journey", "friendship",
    "a cup of tea", "the wind", "a forest at night", "a city at dawn", "a snowy morning", "a lighthouse", "a garden",
    "a river", "a kite in the sky", "a sleeping cat", "the first day of school", "a birthday party", "a rainbow",
    "music", "an old clock", "the sunrise", "a long walk", "a bakery", "a campfire", "the harvest", "a windmill",
    "a busy kitchen", "the night sky", "a small village", "a waterfall",
)
DISHES = (
    "pancakes", "a pizza", "bread", "a sandwich", "tacos", "a fried egg", "a salad", "popcorn", "rice", "spaghetti",
    "sushi", "ice cream", "cookies", "a birthday cake", "cupcakes", "an apple pie", "waffles", "french toast",
    "lemonade", "hot chocolate", "a smoothie", "soup", "mashed potatoes", "an omelette", "guacamole", "pesto",
    "a fruit salad", "tea", "a cheese sandwich", "fried rice", "pasta salad", "banana bread", "a burrito",
)
GROUPS = (
    "fruit", "vegetables", "birds", "musical instruments", "sports", "vehicles", "tools", "flowers", "trees",
    "board games", "insects", "farm animals", "colours", "planets", "languages", "kitchen utensils", "pets",
    "breakfast foods", "desserts", "jobs", "things you can find in a school", "things that are cold",
)
# the fixed prompts of vita.eval.text_compare, and the words whose presence would paraphrase one of them
_EXCLUDED_WORDS = frozenset({"france", "french", "paris", "healthy", "health", "fit", "fitness", "exercise", "diet",
                             "haiku", "sea", "seas", "ocean", "oceans", "computer", "computers"})
_EXCLUDED_OPERANDS = frozenset({3, 12})


@dataclass(frozen=True)
class ChatPrompt:
    prompt: str
    family: str  # see the module docstring
    key: str  # content key: every phrasing of one content shares it, and the train / eval split follows it
    answer: str | None = None  # exact answer (capital, arithmetic); None: the reference model answers


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


def is_excluded(prompt: str) -> bool:
    """True for the fixed eval prompts (`vita.eval.text_compare.PROMPTS`) and their trivial paraphrases."""
    from vita.eval.text_compare import PROMPTS

    norm = " ".join(sorted(_words(prompt)))
    if norm in {" ".join(sorted(_words(p))) for p in PROMPTS}:
        return True
    numbers = {int(n) for n in re.findall(r"\d+", prompt)}
    return bool(_words(prompt) & _EXCLUDED_WORDS) or _EXCLUDED_OPERANDS <= numbers


def split_of(key: str) -> str:
    """ "eval" for one content key in `EVAL_FRACTION`, "train" otherwise (a hash: independent of seeds)."""
    return "eval" if stable_hash("chat:" + key) % EVAL_FRACTION == 0 else "train"


def _templated() -> list[ChatPrompt]:
    out: list[ChatPrompt] = []
    things = [c for c in CONCEPTS if c.category != "face" and c.name not in PLURAL_NAMES]
    for c in things:
        a = with_article(c.name)
        out += [ChatPrompt(f"What is {a}?", "define", f"define:{c.name}"),
                ChatPrompt(f"Describe {a} in one sentence.", "define", f"define:{c.name}")]
        if c.countable:
            out.append(ChatPrompt(f"What does {a} look like?", "define", f"define:{c.name}"))
        if c.category == "animal":
            many = plural(c.name)
            out += [ChatPrompt(f"Tell me a fun fact about {many}.", "animal", f"animal:{c.name}"),
                    ChatPrompt(f"Where do {many} live?", "animal", f"animal:{c.name}")]
    for dish in DISHES:
        out += [ChatPrompt(f"How do you make {dish}?", "cook", f"cook:{dish}"),
                ChatPrompt(f"What do I need to make {dish}?", "cook", f"cook:{dish}")]
    for activity in ACTIVITIES:
        out += [ChatPrompt(f"Give me a tip for {activity}.", "tip", f"tip:{activity}"),
                ChatPrompt(f"What is one good tip for {activity}?", "tip", f"tip:{activity}")]
    for topic in TOPICS:
        out += [ChatPrompt(f"Write one sentence about {topic}.", "sentence", f"sentence:{topic}"),
                ChatPrompt(f"Write a short poem about {topic}.", "poem", f"poem:{topic}")]
    for group in GROUPS:
        out += [ChatPrompt(f"Name three {group}.", "name_three", f"name:{group}"),
                ChatPrompt(f"Can you list three {group}?", "name_three", f"name:{group}")]
    for country, city in CAPITALS.items():
        answer = f"The capital of {country} is {city}."
        out += [ChatPrompt(f"What is the capital of {country}?", "capital", f"capital:{country}", answer),
                ChatPrompt(f"Which city is the capital of {country}?", "capital", f"capital:{country}", answer),
                ChatPrompt(f"Name the capital of {country}.", "capital", f"capital:{country}", answer)]
    return out


def _arithmetic(rng: np.random.Generator) -> ChatPrompt:
    op = ("plus", "minus", "times")[int(rng.integers(3))]
    if op == "times":
        a, b = int(rng.integers(2, 21)), int(rng.integers(2, 13))
        c = a * b
    elif op == "plus":
        a, b = int(rng.integers(1, 100)), int(rng.integers(1, 100))
        c = a + b
    else:
        a, b = sorted((int(rng.integers(1, 100)), int(rng.integers(1, 100))), reverse=True)
        c = a - b
    form = int(rng.integers(3))
    prompt = (f"What is {a} {op} {b}?", f"How much is {a} {op} {b}?", f"Calculate {a} {op} {b}.")[form]
    return ChatPrompt(prompt, "arithmetic", f"{op}:{min(a, b)}:{max(a, b)}" if op != "minus" else f"minus:{a}:{b}",
                      f"{a} {op} {b} is {c}.")


def all_templated(split: str | None = None) -> list[ChatPrompt]:
    """Every non-arithmetic prompt (about 2,000), optionally only one split's; excluded prompts removed."""
    return [p for p in _templated() if not is_excluded(p.prompt) and (split is None or split_of(p.key) == split)]


# share of each family in `chat_prompts` (the rest of the weight is spread by the pools' own sizes)
FAMILY_WEIGHTS = {"define": 0.22, "tip": 0.1, "sentence": 0.08, "poem": 0.06, "cook": 0.06, "animal": 0.1,
                  "name_three": 0.06, "capital": 0.12, "arithmetic": 0.2}


def chat_prompts(split: str = "train", n: int = 300, seed: int = 0) -> list[ChatPrompt]:
    """`n` distinct prompts of `split` ("train" or "eval"), families mixed by `FAMILY_WEIGHTS`, a function of `seed`."""
    if split not in ("train", "eval"):
        raise ValueError(f"split must be 'train' or 'eval', not {split!r}")
    rng = np.random.default_rng([seed, 0 if split == "train" else 1, 7_412])
    pools: dict[str, list[ChatPrompt]] = {}
    for p in all_templated(split):
        pools.setdefault(p.family, []).append(p)
    for pool in pools.values():
        order = rng.permutation(len(pool))
        pool[:] = [pool[int(i)] for i in order]
    families = list(FAMILY_WEIGHTS)
    weights = np.array([FAMILY_WEIGHTS[f] for f in families])
    out: list[ChatPrompt] = []
    seen: set[str] = set()
    for _ in range(200 * n):
        if len(out) == n:
            break
        family = families[int(rng.choice(len(families), p=weights / weights.sum()))]
        if family == "arithmetic":
            p = _arithmetic(rng)
            while split_of(p.key) != split or is_excluded(p.prompt):
                p = _arithmetic(rng)
        elif pools.get(family):
            p = pools[family].pop()
        else:
            continue
        if p.prompt not in seen:
            seen.add(p.prompt)
            out.append(p)
    if len(out) < n:
        raise ValueError(f"only {len(out)} distinct {split} prompts available (asked for {n})")
    return out


def trim_reply(text: str, finished: bool = False) -> str:
    """A reply cut back to whole sentences or lines: kept as it is when the model `finished` (stopped on its own,
    so lists and poems stay whole); otherwise cut after the last sentence end ("." / "!" / "?", optionally a closing
    quote) or line break, whichever comes later, so a reply cut off by `max_new_tokens` ends cleanly; "" if neither."""
    text = text.strip()
    if finished:
        return text
    ends = [m.end() for m in re.finditer(r"[.!?][\"')\]]?(?=\s|$)", text)]
    # a list marker ("2." at the start of a line), "e.g." or "Dr." does not end a sentence
    ends = [e for e in ends if not re.search(r"((^|\n)\s*\d+|\b[A-Z]|\be\.g|\bi\.e|\bDr|\bMr|\bMrs|\bSt)\.$", text[:e])]
    ends += [m.start() for m in re.finditer(r"\n", text)]
    return text[: max(ends)].strip() if ends else ""


Generate = Callable[[str, int], tuple[str, int, bool]]  # (prompt, max_new_tokens) -> (text, new tokens, finished)


def smollm2_generate(model: str = REFERENCE_MODEL) -> Generate:
    """A greedy `Generate` over `vita.load(model)` (loaded once, ~4 s)."""
    import vita

    m = vita.load(model)

    def run(prompt: str, max_new_tokens: int) -> tuple[str, int, bool]:
        reply = m.generate(prompt, max_new_tokens=max_new_tokens)
        return reply.text, len(reply.token_ids), reply.finish_reason == "stop"

    return run


def _read_cache(path: Path, model: str, max_new_tokens: int) -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                if row.get("model") == model and row.get("max_new_tokens") == max_new_tokens:
                    row.setdefault("finished", row["tokens"] < max_new_tokens)
                    rows[row["prompt"]] = row
    return rows


SHIPPED_ANSWERS = Path(__file__).resolve().parents[3] / "recipes" / "mini" / "chat_answers.jsonl"


def data_answers(prompts: list[ChatPrompt], root: Path) -> dict[str, str]:
    """Answers for a data build's chat prompts (`root`: its split folder): exact ones computed, the others the
    unmodified SmolLM2's, read from the answers shipped in `recipes/mini/chat_answers.jsonl` (copied next to the
    data) and generated for any prompt they lack (~1.3 s each)."""
    cache = root / "chat_answers.jsonl"
    if not cache.is_file() and SHIPPED_ANSWERS.is_file():
        cache.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(SHIPPED_ANSWERS, cache)
    return reference_answers(prompts, cache, log=lambda m: print(m, file=sys.stderr, flush=True))


def reference_answers(prompts: Iterable[ChatPrompt], cache: str | Path, *, model: str = REFERENCE_MODEL,
                      max_new_tokens: int = MAX_NEW_TOKENS, generate: Generate | None = None,
                      log: Callable[[str], None] | None = None) -> dict[str, str]:
    """Answers (prompt -> text) for `prompts`: exact ones as they are, the others `model`'s greedy reply through
    `trim_reply` ("" when nothing complete is left). Raw replies are cached in the JSONL file `cache`, one line per
    prompt {"prompt", "model", "max_new_tokens", "raw", "finished", "tokens", "seconds"}; only prompts missing from it
    are generated (`generate` defaults to `smollm2_generate(model)`, loaded on the first miss) and appended."""
    path = Path(cache)
    rows = _read_cache(path, model, max_new_tokens)
    out: dict[str, str] = {}
    missing = []
    for p in prompts:
        if p.answer is not None:
            out[p.prompt] = p.answer
        elif p.prompt in rows:
            out[p.prompt] = trim_reply(rows[p.prompt]["raw"], rows[p.prompt]["finished"])
        elif p.prompt not in missing:
            missing.append(p.prompt)
    if missing:
        generate = generate or smollm2_generate(model)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as f:
            for i, prompt in enumerate(missing):
                t0 = time.perf_counter()
                raw, tokens, finished = generate(prompt, max_new_tokens)
                seconds = time.perf_counter() - t0
                row = {"prompt": prompt, "model": model, "max_new_tokens": max_new_tokens, "raw": raw,
                       "finished": finished, "tokens": tokens, "seconds": round(seconds, 3)}
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
                f.flush()
                out[prompt] = trim_reply(raw, finished)
                if log is not None:
                    log(f"[{i + 1}/{len(missing)}] {tokens} tokens in {seconds:.2f} s: {prompt}")
    return out


def chat_records(prompts: Sequence[ChatPrompt], answers: dict[str, str], *, set_name: str = "mini_text_chat",
                 id_prefix: str = "tc") -> list[dict[str, Any]]:
    """Official VITA JSON records (human prompt -> gpt answer, no state token: `sample.py` adds "<3>") for every
    prompt with a non-empty answer, in the order of `prompts`; `set` is `set_name`, `id` `{id_prefix}{i}`, `kind` the
    family (`build` counts records per set and kind)."""
    records = []
    for i, p in enumerate(prompts):
        answer = answers.get(p.prompt, "")
        if answer:
            records.append({"set": set_name, "id": f"{id_prefix}{i}", "kind": p.family,
                            "conversations": [{"from": "human", "value": p.prompt},
                                              {"from": "gpt", "value": answer}]})
    return records


def fill_cache(cache: Path, *, n_train: int = 300, n_eval: int = 30, seed: int = 0, model: str = REFERENCE_MODEL,
               max_new_tokens: int = MAX_NEW_TOKENS, log: Callable[[str], None] | None = None) -> str:
    """Generate the reference answers of `n_train` + `n_eval` prompts that `cache` lacks; returns a one-line summary
    (prompts, tokens generated now and their tokens/s, wall time, how many have an answer)."""
    prompts = chat_prompts("train", n_train, seed) + chat_prompts("eval", n_eval, seed)
    before = _read_cache(cache, model, max_new_tokens)
    t0 = time.perf_counter()
    answers = reference_answers(prompts, cache, model=model, max_new_tokens=max_new_tokens, log=log)
    wall = time.perf_counter() - t0
    rows = [r for p, r in _read_cache(cache, model, max_new_tokens).items() if p not in before]
    tokens, seconds = sum(r["tokens"] for r in rows), sum(r["seconds"] for r in rows)
    kept = sum(bool(answers[p.prompt]) for p in prompts)
    return (f"{len(prompts)} prompts ({sum(p.answer is None for p in prompts)} for {model}), {len(rows)} generated "
            f"now: {tokens} tokens in {seconds:.1f} s ({tokens / max(seconds, 1e-9):.1f} tokens/s), wall {wall:.1f} s; "
            f"{kept} with an answer")


def answer_key(answer: str) -> str:
    """What decides an exact answer, scored with match "contains": "is 56" of "7 times 8 is 56.", "is Lima" of
    "The capital of Peru is Lima." (the bare "56" would also match "56 minus 3 is 53")."""
    return "is " + answer.rsplit(" is ", 1)[-1].rstrip(".")


def typed_chat_cases(n: int, skip: int, seed: int = 0) -> list[dict[str, Any]]:
    """`n` typed `vita eval` cases with exact answers (arithmetic, capitals) from the eval split: the ones after the
    first `skip` (those eval/chat.jsonl asks, typed and spoken), so eval/chat_typed.jsonl is disjoint from it. Twenty
    typed chat cases tell two models apart only by 20 points or more; these are the larger typed set."""
    want = skip + n
    exact = [p for p in chat_prompts("eval", 4 * want + 8, seed) if p.answer is not None]
    if len(exact) < want:
        raise ValueError(f"only {len(exact)} eval chat prompts with exact answers (asked for {want})")
    return [{"id": f"chat-typed-{i}", "text": p.prompt, "expect_state": "<3>", "answer": answer_key(p.answer or ""),
             "match": "contains", "group": f"chat_typed/{p.family}"} for i, p in enumerate(exact[skip:want])]
