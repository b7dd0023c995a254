"""train/chat_twice.json: the mini_chat records of instruct.json, an extra stage-3 source (the chat given twice)."""
import json, sys
from pathlib import Path
d = Path(sys.argv[1])
recs = json.loads((d / "train/instruct.json").read_text())
chat = [r for r in recs if r.get("set") == "mini_chat"]
print(f"{len(chat)} chat records of {len(recs)}")
(d / "train/chat_twice.json").write_text(json.dumps(chat))
