"""The decode benchmark's bookkeeping: bytes read per token, and a JSON report with every promised key."""

from __future__ import annotations

import json

from vita.bench.decode import weight_bytes_per_token
from vita.cli import main as vita_main
from vita.config import LLMConfig
from vita.models.llm import LLM


def _cfg(**kw) -> LLMConfig:
    base = dict(vocab_size=100, hidden_size=16, intermediate_size=32, num_layers=2, num_heads=2, num_kv_heads=1)
    return LLMConfig(**{**base, **kw})


def test_weight_bytes_count_what_one_step_reads():
    dense = LLM(_cfg())  # untied: one embedding row + the head matrix
    per_layer = 2 * 16 + 16 * 16 + 2 * 16 * 8 + 16 * 16 + 3 * 16 * 32  # norms, wq, wk+wv, wo, w1/w2/w3
    head = 100 * 16
    assert weight_bytes_per_token(dense) == 4 * (2 * per_layer + 16 + 16 + head)
    tied = LLM(_cfg(tie_word_embeddings=True))  # tied: the head reads the whole embedding once
    assert weight_bytes_per_token(tied) == 4 * (2 * per_layer + 16 + head)
    moe = LLM(_cfg(num_experts=4, num_experts_per_tok=2, family="mixtral"))
    moe_layer = per_layer - 3 * 16 * 32 + 4 * 16 + 2 * 3 * 16 * 32  # router + two of four experts
    assert weight_bytes_per_token(moe) == 4 * (2 * moe_layer + 16 + 16 + head)


def test_json_report_has_the_documented_keys(capsys):
    vita_main(["bench", "decode", "--device", "cpu", "--model", "tiny-random", "--dtype", "fp32", "--prompt-len", "8",
               "--new-tokens", "4", "--no-compile", "--json"])
    report = json.loads(capsys.readouterr().out)
    for key in ("decode_tok_s", "prefill_tok_s", "bound_tok_s", "weight_bytes", "bandwidth_gb_s",
                "transformers_decode_tok_s", "speedup_vs_transformers"):
        assert key in report
    assert report["decode_tok_s"] > 0 and report["bound_tok_s"] > 0 and report["weight_bytes"] > 0
    assert report["speedup_vs_transformers"] > 0
    assert report["gemv"] in ("native", "torch.mv") and report["decode_step"] in ("native", "eager")  # fp32


def test_quantized_bytes_count_packed_weights_scales_and_offsets():
    from vita.nn.quant import quantize_llm_

    llm = quantize_llm_(LLM(_cfg(hidden_size=32, tie_word_embeddings=True)), 4)
    per_layer = 2 * 2 * 32 * 4  # two layers' two norms, float32
    for m in (*(getattr(layer.attention, n) for n in ("wq", "wk", "wv", "wo") for layer in llm.layers),
              *(getattr(layer.feed_forward, n) for n in ("w1", "w2", "w3") for layer in llm.layers)):
        per_layer += m.qweight.numel() + 2 * m.scale.numel() + 2 * m.offset.numel()  # nibbles, float16 scale/offset
    head = 100 * 32 + 4 * 100  # int8 head (tied: a quantized copy of the embedding) and its float32 row scales
    assert weight_bytes_per_token(llm) == per_layer + 4 * 32 + 4 * 32 + head  # + final norm + one embedding row


def test_quantized_report_has_every_variant_and_the_acceptance_figures(capsys, monkeypatch):
    import types

    import vita.bench.decode as bench
    import vita.checkpoint.load as load

    dense = LLM(_cfg(hidden_size=64, intermediate_size=96, vocab_size=300, tie_word_embeddings=True))
    monkeypatch.setattr(load, "load_model", lambda *a, **k: (types.SimpleNamespace(llm=dense), None))
    monkeypatch.setattr(bench, "copy_bandwidth", lambda: 20e9)
    vita_main(["bench", "decode", "--device", "cpu", "--model", "dense-stand-in", "--dtype", "fp32", "--prompt-len",
               "8", "--new-tokens", "4", "--no-compile", "--no-transformers", "--quantize", "int8", "int4", "--repeats",
               "1", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert [v["weights"] for v in report["variants"]] == ["fp32", "int8", "int4"]
    for v in report["variants"]:
        assert v["decode_tok_s"] > 0 and 0 < v["fraction_of_bound"] and v["speedup_vs_float"] > 0
    assert report["variants"][0]["speedup_vs_float"] == 1.0
    assert report["llama_cpp"].startswith("not compared") and report["llama_cpp_decode_tok_s"] is None
    a = report["acceptance"]
    assert a["int8_vs_llama_cpp"] is None and a["int8_vs_llama_cpp_ok"] is None
    assert a["int8_fraction_of_bound"] == report["variants"][1]["fraction_of_bound"]
