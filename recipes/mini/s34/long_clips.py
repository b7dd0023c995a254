"""s29: long transcriptions for stage 3, made from the heard-target clips (train/audio_align_heard.json).

Clips of one voice (the voice's name, rate/pitch apart) are joined with 0.1-0.6 s of silence into 8-26 s recordings;
the target is their heard transcripts in order. Seeded; writes DATA/train/media/long/*.wav and
DATA/train/audio_long.json.
usage: python long_clips.py DATA [N]
"""
import json
import random
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

data = Path(sys.argv[1]) / "train"
n_out = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
rng = random.Random(29)
speech = {json.loads(line)["audio"]: json.loads(line) for line in open(data / "speech.jsonl")}
heard = json.load(open(data / "audio_align_heard.json"))
groups: dict[str, list[tuple[str, str, float]]] = {}
for r in heard:
    meta = speech[r["audio"]]
    text = r["conversations"][1]["value"].removeprefix("<3>").strip()
    groups.setdefault(meta["voice"].split(" ")[0], []).append((r["audio"], text, meta["seconds"]))
voices = sorted(groups)
weights = [len(groups[v]) ** 0.5 for v in voices]  # piper:joe (751 clips) less dominant than its share
(data / "media" / "long").mkdir(parents=True, exist_ok=True)
records, seconds = [], []
for i in range(n_out):
    voice = rng.choices(voices, weights)[0]
    pool = groups[voice][:]
    rng.shuffle(pool)
    target = rng.uniform(8.0, 26.0)
    parts, texts, total = [], [], 0.0
    for audio, text, sec in pool:
        if parts and total + sec > 26.0:
            continue
        pcm, rate = sf.read(data / audio, dtype="int16")
        assert rate == 16000, (audio, rate)
        if parts:
            gap = np.zeros(int(rng.uniform(0.1, 0.6) * rate), np.int16)
            parts.append(gap)
            total += len(gap) / rate
        parts.append(pcm)
        texts.append(text)
        total += len(pcm) / rate
        if total >= target:
            break
    if len(texts) < 2:
        continue
    name = f"media/long/l{i:05d}.wav"
    sf.write(data / name, np.concatenate(parts), 16000, subtype="PCM_16")
    records.append({"set": "mini_asr_long", "id": f"long{i}", "audio": name, "conversations": [
        {"from": "human", "value": "Transcribe the speech.<audio>"},
        {"from": "gpt", "value": "<3>" + " ".join(texts)}]})
    seconds.append(total)
json.dump(records, open(data / "audio_long.json", "w"), indent=1)
print(f"{len(records)} long clips, {np.mean(seconds):.1f} s mean, {max(seconds):.1f} s max, "
      f"{np.mean([len(r['conversations'][1]['value'].split()) for r in records]):.0f} words mean")
