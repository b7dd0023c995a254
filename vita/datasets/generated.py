"""Data source paths that name a generated dataset instead of a file: `SCHEME:PART`, made concrete once per run.

    tiny:NAME   a part of the tiny CI dataset (`vita.datasets.tiny.write_tiny_dataset`, seed 0): vision_align,
                audio_align, instruct; written under OUT/tiny_data

    write_generated(paths, out)    one process, before the others read: write every dataset the paths name, once
                                   (OUT/<scheme>_data/.parts lists its parts; a finished dataset is not rewritten)
    resolve_generated(paths, out)  every process: the paths with each `SCHEME:PART` replaced by its file
Any other path is a file and passes through unchanged, so a recipe without generated data never touches OUT here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from vita.errors import TrainingError


def _write_tiny(root: Path) -> dict[str, Path]:
    from vita.datasets.tiny import write_tiny_dataset

    return write_tiny_dataset(root, seed=0)


# scheme -> (what the error messages call it, its writer: folder -> {part: file})
SCHEMES: dict[str, tuple[str, Callable[[Path], dict[str, Path]]]] = {
    "tiny": ("the tiny dataset", _write_tiny),
}


def _scheme(path: str) -> str | None:
    scheme, sep, _ = path.partition(":")
    return scheme if sep and scheme in SCHEMES else None


def _root(out: Path, scheme: str) -> Path:
    return out / f"{scheme}_data"


def write_generated(paths: Iterable[str], out: Path) -> None:
    """Write, under `out`, each generated dataset that `paths` name (once: a folder with its `.parts` is kept)."""
    for scheme in sorted({s for p in paths if (s := _scheme(p))}):
        root = _root(out, scheme)
        if (root / ".parts").is_file():
            continue
        parts = SCHEMES[scheme][1](root)
        (root / ".parts").write_text("\n".join(f"{k}\t{v}" for k, v in parts.items()) + "\n")


def resolve_generated(paths: Iterable[str], out: Path) -> list[str]:
    """`paths` with every `SCHEME:PART` replaced by the file `write_generated` wrote for it under `out`."""
    listed: dict[str, dict[str, str]] = {}
    resolved = []
    for path in paths:
        scheme = _scheme(path)
        if scheme is not None:
            if scheme not in listed:
                text = (_root(out, scheme) / ".parts").read_text()
                listed[scheme] = dict(line.split("\t", 1) for line in text.splitlines() if line)
            parts, name = listed[scheme], path[len(scheme) + 1:]
            if name not in parts:
                raise TrainingError(f"data source {path!r}: {SCHEMES[scheme][0]} has no part {name!r} "
                                    f"(parts: {', '.join(parts)})")
            path = str(parts[name])
        resolved.append(path)
    return resolved
