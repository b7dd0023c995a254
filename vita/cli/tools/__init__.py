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
    duplex_compare   two public duplex reports paired, per family  vita.bench.duplex_compare.compare
    release_table    headline figures of eval folders, one row each vita.eval.release_table.row
    state_bias       the not-query bias that matches other models  vita.eval.state_prob.bias_for
    bench_samples    benchmark samples in their public formats    vita.eval.bench.samples.write_samples
    bench_table      the benchmark table on those samples         vita.eval.bench.table.build
    quant_quality    int8 / int4 logit KL against bf16            vita.bench.quant_quality.measure
    tagger_head      the tagger's head for vita-mini's emoji       vita.training.tagger_head.fit_emoji_head
    soup             the average of several runs' parts            vita.training.soup.soup_parts
    video_projector  video frames' own projector (a copy to train) vita.checkpoint.video_projector.add_video_projector
    emoji_artists    other artists' emoji, unpacked for training    vita.datasets.mini.artists.unpack

Each tool parses its own flags (`python -m vita.cli.tools TOOL --help`) and calls the typed function beside it
(`vita.cli.tools.build`: the tools that build parts, `vita.cli.tools.measure`: those that measure); the
function's module is imported only when the tool runs.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from vita.cli.tools.build import (
    add_transcriber,
    ctc_compress,
    ctc_wer,
    ears,
    embed_align,
    emoji_artists,
    feature_stats,
    heard_targets,
    region_align,
    soup,
    swap_tower,
    tagger_head,
    tower_pretrain,
    video_projector,
)
from vita.cli.tools.common import PROG
from vita.cli.tools.measure import (
    bench_samples,
    bench_table,
    compare_evals,
    described,
    duplex_compare,
    heard_wer,
    mini_chat,
    probes,
    quant_quality,
    real_speech,
    release_table,
    state_bias,
    text_compare,
)

TOOLS: dict[str, Callable[[list[str]], int]] = {
    f.__name__: f for f in (tower_pretrain, feature_stats, embed_align, ctc_wer, heard_wer, heard_targets,
                            ears, ctc_compress, add_transcriber, swap_tower, region_align, real_speech, mini_chat,
                            probes, described, text_compare, compare_evals, duplex_compare, release_table,
                            bench_samples, bench_table, quant_quality, tagger_head, soup, state_bias,
                            video_projector, emoji_artists)
}
__all__ = ["TOOLS", "main", *TOOLS]


def main(argv: list[str] | None = None) -> int:
    """Run `argv[0]`'s tool on the rest of `argv` (default: the command line); --help lists the tools."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in TOOLS:
        return TOOLS[argv[0]](argv[1:])
    p = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("tool", choices=list(TOOLS))
    p.parse_args(argv[:1])  # --help, or an unknown / missing tool: argparse's message and exit status
    return 2  # not reached
