"""The vote's settings from `score.py`'s files, never from the eval split: word error rate of the words used on the
synthetic and the real development clips for a grid of (scale, weight, margin), and how many noise clips would be heard
as words; printed best first by the sum of the two rates, then the rule vita-mini had before the vote.
    python recipes/mini/ears_vote/choose.py SYNTHETIC.json REAL.json NOISE.json
(2026-12-08: scale 0.5, weight 0.5, margin 0.2 from the middle of the plateau: 25.8 / 25.6 % against 29.7 / 34.9 %.)"""
import json
import sys

synthetic, real, noise = (json.load(open(p)) for p in sys.argv[1:4])
NO_SPEECH = 0.6  # TranscriberConfig.no_speech_threshold


def wer(cases, pick):
    errors = words = 0
    for c in cases:
        k = pick(c)
        errors, words = errors + c["e" + k][0], words + c["e" + k][1]
    return 100 * errors / max(words, 1)


def before(c):
    return "W" if c["sure"] else "R"


def rule(scale, weight, margin):  # as WhisperTranscriber.choose
    def pick(c):
        if c["no_speech"] >= NO_SPEECH or not c["R"]:
            return before(c)
        cw, cr = c["cW"][scale], c["cR"][scale]
        if not c["W"] or (cr is not None and cw is None):
            return "R"
        if cr is None:
            return "W"
        return "R" if (cr - cw) + weight * (c["wR"] - c["wW"]) > margin else "W"
    return pick


rows = []
for scale in ("0.2", "0.5", "1.0"):
    for weight in (0.25, 0.5, 0.75, 1.0, 1.5, 2.0):
        for margin in (-0.4, -0.2, -0.1, 0.0, 0.1, 0.2, 0.4):
            p = rule(scale, weight, margin)
            rows.append((wer(synthetic, p) + wer(real, p), wer(synthetic, p), wer(real, p),
                         sum(bool(c[p(c)]) for c in noise), scale, weight, margin))
print("sum, synthetic, real, noise heard as words, scale, weight, margin")
for r in sorted(rows)[:12]:
    print(f"{r[0]:.1f}  {r[1]:.1f}  {r[2]:.1f}  {r[3]}  {r[4]} {r[5]} {r[6]}")
print(f"before the vote: {wer(synthetic, before):.1f}  {wer(real, before):.1f}  "
      f"{sum(bool(c[before(c)]) for c in noise)}")
