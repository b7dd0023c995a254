"""Pre-alignment: the vision projector and the audio adapter learn to write the frozen LLM's own token embeddings.

Stage 1 and 2 of `recipes/mini` reach the projector and the adapter only through the 30 frozen layers of SmolLM2:
after ~7k captions the held-out image QA stayed at 20 % and transcription at > 100 % WER, although a linear read-out
of the same frozen features gets colours, positions and digits right ~90 % of the time. This stage gives both parts a
direct target, before those stages: the input embedding rows E[v] of the words their media carry, so that the LLM
starts by reading images and speech almost as text.

    scores  s(x, v) = -exp(log_scale) * ||x - E[v]||^2 over a vocabulary subset (ids < `common` + every target id)
    audio   adapter frames [T'', D] of a transcribed clip; CTC over its transcript tokens, the blank being one more
            learned centre c_blank (initialised at the mean embedding): a spoken word's frames move next to its
            embedding, the frames between words next to c_blank
    vision  projected tokens [N * T_img, D] of an image or video with a caption; each caption token must be near at
            least one of them: per vocabulary entry the media's score is logsumexp over its tokens, and each caption
            token is a cross-entropy target over the subset (multiple-instance)

The towers run once per input (frozen, no gradient); their outputs are kept in memory for every epoch.
`encoder_blocks=N` (Whisper encoders only) also fine-tunes the encoder's top N blocks and its final LayerNorm with
the audio CTC: the states below them are what is kept, the adapter first learns alone for `epochs` on the frozen top
blocks, then blocks and adapter together for `tune_epochs` at `tune_lr`. Measured 2026-12-05 (`recipes/mini`,
12,000 transcripts + the instruct speech, top 2 of tiny.en's 4 blocks, 4 + 4 epochs): held-out token error 0.458
after the adapter alone, 0.258 after the tuning; WER of the read-out on voices training never heard 49.0 %. A seeded,
fixed order makes the result bit-for-bit reproducible on one machine. 5 % of each file (every 20th record) is held out
and reported: CTC greedy token error rate, and caption-token recall@1 of the nearest embeddings.

    python -m vita.cli.tools embed_align --model SKELETON --vision train/vision_align.json \
        --audio train/audio_align.json --out DIR [--epochs 12] [--seed 0] [--encoder-blocks 2 --tune-epochs 4]

writes DIR (the same model with the two parts replaced; `vita train` takes it as `model.init`), DIR/embed_align.json
and, when audio was aligned, DIR/ctc_head.safetensors (`vita.training.ctc_readout` reads the audio rows as text).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from vita.errors import DataError, VitaError
from vita.eval.metrics import levenshtein
from vita.models.whisper import WhisperEncoder
from vita.tokens import STATE_TOKENS

COMMON_IDS = 8192  # the BPE's first (most frequent) ids are always in the scored vocabulary
CTC_HEAD = "ctc_head.safetensors"  # the audio scorer (blank centre, scale, vocabulary): `vita.training.ctc_readout`
HOLD_OUT_EVERY = 20


@dataclass
class Item:
    """One record's frozen encoder output and the token ids it should be read as."""

    features: torch.Tensor  # vision: [N * T_img, 4C] tower features; audio: [T', H] encoder states
    targets: list[int]  # token ids of the reply text (state token and end tag removed)
    held_out: bool


def _known_speech(record: dict) -> bool:
    """An instruction record whose clip's words are written down (a spoken question, a negative's text or noise)."""
    return "audio" in record and ("question" in record or "text" in record or record.get("kind") == "noise")


def spoken_text(record: dict, where: str, kind: str) -> str | None:
    """What `record`'s media says: the reply (captions, transcripts) for alignment files; for instruction files the
    spoken question or negative's `question` / `text`, "" for pure noise, None when unknown (the record is skipped)."""
    if kind == "audio" and _known_speech(record):
        return str(record.get("question") or record.get("text") or "").strip()
    turns = record.get("conversations") or []
    replies = [t.get("value", "") for t in turns if isinstance(t, dict) and t.get("from") in ("gpt", "assistant")]
    if not replies or not replies[0].strip():
        raise DataError(f"{where}: no assistant reply", "empty")
    text = replies[0].lstrip()
    for state in STATE_TOKENS:
        if text.startswith(state):
            text = text[len(state):]
    return text.strip()


def _media_only(record: dict, kind: str) -> dict:
    """The record reduced to the one medium this stage encodes (an image question's audio alone, say)."""
    keys = ("image", "video") if kind == "vision" else ("audio",)
    media = {k: record[k] for k in keys if k in record}
    marker = "".join(f"<{k}>" for k in media)
    return dict(media, conversations=[{"from": "human", "value": marker}, {"from": "gpt", "value": "."}])


def encode_media(vm, record: dict, where: str, root: Path, kind: str, below: int | None = None) -> torch.Tensor:
    """The frozen `kind` tower's output for `record`'s media (paths relative to `root`): vision [N * T_img, 4C];
    audio [T', H], or with `below` the states after that many encoder blocks (`WhisperEncoder.encode`)."""
    from vita.training.sample import parse_record, render_conversation

    conv = parse_record(_media_only(record, kind), where, root)
    _, _, pixels, fbanks = render_conversation(vm.processor, conv)
    model = vm.model
    with torch.no_grad():
        if kind == "vision":
            if pixels is None:
                raise DataError(f"{where}: no image or video", "no_media")
            return model.vision(pixels.float()).flatten(0, 1)  # [N * T_img, 4C]
        if len(fbanks) != 1:
            raise DataError(f"{where}: expected one audio clip, found {len(fbanks)}", "no_media")
        x = fbanks[0].float().unsqueeze(0)
        lengths = torch.tensor([x.shape[1]])
        enc, mask = model.audio_encoder(x, lengths) if below is None else model.audio_encoder(x, lengths, below)
        return enc[0, mask[0]]  # [T', H]


def load_items(vm, data: Path, kind: str, limit: int | None = None, *, instruct: bool = False,
               below: int | None = None) -> list[Item]:
    """Encode the records of `data` (a VITA-format JSON list) with the frozen `kind` tower ("vision" | "audio");
    `instruct`: only records whose spoken words are known (`spoken_text`) are used; `below`: audio states after
    that many encoder blocks (`WhisperEncoder.encode`), None for the encoder's output."""
    try:
        records = json.loads(data.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise VitaError(f"{data}: cannot read the training data ({exc})") from exc
    items = []
    for i, record in enumerate(records[:limit]):
        where = f"{data}:{i}"
        if instruct and not (kind == "audio" and _known_speech(record)):
            continue
        text = spoken_text(record, where, kind)
        features = encode_media(vm, record, where, data.parent, kind, below)
        targets = vm.tokenizer.encode(text, add_special_tokens=False) if text else []
        items.append(Item(features.clone(), targets, i % HOLD_OUT_EVERY == HOLD_OUT_EVERY - 1))
    return items


def cached_items(vm, data: Path, kind: str, cache: Path | None, limit: int | None, *, instruct: bool,
                 below: int | None = None) -> list[Item]:
    """`load_items`, memoised in `cache` by the data file's bytes, the model's config and the arguments."""
    if cache is None:
        return load_items(vm, data, kind, limit, instruct=instruct, below=below)
    args = (vm.model.config, kind, limit, instruct) + (() if below is None else (below,))
    key = hashlib.sha1(data.read_bytes() + repr(args).encode()).hexdigest()[:16]
    path = cache / f"{kind}-{data.stem}-{key}.pt"
    if path.is_file():
        saved = torch.load(path, weights_only=True)
        return [Item(f, t, h) for f, t, h in zip(saved["features"], saved["targets"], saved["held_out"], strict=True)]
    items = load_items(vm, data, kind, limit, instruct=instruct, below=below)
    cache.mkdir(parents=True, exist_ok=True)
    torch.save({"features": [it.features for it in items], "targets": [it.targets for it in items],
                "held_out": [it.held_out for it in items]}, path.with_suffix(".tmp"))
    path.with_suffix(".tmp").replace(path)
    return items


class TunedAudio(nn.Module):
    """The audio path above the kept states: the encoder's top blocks (from `start`) + its final LayerNorm + the
    adapter, sharing their modules with the model; `adapter(x, mask)`'s contract, on states of the lower blocks."""

    def __init__(self, encoder: WhisperEncoder, adapter: nn.Module, start: int) -> None:
        super().__init__()
        self.start = start
        self.blocks = nn.ModuleList(list(encoder.blocks)[start:])
        self.final_norm = encoder.final_norm
        self.adapter = adapter

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        for block in self.blocks:
            x = block(x, mask)  # [B, T', H]; a clip over 30 s would see across its windows here (none in training)
        return self.adapter(self.final_norm(x), mask)

    def encoder_parameters(self) -> list[nn.Parameter]:
        return [*self.blocks.parameters(), *self.final_norm.parameters()]

    def tensors(self) -> dict[str, torch.Tensor]:
        """The tuned tensors under the model's names (`audio_encoder.blocks.{i}.`, `audio_encoder.final_norm.`)."""
        out = {f"audio_encoder.blocks.{self.start + int(k.split('.', 1)[0])}.{k.split('.', 1)[1]}": v
               for k, v in self.blocks.state_dict().items()}
        out.update({f"audio_encoder.final_norm.{k}": v for k, v in self.final_norm.state_dict().items()})
        out.update({f"audio_adapter.{k}": v for k, v in self.adapter.state_dict().items()})
        return {k: v.detach().clone() for k, v in out.items()}


class EmbeddingScorer(nn.Module):
    """Negative scaled squared distance to the embedding rows of a vocabulary subset (+ an optional blank centre)."""

    def __init__(self, embeddings: torch.Tensor, vocab: list[int], *, blank: bool) -> None:
        super().__init__()
        self.register_buffer("rows", embeddings[vocab].detach().clone())  # [V', D]
        self.register_buffer("row_sq", self.rows.square().sum(-1))  # [V']
        self.index = {v: i + int(blank) for i, v in enumerate(vocab)}
        spread = (self.rows - self.rows.mean(0)).square().sum(-1).mean()
        self.log_scale = nn.Parameter(torch.log(4.0 / spread))  # a typical distance scores about -4
        self.blank = nn.Parameter(embeddings.mean(0).detach().clone()) if blank else None

    def forward(self, x: torch.Tensor, cols: torch.Tensor | None = None) -> torch.Tensor:
        """x [..., D] -> scores [..., (1 +) V'] (column 0 = blank when there is one); `cols` (0-based rows of the
        subset, no blank) scores only those entries, in that order, after the blank."""
        rows, row_sq = self.rows, self.row_sq
        if cols is not None:
            rows, row_sq = rows[cols], row_sq[cols]
        if self.blank is not None:
            rows = torch.cat([self.blank[None], rows])
            row_sq = torch.cat([self.blank.square().sum()[None], row_sq])
        dist = x.square().sum(-1, keepdim=True) - 2 * x @ rows.T + row_sq  # [..., V]
        return -self.log_scale.exp() * dist


def _pad(feats: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """[T_i, C] each -> [B, T, C] zero-padded, mask [B, T]."""
    t = max(f.shape[0] for f in feats)
    out = feats[0].new_zeros(len(feats), t, feats[0].shape[1])
    mask = torch.zeros(len(feats), t, dtype=torch.bool)
    for b, f in enumerate(feats):
        out[b, : f.shape[0]], mask[b, : f.shape[0]] = f, True
    return out, mask


def augment(x: torch.Tensor, mask: torch.Tensor, gen: torch.Generator, *, time_masks: int) -> torch.Tensor:
    """Training-time noise on frozen features [B, T, C]: dropout 0.1 per element, and `time_masks` spans of up to
    8 % of each sequence zeroed (SpecAugment-style, on the encoder states)."""
    keep = torch.rand(x.shape, generator=gen) >= 0.1
    x = x * keep / 0.9
    lengths = mask.sum(1).tolist()
    for b, n in enumerate(lengths):
        for _ in range(time_masks):
            width = int(torch.randint(0, max(int(0.08 * n), 1) + 1, (1,), generator=gen))
            start = int(torch.randint(0, max(n - width, 1), (1,), generator=gen))
            x[b, start:start + width] = 0
    return x


def _columns(scorer: EmbeddingScorer, batch: list[Item], gen: torch.Generator | None, negatives: int
             ) -> tuple[torch.Tensor | None, dict[int, int]]:
    """Training: the batch's target entries + `negatives` sampled others (None, the whole subset, when gen is None).
    Returns (cols, vocab id -> score column)."""
    offset = int(scorer.blank is not None)
    if gen is None:
        return None, scorer.index
    wanted = sorted({scorer.index[v] - offset for it in batch for v in it.targets})
    pool = torch.randperm(scorer.rows.shape[0], generator=gen)[:negatives]
    cols = torch.tensor(sorted(set(wanted) | set(pool.tolist())))
    position = {int(c): i + offset for i, c in enumerate(cols)}
    return cols, {v: position[scorer.index[v] - offset] for it in batch for v in it.targets}


def audio_loss(adapter: nn.Module, scorer: EmbeddingScorer, batch: list[Item], gen: torch.Generator | None = None,
               negatives: int = 2048) -> tuple[torch.Tensor, list]:
    """CTC of the adapter frames against the transcripts (gen: training, augmented, sampled columns)."""
    x, mask = _pad([it.features for it in batch])
    if gen is not None:
        x = augment(x, mask, gen, time_masks=2)
    cols, index = _columns(scorer, batch, gen, negatives)
    emb, emb_mask = adapter(x, mask)  # [B, T'', D]
    logp = F.log_softmax(scorer(emb, cols), -1)  # [B, T'', 1 + V']
    targets = [torch.tensor([index[v] for v in it.targets], dtype=torch.long) for it in batch]
    lengths = emb_mask.sum(1)
    loss = F.ctc_loss(logp.transpose(0, 1), torch.cat(targets), lengths, torch.tensor([len(t) for t in targets]),
                      blank=0, reduction="sum", zero_infinity=True) / max(sum(len(t) for t in targets), 1)
    return loss, [(logp[b, : lengths[b]].argmax(-1), targets[b]) for b in range(len(batch))]


def vision_loss(projector: nn.Module, scorer: EmbeddingScorer, batch: list[Item], gen: torch.Generator | None = None,
                negatives: int = 2048) -> tuple[torch.Tensor, list]:
    """Each caption token against the media's pooled scores (multiple-instance cross-entropy)."""
    x, mask = _pad([it.features for it in batch])
    if gen is not None:
        x = augment(x, mask, gen, time_masks=0)
    cols, index = _columns(scorer, batch, gen, negatives)
    scores = scorer(projector(x), cols).masked_fill(~mask[..., None], float("-inf"))  # [B, T, V']
    pooled = scores.logsumexp(1)  # [B, V']: how well the media's best tokens match each entry
    rows, targets, pairs = [], [], []
    top = scores.argmax(-1)  # [B, T] nearest entry per token
    for b, it in enumerate(batch):
        wanted = sorted({index[v] for v in it.targets})
        rows += [b] * len(wanted)
        targets += wanted
        pairs.append((top[b, mask[b]], torch.tensor(wanted, dtype=torch.long)))
    loss = F.cross_entropy(pooled[rows], torch.tensor(targets, dtype=torch.long))
    return loss, pairs


def audio_error_rate(pairs: list) -> float:
    """Greedy CTC decode (collapse repeats, drop blanks) vs the targets: token error rate."""
    errors = total = 0
    for best, target in pairs:
        seq = [int(t) for t in torch.unique_consecutive(best) if int(t) != 0]
        errors += levenshtein(target.tolist(), seq)
        total += len(target)
    return errors / max(total, 1)


def vision_recall(pairs: list) -> float:
    """Share of caption tokens that are the nearest entry of at least one of the media's tokens."""
    hit = total = 0
    for top, wanted in pairs:
        present = set(top.tolist())
        hit += sum(int(w) in present for w in wanted.tolist())
        total += len(wanted)
    return hit / max(total, 1)


def warmup_cosine(step: int, total: int) -> float:
    """Linear warm-up over the first 5 % of steps, then cosine to zero."""
    warm = max(total // 20, 1)
    return min(1.0, (step + 1) / warm) * 0.5 * (1.0 + math.cos(math.pi * min(step / total, 1.0)))


def _batches(items: list[Item], batch: int, gen: torch.Generator) -> list[list[Item]]:
    """A shuffled epoch in batches of similar length (little padding: a video has 16x an image's rows), the batches
    themselves in random order."""
    order = torch.randperm(len(items), generator=gen).tolist()
    order.sort(key=lambda j: items[j].features.shape[0])  # stable: equal lengths keep their random order
    chunks = [order[i:i + batch] for i in range(0, len(order), batch)]
    return [[items[j] for j in chunks[c]] for c in torch.randperm(len(chunks), generator=gen).tolist()]


def fit(part: nn.Module, scorer: EmbeddingScorer, items: list[Item], loss_fn, metric, *, epochs: int,
        batch: int, lr: float, seed: int, log) -> dict:
    """AdamW over `part`'s trainable and the scorer's own parameters, cosine LR; held-out figures per epoch."""
    train = [it for it in items if not it.held_out]
    held = [it for it in items if it.held_out]
    params = [p for p in (*part.parameters(), *scorer.parameters()) if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    steps = epochs * -(-len(train) // batch)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: warmup_cosine(step, steps))
    gen = torch.Generator().manual_seed(seed)
    history = []
    for epoch in range(epochs):
        t0, total = time.perf_counter(), 0.0
        part.train()
        for chunk in _batches(train, batch, gen):
            loss, _ = loss_fn(part, scorer, chunk, gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            total += loss.item() * len(chunk)
        part.eval()
        pairs, held_loss = [], 0.0
        with torch.no_grad():
            for i in range(0, len(held), batch):
                loss, p = loss_fn(part, scorer, held[i:i + batch])
                pairs += p
                held_loss += loss.item() * len(held[i:i + batch])
        row = {"epoch": epoch + 1, "train_loss": round(total / max(len(train), 1), 4),
               "held_out_loss": round(held_loss / max(len(held), 1), 4), "held_out_metric": round(metric(pairs), 4),
               "seconds": round(time.perf_counter() - t0, 1)}
        history.append(row)
        log(json.dumps(row))
    return {"train": len(train), "held_out": len(held), "epochs": history}


def _tuned_audio(model, model_dir: Path, encoder_blocks: int) -> TunedAudio:
    encoder = model.audio_encoder
    if not isinstance(encoder, WhisperEncoder):
        raise VitaError(f"{model_dir}: encoder_blocks needs a Whisper audio encoder, not {type(encoder).__name__}")
    if not 0 < encoder_blocks <= len(encoder.blocks):
        raise VitaError(f"encoder_blocks={encoder_blocks}: the encoder has {len(encoder.blocks)} blocks")
    return TunedAudio(encoder, model.audio_adapter, len(encoder.blocks) - encoder_blocks)


def align(model_dir: Path, out_dir: Path, *, vision: list[Path] = (), audio: list[Path] = (), epochs: int = 8,
          seed: int = 0, limit: int | None = None, cache: Path | None = None, encoder_blocks: int = 0,
          tune_epochs: int = 4, tune_lr: float = 3e-4, log=print) -> dict:
    """Pre-align the projector (on `vision` captions) and the adapter (on `audio` transcripts and the spoken words
    of instruction files); write `out_dir`. A file named `instruct*.json` gives only its records with known speech.
    `encoder_blocks` > 0: then fine-tune the encoder's top blocks with the adapter (module docstring)."""
    import vita

    torch.manual_seed(seed)
    vm = vita.load(str(model_dir), dtype="fp32")
    model = vm.model
    embeddings = model.llm.tok_embeddings.weight.detach()
    summary: dict = {"model": str(model_dir), "seed": seed, "epochs": epochs}
    trained: dict[str, torch.Tensor] = {}
    head: dict[str, torch.Tensor] = {}
    tuned = _tuned_audio(model, model_dir, encoder_blocks) if audio and encoder_blocks else None
    jobs = [("vision", vision, model.vision_projector, vision_loss, vision_recall, "caption_token_recall"),
            ("audio", audio, tuned or model.audio_adapter, audio_loss, audio_error_rate, "token_error_rate")]
    for kind, files, part, loss_fn, metric, metric_name in jobs:
        if not files:
            continue
        if part is None:
            raise VitaError(f"{model_dir}: the model has no {kind} part to align")
        t0 = time.perf_counter()
        below = tuned.start if kind == "audio" and tuned is not None else None
        items = [it for f in files
                 for it in cached_items(vm, f, kind, cache, limit, instruct=f.name.startswith("instruct"), below=below)]
        encode_s = time.perf_counter() - t0
        vocab = sorted(set(range(min(COMMON_IDS, embeddings.shape[0]))) | {v for it in items for v in it.targets})
        scorer = EmbeddingScorer(embeddings, vocab, blank=kind == "audio")
        for p in part.parameters():
            p.requires_grad_(True)
        frozen = tuned.encoder_parameters() if part is tuned else []
        for p in frozen:  # the adapter learns alone first: its random start would push the blocks anywhere
            p.requires_grad_(False)
        batch = 16 if kind == "audio" else 32
        result = fit(part, scorer, items, loss_fn, metric, epochs=epochs, batch=batch,
                     lr=1e-3, seed=seed, log=lambda m, k=kind: log(f"[{k}] {m}"))
        summary[kind] = dict(result, data=[str(f) for f in files], vocab=len(vocab), metric=metric_name,
                             encode_seconds=round(encode_s, 1), seconds=round(time.perf_counter() - t0, 1))
        if frozen:
            for p in frozen:
                p.requires_grad_(True)
            t1 = time.perf_counter()
            result = fit(part, scorer, items, loss_fn, metric, epochs=tune_epochs, batch=batch, lr=tune_lr,
                         seed=seed + 1, log=lambda m: log(f"[audio+encoder] {m}"))
            summary["audio_encoder"] = dict(result, blocks=encoder_blocks, lr=tune_lr,
                                            seconds=round(time.perf_counter() - t1, 1))
        if kind == "audio":
            head = {"blank": scorer.blank.detach().clone(), "log_scale": scorer.log_scale.detach().reshape(1).clone(),
                    "vocab": torch.tensor(vocab, dtype=torch.long)}
        if part is tuned:
            trained.update(tuned.tensors())
        else:
            prefix = "audio_adapter." if kind == "audio" else "vision_projector."
            trained.update({prefix + k: v.detach().clone() for k, v in part.state_dict().items()})
    write_with_parts(model_dir, vm, trained, out_dir)
    if head:
        from safetensors.torch import save_file

        save_file(head, out_dir / CTC_HEAD)
    (out_dir / "embed_align.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def write_with_parts(model_dir: Path, vm, trained: dict[str, torch.Tensor], out_dir: Path) -> None:
    """Write `out_dir`: the model of `model_dir` (loaded as `vm`) with the `trained` tensors in place of its own."""
    from vita.checkpoint.convert import save_canonical
    from vita.checkpoint.io import TensorReader

    reader = TensorReader.from_dir(model_dir)
    tensors = {name: reader[name] for name in reader}
    missing = set(trained) - set(tensors)
    if missing:
        raise VitaError(f"{model_dir}: checkpoint lacks {sorted(missing)[:3]}")
    tensors.update({k: v.to(tensors[k].dtype) for k, v in trained.items()})
    save_canonical(vm.model.config, tensors, vm.tokenizer, out_dir)
