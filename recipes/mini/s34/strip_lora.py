"""t10's pre-stage-3 model: a parts folder without the LLM's LoRA, with the skeleton's picture reader and typed_state.
usage: python strip_lora.py T10_PARTS SKELETON OUT"""
import hashlib
import json
import sys
from pathlib import Path

from safetensors.torch import load_file, save_file

src, skeleton, out = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
out.mkdir(parents=True, exist_ok=True)
t = load_file(src / "model.safetensors")
kept = {k: v for k, v in t.items() if ".lora_" not in k}
print(f"dropped {len(t) - len(kept)} LoRA tensors, kept {len(kept)}")
save_file(kept, out / "model.safetensors")
m = json.loads((src / "parts.json").read_text())
m["config"]["reader"] = json.loads((skeleton / "config.json").read_text())["reader"]
m["config"]["typed_state"] = True
m["config"]["loop_window"] = 24
m["files"] = {"model.safetensors": hashlib.sha256((out / "model.safetensors").read_bytes()).hexdigest()}
m["run"] = {"note": "t10 parts minus LoRA"}
(out / "parts.json").write_text(json.dumps(m, indent=1))
