"""Reading a CTC-aligned audio path back as text: `embed_align`'s audio loss decoded greedily, on any clip.

After `vita.training.embed_align` the audio adapter writes, at each frame, a row near the LLM's input embedding of the
token being said, or near a learned blank centre between tokens. Scoring each row against those embeddings (the
aligned model's `ctc_head.safetensors`: blank centre, scale, vocabulary subset), taking the best entry per frame,
collapsing repeats and dropping blanks gives what the audio path itself heard, before the LLM reads it: the acoustic
ceiling of the model's transcripts.

    python -m vita.cli.tools ctc_wer --model ALIGNED --manifest data/eval/asr.jsonl [--limit N]

prints a JSON object: WER per manifest group and overall (`vita.eval.metrics.edit_counts`, the same normalisation as
`vita eval`), and a few examples.

    python -m vita.cli.tools ctc_compress --model ALIGNED --out DIR [--snap]

writes the aligned model with its read-out built in (`AudioAdapterConfig.ctc_vocab`, `audio_adapter.ctc_blank` /
`.ctc_vocab`): its audio rows then reach the LLM one per heard token (`vita.models.audio_adapter`); `--snap`: each
such row is the heard token's own input embedding (`AudioAdapterConfig.ctc_snap`).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from vita.errors import VitaError
from vita.eval.metrics import edit_counts
from vita.training.embed_align import CTC_HEAD, EmbeddingScorer, encode_media

__all__ = ["attach_compression", "load_head", "manifest_wer", "read_clip"]


def load_head(vm, model_dir: Path) -> EmbeddingScorer:
    """The audio scorer `embed_align` saved beside the aligned model `model_dir` (loaded as `vm`)."""
    from safetensors.torch import load_file

    path = Path(model_dir) / CTC_HEAD
    if not path.is_file():
        raise VitaError(f"{path}: missing (written by `vita.cli.tools embed_align --audio ...`)")
    head = load_file(path)
    embeddings = vm.model.llm.tok_embeddings.weight.detach().float()
    scorer = EmbeddingScorer(embeddings, head["vocab"].tolist(), blank=True)
    with torch.no_grad():
        scorer.blank.copy_(head["blank"])
        scorer.log_scale.copy_(head["log_scale"][0])
    return scorer.eval()


def read_clip(vm, scorer: EmbeddingScorer, audio: Path) -> str:
    """What the audio path of `vm` hears in the clip `audio`: greedy CTC over the scorer's entries, as text."""
    path = Path(audio).resolve()
    states = encode_media(vm, {"audio": str(path)}, str(audio), path.parent, "audio")  # [T', H]
    with torch.no_grad():
        rows, _ = vm.model.audio_adapter(states[None], torch.ones(1, len(states), dtype=torch.bool))
        best = scorer(rows[0].float()).argmax(-1)  # [T''], column 0 = blank
    vocab = sorted(scorer.index, key=scorer.index.get)
    ids = [vocab[int(c) - 1] for c in torch.unique_consecutive(best) if int(c) != 0]
    return vm.tokenizer.decode(ids).strip()


def manifest_wer(model_dir: Path, manifest: Path, limit: int | None = None) -> dict:
    """WER of `read_clip` over a `vita eval` manifest's cases that have a `transcript`, per group and overall."""
    import vita

    vm = vita.load(str(model_dir), dtype="fp32")
    scorer = load_head(vm, model_dir)
    try:
        cases = [json.loads(line) for line in manifest.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, ValueError) as exc:
        raise VitaError(f"{manifest}: cannot read the manifest ({exc})") from exc
    cases = [c for c in cases if c.get("transcript") and c.get("audio")][:limit]
    if not cases:
        raise VitaError(f"{manifest}: no case with an audio clip and a transcript")
    totals: dict[str, list[int]] = {}
    examples = []
    for case in cases:
        heard = read_clip(vm, scorer, manifest.parent / case["audio"])
        errors, words, _ = edit_counts(case["transcript"], heard)
        for group in ("all", case.get("group", "all")):
            t = totals.setdefault(group, [0, 0])
            t[0], t[1] = t[0] + errors, t[1] + words
        if len(examples) < 5:
            examples.append({"said": case["transcript"], "heard": heard})
    return {"model": str(model_dir), "cases": len(cases),
            "wer": {g: round(100 * e / max(n, 1), 1) for g, (e, n) in sorted(totals.items())}, "examples": examples}


def attach_compression(model_dir: Path, out_dir: Path, *, snap: bool = False) -> dict:
    """Write `out_dir`: the aligned model of `model_dir` whose adapter compresses its rows with the saved read-out
    (`snap`: into the heard tokens' embeddings)."""
    from dataclasses import replace

    from safetensors.torch import load_file

    from vita.checkpoint.convert import save_canonical
    from vita.checkpoint.io import TensorReader
    from vita.config import VitaConfig
    from vita.tokenizer import Tokenizer

    model_dir, out_dir = Path(model_dir), Path(out_dir)
    path = model_dir / CTC_HEAD
    if not path.is_file():
        raise VitaError(f"{path}: missing (written by `vita.cli.tools embed_align --audio ...`)")
    config = VitaConfig.load(model_dir / "config.json")
    if config.audio_adapter is None:
        raise VitaError(f"{model_dir}: the model has no audio adapter")
    head = load_file(path)
    vocab_size = config.llm.vocab_size
    ids = head["vocab"]
    if ids.numel() == 0 or int(ids.min()) < 0 or int(ids.max()) >= vocab_size:
        raise VitaError(f"{path}: vocabulary ids outside the LLM's 0..{vocab_size - 1}")
    reader = TensorReader.from_dir(model_dir)
    tensors = {name: reader[name] for name in reader}
    dtype = tensors["audio_adapter.proj.weight"].dtype
    mask = torch.zeros(vocab_size, dtype=dtype)
    mask[ids] = 1
    tensors.update({"audio_adapter.ctc_blank": head["blank"].to(dtype), "audio_adapter.ctc_vocab": mask})
    config = replace(config, audio_adapter=replace(config.audio_adapter, ctc_vocab=vocab_size, ctc_snap=snap))
    save_canonical(config, tensors, Tokenizer.from_dir(model_dir), out_dir)
    return {"model": str(out_dir), "vocab": int(ids.numel()), "llm_vocab": vocab_size, "snap": snap}
