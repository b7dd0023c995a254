"""A parts folder with another model's projector: PARTS's tensors and config, the PREFIX* tensors of MODEL (an assembled
folder, e.g. a projector-only run's final/), in PARTS's dtype; the manifest's "run" records both. PREFIX
"vision_projector." (default, s42) replaces PARTS's; "video_projector." (s43) adds MODEL's video projector, its config
entry included, to parts that have none.
    python recipes/mini/s42/with_projector.py PARTS MODEL OUT [PREFIX]"""
import json
import sys
from pathlib import Path

from vita.checkpoint.io import TensorReader, write_tensors
from vita.checkpoint.mini import PARTS_FILE, PARTS_FORMAT, read_parts, sha256_file

parts, model, out = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
prefix = sys.argv[4] if len(sys.argv) > 4 else "vision_projector."
_, tensors, _ = read_parts(parts, check_base=False)
reader = TensorReader.from_dir(model)
names = sorted(n for n in reader if n.startswith(prefix))
have = sorted(n for n in tensors if n.startswith(prefix))
if not names or (have and have != names):
    sys.exit(f"{model}: its {prefix}* tensors do not match {parts}'s")
dtype = next(iter(tensors.values())).dtype
for n in names:
    new = reader[n]
    if n in tensors and new.shape != tensors[n].shape:
        sys.exit(f"{model}: {n} has shape {tuple(new.shape)}, {parts} {tuple(tensors[n].shape)}")
    tensors[n] = new.to(tensors[n].dtype if n in tensors else dtype).contiguous()
out.mkdir(parents=True)
write_tensors(out, tensors, metadata={"format": PARTS_FORMAT})
manifest = json.loads((parts / "parts.json").read_text())
if not have:  # a new module: its config entry from MODEL
    key = prefix.rstrip(".")
    manifest["config"][key] = json.loads((model / "config.json").read_text())[key]
run = {"parts": str(parts), "sha256": manifest["files"][PARTS_FILE], **manifest.get("run", {})}
manifest["files"] = {PARTS_FILE: sha256_file(out / PARTS_FILE)}
manifest["run"] = {"projector_from": str(model), "names": len(names), "on": run}
(out / "parts.json").write_text(json.dumps(manifest, indent=1) + "\n")
print(f"{out}: {len(names)} {prefix}* tensors from {model}")
