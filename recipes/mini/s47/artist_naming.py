"""Typed naming items drawn by other artists (train split, the stream "artist_naming", never an eval picture):
    python recipes/mini/s47/artist_naming.py N DATA OUT   -> OUT/artist_naming.json + OUT/media/images/
Item i names CONCEPTS[i % 404] as drawn by the artist (i // 404) % 3 of `vita.datasets.mini.artists.ARTISTS`
(Twemoji, OpenMoji colour, OpenMoji black line drawings; `python -m vita.cli.tools emoji_artists --fetch` first), on
a training background, with `emoji_item`'s questions and layout (2026-12-07: N = 3000, DATA = runs/s28/data)."""

import json
import sys
from pathlib import Path

from vita.datasets.mini.artists import ARTISTS
from vita.datasets.mini.build import _rng, _sha, _turns
from vita.datasets.mini.emoji import CONCEPTS
from vita.datasets.mini.emoji_images import emoji_item

n, data, out = int(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
manifest = data / "manifest.json"
seed = json.loads(manifest.read_text()).get("seed", 0) if manifest.exists() else 0
forbidden = {_sha(p) for p in (data / "eval/media/images").glob("*.png")}  # never an eval picture
names = list(ARTISTS)
(out / "media/images").mkdir(parents=True, exist_ok=True)
rows = []
for i in range(n):
    concept, artist = CONCEPTS[i % len(CONCEPTS)], names[i // len(CONCEPTS) % len(names)]
    item = emoji_item(_rng(seed, 0, "artist_naming", i), False, concept, artist)
    rel = f"media/images/artist_naming_{i:05d}.png"
    item.image.save(out / rel, format="PNG")
    assert _sha(out / rel) not in forbidden, rel
    rows.append({"set": "mini_image_emoji", "id": f"an{i}", "image": rel,
                 "conversations": _turns("<image>\n" + item.question, item.answer)})
(out / "artist_naming.json").write_text(json.dumps(rows))
print(len(rows), "items,", len(CONCEPTS), "concepts x", names, "seed", seed, "eval pictures excluded", len(forbidden))
