"""Rewriting one part of an existing `vita data mini` folder, exactly as a fresh build writes it.

    rebuild_regions(DATA)    train/vision_regions.json and its pictures (`vita data mini --out DATA --regions-only`)
    rebuild_fragments(DATA)  train/audio_fragments.json and its clips (`vita data mini --out DATA --fragments-only`),
                             for a folder built before the fragments existed
    rebuild_chat_typed(DATA) eval/chat_typed.jsonl (`vita data mini --out DATA --chat-typed-only`), likewise
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections import Counter
from pathlib import Path

from vita.datasets.augment import AugmentConfig
from vita.datasets.mini.build import (
    DEFAULT_SIZES,
    SMALL_SIZES,
    _fragments,
    _regions,
    _sha,
    _Split,
    _Voices,
    write_speech_index,
)
from vita.datasets.mini.chat import typed_chat_cases
from vita.datasets.mini.speech import train_pool
from vita.datasets.mini.text import load_corpus
from vita.errors import DataError

__all__ = ["rebuild_chat_typed", "rebuild_fragments", "rebuild_regions"]


def _manifest(root: Path) -> dict:
    path = root / "manifest.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a `vita data mini` folder ({exc})") from None


def _sizes(manifest: dict) -> dict[str, int]:
    """The preset the folder was built with (small or default)."""
    return SMALL_SIZES if manifest["sizes"].get("asr") == SMALL_SIZES["asr"] else DEFAULT_SIZES


def manifest_augment(manifest: dict) -> AugmentConfig | None:
    """The speech augmentation the folder's training clips were made with (None: none), as its manifest records it."""
    raw = manifest.get("augment")
    return None if raw is None else AugmentConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})


def _write_manifest(root: Path, manifest: dict, files: dict[str, str], drop: str | None = None) -> None:
    """`files` (path -> sha256) into the manifest's file list (`drop`: a folder whose old entries go first)."""
    listed = {k: v for k, v in manifest["files"].items() if drop is None or not k.startswith(drop)}
    listed = dict(sorted((listed | files).items()))
    listing = "".join(f"{h}  {p}\n" for p, h in listed.items())
    manifest.update(files=listed, files_sha256=hashlib.sha256(listing.encode()).hexdigest())
    (root / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")


def rebuild_regions(out_dir: str | Path) -> dict:
    """Rewrite only train/vision_regions.json and its pictures in the data folder `out_dir` (after a change to
    `vita.datasets.mini.regions` or to its size), exactly as a fresh `build_mini_data` with the same seed writes
    them (each picture's draw depends on the seed and its index only), and update the manifest's sizes, counts and
    file list. Everything else stays as it is."""
    root, manifest = Path(out_dir), _manifest(Path(out_dir))
    n = _sizes(manifest)["vision_regions"]
    shutil.rmtree(root / "train" / "media" / "regions", ignore_errors=True)
    media = _Split(root / "train", manifest["seed"], 0, set())
    records = _regions(media, n)
    (root / "train" / "vision_regions.json").write_text(json.dumps(records, ensure_ascii=False, indent=1) + "\n",
                                                         encoding="utf-8")
    files = {str(p.relative_to(root)): _sha(p) for p in sorted((root / "train" / "media" / "regions").rglob("*"))
             if p.is_file()}
    files["train/vision_regions.json"] = _sha(root / "train" / "vision_regions.json")
    manifest["sizes"]["vision_regions"] = n
    manifest["counts"].update({"train/vision_regions": n, "train/media/region": n})
    _write_manifest(root, manifest, files, drop="train/media/regions/")
    return {"out_dir": str(root), "vision_regions": n}


def rebuild_fragments(out_dir: str | Path) -> dict:
    """Add train/audio_fragments.json and its clips to the data folder `out_dir` (built before the fragments existed),
    exactly as a fresh `build_mini_data` with the same seed writes them (`build._fragments`: said last, without
    additive noise, each clip's voice and augmentation drawn from its own generator), and update the speech index and
    the manifest. Everything else stays as it is."""
    root, manifest = Path(out_dir), _manifest(Path(out_dir))
    seed = manifest["seed"]
    n = _sizes(manifest)["asr_fragment"]
    train = root / "train"
    corpus = load_corpus()
    voices = _Voices(train, seed, 0, train_pool(), manifest_augment(manifest), corpus)
    records = _fragments(voices, n, seed, corpus)
    (train / "audio_fragments.json").write_text(json.dumps(records, ensure_ascii=False, indent=1) + "\n",
                                                encoding="utf-8")
    index = train / "speech.jsonl"
    rows = {r["audio"]: r for r in map(json.loads, index.read_text(encoding="utf-8").splitlines())}
    rows.update({r["audio"]: r for r in voices.speaker.index()})
    counts = Counter({k: v for k, v in manifest["counts"].items() if not k.startswith("train/speech/")})
    write_speech_index(index, [rows[k] for k in sorted(rows)], counts, "train")
    counts["train/audio_fragments"] = n
    changed = [index, train / "audio_fragments.json", *(train / r["audio"] for r in records)]
    manifest["sizes"]["asr_fragment"] = n
    manifest["counts"] = dict(sorted(counts.items()))
    order = list(manifest["train"])
    at = order.index("audio_short") + 1 if "audio_short" in order else len(order)
    order.insert(at, "audio_fragments")
    manifest["train"] = {k: manifest["train"].get(k, "train/audio_fragments.json") for k in order}
    _write_manifest(root, manifest, {str(p.relative_to(root)): _sha(p) for p in changed})
    return {"out_dir": str(root), "audio_fragments": n}


def rebuild_chat_typed(out_dir: str | Path) -> dict:
    """Add eval/chat_typed.jsonl (typed text, no media) to the data folder `out_dir`, built before it existed, exactly
    as a fresh `build_mini_data` with the same seed writes it, and update the manifest. Everything else stays."""
    root, manifest = Path(out_dir), _manifest(Path(out_dir))
    n = _sizes(manifest)["eval_chat_typed"]
    rows = typed_chat_cases(n, manifest["sizes"]["eval_chat"], manifest["seed"])
    path = root / "eval" / "chat_typed.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    counts = Counter({k: v for k, v in manifest["counts"].items()
                      if k != "eval/chat_typed" and not k.startswith("eval/groups/chat_typed/")})
    counts["eval/chat_typed"] = len(rows)
    counts.update(f"eval/groups/{r['group']}" for r in rows)
    manifest["sizes"]["eval_chat_typed"] = n
    manifest["counts"] = dict(sorted(counts.items()))
    order = [k for k in manifest["eval"] if k != "chat_typed"]  # a fresh build lists it after naming
    at = order.index("naming") + 1 if "naming" in order else len(order)
    order.insert(at, "chat_typed")
    manifest["eval"] = {k: manifest["eval"].get(k, "eval/chat_typed.jsonl") for k in order}
    _write_manifest(root, manifest, {"eval/chat_typed.jsonl": _sha(path)})
    return {"out_dir": str(root), "chat_typed": len(rows)}
