"""s45h: a module's tensors halfway between a run's start and its end (weight-space interpolation, as WiSE-FT):
    python recipes/mini/s45/half.py START END OUT [PREFIX]
START, END: assembled model folders (s45: runs/s43/train/final and s45's train/final); OUT gets model.safetensors with
the PREFIX* tensors (default "vision_projector.") = 0.5 x START's + 0.5 x END's, in float32."""
import sys
from pathlib import Path

from vita.checkpoint.io import TensorReader, write_tensors

start, end = TensorReader.from_dir(sys.argv[1]), TensorReader.from_dir(sys.argv[2])
out, prefix = Path(sys.argv[3]), sys.argv[4] if len(sys.argv) > 4 else "vision_projector."
names = sorted(n for n in start if n.startswith(prefix))
if not names or names != sorted(n for n in end if n.startswith(prefix)):
    sys.exit(f"{sys.argv[1]} and {sys.argv[2]}: their {prefix}* tensors differ or are missing")
out.mkdir(parents=True, exist_ok=True)
write_tensors(out, {n: (0.5 * start[n].float() + 0.5 * end[n].float()).contiguous() for n in names})
print(f"{out}: {len(names)} {prefix}* tensors halfway")
