"""Dataset factories: synthetic and packaged data written to disk in the VITA format, offline and from a seed.

    tiny         the tiny CI recipes' data, one set per stage (`tiny:NAME` sources in `recipes/tiny`)
    generated    data source paths that name a generated dataset (`tiny:NAME`), made files once per run
    negatives    non-awakening samples (queries, chatter, noise) from an ASR / QA manifest (`vita data negatives`)
    augment      seeded speech augmentation (noise, reverberation, telephone band, gain, speed)
    real_speech  recordings that installed packages ship, as an evaluation-only manifest
    mini/        vita-mini's training and evaluation sets (`vita data mini`): images, videos, voices, text, chat

This package writes files; the training loop (`vita.training`) reads them. It never imports `vita.training`,
`vita.duplex` or `vita.server`.
"""
