"""Duplex interaction as a pure state machine: typed events in and out (`events`), two roles over one set of weights
(`roles`), clock-paced playback (`playout`), the session (`session`) with its turn-taking policy (`turn_taking`),
its user turns (`utterances`, `items`) and stage log (`stages`); scripted scenarios (`scenarios`) and their scoring
(`simulate`) behind `vita bench duplex`. The front ends are elsewhere: `vita chat` (`vita.cli.chat`), the realtime
server (`vita.server`), the duplex bench and its RSS probe (`vita.bench.duplex`, `vita.bench.rss`).
"""
