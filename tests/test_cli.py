"""The `vita` command line: JSON output, and one clear error line (never a traceback) for each bad input."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from vita.cli import main

EXAMPLES = __import__("pathlib").Path(__file__).resolve().parents[1] / "examples"


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.reference
def test_generate_json_matches_official_greedy_ids(capsys, ref_root, ref_index):
    case = next(c for c in ref_index["full_cases"] if c["kind"] == "image" and c["audio_index"] is not None)
    rc, out, err = _run(
        capsys, "generate", "--model", str(ref_root / "checkpoint"),
        "--image", str(ref_root / ref_index["images"][case["image_index"]]["file"]),
        "--audio", str(ref_root / ref_index["audios"][case["audio_index"]]["file"]),
        "--max-new-tokens", str(len(case["generated_ids"])), "--json",
    )
    assert rc == 0, err
    result = json.loads(out)
    assert set(result) >= {"state", "text", "token_ids"}
    assert result["token_ids"] == case["generated_ids"]


def test_generate_streams_text_on_tiny_random(capsys):
    rc, out, err = _run(capsys, "generate", "--model", "tiny-random", "--prompt", "hi", "--max-new-tokens", "4")
    assert rc == 0 and "[state" in err


@pytest.fixture
def bad_inputs(tmp_path):
    """A bad file of each kind, and what the error must say."""
    img = tmp_path / "photo.png"
    Image.new("RGB", (64, 48), (10, 20, 30)).save(img)
    truncated_png = tmp_path / "truncated.png"
    truncated_png.write_bytes(img.read_bytes()[:60])
    corrupt_png = tmp_path / "corrupt.png"
    corrupt_png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    video = tmp_path / "clip.mp4"
    shutil.copy(EXAMPLES / "moving_dot.mp4", video)
    truncated_mp4 = tmp_path / "truncated.mp4"
    truncated_mp4.write_bytes(video.read_bytes()[:700])
    random_mp4 = tmp_path / "random.mp4"
    random_mp4.write_bytes(np.random.default_rng(0).bytes(4000))
    empty_wav = tmp_path / "empty.wav"
    sf.write(empty_wav, np.zeros(0, dtype=np.float32), 16000, subtype="PCM_16")
    truncated_wav = tmp_path / "truncated.wav"
    truncated_wav.write_bytes((EXAMPLES / "emoji_question.wav").read_bytes()[:30])
    return {
        "truncated image": (["--image", str(truncated_png)], "truncated.png"),
        "corrupt image": (["--image", str(corrupt_png)], "corrupt.png"),
        "missing image": (["--image", str(tmp_path / "nope.jpg")], "nope.jpg"),
        "truncated video": (["--video", str(truncated_mp4)], "truncated.mp4"),
        "corrupt video": (["--video", str(random_mp4)], "random.mp4"),
        "empty audio": (["--audio", str(empty_wav)], "empty.wav"),
        "truncated audio": (["--audio", str(truncated_wav)], "truncated.wav"),
        "missing model": (["--model", str(tmp_path / "no-model")], "no-model"),
    }


@pytest.mark.parametrize("kind", ["truncated image", "corrupt image", "missing image", "truncated video",
                                  "corrupt video", "empty audio", "truncated audio", "missing model"])
def test_bad_input_gives_one_clear_error(capsys, bad_inputs, kind):
    extra, name = bad_inputs[kind]
    argv = ["generate", "--max-new-tokens", "2", "--prompt", "q"]
    argv += extra if "--model" in extra else ["--model", "tiny-random", *extra]
    rc, out, err = _run(capsys, *argv)
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and name in lines[0], err
    assert "Traceback" not in err


@pytest.mark.parametrize("rate,channels", [(8000, 1), (16000, 2)])
def test_8khz_or_stereo_audio(capsys, tmp_path, rate, channels):
    """Resampled / down-mixed by default; with --strict-audio a clear error naming the file and the problem."""
    t = np.arange(rate) / rate
    wave = 0.3 * np.sin(2 * np.pi * 440 * t)
    path = tmp_path / f"clip_{rate}_{channels}.wav"
    sf.write(path, np.stack([wave] * channels, axis=1) if channels > 1 else wave, rate, subtype="PCM_16")
    base = ["generate", "--model", "tiny-random", "--audio", str(path), "--max-new-tokens", "2"]
    rc, out, err = _run(capsys, *base)
    assert rc == 0, err
    rc, out, err = _run(capsys, *base, "--strict-audio")
    assert rc == 2 and path.name in err
    assert ("8000 Hz" in err) if rate == 8000 else ("2 channels" in err or "stereo" in err), err


def test_more_placeholders_than_media(capsys):
    rc, out, err = _run(capsys, "generate", "--model", "tiny-random", "--prompt", "<image><image> what?",
                        "--image", str(EXAMPLES / "emoji.png"))
    assert rc == 2 and "more <image> placeholders than image inputs" in err
