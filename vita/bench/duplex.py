"""`vita bench duplex`: the scripted duplex scenarios (`vita.duplex.scenarios`: the built-in six, or those of a JSON
file) run on a model, scored by `vita.duplex.simulate`.

`bench(...)` reports response and stop latency (p50 / p90, ms), false-trigger and miss rates, success-interrupt /
success-reply rates, a per-stage breakdown, and the RSS of two active roles over one (`vita.bench.rss`, a fresh
subprocess): one object with exactly the keys response_ms_p50, response_ms_p90, stop_ms_p50, stop_ms_p90,
false_trigger_rate, miss_rate, rss_two_roles_over_one, scenarios (rows, each naming the model) and stages, plus
`public` with `public=True`: Full-Duplex-Bench v1 per task, v1.5 behaviours, FD-Bench (`vita.bench.duplex_public`).
The command line is `vita.cli.bench`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vita.media.audio import SAMPLE_RATE

if TYPE_CHECKING:
    from vita.bench.duplex_sentences import Sentences


def bench(model_name: str, scenarios: list | None = None, *, setup: str = "auto", compute_time: bool = True,
          rss: bool = True, model=None, synth=None, public: bool = False, public_n: int = 4,
          free: bool = False, device: str = "cpu", dtype: str | None = None,
          families: list[str] | None = None, public_seed: int = 0, sentences: Sentences | None = None) -> dict:
    """Run the scenarios (default: built-in) on `model_name` (or the already loaded `model`, a `Vita`; `synth`:
    a loaded `PiperSynth`); the `--json` report object. `public`: also the public benchmarks' sets
    (`vita.bench.duplex_public`, `public_n` per family) under the key "public". `free`: only each scenario's
    first answer is forced; a trained model decides every other state and answer. `families`: only these public
    families (`vita.bench.duplex_public.FAMILIES`; default all); `sentences`, `public_seed`: what they say and the
    noise seed (`vita.bench.duplex_sentences`; default the built-in set, seed 0); the report's `public.cases` holds
    each case's own row. `device`, `dtype`: where
    `model_name` is loaded (`vita.devices`); the RSS ratio is always measured on the CPU (host memory)."""
    from vita.api import load
    from vita.bench.rss import measure_rss_ratio
    from vita.duplex import simulate
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
        from vita.bench.duplex_sentences import BUILTIN

        cases = duplex_public.build_cases(synth, duplex_public.espeak_voice(), n=public_n, seed=public_seed,
                                          sentences=sentences or BUILTIN)
        cases = [c for c in cases if families is None or c.family in families]
        got, _ = _run_all(model, synth, [c.scenario for c in cases], setup=setup, compute_time=compute_time,
                          free=free)
        rep["public"] = {"model": model_name, "forced": not free, "per_family": public_n, "seed": public_seed,
                         "sentences": "built-in" if sentences is None else "own",
                         **duplex_public.score(cases, got), "cases": duplex_public.per_case(cases, got)}
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
    job = engine.start(engine.new_cache(), [Turn("user", [Audio(0.5 * synth("Hello there."), SAMPLE_RATE)])])
    while not job.done:
        job.step()
