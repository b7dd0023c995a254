"""Probes: where does a VITA model lose what its vision tower sees? Three measurements on the `vita data mini` tasks.

    python -m vita.cli.tools probes --data runs/mini/data --model runs/mini/skeleton [--families digit,colour]
                               [--steps 300] [--standardize] [--json]

1. read-out: softmax regression on the frozen tower's features (after pixel shuffle, before the projector),
   trained on the training images of a family, scored on its held-out images. High: the features carry the answer.
2. oracle: the image rows replaced by the LLM's own embeddings of a sentence naming the answer (`--oracle-text`, its
   last row repeated), no training. High: the frozen LLM can read answers off rows at the image positions. It is
   sensitive to the sentence: on vita-mini's skeleton, digits 13 % with "The answer is {answer}" and 93 % with
   "The number written here is {answer}".
3. projector: the projector trained through the frozen LLM (next-token loss on the answers, like stage 1) for
   `--steps` batches of 8, scored every `--every` steps; `--standardize` feeds it per-channel standardised features
   (mean / std over the training images).
Scores are first-token accuracies over the family's answers: at the first answer token where the candidates differ,
the candidate with the highest logit wins. Held-out items are the typed questions of `eval/all.jsonl`.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

FAMILIES = {"colour": "mini_image_colour", "count": "mini_image_count", "position": "mini_image_position",
            "which_red": "mini_image_which_red", "digit": "mini_image_digit"}


@dataclass
class Item:
    family: str
    answer: str
    sample: object  # vita.training.sample.TrainSample (one image, the answer supervised)
    position: int = -1  # where the first differing answer token is predicted
    candidates: tuple[int, ...] = ()  # that token for each option
    options: tuple[str, ...] = ()


def _record(image: str, question: str, answer: str) -> dict:
    return {"image": image, "conversations": [{"from": "human", "value": "<image>\n" + question},
                                              {"from": "gpt", "value": answer}]}


def records(data: Path, family: str, split: str) -> tuple[list[dict], Path]:
    """Typed image questions of one family: `train` from train/instruct.json, `eval` from eval/all.jsonl."""
    if split == "train":
        rows = [r for r in json.loads((data / "train" / "instruct.json").read_text())
                if r.get("set") == FAMILIES[family] and "audio" not in r]
        return [_record(r["image"], r["conversations"][0]["value"].removeprefix("<image>\n"),
                        r["conversations"][-1]["value"]) for r in rows], data / "train"
    rows = [json.loads(line) for line in (data / "eval" / "all.jsonl").read_text().splitlines() if line]
    return [_record(r["image"], r["text"], r["answer"]) for r in rows
            if r.get("group") == f"image/{family}/typed"], data / "eval"


def load_items(recs: list[dict], root: Path, family: str, options: list[str], processor) -> list[Item]:
    """One Item per record, with the position and token at which the family's `options` first differ."""
    from vita.tokens import IGNORE_INDEX
    from vita.training.sample import build_sample

    items = []
    for rec in recs:
        image, question = rec["image"], rec["conversations"][0]["value"].removeprefix("<image>\n")
        sample = build_sample(processor, rec, str(root), root)
        labels = [[t for t in build_sample(processor, _record(image, question, o), "option", root).labels.tolist()
                   if t != IGNORE_INDEX] for o in options]
        k = 0
        while all(len(lab) > k for lab in labels) and len({lab[k] for lab in labels}) == 1:
            k += 1
        supervised = (sample.labels != IGNORE_INDEX).nonzero().squeeze(1).tolist()
        items.append(Item(family, rec["conversations"][-1]["value"], sample, position=supervised[k] - 1,
                          candidates=tuple(lab[k] if len(lab) > k else -1 for lab in labels), options=tuple(options)))
    return items


def tower_features(model, items: list[Item]) -> torch.Tensor:
    """[N, T, C] frozen tower outputs (after pixel shuffle), one image per item."""
    with torch.no_grad():
        return torch.cat([model.vision(it.sample.pixel_values.float()) for it in items])


def readout(train_x: torch.Tensor, train_y: list[str], test_x: torch.Tensor, test_y: list[str],
            steps: int = 300, weight_decay: float = 0.1) -> float:
    """Held-out accuracy of a softmax regression on flattened, standardised features (full batch, Adam)."""
    classes = sorted(set(train_y))
    a, b = train_x.flatten(1).float(), test_x.flatten(1).float()
    mu, sd = a.mean(0), a.std(0) + 1e-6
    a, b = (a - mu) / sd, (b - mu) / sd
    y = torch.tensor([classes.index(c) for c in train_y])
    head = nn.Linear(a.shape[1], len(classes))
    opt = torch.optim.Adam(head.parameters(), lr=1e-2, weight_decay=weight_decay)
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(head(a), y).backward()
        opt.step()
    with torch.no_grad():
        pred = head(b).argmax(-1).tolist()
    return sum(classes[p] == t for p, t in zip(pred, test_y, strict=True)) / max(len(test_y), 1)


def _hidden(model, items: list[Item], rows: torch.Tensor, pad_id: int) -> tuple[torch.Tensor, object]:
    from vita.models.fusion import splice
    from vita.tokens import IMAGE_TOKEN_ID
    from vita.training.collate import collate

    batch = collate([it.sample for it in items], pad_id)
    embeds = splice(model.llm.embed(batch.token_ids.clamp_min(0)), batch.token_ids, {IMAGE_TOKEN_ID: rows})
    return model.llm.hidden_states(input_embeds=embeds, attention_mask=batch.attention_mask), batch


def accuracy(model, items: list[Item], rows_of, pad_id: int, batch: int = 16) -> float:
    """First-token accuracy with `rows_of(items) -> [sum T, D]` as the image rows."""
    right = 0
    with torch.no_grad():
        for i in range(0, len(items), batch):
            chunk = items[i:i + batch]
            hidden, _ = _hidden(model, chunk, rows_of(chunk), pad_id)
            for j, it in enumerate(chunk):
                logits = model.llm.head(hidden[j, it.position])
                scores = torch.stack([logits[t] if t >= 0 else logits.new_tensor(-1e9) for t in it.candidates])
                right += it.options[int(scores.argmax())] == it.answer
    return right / max(len(items), 1)


def oracle_rows(model, tokenizer, items: list[Item], tokens: int, text: str = "The answer is {answer}") -> torch.Tensor:
    """The embeddings of "The answer is <answer>" per item, cut or padded (last row repeated) to `tokens` rows."""
    out = []
    for it in items:
        emb = model.llm.embed(torch.tensor([tokenizer.encode(" " + text.format(answer=it.answer))]))[0]
        emb = torch.cat([emb, emb[-1:].expand(max(tokens - emb.shape[0], 0), -1)])[:tokens]
        out.append(emb)
    return torch.cat(out)


class Standardized(nn.Module):
    """(x - mean) / std per channel, then the wrapped projector (the probe's `--standardize`)."""

    def __init__(self, projector: nn.Module, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.projector = projector
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projector((x - self.mean) / self.std)


def train_projector(model, train: list[Item], held: list[Item], feats: dict[int, torch.Tensor], pad_id: int, *,
                    steps: int, every: int, lr: float = 1e-3, standardize: bool = False,
                    seed: int = 0) -> list[tuple[int, float]]:
    """Train the projector (everything else frozen) through the LLM; held-out accuracy at step 0 and every `every`."""
    from vita.tokens import IGNORE_INDEX

    gen = random.Random(seed)
    torch.manual_seed(seed)
    proj: nn.Module = model.vision_projector
    if standardize:
        stacked = torch.cat([feats[id(it)] for it in train]).flatten(0, -2)
        proj = Standardized(proj, stacked.mean(0), stacked.std(0) + 1e-3)
    for p in model.parameters():
        p.requires_grad_(False)
    for p in proj.parameters():
        p.requires_grad_(True)

    def rows_of(items: list[Item]) -> torch.Tensor:
        return proj(torch.cat([feats[id(it)] for it in items])).flatten(0, -2)

    opt = torch.optim.AdamW(proj.parameters(), lr=lr, weight_decay=0.0)
    curve = [(0, accuracy(model, held, rows_of, pad_id))]
    for step in range(1, steps + 1):
        chunk = gen.sample(train, min(8, len(train)))
        hidden, batch = _hidden(model, chunk, rows_of(chunk), pad_id)
        targets = batch.labels[:, 1:].flatten()
        keep = (targets != IGNORE_INDEX).nonzero().squeeze(1)
        logits = model.llm.head(hidden[:, :-1].flatten(0, 1).index_select(0, keep))
        loss = F.cross_entropy(logits.float(), targets.index_select(0, keep))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(proj.parameters()), 1.0)
        opt.step()
        if step % every == 0 or step == steps:
            curve.append((step, accuracy(model, held, rows_of, pad_id)))
    for p in proj.parameters():
        p.requires_grad_(False)
    return curve


def run(data: Path, model_name: str, families: list[str], steps: int, every: int, standardize: bool,
        oracle_text: str = "The answer is {answer}") -> dict:
    import vita

    vm = vita.load(model_name)
    model, tokenizer = vm.model, vm.tokenizer
    pad_id = tokenizer.pad_id if getattr(tokenizer, "pad_id", None) is not None else 0
    tokens = model.config.vision.tokens_per_tile
    out: dict = {"model": model_name, "data": str(data), "oracle_text": oracle_text, "families": {}}
    train_all, held_all, feats = [], [], {}
    for fam in families:
        (tr, tr_root), (ev, ev_root) = records(data, fam, "train"), records(data, fam, "eval")
        options = sorted({r["conversations"][-1]["value"] for r in tr + ev})
        train = load_items(tr, tr_root, fam, options, vm.processor)
        held = load_items(ev, ev_root, fam, options, vm.processor)
        if not train or not held:
            out["families"][fam] = {"train": len(train), "held_out": len(held), "readout": None, "oracle": None}
            continue
        tx, hx = tower_features(model, train), tower_features(model, held)
        feats.update({id(it): x for it, x in zip(train + held, torch.cat([tx, hx]), strict=True)})
        out["families"][fam] = {
            "train": len(train), "held_out": len(held),
            "readout": readout(tx, [it.answer for it in train], hx, [it.answer for it in held]),
            "oracle": accuracy(model, held, lambda items: oracle_rows(model, tokenizer, items, tokens, oracle_text),
                               pad_id),
        }
        train_all += train
        held_all += held
    if not train_all or not held_all:
        out["projector"] = {"standardize": standardize, "steps": 0, "batch": 8, "curve": []}
        return out
    out["projector"] = {"standardize": standardize, "steps": steps, "batch": 8, "curve": train_projector(
        model, train_all, held_all, feats, pad_id, steps=steps, every=every, standardize=standardize)}
    return out


def report(res: dict) -> str:
    lines = [f"probes: {res['model']} on {res['data']} (oracle sentence {res['oracle_text']!r})", "",
             "| family | train / held-out | tower read-out | oracle rows (frozen LLM) |", "|---|---|---|---|"]
    for fam, r in res["families"].items():
        if r["readout"] is None:
            lines.append(f"| {fam} | {r['train']} / {r['held_out']} | no items | no items |")
        else:
            lines.append(f"| {fam} | {r['train']} / {r['held_out']} | {r['readout']:.1%} | {r['oracle']:.1%} |")
    p = res["projector"]
    lines += ["", f"projector through the frozen LLM (batches of {p['batch']}, standardize={p['standardize']}), "
                  "held-out first-token accuracy, all families: "
              + ", ".join(f"step {s}: {a:.1%}" for s, a in p["curve"])]
    return "\n".join(lines)
