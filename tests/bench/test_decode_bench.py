"""The decode benchmark's bookkeeping: bytes read per token, and a JSON report whose figures are the measured
ones and whose ratios follow from them."""

from __future__ import annotations

import json

import pytest

from vita.bench.decode import weight_bytes_per_token
from vita.bench.decode_quant import arrival_rates
from vita.checkpoint.load import load_model
from vita.cli import main as vita_main
from vita.config import LLMConfig
from vita.models.llm import LLM
from vita.nn import native


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


def test_json_report_holds_the_measured_figures_and_their_ratios(capsys, monkeypatch):
    pytest.importorskip("transformers")  # the report compares against transformers' generate
    import vita.bench.decode as bench

    timed = []  # (arrival times, start, prompt length, (prefill, decode) tok/s) of every timed run

    def spy(times, t0, prompt_len):
        rates = arrival_rates(times, t0, prompt_len)
        timed.append((list(times), t0, prompt_len, rates))
        return rates

    monkeypatch.setattr(bench, "arrival_rates", spy)
    vita_main(["bench", "decode", "--device", "cpu", "--model", "tiny-random", "--dtype", "fp32", "--prompt-len", "8",
               "--new-tokens", "4", "--no-compile", "--repeats", "2", "--json"])
    report = json.loads(capsys.readouterr().out)
    for key in ("decode_tok_s", "prefill_tok_s", "bound_tok_s", "weight_bytes", "bandwidth_gb_s",
                "transformers_decode_tok_s", "speedup_vs_transformers"):
        assert key in report
    assert (report["prompt_len"], report["new_tokens"], report["compiled"]) == (8, 4, False)
    # every run timed 4 tokens arriving one after the other, after the start; its rates are those arrival times'
    assert len(timed) == 4  # transformers' two runs first, then ours (warm-ups are not timed)
    for times, t0, prompt_len, (prefill, decode) in timed:
        assert prompt_len == 8 and len(times) == 4 and t0 < times[0] < times[1] < times[2] < times[3]
        assert prefill == 8 / (times[0] - t0) and decode == 3 / (times[-1] - times[0])
    assert report["transformers_decode_tok_s"] == max(rates[1] for *_, rates in timed[:2])
    assert report["prefill_tok_s"] == max(rates[0] for *_, rates in timed[2:])
    assert report["decode_tok_s"] == max(rates[1] for *_, rates in timed[2:]) > 0
    # the bound and the ratios follow from the figures the report gives
    model, _ = load_model("tiny-random", dtype="fp32")
    assert report["weight_bytes"] == weight_bytes_per_token(model.llm) > 0
    assert report["bandwidth_gb_s"] > 0
    assert report["bound_tok_s"] == pytest.approx(report["bandwidth_gb_s"] * 1e9 / report["weight_bytes"], rel=1e-12)
    assert report["fraction_of_bound"] == pytest.approx(report["decode_tok_s"] / report["bound_tok_s"], rel=1e-12)
    assert report["speedup_vs_transformers"] == pytest.approx(
        report["decode_tok_s"] / report["transformers_decode_tok_s"], rel=1e-12)
    assert report["decode_step"] == "eager"  # tiny-random is a MoE (no native step), not compiled
    assert report["gemv"] == ("native" if native.available() else "torch.mv")


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
