"""Duplex interaction as a pure state machine: typed events (`events`), two roles over one set of weights
(`roles`), clock-paced playback (`playout`), the session (`session`) and its offline driver (`cli`, `vita chat`).
"""
