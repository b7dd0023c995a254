"""`vita generate`: answer one turn over text, images, a video and/or a spoken question (`Vita.stream`)."""

from __future__ import annotations

import argparse
import json
import sys
import time

from vita.cli.args import UsageError, add_model_arguments, device_from_args, positive_int, seed_int


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    g = subparsers.add_parser("generate", help="answer one turn over text, images, a video and/or a spoken question")
    add_model_arguments(g, default=None, help="model directory (ours, official VITA-1.0, HF LLM) or preset")
    g.add_argument("--image", action="append", default=[], help="image file (repeatable)")
    g.add_argument("--video", help="video file")
    g.add_argument("--audio", help="audio file (wav, flac, ogg, mp3; resampled to 16 kHz mono)")
    g.add_argument("--prompt", help="typed question")
    g.add_argument("--max-new-tokens", type=positive_int, default=256)
    g.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    g.add_argument("--top-k", type=int, default=0, help="0 = off")
    g.add_argument("--top-p", type=float, default=1.0, help="1.0 = off")
    g.add_argument("--seed", type=seed_int, default=None)
    g.add_argument("--vision-tower", help="InternViT folder (default: as named in the official config)")
    g.add_argument("--audio-encoder", help="audio-encoder folder (default: as named in the official config)")
    g.add_argument("--strict-audio", action="store_true", help="refuse audio that is not 16 kHz mono (no resampling)")
    g.add_argument("--json", action="store_true", help='print {"state", "text", "token_ids"} as JSON')
    g.set_defaults(func=run)
    return g


def run(args: argparse.Namespace) -> int:
    import torch

    from vita.api import load
    from vita.generation.sampling import SamplingConfig

    if args.threads:
        torch.set_num_threads(args.threads)
    if not (args.prompt or args.image or args.video or args.audio):
        raise UsageError("give at least one of --prompt, --image, --video, --audio")
    device, dtype = device_from_args(args)
    t0 = time.perf_counter()
    model = load(args.model, dtype=dtype, device=device, vision_tower=args.vision_tower,
                 audio_encoder=args.audio_encoder, quantize=args.quantize)
    load_s = time.perf_counter() - t0
    model.processor.strict_audio = args.strict_audio
    inputs = model.inputs(args.prompt, images=args.image, video=args.video, audio=args.audio)
    sampling = SamplingConfig(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p)
    stream = model.stream(inputs, max_new_tokens=args.max_new_tokens, sampling=sampling, seed=args.seed)
    t1 = time.perf_counter()
    while True:
        try:
            delta = next(stream)
        except StopIteration as stop:
            reply = stop.value
            break
        if not args.json:
            sys.stdout.write(delta)
            sys.stdout.flush()
    gen_s = time.perf_counter() - t1
    if args.json:
        print(json.dumps({"state": reply.state, "text": reply.text, "token_ids": reply.token_ids,
                          "finish_reason": reply.finish_reason}, ensure_ascii=False))
    else:
        print()
        print(f"[state {reply.state or 'none'} | {len(reply.token_ids)} tokens | finish {reply.finish_reason} | "
              f"load {load_s:.2f} s | prompt {inputs.token_ids.shape[1]} tokens | generate {gen_s:.2f} s]",
              file=sys.stderr)
    return 0
