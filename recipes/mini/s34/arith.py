"""s30: typed arithmetic records (train split of vita.datasets.mini.chat, exact answers) -> DATA/train/arith.json.
usage: python arith.py DATA [N]"""
import json
import sys
from pathlib import Path

import numpy as np

from vita.datasets.mini.chat import _arithmetic, is_excluded, split_of

out = Path(sys.argv[1]) / "train" / "arith.json"
n = int(sys.argv[2]) if len(sys.argv) > 2 else 1500
rng = np.random.default_rng([30, 3_001])
records, seen = [], set()
while len(records) < n:
    p = _arithmetic(rng)
    if split_of(p.key) != "train" or is_excluded(p.prompt) or p.prompt in seen:
        continue
    seen.add(p.prompt)
    records.append({"set": "mini_chat", "id": f"ar{len(records)}", "kind": "arithmetic",
                    "conversations": [{"from": "human", "value": p.prompt}, {"from": "gpt", "value": p.answer}]})
json.dump(records, open(out, "w"), indent=1)
print(len(records), "arithmetic records ->", out)
