"""What a picture looks like to an ImageNet classifier: EfficientNet-Lite0's own head, beside vita-mini's tower.

vita-mini's projector was aligned on rendered emoji, shapes and a dozen package photos: it names what it was shown
and little else. The packaged EfficientNet-Lite0 (`vita.checkpoint.efficientnet`) was trained on ImageNet's 1.3 M
photos of 1,000 classes, and its classifier ships in the same file. Like the picture reader (`vita.media.ocr`) and
Whisper's decoder (`vita.models.transcriber`), it runs beside the tower, and its answer joins the prompt as words
(`TaggerConfig`, `vita.processor`):

    picture -> stretched to image_size x image_size (one tile) -> the tower's feature map [1280, g, g] -> mean
    -> the classifier [1000] -> softmax -> the most likely class, if >= min_confidence -> ' It looks like: ladybug.'

Class names are the first WordNet lemma of each ImageNet-1k synset, in the classifier's order (sorted synset ids),
read from the data files of the installed PyPI `timm` (Apache-2.0; installed `--no-deps`, never imported: it needs
torchvision). Measured 2026-12-06 on the 12 nature photos of Debian `mate-backgrounds` (not used anywhere else):
"ladybug" 0.75 for a ladybird, "daisy" 0.67 and 0.32 for two flowers, "bubble" 0.53 for water drops; vita-mini's
rendered shapes mostly "envelope" at 0.2-0.4, below the default threshold.
"""

from __future__ import annotations

from functools import cache

import torch
from PIL import Image

from vita.config import TaggerConfig
from vita.errors import CheckpointError
from vita.media.image import preprocess_image
from vita.media.picture_memo import PictureMemo

__all__ = ["ImageTagger", "imagenet_labels", "tagger_text"]

TIMM = "timm==1.0.22"
SYNSETS, LEMMAS = "data/_info/imagenet_synsets.txt", "data/_info/imagenet_synset_to_lemma.txt"


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
        self.weight, self.bias = read_efficientnet_classifier()  # [1000, 1280], [1000]
        self.labels = imagenet_labels()

    @torch.no_grad()
    def __call__(self, picture: Image.Image, k: int = 1) -> list[tuple[str, float]]:
        tile = preprocess_image(picture.convert("RGB"), self.vision)[:1]  # [1, 3, S, S]
        pooled = self.tower.feature_map(tile).mean((2, 3))[0]  # [1280]
        probs = torch.addmv(self.bias, self.weight, pooled).softmax(-1)  # [1000]
        top = probs.topk(k)
        return [(self.labels[int(i)], float(p)) for p, i in zip(top.values, top.indices, strict=True)]


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
