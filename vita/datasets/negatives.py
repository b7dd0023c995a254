"""Non-awakening training data: spoken queries, non-query speech and background noise as VITA-format samples.

From an ASR or QA manifest (JSONL of {"audio": path, "text": transcript, "answer"?: str, "is_query"?: bool}; paths
relative to the manifest) this writes 16 kHz mono wav files and a data file `iter_samples` reads:
  * query   (an entry with an answer, or is_query true): speech + noise at an SNR, target "<1>" + answer
  * chatter (is_query false, or no answer): speech + noise at an SNR, target "<2>" + end-of-sequence
    (`inserted_id` marks the reply; statements, chatter, speech not meant for the assistant)
  * noise   (no speech): a noise clip at a level in dBFS, target "<2>" + end-of-sequence
The three kinds are mixed at the requested ratio (exact counts, largest remainder); SNR and level are drawn
uniformly from their ranges. Noise comes from files (random crops, looped) or is generated: white, pink (1/f
power), babble (a sum of other speech clips from the manifest; modulated pink noise when it has too few).
Everything is a function of the seed. SNR = 10 log10(mean(speech^2) / mean(noise^2)) over the clip; a mixture that
would clip is scaled down as a whole, which keeps the SNR (the record notes the `gain`, its `snr_db`, the `noise`
used and the source `speech` file, so the SNR can be measured back from the written audio).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import soundfile as sf

from vita.config import SAMPLE_RATE
from vita.errors import DataError
from vita.media.audio import load_audio

GENERATED = ("white", "pink", "babble")
KINDS = ("query", "chatter", "noise")
PEAK = 0.99


@dataclass
class NegativesConfig:
    manifest: Path  # JSONL: {"audio", "text", "answer"?, "is_query"?}
    out_dir: Path
    num_samples: int | None = None  # default: as many as the manifest has entries
    ratio: tuple[float, float, float] = (0.5, 0.3, 0.2)  # query : chatter : noise
    snr_db: tuple[float, float] = (5.0, 20.0)  # speech-to-noise ratio range (a fixed SNR: equal bounds)
    noise_level_db: tuple[float, float] = (-35.0, -20.0)  # RMS level of pure-noise clips, dBFS
    noise_seconds: tuple[float, float] = (0.5, 2.0)
    noise_files: list[Path] = field(default_factory=list)  # used instead of generated noise when given
    generated: tuple[str, ...] = GENERATED
    seed: int = 0
    format: Literal["jsonl", "json"] = "jsonl"

    def __post_init__(self) -> None:
        self.manifest, self.out_dir = Path(self.manifest), Path(self.out_dir)
        self.noise_files = [Path(p) for p in self.noise_files]
        if len(self.ratio) != 3 or min(self.ratio) < 0 or sum(self.ratio) <= 0:
            raise DataError(f"negatives: ratio must be three numbers >= 0 (query, chatter, noise), got {self.ratio}")
        for name in ("snr_db", "noise_level_db", "noise_seconds"):
            lo, hi = getattr(self, name)
            if lo > hi:
                raise DataError(f"negatives: {name} range is empty ({lo} > {hi})")
        if self.noise_seconds[0] <= 0:
            raise DataError(f"negatives: noise_seconds must be > 0, got {self.noise_seconds}")
        unknown = set(self.generated) - set(GENERATED)
        if unknown or not (self.generated or self.noise_files):
            raise DataError(f"negatives: generated noise must be among {', '.join(GENERATED)}, got {self.generated}")
        if self.format not in ("jsonl", "json"):
            raise DataError(f"negatives: format must be 'jsonl' or 'json', got {self.format!r}")


@dataclass
class Entry:
    audio: Path
    text: str
    answer: str | None
    is_query: bool


def read_manifest(path: Path) -> list[Entry]:
    if not path.is_file():
        raise DataError(f"{path}: no such manifest")
    entries = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{where}: broken JSON line ({exc})", "broken_json") from None
        if not isinstance(row, dict) or not isinstance(row.get("audio"), str):
            raise DataError(f"{where}: each line needs an 'audio' path", "schema")
        answer = row.get("answer")
        is_query = bool(row.get("is_query", answer is not None))
        if is_query and not isinstance(answer, str):
            raise DataError(f"{where}: a query (is_query true) needs a string 'answer'", "schema")
        audio = path.parent / row["audio"]
        if not audio.is_file():
            raise DataError(f"{where}: missing audio file {audio}", "missing_media")
        entries.append(Entry(audio, str(row.get("text", "")), answer, is_query))
    if not entries:
        raise DataError(f"{path}: the manifest has no entries")
    return entries


def split_counts(total: int, ratio: tuple[float, ...]) -> list[int]:
    """Exact integer counts for a ratio (largest remainder; ties to the earlier kind)."""
    weights = np.asarray(ratio, dtype=np.float64) / sum(ratio)
    raw = weights * total
    counts = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - counts), kind="stable")[: total - counts.sum()]:
        counts[i] += 1
    return counts.tolist()


# -- noise ------------------------------------------------------------------------------------------------------------


def _unit_rms(x: np.ndarray) -> np.ndarray:
    rms = float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))
    return (x / rms).astype(np.float32) if rms > 0 else x.astype(np.float32)


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS noise with 1/f power (white noise shaped in the frequency domain)."""
    spectrum = np.fft.rfft(rng.standard_normal(n))  # [n // 2 + 1]
    f = np.arange(spectrum.shape[0], dtype=np.float64)
    f[0] = 1.0
    return _unit_rms(np.fft.irfft(spectrum / np.sqrt(f), n=n))


def _loop_crop(x: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    if x.shape[0] < n:
        x = np.tile(x, -(-n // x.shape[0]))
    start = int(rng.integers(0, x.shape[0] - n + 1))
    return x[start : start + n]


class NoiseBank:
    """Unit-RMS noise of any length, from files or generated, chosen with the generator given."""

    def __init__(self, files: list[Path], generated: tuple[str, ...], speech: list[np.ndarray]) -> None:
        self.clips = {str(p): _unit_rms(load_audio(p).numpy()) for p in files}
        self.generated = generated if not files else ()
        self.speech = speech

    @property
    def names(self) -> list[str]:
        return list(self.clips) + list(self.generated)

    def draw(self, n: int, rng: np.random.Generator, exclude: int | None = None) -> tuple[np.ndarray, str]:
        """Unit-RMS noise [n] and its name; `exclude`: a speech clip babble must not contain (the one mixed)."""
        name = self.names[int(rng.integers(len(self.names)))]
        if name in self.clips:
            return _unit_rms(_loop_crop(self.clips[name], n, rng)), name
        if name == "white":
            return _unit_rms(rng.standard_normal(n)), name
        if name == "pink":
            return pink_noise(n, rng), name
        return self.babble(n, rng, exclude), name

    def babble(self, n: int, rng: np.random.Generator, exclude: int | None, talkers: int = 4) -> np.ndarray:
        others = [i for i in range(len(self.speech)) if i != exclude]
        if len(others) >= 2:
            picks = rng.choice(others, size=talkers, replace=len(others) < talkers)
            return _unit_rms(sum(_unit_rms(_loop_crop(self.speech[i], n, rng)) for i in picks))
        t = np.arange(n) / SAMPLE_RATE
        voices = [pink_noise(n, rng) * (1 + np.sin(2 * np.pi * rng.uniform(3, 6) * t + rng.uniform(0, 6.3)))
                  for _ in range(talkers)]
        return _unit_rms(sum(voices))


def mix_at_snr(speech: np.ndarray, noise: np.ndarray, snr_db: float) -> tuple[np.ndarray, float]:
    """(gain x (speech + noise scaled to snr_db), gain): gain < 1 only when the mixture would clip."""
    p_speech = float(np.mean(speech.astype(np.float64) ** 2))
    if p_speech <= 0:
        raise DataError("negatives: a speech clip is silent (no SNR can be set)")
    p_noise = float(np.mean(noise.astype(np.float64) ** 2))
    mix = speech + noise * np.sqrt(p_speech / (p_noise * 10 ** (snr_db / 10)))
    peak = float(np.abs(mix).max())
    gain = PEAK / peak if peak > PEAK else 1.0
    return (mix * gain).astype(np.float32), gain


# -- generation -------------------------------------------------------------------------------------------------------


def _record(i: int, kind: str, rel: str, reply: str, **meta: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "set": "negatives", "id": f"neg-{i:05d}", "kind": kind, "audio": rel,
        "conversations": [{"from": "human", "value": "<audio>"}, {"from": "gpt", "value": reply}],
    }
    if kind != "query":
        record["inserted_id"] = 1  # the reply is "<2>" + end-of-sequence
    record.update(meta)
    return record


def generate_negatives(cfg: NegativesConfig) -> Path:
    """Write the audio files and the data file; returns the data file's path."""
    entries = read_manifest(cfg.manifest)
    queries = [e for e in entries if e.is_query]
    chatter = [e for e in entries if not e.is_query]
    total = cfg.num_samples if cfg.num_samples is not None else len(entries)
    counts = dict(zip(KINDS, split_counts(total, cfg.ratio), strict=True))
    for kind, pool in (("query", queries), ("chatter", chatter)):
        if counts[kind] and not pool:
            raise DataError(f"{cfg.manifest}: {counts[kind]} {kind} samples requested but the manifest has no "
                            f"{'entries with an answer' if kind == 'query' else 'non-query entries'}")
    rng = np.random.default_rng(cfg.seed)
    waves = {str(e.audio): load_audio(e.audio).numpy() for e in entries}  # [n] float32 at 16 kHz each
    keys = list(waves)
    bank = NoiseBank(cfg.noise_files, tuple(cfg.generated), list(waves.values()))
    plan = [k for k in KINDS for _ in range(counts[k])]
    plan = [plan[i] for i in rng.permutation(len(plan))]
    audio_dir = cfg.out_dir / "audio"
    audio_dir.mkdir(parents=True, exist_ok=True)
    used = {"query": 0, "chatter": 0}
    records = []
    for i, kind in enumerate(plan):
        rel = f"audio/{i:05d}_{kind}.wav"
        if kind == "noise":
            n = int(round(rng.uniform(*cfg.noise_seconds) * SAMPLE_RATE))
            noise, name = bank.draw(n, rng)
            level = float(rng.uniform(*cfg.noise_level_db))
            wave = noise * 10 ** (level / 20)
            peak = float(np.abs(wave).max())
            wave = wave * (PEAK / peak) if peak > PEAK else wave
            records.append(_record(i, kind, rel, "", noise=name, level_db=round(level, 3)))
        else:
            pool = queries if kind == "query" else chatter
            entry = pool[used[kind] % len(pool)]
            used[kind] += 1
            speech = waves[str(entry.audio)]
            noise, name = bank.draw(speech.shape[0], rng, exclude=keys.index(str(entry.audio)))
            snr = float(rng.uniform(*cfg.snr_db))
            wave, gain = mix_at_snr(speech, noise, snr)
            reply = entry.answer if kind == "query" else ""
            records.append(_record(i, kind, rel, reply or "", noise=name, snr_db=round(snr, 3), gain=round(gain, 6),
                                   text=entry.text, speech=str(entry.audio)))
        sf.write(str(cfg.out_dir / rel), wave.astype(np.float32), SAMPLE_RATE, subtype="PCM_16")
    out = cfg.out_dir / f"negatives.{cfg.format}"
    if cfg.format == "json":
        out.write_text(json.dumps(records, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    else:
        out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return out
