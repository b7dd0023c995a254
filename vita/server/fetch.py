"""Remote media for `vita serve --allow-remote-media`: one GET, safe against a client aiming the server at itself.

    fetch(url, deadline=time.monotonic() + 10, max_bytes=32 << 20) -> (mime type, bytes)

Rules: http/https only; the host is resolved once and EVERY address it resolves to must be public (not loopback,
private, link-local, shared, multicast, reserved or unspecified, IPv4-mapped / NAT64 / 6to4 forms included), and
the connection goes to that vetted address (no second lookup: DNS rebinding cannot swap it); no redirects (a 3xx
is a failure); one total deadline for resolving, connecting, headers and body (a watchdog shuts the socket, so a
server dripping a byte every few seconds cannot stretch it), and a byte budget. Every network failure raises the
same `FetchError` message: the answer never tells a client whether a port is open, closed or filtered, or what a
host answered (the log has the reason). Runs on a worker thread, never on the event loop or the model thread.
"""

from __future__ import annotations

import http.client
import ipaddress
import logging
import socket
import ssl
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

log = logging.getLogger("vita.server")
_RESOLVER = ThreadPoolExecutor(max_workers=4, thread_name_prefix="vita-resolve")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_CHUNK = 1 << 16


class FetchError(Exception):
    """A URL that is not fetchable (the message is for the client: `reason` only goes to the log)."""

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason


def is_public(address: str) -> bool:
    """True only for a globally routable unicast address, in any of its notations."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return is_public(str(ip.ipv4_mapped))
        if ip.sixtofour is not None:
            return is_public(str(ip.sixtofour))
        if ip.teredo is not None:
            return False
        if ip in _NAT64:
            return is_public(str(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)))
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_unspecified or ip.is_loopback
                                 or ip.is_link_local or ip.is_private)


def fetch(url: str, *, deadline: float, max_bytes: int) -> tuple[str, bytes]:
    """GET `url` under the rules above -> (mime, body). Raises `FetchError`."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise FetchError("only http(s) URLs with a host name can be fetched")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise FetchError("the URL's port is not valid") from exc
    failed = FetchError("could not fetch the media URL (it must be a public http(s) address that answers 200 "
                        "directly, without redirects, in time and within the size limit)")
    try:
        address = _resolve(parts.hostname, port, deadline)
        return _get(parts, address, port, deadline, max_bytes)
    except FetchError as exc:
        log.info("remote media %s refused: %s", _redact(url), exc.reason or exc)
        raise failed from None
    except (OSError, http.client.HTTPException, ValueError) as exc:
        log.info("remote media %s failed: %s: %s", _redact(url), type(exc).__name__, exc)
        raise failed from None


def _redact(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}{parts.path[:80]}"


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise FetchError("", reason="deadline passed")
    return left


def _resolve(host: str, port: int, deadline: float) -> str:
    future = _RESOLVER.submit(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
    try:
        infos = future.result(timeout=_left(deadline))
    except FutureTimeout:
        raise FetchError("", reason="name resolution timed out") from None
    except socket.gaierror as exc:
        raise FetchError("", reason=f"name resolution failed ({exc})") from None
    addresses = [info[4][0] for info in infos]
    if not addresses:
        raise FetchError("", reason="no address")
    blocked = [a for a in addresses if not is_public(a)]
    if blocked:
        raise FetchError("", reason=f"non-public address {blocked[0]}")
    return addresses[0]


def _get(parts: urllib.parse.SplitResult, address: str, port: int, deadline: float,
         max_bytes: int) -> tuple[str, bytes]:
    sock = socket.create_connection((address, port), timeout=_left(deadline))
    watchdog = threading.Timer(_left(deadline), _shut, args=(sock,))
    watchdog.daemon = True
    watchdog.start()
    try:
        if parts.scheme == "https":
            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=parts.hostname)
        conn = http.client.HTTPConnection(parts.hostname, port, timeout=_left(deadline))
        conn.sock = sock  # connected to the vetted address; http.client never resolves the name again
        path = urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, ""))
        conn.request("GET", path, headers={"Host": parts.netloc.rsplit("@", 1)[-1], "User-Agent": "vita-serve",
                                           "Accept": "image/*, video/*", "Connection": "close"})
        response = conn.getresponse()
        if response.status != 200:
            raise FetchError("", reason=f"HTTP {response.status}")
        length = response.getheader("content-length")
        if length is not None and length.isdigit() and int(length) > max_bytes:
            raise FetchError("", reason=f"Content-Length {length} > {max_bytes}")
        body = bytearray()
        while chunk := response.read(_CHUNK):
            body += chunk
            if len(body) > max_bytes:
                raise FetchError("", reason=f"more than {max_bytes} bytes")
            _left(deadline)
        _left(deadline)
        return response.headers.get_content_type(), bytes(body)
    except OSError as exc:
        if time.monotonic() >= deadline:
            raise FetchError("", reason="deadline passed") from None
        raise FetchError("", reason=f"{type(exc).__name__}: {exc}") from None
    finally:
        watchdog.cancel()
        sock.close()


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)  # a blocked recv returns at once
    except OSError:
        pass
