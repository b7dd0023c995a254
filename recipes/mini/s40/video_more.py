"""More typed video QA items (train split, the stream "video_more", never an eval video):
    python recipes/mini/s40/video_more.py N DATA OUT   -> OUT/video_more.json + OUT/media/videos/
N items, direction : order : flashes = 2 : 1 : 1 (2026-12-07: N = 3000, DATA = runs/s28/data)."""

import json
import sys
from pathlib import Path

from vita.datasets.mini.build import _sha, _Split, _turns
from vita.datasets.mini.videos import VIDEO_TASKS

n, data, out = int(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
manifest = data / "manifest.json"
seed = json.loads(manifest.read_text()).get("seed", 0) if manifest.exists() else 0
forbidden = {_sha(p) for p in (data / "eval/media/videos").glob("*.mp4")}  # never an eval video
split = _Split(out, seed, 0, forbidden)
cycle = ["direction", "direction", "order", "flashes"]
assert set(cycle) == set(VIDEO_TASKS)
rows = []
for i in range(n):
    task = cycle[i % len(cycle)]
    rel, item = split.video("video_more", i, task)
    rows.append({"set": f"mini_video_{task}", "id": f"vm{i}", "video": rel,
                 "conversations": _turns("<video>\n" + item.question, item.answer)})
(out / "video_more.json").write_text(json.dumps(rows))
print(len(rows), dict(split.counts), "seed", seed, "eval videos excluded", len(forbidden))
