"""One file from a Hugging Face hub endpoint: resumed with HTTP Range, verified, errors in one line.

`vita.checkpoint.download` decides what to fetch; this module fetches one file:
- bytes go to a partial file that survives the process (Ctrl-C, a lost connection, a full disk): the next call
  sends `Range: bytes=<have>-` and appends, so nothing already on disk is fetched again. huggingface_hub's own
  `hf_hub_download` (2.x) writes to a per-process temporary file and deletes it on failure, so it resumes only
  within one call; that is why the GET is ours while the listing, URLs, headers (token) and HTTP errors are
  huggingface_hub's;
- the complete file is checked against the hub's metadata: its size, and its sha256 (LFS files) or git blob
  sha1 (small files). A mismatch is named, the bytes are dropped and the file is fetched again once;
- a lost connection (or a 429 / 5xx answer) is retried from where it stopped, `retries` times in a row without
  progress, then reported with what is kept.

Every failure is a `DownloadError` (a `CheckpointError`: the CLI prints it as one line): endpoint unreachable,
repository / revision / file missing, HTTP errors, disk full.
"""

from __future__ import annotations

import errno
import hashlib
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx2
from huggingface_hub import constants, get_session
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import hf_raise_for_status

from vita.errors import CheckpointError

CHUNK = 1 << 20
TIMEOUT = httpx2.Timeout(60.0, connect=10.0)  # huggingface_hub's shared client waits forever by default
Progress = Callable[[int, int], None]  # (bytes on disk, size)


class DownloadError(CheckpointError):
    """A download could not be completed; the message names the file or endpoint and what to do."""


@dataclass(frozen=True)
class RemoteFile:
    """One file of a hub repository at a fixed commit, with the metadata the hub lists for it."""

    repo: str
    path: str  # inside the repository
    size: int
    sha256: str | None  # LFS files
    git_sha1: str | None  # the git blob id; the content's own hash only for non-LFS files

    @property
    def name(self) -> str:
        return f"{self.repo}/{self.path}"

    def hasher(self) -> tuple[str, hashlib._Hash | None, str | None]:
        """(kind, hash object primed as git does, expected hex digest); kind "size" when the hub gave no hash."""
        if self.sha256:
            return "sha256", hashlib.sha256(), self.sha256
        if self.git_sha1:
            h = hashlib.sha1()
            h.update(f"blob {self.size}\0".encode())
            return "git-sha1", h, self.git_sha1
        return "size", None, None


def checksum_problem(path: Path, remote: RemoteFile) -> str | None:
    """None if `path` has the hub's size and hash, else what is wrong (e.g. "sha256 3fa2… != 9c01…")."""
    size = path.stat().st_size
    if size != remote.size:
        return f"size {size} != {remote.size}"
    kind, h, expected = remote.hasher()
    if h is None:
        return None
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            h.update(block)
    got = h.hexdigest()
    return None if got == expected else f"{kind} {got[:12]}… != {expected[:12]}…"


@contextmanager
def online() -> Iterator[None]:
    """Let huggingface_hub's session make requests for the duration.

    `vita` sets HF_HUB_OFFLINE=1 by default (a hub id given by mistake must not hang on the network) and
    huggingface_hub reads that variable once, at import; `vita download` is the one explicit request to go online.
    """
    before = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = False
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = before


@contextmanager
def hub_errors(endpoint: str, what: str) -> Iterator[None]:
    """Turn huggingface_hub / network / disk exceptions into one-line `DownloadError`s naming `what`."""
    try:
        yield
    except DownloadError:
        raise
    except GatedRepoError:
        raise DownloadError(f"{what}: gated on {endpoint}: accept its terms on the hub and set HF_TOKEN") from None
    except RepositoryNotFoundError:
        raise DownloadError(f"{what}: repository not found on {endpoint} (private? set HF_TOKEN)") from None
    except RevisionNotFoundError:
        raise DownloadError(f"{what}: revision not found on {endpoint}") from None
    except EntryNotFoundError:
        raise DownloadError(f"{what}: file not found on {endpoint}") from None
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else "?"
        raise DownloadError(f"{what}: HTTP {status} from {endpoint}") from None
    except httpx2.ConnectError as exc:
        raise DownloadError(f"cannot reach {endpoint} ({_reason(exc)}): check the network, a proxy, or "
                            "HF_ENDPOINT / --endpoint") from None
    except httpx2.TimeoutException:
        raise DownloadError(f"{endpoint} did not answer in time while fetching {what}; run again to resume") from None
    except (httpx2.TransportError, OfflineModeIsEnabled) as exc:
        raise DownloadError(f"{what}: network error with {endpoint} ({_reason(exc)}); run again to resume") from None
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise DownloadError(f"{what}: disk full ({exc.filename or 'writing'}); free space and run again "
                                "to resume") from None
        raise DownloadError(f"{what}: {exc.strerror or exc} ({exc.filename or 'local file'})") from None


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:160]


def fetch(
    url: str,
    headers: dict[str, str],
    remote: RemoteFile,
    partial: Path,
    dest: Path,
    *,
    retries: int = 3,
    retry_wait: float = 1.0,
    log: Callable[[str], None] = lambda _: None,
    progress: Progress | None = None,
) -> int:
    """Fetch `remote` into `partial` (continuing what it holds), verify it, move it to `dest`.

    Returns the number of bytes received. A dropped connection is resumed up to `retries` times; a complete
    file that fails its check is named in `log`, dropped and fetched once more.
    """
    partial.parent.mkdir(parents=True, exist_ok=True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    received, drops, refetched = 0, 0, False
    while True:
        have = partial.stat().st_size if partial.exists() else 0
        if have > remote.size:  # not a prefix of this file (e.g. a different commit): start over
            partial.unlink()
            have = 0
        if have < remote.size:
            try:
                received += _get(url, headers, partial, have, remote.size, progress)
            except (httpx2.TransportError, _ShortBody, HfHubHTTPError) as exc:
                if isinstance(exc, HfHubHTTPError) and not _transient(exc):
                    raise
                kept = partial.stat().st_size if partial.exists() else 0
                if kept > have:
                    drops = 0  # progress was made: the retry budget is per stall, as in huggingface_hub
                drops += 1
                if drops > retries:
                    raise DownloadError(f"{remote.name}: interrupted after {kept} of {remote.size} bytes "
                                        f"({_reason(exc)}); run the command again to resume") from None
                log(f"{remote.name}: interrupted at {kept} of {remote.size} bytes ({_reason(exc)}); resuming")
                time.sleep(retry_wait)
                continue
        problem = checksum_problem(partial, remote)
        if problem is None:
            break
        partial.unlink()
        if refetched:
            raise DownloadError(f"{remote.name}: fetched twice and still does not match the hub ({problem})")
        log(f"{remote.name}: corrupted download ({problem}); fetching it again")
        refetched = True
    partial.replace(dest)
    return received


def _transient(exc: HfHubHTTPError) -> bool:
    """A 429 or 5xx answer: worth another try, like a dropped connection."""
    status = exc.response.status_code if exc.response is not None else 0
    return status == 429 or status >= 500


class _ShortBody(Exception):
    """The server ended the body before the whole file arrived (a clean close without an error)."""


def _append(f, chunk: bytes) -> None:
    f.write(chunk)


def _get(url: str, headers: dict[str, str], partial: Path, have: int, size: int, progress: Progress | None) -> int:
    """One GET from byte `have` on (Range), appended to `partial`; returns the bytes received."""
    h = dict(headers)
    h["Accept-Encoding"] = "identity"  # sizes and ranges are of the stored bytes
    if have:
        h["Range"] = f"bytes={have}-"
    n = 0
    with get_session().stream("GET", url, headers=h, timeout=TIMEOUT, follow_redirects=True) as r:
        hf_raise_for_status(r)
        mode = "ab"
        if have and r.status_code != 206:  # the server ignored Range: take the whole body
            have, mode = 0, "wb"
        with open(partial, mode) as f:
            for chunk in r.iter_bytes():  # as they arrive: a drop loses nothing already received
                _append(f, chunk)
                n += len(chunk)
                if progress is not None:
                    progress(have + n, size)
    if have + n < size:
        raise _ShortBody(f"body ended at {have + n} of {size} bytes")
    return n
