"""Where a realtime turn's time goes: the stage times of finished turns and the model worker's queueing delays.

    breakdown(hub) -> {"spoken" | "typed": {"turns": n, "stages": {stage: {"p50", "p90", "before_commit"}}},
                       "queue": {"urgent" | "soon" | "normal": {"n", "p50", "p90"}},
                       "decode": {"rounds", "steps", "mean", "together"}}

Stages are the duplex session's (`vita.duplex.stages.STAGES`), in ms relative to the turn's commit (`vad_end`: the
VAD's end of speech, or the early commit once the speculated state said "answer"); a negative time was done
speculatively before the commit, and `before_commit` is the fraction of turns for which it was. Typed items are
counted apart (their `vad_end` is the `response.create`). Queue: seconds from submission to start on the model
thread, per priority (`vita.server.worker`: urgent = a turn being decided or speculated on, soon = a reply whose
queued audio runs low). Decode: the realtime sessions' decode steps (`vita.server.realtime_batch`), how many rounds
ran them, the mean number per round and the share that ran beside another session's.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vita.duplex.stages import STAGES
from vita.server.worker import NORMAL, SOON, URGENT


def _pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if values else None


def _stages(records: list[dict[str, float]]) -> dict[str, Any]:
    stages: dict[str, Any] = {}
    for name in STAGES[1:]:
        rel = [1000 * (r[name] - r["vad_end"]) for r in records if name in r]
        if rel:
            stages[name] = {"p50": _pct(rel, 50), "p90": _pct(rel, 90),
                            "before_commit": round(sum(t < 0 for t in rel) / len(rel), 2)}
    return stages


def breakdown(hub: Any) -> dict[str, Any]:
    """Stage times of the turns `hub` (a `realtime.Hub`) saw finish, spoken and typed apart, and its model worker's
    queueing delays."""
    records = [r for r in list(hub.stages) if "vad_end" in r]
    spoken = [r for r in records if r.get("spoken")]
    typed = [r for r in records if not r.get("spoken")]
    queue: dict[str, Any] = {}
    waits = list(hub.state.worker.waits)
    for label, priority in (("urgent", URGENT), ("soon", SOON), ("normal", NORMAL)):
        ms = [1000 * w for p, w in waits if p == priority]
        queue[label] = {"n": len(ms), "p50": _pct(ms, 50), "p90": _pct(ms, 90)}
    rounds = list(hub.state.worker.rounds)
    steps = sum(rounds)
    batched = {"rounds": len(rounds), "steps": steps, "mean": round(steps / len(rounds), 2) if rounds else None,
               "together": round(sum(n for n in rounds if n > 1) / steps, 2) if steps else None}
    return {"spoken": {"turns": len(spoken), "stages": _stages(spoken)},
            "typed": {"turns": len(typed), "stages": _stages(typed)}, "queue": queue, "decode": batched}


def report(summary: dict[str, Any]) -> str:
    """`breakdown`'s summary as lines for a terminal."""
    lines = []
    for kind in ("spoken", "typed"):
        part = summary[kind]
        stages = ", ".join(f"{name} {v['p50']:+.0f}/{v['p90']:+.0f} ({v['before_commit']:.0%} before)"
                           for name, v in part["stages"].items())
        lines.append(f"  {kind} turns, stages in ms from the commit p50/p90 (n={part['turns']}; negative: done "
                     f"speculatively): {stages}")
    q = summary["queue"]
    lines.append("  model worker queueing p50/p90: " + ", ".join(
        f"{k} {q[k]['p50']}/{q[k]['p90']} ms (n={q[k]['n']})" for k in ("urgent", "soon", "normal") if k in q))
    d = summary.get("decode")
    if d and d["steps"]:
        lines.append(f"  decode steps: {d['steps']} in {d['rounds']} rounds (mean {d['mean']} side by side; "
                     f"{d['together']:.0%} of the steps ran with another session's)")
    return "\n".join(lines)
