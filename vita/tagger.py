"""What a picture looks like to an ImageNet classifier: EfficientNet-Lite0's own head, beside vita-mini's tower.

vita-mini's projector was aligned on rendered emoji, shapes and a dozen package photos: it names what it was shown
and little else. The packaged EfficientNet-Lite0 (`vita.checkpoint.efficientnet`) was trained on ImageNet's 1.3 M
photos of 1,000 classes, and its classifier ships in the same file. Like the picture reader (`vita.media.ocr`) and
Whisper's decoder (`vita.models.transcriber`), it runs beside the tower, and its answer joins the prompt as words
(`TaggerConfig`, `vita.processor`):

    picture -> stretched to image_size x image_size (one tile) -> the tower's feature map [1280, g, g] -> mean
    -> the classifier [1000] -> softmax -> the most likely class, if >= min_confidence -> ' It looks like: ladybug.'

A head fitted on vita-mini's own data can take the ImageNet classifier's place (`TaggerConfig.head`): the 404 emoji
concepts, a softmax regression on the same pooled features of training-split renders (`vita.training.tagger_head`),
stored as a safetensors file (`save_head`: weight [K, 1280], bias [K], the labels and the picture size in its metadata).

Class names are the first WordNet lemma of each ImageNet-1k synset, in the classifier's order (sorted synset ids),
read from the data files of the installed PyPI `timm` (Apache-2.0; installed `--no-deps`, never imported: it needs
torchvision). Measured 2026-12-06 on the 12 nature photos of Debian `mate-backgrounds` (not used anywhere else):
"ladybug" 0.75 for a ladybird, "daisy" 0.67 and 0.32 for two flowers, "bubble" 0.53 for water drops; vita-mini's
rendered shapes mostly "envelope" at 0.2-0.4, below the default threshold.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import torch
from PIL import Image

from vita.config import TaggerConfig
from vita.errors import CheckpointError
from vita.media.image import preprocess_image
from vita.media.picture_memo import PictureMemo
from vita.models.efficientnet import HEAD as FEATURES  # the pooled feature width, 1280

__all__ = ["HEADS", "ImageTagger", "imagenet_labels", "load_head", "save_head", "tagger_text"]

TIMM = "timm==1.0.22"
SYNSETS, LEMMAS = "data/_info/imagenet_synsets.txt", "data/_info/imagenet_synset_to_lemma.txt"
HEADS = {"mini-concepts": Path(__file__).resolve().parent / "assets" / "mini" / "concepts.safetensors"}


@cache
def imagenet_labels() -> tuple[str, ...]:
    """The 1,000 ImageNet-1k class names in the classifier's order ("tench", ..., "ladybug", ...)."""
    from vita.presets import package_file

    synsets = package_file("timm", SYNSETS, TIMM, what="ImageNet class names").read_text().split()
    lemmas = {}
    for line in package_file("timm", LEMMAS, TIMM, what="ImageNet class names").read_text().splitlines():
        wnid, _, names = line.partition("\t")
        lemmas[wnid] = names.split(",")[0].strip()
    if len(synsets) != 1000 or any(w not in lemmas for w in synsets):
        raise CheckpointError(f"ImageNet class names: {len(synsets)} synsets, or some without a name, in {TIMM}")
    return tuple(lemmas[w] for w in synsets)


class ImageTagger:
    """`tagger(picture, k)` -> the k most likely ImageNet classes [(name, probability)], most likely first."""

    def __init__(self, config: TaggerConfig | None = None) -> None:
        from vita.checkpoint.efficientnet import efficientnet_config, load_efficientnet, read_efficientnet_classifier

        self.config = config or TaggerConfig()
        self.vision = efficientnet_config(self.config.image_size)
        self.tower = load_efficientnet(self.config.image_size)
        if self.config.head == "imagenet":
            self.weight, self.bias = read_efficientnet_classifier()  # [1000, 1280], [1000]
            self.labels = imagenet_labels()
            return
        self.weight, self.bias, self.labels, size = load_head(HEADS.get(self.config.head, self.config.head))
        if size != self.config.image_size:
            raise CheckpointError(f"tagger head {self.config.head}: fitted at {size} px, the tagger looks at "
                                  f"{self.config.image_size} px (set tagger.image_size to {size})")

    @torch.no_grad()
    def pooled(self, picture: Image.Image) -> torch.Tensor:
        """The tower's feature map of the picture (one stretched tile), averaged: [1280]."""
        tile = preprocess_image(picture.convert("RGB"), self.vision)[:1]  # [1, 3, S, S]
        return self.tower.feature_map(tile).mean((2, 3))[0]

    @torch.no_grad()
    def __call__(self, picture: Image.Image, k: int = 1) -> list[tuple[str, float]]:
        probs = torch.addmv(self.bias, self.weight, self.pooled(picture)).softmax(-1)  # [K]
        top = probs.topk(k)
        return [(self.labels[int(i)], float(p)) for p, i in zip(top.values, top.indices, strict=True)]


def save_head(path: str | Path, weight: torch.Tensor, bias: torch.Tensor, labels: list[str] | tuple[str, ...],
              image_size: int) -> Path:
    """Write a tagger head: weight [K, 1280], bias [K], K labels, the picture size its features were taken at."""
    from safetensors.torch import save_file

    if tuple(weight.shape) != (len(labels), FEATURES) or tuple(bias.shape) != (len(labels),):
        raise ValueError(f"head of {len(labels)} labels: weight {tuple(weight.shape)}, bias {tuple(bias.shape)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"weight": weight.float().contiguous(), "bias": bias.float().contiguous()}, str(path),
              metadata={"labels": json.dumps(list(labels)), "image_size": str(image_size)})
    return path


def load_head(path: str | Path) -> tuple[torch.Tensor, torch.Tensor, tuple[str, ...], int]:
    """(weight [K, 1280], bias [K], labels, image size) of a head file; CheckpointError naming what is wrong."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"tagger head {path}: no such file (fit one: python -m vita.cli.tools tagger_head)")
    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        labels, size = tuple(json.loads(meta["labels"])), int(meta["image_size"])
    except (SafetensorError, KeyError, ValueError, OSError) as exc:
        raise CheckpointError(f"tagger head {path}: not a head file ({exc})") from exc
    weight, bias = tensors.get("weight"), tensors.get("bias")
    if weight is None or bias is None or tuple(weight.shape) != (len(labels), FEATURES) \
            or tuple(bias.shape) != (len(labels),) or not all(isinstance(x, str) and x for x in labels):
        raise CheckpointError(f"tagger head {path}: expected weight [{len(labels)}, {FEATURES}], bias "
                              f"[{len(labels)}] and {len(labels)} non-empty labels")
    return weight.float(), bias.float(), labels, size


@cache
def _shared_tagger(config: TaggerConfig) -> ImageTagger:
    return ImageTagger(config)


_TAGGED = PictureMemo(keep=256)


def tagger_text(picture: Image.Image, config: TaggerConfig) -> str:
    """The prompt text the picture's most likely ImageNet class adds (`config.template`), or "" below
    `config.min_confidence`. One tagger per configuration and process; the last 256 pictures' tags are kept."""

    def tag(pic: Image.Image) -> str:
        label, p = _shared_tagger(config)(pic)[0]
        return config.template.format(label=label) if p >= config.min_confidence else ""

    return _TAGGED.get(picture, config, tag)
