"""The voice page (`GET /` -> /static/index.html) driven in headless Chromium against a real uvicorn.

Chromium's fake microphone plays a WAV made here (Piper speech at 16 kHz, once: `%noloop`) and its fake camera
gives frames. Tiny random weights; replies are teacher-forced per connection (a typed "say X" is answered "X",
spoken questions take the scripts in order), as in `test_realtime.py`; the forcing also records what each prompt's
last turn held (`Seen`), so a test sees on the server side which image a question carried. The page reports
through its `window` hooks (vitaState, transcript, playback, vitaEvents, vitaLatencies). Needs Debian's
`chromium` and the `playwright` package (never `playwright install`).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("piper", reason="the speech extra (Piper) makes the spoken questions")
pytest.importorskip("onnxruntime")

from vita.duplex.roles import Script, ScriptedReplies  # noqa: E402
from vita.duplex.session import SessionConfig  # noqa: E402
from vita.processor import Image, Turn  # noqa: E402
from vita.server.audio_out import SpeechOut  # noqa: E402
from vita.server.engine import Engine  # noqa: E402
from vita.server.realtime import RealtimeConfig  # noqa: E402
from vita.speech.echo import GateConfig  # noqa: E402
from vita.speech.vad import VADConfig  # noqa: E402

CHROMIUM = os.environ.get("VITA_CHROMIUM") or shutil.which("chromium") or "/usr/lib/chromium/chromium"
needs_chromium = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                    reason="no Chromium: apt-get install chromium (or set VITA_CHROMIUM)")

KEY = "page-key"
SHORT = "<1> Here is one, about a cat."
LONG = "<1> " + " ".join(["The weather today is sunny and warm, with a light breeze from the west."] * 4)
RATE = 16000


@pytest.fixture(scope="module")
def piper():
    from vita.speech.tts import PiperSynth

    return PiperSynth(out_rate=24000), PiperSynth(out_rate=RATE)


def write_wav(path: Path, *pieces: str | float, synth) -> Path:
    """Speech (str) and silence (float seconds) at 16 kHz, pcm16 mono."""
    import soundfile as sf

    pcm = [0.5 * synth(p) if isinstance(p, str) else np.zeros(int(p * RATE), np.float32) for p in pieces]
    sf.write(path, np.concatenate(pcm), RATE, subtype="PCM_16")
    return path


Seen = list[tuple[str, list]]  # per reply prompt: the last turn's text and its images (PIL, as the server decoded)


def forcing_factory(scripts: list[str], seen: Seen | None = None):
    def make():
        replies = ScriptedReplies(list(scripts))

        def forcing(turns):
            content = turns[-1].content
            if seen is not None:
                parts = [content] if isinstance(content, str) else content
                seen.append((" ".join(p for p in parts if isinstance(p, str)),
                             [p.source for p in parts if isinstance(p, Image)]))
            for part in [content] if isinstance(content, str) else content:
                if isinstance(part, str) and part.startswith("say "):
                    return Script("<1> " + part[4:])
            return replies(turns)
        return forcing
    return make


def serve(kit, model, piper, scripts: list[str], seen: Seen | None = None):
    # The server's echo gate is off: the fake mic has no acoustic path from the speaker (and the page's own
    # echoCancellation runs); with the gate on, a barge-in during the reply was refused in about 1 run of 3 here.
    config = RealtimeConfig(forcing=forcing_factory(scripts, seen), session=lambda: SessionConfig(
        lead_s=0.2, vad=VADConfig(min_silence_ms=300), gate=GateConfig(enabled=False)))
    app = kit.make_app(Engine(model), api_key=KEY, speech=SpeechOut(factory=lambda: piper[0]), realtime=config)
    return kit.LiveServer(app)


def browser(wav: Path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (Python) for browser tests")
    args = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream", f"--use-file-for-fake-audio-capture={wav}%noloop",
            "--autoplay-policy=no-user-gesture-required"]
    pw = sync_api.sync_playwright().start()
    try:
        return pw, pw.chromium.launch(executable_path=CHROMIUM, args=args)
    except Exception:
        pw.stop()
        raise


def open_page(server, wav: Path, *, viewport: dict | None = None, init_script: str | None = None):
    pw, b = browser(wav)
    page = b.new_page(viewport=viewport) if viewport else b.new_page()
    if init_script:
        page.add_init_script(init_script)
    console: list[str] = []
    page.on("console", lambda m: console.append(f"{m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
    page.goto(f"{server.url}/?api_key={KEY}&camera=1")
    assert page.url.endswith(f"/static/index.html?camera=1#api_key={KEY}")  # the key only in the fragment
    page.click("#start")
    page.wait_for_function("window.vitaReady === true", timeout=10_000)

    def close():
        b.close()
        pw.stop()
    return page, console, close


def timeline(page) -> str:
    """For failure messages: the mic (# = louder than -30 dBFS, 40 ms a char) and the server events (ms)."""
    mic = "".join("#" if x > 0.03 else "." for x in page.evaluate("window.micLevels"))
    events = [(e["type"], round(e["t"])) for e in page.evaluate("window.vitaEvents") if "delta" not in e["type"]]
    return f"mic {mic}\nevents {events}"


def assistant(page) -> list[dict]:
    return [m for m in page.evaluate("window.transcript") if m["role"] == "assistant"]


def check_latencies(page, answers: list[dict]) -> list[int]:
    """Each answer that was heard shows its latency next to it, the same ms as `window.vitaLatencies`, and that is
    end of the user's turn (speech_stopped) -> the scheduled start of the answer's first sample."""
    hook = {x["response_id"]: x for x in page.evaluate("window.vitaLatencies")}
    events = page.evaluate("window.vitaEvents")
    starts = page.evaluate("window.playback.responses")
    shown = page.locator("#transcript .msg.assistant").evaluate_all(
        "rows => rows.map(r => r.querySelector('.latency')?.textContent ?? null)")
    assert len(shown) == len(answers)
    out = []
    for answer, badge in zip(answers, shown, strict=True):
        lat = hook[answer["id"]]
        assert lat["from"] == "speech_stopped" and lat["ms"] > 0 and answer["latencyMs"] == lat["ms"]
        assert badge == f"{lat['ms']} ms"
        created = next(e["t"] for e in events if e["type"] == "response.created" and e["response_id"] == answer["id"])
        stopped = max(e["t"] for e in events if e["type"] == "input_audio_buffer.speech_stopped" and e["t"] < created)
        assert abs(starts[answer["id"]]["startsAt"] - stopped - lat["ms"]) <= 1
        out.append(lat["ms"])
    assert len(hook) == len(answers)
    return out


def test_page_needs_no_key_but_the_api_does(kit, model, piper):
    with serve(kit, model, piper, []) as server:
        import httpx

        with httpx.Client(base_url=server.url) as http:
            r = http.get("/?camera=1")
            assert r.status_code == 307 and r.headers["location"] == "/static/index.html?camera=1"
            page = http.get("/static/index.html")
            assert page.status_code == 200 and '<script type="module" src="app.js">' in page.text
            for name in ("app.js", "audio.js", "worklet.js"):
                js = http.get(f"/static/{name}")
                assert js.status_code == 200 and "javascript" in js.headers["content-type"]
            assert http.get("/static/nope.js").status_code == 404
            assert http.get("/v1/models").status_code == 401


@needs_chromium
def test_spoken_question_is_answered_with_transcript_and_audio(kit, model, piper, tmp_path):
    wav = write_wav(tmp_path / "q.wav", 1.0, "What is the weather like today?", 4.0, synth=piper[1])
    with serve(kit, model, piper, [SHORT]) as server:
        page, console, close = open_page(server, wav)
        try:
            assert page.evaluate("window.vitaSession.input_audio_format") == {"type": "audio/pcm", "rate": 16000}
            page.wait_for_function("window.vitaState === 'speaking'", timeout=30_000)
            page.wait_for_function("window.transcript.some(m => m.role === 'assistant' && m.status === 'completed')"
                                   " && window.vitaState === 'listening'", timeout=30_000)
            (answer,) = assistant(page)
            assert answer["text"] == SHORT[4:]
            row = page.locator("#transcript .msg.assistant")
            assert row.locator(".who").inner_text() == "vita:" and row.locator(".text").inner_text() == SHORT[4:]
            (ms,) = check_latencies(page, [answer])
            assert ms < 30_000, timeline(page)
            # the camera is on: its frame at the start of the question went with it
            assert [(m["text"], m["image"]) for m in page.evaluate("window.transcript") if m["role"] == "user"] \
                == [("(spoken) [camera frame]", "camera")]
            pb = page.evaluate("window.playback")
            assert pb["chunksPlayed"] == pb["chunksScheduled"] > 0 and pb["stops"] == 0
            assert pb["secondsPlayed"] > 1.0  # the whole answer was heard
            assert pb["responses"][answer["id"]]["startsAt"] >= pb["responses"][answer["id"]]["firstAt"]
            levels = page.evaluate("window.micLevels")
            assert max(levels) > 0.05 and len(levels) > 50  # the mic streamed the question, 40 ms blocks
            # a typed question with the fake camera's current frame
            page.wait_for_function("document.getElementById('video').videoWidth > 0", timeout=5_000)
            assert page.evaluate("window.vitaSendText('say I see a frame.', true)") is True
            page.wait_for_function("window.transcript.filter(m => m.role === 'assistant' && "
                                   "m.status === 'completed').length === 2", timeout=30_000)
            assert assistant(page)[1]["text"] == "I see a frame."
            assert page.evaluate("window.vitaErrors") == [] and console == []
        finally:
            close()


# no camera frame with the spoken turns (each one's image work would come on top of the timing tested)
NO_FRAMES = "document.addEventListener('DOMContentLoaded', () => { document.getElementById('attach').checked = false })"


@needs_chromium
def test_barge_in_stops_playback_at_once(kit, model, piper, tmp_path):
    wav = write_wav(tmp_path / "barge.wav", 1.0, "What is the weather like today?", 3.5,
                    "Tell me a story about a cat.", 4.0, synth=piper[1])
    with serve(kit, model, piper, [LONG, SHORT]) as server:
        page, console, close = open_page(server, wav, init_script=NO_FRAMES)
        try:
            page.wait_for_function("window.transcript.filter(m => m.role === 'assistant' && "
                                   "m.status === 'completed').length === 1 && window.vitaState === 'listening'",
                                   timeout=40_000)
            answers = assistant(page)
            assert len(answers) == 2, (answers, timeline(page))
            first, second = answers
            assert first["status"] == "cancelled" and second["text"] == SHORT[4:]
            assert LONG[4:].startswith(first["text"].removesuffix(" …")) and len(first["text"]) > 2
            events = page.evaluate("window.vitaEvents")
            pb = page.evaluate("window.playback")
            starts = [e["t"] for e in events if e["type"] == "input_audio_buffer.speech_started"]
            assert len(starts) >= 2  # the VAD may split a question in two
            old = pb["responses"][first["id"]]
            assert old["played"] > 0  # the long answer was heard before the user talked over it
            assert pb["stops"] == 1 and pb["stopReason"] == "speech_started"
            barge = min(t for t in starts if t > old["firstAt"])  # the first onset while the answer played
            assert 0 <= pb["stoppedAt"] - barge < 50  # silenced in the same event handler
            assert old["lastAt"] <= pb["stoppedAt"]  # nothing of it was scheduled after the stop
            assert old["played"] < old["scheduled"] or pb["chunksStopped"] > 0
            (done,) = [e for e in events if e["type"] == "response.done" and e["response_id"] == first["id"]]
            assert done["status"] == "cancelled" and done["t"] >= pb["stoppedAt"]
            new = pb["responses"][second["id"]]
            assert new["firstAt"] > pb["stoppedAt"] and new["played"] == new["scheduled"] > 0
            check_latencies(page, answers)  # the cut answer was heard too: it has its latency
            assert page.evaluate("window.vitaErrors") == [] and console == []
        finally:
            close()


@needs_chromium
def test_picked_image_goes_with_the_next_typed_question(kit, model, piper, tmp_path, monkeypatch):
    from PIL import Image as PILImage

    picture = tmp_path / "cat.png"
    picture.write_bytes(kit.png(123, 77, seed=7))  # not the fake camera's 320x240
    expected = model.processor([Turn("user", [Image(PILImage.open(picture)), "?"])]).pixel_values  # [N, 3, S, S]
    pixels: list = []  # what the vision tower was given
    encode = model.model.encode_images
    monkeypatch.setattr(model.model, "encode_images",
                        lambda px, *rest: pixels.append(px.detach().clone()) or encode(px, *rest))
    seen: Seen = []
    wav = write_wav(tmp_path / "quiet.wav", 2.0, synth=piper[1])
    with serve(kit, model, piper, [], seen) as server:
        page, console, close = open_page(server, wav)
        try:
            page.wait_for_function("document.getElementById('video').videoWidth > 0", timeout=5_000)
            assert page.locator("#preview").is_hidden()
            page.set_input_files("#image", str(picture))
            page.wait_for_function("document.getElementById('thumb').naturalWidth === 123", timeout=5_000)
            assert page.locator("#preview").is_visible() and page.locator("#thumb").is_visible()
            assert page.locator("#attach").is_checked()  # the picked image goes instead of the camera frame
            page.fill("#text", "say I see your picture.")
            page.click("#ask button[type=submit]")
            page.wait_for_function("window.transcript.some(m => m.role === 'assistant' && m.status === 'completed')",
                                   timeout=30_000)
            assert assistant(page)[0]["text"] == "I see your picture."
            asked = [m for m in page.evaluate("window.transcript") if m["role"] == "user"]
            assert asked == [{"role": "user", "id": None, "text": "say I see your picture. [image: cat.png]",
                              "status": "done", "image": "picked"}]
            (text, images), = seen
            assert text == "say I see your picture." and [im.size for im in images] == [(123, 77)]
            assert np.array_equal(np.asarray(images[0].convert("RGB")), np.asarray(PILImage.open(picture)))
            assert any(torch.equal(px, expected) for px in pixels)  # the model saw the picture's own pixels
            # sent once: the picker is empty again; picked and removed again -> nothing goes with the next question
            assert page.locator("#preview").is_hidden() and page.eval_on_selector("#image", "e => e.value") == ""
            page.set_input_files("#image", str(picture))
            page.wait_for_function("!document.getElementById('preview').hidden", timeout=5_000)
            page.click("#clear-image")
            assert page.locator("#preview").is_hidden()
            page.uncheck("#attach")
            page.fill("#text", "say Nothing attached.")
            page.click("#ask button[type=submit]")
            page.wait_for_function("window.transcript.filter(m => m.role === 'assistant' && "
                                   "m.status === 'completed').length === 2", timeout=30_000)
            assert seen[-1] == ("say Nothing attached.", [])
            assert page.evaluate("window.transcript")[-2]["image"] is None
            assert page.evaluate("window.vitaErrors") == [] and console == []
        finally:
            close()


@needs_chromium
def test_picked_image_goes_with_the_next_spoken_question(kit, model, piper, tmp_path):
    from PIL import Image as PILImage

    picture = tmp_path / "dog.png"
    picture.write_bytes(kit.png(123, 77, seed=8))
    seen: Seen = []
    # 3 s of quiet first: the picture is picked (and sent) before the question starts
    wav = write_wav(tmp_path / "q.wav", 3.0, "What is in this picture?", 4.0, synth=piper[1])
    with serve(kit, model, piper, [SHORT], seen) as server:
        page, console, close = open_page(server, wav)
        try:
            page.set_input_files("#image", str(picture))
            page.wait_for_function("document.getElementById('thumb').naturalWidth === 123", timeout=5_000)
            assert page.evaluate("window.micLevels.every(x => x < 0.03)"), timeline(page)  # not speaking yet
            page.wait_for_function("window.transcript.some(m => m.role === 'assistant' && m.status === 'completed')",
                                   timeout=40_000)
            assert assistant(page)[0]["text"] == SHORT[4:]
            asked = [m for m in page.evaluate("window.transcript") if m["role"] == "user"]
            assert [(m["text"], m["image"]) for m in asked] == [("(spoken) [image: dog.png]", "picked")], \
                timeline(page)
            # the server got it with the spoken question (instead of the camera frame): the answered prompt's
            # last turn holds the picture's own pixels and no text
            text, images = seen[-1]
            assert text == "" and [im.size for im in images] == [(123, 77)], seen
            assert np.array_equal(np.asarray(images[0].convert("RGB")), np.asarray(PILImage.open(picture)))
            # used once: the picker is empty again
            assert page.locator("#preview").is_hidden() and page.eval_on_selector("#image", "e => e.value") == ""
            committed = [e for e in page.evaluate("window.vitaEvents") if e["type"] == "input_audio_buffer.committed"]
            assert len(committed) == 1
            assert page.evaluate("window.vitaErrors") == [] and console == []
        finally:
            close()


@needs_chromium
def test_a_question_typed_during_the_answer_interrupts_it(kit, model, piper, tmp_path):
    seen: Seen = []
    wav = write_wav(tmp_path / "quiet.wav", 2.0, synth=piper[1])
    with serve(kit, model, piper, [], seen) as server:
        page, console, close = open_page(server, wav)
        try:
            page.uncheck("#attach")
            page.evaluate(f"window.vitaSendText({('say ' + LONG[4:])!r})")
            page.wait_for_function("window.vitaState === 'speaking' && window.playback.chunksPlayed > 2",
                                   timeout=30_000)
            page.fill("#text", "say Typed over it.")
            page.click("#ask button[type=submit]")
            page.wait_for_function("window.transcript.some(m => m.role === 'assistant' && m.status === 'completed')"
                                   " && window.vitaState === 'listening'", timeout=30_000)
            first, second = assistant(page)
            pb = page.evaluate("window.playback")
            assert pb["stopReason"] == "typed" and pb["stops"] == 1  # the answer was silenced at once
            assert first["status"] == "cancelled" and first["text"].endswith(" …")
            heard = first["text"].removesuffix(" …")
            assert LONG[4:].startswith(heard) and len(heard) < len(LONG[4:])  # what had been heard of it
            old = pb["responses"][first["id"]]
            assert old["played"] > 0 and old["lastAt"] <= pb["stoppedAt"]  # nothing of it after the stop
            assert second["status"] == "completed" and second["text"] == "Typed over it."
            new = pb["responses"][second["id"]]
            assert new["firstAt"] > pb["stoppedAt"] and new["played"] == new["scheduled"] > 0
            events = page.evaluate("window.vitaEvents")
            (done,) = [e for e in events if e["type"] == "response.done" and e["response_id"] == first["id"]]
            assert done["status"] == "cancelled"
            assert [t for t, _ in seen] == ["say " + LONG[4:], "say Typed over it."]
            assert page.evaluate("window.vitaErrors") == [] and page.locator("#error").inner_text() == ""
            assert console == []
        finally:
            close()


METER = """setInterval(() => {
  const fill = document.getElementById('meter-fill');
  if (fill && window.micLevels?.length) (window.meterWidths ??= []).push(parseFloat(fill.style.width || '0'));
}, 20);"""


@needs_chromium
def test_phone_layout_and_the_moving_mic_meter(kit, model, piper, tmp_path):
    wav = write_wav(tmp_path / "q.wav", 2.0, "What is the weather like today?", 4.0, synth=piper[1])
    # "<2>": not a query, so no answer is in progress when the typed question below comes
    with serve(kit, model, piper, ["<2>"] * 4) as server:
        page, console, close = open_page(server, wav, viewport={"width": 390, "height": 844}, init_script=METER)
        try:
            # the question has played: loud blocks, then a second of quiet ones (no need to wait for the answer)
            page.wait_for_function("(() => { const m = window.micLevels, i = m.findLastIndex(x => x > 0.03);"
                                   " return i > 0 && m.length - i > 25; })()", timeout=30_000)
            # the meter follows the mic: near empty in the silence, well up while the question plays, down again
            widths = page.evaluate("window.meterWidths")  # every 20 ms from the mic's first block
            peak = int(np.argmax(widths))
            assert widths[peak] > 40 and min(widths[:peak + 1]) < 10 and min(widths[peak:]) < 10, (widths,
                                                                                                  timeline(page))
            now = page.evaluate("[document.getElementById('meter-fill').style.width,"
                                " document.getElementById('meter').getAttribute('aria-valuenow')]")
            assert round(float(now[0].removesuffix("%"))) == int(now[1])
            assert page.locator("#meter").is_visible()
            # one column, nothing wider than the screen; a long unbroken word wraps inside the transcript
            page.fill("#text", "Look at https://example.com/" + "a" * 120)
            page.click("#ask button[type=submit]")
            page.wait_for_function("window.transcript.length >= 1")
            box = {k: page.locator(sel).bounding_box() for k, sel in
                   (("transcript", "#transcript"), ("video", "#video"), ("picker", ".pick"), ("ask", "#ask"))}
            width = page.evaluate("innerWidth")
            assert width == 390
            assert page.evaluate("document.scrollingElement.scrollWidth") <= width
            assert page.eval_on_selector("#transcript", "e => e.scrollWidth <= e.clientWidth")
            assert box["transcript"]["width"] > 0.9 * width - 30
            assert box["video"]["y"] >= box["transcript"]["y"] + box["transcript"]["height"]  # below the transcript
            assert box["picker"]["y"] >= box["transcript"]["y"] + box["transcript"]["height"]
            for b in box.values():
                assert b["x"] >= 0 and b["x"] + b["width"] <= width
            assert page.evaluate("window.vitaErrors") == [] and console == []
        finally:
            close()
