"""Rewriting one part of an existing `vita data mini` folder, exactly as a fresh build writes it.

    rebuild_regions(DATA)   train/vision_regions.json and its pictures (`vita data mini --out DATA --regions-only`)
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from vita.datasets.mini.build import DEFAULT_SIZES, SMALL_SIZES, _regions, _sha, _Split
from vita.errors import DataError

__all__ = ["rebuild_regions"]


def rebuild_regions(out_dir: str | Path) -> dict:
    """Rewrite only train/vision_regions.json and its pictures in the data folder `out_dir` (after a change to
    `vita.datasets.mini.regions` or to its size), exactly as a fresh `build_mini_data` with the same seed writes
    them (each picture's draw depends on the seed and its index only), and update the manifest's sizes, counts and
    file list. Everything else stays as it is."""
    root = Path(out_dir)
    path = root / "manifest.json"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a `vita data mini` folder ({exc})") from None
    seed = manifest["seed"]
    small = manifest["sizes"].get("asr") == SMALL_SIZES["asr"]  # the preset the folder was built with
    n = (SMALL_SIZES if small else DEFAULT_SIZES)["vision_regions"]
    shutil.rmtree(root / "train" / "media" / "regions", ignore_errors=True)
    media = _Split(root / "train", seed, 0, set())
    records = _regions(media, n)
    (root / "train" / "vision_regions.json").write_text(json.dumps(records, ensure_ascii=False, indent=1) + "\n",
                                                         encoding="utf-8")
    files = {k: v for k, v in manifest["files"].items() if not k.startswith("train/media/regions/")}
    files.update({str(p.relative_to(root)): _sha(p) for p in sorted((root / "train" / "media" / "regions").rglob("*"))
                  if p.is_file()})
    files["train/vision_regions.json"] = _sha(root / "train" / "vision_regions.json")
    files = dict(sorted(files.items()))
    listing = "".join(f"{h}  {p}\n" for p, h in files.items())
    manifest["sizes"]["vision_regions"] = n
    manifest["counts"].update({"train/vision_regions": n, "train/media/region": n})
    manifest.update(files=files, files_sha256=hashlib.sha256(listing.encode()).hexdigest())
    path.write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return {"out_dir": str(root), "vision_regions": n}
