"""Who may talk to `vita serve`: loopback names and addresses, and the API key (`Authorization: Bearer <key>`).

Shared by the HTTP routes (`app.py`), the realtime websocket (`realtime.py`) and the command line (`vita.cli.serve`), so
none of them imports another for these checks.
"""

from __future__ import annotations

import hmac
import ipaddress
import os

from vita.errors import ConfigError

LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a hostname: it may resolve anywhere


def split_host(host: str) -> str:
    """'127.0.0.1:8000' -> '127.0.0.1', '[::1]:8000' -> '::1', 'localhost' -> 'localhost'."""
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def host_is_loopback(host: str) -> bool:
    name = split_host(host.strip().lower())
    return bool(name) and is_loopback(name)


def origin_is_loopback(origin: str) -> bool:
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(origin)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and parts.hostname is not None and host_is_loopback(parts.hostname)


def authorized(header: str | None, key: str) -> bool:
    """True when the `Authorization` header is `Bearer <key>` (compared in constant time)."""
    scheme, _, token = (header or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), key.encode())


def resolve_api_key(host: str, api_key: str | None) -> str | None:
    """The key to require: --api-key, else $VITA_API_KEY; an error when binding off loopback without one."""
    key = api_key if api_key is not None else os.environ.get("VITA_API_KEY") or None
    if key is not None and not key.strip():
        raise ConfigError("the API key is empty")
    if key is None and not is_loopback(host):
        raise ConfigError(f"binding to {host!r} (not a loopback address) requires an API key: pass --api-key KEY "
                          "or set VITA_API_KEY")
    return key
