#!/usr/bin/env bash
# The GPU test set (tests/gpu, `pytest -m gpu`) in one go, on a machine with CUDA and a CUDA build of torch already
# installed; nothing else is assumed. It checks torch and the GPU, installs the few packages that are missing (never
# torch: pinned to the installed one), runs the set and prints the figures (one JSON line per measuring test).
#
#   bash tests/gpu/run_on_device.sh               # on the GPU machine, from anywhere; PYTHON=... picks the python
#   bash tests/gpu/run_on_device.sh wheels DIR    # on a machine with PyPI: the wheels an offline GPU machine needs
#                                                 # (PYVER=3.12 for another python); there: VITA_WHEELS=DIR bash ...
#
# Figures also go to $OUT/gpu_figures.jsonl ($OUT if set, else the repository root). Exit status: pytest's.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python3}
# the run's packages (pyproject dependencies the tests import, and the test tools), by import name = pip name
NEEDED="numpy:numpy safetensors:safetensors tokenizers:tokenizers PIL:pillow av:av soundfile:soundfile yaml:pyyaml
gguf:gguf pytest:pytest transformers:transformers"

if [ "${1:-}" = wheels ]; then
  [ -n "${2:-}" ] || { echo "usage: $0 wheels DIR" >&2; exit 2; }
  pips=$(for pair in $NEEDED; do printf '%s ' "${pair#*:}"; done)
  # shellcheck disable=SC2086
  $PY -m pip download -q -d "$2" --only-binary=:all: ${PYVER:+--python-version "$PYVER"} $pips
  du -sh "$2"
  exit 0
fi

$PY - <<'EOF'
import sys

import torch

if not torch.cuda.is_available():
    sys.exit(f"torch {torch.__version__} (CUDA {torch.version.cuda}) finds no GPU: this script needs CUDA")
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.device_count()} GPU(s): "
      f"{torch.cuda.get_device_name(0)}, python {sys.version.split()[0]}")
EOF

missing=""
for pair in $NEEDED; do
  $PY -c "import ${pair%%:*}" 2>/dev/null || missing="$missing ${pair#*:}"
done
if [ -n "$missing" ]; then
  echo "installing:$missing"
  constraints=$(mktemp)
  $PY -c 'import torch; print(f"torch=={torch.__version__}")' > "$constraints"
  # shellcheck disable=SC2086
  $PY -m pip install -q -c "$constraints" ${VITA_WHEELS:+--no-index --find-links "$VITA_WHEELS"} $missing
fi

export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
figures="${OUT:-$PWD}/gpu_figures.jsonl"
rm -f "$figures"
status=0
VITA_GPU_FIGURES="$figures" $PY -m pytest -m gpu tests/gpu -q -rA -p no:cacheprovider || status=$?
echo
echo "== figures ($figures)"
cat "$figures" 2>/dev/null || echo "(none written)"
exit $status
