"""Development clips for choosing how vita-mini's two ears vote (`TranscriberConfig.vote_*`), never the eval split:
90 clips by training voices (espeak-ng training bases x variants at eval rates and pitches: the read-out heard such
voices, a bias towards it that the real-speech dev split weighs against), two thirds sentences written for this set,
one third training questions; clean / pink noise 5-15 dB / telephone thirds. And OUT/noise.jsonl: the first 40
pure-noise negatives of DATA's training records (transcript "-": only whether words are heard counts).
    python recipes/mini/ears_vote/make_dev.py DATA OUT   -> OUT/dev.jsonl + OUT/media/
(DATA: a `vita data mini` folder, for its training questions)"""
import json
import random
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from vita.datasets import augment as A
from vita.datasets.mini.speech import TRAIN_BASES, TRAIN_VARIANTS, EspeakVoice

data, out = Path(sys.argv[1]), Path(sys.argv[2])
(out / "media").mkdir(parents=True, exist_ok=True)
rng, nrng = random.Random(4949), np.random.default_rng(4949)
FRESH = [
    "The kettle is already boiling in the kitchen.", "Could you turn the heating down a little?",
    "My sister moved to a small town near the coast.", "We missed the last bus and walked home.",
    "The garden looks lovely after all that rain.", "How long does it take to bake bread?",
    "I left my umbrella on the train this morning.", "Where can I buy fresh fish around here?",
    "The concert starts at half past seven tonight.", "Please remind me to call the dentist tomorrow.",
    "Our neighbours have a very noisy parrot.", "What is the best way to learn to swim?",
    "The bridge was closed for repairs all week.", "Is it going to snow over the weekend?",
    "He painted the fence a bright shade of green.", "Which road leads to the old castle?",
    "The museum is free on the first Sunday of the month.", "Can you recommend a good book about space?",
    "She always drinks her coffee without sugar.", "Why do cats like sitting in boxes?",
    "The children built a tall tower of blocks.", "How far is the nearest petrol station?",
    "I would like a table for four people, please.", "The library closes early on Fridays.",
    "What time does the pharmacy open?", "The wind blew all the leaves off the tree.",
    "Let's meet outside the cinema at eight.", "Who wrote the song we heard on the radio?",
    "The soup needs a little more salt.", "Do you know where I put my glasses?",
]
train = [json.loads(line)["text"] for line in open(data / "train/speech.jsonl")]
train_q = sorted({t for t in train if t.endswith("?") and len(t.split()) >= 4})
cases = []
for i in range(90):
    text = FRESH[i % 30] if i % 3 != 2 else rng.choice(train_q)
    voice = EspeakVoice(f"{rng.choice(TRAIN_BASES)}+{rng.choice([v for v in TRAIN_VARIANTS if v])}",
                        speed=rng.randint(140, 190), pitch=rng.randint(35, 65))
    pcm = voice(text)
    kind = ("clean", "noisy", "telephone")[i % 3]
    if kind == "noisy":
        pcm = A.add_noise(pcm, A.make_noise("pink", len(pcm), nrng, []), float(nrng.uniform(5, 15)))
    elif kind == "telephone":
        pcm = A.telephone(pcm)
    name = f"media/dev_{i:03d}.wav"
    sf.write(out / name, pcm, 16000)
    cases.append({"id": f"dev-{i}", "audio": name, "text": "Transcribe the speech.", "expect_state": "<3>",
                  "transcript": text, "group": f"dev/{kind}", "voice": voice.name})
(out / "dev.jsonl").write_text("".join(json.dumps(c) + "\n" for c in cases))
noise = [r for r in json.load(open(data / "train/instruct.json")) if r.get("kind") == "noise"][:40]
rows = [{"id": r["id"], "audio": str((data / "train" / r["audio"]).resolve()), "transcript": "-", "group": "noise"}
        for r in noise]
(out / "noise.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
print(len(cases), len(noise))
