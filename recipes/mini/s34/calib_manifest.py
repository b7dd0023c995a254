"""A calibration manifest from TRAINING records only (DATA/train), the first N of each kind in file order.
usage: python calib_manifest.py DATA N  -> DATA/train/calib.jsonl"""
import json, sys
from pathlib import Path

train = Path(sys.argv[1]) / "train"; n = int(sys.argv[2])
out = []

def media(r):
    m = {}
    if "image" in r: m["image"] = r["image"]
    if "video" in r: m["video"] = r["video"]
    return m

def case(r, kind, expect):
    audio = r["audio"] if isinstance(r["audio"], list) else [r["audio"]]
    convs, ai, history = r["conversations"], 0, []
    for turn in convs[:-2]:
        if turn["from"] == "human":
            if "<audio>" in turn["value"]:
                history.append({"role": "user", "audio": audio[ai]}); ai += 1; last = "<1>"
            else:
                history.append({"role": "user", "text": turn["value"]}); last = "<3>"
        else:
            history.append({"role": "assistant", "text": last + turn["value"]})
    expect = "<2>" if not convs[-1]["value"].strip() else "<1>"  # an empty reply is a not-query
    c = {"id": f"{kind}-{r['id']}", "group": f"calib/{kind}", "audio": audio[ai], "expect_state": expect, **media(r)}
    q = convs[-2]["value"].replace("<audio>", "").replace("<image>", "").replace("<video>", "").strip()
    if q: c["text"] = q
    if history: c["history"] = history
    return c

ins = json.load(open(train / "instruct.json"))
neg = [r for r in ins if r["set"] == "mini_negatives"][:n]
spoken = [r for r in ins if "audio" in r and r["set"] != "mini_negatives"][: 2 * n]
addressed = json.load(open(train / "addressed.json"))[:n]
dialogue = [r for r in json.load(open(train / "dialogue.json")) if r["kind"] == "negative"][:n]
out += [case(r, "negative", "<2>") for r in neg] + [case(r, "addressed", "<2>") for r in addressed]
out += [case(r, "dialogue", "<2>") for r in dialogue] + [case(r, "spoken", "<1>") for r in spoken]
(train / "calib.jsonl").write_text("".join(json.dumps(c) + "\n" for c in out))
print(len(out), "cases ->", train / "calib.jsonl")
