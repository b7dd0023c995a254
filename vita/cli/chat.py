"""`vita chat`: a conversation in a terminal, or a duplex session driven by a recorded microphone file.

In a terminal: a conversation over stdin, one question at a time, answers streamed to stdout.

    vita chat --model vita-mini [--audio q.wav]... [--speak answers.wav] [--script "<1> Sure."]... < lines

Each stdin line is a typed question, or a command:
    /audio PATH    ask with a spoken question (any audio format; resampled to 16 kHz mono)
    /image PATH    attach an image to the next question (several may be attached)
    /quit          end (as does EOF)
`--audio FILE` questions are asked first, in order. Each answer prints as `vita [<state>]: text...`, the state
token (`<1>` spoken query, `<3>` typed query, `<2>` not a query, `-` none) apart from the streamed text, then a
status line on stderr (`[turn N | history M turns | P prompt positions, R reused | T s]`). The history keeps the
last `--history-turns` turns (images included) and the answers with their state token, as the model wrote them;
one role's KV cache holds it, so each question prefills only what is new. `--speak FILE` writes every answer,
spoken by the packaged Piper voice, into one 16 kHz wav (rewritten after each answer). A bad file or command
prints one `error: ...` line on stderr and the chat goes on.

    vita chat --model vita-mini --mic question.wav [--out replies.wav] [--script "<1> Hello there."]... [--json]

drives a duplex `Session` from a recorded microphone file instead: the file is fed in 20 ms chunks on a fake clock
that advances by the chunk length, with `--ticks` units of model work per chunk (a stand-in for compute speed);
events are printed one per line (AudioOut summarised) and the reply audio is written to `--out` on the mic's
timeline.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from vita.cli.args import add_model_arguments, add_voice_argument, device_from_args
from vita.errors import MediaError, PromptError, VitaError
from vita.media.audio import SAMPLE_RATE

SPEAK_RATE = SAMPLE_RATE


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("chat", help="terminal conversation over stdin (or a duplex run over a mic file)")
    add_model_arguments(p, default="vita-mini", help="model directory or preset", threads=1,
                        threads_help="torch threads (1 is fastest for batch-1 decode)")
    p.add_argument("--audio", action="append", default=[], help="ask this spoken question first (repeatable)")
    p.add_argument("--speak", help="write the spoken answers to this wav (16 kHz; the voice: --voice)")
    add_voice_argument(p)  # issue 14: the model's own VITA-1.5 voice beside Piper
    p.add_argument("--history-turns", type=int, default=6, help="turns of history kept in the prompt")
    p.add_argument("--max-seq-len", type=int, default=2048, help="KV cache positions (history + answer)")
    p.add_argument("--mic", help="duplex mode: a recorded mic file (any format; resampled to 16 kHz mono)")
    p.add_argument("--out", help="duplex mode: write the reply audio here (wav, on the mic's timeline)")
    p.add_argument("--rate", type=int, default=SAMPLE_RATE, choices=(SAMPLE_RATE, 24000),
                   help="reply audio sample rate")
    p.add_argument("--script", action="append", default=[],
                   help="teacher-force the next reply (e.g. '<2>' or '<1> Sure.'), in order; for random weights")
    p.add_argument("--ticks", type=int, default=3, help="duplex mode: units of model work per 20 ms of audio")
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--tail", type=float, default=10.0, help="duplex mode: seconds of silence appended")
    p.add_argument("--headphones", action="store_true", help="duplex mode: no echo front end (no AEC, no gate)")
    p.add_argument("--json", action="store_true", help="duplex mode: events as JSON lines")
    p.set_defaults(func=run_chat)
    return p


class TerminalChat:
    def __init__(self, args: argparse.Namespace) -> None:
        from vita.api import load
        from vita.duplex.roles import Engine, ScriptedReplies

        self.args = args
        device, dtype = device_from_args(args)
        self.vita = load(args.model, device=device, dtype=dtype, quantize=args.quantize)
        self.engine = Engine(self.vita, max_seq_len=args.max_seq_len, max_new_tokens=args.max_new_tokens,
                             forcing=ScriptedReplies(args.script) if args.script else None)
        self.cache = self.engine.new_cache()
        self.history: list = []  # Turn
        self.images: list = []  # Image parts for the next question
        self.turns = 0
        self.speech: list[np.ndarray] = []
        self.synth = None
        if args.speak:
            from vita.speech.voices import make_voice  # Piper, or the model's own (--voice, issue 14)

            self.synth = make_voice(args.voice, self.vita, args.model, SPEAK_RATE)

    # ---- commands ----------------------------------------------------------------------------------------------
    def handle(self, line: str) -> bool:
        """One input line; False ends the chat."""
        from vita.processor import Audio

        line = line.strip()
        if not line:
            return True
        if line in ("/quit", "/exit"):
            return False
        cmd, _, arg = line.partition(" ")
        arg = arg.strip()
        try:
            if cmd == "/image":
                self.attach(arg)
            elif cmd == "/audio":
                self.ask([Audio(load_wave(arg), SPEAK_RATE)])
            elif line.startswith("/"):
                raise VitaError(f"unknown command {cmd} (commands: /audio PATH, /image PATH, /quit)")
            else:
                self.ask([line])
        except (VitaError, OSError) as exc:
            error(exc)
        return True

    def attach(self, path: str) -> None:
        from vita.media.image import load_image
        from vita.processor import Image

        if not path:
            raise VitaError("/image needs a file path")
        if self.vita.config.vision is None:
            raise PromptError("this model has no vision encoder: images are not supported")
        if not Path(path).is_file():
            raise MediaError(f"image {path}: no such file")
        load_image(path)  # a corrupt or unsupported file is an error now, not at the next question
        self.images.append(Image(path))
        print(f"[image attached: {Path(path).name}]", file=sys.stderr, flush=True)

    # ---- a turn -----------------------------------------------------------------------------------------------
    def ask(self, parts: list) -> None:
        from vita.processor import Turn

        user = Turn("user", [*self.images, *parts])
        self.images = []
        history = list(self.history[-self.args.history_turns :])
        while True:
            while history and history[0].role != "user":
                history.pop(0)
            job = self.engine.start(self.cache, [*history, user])
            t0 = time.perf_counter()
            try:
                job.step()  # embed: processor + media encoders (errors for bad media surface here)
            except PromptError:
                if not history:
                    raise
                history = history[2:]  # the prompt does not fit the cache: forget the oldest exchange
                continue
            break
        out = sys.stdout
        shown = False
        while not job.done:
            delta = job.step()
            if not shown and (job.state_resolved or delta or job.done):
                out.write(f"vita [{job.state or '-'}]: ")
                shown = True
            if delta:
                out.write(delta)
                out.flush()
        if not shown:
            out.write(f"vita [{job.state or '-'}]: ")
        out.write("\n")
        out.flush()
        self.history = [*history, user, Turn("assistant", job.raw_text())]
        self.turns += 1
        prompt = job.prompt_len
        print(f"[turn {self.turns} | history {len(self.history)} turns | {prompt} prompt positions, {job.reused} "
              f"reused | {time.perf_counter() - t0:.2f} s]", file=sys.stderr, flush=True)
        if self.synth is not None:
            self.speak(job.visible_text)

    def speak(self, text: str) -> None:
        import soundfile as sf

        from vita.speech.tts import speakable

        said = speakable(text)
        pcm = self.synth(said) if said else np.zeros(0, np.float32)
        self.speech += [pcm, np.zeros(int(0.3 * SPEAK_RATE), np.float32)]
        sf.write(self.args.speak, np.clip(np.concatenate(self.speech), -1, 1), SPEAK_RATE)


def error(exc: BaseException) -> None:
    msg = str(exc) if isinstance(exc, VitaError) else f"{type(exc).__name__}: {exc}"
    print(f"error: {' '.join(msg.split())}", file=sys.stderr, flush=True)


def load_wave(path: str) -> np.ndarray:
    """A question's audio file -> [N] float32 16 kHz; a one-line MediaError when it cannot be used."""
    from vita.media.audio import load_audio

    if not path:
        raise VitaError("/audio needs a file path")
    if not Path(path).is_file():
        raise MediaError(f"audio {path}: no such file")
    return load_audio(path, target_rate=SPEAK_RATE).numpy().astype(np.float32)


def run_terminal(args: argparse.Namespace) -> int:
    import torch

    torch.set_num_threads(args.threads)
    waves = [load_wave(p) for p in args.audio]  # bad --audio files end the command before the model loads
    if args.speak and not Path(args.speak).resolve().parent.is_dir():
        raise VitaError(f"--speak {args.speak}: no such folder")
    chat = TerminalChat(args)
    from vita.processor import Audio

    for path, wave in zip(args.audio, waves, strict=True):
        print(f"you (audio): {Path(path).name}", flush=True)
        try:
            chat.ask([Audio(wave, SPEAK_RATE)])
        except (VitaError, OSError) as exc:
            error(exc)
    tty = sys.stdin.isatty()
    while True:
        if tty:
            print("you> ", end="", flush=True)
        line = sys.stdin.readline()
        if not line or not chat.handle(line):
            break
    return 0


def run_chat(args: argparse.Namespace) -> int:
    device_from_args(args)  # a device this machine lacks fails before any file is read
    if not args.mic:
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
    device, dtype = device_from_args(args)
    model = load(args.model, device=device, dtype=dtype, quantize=args.quantize)
    mic = load_audio(args.mic).numpy().astype(np.float32)  # [N] 16 kHz
    mic = np.concatenate([mic, np.zeros(int(args.tail * SAMPLE_RATE), np.float32)])
    engine = Engine(model, max_new_tokens=args.max_new_tokens,
                    forcing=ScriptedReplies(args.script) if args.script else None)
    config = SessionConfig(gate=GateConfig(enabled=not args.headphones))
    clock = FakeClock()
    voice = make_voice(args.voice, model, args.model, args.rate)  # Piper, or the model's own (issue 14)
    session = Session(engine, StreamingTTS(voice), clock=clock, config=config)
    out = np.zeros(int(len(mic) * args.rate / SAMPLE_RATE) + args.rate, np.float32)
    n = 320  # 20 ms
    for i in range(0, len(mic), n):
        clock.advance(n / SAMPLE_RATE)
        events = session.feed(AudioIn(mic[i : i + n]))
        for _ in range(args.ticks):
            events += session.tick()
        for e in events:
            if isinstance(e, AudioOut):
                at = int(e.t * args.rate)
                seg = e.pcm[: max(len(out) - at, 0)]
                out[at : at + len(seg)] += seg
            _print(e, args.json)
        if i > len(mic) - int(args.tail * SAMPLE_RATE) and not session.busy and not session.user_speaking:
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
