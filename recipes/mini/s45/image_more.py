"""More typed image QA items (train split, the stream "image_more", never an eval picture):
    python recipes/mini/s45/image_more.py N DATA OUT   -> OUT/image_more.json + OUT/media/images/
N items, the tasks drawn by the data's weighted cycle (`TASK_WEIGHTS`: open-vocabulary naming most), each picture
from its own generator (2026-12-07: N = 6000, DATA = runs/s28/data)."""

import json
import sys
from pathlib import Path

from vita.datasets.mini.build import _sha, _Split, _task, _turns

n, data, out = int(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
manifest = data / "manifest.json"
seed = json.loads(manifest.read_text()).get("seed", 0) if manifest.exists() else 0
forbidden = {_sha(p) for p in (data / "eval/media/images").glob("*.png")}  # never an eval picture
split = _Split(out, seed, 0, forbidden)
rows = []
for i in range(n):
    task = _task(i)
    rel, item = split.image("image_more", i, task)
    rows.append({"set": f"mini_image_{task}", "id": f"im{i}", "image": rel,
                 "conversations": _turns("<image>\n" + item.question, item.answer)})
(out / "image_more.json").write_text(json.dumps(rows))
print(len(rows), dict(split.counts), "seed", seed, "eval pictures excluded", len(forbidden))
