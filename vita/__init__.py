"""vita: an open, interactive omni-modal LLM (video, image, text and speech in; text and speech out)."""

import os as _os

_os.environ.setdefault("HF_HUB_OFFLINE", "1")
_os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

__version__ = "0.1.0"


def __getattr__(name: str):
    # Lazy so that `import vita` stays cheap (no torch import until the API is used).
    if name in ("load", "Vita", "Reply"):
        from vita import api

        return getattr(api, name)
    raise AttributeError(f"module 'vita' has no attribute {name!r}")
