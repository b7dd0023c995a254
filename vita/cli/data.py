"""`vita data negatives | mini` and `vita vocab extend`: training data and the vocabulary extension.

    vita data negatives MANIFEST OUT_DIR [...]   non-awakening samples (`vita.datasets.negatives.generate_negatives`)
    vita data mini --out DIR [--seed S] [--small]   the vita-mini sets (`vita.datasets.mini.build.build_mini_data`)
    vita vocab extend --model M --words F | --corpus F --output DIR   (`vita.training.vocab.extend_vocab`)
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from vita.datasets.negatives import GENERATED, NegativesConfig, generate_negatives
from vita.errors import DataError


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    """`vita data ...` and `vita vocab ...`."""
    data = subparsers.add_parser("data", help="build training data (vita-mini sets, non-awakening negatives)")
    data_sub = data.add_subparsers(dest="data", required=True)
    add_negatives_parser(data_sub)
    add_mini_data_parser(data_sub)


# ---- vita data negatives ----------------------------------------------------------------------------------------


def _pair(text: str) -> tuple[float, float]:
    parts = [float(x) for x in text.split(",")]
    if len(parts) not in (1, 2):
        raise argparse.ArgumentTypeError(f"expected A or A,B, got {text!r}")
    return (parts[0], parts[-1])


def _add_negatives_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("manifest", type=Path, help='JSONL of {"audio", "text", "answer"?, "is_query"?}')
    p.add_argument("out_dir", type=Path, help="output folder (audio/ and negatives.jsonl)")
    p.add_argument("--num", type=int, default=None, help="number of samples (default: from the manifest size)")
    p.add_argument("--ratio", default="0.5,0.3,0.2", help="query,chatter,noise shares (default 0.5,0.3,0.2)")
    p.add_argument("--snr", type=_pair, default=(5.0, 20.0), help="SNR dB, fixed or LO,HI (default 5,20)")
    p.add_argument("--noise-level", type=_pair, default=(-35.0, -20.0), help="pure-noise RMS dBFS, or LO,HI")
    p.add_argument("--noise-seconds", type=_pair, default=(0.5, 2.0), help="pure-noise duration s, or LO,HI")
    p.add_argument("--noise", type=Path, action="append", default=[], help="noise file (repeatable)")
    p.add_argument("--generated", default=",".join(GENERATED), help="generated noise kinds (white,pink,babble)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--format", choices=("jsonl", "json"), default="jsonl")


def run_negatives(args: argparse.Namespace) -> int:
    try:
        ratio = tuple(float(x) for x in args.ratio.split(","))
    except ValueError:
        raise DataError(f"negatives: --ratio must be three numbers, got {args.ratio!r}") from None
    cfg = NegativesConfig(
        args.manifest, args.out_dir, num_samples=args.num, ratio=ratio, snr_db=args.snr,  # type: ignore[arg-type]
        noise_level_db=args.noise_level, noise_seconds=args.noise_seconds, noise_files=args.noise,
        generated=tuple(x for x in args.generated.split(",") if x), seed=args.seed, format=args.format,
    )
    print(generate_negatives(cfg))
    return 0


def add_negatives_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the `negatives` subcommand (for `vita data negatives ...`); it sets `func`."""
    p = subparsers.add_parser("negatives", help="write non-awakening training samples (queries, chatter, noise)")
    _add_negatives_arguments(p)
    p.set_defaults(func=run_negatives)
    return p


# ---- vita data mini ----------------------------------------------------------------------------------------------
def run_mini_data(args: argparse.Namespace) -> int:
    from vita.datasets.mini.build import DEFAULT_AUGMENT, build_mini_data
    from vita.datasets.mini.rebuild import rebuild_chat_typed, rebuild_fragments, rebuild_regions

    if args.chat_typed_only:
        info = rebuild_chat_typed(args.out)
        print(f"eval/chat_typed: {info['chat_typed']} (written in {info['out_dir']})")
        return 0
    if args.regions_only or args.fragments_only:
        part, info = ("vision_regions", rebuild_regions(args.out)) if args.regions_only else (
            "audio_fragments", rebuild_fragments(args.out))
        print(f"train/{part}: {info[part]} (rewritten in {info['out_dir']})")
        return 0
    info = build_mini_data(args.out, seed=args.seed, sizes="small" if args.small else None,
                           augment=None if args.no_augment else DEFAULT_AUGMENT)
    for key, value in info["counts"].items():
        if key.count("/") == 1 or key.startswith(("train/speech/", "eval/speech/")):
            print(f"{key}: {value}")
    text = info["text"]
    print(f"sentences: train {text['train_statements']} statements + {text['train_questions']} questions, eval "
          f"{text['eval_statements']} + {text['eval_questions']}")
    voices = info["voices"]
    print(f"voices: {len(voices['train'])} train, {len(voices['eval'])} eval ({voices['note']})")
    print(f"wrote {info['manifest_path']} in {info['wall_seconds']:.1f} s")
    return 0


def add_mini_data_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the `mini` subcommand (for `vita data mini --out DIR [--seed S] [--small]`); it sets `func`."""
    p = subparsers.add_parser("mini", help="build the vita-mini training and evaluation sets (offline)")
    p.add_argument("--out", type=Path, required=True, help="output folder (train/, eval/, manifest.json)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--small", action="store_true", help="the small preset (~50 train samples, ~30 eval cases)")
    p.add_argument("--no-augment", action="store_true", help="no noise / reverb / telephone / gain / speed")
    p.add_argument("--regions-only", action="store_true",
                   help="in an existing data folder, rewrite only train/vision_regions.json and its pictures")
    p.add_argument("--fragments-only", action="store_true",
                   help="in an existing data folder, write only train/audio_fragments.json and its clips")
    p.add_argument("--chat-typed-only", action="store_true",
                   help="in an existing data folder, write only eval/chat_typed.jsonl (the larger typed chat set)")
    p.set_defaults(func=run_mini_data)
    return p


# ---- vita vocab extend --------------------------------------------------------------------------------------------
# ---- command line -------------------------------------------------------------------------------------------------
def run_vocab_extend(args: argparse.Namespace) -> int:
    from vita.training.vocab import Corpus, extend_vocab, read_word_list

    words: Sequence[str] | Corpus = Corpus(args.corpus) if args.corpus else read_word_list(args.words)
    ext = extend_vocab(args.model, words, args.output, max_new=args.max_new, min_freq=args.min_freq,
                       pad_to_multiple=args.pad_to_multiple, bare_forms=not args.no_bare)
    print(f"added {len(ext.added)} tokens (ids {ext.old_len}..{ext.old_len + len(ext.added) - 1}), "
          f"skipped {len(ext.skipped)}; wrote {args.output} (details in vocab_extension.json)")
    if ext.unreachable_old_tokens:
        print(f"note: {len(ext.unreachable_old_tokens)} old vocabulary entries that the old merges never produced "
              "now encode as themselves when a whole pre-token equals them", file=sys.stderr)
    return 0


def add_vocab_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `vocab extend` on a `vita` sub-command parser."""
    v = subparsers.add_parser("vocab", help="vocabulary extension (training step 1)")
    vsub = v.add_subparsers(dest="vocab", required=True)
    e = vsub.add_parser("extend", help="add words to the tokenizer and grow embeddings + head (mean init)")
    e.add_argument("--model", required=True, help="model directory (any supported layout) or preset")
    src = e.add_mutually_exclusive_group(required=True)
    src.add_argument("--words", help="word list, one per line")
    src.add_argument("--corpus", help="text corpus to mine frequent words/characters from")
    e.add_argument("--max-new", type=int, default=None, help="add at most N tokens")
    e.add_argument("--min-freq", type=int, default=2, help="corpus: minimum occurrences (default 2)")
    e.add_argument("--pad-to-multiple", type=int, default=1, help="round the vocab size up (e.g. 64, 128)")
    e.add_argument("--no-bare", action="store_true", help="byte-level: add only the ' word' form")
    e.add_argument("--output", required=True, help="output directory (our canonical layout)")
    e.set_defaults(func=run_vocab_extend)
    return v
