"""Per clip of a manifest with transcripts: Whisper's greedy words W and the CTC read-out's words R of vita-mini, each
scored by both ears (Whisper: teacher-forced mean log-prob, `WhisperDecoder.score`; the read-out: CTC log-likelihood
per row at several scales, `AudioAdapter.listen` -> `ReadOut.ctc`), and each one's word errors: what `choose.py`
picks a rule from.
    python recipes/mini/ears_vote/score.py MANIFEST OUT.json"""
import json
import sys
from pathlib import Path

import torch

import vita
from vita.eval.metrics import edit_counts

SCALES = (0.05, 0.1, 0.2, 0.5, 1.0)
torch.set_num_threads(1)
manifest = Path(sys.argv[1])
vm = vita.load("vita-mini")
m, tr = vm.model, vm.model.transcriber
emb = m.llm.tok_embeddings.weight
out = []
with torch.no_grad():
    for line in open(manifest):
        case = json.loads(line)
        if not case.get("transcript"):
            continue
        feats = vm.processor.audio_features(manifest.parent / case["audio"])
        rows = m._clip_rows(feats)
        read_out = m.audio_adapter.listen(rows, emb)
        r_ids = read_out.ids
        R = vm.tokenizer.decode(r_ids).strip()
        states = tr.states(m.audio_encoder, feats)
        t = tr.decoder.transcribe(states, max_tokens=2 * len(rows))
        W = tr.text(t.ids)
        w_ids = vm.tokenizer.encode(W, add_special_tokens=False) if W else []

        def ctc(ids, read_out=read_out):
            return {str(s): read_out.ctc(ids, s) if ids else None for s in SCALES}

        ref = case["transcript"]
        out.append({"id": case["id"], "group": case.get("group"), "ref": ref, "W": W, "R": R, "sure": tr.sure(t),
                    "avg_logprob": t.avg_logprob, "no_speech": t.no_speech,
                    "wW": tr.decoder.score(states, t.ids),
                    "wR": tr.decoder.score(states, tr.encode_whisper(R)) if R else None,
                    "cW": ctc(w_ids), "cR": ctc(r_ids),
                    "eW": edit_counts(ref, W)[:2], "eR": edit_counts(ref, R)[:2]})
        print(case["id"], out[-1]["eW"][0], out[-1]["eR"][0], "|", W, "|", R, flush=True)
Path(sys.argv[2]).write_text(json.dumps(out))
