"""`vita chat`: drive a duplex `Session` from a recorded microphone file (offline, deterministic).

    vita chat --model tiny-random --mic question.wav [--out replies.wav] [--script "<1> Hello there."]... [--json]

The mic file is fed in 20 ms chunks on a fake clock that advances by the chunk length, with `--ticks` units of model
work per chunk (a stand-in for compute speed); events are printed one per line (AudioOut summarised) and the reply
audio is written to `--out` on the mic's timeline. Live audio devices and a browser transport are a later layer:
this command only exercises the state machine end to end. `add_parser(subparsers)` is wired by `vita.cli`.

    vita bench duplex [--model M] [--setup headphones|speaker|both] [--no-compute-time] [--json]

runs the scripted scenarios of `vita.duplex.simulate` (answer, barge-in, chatter, noise) and prints response and
stop latency (p50 / p90), false triggers and misses; `add_bench_parser(bench_subparsers)` adds it under `bench`.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

import numpy as np


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("chat", help="run the duplex session over a recorded mic file (offline simulation)")
    p.add_argument("--model", default="tiny-random", help="model directory or preset")
    p.add_argument("--mic", required=True, help="audio file (any format; resampled to 16 kHz mono)")
    p.add_argument("--out", help="write the reply audio here (wav, on the mic's timeline)")
    p.add_argument("--rate", type=int, default=16000, choices=(16000, 24000), help="reply audio sample rate")
    p.add_argument("--script", action="append", default=[],
                   help="teacher-force the next reply (e.g. '<2>' or '<1> Sure.'), in order; for random weights")
    p.add_argument("--ticks", type=int, default=3, help="units of model work per 20 ms of audio")
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--tail", type=float, default=10.0, help="seconds of silence appended so replies can finish")
    p.add_argument("--headphones", action="store_true", help="no echo front end (no AEC, no gate)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest for batch-1 decode)")
    p.add_argument("--json", action="store_true", help="events as JSON lines")
    p.set_defaults(func=run_chat)
    return p


def add_bench_parser(bench_subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = bench_subparsers.add_parser("duplex", help="scripted duplex scenarios: latencies, false triggers, misses")
    p.add_argument("--model", default="tiny-random", help="model directory or preset")
    p.add_argument("--setup", default="both", choices=("headphones", "speaker", "both"),
                   help="speaker: our voice leaks back at -6 dB after 40 ms, AEC3 + gate on")
    p.add_argument("--no-compute-time", action="store_true",
                   help="count no compute time (deterministic; latencies are then algorithmic only)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run_bench)
    return p


def run_bench(args: argparse.Namespace) -> int:
    import torch

    from vita.api import load
    from vita.duplex import simulate
    from vita.duplex.roles import Engine
    from vita.duplex.session import Session, SessionConfig
    from vita.speech.echo import GateConfig
    from vita.speech.tts import PiperSynth, StreamingTTS

    torch.set_num_threads(args.threads)
    model = load(args.model)
    synth = PiperSynth()
    scenarios = simulate.standard_scenarios(synth)
    setups = {"headphones": (GateConfig(enabled=False), 0.0), "speaker": (GateConfig(), 0.5)}
    report = {}
    for name in setups if args.setup == "both" else [args.setup]:
        gate, echo = setups[name]

        def make(scenario, clock, gate=gate):
            engine = Engine(model, max_new_tokens=256, forcing=simulate.ScenarioForcing(scenario, clock))
            return Session(engine, StreamingTTS(synth), clock=clock, config=SessionConfig(gate=gate))

        results = [simulate.run(make, sc, echo_gain=echo, compute_time=not args.no_compute_time) for sc in scenarios]
        report[name] = simulate.summary(results)
    if args.json:
        print(json.dumps(report))
        return 0
    for name, r in report.items():
        rl, sl = r["response_latency_s"], r["stop_latency_s"]
        print(f"{name:10s} response p50 {rl.get('p50', float('nan')):.3f} s p90 {rl.get('p90', float('nan')):.3f} s"
              f" (n={rl['n']}) | stop p50 {sl.get('p50', float('nan')):.3f} s p90 {sl.get('p90', float('nan')):.3f}"
              f" s (n={sl['n']}) | false triggers {r['false_triggers']} | misses {r['misses']}")
    return 0


def run_chat(args: argparse.Namespace) -> int:
    import torch

    from vita.api import load
    from vita.duplex.events import AudioIn, AudioOut, FakeClock
    from vita.duplex.roles import Engine, ScriptedReplies
    from vita.duplex.session import Session, SessionConfig
    from vita.media.audio import load_audio
    from vita.speech.echo import GateConfig
    from vita.speech.tts import PiperSynth, StreamingTTS

    torch.set_num_threads(args.threads)
    model = load(args.model)
    mic = load_audio(args.mic).numpy().astype(np.float32)  # [N] 16 kHz
    mic = np.concatenate([mic, np.zeros(int(args.tail * 16000), np.float32)])
    engine = Engine(model, max_new_tokens=args.max_new_tokens,
                    forcing=ScriptedReplies(args.script) if args.script else None)
    config = SessionConfig(gate=GateConfig(enabled=not args.headphones))
    clock = FakeClock()
    session = Session(engine, StreamingTTS(PiperSynth(out_rate=args.rate)), clock=clock, config=config)
    out = np.zeros(int(len(mic) * args.rate / 16000) + args.rate, np.float32)
    n = 320  # 20 ms
    for i in range(0, len(mic), n):
        clock.advance(n / 16000)
        events = session.feed(AudioIn(mic[i : i + n]))
        for _ in range(args.ticks):
            events += session.tick()
        for e in events:
            if isinstance(e, AudioOut):
                at = int(e.t * args.rate)
                seg = e.pcm[: max(len(out) - at, 0)]
                out[at : at + len(seg)] += seg
            _print(e, args.json)
        if i > len(mic) - int(args.tail * 16000) and not session.busy and not session.vad.in_speech:
            break
    if args.out:
        import soundfile as sf

        sf.write(args.out, np.clip(out, -1, 1), args.rate)
    return 0


def _print(event, as_json: bool) -> None:
    from vita.duplex.events import AudioOut

    name = type(event).__name__
    if isinstance(event, AudioOut):
        if not as_json:
            return  # too many to print one by one; they go to --out
        fields = {"t": event.t, "reply_id": event.reply_id, "samples": len(event.pcm)}
    else:
        fields = asdict(event)
    if as_json:
        print(json.dumps({"event": name, **fields}, ensure_ascii=False))
    else:
        print(f"{fields.pop('t'):8.2f}  {name:18s} {fields}")
    sys.stdout.flush()
