"""Spoken video QA items (train split, the stream "video_spoken_more", never an eval video, training voices only):
    python recipes/mini/s44/video_spoken.py N DATA OUT   -> OUT/video_spoken.json + OUT/media/{videos,speech}/
N items, direction : order : flashes = 2 : 1 : 1, each question said by a voice of the training pool and augmented
as the data folder's manifest says (2026-12-07: N = 2000, DATA = runs/s28/data)."""

import json
import sys
from pathlib import Path

from vita.datasets.mini.build import _sha, _Split, _turns, _Voices
from vita.datasets.mini.rebuild import manifest_augment
from vita.datasets.mini.speech import train_pool
from vita.datasets.mini.text import load_corpus
from vita.datasets.mini.videos import VIDEO_TASKS

n, data, out = int(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
manifest = json.loads((data / "manifest.json").read_text())
seed = manifest.get("seed", 0)
forbidden = {_sha(p) for p in (data / "eval/media/videos").glob("*.mp4")}  # never an eval video
split = _Split(out, seed, 0, forbidden)
voices = _Voices(out, seed, 0, train_pool(), manifest_augment(manifest), load_corpus())
cycle = ["direction", "direction", "order", "flashes"]
assert set(cycle) == set(VIDEO_TASKS)
rows = []
for i in range(n):
    task = cycle[i % len(cycle)]
    rel, item = split.video("video_spoken_more", i, task)
    clip = voices.say("video_spoken_more", i, item.question)
    rows.append({"set": f"mini_video_{task}", "id": f"vsm{i}", "video": rel, "audio": clip.rel,
                 "question": clip.text, "conversations": _turns("<video>\n<audio>", item.answer)})
(out / "video_spoken.json").write_text(json.dumps(rows))
print(len(rows), dict(split.counts), "seed", seed, "eval videos excluded", len(forbidden),
      "voices", len({r["voice"] for r in voices.speaker.index()}))
