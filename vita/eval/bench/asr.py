"""Speech recognition: LibriSpeech (WER) and WenetSpeech-style JSONL (CER).

LibriSpeech (openslr.org/12, e.g. `LibriSpeech/test-clean/`): `--data` is a split folder (or any folder above
the chapters); every `SPEAKER-CHAPTER.trans.txt` under it lists `UTTERANCE-ID TRANSCRIPT` lines, the audio is
`UTTERANCE-ID.flac` beside it (a `.wav` is accepted too). The paper figure compared is chosen by the split
folder's name (dev-clean, dev-other, test-clean, test-other); another name is compared with none.

WenetSpeech-style JSONL (the `data.list` format of the wenet toolkit, which its WenetSpeech recipe writes for
TEST_NET / TEST_MEETING): one object per line, {"key": utterance id, "wav": audio path, "txt": transcript};
a relative "wav" is relative to the JSONL file. A file or folder name containing "test_net"/"test_meeting"
(any case, "-" or "_") selects that paper figure.

Prompt: the audio with the typed instruction "Transcribe the speech." (the instruction vita-mini's ASR stage was
trained on, `vita.datasets.mini.build.ASR_PROMPT`; the VITA-1.0 ASR prompt is not in its released code).
Score: corpus error rate = total Levenshtein edits / total reference units over the set, after the standard
normalisation `vita.eval.normalize.units` (NFKC, case-folded, punctuation removed, apostrophes deleted, number
words and digits unified). Units are words for LibriSpeech (WER) and characters for Chinese (CER; Latin words
inside a Chinese reference stay words). Not Whisper's EnglishTextNormalizer: no spelling or contraction maps.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from vita.errors import EvalError
from vita.eval.bench.core import Benchmark, Figure, Item, Options, Score, Table, check_data, pct
from vita.eval.metrics import edit_counts

LIBRI_SPLITS = ("dev-clean", "dev-other", "test-clean", "test-other")


def asr_prompt() -> str:
    from vita.datasets.mini.build import ASR_PROMPT

    return ASR_PROMPT


def _score(items: Sequence[Item], replies: Mapping[str, str], kind: str, key: str) -> Score:
    rows, edits, units = [], 0, 0
    for it in items:
        hyp = replies.get(it.id, "")
        e, n, _ = edit_counts(it.meta["reference"], hyp)
        if n == 0:
            raise EvalError(f"item {it.id!r}: the reference has no words after normalisation")
        edits, units = edits + e, units + n
        rows.append({"id": it.id, "reference": it.meta["reference"], "hypothesis": hyp, "edits": e, "units": n,
                     kind: round(100 * e / n, 2)})
    rate = pct(edits, units)
    what = "words" if kind == "wer" else "characters"
    return Score([Figure(kind.upper(), key, rate, higher_is_better=False,
                         support=f"{edits} edits / {units} {what}, {len(rows)} utterances")],
                 {kind: rate, "edits": edits, "ref_units": units, "n": len(rows)},
                 [Table("Worst utterances", ["id", kind.upper(), "reference", "hypothesis"],
                        [[r["id"], f"{r[kind]:.1f}%", r["reference"], r["hypothesis"]]
                         for r in sorted(rows, key=lambda r: -r[kind])[:10]])], rows)


class LibriSpeech(Benchmark):
    name, title, max_new_tokens = "librispeech", "LibriSpeech (WER)", 128
    source = "openslr.org/12 layout (*.trans.txt + flac); see vita.eval.bench.asr"
    prompt_doc = "<audio> + \"Transcribe the speech.\""

    def load(self, data: Path, options: Options) -> list[Item]:
        check_data(data, "LibriSpeech folder")
        trans = sorted(data.rglob("*.trans.txt"))
        if not trans:
            raise EvalError(f"{data}: no *.trans.txt files (expected a LibriSpeech split folder)")
        split = next((p.name for p in [data, *data.parents] if p.name in LIBRI_SPLITS), None)
        prompt, items = asr_prompt(), []
        for t in trans:
            for n, line in enumerate(t.read_text(encoding="utf-8").splitlines(), 1):
                if not line.strip():
                    continue
                uid, _, text = line.strip().partition(" ")
                audio = next((t.parent / f"{uid}{ext}" for ext in (".flac", ".wav") if (t.parent / f"{uid}{ext}")
                              .is_file()), None)
                if audio is None or not text.strip():
                    raise EvalError(f"{t}:{n}: {'no audio ' + uid + '.flac beside it' if audio is None else 'empty'}")
                items.append(Item(uid, prompt, audio=audio, meta={"reference": text.strip(), "split": split}))
        return items

    def score(self, items: Sequence[Item], replies: Mapping[str, str]) -> Score:
        split = items[0].meta["split"] if items else None
        return _score(items, replies, "wer", f"librispeech/{split}" if split else "librispeech")


class WenetSpeech(Benchmark):
    name, title, max_new_tokens = "wenetspeech", "WenetSpeech-style JSONL (CER)", 128
    source = "wenet data.list JSONL {key, wav, txt}; see vita.eval.bench.asr"
    prompt_doc = "<audio> + \"Transcribe the speech.\""

    def load(self, data: Path, options: Options) -> list[Item]:
        check_data(data, "WenetSpeech JSONL")
        files = [data] if data.is_file() else sorted([*data.glob("*.jsonl"), *data.glob("data.list")])
        if not files:
            raise EvalError(f"{data}: no .jsonl / data.list file")
        prompt, items = asr_prompt(), []
        for f in files:
            found = re.search(r"test_(net|meeting)", str(f.resolve()).lower().replace("-", "_"))
            subset = f"test_{found.group(1)}" if found else None
            for n, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                    key, wav, txt = str(rec["key"]), Path(rec["wav"]), str(rec["txt"])
                except (json.JSONDecodeError, KeyError, TypeError) as exc:
                    raise EvalError(f"{f}:{n}: expected {{'key', 'wav', 'txt'}} ({exc})") from None
                wav = wav if wav.is_absolute() else f.parent / wav
                if not wav.is_file():
                    raise EvalError(f"{f}:{n}: audio file not found: {wav}")
                items.append(Item(key, prompt, audio=wav, meta={"reference": txt, "subset": subset}))
        return items

    def score(self, items: Sequence[Item], replies: Mapping[str, str]) -> Score:
        subsets = {it.meta["subset"] for it in items}
        subset = subsets.pop() if len(subsets) == 1 else None
        return _score(items, replies, "cer", f"wenetspeech/{subset}" if subset else "wenetspeech")
