"""Copy a reference fixture set under other names, the way a differently named recording would have them.

    python tests/rename_fixture.py ../shared/fixtures/vita1_tiny /tmp/vita1_renamed
    VITA_REFERENCE_FIXTURES=/tmp/vita1_renamed python -m pytest -m reference tests

Renamed: the InternViT and audio-encoder folders (and `mm_vision_tower` / `mm_audio_encoder` in
`checkpoint/config.json`, and its copy in `cases/index.json -> configs.main`), the `inputs/` folder and every input
file (and every path to them in `cases/index.json`), and the fixture's name. The reference tests must pass on the
copy unchanged: they take names from the set's own `config.json` / `cases/index.json`, never from ours
(`tests/test_fixture_generic.py` runs a check of this on every run; the full proof is the command above).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any


def rename_fixture(src: str | Path, dst: str | Path, suffix: str = "C") -> dict[str, str]:
    """Write the renamed copy at `dst` (replaced if present); returns {old relative path: new relative path}."""
    src, dst = Path(src), Path(dst)
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst)
    config_path = dst / "checkpoint" / "config.json"
    config = json.loads(config_path.read_text())
    folders = {config["mm_vision_tower"]: f"vision-tower-{suffix}", config["mm_audio_encoder"]: f"speech-enc-{suffix}"}
    for old, new in folders.items():
        (dst / "checkpoint" / old).rename(dst / "checkpoint" / new)
    config["mm_vision_tower"] = folders[config["mm_vision_tower"]]
    config["mm_audio_encoder"] = folders[config["mm_audio_encoder"]]
    config_path.write_text(json.dumps(config, indent=2) + "\n")
    index_path = dst / "cases" / "index.json"
    index = json.loads(index_path.read_text())
    old_inputs = Path(index["images"][0]["file"]).parent.as_posix()  # "inputs" in the recorded sets
    inputs = f"media-{suffix}"
    (dst / old_inputs).rename(dst / inputs)
    files: dict[str, str] = {}
    for f in sorted((dst / inputs).iterdir()):
        new = f"{suffix.lower()}-{f.name.replace('_', '-')}"
        f.rename(f.with_name(new))
        files[f"{old_inputs}/{f.name}"] = f"{inputs}/{new}"

    def fix(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: fix(v) for k, v in value.items()}
        if isinstance(value, list):
            return [fix(v) for v in value]
        if isinstance(value, str):
            for old, new in files.items():
                value = value.replace(old, new)
            return folders.get(value, value)
        return value

    index = fix(index)
    index["fixture"] = f"{index.get('fixture', 'fixture')}-renamed-{suffix}"
    index["configs"]["main"] = config
    index_path.write_text(json.dumps(index, indent=1) + "\n")
    return {**folders, **files}


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    for old, new in rename_fixture(sys.argv[1], sys.argv[2]).items():
        print(f"{old} -> {new}")
