"""Negatives generator: exact kind ratio, SNR and level measured on the written audio, state tokens, determinism."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from vita.cli import main as vita_main
from vita.cli.data import add_negatives_parser as add_parser
from vita.datasets.negatives import (
    NegativesConfig,
    generate_negatives,
    mix_at_snr,
    pink_noise,
    split_counts,
)
from vita.errors import DataError
from vita.presets import byte_tokenizer, preset
from vita.processor import Processor
from vita.tokens import IGNORE_INDEX
from vita.training.data import DataConfig, iter_samples

RATE = 16000

def speech_like(seconds: float, f0: float, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    voiced = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6))
    envelope = 0.5 * (1 + np.sin(2 * np.pi * 4 * t + rng.uniform(0, 6)))  # syllable-rate modulation
    return (0.2 * voiced * envelope).astype(np.float32)


@pytest.fixture()
def manifest(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(6):
        sf.write(tmp_path / f"s{i}.wav", speech_like(0.6 + 0.1 * i, 120 + 20 * i, rng), RATE, subtype="FLOAT")
        row = {"audio": f"s{i}.wav", "text": f"utterance {i}"}
        if i < 3:
            row["answer"] = f"answer {i}"
        rows.append(row)
    path = tmp_path / "manifest.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def measured_snr(mix: np.ndarray, speech: np.ndarray, gain: float) -> float:
    """SNR of the written mix = gain * (speech + noise): the noise is what is left after the scaled speech."""
    s, m = gain * speech.astype(np.float64), mix.astype(np.float64)
    return 10 * np.log10((s**2).sum() / ((m - s) ** 2).sum())


def test_split_counts_is_exact() -> None:
    assert split_counts(20, (0.5, 0.3, 0.2)) == [10, 6, 4]
    assert split_counts(7, (1, 1, 1)) == [3, 2, 2] and sum(split_counts(11, (0.7, 0.2, 0.1))) == 11


def test_ratio_state_tokens_and_snr(manifest: Path, tmp_path: Path) -> None:
    out_dir = tmp_path / "out"
    cfg = NegativesConfig(manifest, out_dir, num_samples=20, ratio=(0.5, 0.3, 0.2), snr_db=(10.0, 10.0),
                          noise_level_db=(-30.0, -30.0), seed=1)
    path = generate_negatives(cfg)
    records = [json.loads(x) for x in path.read_text().splitlines()]
    kinds = [r["kind"] for r in records]
    assert (kinds.count("query"), kinds.count("chatter"), kinds.count("noise")) == (10, 6, 4)
    assert kinds != sorted(kinds)  # mixed, not grouped
    for r in records:
        wave, rate = sf.read(out_dir / r["audio"], dtype="float32")
        assert rate == RATE and wave.ndim == 1
        if r["kind"] == "noise":
            level = 20 * np.log10(np.sqrt(np.mean(wave.astype(np.float64) ** 2)))
            assert abs(level - -30.0) < 0.05
            assert 0.5 <= len(wave) / RATE <= 2.0
        else:
            rows = [json.loads(x) for x in manifest.read_text().splitlines()]
            source = next(row for row in rows if row["text"] == r["text"])
            speech, _ = sf.read(manifest.parent / source["audio"], dtype="float32")
            assert len(wave) == len(speech) and r["speech"] == str(manifest.parent / source["audio"])
            assert abs(measured_snr(wave, speech, r["gain"]) - 10.0) < 0.1
            assert (r["kind"] == "query") == ("answer" in source)
    proc = Processor(byte_tokenizer(), preset("tiny-random"))
    samples = list(iter_samples(DataConfig([str(path)], shuffle=False, on_error="raise"), proc))
    replies = [proc.tokenizer.decode([t for t in s.labels.tolist() if t != IGNORE_INDEX]) for s in samples]
    for r, reply in zip(records, replies, strict=True):
        expected = "<1>" + r["conversations"][1]["value"] + "</s>" if r["kind"] == "query" else "<2></s>"
        assert reply == expected


def test_snr_range_and_noise_files(manifest: Path, tmp_path: Path) -> None:
    noise = np.random.default_rng(5).uniform(-0.3, 0.3, RATE // 2).astype(np.float32)
    sf.write(tmp_path / "hum.wav", noise, RATE)
    cfg = NegativesConfig(manifest, tmp_path / "o", num_samples=12, ratio=(1, 1, 0), snr_db=(0.0, 20.0),
                          noise_files=[tmp_path / "hum.wav"], seed=2)
    records = [json.loads(x) for x in generate_negatives(cfg).read_text().splitlines()]
    assert {r["noise"] for r in records} == {str(tmp_path / "hum.wav")}
    snrs = [r["snr_db"] for r in records]
    assert all(0.0 <= s <= 20.0 for s in snrs) and max(snrs) - min(snrs) > 5
    for r in records:
        wave, _ = sf.read(tmp_path / "o" / r["audio"], dtype="float32")
        assert abs(measured_snr(wave, sf.read(r["speech"], dtype="float32")[0], r["gain"]) - r["snr_db"]) < 0.1


def test_deterministic_from_seed(manifest: Path, tmp_path: Path) -> None:
    def run(seed: int, name: str) -> tuple[str, list[bytes]]:
        path = generate_negatives(NegativesConfig(manifest, tmp_path / name, num_samples=8, seed=seed))
        files = sorted((tmp_path / name / "audio").iterdir())
        return path.read_text(), [f.read_bytes() for f in files]

    assert run(3, "a") == run(3, "b")
    assert run(3, "a") != run(4, "c")


def test_mix_keeps_snr_when_it_would_clip() -> None:
    rng = np.random.default_rng(0)
    speech = (0.95 * np.sign(rng.standard_normal(4000))).astype(np.float32)
    mix, gain = mix_at_snr(speech, rng.standard_normal(4000).astype(np.float32), 0.0)
    assert np.abs(mix).max() <= 0.99 + 1e-6 and gain < 0.5
    assert abs(measured_snr(mix, speech, gain) - 0.0) < 1e-3


def test_pink_noise_has_one_over_f_power() -> None:
    x = pink_noise(RATE * 4, np.random.default_rng(0))
    power = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(x.shape[0], 1 / RATE)
    low = power[(freqs >= 100) & (freqs < 200)].mean()
    high = power[(freqs >= 1000) & (freqs < 2000)].mean()
    assert 7 < low / high < 14  # one decade: ~10 dB


def test_errors_and_cli(manifest: Path, tmp_path: Path, capsys) -> None:
    only_queries = tmp_path / "q.jsonl"
    only_queries.write_text(json.dumps({"audio": "s0.wav", "text": "x", "answer": "y"}) + "\n")
    with pytest.raises(DataError, match="no non-query entries"):
        generate_negatives(NegativesConfig(only_queries, tmp_path / "o", num_samples=4))
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"audio": "s0.wav"}) + "\n" + json.dumps({"audio": "gone.wav"}) + "\n")
    with pytest.raises(DataError, match=f"{bad}:2: missing audio file"):
        generate_negatives(NegativesConfig(bad, tmp_path / "o"))
    assert vita_main(["data", "negatives", str(manifest), str(tmp_path / "cli"), "--num", "5", "--snr", "12",
                      "--format", "json"]) == 0
    data = json.loads((tmp_path / "cli" / "negatives.json").read_text())
    assert len(data) == 5 and all(r.get("snr_db", 12.0) == 12.0 for r in data)
    assert vita_main(["data", "negatives", str(bad), str(tmp_path / "cli2")]) == 2
    assert "missing audio file" in capsys.readouterr().err
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    add_parser(sub)
    args = parser.parse_args(["negatives", str(manifest), str(tmp_path / "x"), "--ratio", "1,0,1"])
    assert args.func(args) == 0 and (tmp_path / "x" / "negatives.jsonl").is_file()
