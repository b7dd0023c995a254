"""Two `vita bench duplex --public --json` reports of the same sets, paired case by case (their `public.cases`).

Per family, the outcome it is judged by, case by case:
    interruption                                   answered on its own (`respond`); FDB's takeover (`tor`)
    turn_taking                                    takeover (higher is better)
    pause, backchannel                             no takeover (FDB: lower TOR is better)
    user_backchannel, talking_to_others, background_speech    silent: no reply of its own (`c_respond` 0)
FD-Bench's rows count rounds inside a case and are left out. For each: the count in A and in B, the cases B gained and
lost, and the exact two-sided sign test over them (`vita.eval.compare.sign_test`): a fresh set
(`vita bench duplex --sentences`) judged before / after a change.

    python -m vita.cli.tools duplex_compare A.json B.json [--json]
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from vita.errors import EvalError
from vita.eval.compare import sign_test

__all__ = ["Row", "as_json", "compare", "load_cases", "markdown"]

OUTCOMES = {  # family -> (outcome name, case row -> 0/1)
    "interruption": [("answered", lambda r: r["respond"]), ("takeover", lambda r: r["tor"])],
    "turn_taking": [("takeover", lambda r: r["tor"])],
    "pause": [("no takeover", lambda r: 1 - r["tor"])],
    "backchannel": [("no takeover", lambda r: 1 - r["tor"])],
    "user_backchannel": [("silent", lambda r: 1 - r["c_respond"])],
    "talking_to_others": [("silent", lambda r: 1 - r["c_respond"])],
    "background_speech": [("silent", lambda r: 1 - r["c_respond"])],
}


@dataclass(frozen=True)
class Row:
    family: str
    outcome: str
    n: int
    a: int
    b: int
    gained: int  # cases with the outcome in B only
    lost: int  # in A only
    p: float


def load_cases(path: str | Path) -> list[dict]:
    """The `public.cases` of a report file (`vita bench duplex --public --json > FILE`)."""
    file = Path(path)
    try:
        report = json.loads(file.read_text(encoding="utf-8"))
        return list(report["public"]["cases"])
    except FileNotFoundError:
        raise EvalError(f"{file}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EvalError(f"{file}: not a readable JSON report: {exc}") from None
    except (KeyError, TypeError):
        raise EvalError(f"{file}: no public.cases (a `vita bench duplex --public --json` report)") from None


def compare(a: list[dict], b: list[dict]) -> list[Row]:
    """The rows of every family both hold, case by case; the two must be the same cases (names, in order)."""
    names_a, names_b = [c["name"] for c in a], [c["name"] for c in b]
    if names_a != names_b:
        only = sorted(set(names_a) ^ set(names_b))
        raise EvalError(f"not the same cases ({len(a)} and {len(b)}; e.g. {only[:1] or 'another order'}): run both "
                        "with the same --families, --per-family, --seed and --sentences")
    rows = []
    for family, outcomes in OUTCOMES.items():
        pairs = [(x, y) for x, y in zip(a, b, strict=True) if x["family"] == family]
        if not pairs:
            continue
        for name, get in outcomes:
            got = [(int(round(get(x))), int(round(get(y)))) for x, y in pairs]
            gained, lost = sum(1 for u, v in got if v > u), sum(1 for u, v in got if u > v)
            rows.append(Row(family, name, len(got), sum(u for u, _ in got), sum(v for _, v in got), gained, lost,
                            sign_test(gained, lost)))
    return rows


def markdown(rows: list[Row]) -> str:
    out = ["| family | outcome | A | B | B gained / lost | sign test p |", "|---|---|---|---|---|---|"]
    out += [f"| {r.family} | {r.outcome} | {r.a}/{r.n} | {r.b}/{r.n} | {r.gained} / {r.lost} | {r.p:.3g} |"
            for r in rows]
    return "\n".join(out) + "\n"


def as_json(rows: list[Row]) -> list[dict[str, Any]]:
    return [asdict(r) for r in rows]
