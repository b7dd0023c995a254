"""VLMEvalKit's benchmark TSVs (MMBench, MMStar, AI2D, MME, HallusionBench, OCRBench): reading rows and images.

The format (open-compass/VLMEvalKit, `vlmeval/dataset/image_base.py`): a tab-separated file with a header row,
one question per row, an `index` column, and an `image` column holding the image base64-encoded; to save space
an `image` cell of at most 64 characters is instead the `index` of another row whose image it shares (MMBench's
circular copies, MME's second question per image). A cell may also hold a Python list literal of several
base64 images. Benchmarks add their own columns (question, hint, A..D, answer, category, l2-category, ...).
Rows without an image cell may give `image_path` (relative to the TSV) instead.
"""

from __future__ import annotations

import ast
import csv
import sys
from pathlib import Path

from vita.errors import EvalError
from vita.eval.bench.core import B64Image, MediaRef

csv.field_size_limit(sys.maxsize)  # image cells are megabytes


def read_tsv(path: Path, required: tuple[str, ...]) -> list[dict[str, str]]:
    """The rows of a VLMEvalKit TSV as dicts (empty cells as ""), checking the `required` columns exist."""
    if not path.is_file():
        raise EvalError(f"{path}: TSV file not found")
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_MINIMAL)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            have = ", ".join(reader.fieldnames or [])
            raise EvalError(f"{path}: missing column(s) {', '.join(missing)} (has {have})")
        rows = [{k: (v or "") for k, v in r.items() if k is not None} for r in reader]
    if not rows:
        raise EvalError(f"{path}: no rows")
    return rows


def _cells(cell: str) -> list[str]:
    cell = cell.strip()
    if cell.startswith("[") and cell.endswith("]"):
        try:
            value = ast.literal_eval(cell)
        except (ValueError, SyntaxError):
            return [cell]
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
    return [cell] if cell else []


def row_images(path: Path, rows: list[dict[str, str]]) -> dict[str, list[MediaRef]]:
    """{index: images} with references (cells of <= 64 chars naming another row's index) resolved."""
    by_index = {r["index"]: r.get("image", "") for r in rows}
    out: dict[str, list[MediaRef]] = {}
    for r in rows:
        idx, cell = r["index"], r.get("image", "").strip()
        if cell and len(cell) <= 64:
            target = by_index.get(cell, "")
            if len(target.strip()) <= 64:
                raise EvalError(f"{path}: index {idx}: image cell {cell!r} names no row with an image")
            cell = target.strip()
        if cell:
            out[idx] = [B64Image(c, f"{path.name} index {idx}") for c in _cells(cell)]
        elif r.get("image_path"):
            out[idx] = [path.parent / p for p in _cells(r["image_path"])]
        else:
            out[idx] = []
    return out
