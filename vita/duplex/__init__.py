"""Duplex interaction as a pure state machine: typed events (`events`), two roles over one set of weights
(`roles`), clock-paced playback (`playout`), the session (`session`); scripted scenarios (`scenarios`) and their
scoring (`simulate`) behind `vita bench duplex`, the RSS check (`memory`), and `vita chat` (`chat`, `cli`).
"""
