"""vita-mini data builder: the training and evaluation sets, made locally and offline from a seed.

    out/train/vision_align.json   image / video + caption                          (official VITA JSON list)
    out/train/audio_align.json    "Transcribe the speech.<audio>" -> "<3>" + transcript (ASR alignment)
    out/train/instruct.json       image + spoken question -> "<1>" answer, image + typed question -> "<3>" answer,
                                  video + typed / spoken question, spoken and typed chat, and non-awakening
                                  negatives from `vita.training.negatives` (statements / chatter speech + noise, pure
                                  noise -> "<2>"; noisy spoken questions -> "<1>")
    out/train/media/              images/*.png, videos/*.mp4, speech/*.wav, negatives/audio/*.wav
    out/eval/{image,video,chat,asr,negatives}.jsonl   `vita eval` manifests (media under out/eval/media/); all.jsonl
                                  holds every case
    out/manifest.json             counts per stage and task, voices (train / eval, held out or not), sha256 per file

Training speech is the packaged Piper voice at three speeds and pitches (cycled by sample index, as the tasks are:
each templated image / video question is said in one variant only, a known limit of the shipped data); eval speech
uses espeak-ng voices (`mini_speech.eval_voices`; without espeak-ng, Piper at other speeds and pitches, and the
manifest says the voices were not held out). Images and videos come from per-sample generators seeded (seed, split,
stream, index) with split 0 for train and 1 for eval; an eval item whose file bytes equal a training file is redrawn,
and the build asserts no eval image or video hash is in train.
Answers are one word or a number, so `vita eval` exact match applies. Run: `vita data mini --out DIR [--small]`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from vita.training.mini_images import COLOURS, IMAGE_TASKS, NUMBER_WORDS, SHAPES, ImageItem, make_image
from vita.training.mini_speech import TRAIN_VARIANTS, Speaker, Voice, eval_voices, train_voices
from vita.training.mini_videos import VIDEO_TASKS, VideoItem, make_video, write_video
from vita.training.negatives import NegativesConfig, generate_negatives

DEFAULT_SIZES: dict[str, int] = {
    "vision_image": 2400, "vision_video": 600, "asr": 600,
    "image_typed": 1800, "image_spoken": 1200, "video_typed": 600, "video_spoken": 300,
    "chat_typed": 300, "chat_spoken": 150, "negatives": 750,
    "eval_image_typed": 90, "eval_image_spoken": 90, "eval_video": 60, "eval_chat": 30, "eval_asr": 40,
    "eval_negatives": 60,
}
SMALL_SIZES: dict[str, int] = {
    "vision_image": 8, "vision_video": 3, "asr": 5,
    "image_typed": 8, "image_spoken": 6, "video_typed": 3, "video_spoken": 3,
    "chat_typed": 3, "chat_spoken": 2, "negatives": 9,
    "eval_image_typed": 6, "eval_image_spoken": 6, "eval_video": 4, "eval_chat": 4, "eval_asr": 4,
    "eval_negatives": 6,
}
ASR_PROMPT = "Transcribe the speech."
NEG_RATIO = (0.3, 0.4, 0.3)  # noisy spoken questions : statements / chatter : pure noise
STATEMENTS = (
    "I think it will rain later today.", "Let's meet at the station at {n}.", "My sister bought a {c} car.",
    "The meeting moved to room {n}.", "We had pasta for dinner again.", "Can you pass me the {c} cup, please?",
    "I left my keys on the kitchen table.", "The bus was {n} minutes late this morning.",
    "He said the {s} was too small.", "Turn left after the bridge.", "I'll call you back in {n} minutes.",
    "She painted the fence {c} last summer.", "Don't forget to water the plants.", "The shop closes at {n}.",
    "That film was better than I expected.", "Put the {c} box next to the door.",
)


def _turns(*values: str) -> list[dict[str, str]]:
    return [{"from": "human" if i % 2 == 0 else "gpt", "value": v} for i, v in enumerate(values)]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _rng(seed: int, split: int, stream: str, i: int) -> np.random.Generator:
    return np.random.default_rng([seed, split, int(hashlib.sha256(stream.encode()).hexdigest()[:8], 16), i])


def _statement(rng: np.random.Generator) -> str:
    text = STATEMENTS[int(rng.integers(len(STATEMENTS)))]
    return text.format(n=NUMBER_WORDS[int(rng.integers(2, 10))], c=str(rng.choice(list(COLOURS))),
                       s=str(rng.choice(SHAPES)))


def _chat(rng: np.random.Generator) -> tuple[str, str]:
    """A question a model answers without media, one-word or number answer."""
    kind = int(rng.integers(3))
    a, b = int(rng.integers(1, 10)), int(rng.integers(1, 10))
    if kind == 0:
        return f"What is {NUMBER_WORDS[a]} plus {NUMBER_WORDS[b]}?", str(a + b)
    if kind == 1:
        a, b = max(a, b), min(a, b)
        return f"What is {NUMBER_WORDS[a]} minus {NUMBER_WORDS[b]}?", str(a - b)
    return f"What number comes after {NUMBER_WORDS[a]}?", str(a + 1)


def _sentence(rng: np.random.Generator) -> str:
    """ASR text: statements, captions and questions about the mini world."""
    kind = int(rng.integers(3))
    if kind == 0:
        return _statement(rng)
    if kind == 1:
        return _chat(rng)[0]
    n, c, s = int(rng.integers(1, 6)), str(rng.choice(list(COLOURS))), str(rng.choice(SHAPES))
    return f"There {'is' if n == 1 else 'are'} {NUMBER_WORDS[n]} {c} {s}{'s' if n > 1 else ''} in the picture."


class _Split:
    """Writes one split's media (images / videos) and remembers their hashes."""

    def __init__(self, root: Path, seed: int, split: int, forbidden: set[str]) -> None:
        self.root, self.seed, self.split, self.forbidden = root, seed, split, forbidden
        self.hashes: set[str] = set()
        self.counts: Counter[str] = Counter()

    def _fresh(self, stream: str, i: int, make: Callable[[np.random.Generator], Any],
               write: Callable[[Any, Path], None], path: Path) -> Any:
        for attempt in range(20):
            item = make(_rng(self.seed, self.split, f"{stream}/{attempt}" if attempt else stream, i))
            write(item, path)
            digest = _sha(path)
            if digest not in self.forbidden:
                self.hashes.add(digest)
                return item
        raise RuntimeError(f"could not draw a held-out {stream} item #{i}")

    def image(self, stream: str, i: int, task: str) -> tuple[str, ImageItem]:
        rel = f"media/images/{stream}_{i:05d}.png"
        (self.root / rel).parent.mkdir(parents=True, exist_ok=True)
        item = self._fresh(stream, i, lambda g: make_image(task, g, held_out=self.split == 1),
                           lambda it, p: it.image.save(p, format="PNG"), self.root / rel)
        self.counts[f"image/{task}"] += 1
        return rel, item

    def video(self, stream: str, i: int, task: str) -> tuple[str, VideoItem]:
        rel = f"media/videos/{stream}_{i:05d}.mp4"
        item = self._fresh(stream, i, lambda g: make_video(task, g), lambda it, p: write_video(it.frames, p),
                           self.root / rel)
        self.counts[f"video/{task}"] += 1
        return rel, item


def _negatives(root: Path, speaker: Speaker, voices: list[Voice], n: int, seed: int) -> list[dict[str, Any]]:
    """`n` negatives records (audio paths relative to `root`) from speech said by `voices`."""
    if n <= 0:
        return []
    rows = []
    for i in range(max(2, n)):
        rng = _rng(seed, 2, "negatives-speech", i)
        voice = voices[i % len(voices)]
        if i % 2:
            text, answer = _chat(rng)
            clip = speaker.say(voice, text)
            rows.append({"audio": clip.rel.removeprefix("media/"), "text": text, "answer": answer, "is_query": True})
        else:
            clip = speaker.say(voice, _statement(rng))
            rows.append({"audio": clip.rel.removeprefix("media/"), "text": clip.text, "is_query": False})
    manifest = root / "media" / "negatives_source.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    out = generate_negatives(NegativesConfig(manifest, root / "media" / "negatives", num_samples=n, ratio=NEG_RATIO,
                                             noise_seconds=(0.5, 1.5), seed=seed))
    records = []
    for line in out.read_text(encoding="utf-8").splitlines():
        r = json.loads(line)
        r.pop("speech", None)  # an absolute path: the build must not depend on where it is written
        r["audio"] = "media/negatives/" + r["audio"]
        records.append(r)
    out.unlink()
    return records


def _train(root: Path, sizes: dict[str, int], seed: int, counts: Counter[str]) -> tuple[dict[str, Path], _Split]:
    media = _Split(root, seed, 0, set())
    speaker = Speaker(root, "media/speech")
    voices = train_voices()

    def voice(i: int) -> Voice:
        return voices[i % len(voices)]

    vision = []
    for i in range(sizes["vision_image"]):
        rel, it = media.image("vision", i, IMAGE_TASKS[i % len(IMAGE_TASKS)])
        prompt = "<image>\n" + ("Describe the image." if i % 2 else "")
        vision.append({"set": "mini_vision", "id": f"vi{i}", "image": rel, "conversations": _turns(prompt, it.caption)})
    for i in range(sizes["vision_video"]):
        rel, it = media.video("vision_video", i, VIDEO_TASKS[i % len(VIDEO_TASKS)])
        vision.append({"set": "mini_vision", "id": f"vv{i}", "video": rel,
                       "conversations": _turns("<video>\nDescribe the video.", it.caption)})

    audio = []
    for i in range(sizes["asr"]):
        clip = speaker.say(voice(i), _sentence(_rng(seed, 0, "asr", i)))
        audio.append({"set": "mini_asr", "id": f"a{i}", "audio": clip.rel,
                      "conversations": _turns(ASR_PROMPT + "<audio>", "<3>" + clip.text)})

    instruct: list[dict[str, Any]] = []
    for i in range(sizes["image_typed"]):
        task = IMAGE_TASKS[i % len(IMAGE_TASKS)]
        rel, it = media.image("typed", i, task)
        instruct.append({"set": f"mini_image_{task}", "id": f"it{i}", "image": rel,
                         "conversations": _turns("<image>\n" + it.question, it.answer)})
    for i in range(sizes["image_spoken"]):
        task = IMAGE_TASKS[i % len(IMAGE_TASKS)]
        rel, it = media.image("spoken", i, task)
        clip = speaker.say(voice(i), it.question)
        instruct.append({"set": f"mini_image_{task}", "id": f"is{i}", "image": rel, "audio": clip.rel,
                         "question": clip.text, "conversations": _turns("<image>\n<audio>", it.answer)})
    for i in range(sizes["video_typed"] + sizes["video_spoken"]):
        task = VIDEO_TASKS[i % len(VIDEO_TASKS)]
        rel, vit = media.video("video_qa", i, task)
        record: dict[str, Any] = {"set": f"mini_video_{task}", "id": f"vq{i}", "video": rel}
        if i < sizes["video_typed"]:
            record["conversations"] = _turns("<video>\n" + vit.question, vit.answer)
        else:
            clip = speaker.say(voice(i), vit.question)
            record.update(audio=clip.rel, question=clip.text, conversations=_turns("<video>\n<audio>", vit.answer))
        instruct.append(record)
    for i in range(sizes["chat_typed"] + sizes["chat_spoken"]):
        question, answer = _chat(_rng(seed, 0, "chat", i))
        if i < sizes["chat_typed"]:
            instruct.append({"set": "mini_chat", "id": f"ct{i}", "conversations": _turns(question, answer)})
        else:
            clip = speaker.say(voice(i), question)
            instruct.append({"set": "mini_chat", "id": f"cs{i}", "audio": clip.rel, "question": clip.text,
                             "conversations": _turns("<audio>", answer)})
    negatives = _negatives(root, speaker, voices, sizes["negatives"], seed)
    instruct += [dict(r, set="mini_negatives") for r in negatives]
    instruct = [instruct[i] for i in np.random.default_rng([seed, 0]).permutation(len(instruct))]

    counts.update({"train/vision_align": len(vision), "train/audio_align": len(audio),
                   "train/instruct": len(instruct)})
    counts.update(f"train/instruct/{r['set']}" + (f"/{r['kind']}" if "kind" in r else "") for r in instruct)
    counts.update({f"train/media/{k}": v for k, v in media.counts.items()})
    out = {}
    for name, records in (("vision_align", vision), ("audio_align", audio), ("instruct", instruct)):
        out[name] = root / f"{name}.json"
        out[name].write_text(json.dumps(records, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return out, media


def _eval(root: Path, sizes: dict[str, int], seed: int, forbidden: set[str], voices: list[Voice],
          counts: Counter[str]) -> tuple[dict[str, Path], _Split]:
    media = _Split(root, seed, 1, forbidden)
    speaker = Speaker(root, "media/speech")
    cases: dict[str, list[dict[str, Any]]] = {k: [] for k in ("image", "video", "chat", "asr", "negatives")}
    k = 0

    def voice() -> Voice:
        nonlocal k
        k += 1
        return voices[(k - 1) % len(voices)]

    for i in range(sizes["eval_image_typed"] + sizes["eval_image_spoken"]):
        task = IMAGE_TASKS[i % len(IMAGE_TASKS)]
        rel, it = media.image("image", i, task)
        case: dict[str, Any] = {"id": f"image-{i}", "image": rel, "answer": it.answer}
        if i < sizes["eval_image_typed"]:
            case.update(text=it.question, expect_state="<3>", group=f"image/{task}/typed")
        else:
            case.update(audio=speaker.say(voice(), it.question).rel, expect_state="<1>", group=f"image/{task}/spoken")
        cases["image"].append(case)
    for i in range(sizes["eval_video"]):
        task = VIDEO_TASKS[i % len(VIDEO_TASKS)]
        rel, vit = media.video("video", i, task)
        case = {"id": f"video-{i}", "video": rel, "answer": vit.answer}
        if i % 2 == 0:
            case.update(text=vit.question, expect_state="<3>", group=f"video/{task}/typed")
        else:
            case.update(audio=speaker.say(voice(), vit.question).rel, expect_state="<1>", group=f"video/{task}/spoken")
        cases["video"].append(case)
    for i in range(sizes["eval_chat"]):
        question, answer = _chat(_rng(seed, 1, "chat", i))
        case = {"id": f"chat-{i}", "answer": answer}
        if i % 2 == 0:
            case.update(text=question, expect_state="<3>", group="chat/typed")
        else:
            case.update(audio=speaker.say(voice(), question).rel, expect_state="<1>", group="chat/spoken")
        cases["chat"].append(case)
    for i in range(sizes["eval_asr"]):
        clip = speaker.say(voice(), _sentence(_rng(seed, 1, "asr", i)))
        cases["asr"].append({"id": f"asr-{i}", "audio": clip.rel, "text": ASR_PROMPT, "expect_state": "<3>",
                             "transcript": clip.text, "group": "asr"})
    for r in _negatives(root, speaker, voices, sizes["eval_negatives"], seed + 1_000_003):
        case = {"id": r["id"], "audio": r["audio"], "group": f"negatives/{r['kind']}"}
        if r["kind"] == "query":
            case.update(expect_state="<1>", answer=r["conversations"][1]["value"])
        else:
            case["expect_state"] = "<2>"
        cases["negatives"].append(case)
    out = {}
    for name, rows in cases.items():
        if rows:
            out[name] = root / f"{name}.jsonl"
            out[name].write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
            counts[f"eval/{name}"] = len(rows)
            counts.update(f"eval/groups/{r['group']}" for r in rows)
    every = [r for rows in cases.values() for r in rows]  # one manifest for one `vita eval` run
    out["all"] = root / "all.jsonl"
    out["all"].write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in every), encoding="utf-8")
    counts["eval/all"] = len(every)
    counts.update({f"eval/media/{k}": v for k, v in media.counts.items()})
    return out, media


def build_mini_data(out_dir: str | Path, *, seed: int = 0, sizes: dict[str, int] | str | None = None) -> dict:
    """Write train/, eval/ and manifest.json under `out_dir`; `sizes`: counts (see DEFAULT_SIZES) or "small"."""
    t0 = time.perf_counter()
    base = SMALL_SIZES if sizes == "small" else DEFAULT_SIZES
    chosen = dict(base, **(sizes if isinstance(sizes, dict) else {}))
    unknown = set(chosen) - set(DEFAULT_SIZES)
    if unknown:
        raise ValueError(f"unknown size key(s) {sorted(unknown)} (known: {', '.join(DEFAULT_SIZES)})")
    root = Path(out_dir)
    counts: Counter[str] = Counter()
    train, train_media = _train(root / "train", chosen, seed, counts)
    voices, held_out, note = eval_voices()
    evals, eval_media = _eval(root / "eval", chosen, seed, train_media.hashes, voices, counts)
    assert not train_media.hashes & eval_media.hashes, "an eval image or video is also in the training set"
    files = {str(p.relative_to(root)): _sha(p) for p in sorted(root.rglob("*"))
             if p.is_file() and p.name != "manifest.json"}
    listing = "".join(f"{h}  {p}\n" for p, h in files.items())
    wall = round(time.perf_counter() - t0, 2)
    manifest = {
        "seed": seed, "sizes": chosen, "counts": dict(sorted(counts.items())),
        "voices": {"train": [name for name, _, _ in TRAIN_VARIANTS], "eval": [v.name for v in voices],
                   "eval_held_out": held_out, "note": note},
        "train": {k: str(p.relative_to(root)) for k, p in train.items()},
        "eval": {k: str(p.relative_to(root)) for k, p in evals.items()},
        "files_sha256": hashlib.sha256(listing.encode()).hexdigest(), "files": files, "wall_seconds": wall,
    }
    (root / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return dict(manifest, out_dir=str(root), manifest_path=str(root / "manifest.json"))


def _run(args: argparse.Namespace) -> int:
    info = build_mini_data(args.out, seed=args.seed, sizes="small" if args.small else None)
    for key, value in info["counts"].items():
        if key.count("/") == 1:
            print(f"{key}: {value}")
    print(f"eval voices: {', '.join(info['voices']['eval'])} ({info['voices']['note']})")
    print(f"wrote {info['manifest_path']} in {info['wall_seconds']:.1f} s")
    return 0


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the `mini` subcommand (for `vita data mini --out DIR [--seed S] [--small]`); it sets `func`."""
    p = subparsers.add_parser("mini", help="build the vita-mini training and evaluation sets (offline)")
    p.add_argument("--out", type=Path, required=True, help="output folder (train/, eval/, manifest.json)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--small", action="store_true", help="the small preset (~50 train samples, ~30 eval cases)")
    p.set_defaults(func=_run)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vita data mini", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(required=True)
    add_parser(sub)
    args = parser.parse_args(["mini", *(sys.argv[1:] if argv is None else argv)])
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
