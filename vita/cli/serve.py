"""`vita serve`: the OpenAI-compatible HTTP API on uvicorn.

    vita serve [--model DIR|PRESET] [--host 127.0.0.1] [--port 8000] [--api-key KEY] [--allow-remote-media]
               [--allow-host NAME] [--allow-origin ORIGIN]
               [--max-request-bytes N] [--max-audio-seconds S] [--max-image-pixels N] [--max-images N]
               [--max-frames N] [--max-audio-clips N] [--max-new-tokens N] [--max-queued N]
               [--max-realtime-sessions N] [--max-realtime-frame-bytes N] [--max-realtime-buffer-seconds S]

Binds loopback by default. Any other host requires an API key (`--api-key` or `VITA_API_KEY`), then checked on
every request. Without a key only loopback Host headers and browser Origins are served (DNS rebinding, other web
pages): `--allow-host` / `--allow-origin` extend the lists. `?api_key=` never reaches the logs.
Importing this module imports neither FastAPI nor torch. The request limits are `vita.server.limits.Limits`, one
`--max-...` flag per field.
"""

from __future__ import annotations

import argparse
import gc
import sys
from dataclasses import fields
from pathlib import Path

from vita.cli.args import add_model_arguments, add_voice_argument, device_from_args
from vita.errors import ConfigError
from vita.server.auth import resolve_api_key
from vita.server.limits import Limits, flag
from vita.speech.voices import resolve_voice, voice_factory  # issue 14


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("serve", help="OpenAI-compatible HTTP API (chat completions) over one model")
    add_model_arguments(p, default="vita-mini")
    p.add_argument("--model-name", help="the id clients send as `model` (default: the --model name)")
    p.add_argument("--host", default="127.0.0.1", help="bind address (non-loopback needs an API key)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--api-key", help="require 'Authorization: Bearer KEY' (default: $VITA_API_KEY)")
    p.add_argument("--allow-remote-media", action="store_true", help="fetch http(s) image/video URLs of public "
                   "addresses (off: data URLs only)")
    p.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                   help="without an API key, accept this Host header besides loopback names (repeat; '*': any)")
    p.add_argument("--allow-origin", action="append", default=[], metavar="ORIGIN",
                   help="without an API key, accept this browser Origin (e.g. https://app.example) besides "
                   "loopback pages (repeat; '*': any)")
    p.add_argument("--vision-tower", help="InternViT folder (default: as named in the official config)")
    p.add_argument("--audio-encoder", help="audio-encoder folder (default: as named in the official config)")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    group = p.add_argument_group("limits")
    for f in fields(Limits):  # one `--max-...` option per `Limits` field, defaulting to the dataclass default
        kind = float if f.type in (float, "float") else int
        group.add_argument(f"--{flag(f.name)}", type=kind, default=f.default,
                           help=f"{f.metadata['help']} (default {f.default})")
    add_voice_argument(p)  # issue 14: the model's own VITA-1.5 voice beside Piper
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port must be in 0..65535, got {args.port}")
    key = resolve_api_key(args.host, args.api_key)
    device, dtype = device_from_args(args)
    try:
        limits = Limits(**{f.name: getattr(args, f.name) for f in fields(Limits)})
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    try:
        import uvicorn

        from vita.server.app import create_app
        from vita.server.realtime import RealtimeConfig
    except ImportError as exc:
        raise ConfigError(f"`vita serve` needs the serve extra (pip install 'vita[serve]'): {exc}") from exc
    import torch

    from vita.api import load
    from vita.server.engine import Engine

    if args.threads:
        torch.set_num_threads(args.threads)
    model = load(args.model, dtype=dtype, device=device, vision_tower=args.vision_tower,
                 audio_encoder=args.audio_encoder, quantize=args.quantize)
    name = args.model_name or Path(args.model.rstrip("/")).name
    speech = None  # issue 14: None = the packaged Piper voice; the model's own VITA-1.5 voice when chosen
    if resolve_voice(args.voice, args.model) == "vita15":
        from vita.server.audio_out import OUTPUT_RATE, SpeechOut

        speech = SpeechOut(voice_factory("vita15", model, args.model, OUTPUT_RATE))
    app = create_app(Engine(model, max_new_tokens=limits.max_new_tokens), model_id=name, limits=limits, api_key=key,
                     allow_remote_media=args.allow_remote_media, allowed_hosts=args.allow_host,
                     allowed_origins=args.allow_origin, speech=speech,
                     realtime=RealtimeConfig(model_threads=args.threads) if args.threads else None)
    # the model, tokenizer and app are here for good: a full garbage collection no longer walks them (each one took
    # 60-170 ms with the GIL held, a stall of the event loop and of every session)
    gc.collect()
    gc.freeze()
    print(f"vita serve: model {name!r} on http://{args.host}:{args.port}/v1 "
          f"({'API key required' if key else 'no API key: loopback only'})", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, timeout_graceful_shutdown=5,
                **limits.uvicorn())
    return 0
