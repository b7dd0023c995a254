"""`vita bench duplex --public`: the public duplex benchmarks' definitions on scenario sets built offline.

Definitions (reference/peers-2026-12.md section 2, read from the benchmarks' code):
  Full-Duplex-Bench v1 (FDB v1)
    takeover (TOR, per sample 0/1): our output in the judged window spans >= 1 s (first word start to last word
        end), or < 1 s with > 3 words. Pause handling and backchannel: lower is better; turn-taking and user
        interruption: higher is better. Never averaged together.
    pause handling     window: from the end of the speech before the user's pause to the end of the user's turn
    backchannel        a user monologue with short gaps; FDB's rule on our output's VAD segments in the monologue:
                       a segment > 3 s -> 1; else the last segment decides (>= 1 s, or > 2 words -> 1). Frequency
                       (our backchannels per second) and JSD need our own backchannels: we make none (freq 0, JSD 1)
    turn-taking        TOR on the output after the turn end; latency = first word start - turn end, clipped at 0,
                       over TOR = 1 samples
    user interruption  the output after the end of the interruption (FDB crops there); latency = first word start
                       - end of the interruption, clipped at 0, over TOR = 1; relevance needs the GPT-4 judge: none.
                       FDB's TOR counts any speech after the interruption, the old answer resumed too; `respond`
                       (ours, beside it) is the share of interruptions that got a reply of their own
  Full-Duplex-Bench v1.5 behaviours (the overlap comes while we speak): user backchannel, talking to others,
    background speech. The benchmark's label comes from a GPT-4o judge, which we do not have; we label from the
    engine's own events (a proxy, reported as such): C_RESPOND = a new reply started for the overlap, C_RESUME = the
    reply that was playing went on (not cancelled, audio after the overlap), C_UNKNOWN = neither (we fell silent).
    Stop latency (how long we talk over the user; VAD on both streams, user segments merged over gaps <= 0.6 s,
    ours over <= 0.5 s) and response latency, medians.
  FD-Bench (its `analyze_VAD_interruption_new2`), on our output's VAD segments (merged over gaps <= 0.5 s):
    SRR = replies starting after the user turn ends (or < 0.5 s before) / user rounds; SIR = interruptions after
    which our segment ends inside the interrupting turn or the gap after it / interruptions that overlapped our
    speech; NIR = our segments that end in a >= 2.5 s gap (noise there) while lasting < 5.5 s / gaps; IRD = median
    (our segment end - interruption start); FSED = median (our segment start - user turn end) over successful
    replies. Medians, as FD-Bench reports them.

No ASR: the benchmarks transcribe the model's audio (parakeet-tdt-0.6b-v2, WhisperX); we use our own text aligned
to the samples that were played (each reply's heard text spread over its played samples by characters), which is
what an ideal ASR would return. Scenario sets are built offline: users speak with the packaged Piper voice, other
people and the television with espeak-ng voices; noise is seeded white / pink noise at 0, 10, 20 dB SNR; echo is
our own playback leaking back into the mic (the `speaker` setup).

Every scenario is one `vita.duplex.scenarios.Scenario` run through `vita.duplex.simulate.run`, so the session is the
one served; replies are teacher-forced by script (the engine's figures) unless `free=True`: then only each
scenario's first answer is (the one that later speech overlaps), and a trained model decides every later state
token and answer, so the addressee figures (v1.5 behaviours, interruptions) measure the model. In pause handling
the forced answer is the whole question's: the piece before the pause (`Segment.continued`) is the model's to take
or leave, as FDB asks of it.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from vita.bench.duplex_sentences import BUILTIN, Sentences
from vita.config import SAMPLE_RATE
from vita.duplex.events import ReplyCancelled, ReplyFinished, ReplyStarted, TextDelta, UserSpeechEnded
from vita.duplex.scenarios import Scenario, Segment
from vita.duplex.simulate import Result
from vita.media.audio import resample

Voice = Callable[[str], np.ndarray]  # text -> [N] float32 16 kHz

def espeak_voice(variant: str = "en-us+f3", speed: int = 165) -> Voice:
    """espeak-ng (Debian package) as a second, clearly different voice: text -> 16 kHz pcm."""
    import io

    import soundfile as sf

    def say(text: str) -> np.ndarray:
        wav = subprocess.run(["espeak-ng", "-v", variant, "-s", str(speed), "--stdout", text], capture_output=True,
                             check=True).stdout
        pcm, rate = sf.read(io.BytesIO(wav), dtype="float32")
        return resample(pcm, rate, SAMPLE_RATE)

    return say


def _noise(rng: np.random.Generator, samples: int, *, pink: bool) -> np.ndarray:
    x = rng.normal(0, 1, samples)
    if pink:  # 1/f spectrum
        spec = np.fft.rfft(x)
        spec /= np.sqrt(np.maximum(np.arange(len(spec)), 1))
        x = np.fft.irfft(spec, len(x))
    return (x / (np.sqrt(np.mean(x**2)) + 1e-12)).astype(np.float32)


def _at_snr(noise: np.ndarray, speech_rms: float, snr_db: float) -> np.ndarray:
    return noise * speech_rms / 10 ** (snr_db / 20)


def _rms(x: np.ndarray) -> float:
    v = x[np.abs(x) > 1e-3]
    return float(np.sqrt(np.mean(v**2))) if len(v) else 0.0


FAMILIES = ("turn_taking", "pause", "interruption", "backchannel", "user_backchannel", "talking_to_others",
            "background_speech", "fd_bench")  # the order `build_cases` makes them in


@dataclass
class Case:
    family: str
    scenario: Scenario
    marks: dict  # family-specific true times (s on the mic timeline)


def build_cases(user: Voice, other: Voice, *, n: int = 4, seed: int = 0,
                sentences: Sentences = BUILTIN) -> list[Case]:
    """The scenario sets (n per family) of `sentences`, spoken by `user` (Piper) and `other` (espeak-ng); `seed`
    draws the noise and the monologue's gaps."""
    s = sentences
    rng = np.random.default_rng(seed)

    def say(text: str, gain: float = 0.5, who: Voice = user) -> np.ndarray:
        return (gain * who(text)).astype(np.float32)

    cases: list[Case] = []
    lead = 0.5
    for i in range(n):
        text, reply = s.queries[i % len(s.queries)]
        q = say(text)
        seg = Segment(lead, q, "query", reply)
        end = seg.speech_span()[1]
        cases.append(Case("turn_taking", Scenario(f"turn-taking-{i}", [seg], lead + len(q) / SAMPLE_RATE + 7.0),
                          {"turn_end": end}))
        # pause handling: the question in two renderings with a 0.5-1.5 s pause between them
        words = text.split()
        k = max(len(words) // 2, 1)
        head, tail = say(" ".join(words[:k])), say(" ".join(words[k:]))
        pause = 0.5 + (i / max(n - 1, 1))
        h = Segment(lead, head, "query", reply, continued=True)
        t = Segment(lead + len(head) / SAMPLE_RATE + pause, tail, "query", reply)
        cases.append(Case("pause", Scenario(f"pause-{i}", [h, t], t.at + len(tail) / SAMPLE_RATE + 7.0),
                          {"pause_start": h.speech_span()[1], "turn_end": t.speech_span()[1], "pause_s": pause}))
        # user interruption: a second question 2.5 s into our answer
        itext, ireply = s.interruptions[i % len(s.interruptions)]
        b = say(itext)
        at = end + 2.5
        bseg = Segment(at, b, "query", ireply)
        on, off = bseg.speech_span()
        cases.append(Case("interruption", Scenario(f"interruption-{i}", [seg, bseg], at + len(b) / SAMPLE_RATE + 7.0),
                          {"onset": on, "end": off}))
        # backchannel (FDB v1): a monologue with short gaps; nothing in it asks for a reply
        parts, t0, segs = s.monologue, lead, []
        for j, sentence in enumerate(parts):
            pcm = say(sentence)
            segs.append(Segment(t0, pcm, "query", reply if j == len(parts) - 1 else "<1> Mm, I see."))
            t0 += len(pcm) / SAMPLE_RATE + 0.4 + 0.3 * rng.random()
        cases.append(Case("backchannel", Scenario(f"backchannel-{i}", segs, t0 + 6.0),
                          {"start": segs[0].speech_span()[1], "turn_end": segs[-1].speech_span()[1]}))
        # v1.5 behaviours while we speak: a backchannel, talking to others, background speech
        for fam, pcm, kind in (
            ("user_backchannel", say(s.backchannels[i % len(s.backchannels)]), "chatter"),
            ("talking_to_others", say(s.to_others[i % len(s.to_others)]), "chatter"),
            ("background_speech", _background(say(s.background[i % len(s.background)], 0.2, other), rng), "noise"),
        ):
            over = Segment(end + 2.5, pcm, kind, "<2>" if kind == "chatter" else "")
            on, off = over.speech_span()
            length = end + 2.5 + len(pcm) / SAMPLE_RATE + 8.0
            cases.append(Case(fam, Scenario(f"{fam.replace('_', '-')}-{i}", [seg, over], length),
                              {"onset": on, "end": off}))
        # FD-Bench: three rounds; the second interrupts the first answer; noise in a gap before the third
        snr = (0.0, 10.0, 20.0)[i % 3]
        q2text, q2reply = s.interruptions[(i + 1) % len(s.interruptions)]
        q3text, q3reply = s.queries[(i + 2) % len(s.queries)]
        q2, q3 = say(q2text), say(q3text)
        s1 = Segment(lead, q, "query", reply)
        s2 = Segment(end + 2.0, q2, "query", q2reply)
        gap_at = s2.at + len(q2) / SAMPLE_RATE + 6.0  # after the second answer
        noise = _at_snr(_noise(rng, SAMPLE_RATE, pink=i % 2 == 0), _rms(q), snr)
        s_noise = Segment(gap_at, noise, "noise")
        s3 = Segment(gap_at + 3.5, q3, "query", q3reply)
        length = s3.at + len(q3) / SAMPLE_RATE + 7.0
        cases.append(Case("fd_bench", Scenario(f"fd-bench-{i}", [s1, s2, s_noise, s3], length), {"snr_db": snr}))
    return cases


def _background(speech: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A distant voice (espeak-ng, low gain) in pink noise at 10 dB SNR: a television in the room."""
    return (speech + _at_snr(_noise(rng, len(speech), pink=True), _rms(speech), 10.0)).astype(np.float32)


# ---- what we said, when -----------------------------------------------------------------------------------------


def words_said(res: Result) -> list[tuple[float, float, str]]:
    """(start s, end s, word) of every word we played, on the mic timeline: each reply's heard text spread over its
    played samples by characters (no ASR: our own text, aligned to what the speaker played)."""
    text: dict[int, str] = {}
    for e in res.events:
        if isinstance(e, TextDelta):
            text[e.reply_id] = text.get(e.reply_id, "") + e.text
        elif isinstance(e, ReplyFinished):
            text[e.reply_id] = e.text
        elif isinstance(e, ReplyCancelled):
            text[e.reply_id] = e.heard
    out = []
    for rid, said in text.items():
        pieces = [(at, n) for r, at, n in res.placed if r == rid]
        total = sum(n for _, n in pieces)
        said = said.strip()
        if not total or not said:
            continue
        starts = np.cumsum([0] + [n for _, n in pieces])

        def when(k: float, pieces=pieces, starts=starts) -> float:  # played sample k -> timeline seconds
            j = min(int(np.searchsorted(starts, k, side="right")) - 1, len(pieces) - 1)
            return (pieces[j][0] + (k - starts[j])) / SAMPLE_RATE

        pos = 0
        for w in said.split():
            a = said.index(w, pos)
            pos = a + len(w)
            out.append((when(a / len(said) * total), when(pos / len(said) * total), w))
    return sorted(out)


def speech_segments(pcm: np.ndarray, *, merge_s: float, threshold: float = 0.5) -> list[tuple[float, float]]:
    """Silero VAD segments (s) of a 16 kHz stream, merged across gaps <= merge_s (FDB v1.5 / FD-Bench style)."""
    from vita.speech.vad import WINDOW, SileroModel

    probs = SileroModel().step(pcm)
    segs: list[list[float]] = []
    for i, p in enumerate(probs):
        if p < threshold:
            continue
        a, b = i * WINDOW / SAMPLE_RATE, (i + 1) * WINDOW / SAMPLE_RATE
        if segs and a - segs[-1][1] <= merge_s:
            segs[-1][1] = b
        else:
            segs.append([a, b])
    return [(a, b) for a, b in segs if b - a >= 0.1]


def takeover(words: Sequence[tuple[float, float, str]], a: float, b: float = float("inf")) -> tuple[int, float | None]:
    """FDB's rule on the words in [a, b): (TOR 0/1, first word start or None)."""
    inside = [w for w in words if a <= w[0] < b]
    if not inside:
        return 0, None
    span = inside[-1][1] - inside[0][0]
    return int(span >= 1.0 or len(inside) > 3), inside[0][0]


# ---- scoring ------------------------------------------------------------------------------------------------------


def _median_ms(xs: Sequence[float]) -> float | None:
    return round(1000 * float(np.median(xs)), 1) if len(xs) else None


def _mean(xs: Sequence[float], nd: int = 3) -> float | None:
    return round(float(np.mean(xs)), nd) if len(xs) else None


def score(cases: Sequence[Case], results: Sequence[Result]) -> dict:
    """The `public` report: FDB v1 per task, FDB v1.5 behaviours, FD-Bench, each on its own."""
    acc: dict[str, dict[str, list]] = {}

    def add(fam: str, key: str, value) -> None:
        acc.setdefault(fam, {}).setdefault(key, []).append(value)

    for case, res in zip(cases, results, strict=True):
        words = words_said(res)
        m, fam = case.marks, case.family
        ours = speech_segments(res.speaker[: int(case.scenario.duration * SAMPLE_RATE)], merge_s=0.5)
        if fam == "turn_taking":
            tor, first = takeover(words, m["turn_end"])
            add(fam, "tor", tor)
            if tor:
                add(fam, "latency", max(first - m["turn_end"], 0.0))
        elif fam == "pause":
            tor, _ = takeover(words, m["pause_start"], m["turn_end"])
            add(fam, "tor", tor)
            t2, first = takeover(words, m["turn_end"])
            if t2:
                add(fam, "latency_after_turn", max(first - m["turn_end"], 0.0))
        elif fam == "interruption":
            tor, first = takeover(words, m["end"])
            add(fam, "tor", tor)
            if tor:
                add(fam, "latency", max(first - m["end"], 0.0))
            add(fam, "respond", int(_behaviour(res, m) == "C_RESPOND"))
            stop = [b for a, b in ours if a < m["onset"] < b]
            if stop:
                add(fam, "stop", stop[0] - m["onset"])
        elif fam == "backchannel":
            inside = [(a, b) for a, b in ours if m["start"] <= a < m["turn_end"]]
            n_words = [sum(1 for w in words if a <= w[0] < b) for a, b in inside]
            long = any(b - a > 3.0 for a, b in inside)
            last = inside[-1] if inside else None
            tor = int(long or (last is not None and (last[1] - last[0] >= 1.0 or n_words[-1] > 2)))
            add(fam, "tor", tor)
        elif fam in ("user_backchannel", "talking_to_others", "background_speech"):
            label = _behaviour(res, m)
            add(fam, "labels", label)
            over = [b - m["onset"] for a, b in ours if a <= m["onset"] < b]
            if over:
                add(fam, "stop", over[0])
            resumed = [a - m["end"] for a, b in ours if a >= m["end"]]
            if resumed:
                add(fam, "resume", resumed[0])
        elif fam == "fd_bench":
            _fd_bench(case, res, ours, add)
    return _summarise(acc)


def per_case(cases: Sequence[Case], results: Sequence[Result]) -> list[dict]:
    """Each case's own row of its family (`score` of that case alone), named: for paired comparisons of two runs."""
    rows = []
    for case, res in zip(cases, results, strict=True):
        rep = score([case], [res])
        row = rep["fd_bench"] if case.family == "fd_bench" else {**rep["fdb_v1"], **rep["fdb_v1_5"]}[case.family]
        rows.append({"name": case.scenario.name, "family": case.family, **row})
    return rows


def _behaviour(res: Result, m: dict) -> str:
    ended = {e.utterance_id: e.t for e in res.events if isinstance(e, UserSpeechEnded)}
    new = [e for e in res.events if isinstance(e, ReplyStarted) and m["onset"] <= ended.get(e.utterance_id, -1)]
    if new:
        return "C_RESPOND"
    cancelled = [e for e in res.events if isinstance(e, ReplyCancelled) and e.t >= m["onset"]]
    later = [1 for r, at, n in res.placed if at / SAMPLE_RATE > m["end"] and n > 0]
    return "C_RESUME" if not cancelled and later else "C_UNKNOWN"


def _fd_bench(case: Case, res: Result, ours: list[tuple[float, float]], add) -> None:
    users = [s for s in case.scenario.segments if s.kind == "query"]
    spans = [s.speech_span() for s in users]
    for k, (on, end) in enumerate(spans):
        nxt = spans[k + 1][0] if k + 1 < len(spans) else float("inf")
        replies = [a for a, b in ours if a >= end - 0.5 and a < nxt]
        add("fd_bench", "srr", int(bool(replies)))
        if replies:
            add("fd_bench", "fsed", max(replies[0] - end, 0.0))
        talking = [(a, b) for a, b in ours if a < on < b]
        if k > 0 and talking:  # an interruption of our speech
            a, b = talking[0]
            add("fd_bench", "sir", int(b <= nxt and b >= on))
            add("fd_bench", "ird", b - on)
    noise = [s for s in case.scenario.segments if s.kind == "noise"]
    for s in noise:
        g0, g1 = s.at, min([u.at for u in users if u.at > s.at], default=case.scenario.duration)
        if g1 - g0 >= 2.5:
            stopped = [1 for a, b in ours if g0 <= b < g1 and b - a < 5.5]
            add("fd_bench", "nir", int(bool(stopped)))


def _summarise(acc: dict[str, dict[str, list]]) -> dict:
    out: dict = {"fdb_v1": {}, "fdb_v1_5": {}, "fd_bench": {}}
    v1 = out["fdb_v1"]
    for fam in ("pause", "backchannel", "turn_taking", "interruption"):
        a = acc.get(fam, {})
        row = {"n": len(a.get("tor", [])), "tor": _mean(a.get("tor", []))}
        if fam == "turn_taking" or fam == "interruption":
            row["latency_s"] = _mean(a.get("latency", []))
        if fam == "interruption":
            row["stop_ms_p50"] = _median_ms(a.get("stop", []))
            row["relevance"] = None  # GPT-4-turbo judge: not available offline
            row["respond"] = _mean(a.get("respond", []))  # a reply of its own (not FDB's: TOR counts a resumed one)
        if fam == "pause":
            row["latency_after_turn_s"] = _mean(a.get("latency_after_turn", []))
        if fam == "backchannel":
            row["frequency"], row["jsd"] = 0.0, 1.0  # we produce no backchannels of our own
        v1[fam] = row
    for fam in ("user_backchannel", "talking_to_others", "background_speech"):
        a = acc.get(fam, {})
        labels = a.get("labels", [])
        out["fdb_v1_5"][fam] = {
            "n": len(labels),
            **{k.lower(): _mean([int(x == k) for x in labels]) for k in ("C_RESUME", "C_RESPOND", "C_UNKNOWN")},
            "stop_ms_p50": _median_ms(a.get("stop", [])), "resume_ms_p50": _median_ms(a.get("resume", [])),
            "judge": None,
        }
    f = acc.get("fd_bench", {})
    out["fd_bench"] = {"srr": _mean(f.get("srr", [])), "sir": _mean(f.get("sir", [])), "nir": _mean(f.get("nir", [])),
                       "ird_ms_median": _median_ms(f.get("ird", [])), "fsed_ms_median": _median_ms(f.get("fsed", [])),
                       "rounds": len(f.get("srr", [])), "interruptions": len(f.get("sir", [])),
                       "gaps": len(f.get("nir", [])), "score_gpt4o": None}
    return out


# published figures (reference/peers-2026-12.md 1b / 2.1 / 2.4); None where the source has none
PEERS = {
    "VITA-1.5": {"fd_srr": "26.9/18.3/17.1 %", "fd_sir": "75.7/81.9/78.0 %", "fd_ird": "13.1/10.8/4.7 s",
                 "fd_fsed": "4.2/2.6/1.8 s"},
    "Freeze-Omni": {"pause": "0.642", "backchannel": "0.636", "turn_tor": "0.336", "turn_lat": "0.953 s",
                    "int_tor": "0.867", "int_lat": "1.409 s", "fd_srr": "~11 %", "fd_ird": "3.6-12.2 s",
                    "fd_fsed": "0.45-0.52 s"},
    "Moshi": {"pause": "0.985", "backchannel": "1.000", "turn_tor": "0.941", "turn_lat": "0.265 s",
              "int_tor": "1.000", "int_lat": "0.257 s", "fd_srr": "34-62 %", "fd_sir": "73-83 %",
              "fd_ird": "1.35-1.53 s"},
    "PersonaPlex": {"pause": "0.584", "backchannel": "0.327", "turn_tor": "0.992", "turn_lat": "0.070 s",
                    "int_tor": "1.000", "int_lat": "0.400 s"},
    "GPT-realtime": {"pause": "0.010", "backchannel": "0.000", "turn_tor": "1.000", "turn_lat": "1.47 s",
                     "int_tor": "0.970", "int_lat": "1.50 s"},
}


def markdown(pub: dict, *, label: str) -> str:
    """The public figures next to the peers' published ones (one table per benchmark)."""

    def f(x, unit: str = "") -> str:
        return "-" if x is None else f"{x:g}{unit}"

    v1, v15, fd = pub["fdb_v1"], pub["fdb_v1_5"], pub["fd_bench"]
    lines = ["| FDB v1 | pause TOR (lower) | backchannel TOR (lower) | turn-taking TOR | turn-taking latency | "
             "interruption TOR | interruption latency |", "|---|---|---|---|---|---|---|",
             f"| **{label}** | {f(v1['pause']['tor'])} | {f(v1['backchannel']['tor'])} | "
             f"{f(v1['turn_taking']['tor'])} | {f(v1['turn_taking']['latency_s'], ' s')} | "
             f"{f(v1['interruption']['tor'])} | {f(v1['interruption']['latency_s'], ' s')} |"]
    for name, p in PEERS.items():
        if "pause" in p:
            lines.append(f"| {name} | {p['pause']} | {p['backchannel']} | {p['turn_tor']} | {p['turn_lat']} | "
                         f"{p['int_tor']} | {p['int_lat']} |")
    lines += ["", f"{label}: interruptions answered by a reply of their own {f(v1['interruption'].get('respond'))} "
                  "(FDB's TOR also counts the old answer resumed after the interruption)"]
    lines += ["", "| FDB v1.5 (labels from our events; no judge) | C_RESUME | C_RESPOND | C_UNKNOWN | "
                  "talks over the user (median) | resumes after (median) |", "|---|---|---|---|---|---|"]
    for fam, r in v15.items():
        lines.append(f"| {fam.replace('_', ' ')} | {f(r['c_resume'])} | {f(r['c_respond'])} | {f(r['c_unknown'])} | "
                     f"{f(r['stop_ms_p50'], ' ms')} | {f(r['resume_ms_p50'], ' ms')} |")
    lines += ["", "| FD-Bench | SRR | SIR | NIR | IRD (median) | FSED (median) |", "|---|---|---|---|---|---|",
              f"| **{label}** | {f(fd['srr'])} | {f(fd['sir'])} | {f(fd['nir'])} | {f(fd['ird_ms_median'], ' ms')} "
              f"| {f(fd['fsed_ms_median'], ' ms')} |"]
    for name, p in PEERS.items():
        if "fd_srr" in p:
            lines.append(f"| {name} | {p['fd_srr']} | {p.get('fd_sir', '-')} | - | {p['fd_ird']} | "
                         f"{p.get('fd_fsed', '-')} |")
    return "\n".join(lines)
