"""vita: an open, interactive omni-modal LLM (video, image, text and speech in; text and speech out)."""

import os as _os

# the environment defaults of every vita process, set once here (every `vita.*` import runs this first): a hub id
# given by mistake must not hang on the network (`vita download` lifts it for its own calls)
_os.environ.setdefault("HF_HUB_OFFLINE", "1")
_os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

__version__ = "0.1.0"


def __getattr__(name: str):
    # Lazy so that `import vita` stays cheap (no torch import until the API is used).
    if name in ("load", "Vita", "Reply"):
        from vita import api

        return getattr(api, name)
    raise AttributeError(f"module 'vita' has no attribute {name!r}")
