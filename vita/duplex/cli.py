"""`vita chat` and `vita bench duplex` (wired by `vita.cli` through `add_parser` and `add_bench_parser`).

    vita chat --model vita-mini [--audio q.wav]... [--speak out.wav] < questions.txt

is a terminal conversation over stdin (typed lines, `/audio PATH`, `/image PATH`, `/quit`): see `vita.duplex.chat`.

    vita chat --model vita-mini --mic question.wav [--out replies.wav] [--script "<1> Hello there."]... [--json]

drives a duplex `Session` from a recorded microphone file instead: the file is fed in 20 ms chunks on a fake clock
that advances by the chunk length, with `--ticks` units of model work per chunk (a stand-in for compute speed);
events are printed one per line (AudioOut summarised) and the reply audio is written to `--out` on the mic's
timeline.

    vita bench duplex [--model M] [--scenarios FILE] [--setup auto|headphones|speaker] [--no-compute-time] [--json]

runs the scripted scenarios (`vita.duplex.scenarios`: the built-in six, or those of a JSON file) and reports
response and stop latency (p50 / p90, ms), false-trigger and miss rates, success-interrupt / success-reply rates,
a per-stage breakdown, and the RSS of two active roles over one (`vita.duplex.memory`, a fresh subprocess).
`--json` prints one object with exactly the keys response_ms_p50, response_ms_p90, stop_ms_p50, stop_ms_p90,
false_trigger_rate, miss_rate, rss_two_roles_over_one, scenarios (rows, each naming the model) and stages, plus
`public` with `--public`: Full-Duplex-Bench v1 per task, v1.5 behaviours, FD-Bench (`vita.bench.duplex_public`).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

import numpy as np

from vita import devices
from vita.speech.voices import add_voice_argument  # issue 14


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("chat", help="terminal conversation over stdin (or a duplex run over a mic file)")
    p.add_argument("--model", default="vita-mini", help="model directory or preset")
    p.add_argument("--audio", action="append", default=[], help="ask this spoken question first (repeatable)")
    p.add_argument("--speak", help="write the spoken answers to this wav (16 kHz; the voice: --voice)")
    add_voice_argument(p)  # issue 14: the model's own VITA-1.5 voice beside Piper
    p.add_argument("--history-turns", type=int, default=6, help="turns of history kept in the prompt")
    p.add_argument("--max-seq-len", type=int, default=2048, help="KV cache positions (history + answer)")
    p.add_argument("--mic", help="duplex mode: a recorded mic file (any format; resampled to 16 kHz mono)")
    p.add_argument("--out", help="duplex mode: write the reply audio here (wav, on the mic's timeline)")
    p.add_argument("--rate", type=int, default=16000, choices=(16000, 24000), help="reply audio sample rate")
    p.add_argument("--script", action="append", default=[],
                   help="teacher-force the next reply (e.g. '<2>' or '<1> Sure.'), in order; for random weights")
    p.add_argument("--ticks", type=int, default=3, help="duplex mode: units of model work per 20 ms of audio")
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--tail", type=float, default=10.0, help="duplex mode: seconds of silence appended")
    p.add_argument("--headphones", action="store_true", help="duplex mode: no echo front end (no AEC, no gate)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest for batch-1 decode)")
    devices.add_arguments(p)
    p.add_argument("--quantize", choices=["int8", "int4"], default=None,
                   help="quantize the LLM's weights at load (vita.nn.quant; int4: groups of 32 with an int8 head)")
    p.add_argument("--json", action="store_true", help="duplex mode: events as JSON lines")
    p.set_defaults(func=run_chat)
    return p


def add_bench_parser(bench_subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = bench_subparsers.add_parser("duplex", help="scripted duplex scenarios: latencies, false triggers, misses")
    p.add_argument("--model", default="vita-mini", help="model directory or preset")
    p.add_argument("--scenarios", help="JSON scenario file (schema: vita.duplex.scenarios); default: built-in")
    p.add_argument("--setup", default="auto", choices=("auto", "headphones", "speaker"),
                   help="auto: each scenario's own (echo only where it has an echo gain); speaker: every "
                        "scenario's playback leaks back (-6 dB, 40 ms) through AEC3 + gate; headphones: no echo")
    p.add_argument("--no-compute-time", action="store_true",
                   help="count no compute time (deterministic; latencies are then algorithmic only)")
    p.add_argument("--no-rss", action="store_true", help="skip the RSS measurement (rss_two_roles_over_one: null)")
    p.add_argument("--public", action="store_true",
                   help="also the public benchmarks (Full-Duplex-Bench v1 / v1.5 behaviours, FD-Bench) on scenario "
                        "sets built offline (vita.bench.duplex_public); JSON key 'public'")
    p.add_argument("--per-family", type=int, default=4, help="--public: scenarios per family")
    p.add_argument("--free", action="store_true",
                   help="force only each scenario's first answer (the one later speech overlaps); a trained model "
                        "decides every other state token and answer")
    p.add_argument("--threads", type=int, default=1)
    devices.add_arguments(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run_bench)
    return p


def bench(model_name: str, scenarios: list | None = None, *, setup: str = "auto", compute_time: bool = True,
          rss: bool = True, model=None, synth=None, public: bool = False, public_n: int = 4,
          free: bool = False, device: str = "cpu", dtype: str | None = None) -> dict:
    """Run the scenarios (default: built-in) on `model_name` (or the already loaded `model`, a `Vita`; `synth`:
    a loaded `PiperSynth`); the `--json` report object. `public`: also the public benchmarks' sets
    (`vita.bench.duplex_public`, `public_n` per family) under the key "public". `free`: only each scenario's
    first answer is forced; a trained model decides every other state and answer. `device`, `dtype`: where
    `model_name` is loaded (`vita.devices`); the RSS ratio is always measured on the CPU (host memory)."""
    from vita.api import load
    from vita.duplex import simulate
    from vita.duplex.memory import measure_rss_ratio
    from vita.duplex.scenarios import builtin_scenarios
    from vita.speech.tts import PiperSynth

    model = model if model is not None else load(model_name, device=device, dtype=dtype)
    synth = synth if synth is not None else PiperSynth()
    scenarios = scenarios if scenarios is not None else builtin_scenarios(synth)
    if compute_time:
        _warm_up(model, synth)
    results, setups = _run_all(model, synth, scenarios, setup=setup, compute_time=compute_time, free=free)
    ratio = measure_rss_ratio(model_name)["ratio"] if rss else None
    rep = simulate.report(results, rss_ratio=ratio, model=model_name)
    for r, s in zip(rep["scenarios"], setups, strict=True):
        r["setup"] = s
    if public:
        from vita.bench import duplex_public

        cases = duplex_public.build_cases(synth, duplex_public.espeak_voice(), n=public_n)
        got, _ = _run_all(model, synth, [c.scenario for c in cases], setup=setup, compute_time=compute_time,
                          free=free)
        rep["public"] = {"model": model_name, "forced": not free, "per_family": public_n,
                         **duplex_public.score(cases, got)}
    return rep


def _run_all(model, synth, scenarios: list, *, setup: str, compute_time: bool, free: bool) -> tuple[list, list]:
    from vita.duplex import simulate
    from vita.duplex.roles import Engine
    from vita.duplex.session import Session, SessionConfig
    from vita.speech.echo import GateConfig
    from vita.speech.tts import SpeechWorker, StreamingTTS

    results, setups = [], []
    for sc in scenarios:
        echo = {"auto": sc.echo_gain, "headphones": 0.0, "speaker": sc.echo_gain or 0.5}[setup]
        gate = GateConfig() if echo > 0 else GateConfig(enabled=False)
        sessions: list = []

        def make(scenario, clock, gate=gate, sessions=sessions):
            forcing = simulate.ScenarioForcing(scenario, clock, free=free)
            engine = Engine(model, max_new_tokens=256, forcing=forcing)
            # with compute time, speech renders on its own thread (as served); without, inline (deterministic)
            tts = SpeechWorker(synth) if compute_time else StreamingTTS(synth)
            sessions.append(Session(engine, tts, clock=clock, config=SessionConfig(gate=gate)))
            return sessions[-1]

        results.append(simulate.run(make, sc, echo_gain=echo, compute_time=compute_time))
        for s in sessions:
            if isinstance(s.tts, SpeechWorker):
                s.tts.close()
        setups.append("speaker" if echo > 0 else "headphones")
    return results, setups


def _warm_up(model, synth) -> None:
    """One short reply and one synthesis before timing (lazy initialisation is not a latency)."""
    from vita.duplex.roles import Engine
    from vita.processor import Audio, Turn

    engine = Engine(model, max_seq_len=512, max_new_tokens=4)
    job = engine.start(engine.new_cache(), [Turn("user", [Audio(0.5 * synth("Hello there."), 16000)])])
    while not job.done:
        job.step()


def run_bench(args: argparse.Namespace) -> int:
    import torch

    from vita.duplex import simulate
    from vita.duplex.scenarios import load_scenario_file

    torch.set_num_threads(args.threads)
    device, dtype = devices.from_args(args)
    scenarios = load_scenario_file(args.scenarios) if args.scenarios else None  # file errors before the model
    rep = bench(args.model, scenarios, setup=args.setup, compute_time=not args.no_compute_time, rss=not args.no_rss,
                public=args.public, public_n=args.per_family, free=args.free, device=device, dtype=dtype)
    if args.json:
        print(json.dumps(rep))
    else:
        print(simulate.markdown(rep, model=args.model, compute_time=not args.no_compute_time))
        if "public" in rep:
            from vita.bench.duplex_public import markdown

            print()
            print(markdown(rep["public"], label=args.model + ("" if args.free else " (scripted replies)")))
    return 0


def run_chat(args: argparse.Namespace) -> int:
    devices.from_args(args)  # a device this machine lacks fails before any file is read
    if not args.mic:
        from vita.duplex.chat import run_terminal

        return run_terminal(args)
    return run_mic(args)


def run_mic(args: argparse.Namespace) -> int:
    import torch

    from vita.api import load
    from vita.duplex.events import AudioIn, AudioOut, FakeClock
    from vita.duplex.roles import Engine, ScriptedReplies
    from vita.duplex.session import Session, SessionConfig
    from vita.media.audio import load_audio
    from vita.speech.echo import GateConfig
    from vita.speech.tts import StreamingTTS
    from vita.speech.voices import make_voice

    torch.set_num_threads(args.threads)
    device, dtype = devices.from_args(args)
    model = load(args.model, device=device, dtype=dtype, quantize=args.quantize)
    mic = load_audio(args.mic).numpy().astype(np.float32)  # [N] 16 kHz
    mic = np.concatenate([mic, np.zeros(int(args.tail * 16000), np.float32)])
    engine = Engine(model, max_new_tokens=args.max_new_tokens,
                    forcing=ScriptedReplies(args.script) if args.script else None)
    config = SessionConfig(gate=GateConfig(enabled=not args.headphones))
    clock = FakeClock()
    voice = make_voice(args.voice, model, args.model, args.rate)  # Piper, or the model's own (issue 14)
    session = Session(engine, StreamingTTS(voice), clock=clock, config=config)
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
        if i > len(mic) - int(args.tail * 16000) and not session.busy and not session.user_speaking:
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
