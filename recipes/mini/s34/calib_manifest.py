"""A calibration manifest from TRAINING records only (DATA/train), the first N of each kind in file order: noise,
chatter and queries of the negatives, speech addressed to someone else, not-queries after an exchange, 2 N spoken
queries, and spoken follow-up queries after an exchange (s36 on; s34 had none, so its one bias took turns after an
exchange for not-queries: `state_bias` now calibrates the two kinds apart). A case expects `<2>` where the record's
reply is empty, else `<1>`.
usage: python calib_manifest.py DATA N  -> DATA/train/calib.jsonl"""
import json
import sys
from pathlib import Path

train, n = Path(sys.argv[1]) / "train", int(sys.argv[2])


def case(r: dict, kind: str) -> dict:
    audio = r["audio"] if isinstance(r["audio"], list) else [r["audio"]]
    convs, used, history, last = r["conversations"], 0, [], "<3>"
    for turn in convs[:-2]:  # the turns before the last exchange: the history
        if turn["from"] == "human" and "<audio>" in turn["value"]:
            history.append({"role": "user", "audio": audio[used]})
            used, last = used + 1, "<1>"
        elif turn["from"] == "human":
            history.append({"role": "user", "text": turn["value"]})
            last = "<3>"
        else:
            history.append({"role": "assistant", "text": last + turn["value"]})
    c = {"id": f"{kind}-{r['id']}", "group": f"calib/{kind}", "audio": audio[used],
         "expect_state": "<2>" if not convs[-1]["value"].strip() else "<1>"}
    for key in ("image", "video"):
        if key in r:
            c[key] = r[key]
    question = convs[-2]["value"]
    for tag in ("<audio>", "<image>", "<video>"):
        question = question.replace(tag, "")
    if question.strip():
        c["text"] = question.strip()
    if history:
        c["history"] = history
    return c


instruct = json.loads((train / "instruct.json").read_text())
negatives = [r for r in instruct if r["set"] == "mini_negatives"][:n]
spoken = [r for r in instruct if "audio" in r and r["set"] != "mini_negatives"][: 2 * n]
addressed = json.loads((train / "addressed.json").read_text())[:n]
dialogue_records = json.loads((train / "dialogue.json").read_text())
dialogue = [r for r in dialogue_records if r["kind"] == "negative"][:n]
followups = [r for r in dialogue_records  # spoken ones: a typed turn's `<3>` is forced, no state is decided
             if r["kind"] == "query" and "<audio>" in r["conversations"][-2]["value"]][:n]
cases = ([case(r, "negative") for r in negatives] + [case(r, "addressed") for r in addressed]
         + [case(r, "dialogue") for r in dialogue] + [case(r, "spoken") for r in spoken]
         + [case(r, "followup") for r in followups])
(train / "calib.jsonl").write_text("".join(json.dumps(c) + "\n" for c in cases))
print(len(cases), "cases ->", train / "calib.jsonl")
