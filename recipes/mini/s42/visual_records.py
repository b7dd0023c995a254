"""The stage-3 instruct records that hold an image or a video (the only ones a vision projector's change can reach):
    python recipes/mini/s42/visual_records.py DATA   -> DATA/train/instruct_visual.json
(6,300 of 7,800 records on 2026-12-07)"""
import json
import sys
from pathlib import Path

train = Path(sys.argv[1]) / "train"
rows = [r for r in json.loads((train / "instruct.json").read_text()) if "image" in r or "video" in r]
(train / "instruct_visual.json").write_text(json.dumps(rows))
print(len(rows), "records ->", train / "instruct_visual.json")
