"""`python -m vita.cli.tools`: the tools that build and tune vita-mini's parts (the list: `vita.cli.tools`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from vita.cli.tools.common import parser, refuse_non_empty

__all__ = ["tower_pretrain", "feature_stats", "embed_align", "ctc_wer", "ctc_compress", "heard_targets",
           "add_transcriber", "ears", "swap_tower", "region_align", "tagger_head", "soup", "video_projector",
           "emoji_artists"]


def tower_pretrain(argv: list[str]) -> int:
    from vita.errors import run_command
    from vita.training import tower_pretrain as mod

    p = parser("tower_pretrain", mod.__doc__)
    p.add_argument("--init", required=True, help="model folder whose vision tower is pretrained")
    p.add_argument("--data", required=True, type=Path, help="VITA JSON with image + caption records")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    return run_command(lambda: mod.pretrain(args.init, args.data, args.out, epochs=args.epochs, lr=args.lr,
                                            batch=args.batch, seed=args.seed) and 0)


def feature_stats(argv: list[str]) -> int:
    from vita.errors import run_command
    from vita.training import feature_stats as mod

    p = parser("feature_stats", mod.__doc__)
    p.add_argument("--model", type=Path, required=True, help="model folder (our canonical layout)")
    p.add_argument("--data", type=Path, required=True, help="VITA-format JSON list with 'image' records")
    p.add_argument("--out", type=Path, required=True, help="new folder for the standardised model")
    p.add_argument("--images", type=int, default=512)
    args = p.parse_args(argv)
    if refuse_non_empty(args.out):
        return 2
    return run_command(lambda: print(json.dumps(mod.standardize(args.model, args.data, args.out, args.images))))


def embed_align(argv: list[str]) -> int:
    from vita.errors import run_command
    from vita.training import embed_align as mod

    p = parser("embed_align", mod.__doc__)
    p.add_argument("--model", type=Path, required=True, help="model folder (our canonical layout)")
    p.add_argument("--vision", type=Path, nargs="*", default=[], help="VITA-format JSON lists of captioned media")
    p.add_argument("--audio", type=Path, nargs="*", default=[],
                   help="VITA-format JSON lists of transcribed clips (instruct*.json: its clips of known words)")
    p.add_argument("--out", type=Path, required=True, help="new folder for the aligned model")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache", type=Path, help="folder keeping the frozen towers' outputs between runs")
    p.add_argument("--limit", type=int, help="read only the first N records of each file (smoke runs)")
    p.add_argument("--encoder-blocks", type=int, default=0,
                   help="also fine-tune this many top blocks of a Whisper audio encoder (after --epochs)")
    p.add_argument("--tune-epochs", type=int, default=4, help="epochs of the encoder fine-tune")
    p.add_argument("--tune-lr", type=float, default=3e-4, help="learning rate of the encoder fine-tune")
    args = p.parse_args(argv)
    if refuse_non_empty(args.out):
        return 2
    if not args.vision and not args.audio:
        print("error: give --vision and/or --audio", file=sys.stderr)
        return 2

    def align() -> None:
        mod.align(args.model, args.out, vision=args.vision, audio=args.audio, epochs=args.epochs, seed=args.seed,
                  limit=args.limit, cache=args.cache, encoder_blocks=args.encoder_blocks,
                  tune_epochs=args.tune_epochs, tune_lr=args.tune_lr, log=lambda m: print(m, flush=True))

    return run_command(align)


def ctc_wer(argv: list[str]) -> int:
    from vita.errors import run_command
    from vita.training import ctc_readout as mod

    p = parser("ctc_wer", mod.__doc__)
    p.add_argument("--model", type=Path, required=True, help="a model folder written by embed_align (with ctc_head)")
    p.add_argument("--manifest", type=Path, required=True, help="a `vita eval` JSONL with audio and transcript")
    p.add_argument("--limit", type=int, help="only the first N transcribed cases")
    args = p.parse_args(argv)
    return run_command(lambda: print(json.dumps(mod.manifest_wer(args.model, args.manifest, args.limit),
                                                ensure_ascii=False)))


def heard_targets(argv: list[str]) -> int:
    from vita.errors import run_command
    from vita.training import heard_targets as mod

    p = parser("heard_targets", mod.__doc__)
    p.add_argument("--model", required=True, help="the model training starts from (its transcriber)")
    p.add_argument("--data", type=Path, required=True, help="a `vita data mini` folder")
    p.add_argument("--source", default="train/audio_align.json", help="transcription records, relative to --data")
    p.add_argument("--out", default="train/audio_align_heard.json", help="written beside --source, relative to --data")
    p.add_argument("--limit", type=int, help="only the first N transcription records")
    p.add_argument("--max-wer", type=float, help="keep the true sentence where Whisper's word error rate exceeds this")
    args = p.parse_args(argv)

    def run() -> int:
        import vita

        vm = vita.load(args.model, dtype="fp32")
        print(json.dumps(mod.write_heard_targets(vm, args.data, args.source, args.out, limit=args.limit,
                                                 max_wer=args.max_wer)))
        return 0

    return run_command(run)


def ears(argv: list[str]) -> int:
    from vita.errors import run_command
    from vita.training import ears as mod

    p = parser("ears", mod.__doc__)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--parts", type=Path, help="a vita-mini parts folder with a transcriber (-> a parts folder)")
    src.add_argument("--model", type=Path, help="a model folder (our layout) with a transcriber (-> a model folder)")
    p.add_argument("--data", type=Path, required=True, help="a `vita data mini` folder")
    p.add_argument("--out", type=Path, required=True, help="new folder: parts (with --parts) or a model (--model)")
    defaults = mod.EarsConfig()
    for name in ("rank", "epochs", "batch", "limit", "fragments", "noise", "dev_voices", "seed", "threads"):
        p.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(defaults, name))
    p.add_argument("--lr", type=float, default=defaults.lr)
    p.add_argument("--targets", nargs="+", default=list(defaults.targets), help="decoder linear layers (globs)")
    args = p.parse_args(argv)
    if refuse_non_empty(args.out):
        return 2

    def run() -> int:
        import vita
        from vita.api import Vita
        from vita.checkpoint.mini import load_mini, read_parts

        config = mod.EarsConfig(targets=tuple(args.targets), **{k: getattr(args, k) for k in (
            "rank", "epochs", "batch", "limit", "fragments", "noise", "dev_voices", "seed", "threads", "lr")})
        if args.parts is not None:
            scale = read_parts(args.parts)[2]
            vm = Vita(*load_mini(args.parts, dtype="fp32", cache=False))
        else:
            scale = read_parts()[2]  # merged into the weights, so any scale would do: the shipped parts' keeps the
            vm = vita.load(str(args.model), dtype="fp32")  # learning rate meaning the same in both modes
        data = mod.load_ears_data(args.data, config)
        figures = mod.tune_ears(vm, data, config, scale, log=lambda m: print(m, file=sys.stderr, flush=True))
        if args.parts is not None:
            mod.write_ears_parts(args.parts, args.out, mod.ears_factors(vm.model.transcriber.decoder), figures)
        else:
            mod.write_ears_model(vm, args.model, args.out)
        print(json.dumps(figures))
        return 0

    return run_command(run)


def ctc_compress(argv: list[str]) -> int:
    from vita.errors import run_command
    from vita.training import ctc_readout as mod

    p = parser("ctc_compress", mod.__doc__)
    p.add_argument("--model", type=Path, required=True, help="a model folder written by embed_align (with ctc_head)")
    p.add_argument("--out", type=Path, required=True, help="new folder for the model with the compressing adapter")
    p.add_argument("--snap", action="store_true", help="each heard token's row is its own input embedding")
    args = p.parse_args(argv)
    if refuse_non_empty(args.out):
        return 2
    return run_command(lambda: print(json.dumps(mod.attach_compression(args.model, args.out, snap=args.snap))))


def swap_tower(argv: list[str]) -> int:
    from vita.checkpoint import assemble as mod
    from vita.errors import run_command

    p = parser("swap_tower", mod.swap_tower.__doc__)
    p.add_argument("--model", type=Path, required=True, help="model folder (our canonical layout)")
    p.add_argument("--tower", required=True, choices=list(mod.TOWERS))
    p.add_argument("--out", type=Path, required=True, help="new folder for the model with the other tower")
    p.add_argument("--seed", type=int, default=0, help="seed of the fresh projector (and of a random tower)")
    args = p.parse_args(argv)
    if refuse_non_empty(args.out):
        return 2
    vision = mod.TOWERS[args.tower]
    return run_command(lambda: print(json.dumps(mod.swap_tower(args.model, args.out, vision, seed=args.seed))))


def add_transcriber(argv: list[str]) -> int:
    from vita.checkpoint import ct2_decoder as mod
    from vita.checkpoint.assemble import whisper_folder
    from vita.errors import run_command

    p = parser("add_transcriber", mod.add_transcriber.__doc__)
    p.add_argument("--model", type=Path, required=True, help="model folder with a snapped CTC read-out (ctc_compress)")
    p.add_argument("--out", type=Path, required=True, help="new folder for the model with the transcriber")
    args = p.parse_args(argv)
    if refuse_non_empty(args.out):
        return 2
    return run_command(lambda: print(json.dumps(mod.add_transcriber(args.model, args.out, whisper_folder()))))


def region_align(argv: list[str]) -> int:
    from vita.errors import run_command
    from vita.training import region_align as mod

    p = parser("region_align", mod.__doc__)
    p.add_argument("--model", type=Path, required=True, help="model folder (our canonical layout)")
    p.add_argument("--data", type=Path, required=True, help="train/vision_regions.json of `vita data mini`")
    p.add_argument("--out", type=Path, required=True, help="new folder for the model with the new projector")
    p.add_argument("--epochs", type=int, default=mod.RegionConfig.epochs)
    p.add_argument("--lr", type=float, default=mod.RegionConfig.lr)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=int, help="read only the first N pictures (smoke runs)")
    args = p.parse_args(argv)
    if refuse_non_empty(args.out):
        return 2
    cfg = mod.RegionConfig(epochs=args.epochs, lr=args.lr, seed=args.seed)

    def align() -> None:
        mod.align_regions(args.model, args.data, args.out, cfg, limit=args.limit, log=lambda m: print(m, flush=True))

    return run_command(align)


def tagger_head(argv: list[str]) -> int:
    from vita.errors import run_command
    from vita.training import tagger_head as mod

    p = parser("tagger_head", mod.__doc__)
    p.add_argument("--out", required=True, type=Path, help="the head file to write (.safetensors)")
    p.add_argument("--renders", type=int, default=4000, help="training-split renders to fit on")
    p.add_argument("--check", type=int, default=400, help="held-out renders to report accuracy on (not used to fit)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--image-size", type=int, default=256)
    p.add_argument("--l2", type=float, default=1e-3)
    a = p.parse_args(argv)
    return run_command(lambda: print(json.dumps(mod.fit_emoji_head(
        a.out, renders=a.renders, check=a.check, seed=a.seed, image_size=a.image_size, l2=a.l2), indent=1)))



def soup(argv: list[str]) -> int:
    from vita.errors import run_command
    from vita.training import soup as mod

    p = parser("soup", mod.__doc__)
    p.add_argument("parts", nargs="+", type=Path, help="two or more parts folders (`vita mini pack`) of one start")
    p.add_argument("--out", required=True, type=Path, help="the soup's parts folder (new or empty)")
    p.add_argument("--rank", type=int, default=None, help="compress each LLM change to this rank (default: exact)")
    p.add_argument("--chain", action="store_true", help="sum the changes: each folder continued the previous one")
    a = p.parse_args(argv)
    if refuse_non_empty(a.out):
        return 2

    def run() -> int:
        manifest = mod.soup_parts(a.parts, a.out, rank=a.rank, chain=a.chain)
        print(json.dumps({"out": str(a.out), **manifest["run"]}, indent=1))
        return 0

    return run_command(run)


def video_projector(argv: list[str]) -> int:
    from vita.checkpoint import video_projector as mod
    from vita.errors import run_command

    p = parser("video_projector", mod.__doc__)
    p.add_argument("--model", type=Path, required=True, help="model folder (our canonical layout)")
    p.add_argument("--out", type=Path, required=True, help="new folder for the model with its video projector")
    args = p.parse_args(argv)
    if refuse_non_empty(args.out):
        return 2
    return run_command(lambda: print(json.dumps(mod.add_video_projector(args.model, args.out))))


def emoji_artists(argv: list[str]) -> int:
    from vita.datasets.mini import artists as mod
    from vita.errors import run_command

    p = parser("emoji_artists", mod.__doc__)
    p.add_argument("--cache", type=Path, default=None, help=f"the tarballs' folder (default {mod.default_cache()})")
    p.add_argument("--fetch", action="store_true", help="first `npm pack` the absent tarballs")
    args = p.parse_args(argv)

    def go() -> int:
        if args.fetch:
            mod.fetch(args.cache)
        for name in mod.ARTISTS:
            print(f"{name}: {len(mod.drawn(name, args.cache))} of {len(mod.CONCEPTS)} concepts drawn "
                  f"({mod.unpack(name, args.cache)})")
        return 0

    return run_command(go)
