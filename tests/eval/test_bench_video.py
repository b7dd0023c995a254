"""Video-MME adapter on a hand-written sample: the official JSON, a frame folder and an mp4 with subtitles."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from vita.errors import EvalError
from vita.eval.bench import get
from vita.eval.bench.core import Options
from vita.eval.bench.runner import run_benchmark
from vita.eval.bench.videomme import parse_srt


def _mp4(path: Path, n_frames: int, fps: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format="mp4") as c:
        s = c.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = 32, 32, "yuv420p"
        for i in range(n_frames):
            frame = np.full((32, 32, 3), 20 * i, np.uint8)
            for p in s.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


VIDEOS = [
    {"video_id": "001", "duration": "short", "domain": "Knowledge", "sub_category": "Astronomy",
     "videoID": "fFjv93ACGo8",
     "questions": [{"question_id": "001-1", "task_type": "Counting Problem", "question": "How many planets are shown?",
                    "options": ["A. 1", "B. 2", "C. 3", "D. 4"], "answer": "C"},
                   {"question_id": "001-2", "task_type": "Object Recognition", "question": "What is shown first?",
                    "options": ["A. Sun", "B. Moon", "C. Mars", "D. Earth"], "answer": "A"}]},
    {"video_id": "002", "duration": "long", "domain": "Sports Competition", "sub_category": "Football",
     "videoID": "xYz_123",
     "questions": [{"question_id": "002-1", "task_type": "Action Reasoning", "question": "Who scores?",
                    "options": ["A. Red team", "B. Blue team", "C. Nobody", "D. Referee"], "answer": "B"}]},
]


@pytest.fixture
def videomme(tmp_path: Path) -> Path:
    root = tmp_path / "Video-MME"
    (root / "frames" / "fFjv93ACGo8").mkdir(parents=True)
    for i in range(6):
        Image.new("RGB", (16, 16), (40 * i, 0, 0)).save(root / "frames" / "fFjv93ACGo8" / f"{i:04d}.jpg")
    _mp4(root / "video" / "xYz_123.mp4", n_frames=6, fps=2)  # 3 s at 2 fps
    (root / "subtitle").mkdir()
    (root / "subtitle" / "xYz_123.srt").write_text(
        "1\n00:00:00,500 --> 00:00:01,500\nhello\n\n2\n00:00:01,600 --> 00:00:02,500\n<i>world</i>\n")
    (root / "subtitle" / "fFjv93ACGo8.srt").write_text("1\n00:00:01,000 --> 00:00:02,000\nplanets\n")
    (root / "videomme.json").write_text(json.dumps(VIDEOS))
    return root


def test_videomme_prompts_media_and_score(videomme, fake):
    items = get("video-mme").load(videomme, Options(max_frames=4))
    assert [i.id for i in items] == ["001-1", "001-2", "002-1"]
    assert [p.name for p in items[0].video] == ["0000.jpg", "0001.jpg", "0003.jpg", "0005.jpg"]  # linspace(0, 5, 4)
    assert items[2].video == videomme / "video" / "xYz_123.mp4"
    assert items[0].prompt == (
        "These are the frames of a video. Select the best answer to the following multiple-choice question based on "
        "the video. Respond with only the letter (A, B, C, or D) of the correct option.\n"
        "Question: How many planets are shown?\nA. 1\nB. 2\nC. 3\nD. 4\nAnswer: ")
    replies = {"How many": "The best answer is C", "shown first": "Moon, I think: B", "Who scores": "the blue team"}
    model = fake(lambda text, **_: next(v for k, v in replies.items() if k in text))
    r = run_benchmark(get("video-mme"), videomme, model, out_dir=videomme / "out", model_name="fake",
                      options=Options(max_frames=4))
    # by hand: C right, B wrong (A), no letter but the text of option B ("blue team") right -> 2 of 3;
    # short 1/2, long 1/1
    assert r["headline"][0]["value"] == pytest.approx(200 / 3)
    assert r["headline"][0]["key"] == "video-mme/without-subs"
    assert r["metrics"]["duration"] == {"long": 100.0, "short": 50.0}
    assert model.calls[0]["video"] == [str(p) for p in items[0].video]


def test_videomme_subtitles(videomme):
    items = get("video-mme").load(videomme, Options(subtitles=True))
    # mp4: 6 frames at 2 fps -> VITA samples frames 0, 0, 2, 4 (times 0, 0, 1, 2 s); the cue showing at 1 s is
    # "hello", at 2 s "world", none at 0 s
    assert "This video's subtitles are listed below:\nhello\nworld\nSelect the best answer" in items[2].prompt
    # frame folder: times unknown, every cue
    assert "listed below:\nplanets\nSelect" in items[0].prompt
    assert parse_srt("1\n00:01:02,250 --> 00:01:03,000\na\\Nb\n") == [(62.25, 63.0, "a b")]
    (videomme / "video" / "xYz_123.mp4").unlink()
    with pytest.raises(EvalError, match="no video or frame folder for xYz_123 / 002"):
        get("video-mme").load(videomme, Options())
