"""`vita serve`: an OpenAI-compatible HTTP API over one shared model (FastAPI + uvicorn, the `serve` extra).

    limits.py        request limits (`Limits`, one CLI flag each)
    errors.py        `APIError` and the OpenAI error shape `{"error": {message, type, param, code}}`
    openai_types.py  the chat-completions request schema (pydantic, strict)
    media.py         data URLs / base64 -> decoded images, video frames and 16 kHz audio, under the limits
    fetch.py         remote media (`--allow-remote-media`): public addresses only, no redirects, one deadline
    chat.py          request -> `Turn`s + sampling params; reply events -> response / stream chunk bodies
    engine.py        the shared model: prompt building and the reply loop as typed events (state first)
    audio_out.py     speech out (Piper through `vita.speech.tts`) and its encodings
    worker.py        the one model thread (urgent jobs first) and request admission (429 when the queue is full)
    app.py           `create_app(...)`: routes, Host/Origin checks and auth, error handlers
    realtime.py      `GET /v1/realtime`: a duplex session per websocket, bounded (`realtime_events.py`: wire types)
    realtime_connection.py  one connection: transport and the driver of its duplex session
    realtime_roles.py, realtime_emit.py, realtime_stats.py   its model side (role caches, prompts that fit),
                     session events -> server events, where a turn's time goes
    auth.py          loopback checks and the API key (`resolve_api_key`, `authorized`)
(the command line, `vita serve`, is `vita.cli.serve`)

Importing this package imports neither FastAPI nor torch; `vita.server.app` does.
"""
