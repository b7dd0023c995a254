"""Two `vita eval --out` reports of the same manifest, paired case by case: is a difference an effect or noise?

A held-out set of a few hundred cases moves by a few points between two training runs that differ only in their seed
(measured 2026-12-06 on vita-mini: 46 of 388 answer cases flipped between two stage-3 runs). So beside each rate's
change this prints the paired counts and an exact two-sided sign test (McNemar's exact test):
    answers      cases right in both / neither / only A / only B; p = P(a split at least this uneven | no effect)
    states       the same on state tokens (rejection over the not-query cases, misses over the query cases)
    WER          corpus WER of each; cases with fewer edits in B / in A, and the sign test over them
per group prefix (`--depth` components of the case's group: "image/colour/typed" -> "image" at depth 1). Beside the
answers, the share of each report's most common answer: a group a model has not learned often gets one constant
answer ("2" to every count question), and which constant a run lands on swings such a group by tens of points.

    python -m vita.cli.tools compare_evals A.json B.json [--depth 2] [--json]
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass
from math import comb
from pathlib import Path

from vita.errors import EvalError


def sign_test(a: int, b: int) -> float:
    """Exact two-sided p of a split (a, b) of discordant pairs under p = 1/2 (1.0 when there are none)."""
    n, k = a + b, min(a, b)
    if n == 0:
        return 1.0
    return min(1.0, 2 * sum(comb(n, i) for i in range(k + 1)) / 2**n)


@dataclass(frozen=True)
class Paired:
    n: int
    rate_a: float | None
    rate_b: float | None
    both: int
    neither: int
    only_a: int
    only_b: int
    p: float


@dataclass(frozen=True)
class Constant:
    answer_a: str  # each report's most common answer in the group, and its share of the group's answers
    share_a: float
    answer_b: str
    share_b: float


@dataclass(frozen=True)
class PairedWer:
    n: int
    wer_a: float | None
    wer_b: float | None
    better_b: int  # cases with fewer edits in B
    better_a: int
    p: float


def _pair(flags: list[tuple[bool, bool]]) -> Paired:
    both = sum(a and b for a, b in flags)
    neither = sum(not a and not b for a, b in flags)
    only_a = sum(a and not b for a, b in flags)
    only_b = sum(b and not a for a, b in flags)
    n = len(flags)
    return Paired(n, (both + only_a) / n if n else None, (both + only_b) / n if n else None, both, neither, only_a,
                  only_b, sign_test(only_a, only_b))


def _wer(pairs: list[tuple[dict, dict]]) -> PairedWer:
    ref = sum(a["ref_units"] for a, _ in pairs)
    ea, eb = sum(a["edits"] for a, _ in pairs), sum(b["edits"] for _, b in pairs)
    better_b = sum(b["edits"] < a["edits"] for a, b in pairs)
    better_a = sum(a["edits"] < b["edits"] for a, b in pairs)
    return PairedWer(len(pairs), ea / ref if ref else None, eb / ref if ref else None, better_b, better_a,
                     sign_test(better_a, better_b))


def _constant(pairs: list[tuple[dict, dict]]) -> Constant:
    def top(cases: list[dict]) -> tuple[str, float]:
        counts = Counter(" ".join(str(c.get("text") or "").lower().strip(" .!?").split()) for c in cases)
        answer, n = counts.most_common(1)[0]
        return answer, n / len(cases)

    (a, sa), (b, sb) = top([a for a, _ in pairs]), top([b for _, b in pairs])
    return Constant(a, round(sa, 3), b, round(sb, 3))


def load_cases(path: str | Path) -> dict[str, dict]:
    """The cases of a `vita eval --out` report by id."""
    try:
        report = json.loads(Path(path).read_text(encoding="utf-8"))
        cases = report["cases"]
        return {str(c["id"]): c for c in cases}
    except (OSError, ValueError) as exc:
        raise EvalError(f"{path}: cannot read the evaluation report ({exc})") from None
    except (KeyError, TypeError) as exc:
        raise EvalError(f"{path}: not a `vita eval --out` report (no cases with ids: {exc})") from None


def compare(a: dict[str, dict], b: dict[str, dict], *, depth: int = 1) -> dict:
    """{"cases": n, "groups": {prefix: {"answers": Paired, "states": Paired, "wer": PairedWer}}}, prefix "all"
    first; only the kinds a group has. The two reports must hold the same case ids."""
    if a.keys() != b.keys():
        only = sorted(a.keys() ^ b.keys())
        raise EvalError(f"the two reports hold different cases ({len(only)} in one only, e.g. {only[:3]}): "
                        "compare runs of the same manifest")
    groups: dict[str, list[str]] = {"all": list(a)}
    for cid, case in a.items():
        groups.setdefault("/".join(str(case["group"]).split("/")[:depth]), []).append(cid)
    out = {}
    for name, ids in groups.items():
        row: dict = {}
        answered = [(bool(a[i]["answer_correct"]), bool(b[i]["answer_correct"])) for i in ids
                    if a[i].get("answer_correct") is not None and b[i].get("answer_correct") is not None]
        if answered:
            row["answers"] = asdict(_pair(answered))
            row["constant"] = asdict(_constant([(a[i], b[i]) for i in ids if a[i].get("answer_correct") is not None
                                                and b[i].get("answer_correct") is not None]))
        stated = [(bool(a[i]["state_correct"]), bool(b[i]["state_correct"])) for i in ids
                  if a[i].get("state_correct") is not None and b[i].get("state_correct") is not None]
        if stated:
            row["states"] = asdict(_pair(stated))
        heard = [(a[i], b[i]) for i in ids if a[i].get("edits") is not None and b[i].get("edits") is not None
                 and a[i].get("rate_kind", "wer") == "wer"]
        if heard:
            row["wer"] = asdict(_wer(heard))
        if row:
            out[name] = row
    return {"cases": len(a), "groups": out}


def markdown(result: dict, label_a: str = "A", label_b: str = "B") -> str:
    def pct(x: float | None) -> str:
        return "n/a" if x is None else f"{100 * x:.1f}"

    lines = [f"| group | kind | n | {label_a} | {label_b} | change | paired | p |", "|---|---|---|---|---|---|---|---|"]
    for name, row in result["groups"].items():
        for kind in ("answers", "states"):
            if kind in row:
                r = row[kind]
                change = 100 * (r["rate_b"] - r["rate_a"])
                lines.append(f"| {name} | {kind} | {r['n']} | {pct(r['rate_a'])} | {pct(r['rate_b'])} | {change:+.1f} "
                             f"| only {label_a} {r['only_a']}, only {label_b} {r['only_b']} | {r['p']:.3f} |")
            if kind == "answers" and "constant" in row:
                c = row["constant"]
                lines.append(f"| {name} | most common answer | | \"{c['answer_a']}\" {pct(c['share_a'])} % "
                             f"| \"{c['answer_b']}\" {pct(c['share_b'])} % | | | |")
        if "wer" in row:
            r = row["wer"]
            change = "n/a" if r["wer_a"] is None else f"{100 * (r['wer_b'] - r['wer_a']):+.1f}"
            lines.append(f"| {name} | WER | {r['n']} | {pct(r['wer_a'])} | {pct(r['wer_b'])} | {change} "
                         f"| fewer edits in {label_a} {r['better_a']}, in {label_b} {r['better_b']} | {r['p']:.3f} |")
    return "\n".join(lines) + "\n"
