"""Speech in and out: streaming Silero VAD (`vad`), streaming Piper TTS (`tts`), echo front end (`echo`).

Needs the `speech` extra (`pip install 'vita[speech]'`); nothing here downloads anything.
"""
