"""Recipes: every YAML validates against the schema and its globs name real parameters; loading is strict."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vita import presets
from vita.config import VitaConfig
from vita.errors import TrainingError
from vita.models.vita import VitaModel
from vita.training.recipe import Recipe, apply_override, load_recipe
from vita.training.trainable import resolve_trainable

REPO = Path(__file__).resolve().parents[2]
VITA1 = sorted((REPO / "recipes" / "vita1").glob("*.yaml"))
TINY = sorted((REPO / "recipes" / "tiny").glob("*.yaml"))
ENV = {name: f"/data/{name.lower()}" for name in
       ("VITA_BASE_LLM", "VITA_INIT", "VITA_STAGE1", "VITA_STAGE2", "VITA_STAGE3", "VITA_DATA", "VITA_MEDIA")}

# what each official stage trains (vita1.md §7.1), by top-level group
EXPECTED_GROUPS = {
    "stage0_llm_bilingual": {"llm"},
    "stage1_vision_align": {"vision_projector"},
    "stage2_audio_align": {"audio_encoder", "audio_adapter"},
    "stage3_multimodal_sft": {"llm", "vision_projector", "audio_adapter"},
    "stage4_continual_task": {"llm", "vision_projector"},
}


def _param_names(config: VitaConfig) -> list[str]:
    with torch.device("meta"):
        return [n for n, _ in VitaModel(config).named_parameters()]


@pytest.fixture(scope="module")
def vita1_names() -> dict[str, list[str]]:
    full = presets.vita_1_0()
    return {"full": _param_names(full), "llm_only": _param_names(VitaConfig(llm=full.llm))}


@pytest.fixture(scope="module")
def tiny_names() -> list[str]:
    return _param_names(presets.tiny_random())


def test_recipe_sets_are_complete():
    assert [p.stem for p in VITA1] == sorted(EXPECTED_GROUPS)
    assert [p.stem for p in TINY] == sorted(EXPECTED_GROUPS)


@pytest.mark.parametrize("path", VITA1, ids=lambda p: p.stem)
def test_vita1_recipe_valid_and_globs_match(path: Path, vita1_names, monkeypatch):
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)
    recipe = load_recipe(path)
    assert path.read_text().startswith("# VITA-1.0")  # the header says what it mirrors
    names = vita1_names["llm_only" if path.stem.startswith("stage0") else "full"]
    flags = resolve_trainable(names, recipe.trainable)  # raises on a glob that matches nothing
    trained = {n.split(".")[0] for n, f in flags.items() if f}
    assert trained == EXPECTED_GROUPS[path.stem]
    assert all(not f for n, f in flags.items() if n.startswith("vision."))  # vision tower always frozen
    assert recipe.precision == "bf16" and recipe.schedule.kind == "cosine"
    assert recipe.schedule.warmup_ratio == pytest.approx(0.03) and recipe.optim.weight_decay == 0.0
    assert recipe.gradient_checkpointing and recipe.seed == 42
    lr = {"stage1_vision_align": 5e-4, "stage2_audio_align": 5e-4}.get(path.stem, 2e-5)
    assert recipe.optim.lr == pytest.approx(lr)
    assert recipe.data.max_length == (9100 if path.stem == "stage4_continual_task" else 6200)
    assert recipe.data.sources[0].path.startswith("/data/vita_data/")  # ${VITA_DATA} expanded


@pytest.mark.parametrize("path", TINY, ids=lambda p: p.stem)
def test_tiny_recipe_valid_and_mirrors_its_stage(path: Path, tiny_names, monkeypatch):
    recipe = load_recipe(path)
    assert recipe.model.init == "tiny-random"
    assert all(s.path.startswith("tiny:") for s in recipe.data.sources)
    flags = resolve_trainable(tiny_names, recipe.trainable)
    assert {n.split(".")[0] for n, f in flags.items() if f} == EXPECTED_GROUPS[path.stem]
    assert recipe.schedule.total_steps is not None and recipe.schedule.total_steps <= 10


def test_overrides_are_typed(tmp_path: Path):
    path = TINY[0]
    r = load_recipe(path, ["optim.lr=1e-4", "schedule.total_steps=3", "precision=bf16", "optim.betas=[0.9, 0.95]",
                           "data.sources.0.weight=2", "lora={targets: ['llm.layers.*.attention.wq'], r: 4}",
                           "trainable={'*': true}"])
    assert isinstance(r, Recipe)
    assert r.optim.lr == 1e-4 and isinstance(r.optim.lr, float)
    assert r.schedule.total_steps == 3 and r.precision == "bf16" and r.optim.betas == (0.9, 0.95)
    assert r.data.sources[0].weight == 2.0
    assert r.lora is not None and r.lora.r == 4 and r.lora.alpha == 16.0
    assert r.trainable == {"*": True}


@pytest.mark.parametrize(("override", "message"), [
    ("optim.lrr=1", "unknown key 'optim.lrr'"),
    ("batch.micro_batch_size=two", "batch.micro_batch_size: expected an integer"),
    ("precision=fp8", "precision: 'fp8' is not one of fp32, bf16"),
    ("gradient_checkpointing=3", "gradient_checkpointing: expected true/false"),
    ("optim.lr", "bad override 'optim.lr': expected dotted.key=value"),
    ("data.sources.5.path=x", "is not an index of a list of 1"),
    ("schedule.epochs=1", "exactly one of total_steps and epochs"),
    ("optim=3", "optim: expected a mapping"),
])
def test_bad_overrides_name_the_key(override: str, message: str):
    with pytest.raises(TrainingError, match=None) as exc:
        load_recipe(TINY[0], [override])
    assert message in str(exc.value)
    assert "\n" not in str(exc.value)


def test_unknown_key_in_file_names_key_and_file(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(TINY[0].read_text().replace("  lr: 2.0e-3", "  lr: 2.0e-3\n  momentum: 0.9"))
    with pytest.raises(TrainingError) as exc:
        load_recipe(bad)
    assert str(bad) in str(exc.value) and "unknown key 'optim.momentum'" in str(exc.value)
    (tmp_path / "nested.yaml").write_text(TINY[0].read_text().replace("    - path: tiny:", "    - pth: tiny:"))
    with pytest.raises(TrainingError, match="data"):
        load_recipe(tmp_path / "nested.yaml")


def test_missing_file_bad_yaml_missing_section_unset_env(tmp_path: Path, monkeypatch):
    with pytest.raises(TrainingError, match="no such recipe file"):
        load_recipe(tmp_path / "nope.yaml")
    (tmp_path / "broken.yaml").write_text("model: [unclosed\n")
    with pytest.raises(TrainingError, match="invalid YAML"):
        load_recipe(tmp_path / "broken.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(TrainingError, match="a recipe is a mapping"):
        load_recipe(tmp_path / "list.yaml")
    (tmp_path / "partial.yaml").write_text("model: {init: tiny-random}\n")
    with pytest.raises(TrainingError, match="missing key 'trainable'"):
        load_recipe(tmp_path / "partial.yaml")
    monkeypatch.delenv("VITA_INIT", raising=False)
    with pytest.raises(TrainingError, match=r"\$\{VITA_INIT\} is not set"):
        load_recipe(REPO / "recipes" / "vita1" / "stage1_vision_align.yaml")


def test_global_batch_gives_accumulation():
    r = load_recipe(TINY[0], ["batch.micro_batch_size=2", "batch.grad_accum=null", "batch.global_batch_size=8"])
    assert r.batch.accumulation(1) == 4 and r.batch.accumulation(2) == 2 and r.batch.accumulation(4) == 1
    with pytest.raises(TrainingError, match="not a multiple"):
        r.batch.accumulation(3)


def test_apply_override_creates_missing_sections():
    raw: dict = {"model": {"init": "x"}}
    apply_override(raw, "checkpoint.every=5")
    assert raw["checkpoint"] == {"every": 5}


MINI = sorted((Path(__file__).resolve().parents[2] / "recipes" / "mini").glob("*.yaml"))


@pytest.mark.parametrize("path", MINI, ids=lambda p: p.stem)
def test_mini_recipes_valid_and_globs_match(path: Path, monkeypatch):
    from vita.checkpoint.assemble import MINI_VISION
    from vita.config import AudioAdapterConfig, ProjectorConfig, WhisperConfig

    for k in ("VITA_MINI_DATA", "VITA_MINI_INIT", "VITA_MINI_STAGE1", "VITA_MINI_STAGE2"):
        monkeypatch.setenv(k, "/x")
    recipe = load_recipe(path)
    config = VitaConfig(llm=presets.tiny_random().llm, vision=MINI_VISION,
                        vision_projector=ProjectorConfig(MINI_VISION.output_size, 64), audio=WhisperConfig(),
                        audio_adapter=AudioAdapterConfig(384, 64, stride=4))
    names = _param_names(config)
    on = resolve_trainable(names, recipe.trainable, source=str(path))
    assert any(on.values()) and not any(v for n, v in on.items() if n.startswith(("llm.", "audio_encoder.")))
    assert recipe.data.packing == "true" and recipe.seed == 42
