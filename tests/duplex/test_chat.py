"""`vita chat` as a terminal conversation over stdin, on tiny random weights (answers teacher-forced or free)."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import numpy as np
import soundfile as sf

from vita.cli import main


def test_chat_over_a_pipe(voices, tmp_path):
    """A real pipe into `python -m vita.cli chat`: text, a bad /image, /audio, text, then EOF."""
    sf.write(tmp_path / "q.wav", voices["question"], 16000)
    lines = ["Hello there", f"/image {tmp_path / 'missing.png'}", f"/audio {tmp_path / 'q.wav'}", "And tomorrow?"]
    cmd = [sys.executable, "-m", "vita.cli", "chat", "--model", "tiny-random", "--speak", str(tmp_path / "a.wav"),
           "--script", "<3> Hello, how can I help?", "--script", "<1> It is sunny today.", "--script", "<3> Rain."]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(cmd, input="\n".join(lines) + "\n", capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.splitlines()
    assert out == ["vita [<3>]: Hello, how can I help?", "vita [<1>]: It is sunny today.", "vita [<3>]: Rain."]
    err = proc.stderr.splitlines()
    errors = [e for e in err if e.startswith("error:")]
    assert len(errors) == 1 and "missing.png" in errors[0] and "Traceback" not in proc.stderr
    status = [e for e in err if e.startswith("[turn")]
    assert [s.split("|")[1].strip() for s in status] == ["history 2 turns", "history 4 turns", "history 6 turns"]
    assert " 0 reused" not in status[2]  # the third prompt reused the cached history
    wav, rate = sf.read(tmp_path / "a.wav")
    assert rate == 16000 and len(wav) / rate > 1.5 and np.abs(wav).max() > 0.05


def _chat(monkeypatch, capsys, stdin: str, *args: str) -> tuple[int, list[str], list[str]]:
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = main(["chat", "--model", "tiny-random", "--max-new-tokens", "6", *args])
    got = capsys.readouterr()
    return code, got.out.splitlines(), got.err.splitlines()


def test_free_answers_image_and_quit(monkeypatch, capsys, tmp_path):
    from PIL import Image

    Image.fromarray(np.full((32, 32, 3), 90, np.uint8)).save(tmp_path / "grey.png")
    (tmp_path / "bad.png").write_bytes(b"not a png")
    stdin = f"/image {tmp_path / 'grey.png'}\nwhat is this?\n/image {tmp_path / 'bad.png'}\n/nope\nagain\n/quit\nlost\n"
    code, out, err = _chat(monkeypatch, capsys, stdin)
    assert code == 0
    assert len(out) == 2 and all(line.startswith("vita [") for line in out)  # random weights: some answer
    assert "[image attached: grey.png]" in err
    errors = [e for e in err if e.startswith("error:")]
    assert len(errors) == 2 and "bad.png" in errors[0] and "/nope" in errors[1]
    assert [e.split("|")[1].strip() for e in err if e.startswith("[turn")] == ["history 2 turns", "history 4 turns"]


def test_audio_argument_and_bad_files(monkeypatch, capsys, voices, tmp_path):
    sf.write(tmp_path / "q.wav", voices["question"], 16000)
    code, out, err = _chat(monkeypatch, capsys, "", "--audio", str(tmp_path / "q.wav"), "--script", "<1> Sunny.",
                           "--max-new-tokens", "40")
    assert code == 0 and out == ["you (audio): q.wav", "vita [<1>]: Sunny."]
    code, out, err = _chat(monkeypatch, capsys, "", "--audio", str(tmp_path / "none.wav"))
    assert code == 2 and out == [] and err == [f"error: audio {tmp_path / 'none.wav'}: no such file"]
