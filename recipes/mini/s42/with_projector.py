"""A parts folder with another model's vision projector: PARTS's tensors and config, the vision_projector.* tensors of
MODEL (an assembled folder, e.g. a projector-only run's final/), in PARTS's dtype; the manifest's "run" records both.
    python recipes/mini/s42/with_projector.py PARTS MODEL OUT"""
import json
import sys
from pathlib import Path

from vita.checkpoint.io import TensorReader, write_tensors
from vita.checkpoint.mini import PARTS_FILE, PARTS_FORMAT, read_parts, sha256_file

parts, model, out = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
_, tensors, _ = read_parts(parts, check_base=False)
reader = TensorReader.from_dir(model)
names = sorted(n for n in tensors if n.startswith("vision_projector."))
if not names or set(names) != {n for n in reader if n.startswith("vision_projector.")}:
    sys.exit(f"{model}: its vision projector's tensors differ from {parts}'s")
for n in names:
    new = reader[n]
    if new.shape != tensors[n].shape:
        sys.exit(f"{model}: {n} has shape {tuple(new.shape)}, {parts} {tuple(tensors[n].shape)}")
    tensors[n] = new.to(tensors[n].dtype).contiguous()
out.mkdir(parents=True)
write_tensors(out, tensors, metadata={"format": PARTS_FORMAT})
manifest = json.loads((parts / "parts.json").read_text())
run = {"parts": str(parts), "sha256": manifest["files"][PARTS_FILE], **manifest.get("run", {})}
manifest["files"] = {PARTS_FILE: sha256_file(out / PARTS_FILE)}
manifest["run"] = {"projector_from": str(model), "names": len(names), "on": run}
(out / "parts.json").write_text(json.dumps(manifest, indent=1) + "\n")
print(f"{out}: {len(names)} projector tensors from {model}")
