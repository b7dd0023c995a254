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
