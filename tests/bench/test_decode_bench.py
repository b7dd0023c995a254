"""The decode benchmark's bookkeeping: bytes read per token, and a JSON report with every promised key."""

from __future__ import annotations

import json

from vita.bench.decode import main, weight_bytes_per_token
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
    main(["--model", "tiny-random", "--dtype", "fp32", "--prompt-len", "8", "--new-tokens", "4", "--no-compile",
          "--json"])
    report = json.loads(capsys.readouterr().out)
    for key in ("decode_tok_s", "prefill_tok_s", "bound_tok_s", "weight_bytes", "bandwidth_gb_s",
                "transformers_decode_tok_s", "speedup_vs_transformers"):
        assert key in report
    assert report["decode_tok_s"] > 0 and report["bound_tok_s"] > 0 and report["weight_bytes"] > 0
    assert report["speedup_vs_transformers"] > 0
    assert report["gemv"] in ("native", "torch.mv") and report["decode_step"] in ("native", "eager")  # fp32
