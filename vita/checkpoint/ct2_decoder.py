"""Whisper's text decoder from a CTranslate2 `model.bin` (`vita.checkpoint.ct2` reads the file) into
`vita.models.whisper_decoder.WhisperDecoder`, strictly.

Names (`DECODER_KEYMAP`): the fused self-attention `linear_0` [3D, D] splits into q / k / v, the cross-attention
`linear_0` is q and its fused `linear_1` [2D, D] splits into k / v; key biases are dropped (CT2 stores zeros, and a key
bias cannot change a softmax). Metadata scalars are checked against what the module computes (pre-norm, GELU, no ALiBi,
unscaled embeddings); the suppression lists come from the folder's config.json.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import torch

from vita.checkpoint.ct2 import WHISPER_REVISIONS, WHISPER_SPEC, dequantize, map_ct2, read_ct2
from vita.config import TranscriberConfig, VitaConfig, WhisperConfig, WhisperDecoderConfig
from vita.errors import CheckpointError

__all__ = ["DECODER_KEYMAP", "add_transcriber", "load_ct2_whisper_decoder", "transcriber_tensors", "with_transcriber"]

_L = "decoder/layer_{}/"
DECODER_KEYMAP: dict[str, str | tuple[str | None, ...] | None] = {
    "decoder/embeddings/weight": "embed.weight",
    "decoder/position_encodings/encodings": "positions",
    _L + "self_attention/layer_norm/gamma": "blocks.{}.self_norm.weight",
    _L + "self_attention/layer_norm/beta": "blocks.{}.self_norm.bias",
    _L + "self_attention/linear_0/weight": (
        "blocks.{}.self_attn.q_proj.weight", "blocks.{}.self_attn.k_proj.weight", "blocks.{}.self_attn.v_proj.weight"),
    _L + "self_attention/linear_0/bias": ("blocks.{}.self_attn.q_proj.bias", None, "blocks.{}.self_attn.v_proj.bias"),
    _L + "self_attention/linear_1/weight": "blocks.{}.self_attn.o_proj.weight",
    _L + "self_attention/linear_1/bias": "blocks.{}.self_attn.o_proj.bias",
    _L + "attention/layer_norm/gamma": "blocks.{}.cross_norm.weight",
    _L + "attention/layer_norm/beta": "blocks.{}.cross_norm.bias",
    _L + "attention/linear_0/weight": "blocks.{}.cross_attn.q_proj.weight",
    _L + "attention/linear_0/bias": "blocks.{}.cross_attn.q_proj.bias",
    _L + "attention/linear_1/weight": ("blocks.{}.cross_attn.k_proj.weight", "blocks.{}.cross_attn.v_proj.weight"),
    _L + "attention/linear_1/bias": (None, "blocks.{}.cross_attn.v_proj.bias"),
    _L + "attention/linear_2/weight": "blocks.{}.cross_attn.o_proj.weight",
    _L + "attention/linear_2/bias": "blocks.{}.cross_attn.o_proj.bias",
    _L + "ffn/layer_norm/gamma": "blocks.{}.ffn_norm.weight",
    _L + "ffn/layer_norm/beta": "blocks.{}.ffn_norm.bias",
    _L + "ffn/linear_0/weight": "blocks.{}.ffn.up.weight",
    _L + "ffn/linear_0/bias": "blocks.{}.ffn.up.bias",
    _L + "ffn/linear_1/weight": "blocks.{}.ffn.down.weight",
    _L + "ffn/linear_1/bias": "blocks.{}.ffn.down.bias",
    "decoder/layer_norm/gamma": "final_norm.weight",
    "decoder/layer_norm/beta": "final_norm.bias",
    "decoder/num_heads": None,
    "decoder/alignment_heads": None,
    "decoder/alignment_layer": None,
}
# metadata the module's arithmetic assumes: name -> required value (CT2 ActivationType 3 = exact GELU)
_REQUIRED = {"decoder/pre_norm": 1, "decoder/activation": 3, "decoder/alibi": 0, "decoder/scale_embeddings": 0,
             "decoder/start_from_zero_embedding": 0}


def _config(tensors: dict[str, torch.Tensor], folder: Path, source: str) -> WhisperDecoderConfig:
    for name, value in _REQUIRED.items():
        if name not in tensors or int(tensors[name]) != value:
            got = int(tensors[name]) if name in tensors else "missing"
            raise CheckpointError(f"{source}: '{name}' is {got}, this decoder needs {value}")
    vocab, hidden = tensors["decoder/embeddings/weight"].shape
    layers = len({m[1] for n in tensors if (m := re.match(r"decoder/layer_(\d+)/", n))})
    extra: dict = {}
    config_file = folder / "config.json"
    if config_file.is_file():
        meta = json.loads(config_file.read_text())
        extra = {"suppress": tuple(meta.get("suppress_ids", ())),
                 "suppress_begin": tuple(meta.get("suppress_ids_begin", (220, 50256)))}
    if vocab != 51864:
        raise CheckpointError(f"{source}: vocabulary of {vocab} tokens; only English-only Whisper models (51864) "
                              "are supported (their prompt has no language token)")
    return WhisperDecoderConfig(
        vocab_size=vocab, hidden_size=hidden, num_heads=int(tensors["decoder/num_heads"]),
        intermediate_size=tensors[_L.format(0) + "ffn/linear_0/weight"].shape[0], num_layers=layers,
        max_positions=tensors["decoder/position_encodings/encodings"].shape[0], **extra)


def load_ct2_whisper_decoder(
    folder: str | Path, *, dtype: torch.dtype = torch.float32, prefix: str = ""
) -> tuple[WhisperDecoderConfig, dict[str, torch.Tensor]]:
    """A CT2 Whisper folder (or its model.bin) -> (decoder config, state dict in our names, `prefix` prepended)."""
    from vita.models.whisper_decoder import WhisperDecoder

    model = read_ct2(folder)
    if model.spec != WHISPER_SPEC or model.revision not in WHISPER_REVISIONS:
        raise CheckpointError(f"{model.path}: spec {model.spec} revision {model.revision} is not a supported "
                              f"Whisper model ({WHISPER_SPEC} revision {', '.join(map(str, WHISPER_REVISIONS))})")
    tensors = dequantize({n: t for n, t in model.variables.items() if n.startswith("decoder/")}, source=model.path)
    config = _config(tensors, Path(model.path).parent, model.path)
    meta = {n for n in tensors if n in _REQUIRED}
    with torch.device("meta"):
        expected = {n: t.shape for n, t in WhisperDecoder(config).state_dict().items()}
    state = map_ct2({n: t for n, t in tensors.items() if n not in meta}, DECODER_KEYMAP, expected,
                    source=model.path, what="decoder")
    return config, {prefix + name: t.to(dtype) for name, t in state.items()}


def with_transcriber(config: VitaConfig, tuned_blocks: set[int], folder: str | Path) -> VitaConfig:
    """`config` with a `TranscriberConfig` whose decoder is the CT2 Whisper `folder`'s (`vita.models.transcriber`):
    its own blocks start at the lowest of the audio encoder's `tuned_blocks` (the blocks a recipe fine-tuned; none:
    the top one). Unchanged when the audio path is not a snapped CTC read-out over Whisper."""
    from vita.models.transcriber import byte_table

    adapter = config.audio_adapter
    if not isinstance(config.audio, WhisperConfig) or adapter is None or not (adapter.ctc_vocab and adapter.ctc_snap):
        return config
    decoder, _ = load_ct2_whisper_decoder(folder)
    tokens, _ = byte_table(_tokenizer_file(folder), decoder.vocab_size)
    tap = min(tuned_blocks, default=config.audio.num_layers - 1)
    return dataclasses.replace(config, transcriber=TranscriberConfig(decoder=decoder, tap_block=tap,
                                                                     text_bytes=len(tokens)))


def transcriber_tensors(config: VitaConfig, folder: str | Path, encoder: dict[str, torch.Tensor],
                        prefix: str = "transcriber.") -> dict[str, torch.Tensor]:
    """The transcriber's tensors (our names, `prefix` prepended): the decoder and byte table from the CT2 `folder`,
    Whisper's original blocks above `tap_block` and its final norm from `encoder` (the packaged encoder's state dict,
    names without prefix)."""
    from vita.models.transcriber import byte_table

    cfg = config.transcriber
    _, state = load_ct2_whisper_decoder(folder, prefix=prefix + "decoder.")
    tokens, offsets = byte_table(_tokenizer_file(folder), cfg.decoder.vocab_size)
    if len(tokens) != cfg.text_bytes:
        raise CheckpointError(f"{folder}: its vocabulary has {len(tokens)} bytes, the config says {cfg.text_bytes}")
    state |= {prefix + "token_bytes": tokens, prefix + "token_offsets": offsets}
    for name, t in encoder.items():
        m = re.match(r"blocks\.(\d+)\.(.+)", name)
        if m and int(m[1]) >= cfg.tap_block:
            state[f"{prefix}blocks.{int(m[1]) - cfg.tap_block}.{m[2]}"] = t
        elif name.startswith("final_norm."):
            state[prefix + name] = t
    return state


def _tokenizer_file(folder: str | Path) -> Path:
    folder = Path(folder)
    path = (folder.parent if folder.is_file() else folder) / "tokenizer.json"
    if not path.is_file():
        raise CheckpointError(f"{path}: missing (Whisper's vocabulary, needed to read its transcripts)")
    return path


def add_transcriber(model_dir: str | Path, out_dir: str | Path, folder: str | Path) -> dict:
    """A model folder (our layout) with a snapped CTC read-out over Whisper -> the same model plus the transcriber of
    the CT2 Whisper `folder` (for training stage 3 with Whisper's words where it is sure, as inference reads them).
    The tuned encoder blocks are those that differ from `folder`'s encoder."""
    from vita.checkpoint.convert import save_canonical
    from vita.checkpoint.ct2 import load_ct2_whisper_encoder
    from vita.checkpoint.io import TensorReader
    from vita.tokenizer import Tokenizer

    config = VitaConfig.load(Path(model_dir) / "config.json")
    if config.transcriber is not None:
        raise CheckpointError(f"{model_dir}: the model already has a transcriber")
    reader = TensorReader.from_dir(model_dir)
    _, encoder = load_ct2_whisper_encoder(folder)
    tuned = {int(m[1]) for n, t in encoder.items() if (m := re.match(r"blocks\.(\d+)\.", n))
             and not torch.equal(reader["audio_encoder." + n].float(), t.float())}
    new = with_transcriber(config, tuned, folder)
    if new.transcriber is None:
        raise CheckpointError(f"{model_dir}: no snapped CTC read-out over a Whisper encoder for a transcriber")
    tensors = {n: reader[n] for n in reader} | transcriber_tensors(new, folder, encoder)
    save_canonical(new, tensors, Tokenizer.from_dir(model_dir), out_dir)
    return {"out": str(out_dir), "tap_block": new.transcriber.tap_block, "tuned_blocks": sorted(tuned)}
