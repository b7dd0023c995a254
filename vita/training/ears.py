"""Whisper's ears tuned to many voices: low-rank adapters on vita-mini's transcriber decoder, trained on the data's
own transcriptions, so the words the LLM reads (`vita.models.transcriber`) are right for more voices.

Why: Whisper tiny.en's decoder hears real human speech well (WER 18 % on the 85 real clips) but misreads the
synthetic voices of the held-out split (57 %), and where it is sure of them its words are what the LLM reads and,
since `vita.training.heard_targets`, copies. The encoder below it is shared with the CTC read-out and stays frozen; the
decoder gets LoRA factors (`vita.training.lora`) on the linear layers of its cross-attention (`targets`: how it
reads the encoder; its language model, embeddings, positions and norms stay Whisper's: adapting every layer heard the
training voices as well but real human speech worse, 2026-12-06). Each clip is encoded once, exactly as inference
does (`WhisperTranscriber.states`: the same 10-s window and silence margin), and the states are kept in memory (bf16)
for the epochs.

    python -m vita.cli.tools ears --parts vita/assets/mini --data OUT/data --out OUT/parts_ears

Targets are Whisper's own format: <|startoftranscript|> -> <|notimestamps|>, then " " + the sentence as said, then
<|endoftext|>; pure-noise clips of the training negatives teach <|nospeech|> at <|startoftranscript|> (the no-speech
probability `TranscriberConfig.no_speech_threshold` reads), so the tuned decoder does not start to hear words in noise.
A dev split of whole training voices (`dev_voices`) is left out of training and scored before and after: the figure
to choose settings by (never the eval split). Deterministic: the order, the batches and the adapters' initial values
come from `seed`; runs on one machine are bit-identical.

Writes a parts folder (`vita.checkpoint.mini`, `--parts`): the source parts plus `transcriber.decoder.<layer>.lora_a/b`,
merged on load with the parts' `lora_scale` (the adapters' alpha is chosen so that scale holds); or, from a model
folder (`--model`, e.g. the recipe's model after `add_transcriber`), a new model folder with the factors merged, for
stage 3 to train on what these ears hear.

    python -m vita.cli.tools ears --model OUT/heard --data OUT/data --out OUT/eared
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch.nn import functional as F

from vita.errors import DataError, TrainingError
from vita.eval.metrics import edit_counts
from vita.training.heard_targets import is_transcription, read_records
from vita.training.lora import LoRALinear, add_lora

__all__ = ["EarsConfig", "EarsData", "encode_clips", "load_ears_data", "tune_ears", "write_ears_model",
           "write_ears_parts"]

IGNORE = -100


@dataclass(frozen=True)
class EarsConfig:
    rank: int = 32
    # the decoder's linear layers that get adapters (module-name globs): how it reads the encoder, not its language
    # model (adapting every layer heard the training voices as well but real human speech worse: module docstring)
    targets: tuple[str, ...] = ("blocks.*.cross_attn.*",)
    lr: float = 1e-3
    epochs: int = 1
    batch: int = 16
    warmup: int = 20  # steps of linear warm-up, then cosine to zero
    limit: int | None = 6000  # transcription clips trained on (the first ones of each source, in order)
    noise: int = 300  # pure-noise clips (-> <|nospeech|>), at most
    dev_voices: int = 12  # training voices left out for the dev split
    dev_clips: int = 120  # dev clips scored, at most
    seed: int = 0
    threads: int = 2
    sources: tuple[str, ...] = ("train/audio_align.json", "train/audio_short.json")
    negatives: str = "train/instruct.json"
    # broken-off sentences ("What is the", `vita data mini`'s audio_fragments.json) trained on besides `limit`: their
    # target is the words said with no final mark, so these ears do not finish a question the user has not finished
    # (the s20 ears, tuned on whole sentences only, heard "What is the" as "What is this?")
    fragments: int = 1200
    fragment_source: str = "train/audio_fragments.json"


@dataclass
class EarsData:
    """Clips (paths), their transcripts ("" for noise) and voices, split into train and dev (`dev_fragments`: the
    dev voices' broken-off sentences, scored apart)."""

    train: list[tuple[Path, str]]
    dev: list[tuple[Path, str]]
    dev_voices: list[str]
    dev_fragments: list[tuple[Path, str]] = field(default_factory=list)


def load_ears_data(data: Path, config: EarsConfig) -> EarsData:
    """The transcription clips of `config.sources` and the pure-noise negatives, training voices split by
    `dev_voices` (chosen with `seed`; the speech index `train/speech.jsonl` names each clip's voice, e.g.
    "espeak-ng:en-gb-scotland+m4 s132 p30": the voice is its first word, rate and pitch are variations of it)."""
    index = data / "train" / "speech.jsonl"
    if not index.is_file():
        raise DataError(f"{index}: missing (a `vita data mini` folder has it)", "config")
    voice_of = {}
    for line in index.read_text().splitlines():
        row = json.loads(line)
        voice_of[row["audio"]] = row["voice"].split(" ")[0]  # the voice itself, without its rate / pitch

    def read(src: Path) -> list[tuple[Path, str, str]]:
        out = []
        for record in read_records(src):
            if is_transcription(record):
                rel = record["audio"]
                path = src.parent / rel
                if not path.is_file():
                    raise DataError(f"{src}: record {record.get('id', '?')}: audio file not found: {path}", "media")
                out.append((path, record["conversations"][1]["value"][3:].strip(), voice_of.get(rel, "")))
        return out

    clips = [c for source in config.sources if (data / source).is_file() for c in read(data / source)]
    if not clips:
        raise DataError(f"{data}: no transcription record in {', '.join(config.sources)}", "config")
    pieces: list[tuple[Path, str, str]] = []
    if config.fragments:
        src = data / config.fragment_source
        if not src.is_file():
            raise DataError(f"{src}: missing (`vita data mini --out {data} --fragments-only` adds it; or fragments=0)",
                            "config")
        pieces = read(src)
    voices = sorted({v for _, _, v in clips if v})
    dev_voices = sorted(random.Random(config.seed).sample(voices, min(config.dev_voices, len(voices) // 4)))
    held = set(dev_voices)
    train = [(p, t) for p, t, v in clips if v not in held][: config.limit]
    dev = [(p, t) for p, t, v in clips if v in held][: config.dev_clips]
    train += [(p, t) for p, t, v in pieces if v not in held][: config.fragments]
    dev_fragments = [(p, t) for p, t, v in pieces if v in held][: config.dev_clips]
    neg = data / config.negatives
    if config.noise and neg.is_file():
        noise = [r for r in read_records(neg) if r.get("kind") == "noise" and isinstance(r.get("audio"), str)]
        train += [(neg.parent / r["audio"], "") for r in noise[: config.noise]]
    return EarsData(train, dev, dev_voices, dev_fragments)


def whisper_text_ids(folder: Path) -> Callable[[str], list[int]]:
    """Whisper's own tokenizer (tokenizer.json in its folder): text -> ids, no special tokens."""
    from tokenizers import Tokenizer as HFTokenizer

    tok = HFTokenizer.from_file(str(folder / "tokenizer.json"))
    return lambda text: tok.encode(text, add_special_tokens=False).ids


def _examples(states: list[torch.Tensor], texts: list[str], encode: Callable[[str], list[int]], decoder_config
              ) -> list[tuple[torch.Tensor, list[int], list[int]]]:
    """(states, input ids, target ids) per clip in Whisper's format (module docstring)."""
    cfg = decoder_config
    sot, notimestamps = cfg.prompt
    out = []
    for s, text in zip(states, texts, strict=True):
        if text:
            ids = encode(" " + text)[: cfg.max_positions - len(cfg.prompt) - 1]
            out.append((s, [sot, notimestamps, *ids], [notimestamps, *ids, cfg.eot]))
        else:
            out.append((s, [sot], [cfg.no_speech]))
    return out


def _batches(examples: list, batch: int, rng: random.Random) -> list[list[int]]:
    """Indices in batches of equal state length (shuffled within lengths, then the batches shuffled)."""
    by_len: dict[int, list[int]] = {}
    for i, (s, _, _) in enumerate(examples):
        by_len.setdefault(s.shape[0], []).append(i)
    out = []
    for length in sorted(by_len):
        idx = by_len[length]
        rng.shuffle(idx)
        out += [idx[k : k + batch] for k in range(0, len(idx), batch)]
    rng.shuffle(out)
    return out


def _loss(decoder, examples: list, batch: list[int]) -> torch.Tensor:
    states = torch.stack([examples[i][0] for i in batch])  # [B, T', D] bf16
    length = max(len(examples[i][1]) for i in batch)
    eot = decoder.config.eot
    ids = torch.tensor([examples[i][1] + [eot] * (length - len(examples[i][1])) for i in batch])  # [B, L]
    target = torch.tensor([examples[i][2] + [IGNORE] * (length - len(examples[i][2])) for i in batch])  # [B, L]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = decoder(ids, decoder.start(states))  # [B, L, V] float32
    return F.cross_entropy(logits.flatten(0, 1), target.flatten(), ignore_index=IGNORE)


@torch.no_grad()
def _dev_scores(vm, states: list[torch.Tensor], texts: list[str]) -> tuple[float, float]:
    """(WER %, % of transcripts that end a sentence: ".", "?" or "!")."""
    errors = words = closed = 0
    tr = vm.model.transcriber
    for s, text in zip(states, texts, strict=True):
        heard = tr.text(tr.decoder.transcribe(s.float()).ids)
        e, n, _ = edit_counts(text, heard)
        errors, words, closed = errors + e, words + n, closed + heard.rstrip().endswith((".", "?", "!"))
    return round(100 * errors / max(words, 1), 2), round(100 * closed / max(len(texts), 1), 2)


def encode_clips(vm, clips: list[tuple[Path, str]], log: Callable[[str], None] = print) -> list[torch.Tensor]:
    """Each clip's final encoder states as the transcriber decodes them (`WhisperTranscriber.states`), bf16."""
    model, t0 = vm.model, time.perf_counter()
    if model.transcriber is None:
        raise TrainingError("this model has no transcriber (Whisper's decoder beside a CTC read-out)")
    out = []
    for k, (path, _) in enumerate(clips):
        try:
            feats = vm.processor.audio_features(path)
        except Exception as e:  # a broken clip names itself
            raise DataError(f"{path}: cannot read the clip ({e})", "media") from e
        out.append(model.transcriber.states(model.audio_encoder, feats).to(torch.bfloat16))
        if (k + 1) % 1000 == 0:
            log(f"ears: {k + 1}/{len(clips)} clips encoded ({time.perf_counter() - t0:.0f} s)")
    return out


def tune_ears(vm, data: EarsData, config: EarsConfig, scale: float, log: Callable[[str], None] = print,
              states: tuple[list[torch.Tensor], list[torch.Tensor]] | None = None) -> dict:
    """Add LoRA factors (scale alpha / r = `scale`, the parts' lora_scale) to `vm`'s transcriber decoder and train
    them on `data.train` (module docstring); returns the run's figures (dev WER before / after, losses, seconds).
    `states`: `encode_clips` of data.train and of data.dev + data.dev_fragments, when already at hand."""
    model = vm.model
    tr = model.transcriber
    if tr is None:
        raise TrainingError("this model has no transcriber (Whisper's decoder beside a CTC read-out) to tune")
    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)
    t0 = time.perf_counter()
    if states is None:
        states = encode_clips(vm, data.train, log), encode_clips(vm, data.dev + data.dev_fragments, log)
    train_states, dev_states = states
    dev_texts = [t for _, t in data.dev + data.dev_fragments]
    whole = len(data.dev)

    def scores(when: str) -> dict[str, float]:
        wer = _dev_scores(vm, dev_states[:whole], dev_texts[:whole])[0]
        out = {f"dev_wer_{when}": wer}
        log(f"ears: dev WER {when} {wer} % ({whole} clips)")
        if len(dev_texts) > whole:
            fwer, closed = _dev_scores(vm, dev_states[whole:], dev_texts[whole:])
            out |= {f"dev_fragment_wer_{when}": fwer, f"dev_fragments_closed_{when}": closed}
            log(f"ears: dev fragments {when}: WER {fwer} %, heard as finished sentences {closed} % "
                f"({len(dev_texts) - whole} clips)")
        return out

    figures = scores("before")
    from vita.checkpoint.assemble import whisper_folder

    texts = [t for _, t in data.train]
    examples = _examples(train_states, texts, whisper_text_ids(whisper_folder()), tr.decoder.config)
    for p in model.parameters():
        p.requires_grad_(False)
    add_lora(tr.decoder, list(config.targets), r=config.rank, alpha=scale * config.rank, source="ears")
    params = [p for n, p in tr.decoder.named_parameters() if n.endswith((".lora_a", ".lora_b"))]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=0.0)
    rng = random.Random(config.seed)
    plan = [b for _ in range(config.epochs) for b in _batches(examples, config.batch, rng)]
    total = len(plan)

    def rate(step: int) -> float:
        if step < config.warmup:
            return (step + 1) / config.warmup
        return 0.5 * (1 + math.cos(math.pi * (step - config.warmup) / max(1, total - config.warmup)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, rate)
    tr.decoder.train()
    losses = []
    for step, batch in enumerate(plan):
        loss = _loss(tr.decoder, examples, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        if (step + 1) % 50 == 0 or step + 1 == total:
            log(f"ears: step {step + 1}/{total} loss {sum(losses[-50:]) / len(losses[-50:]):.4f} "
                f"({time.perf_counter() - t0:.0f} s)")
    tr.decoder.eval()
    for p in params:
        p.requires_grad_(False)
    figures |= scores("after")
    window = max(1, min(50, total // 4))
    return {"config": asdict(config), "train_clips": len(data.train), "dev_clips": len(data.dev),
            "dev_fragment_clips": len(data.dev_fragments), "dev_voices": data.dev_voices, **figures, "steps": total,
            "loss_first": round(sum(losses[:window]) / window, 4),  # mean over the first / last `window` steps
            "loss_last": round(sum(losses[-window:]) / window, 4),
            "seconds": round(time.perf_counter() - t0, 1)}


def ears_factors(decoder, prefix: str = "transcriber.decoder.") -> dict[str, torch.Tensor]:
    """The decoder's LoRA factors in the parts' names."""
    out = {}
    for name, m in decoder.named_modules():
        if isinstance(m, LoRALinear):
            out[f"{prefix}{name}.lora_a"] = m.lora_a.detach().clone()
            out[f"{prefix}{name}.lora_b"] = m.lora_b.detach().clone()
    if not out:
        raise TrainingError("the transcriber decoder has no LoRA factors (run tune_ears first)")
    return out


def _refuse_nonempty(out: Path) -> None:
    if out.exists() and any(out.iterdir()):
        raise TrainingError(f"{out}: exists and is not empty (refusing to overwrite)")


def write_ears_parts(source: Path, out: Path, factors: dict[str, torch.Tensor], figures: dict) -> Path:
    """The parts folder `source` plus `factors` (fp16, as the parts) -> a new parts folder `out`, its manifest's
    `run` noting the ears run."""
    from vita.checkpoint.io import write_tensors
    from vita.checkpoint.materialize import resolve_dtype
    from vita.checkpoint.mini import PARTS_FILE, read_parts, sha256_file

    config, tensors, _ = read_parts(source)
    if config.transcriber is None:
        raise TrainingError(f"{source}: these parts have no transcriber")
    clash = sorted(set(factors) & set(tensors))
    if clash:
        raise TrainingError(f"{source}: the parts already hold {clash[0]} (ears already tuned?)")
    manifest = json.loads((source / "parts.json").read_text())
    dtype = resolve_dtype(manifest.get("dtype", "fp16"))
    _refuse_nonempty(out)
    out.mkdir(parents=True, exist_ok=True)
    both = tensors | {n: t.to(dtype) for n, t in factors.items()}
    write_tensors(out, {n: both[n].contiguous() for n in sorted(both)}, metadata={"format": manifest["format"]})
    manifest["files"] = {PARTS_FILE: sha256_file(out / PARTS_FILE)}
    manifest["run"] = dict(manifest.get("run", {}), ears={k: figures[k] for k in (
        "train_clips", "dev_wer_before", "dev_wer_after", "dev_fragments_closed_before", "dev_fragments_closed_after",
        "steps", "seconds") if k in figures} | {
        "rank": figures["config"]["rank"], "lr": figures["config"]["lr"], "seed": figures["config"]["seed"]})
    (out / "parts.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return out


def write_ears_model(vm, source: Path, out: Path) -> Path:
    """`vm` (loaded from the model folder `source`, ears tuned) -> a new model folder `out` in our layout, the
    decoder's LoRA factors merged into its weights: the model a recipe's stage 3 then starts from, so instruction
    tuning reads the words these ears hear."""
    from vita.checkpoint.convert import save_canonical
    from vita.checkpoint.io import TensorReader
    from vita.config import VitaConfig
    from vita.training.lora import merged_state_dict

    _refuse_nonempty(out)
    decoder = vm.model.transcriber.decoder
    merged = merged_state_dict(decoder, {n: t.detach() for n, t in decoder.state_dict().items()})
    reader = TensorReader.from_dir(source)
    tensors = {n: reader[n] for n in reader}
    changed = {f"transcriber.decoder.{n}": t.to(tensors[f"transcriber.decoder.{n}"].dtype)
               for n, t in merged.items() if n.endswith(".weight") and f"transcriber.decoder.{n}" in tensors}
    save_canonical(VitaConfig.load(source / "config.json"), tensors | changed, vm.tokenizer, out)
    return out
