"""`vita download vita-1.0|vita-1.5 [--dir D]`: fetch the official release from the Hugging Face hub, assembled.

The official checkpoints come in pieces from several repositories, and the official code wants them side by side
under the folder names its `config.json` uses (`../shared/reference/vita1.md` §6). `RELEASES` says, per model,
which repository, which revision, which files (patterns) and which sub-folder of D each piece goes to, so that
our loader finds everything from the main folder alone (`vita.checkpoint.vita1` / `vita15` look for the named
folders inside and next to the checkpoint):

    vita-1.0 → D/VITA_ckpt/                       VITA-MLLM/VITA: config, 20 safetensors shards, tokenizer
               D/audio-encoder-2wh_zh_en_…/       VITA-MLLM/VITA: train.yaml, global_cmvn (weights are in the shards)
               D/InternViT-300M-448px/            OpenGVLab/InternViT-300M-448px: config, preprocessor, weights
    vita-1.5 → D/VITA-1.5/                        VITA-MLLM/VITA-1.5: config, 4 shards, tokenizer, vita_tts_ckpt/
               D/VITA-1.5_AudioEnc/               VITA-MLLM/VITA-1.5_AudioEnc: train.yaml, global_cmvn
               D/InternViT-300M-448px/            OpenGVLab/InternViT-300M-448px: config + preprocessor only (1.5
                                                  keeps its own copy of the tower in the shards)

Left out on purpose: trainer leftovers (optimizer / rng states, zero_to_fp32.py, scheduler.pt) and the audio
encoders' `final.pt` (both releases carry the encoder + adapter weights in their shards; our loader reads
`final.pt` only when a checkpoint has none).

How a download goes (`download`): list each repository once (`model_info(files_metadata=True)`: the commit, and
every file's size, LFS sha256 and git blob id), pin that commit in the manifest `D/vita-download.json`, then
fetch the files one by one (`vita.checkpoint.download_http.fetch`: resumed with HTTP Range from a partial file
kept under `D/.vita-download/`, verified against the hub's sha256 / git sha1). Each verified file is recorded
with its size and mtime; when all are, the manifest says `complete` and later runs check the files against it
without any network call (`--verify` re-hashes them all). A file whose bytes changed is named and fetched again.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from vita.errors import CheckpointError

MANIFEST = "vita-download.json"
PARTIAL_DIR = ".vita-download"
LISTING_TIMEOUT = 30.0  # seconds per request (huggingface_hub waits forever by default)


@dataclass(frozen=True)
class Piece:
    """Files of one hub repository that go to one sub-folder of the download directory."""

    repo: str
    folder: str  # "" = the download directory itself; repository paths are kept below it
    include: tuple[str, ...]  # each must match at least one file; `*` stays within a folder, `**` crosses them
    role: str  # what it is, for messages
    revision: str = "main"  # the commit it resolves to is pinned in the manifest
    optional: tuple[str, ...] = ()  # taken when present


@dataclass(frozen=True)
class Release:
    name: str
    model: str  # the folder (relative to the download directory) that `vita generate --model` takes
    pieces: tuple[Piece, ...]


INTERNVIT = "OpenGVLab/InternViT-300M-448px"
RELEASES: dict[str, Release] = {
    "vita-1.0": Release("vita-1.0", "VITA_ckpt", (
        Piece("VITA-MLLM/VITA", "", ("VITA_ckpt/config.json", "VITA_ckpt/*.safetensors", "VITA_ckpt/tokenizer.json"),
              "the VITA-1.0 checkpoint (Mixtral-8x7B)",
              optional=("VITA_ckpt/tokenizer*", "VITA_ckpt/*.json")),
        Piece("VITA-MLLM/VITA", "", ("audio-encoder-*/train.yaml", "audio-encoder-*/global_cmvn"),
              "the audio encoder's config and CMVN statistics"),
        Piece(INTERNVIT, "InternViT-300M-448px", ("config.json", "preprocessor_config.json", "*.safetensors"),
              "the InternViT-300M-448px vision tower"),
    )),
    "vita-1.5": Release("vita-1.5", "VITA-1.5", (
        Piece("VITA-MLLM/VITA-1.5", "VITA-1.5", ("config.json", "*.safetensors", "tokenizer.json", "vocab.json",
                                                 "merges.txt", "vita_tts_ckpt/decoder/*", "vita_tts_ckpt/codec/*"),
              "the VITA-1.5 checkpoint (Qwen2.5-7B) and its speech decoder",
              optional=("tokenizer*", "*.json")),
        Piece("VITA-MLLM/VITA-1.5_AudioEnc", "VITA-1.5_AudioEnc", ("train.yaml", "global_cmvn"),
              "the audio encoder's config and CMVN statistics"),
        Piece(INTERNVIT, "InternViT-300M-448px", ("config.json", "preprocessor_config.json"),
              "the InternViT-300M-448px config and preprocessor"),
    )),
}
# never taken, even when a pattern matches (trainer leftovers next to the weights)
SKIP = ("*trainer_state.json", "*training_args*", "*rng_state*", "*optimizer*", "*scheduler*", "*zero_to_fp32*")


def _require_hub() -> None:
    try:
        import huggingface_hub
    except ImportError:
        huggingface_hub = None
    if huggingface_hub is None or int(huggingface_hub.__version__.split(".")[0]) < 2:
        found = "not installed" if huggingface_hub is None else f"found {huggingface_hub.__version__}"
        raise CheckpointError(f"vita download needs huggingface_hub 2.x ({found}): pip install 'vita[download]'")


def default_dir(name: str) -> Path:
    """`$VITA_CACHE_DIR/models/<name>`, else `~/.cache/vita/models/<name>`."""
    return Path(os.environ.get("VITA_CACHE_DIR") or Path.home() / ".cache" / "vita") / "models" / name


def release(name: str) -> Release:
    try:
        return RELEASES[name]
    except KeyError:
        raise CheckpointError(f"unknown model {name!r}; downloadable: {', '.join(RELEASES)}") from None


@cache
def _pattern(glob: str) -> re.Pattern[str]:
    out = ""
    for part in re.split(r"(\*\*|\*|\?)", glob):
        out += {"**": ".*", "*": "[^/]*", "?": "[^/]"}.get(part, re.escape(part))
    return re.compile(out)


def matches(path: str, glob: str) -> bool:
    return _pattern(glob).fullmatch(path) is not None


# -- the manifest ---------------------------------------------------------------------------------------------


def read_manifest(root: Path, name: str) -> dict[str, Any] | None:
    path = root / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: unreadable download manifest ({exc}); delete it to start over") from None
    if manifest.get("release") != name:
        raise CheckpointError(f"{root} holds a download of {manifest.get('release')!r}, not {name!r}; "
                              "choose another --dir")
    return manifest


def write_manifest(root: Path, manifest: dict[str, Any]) -> None:
    tmp = root / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1) + "\n")
    tmp.replace(root / MANIFEST)


def downloaded(name: str, directory: str | Path | None = None) -> Path | None:
    """The model folder of a complete download of `name` (no network, files not re-hashed), else None."""
    root = Path(directory).expanduser() if directory is not None else default_dir(name)
    manifest = read_manifest(root, name) if root.is_dir() else None
    if manifest is None or not manifest.get("complete"):
        return None
    return None if any(_changed(root, e) for e in manifest["files"]) else root / manifest["model"]


def _changed(root: Path, entry: dict[str, Any]) -> bool:
    """True unless the file is there with the size and mtime recorded when it was verified."""
    path = root / entry["local"]
    try:
        st = path.stat()
    except OSError:
        return True
    return entry.get("verified") != [st.st_size, st.st_mtime_ns]


# -- listing ----------------------------------------------------------------------------------------------------


def list_files(rel: Release, endpoint: str, token: str | bool | None) -> dict[str, Any]:
    """A fresh manifest: each piece's commit and the files it contributes, from the hub's metadata."""
    from huggingface_hub import HfApi

    from vita.checkpoint.download_http import DownloadError, hub_errors, online

    api = HfApi(endpoint=endpoint, token=token)
    pieces, files, infos = [], {}, {}
    with online():
        for piece in rel.pieces:
            key = (piece.repo, piece.revision)
            if key not in infos:
                with hub_errors(endpoint, f"{piece.repo}@{piece.revision}"):
                    infos[key] = api.model_info(piece.repo, revision=piece.revision, files_metadata=True,
                                                  timeout=LISTING_TIMEOUT)
            info = infos[key]
            siblings = info.siblings or []
            chosen = {}
            for glob in (*piece.include, *piece.optional):
                hits = [s for s in siblings if matches(s.rfilename, glob)
                        and not any(matches(s.rfilename.rpartition("/")[2], skip) for skip in SKIP)]
                if not hits and glob in piece.include:
                    raise DownloadError(f"{piece.repo}@{info.sha[:12]}: no file matches {glob!r} on {endpoint} "
                                        f"({piece.role})")
                chosen.update({s.rfilename: s for s in hits})
            pieces.append({"repo": piece.repo, "revision": piece.revision, "commit": info.sha,
                           "folder": piece.folder})
            for path, s in sorted(chosen.items()):
                if s.size is None:
                    raise DownloadError(f"{piece.repo}/{path}: {endpoint} lists no size for it")
                local = f"{piece.folder}/{path}" if piece.folder else path
                files[local] = {"local": local, "repo": piece.repo, "commit": info.sha, "path": path,
                                "size": s.size, "sha256": s.lfs.sha256 if s.lfs else None, "git_sha1": s.blob_id}
    return {"format": 1, "release": rel.name, "model": rel.model, "endpoint": endpoint, "complete": False,
            "pieces": pieces, "files": list(files.values())}


# -- download ---------------------------------------------------------------------------------------------------


def download(
    name: str,
    directory: str | Path | None = None,
    *,
    endpoint: str | None = None,
    token: str | bool | None = None,
    verify: bool = False,
    retries: int = 3,
    retry_wait: float = 1.0,
    log: Callable[[str], None] | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> Path:
    """Download (or finish, or check) release `name` into `directory`; returns the folder to load.

    A complete download is checked against its manifest without any network call: files recorded as verified
    with an unchanged size and mtime are trusted, others are re-hashed (`verify=True`: all are), and any that
    changed is fetched again. `endpoint` defaults to `$HF_ENDPOINT` (read now, not at import), then huggingface.co.
    """
    from vita.checkpoint.download_http import checksum_problem

    rel = release(name)
    _require_hub()
    log = log or (lambda msg: print(msg, file=sys.stderr))
    root = Path(directory).expanduser() if directory is not None else default_dir(name)
    if root.exists() and not root.is_dir():
        raise CheckpointError(f"{root}: not a directory")
    manifest = read_manifest(root, name)
    if manifest is not None and manifest.get("endpoint") and endpoint is None:
        endpoint = manifest["endpoint"]  # finish where it started (a mirror stays the mirror)
    endpoint = (endpoint or os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")
    if manifest is None:
        manifest = list_files(rel, endpoint, token)
        root.mkdir(parents=True, exist_ok=True)  # only once the hub answered: a failed start leaves nothing
        write_manifest(root, manifest)

    todo = []
    for entry in manifest["files"]:
        path = root / entry["local"]
        if path.is_file() and not verify and not _changed(root, entry):
            continue
        if path.is_file():
            problem = checksum_problem(path, _remote(entry))
            if problem is None:
                _mark_verified(root, entry)
                continue
            log(f"{entry['local']}: corrupted ({problem}); fetching it again")
            path.unlink()
        entry.pop("verified", None)
        todo.append(entry)
    if not todo:
        manifest["complete"] = True
        write_manifest(root, manifest)
        return root / rel.model

    manifest["complete"] = False
    write_manifest(root, manifest)
    _check_space(root, todo)
    total = sum(e["size"] for e in todo)
    log(f"{name}: fetching {len(todo)} file(s), {human_size(total)}, from {endpoint} into {root}")
    for entry in todo:
        _fetch_one(root, entry, endpoint, token, retries, retry_wait, log, progress)
        write_manifest(root, manifest)
    manifest["complete"] = True
    write_manifest(root, manifest)
    shutil.rmtree(root / PARTIAL_DIR, ignore_errors=True)
    return root / rel.model


def _remote(entry: dict[str, Any]):
    from vita.checkpoint.download_http import RemoteFile

    return RemoteFile(entry["repo"], entry["path"], entry["size"], entry["sha256"], entry["git_sha1"])


def _mark_verified(root: Path, entry: dict[str, Any]) -> None:
    st = (root / entry["local"]).stat()
    entry["verified"] = [st.st_size, st.st_mtime_ns]


def _partial(root: Path, entry: dict[str, Any]) -> Path:
    """Where the bytes of a file in flight are kept, keyed by its hash so another version is never appended to."""
    tag = (entry["sha256"] or entry["git_sha1"] or str(entry["size"]))[:16]
    return root / PARTIAL_DIR / f"{entry['local']}.{tag}.part"


def _fetch_one(root, entry, endpoint, token, retries, retry_wait, log, progress) -> None:
    from huggingface_hub import hf_hub_url
    from huggingface_hub.utils import build_hf_headers

    from vita.checkpoint.download_http import fetch, hub_errors, online

    remote = _remote(entry)
    url = hf_hub_url(remote.repo, remote.path, revision=entry["commit"], endpoint=endpoint)
    partial = _partial(root, entry)
    have = partial.stat().st_size if partial.exists() else 0
    log(f"  {entry['local']}  {human_size(remote.size)}" + (f"  (resuming at {human_size(have)})" if have else ""))
    report = (lambda done, size: progress(entry["local"], done, size)) if progress else None
    with online(), hub_errors(endpoint, remote.name):
        fetch(url, build_hf_headers(token=token), remote, partial, root / entry["local"], retries=retries,
              retry_wait=retry_wait, log=log, progress=report)
    _mark_verified(root, entry)


def _check_space(root: Path, todo: Sequence[dict[str, Any]]) -> None:
    need = sum(e["size"] - (_partial(root, e).stat().st_size if _partial(root, e).exists() else 0) for e in todo)
    free = shutil.disk_usage(root).free
    if need > free:
        raise CheckpointError(f"{root}: not enough disk space: {human_size(need)} still to fetch, "
                              f"{human_size(free)} free")


def human_size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1000
    return f"{n} B"


# -- command line -----------------------------------------------------------------------------------------------
