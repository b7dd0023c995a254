"""train/chat_twice.json: the mini_chat records of instruct.json as a stage-3 source of their own (the chat given twice
where its weight is > 0; s31 and s32 weigh it 0). usage: python chat_twice.py DATA"""
import json
import sys
from pathlib import Path

data = Path(sys.argv[1])
records = json.loads((data / "train/instruct.json").read_text())
chat = [r for r in records if r.get("set") == "mini_chat"]
print(f"{len(chat)} chat records of {len(records)}")
(data / "train/chat_twice.json").write_text(json.dumps(chat))
