"""`vita download` against a local mirror of the hub (127.0.0.1): layout, offline reuse, resume, corruption, errors.

The mirror implements what the download uses of the Hugging Face hub HTTP API: `GET /api/models/<repo>/revision/
<rev>?blobs=true` (commit + every file's size, git blob id, LFS sha256), and `GET|HEAD /<repo>/resolve/<rev>/<path>`
(small files served directly with ETag / X-Repo-Commit; LFS files redirected to a CDN path with X-Linked-Etag /
X-Linked-Size, as the hub does), with Range support and the hub's X-Error-Code on 404s. Its repositories hold the
tiny golden fixtures in the real releases' layout and folder names, so the downloaded folder loads with our loader.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import socket
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

import pytest
import torch

from vita.checkpoint import download_http
from vita.checkpoint.download import MANIFEST, PARTIAL_DIR, download, downloaded
from vita.checkpoint.download_http import DownloadError
from vita.checkpoint.load import load_model
from vita.errors import CheckpointError

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures"
LFS_SUFFIXES = (".safetensors", ".pt", ".pth", ".model", ".bin")
V1_AUDIO = "audio-encoder-2wh_zh_en_audioset_Mixtral-8x7B_New-base-tunning"


def _files(folder: Path, prefix: str = "") -> dict[str, bytes]:
    return {prefix + p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _top(folder: Path, prefix: str = "") -> dict[str, bytes]:
    return {prefix + p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def _with_towers(files: dict[str, bytes], key: str, vision: str, audio: str) -> None:
    cfg = json.loads(files[key])
    cfg.update(mm_vision_tower=vision, mm_audio_encoder=audio)  # the names the real release's config.json has
    files[key] = json.dumps(cfg, indent=2).encode()


def _fixture(name: str) -> tuple[Path, dict]:
    ckpt = FIXTURES / name / "checkpoint"
    if not (ckpt / "config.json").is_file():
        pytest.skip(f"fixture {ckpt} not found")
    return ckpt, json.loads((ckpt / "config.json").read_text())


def vita1_repos() -> dict[str, dict[str, bytes]]:
    """VITA-MLLM/VITA (VITA_ckpt/ + the audio folder) and OpenGVLab/InternViT-300M-448px, from vita1_tiny."""
    ckpt, cfg = _fixture("vita1_tiny")
    main = _top(ckpt, "VITA_ckpt/")
    _with_towers(main, "VITA_ckpt/config.json", "InternViT-300M-448px", V1_AUDIO)
    main.update(_files(ckpt / cfg["mm_audio_encoder"], V1_AUDIO + "/"))
    main[f"{V1_AUDIO}/final.pt"] = b"\0" * 3000  # in the release, not needed: must not be fetched
    main["VITA_ckpt/trainer_state.json"] = b"{}"  # trainer leftovers: must not be fetched
    main["VITA_ckpt/rng_state_0.pth"] = b"\1" * 100
    main["README.md"] = b"# VITA\n"
    vit = _files(ckpt / cfg["mm_vision_tower"])
    vit["modeling_intern_vit.py"] = b"# remote code\n"
    return {"VITA-MLLM/VITA": main, "OpenGVLab/InternViT-300M-448px": vit}


def vita15_repos() -> dict[str, dict[str, bytes]]:
    """VITA-MLLM/VITA-1.5, VITA-MLLM/VITA-1.5_AudioEnc and the InternViT repo, from vita15_tiny."""
    ckpt, cfg = _fixture("vita15_tiny")
    main = _top(ckpt)
    _with_towers(main, "config.json", "OpenGVLab/InternViT-300M-448px", "VITA-MLLM/VITA-1.5_AudioEnc")
    main.update(_files(ckpt / "vita_tts_ckpt", "vita_tts_ckpt/"))
    audio = _files(ckpt / cfg["mm_audio_encoder"])
    main.update({f"audio-encoder-Qwen2-7B-1107-weight-base-11wh-tunning/{k}": v for k, v in audio.items()})
    main["scheduler.pt"] = b"\2" * 500
    main["zero_to_fp32.py"] = b"# leftover\n"
    return {"VITA-MLLM/VITA-1.5": main, "VITA-MLLM/VITA-1.5_AudioEnc": audio,
            "OpenGVLab/InternViT-300M-448px": _files(ckpt / cfg["mm_vision_tower"])}


def git_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class Mirror:
    """A threaded HTTP server speaking the hub API subset; counts the body bytes it sends per file."""

    def __init__(self, repos: dict[str, dict[str, bytes]]) -> None:
        self.repos = {r: {"commit": hashlib.sha1(r.encode() + b"".join(sorted(files.values()))).hexdigest(),
                          "files": files} for r, files in repos.items()}
        self.sent: Counter[str] = Counter()  # "repo/path" -> file bytes sent
        self.requests: list[tuple[str, str, str | None]] = []  # (method, "repo/path" or url path, Range)
        self.drop: dict[str, int] = {}  # "repo/path" -> close the connection once the body reaches this offset
        self.corrupt: set[str] = set()  # "repo/path": next GET flips one byte
        self.hidden: set[str] = set()  # listed, but resolve answers 404 EntryNotFound
        self.busy: set[str] = set()  # "repo/path": next GET answers 503
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.daemon_threads = True
        self.server.mirror = self
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def get_requests(self, name: str) -> list[str | None]:
        return [rng for method, path, rng in self.requests if method == "GET" and path == name]


def _is_lfs(path: str) -> bool:
    return path.endswith(LFS_SUFFIXES)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def do_HEAD(self) -> None:
        self._route(head=True)

    def do_GET(self) -> None:
        self._route(head=False)

    def _route(self, head: bool) -> None:
        m: Mirror = self.server.mirror
        path = unquote(urlsplit(self.path).path)
        if match := re.fullmatch(r"/api/models/([^/]+/[^/]+)/revision/([^/]+)", path):
            return self._info(m, *match.groups())
        if match := re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path):
            return self._resolve(m, *match.groups(), head=head)
        if match := re.fullmatch(r"/cdn/[0-9a-f]{64}/(.+)", path):
            owner, name, file = match.group(1).split("/", 2)
            return self._content(m, f"{owner}/{name}", file, head=head, headers={})
        self._error(404, "NotFound", path)

    def _repo(self, m: Mirror, repo: str, rev: str):
        if repo not in m.repos:
            self._error(404, "RepoNotFound", f"Repository {repo} not found")
            return None
        if rev not in ("main", m.repos[repo]["commit"]):
            self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
            return None
        return m.repos[repo]

    def _info(self, m: Mirror, repo: str, rev: str) -> None:
        with m.lock:
            m.requests.append(("GET", f"info:{repo}", None))
        r = self._repo(m, repo, unquote(rev))
        if r is None:
            return
        siblings = []
        for path, data in sorted(r["files"].items()):
            s = {"rfilename": path, "size": len(data), "blobId": git_sha1(data)}
            if _is_lfs(path):
                s["lfs"] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
                s["blobId"] = git_sha1(b"version https://git-lfs.github.com/spec/v1\n" + s["lfs"]["sha256"].encode())
            siblings.append(s)
        body = json.dumps({"id": repo, "modelId": repo, "sha": r["commit"], "private": False,
                           "siblings": siblings}).encode()
        self._send(200, {"Content-Type": "application/json"}, body)

    def _resolve(self, m: Mirror, repo: str, rev: str, path: str, head: bool) -> None:
        r = self._repo(m, repo, rev)
        if r is None:
            return
        name = f"{repo}/{path}"
        if path not in r["files"] or name in m.hidden:
            self._error(404, "EntryNotFound", f"{path} does not exist", {"X-Repo-Commit": r["commit"]})
            return
        data = r["files"][path]
        if _is_lfs(path):
            sha = hashlib.sha256(data).hexdigest()
            self._send(302, {"Location": f"/cdn/{sha}/{quote(name)}", "X-Repo-Commit": r["commit"],
                             "X-Linked-Etag": f'"{sha}"', "X-Linked-Size": str(len(data)),
                             "ETag": f'"{git_sha1(data)}"'}, b"")
            return
        self._content(m, repo, path, head=head, headers={"X-Repo-Commit": r["commit"], "ETag": f'"{git_sha1(data)}"'})

    def _content(self, m: Mirror, repo: str, path: str, head: bool, headers: dict[str, str]) -> None:
        name = f"{repo}/{path}"
        data = m.repos[repo]["files"][path]
        start = 0
        rng = self.headers.get("Range")
        if not head:
            with m.lock:
                m.requests.append(("GET", name, rng))
                busy = name in m.busy
                m.busy.discard(name)
            if busy:
                self._error(503, "ServiceUnavailable", "try again later")
                return
        status = 200
        if rng and (match := re.fullmatch(r"bytes=(\d+)-(\d*)", rng)):
            start = int(match.group(1))
            end = int(match.group(2)) + 1 if match.group(2) else len(data)
            if start >= len(data):
                self._error(416, "RangeNotSatisfiable", rng)
                return
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{len(data)}"
            status, data = 206, data[start:end]
        headers.update({"Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"})
        with m.lock:
            drop_at = m.drop.pop(name, None) if not head else None
            flip = not head and name in m.corrupt
            m.corrupt.discard(name)
        if flip:
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        self.send_response(status)
        for k, v in {**headers, "Content-Length": str(len(data))}.items():
            self.send_header(k, v)
        self.end_headers()
        if head:
            return
        body = data if drop_at is None else data[: max(drop_at - start, 0)]
        self.wfile.write(body)
        with m.lock:
            m.sent[name] += len(body)
        if drop_at is not None:  # the connection dies mid-file
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True

    def _error(self, status: int, code: str, message: str, extra: dict[str, str] | None = None) -> None:
        body = json.dumps({"error": message}).encode()
        self._send(status, {"X-Error-Code": code, "X-Error-Message": message, "Content-Type": "application/json",
                            **(extra or {})}, body)

    def _send(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.send_response(status)
        for k, v in {**headers, "Content-Length": str(len(body))}.items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


@pytest.fixture
def mirror1():
    m = Mirror(vita1_repos())
    yield m
    m.close()


def _same_model(a, b) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


# -- a full download, then offline --------------------------------------------------------------------------------


def test_vita1_download_assembles_the_release_and_loads_offline(mirror1, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", mirror1.url)  # read at call time (huggingface_hub read it at import)
    msgs: list[str] = []
    folder = download("vita-1.0", tmp_path / "d", log=msgs.append, retry_wait=0)
    root = tmp_path / "d"
    assert folder == root / "VITA_ckpt"
    # the official layout, only what is needed, each file byte-identical to the repo's
    repo, vit = mirror1.repos["VITA-MLLM/VITA"]["files"], mirror1.repos["OpenGVLab/InternViT-300M-448px"]["files"]
    got = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    want = {p for p in repo if p.startswith("VITA_ckpt/") and "state" not in p and "rng" not in p}
    want |= {f"{V1_AUDIO}/train.yaml", f"{V1_AUDIO}/global_cmvn", MANIFEST}
    want |= {f"InternViT-300M-448px/{p}" for p in vit if not p.endswith(".py")}
    assert got == want
    for p in got - {MANIFEST}:
        src = vit[p.partition("/")[2]] if p.startswith("InternViT") else repo[p]
        assert (root / p).read_bytes() == src, p
    assert not (root / PARTIAL_DIR).exists()
    manifest = json.loads((root / MANIFEST).read_text())
    assert manifest["complete"] and manifest["model"] == "VITA_ckpt"
    assert {p["commit"] for p in manifest["pieces"]} == {r["commit"] for r in mirror1.repos.values()}
    assert all(f["sha256"] for f in manifest["files"] if f["local"].endswith(".safetensors"))
    assert sum(mirror1.sent.values()) == sum((root / p).stat().st_size for p in got - {MANIFEST})

    # again: answered from the manifest, not one request
    n = len(mirror1.requests)
    mirror1.close()
    assert download("vita-1.0", root, log=msgs.append) == folder
    assert downloaded("vita-1.0", root) == folder
    assert len(mirror1.requests) == n

    # and it loads, the towers found by the release's own folder names, equal to the fixture loaded in place
    fixture = FIXTURES / "vita1_tiny" / "checkpoint"
    _same_model(load_model(folder)[0], load_model(fixture)[0])


def test_vita15_download_loads_with_its_speech_decoder(tmp_path):
    from vita.checkpoint.vita15_tts import load_codec, load_tts_decoder

    m = Mirror(vita15_repos())
    try:
        folder = download("vita-1.5", tmp_path, endpoint=m.url, log=lambda _: None)
    finally:
        m.close()
    assert folder == tmp_path / "VITA-1.5"
    names = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()}
    assert {"VITA-1.5_AudioEnc/train.yaml", "VITA-1.5_AudioEnc/global_cmvn", "InternViT-300M-448px/config.json",
            "VITA-1.5/vita_tts_ckpt/decoder/final.pt", "VITA-1.5/vita_tts_ckpt/codec/model.json"} <= names
    # not needed by 1.5 (weights in the main shards) or leftovers: not fetched
    assert not any(n.endswith(("final.pt", ".safetensors")) for n in names if not n.startswith("VITA-1.5/"))
    assert not any("audio-encoder-" in n or "scheduler" in n or "zero_to" in n for n in names)
    _same_model(load_model(folder)[0], load_model(FIXTURES / "vita15_tiny" / "checkpoint")[0])
    load_tts_decoder(folder / "vita_tts_ckpt" / "decoder")
    load_codec(folder / "vita_tts_ckpt" / "codec")


# -- resume --------------------------------------------------------------------------------------------------------


BIG = "VITA-MLLM/VITA/VITA_ckpt/model.safetensors"


def test_interrupted_download_resumes_without_refetching_bytes(mirror1, tmp_path):
    size = len(mirror1.repos["VITA-MLLM/VITA"]["files"]["VITA_ckpt/model.safetensors"])
    cut = size // 2 + 12345
    mirror1.drop[BIG] = cut
    msgs: list[str] = []
    with pytest.raises(DownloadError, match=r"VITA_ckpt/model\.safetensors: interrupted after \d+ of \d+ bytes"
                       r".*run the command again to resume") as err:
        download("vita-1.0", tmp_path, endpoint=mirror1.url, retries=0, log=msgs.append)
    assert "\n" not in str(err.value)
    partial = next((tmp_path / PARTIAL_DIR).rglob("model.safetensors.*.part"))
    assert partial.stat().st_size == cut
    assert not json.loads((tmp_path / MANIFEST).read_text())["complete"]

    # a second run (a new process would do the same: all state is on disk) continues the partial file
    before = dict(mirror1.sent)
    download("vita-1.0", tmp_path, endpoint=mirror1.url, log=msgs.append)
    assert mirror1.get_requests(BIG) == [None, f"bytes={cut}-"]
    assert mirror1.sent[BIG] == size  # every byte of the file sent exactly once over both runs
    assert all(mirror1.sent[k] == v for k, v in before.items() if k != BIG)  # finished files not fetched again
    assert (tmp_path / "VITA_ckpt/model.safetensors").read_bytes() == \
        mirror1.repos["VITA-MLLM/VITA"]["files"]["VITA_ckpt/model.safetensors"]
    assert any("resuming at" in m for m in msgs)


def test_dropped_connection_and_busy_server_are_resumed_within_the_run(mirror1, tmp_path):
    size = len(mirror1.repos["VITA-MLLM/VITA"]["files"]["VITA_ckpt/model.safetensors"])
    mirror1.drop[BIG] = 1000
    tower = "OpenGVLab/InternViT-300M-448px/model.safetensors"
    mirror1.busy.add(tower)
    msgs: list[str] = []
    download("vita-1.0", tmp_path, endpoint=mirror1.url, retry_wait=0, log=msgs.append)
    assert mirror1.get_requests(BIG) == [None, "bytes=1000-"]
    assert mirror1.sent[BIG] == size
    assert mirror1.get_requests(tower) == [None, None]  # a 503 is tried again (nothing was kept: from 0)
    assert any(m.startswith(f"{tower}: interrupted at 0 of") and "503 Service Unavailable" in m for m in msgs)
    assert any("model.safetensors: interrupted at 1000 of" in m for m in msgs)


# -- corruption ------------------------------------------------------------------------------------------------


def test_corrupted_transfer_is_named_and_fetched_again(mirror1, tmp_path):
    data = mirror1.repos["VITA-MLLM/VITA"]["files"]["VITA_ckpt/model.safetensors"]
    mirror1.corrupt.add(BIG)
    msgs: list[str] = []
    download("vita-1.0", tmp_path, endpoint=mirror1.url, log=msgs.append)
    named = [m for m in msgs if ": corrupted" in m]
    assert len(named) == 1 and named[0].startswith("VITA-MLLM/VITA/VITA_ckpt/model.safetensors: corrupted download "
                                                   "(sha256 ")
    assert mirror1.sent[BIG] == 2 * len(data)
    assert (tmp_path / "VITA_ckpt/model.safetensors").read_bytes() == data


def test_corrupted_file_on_disk_is_detected_and_fetched_again(mirror1, tmp_path):
    download("vita-1.0", tmp_path, endpoint=mirror1.url, log=lambda _: None)
    data = mirror1.repos["VITA-MLLM/VITA"]["files"]["VITA_ckpt/model.safetensors"]
    target = tmp_path / "VITA_ckpt/model.safetensors"
    st = target.stat()
    with open(target, "r+b") as f:  # silent bit rot: same size, same mtime
        f.seek(len(data) // 3)
        f.write(bytes([data[len(data) // 3] ^ 1]))
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    before = dict(mirror1.sent)

    assert download("vita-1.0", tmp_path, endpoint=mirror1.url, log=lambda _: None)  # trusted: size+mtime same
    assert mirror1.sent == before
    msgs: list[str] = []
    download("vita-1.0", tmp_path, verify=True, log=msgs.append)  # re-hash everything
    assert any(m.startswith("VITA_ckpt/model.safetensors: corrupted (sha256") for m in msgs)
    assert sum(": corrupted" in m for m in msgs) == 1
    assert target.read_bytes() == data
    assert mirror1.sent[BIG] == before[BIG] + len(data)
    assert all(mirror1.sent[k] == v for k, v in before.items() if k != BIG)

    # an edit that changes the mtime is caught without --verify
    config = tmp_path / "VITA_ckpt/config.json"
    config.write_text(config.read_text().replace("mm_", "xx_"))
    msgs.clear()
    download("vita-1.0", tmp_path, log=msgs.append)
    assert any(m.startswith("VITA_ckpt/config.json: corrupted (git-sha1") for m in msgs)
    assert config.read_bytes() == mirror1.repos["VITA-MLLM/VITA"]["files"]["VITA_ckpt/config.json"]


# -- clear errors -----------------------------------------------------------------------------------------------


def test_unreachable_endpoint_is_one_line(tmp_path, capsys):
    from vita.cli import main

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    with pytest.raises(DownloadError, match=rf"cannot reach {re.escape(url)} \(.*\): check the network"):
        download("vita-1.0", tmp_path / "a", endpoint=url)
    assert not (tmp_path / "a").exists()  # a failed start leaves nothing behind
    assert main(["download", "vita-1.0", "--dir", str(tmp_path / "b"), "--endpoint", url]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: cannot reach {url}") and "\n" not in err and "Traceback" not in err


def test_missing_repo_file_or_entry_is_named(tmp_path):
    repos = vita15_repos()
    del repos["OpenGVLab/InternViT-300M-448px"]["preprocessor_config.json"]
    m = Mirror(repos)
    try:
        with pytest.raises(DownloadError, match=r"OpenGVLab/InternViT-300M-448px@[0-9a-f]{12}: no file matches "
                           r"'preprocessor_config\.json'"):
            download("vita-1.5", tmp_path / "a", endpoint=m.url)
    finally:
        m.close()
    del repos["VITA-MLLM/VITA-1.5_AudioEnc"]
    m = Mirror(repos)
    try:
        with pytest.raises(DownloadError, match=r"VITA-MLLM/VITA-1\.5_AudioEnc@main: repository not found on"):
            download("vita-1.5", tmp_path / "b", endpoint=m.url)
    finally:
        m.close()
    m = Mirror(vita1_repos())
    m.hidden.add("VITA-MLLM/VITA/VITA_ckpt/tokenizer.json")  # listed, but the file answers 404
    try:
        with pytest.raises(DownloadError, match=r"VITA-MLLM/VITA/VITA_ckpt/tokenizer\.json: file not found on"):
            download("vita-1.0", tmp_path / "c", endpoint=m.url, log=lambda _: None)
    finally:
        m.close()
    with pytest.raises(CheckpointError, match="unknown model 'vita-2.0'; downloadable: vita-1.0, vita-1.5"):
        download("vita-2.0", tmp_path / "d")


def test_disk_full_before_and_during_the_download(mirror1, tmp_path, monkeypatch):
    import shutil

    real = shutil.disk_usage
    monkeypatch.setattr("vita.checkpoint.download.shutil.disk_usage",
                        lambda p: real(p)._replace(free=1000))
    with pytest.raises(CheckpointError, match=r": not enough disk space: [\d.]+ MB still to fetch, 1.00 kB free"):
        download("vita-1.0", tmp_path, endpoint=mirror1.url, log=lambda _: None)
    monkeypatch.undo()

    def full(f, chunk):  # the disk fills up while model.safetensors is written
        if "model.safetensors" in f.name and f.tell() > 100_000:
            raise OSError(errno.ENOSPC, "No space left on device", f.name)
        f.write(chunk)

    monkeypatch.setattr(download_http, "_append", full)
    with pytest.raises(DownloadError, match=r"VITA_ckpt/model\.safetensors: disk full .*run again to resume"):
        download("vita-1.0", tmp_path, endpoint=mirror1.url, log=lambda _: None)
    kept = next((tmp_path / PARTIAL_DIR).rglob("model.safetensors.*.part")).stat().st_size
    assert kept > 100_000
    monkeypatch.undo()
    download("vita-1.0", tmp_path, endpoint=mirror1.url, log=lambda _: None)
    assert mirror1.get_requests(BIG)[-1] == f"bytes={kept}-"
