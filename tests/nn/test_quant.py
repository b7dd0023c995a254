"""Weight-only int8 / int4 quantization (`vita.nn.quant`), its native kernels and the quantized decode step."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from torch import nn

from vita.config import LLMConfig
from vita.generation.generate import generate_all
from vita.generation.native_step import NativeStep
from vita.generation.steps import decode_one_token, prefill
from vita.models.llm import LLM
from vita.nn import native
from vita.nn.quant import QuantLinear, dequantize, quantize_int4, quantize_int8, quantize_llm_

needs_native = pytest.mark.usefixtures("requires_native")
PROMPT = torch.tensor([[5, 17, 33, 2, 81, 40, 9, 60, 11]])


def _llm(*, tied: bool = False, bias: bool = False, hidden: int = 64, inter: int = 96, seed: int = 0) -> LLM:
    torch.manual_seed(seed)
    cfg = LLMConfig(vocab_size=211, hidden_size=hidden, intermediate_size=inter, num_layers=3, num_heads=4,
                    num_kv_heads=2, max_position_embeddings=128, qkv_bias=bias, tie_word_embeddings=tied,
                    family="qwen2" if bias else "llama")
    llm = LLM(cfg).eval()
    with torch.no_grad():
        llm.tok_embeddings.weight.mul_(8)  # decisive logits
    return llm


def test_int8_error_is_at_most_half_a_step_per_row():
    w = torch.randn(37, 100) * torch.linspace(0.1, 3, 37)[:, None]
    q, scale = quantize_int8(w)
    assert q.dtype == torch.int8 and scale.shape == (37,) and int(q.abs().max()) <= 127
    err = (dequantize(q, scale, 8) - w).abs()
    assert (err <= scale[:, None] / 2 + 1e-6).all()
    assert torch.equal(q.abs().amax(dim=1), torch.full((37,), 127, dtype=torch.int8))  # the row's range is used


def test_int4_error_is_at_most_half_a_step_per_group():
    w = torch.randn(5, 128) + torch.linspace(-1, 2, 5)[:, None]  # skewed groups: the offset uses their own range
    q, scale, offset = quantize_int4(w, 32)
    assert q.shape == (5, 64) and q.dtype == torch.uint8 and scale.shape == offset.shape == (5, 4)
    assert scale.dtype == offset.dtype == torch.float16
    deq = dequantize(q, scale, 4, offset=offset)
    step = scale.float().repeat_interleave(32, dim=1)  # [5, 128]
    assert ((deq - w).abs() <= step / 2 + 2e-3 * w.abs()).all()  # float16 scale/offset: <= 0.1 % of the value
    groups = w.view(5, 4, 32)
    torch.testing.assert_close(deq.view(5, 4, 32).amin(2), groups.amin(2), atol=2e-3, rtol=0)  # range end to end
    torch.testing.assert_close(deq.view(5, 4, 32).amax(2), groups.amax(2), atol=2e-3, rtol=0)


def test_int4_reproduces_a_q4_1_grid():
    """Weights already on a Q4_1 grid (what a model loaded from a Q4_1 GGUF holds) come back unchanged."""
    torch.manual_seed(3)
    d = (torch.rand(6, 4) * 0.05 + 0.01).half().float()  # [N, G] float16-exact scale and minimum
    m = (torch.randn(6, 4) * 0.1).half().float()
    levels = torch.randint(0, 16, (6, 4, 32))
    levels[..., 0], levels[..., 1] = 0, 15  # every Q4_1 group spans its full range
    w = (levels * d[..., None] + m[..., None]).view(6, 128)
    q, scale, offset = quantize_int4(w)
    torch.testing.assert_close(dequantize(q, scale, 4, offset=offset), w, atol=1e-4, rtol=0)


def test_int4_packing_puts_weight_j_and_j_plus_16_in_one_byte():
    w = torch.arange(-16, 16, dtype=torch.float32).view(1, 32) * 0.25  # min -4, max 3.75 -> scale 7.75 / 15
    q, scale, offset = quantize_int4(w, 32)
    lo, hi = q[0] & 0x0F, q[0] >> 4
    expect = torch.round((w[0] - offset.float()[0, 0]) / scale.float()[0, 0]).clamp(0, 15).long()
    assert torch.equal(lo.long(), expect[:16]) and torch.equal(hi.long(), expect[16:])
    assert int(expect[0]) == 0 and int(expect[-1]) == 15


def test_bad_inputs_are_clear_errors():
    with pytest.raises(ValueError, match="K divisible by the group size 32"):
        quantize_int4(torch.randn(4, 40))
    with pytest.raises(ValueError, match="multiple of 32"):
        quantize_int4(torch.randn(4, 64), group=48)
    with pytest.raises(ValueError, match="float weight matrix"):
        quantize_int8(torch.zeros(3, 4, 5))
    with pytest.raises(ValueError, match="bits must be 8 or 4"):
        QuantLinear(8, 8, 3)
    moe = LLM(LLMConfig(vocab_size=50, hidden_size=32, intermediate_size=32, num_layers=1, num_heads=2,
                        num_kv_heads=1, num_experts=2, num_experts_per_tok=1, family="mixtral"))
    with pytest.raises(ValueError, match="MoE"):
        quantize_llm_(moe, 8)
    llm = _llm(inter=80)
    with pytest.raises(ValueError, match="80 inputs, not a multiple of the int4 group"):
        quantize_llm_(llm, 4)
    fused = _llm().fuse_()
    with pytest.raises(ValueError, match="fused"):
        quantize_llm_(fused, 8)


def _int16_input_error(w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """[N] bound on what quantizing x to int16 (one scale, max |x| / 32767) moves each row's product."""
    return w.abs().sum(1) * float(x.abs().max()) / 32767 / 2


@needs_native
@pytest.mark.parametrize("shape", [(70, 100), (129, 1536), (3, 33), (256, 64), (4, 9000)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_native_int8_gemv_matches_the_dequantized_product(shape, dtype):
    """Within the int16 rounding of x (and float32 summation) of the dequantized product; 9000 columns cross the
    8192-column int32 chunk."""
    torch.manual_seed(1)
    N, K = shape
    layer = QuantLinear.from_linear(torch.randn(N, K), 8)
    x = torch.randn(K).to(dtype)
    w = layer.dequantize()
    ref = w @ x.float()  # [N] float32
    out = native.native_quant_gemv(8)(layer.qweight, layer.scale, x)
    assert out.dtype == dtype and out.shape == (N,)
    bound = _int16_input_error(w, x.float()) + 1e-5 * w.abs().sum(1) * float(x.abs().max())
    if dtype == torch.bfloat16:
        bound = bound + ref.abs() / 256  # the result rounded once to bf16
    assert ((out.float() - ref).abs() <= bound).all()
    assert float((out.float() - ref).abs().max()) > 0 or K < 64  # it is the integer path, not a float copy


@needs_native
def test_native_int8_gemv_uses_the_whole_int16_range_without_overflow():
    """Weights and activations at their extremes in the longest int32 chunk: the sum is exact."""
    K = 8192
    layer = QuantLinear.from_linear(torch.ones(2, K), 8)  # q = 127 everywhere
    x = torch.ones(K)
    out = native.native_quant_gemv(8)(layer.qweight, layer.scale, x)
    torch.testing.assert_close(out, torch.full((2,), float(K)), rtol=1e-6, atol=0)


@needs_native
@pytest.mark.parametrize("shape,group", [((70, 128), 32), ((129, 1536), 32), ((5, 192), 64), ((3, 96), 32)])
def test_native_int4_gemv_matches_the_dequantized_product(shape, group):
    torch.manual_seed(2)
    N, K = shape
    layer = QuantLinear.from_linear(torch.randn(N, K) + 0.3, 4, group=group)
    x = torch.randn(K)
    w = layer.dequantize()
    out = native.native_quant_gemv(4)(layer.qweight, layer.scale, layer.offset, x, group)
    # the nibble sums read x in int16 (the offsets' sums use x itself): the bound counts the weights less their
    # group offset
    nib = (w - layer.offset.float().repeat_interleave(group, dim=1))
    bound = _int16_input_error(nib, x) + 1e-5 * w.abs().sum(1) * float(x.abs().max())
    err = (out - w @ x).abs()
    assert (err <= bound).all() and float(err.max()) > 0


@needs_native
def test_native_gemv_refuses_wrong_shapes():
    layer = QuantLinear.from_linear(torch.randn(8, 64), 8)
    with pytest.raises(RuntimeError, match="expected x of shape"):
        native.native_quant_gemv(8)(layer.qweight, layer.scale, torch.randn(63))
    with pytest.raises(RuntimeError, match="scale must be float32"):
        native.native_quant_gemv(8)(layer.qweight, layer.scale.double(), torch.randn(64))
    q4 = QuantLinear.from_linear(torch.randn(8, 64), 4)
    with pytest.raises(RuntimeError, match="offset must be float16"):
        native.native_quant_gemv(4)(q4.qweight, q4.scale, q4.offset.float(), torch.randn(64), 32)


def test_quant_linear_prefill_is_the_dequantized_float32_product():
    lin = nn.Linear(64, 48, bias=True)
    q = QuantLinear.from_linear(lin, 8)
    x = torch.randn(2, 5, 64)
    torch.testing.assert_close(q(x), torch.nn.functional.linear(x, q.dequantize(), lin.bias))


def _steps(llm: LLM, native_step: bool) -> list[torch.Tensor]:
    """float32 logits of 6 teacher-forced decode steps after PROMPT (native whole step or the module path)."""
    llm.setup_caches(1, 64)
    prefill(llm, token_ids=PROMPT, input_pos=torch.arange(PROMPT.shape[1]))
    step = NativeStep(llm) if native_step else None
    out = []
    for i, tok in enumerate([3, 44, 7, 120, 9, 61]):
        pos = PROMPT.shape[1] + i
        logits = step(tok, pos) if step else decode_one_token(llm, torch.tensor([[tok]]), torch.tensor([pos]))[1]
        out.append(logits.float().view(-1))
    return out


@needs_native
@pytest.mark.parametrize("bits", [8, 4])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("kw", [{}, {"tied": True}, {"bias": True}])
def test_native_quantized_step_matches_the_module_path(bits, dtype, kw):
    llm = quantize_llm_(_llm(**kw).to(dtype), bits)
    with torch.inference_mode():
        ours = _steps(llm, native_step=True)
        ref = _steps(copy.deepcopy(llm), native_step=False)
    for a, b in zip(ours, ref, strict=True):
        # float32: summation order and the int16 rounding of each GEMV's input (1/65534 of its largest entry, in
        # both paths but not at the same points); bf16: a bf16 rounding here or there along the step (a few bf16
        # steps of the largest logit)
        atol = 3e-3 if dtype == torch.float32 else 2e-2 * float(b.abs().max())
        torch.testing.assert_close(a, b, atol=atol, rtol=1e-3 if dtype == torch.float32 else 0)


def test_int8_greedy_ids_equal_float_on_a_tiny_model(native):
    """Per-row int8 moves logits by well under the margins of this (decisive) tiny model: same 12 greedy ids."""
    llm = _llm()
    ref = generate_all(llm, token_ids=PROMPT, max_new_tokens=12, compile=False, native=native).token_ids
    q = generate_all(quantize_llm_(copy.deepcopy(llm), 8), token_ids=PROMPT, max_new_tokens=12,
                     compile=False, native=native).token_ids
    assert q == ref


def test_native_step_refuses_a_float_head_with_quantized_layers():
    llm = quantize_llm_(_llm(), 8, head=False)
    assert "float head" in NativeStep.unsupported(llm)


def test_quantize_save_load_round_trip(tmp_path):
    from vita import presets
    from vita.checkpoint.convert import save_canonical
    from vita.checkpoint.load import load_model, quantize_checkpoint
    from vita.config import VitaConfig
    from vita.errors import CheckpointError
    from vita.models.vita import VitaModel

    torch.manual_seed(0)
    cfg = VitaConfig(llm=_llm(tied=True).config)
    model = VitaModel(cfg).eval()
    save_canonical(cfg, model.state_dict(), presets.byte_tokenizer(), tmp_path / "src")
    out = quantize_checkpoint(tmp_path / "src", tmp_path / "q4", bits=4, dtype="fp32")
    assert json.loads((out / "quantization.json").read_text()) == {"version": 2, "bits": 4, "group": 32, "head": True}
    loaded, _ = load_model(out, dtype="bf16")
    q = loaded.llm.layers[0].attention.wq
    assert type(q) is QuantLinear and q.bits == 4 and q.scale.dtype == q.offset.dtype == torch.float16
    assert loaded.llm.tok_embeddings.weight.dtype == torch.bfloat16
    expect = quantize_llm_(copy.deepcopy(model.llm), 4)
    assert torch.equal(q.qweight, expect.layers[0].attention.wq.qweight)
    assert torch.equal(loaded.llm.output.qweight, expect.output.qweight)
    assert torch.equal(q.offset, expect.layers[0].attention.wq.offset)
    assert loaded.llm.output.bits == 8  # the head is int8 in an int4 model
    with pytest.raises(Exception, match="not empty"):
        quantize_checkpoint(tmp_path / "src", tmp_path / "q4", bits=8)
    (out / "quantization.json").write_text('{"bits": 4, "group": 32, "head": true}')  # version 1: symmetric int4
    with pytest.raises(CheckpointError, match="version 1, this vita reads version 2"):
        load_model(out)


@pytest.mark.parametrize("argv", [["generate", "--model", "m", "--prompt", "hi"], ["eval", "--manifest", "x.jsonl",
                                  "--model", "m"], ["chat", "--model", "m"], ["serve", "--model", "m"]])
def test_every_generating_command_takes_quantize(argv):
    from vita import cli

    parser = cli.build_parser()
    assert parser.parse_args([*argv, "--quantize", "int4"]).quantize == "int4"
    assert parser.parse_args(argv).quantize is None
    with pytest.raises(SystemExit):
        parser.parse_args([*argv, "--quantize", "int3"])


def test_chat_loads_the_model_quantized(monkeypatch):
    """`vita chat` passes --quantize to `vita.load` (the load itself is stubbed: only the hand-over is checked)."""
    import vita.api
    from vita import cli
    from vita.cli.chat import TerminalChat

    seen = {}

    def fake_load(*a, **k):
        seen.update(k)
        raise RuntimeError("stop after the load")

    monkeypatch.setattr(vita.api, "load", fake_load)
    args = cli.build_parser().parse_args(["chat", "--model", "m", "--quantize", "int8", "--device", "cpu"])
    with pytest.raises(RuntimeError, match="stop after the load"):
        TerminalChat(args)
    assert seen["quantize"] == "int8"
