"""Video-MME: 2,700 four-option questions on 900 videos (short / medium / long), with or without subtitles.

Formats accepted (`--data` is the file, or the folder holding exactly one .json / .jsonl):
  - the official JSON (BradyFU/Video-MME, the results template): a list of videos, each {"video_id", "duration",
    "domain", "sub_category", ["videoID"], "questions": [{"question_id", "task_type", "question", "options":
    ["A. ...", "B. ...", "C. ...", "D. ..."], "answer": "A"}, ...]};
  - the flat rows of the released parquet (lmms-lab/Video-MME `videomme/test-00000-of-00001.parquet`, exported
    as JSON or JSONL): one object per question with video_id, duration, domain, sub_category, url, videoID,
    question_id, task_type, question, options, answer.
Media, looked up by the video's `videoID` (the YouTube id the released files are named by), then `video_id`,
next to the data file: a video `video/NAME.mp4` (or `data/`, `videos/`; .mp4 .mkv .webm), sampled by the
model's own rule (VITA: 1 frame per second, 4 to 16 frames); or a frame folder `frames/NAME/` of images, of which
`--max-frames` (default 16) are taken evenly spaced in name order. Subtitles (`--subtitles`): `subtitle/NAME.srt`;
for a video file, the subtitle line showing at each sampled frame's time, in order (VLMEvalKit's selection); for a
frame folder (times unknown), every subtitle line; none when the video has no .srt (as VLMEvalKit).
Prompt (VLMEvalKit `vlmeval/dataset/videomme.py`, FRAMES_TMPL_NOSUB / FRAMES_TMPL_SUB and the question line):
    <frames>\\nThese are the frames of a video. [This video's subtitles are listed below:\\n{subtitles}\\n]Select the
    best answer to the following multiple-choice question based on the video. Respond with only the letter
    (A, B, C, or D) of the correct option.\\nQuestion: {question}\\n{A. ..}\\n{B. ..}\\n{C. ..}\\n{D. ..}\\nAnswer:
    (the prompt ends "Answer: ", with one space after the colon)
Score: the letter `extract.videomme_letter` reads (Video-MME's extract_characters_regex); when it reads none,
VLMEvalKit's fallback in exact-matching mode: `extract.infer_choice` over the options' texts (so "left" picks
"A. Left"); right when equal to the answer. Accuracy overall and by duration, domain and task type.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vita.errors import EvalError
from vita.eval.bench.core import Benchmark, Figure, Item, Options, Score, check_data, pct
from vita.eval.bench.extract import infer_choice, videomme_letter
from vita.eval.bench.image_mcq import accuracy_tables

HEAD = "These are the frames of a video. "
SUBS = "This video's subtitles are listed below:\n{}\n"
ASK = ("Select the best answer to the following multiple-choice question based on the video. "
       "Respond with only the letter (A, B, C, or D) of the correct option.\n")
_VIDEO_DIRS = ("video", "data", "videos")
_VIDEO_EXT = (".mp4", ".mkv", ".webm")
_IMAGE_EXT = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}


def parse_srt(text: str) -> list[tuple[float, float, str]]:
    """(start s, end s, text) of each SubRip cue."""
    cues = []
    stamp = r"(\d+):(\d+):(\d+)[,.](\d+)"
    for block in re.split(r"\n\s*\n", text.replace("\r\n", "\n").strip()):
        lines = block.strip().split("\n")
        for i, line in enumerate(lines):
            m = re.match(rf"\s*{stamp}\s*-->\s*{stamp}", line)
            if m:
                g = [int(x) for x in m.groups()]
                start = g[0] * 3600 + g[1] * 60 + g[2] + g[3] / 1000
                end = g[4] * 3600 + g[5] * 60 + g[6] + g[7] / 1000
                body = " ".join(s.strip() for s in lines[i + 1:]).replace("\\N", " ")
                cues.append((start, end, re.sub(r"<[^>]+>", "", body).strip()))
                break
    return cues


def frame_times(video: Path) -> list[float] | None:
    """Times (s) of the frames the model samples from `video` (VITA's rule), from the header; None if unknown."""
    import av

    from vita.media.video import sample_frame_indices

    try:
        with av.open(str(video)) as container:
            stream = container.streams.video[0]
            rate = float(stream.average_rate or stream.guessed_rate or 0)
            n = stream.frames
    except (av.error.FFmpegError, OSError, IndexError):
        return None
    if not rate or n <= 0:
        return None
    return [i / rate for i in sample_frame_indices(n, rate)]


def subtitle_text(cues: list[tuple[float, float, str]], times: list[float] | None) -> str:
    if times is None:
        return "\n".join(c[2] for c in cues if c[2])
    picked = []
    for t in times:
        text = next((c[2] for c in cues if c[0] < t < c[1]), "")
        if text.strip():
            picked.append(text)
    return "\n".join(picked)


def option_texts(options: list[str]) -> dict[str, str]:
    """{"A": "Left", ...} from ["A. Left", ...] (VLMEvalKit extract_option: the text after "A.", stripped)."""
    out = {}
    for i, line in enumerate(options):
        letter = "ABCDEFGH"[i]
        at = line.find(f"{letter}.")
        out[letter] = line[at + 2:].strip(". \n") if at >= 0 else line.strip()
    return out


def _records(path: Path) -> list[dict[str, Any]]:
    text = path.read_text(encoding="utf-8")
    raw = ([json.loads(line) for line in text.splitlines() if line.strip()] if path.suffix == ".jsonl"
           else json.loads(text))
    if not isinstance(raw, list):
        raise EvalError(f"{path}: expected a list of videos or of questions")
    rows = []
    for video in raw:
        for q in video.get("questions", [video]):
            rows.append({**{k: v for k, v in video.items() if k != "questions"}, **q})
    return rows


class VideoMME(Benchmark):
    name, title, max_new_tokens = "video-mme", "Video-MME", 16
    source = "Video-MME JSON / parquet rows + videos or frame folders; VLMEvalKit videomme.py prompt and scoring"
    prompt_doc = ("<frames>\\n" + HEAD + "[" + SUBS.replace("\n", "\\n").format("{subtitles}") + "]" +
                  ASK.replace("\n", "\\n") + "Question: {question}\\n{options, one per line}\\nAnswer: ")

    def _media(self, root: Path, names: list[str], options: Options) -> Path | list[Path]:
        for name in names:
            for d in _VIDEO_DIRS:
                for ext in _VIDEO_EXT:
                    if (root / d / f"{name}{ext}").is_file():
                        return root / d / f"{name}{ext}"
            folder = root / "frames" / name
            if folder.is_dir():
                frames = sorted(p for p in folder.iterdir() if p.suffix.lower() in _IMAGE_EXT)
                if frames:
                    picks = np.linspace(0, len(frames) - 1, num=min(options.max_frames, len(frames)), dtype=int)
                    return [frames[int(i)] for i in picks]
        raise EvalError(f"{root}: no video or frame folder for {' / '.join(names)} (looked in video/, data/, "
                        "videos/, frames/)")

    def load(self, data: Path, options: Options) -> list[Item]:
        check_data(data, "Video-MME data")
        if data.is_dir():
            found = sorted([*data.glob("*.json"), *data.glob("*.jsonl")])
            if len(found) != 1:
                raise EvalError(f"{data}: expected one .json / .jsonl question file, found {len(found)}")
            data = found[0]
        root, items = data.parent, []
        media: dict[str, tuple[Path | list[Path], str]] = {}
        for rec in _records(data):
            names = [str(rec[k]) for k in ("videoID", "video_id") if rec.get(k)]
            if not names or "question_id" not in rec:
                raise EvalError(f"{data}: a question without video_id / question_id: {str(rec)[:80]}")
            if names[0] not in media:
                video = self._media(root, names, options)
                subs = ""
                if options.subtitles:
                    srt = next((root / "subtitle" / f"{n}.srt" for n in names if (root / "subtitle" / f"{n}.srt")
                                .is_file()), None)
                    if srt is not None:
                        cues = parse_srt(srt.read_text(encoding="utf-8", errors="replace"))
                        subs = subtitle_text(cues, frame_times(video) if isinstance(video, Path) else None)
                media[names[0]] = (video, subs)
            video, subs = media[names[0]]
            sub_block = SUBS.format(subs) if options.subtitles else ""
            opts = [str(o) for o in rec["options"]]
            prompt = HEAD + sub_block + ASK + f"Question: {rec['question']}\n" + "\n".join(opts) + "\nAnswer: "
            items.append(Item(str(rec["question_id"]), prompt, video=video,
                              meta={"answer": str(rec["answer"]).strip(), "choices": option_texts(opts),
                                    "duration": rec.get("duration", ""),
                                    "domain": rec.get("domain", ""), "task_type": rec.get("task_type", ""),
                                    "subtitles": options.subtitles}))
        return items

    def score(self, items: Sequence[Item], replies: Mapping[str, str]) -> Score:
        rows, groups = [], {"duration": {}, "domain": {}, "task_type": {}}  # type: ignore[var-annotated]
        for it in items:
            reply = replies.get(it.id, "")
            got = videomme_letter(reply) or infer_choice(reply, it.meta["choices"])
            ok = got == it.meta["answer"]
            for g in groups:
                groups[g].setdefault(it.meta[g], []).append(ok)
            rows.append({"id": it.id, "duration": it.meta["duration"], "expected": it.meta["answer"],
                         "extracted": got, "correct": ok, "reply": reply})
        n_ok = sum(r["correct"] for r in rows)
        metrics, tables = accuracy_tables(groups)
        subs = bool(items and items[0].meta["subtitles"])
        acc = pct(n_ok, len(rows))
        return Score([Figure(f"accuracy ({'with' if subs else 'without'} subtitles)",
                             f"video-mme/{'with' if subs else 'without'}-subs", acc,
                             support=f"{n_ok} of {len(rows)} questions")],
                     {"accuracy": acc, "correct": n_ok, "n": len(rows), "subtitles": subs, **metrics}, tables, rows)
