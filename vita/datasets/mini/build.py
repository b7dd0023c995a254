"""vita-mini data builder: the training and evaluation sets, made locally and offline from a seed.

    out/train/vision_align.json   image / video + caption                          (official VITA JSON list)
    out/train/audio_align.json    "Transcribe the speech.<audio>" -> "<3>" + transcript (ASR alignment)
    out/train/audio_short.json    the same for one to three words cut from the sentences (people say single words)
    out/train/audio_fragments.json  the same for a sentence's first words alone ("What is the": a question broken
                                  off, transcribed as said, no final mark; for Whisper's ears, `vita.training.ears`)
    out/train/addressed.json      speech addressed to someone else by name ("Rosa, <a question>") -> "<2>"
    out/train/dialogue.json       an exchange, then chatter / noise / addressed speech -> "<2>" or another question
                                  -> its answer; followup.json: then a question with a lead or a repeat request
                                  -> the answer (`vita.datasets.mini.dialogue`)
    out/train/scene_text.json     a picture's caption in words + a question about it -> "<3>" answer (no image: the
                                  LLM learns to answer relational questions from a description, see below)
    out/train/vision_regions.json pictures whose every image row is named ("red circle", "hedgehog", "" background;
                                  `vita.datasets.mini.regions`) for `vita.training.region_align`
    out/train/instruct.json       image + spoken question -> "<1>" answer, image + typed question -> "<3>" answer,
                                  video + typed / spoken question, spoken and typed chat, and non-awakening
                                  negatives from `vita.datasets.negatives` (statements / chatter speech + noise, pure
                                  noise -> "<2>"; noisy spoken questions -> "<1>")
    out/train/media/              images/*.png, videos/*.mp4, speech/*.wav, negatives/audio/*.wav
    out/{train,eval}/speech.jsonl every clip written: transcript, voice (by name), augmentation tag
    out/eval/{image,naming,video,chat,asr,negatives}.jsonl   `vita eval` manifests (media under out/eval/media/);
                                  all.jsonl holds every case; asr cases are grouped asr/clean, asr/noisy, asr/telephone;
                                  eval/{dialogue,followup}.jsonl: cases after one exchange (a history; not in all);
                                  eval/chat_typed.jsonl: 200 more typed chat cases (not in all)
    out/manifest.json             counts per stage and task, text sources, voices (train / eval), augmentation,
                                  sha256 per file

Speech is open-vocabulary and many-voiced (`text`, `speech`, `vita.datasets.augment`): ASR transcripts and
non-awakening chatter are natural sentences (WordNet examples, fortune cookies; train and eval sentences
disjoint by hash), chat questions are arithmetic or "What is the opposite of X?" (WordNet antonyms, pairs split
the same way). Every spoken sample draws its voice from its own generator: training from espeak-ng English voices x
variants x rates x pitches and the Piper joe voice; eval from espeak-ng accents AND variants training never uses
(without espeak-ng: Piper at other speeds and pitches, and the manifest says the voices were not held out). Half of
the training clips are augmented (noise at set SNRs, reverberation, telephone band, gain, speed; the negatives'
sources without noise, which `negatives` adds itself); eval ASR has a clean, a noisy and a telephone third.
Images and videos come from per-sample generators seeded (seed, split, stream, index) with split 0 for train and 1
for eval; an eval item whose file bytes equal a training file is redrawn, and the build asserts no eval image or
video hash is in train. Image and video answers are one to three words or a number (`vita eval` exact match); chat
is answered in full sentences: templated prompts of `vita.datasets.mini.chat` with exact answers (arithmetic,
capitals) or the unmodified SmolLM2-135M's own (shipped in `recipes/mini/chat_answers.jsonl`, generated for any
prompt missing there), and eval chat and noisy spoken queries are scored on the answer's end ("is 56", match
"contains").
Image tasks are drawn by the weighted cycle `TASK_WEIGHTS` (naming needs many renders of its 404 concepts); eval
measures every task on the same number of cases, grouped by task, subgroup (emoji style, text vocabulary) and input.
`scene_text`: the unmodified SmolLM2-135M answers "What colour is the circle?" after "A yellow triangle and an orange
circle." at chance (15 % of 60), so no projector could make it answer from pictures; 100 LoRA steps on these
described scenes alone take it to 100 % on other descriptions (2026-12-04), and stage 3 keeps them in its mix.
Run: `vita data mini --out DIR [--small]`.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from vita.datasets.augment import DEFAULT_AUGMENT, NOISES, SNRS_DB, AugmentConfig, Plan, draw_plan, tag_ops
from vita.datasets.mini.canvas import NUMBER_WORDS, ImageItem
from vita.datasets.mini.chat import answer_key as _key
from vita.datasets.mini.chat import chat_prompts, chat_records, data_answers, typed_chat_cases
from vita.datasets.mini.dialogue import dialogues, eval_dialogues, eval_followups, followups
from vita.datasets.mini.images import IMAGE_TASKS, make_image
from vita.datasets.mini.regions import REGION_GRID, RegionItem, region_item
from vita.datasets.mini.speech import Clip, Speaker, VoicePool, eval_pool, train_pool
from vita.datasets.mini.spoken_text import addressed_text, fragment, sentence, short_words
from vita.datasets.mini.text import Corpus, antonym_question, load_corpus
from vita.datasets.mini.videos import VIDEO_TASKS, VideoItem, make_video, write_video
from vita.datasets.negatives import NegativesConfig, generate_negatives

DEFAULT_SIZES: dict[str, int] = {
    "vision_image": 6000, "vision_video": 600, "asr": 12000, "asr_short": 2000, "asr_fragment": 1200, "addressed": 600,
    "dialogue": 1200, "followup": 600, "image_typed": 3600, "image_spoken": 1800, "video_typed": 600,
    "video_spoken": 300, "chat_typed": 400, "chat_spoken": 200, "negatives": 900, "scene_text": 4000,
    "vision_regions": 12000, "eval_image_typed": 135, "eval_image_spoken": 135, "eval_video": 60, "eval_chat": 40,
    "eval_asr": 60, "eval_negatives": 60, "eval_naming": 120, "eval_dialogue": 240, "eval_followup": 30,
    "eval_chat_typed": 200,
}
# how often each image task is drawn (a deterministic cycle, `_task`): open-vocabulary naming needs many renders of
# its 404 concepts, the closed tasks few
TASK_WEIGHTS: dict[str, int] = {"colour": 2, "count": 2, "position": 2, "which_red": 1, "digit": 2, "photo": 1,
                                "emoji": 8, "scene": 4, "text": 3}
_CYCLE = tuple(t for k in range(max(TASK_WEIGHTS.values())) for t in IMAGE_TASKS if TASK_WEIGHTS[t] > k)
SMALL_SIZES: dict[str, int] = {
    "vision_image": 9, "vision_video": 3, "asr": 5, "asr_short": 3, "asr_fragment": 3, "addressed": 3, "dialogue": 6,
    "followup": 3, "image_typed": 9, "image_spoken": 6, "video_typed": 3, "video_spoken": 3, "chat_typed": 4,
    "chat_spoken": 2, "negatives": 9, "scene_text": 10, "vision_regions": 8, "eval_image_typed": 9,
    "eval_image_spoken": 6, "eval_video": 4, "eval_chat": 4, "eval_asr": 6, "eval_negatives": 6, "eval_naming": 4,
    "eval_dialogue": 6, "eval_followup": 3, "eval_chat_typed": 4,
}
ASR_PROMPT = "Transcribe the speech."
NEG_RATIO = (0.3, 0.4, 0.3)  # noisy spoken questions : statements / chatter : pure noise
ASR_CONDITIONS = ("clean", "noisy", "telephone")  # eval ASR, one third each
# relational image tasks whose questions the unmodified SmolLM2-135M cannot answer even from the caption in words
# (colour of the circle among three shapes: 15 % of 60, chance 17 %); `scene_text` teaches that from text alone
SCENE_TEXT_TASKS = ("colour", "count", "position", "which_red", "scene")


def _turns(*values: str) -> list[dict[str, str]]:
    return [{"from": "human" if i % 2 == 0 else "gpt", "value": v} for i, v in enumerate(values)]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _rng(seed: int, split: int, stream: str, i: int) -> np.random.Generator:
    return np.random.default_rng([seed, split, int(hashlib.sha256(stream.encode()).hexdigest()[:8], 16), i])


def _task(i: int) -> str:
    """Image task of sample i: the weighted cycle `TASK_WEIGHTS`."""
    return _CYCLE[i % len(_CYCLE)]


def _chat(rng: np.random.Generator, pairs: tuple[tuple[str, str], ...]) -> tuple[str, str]:
    """A question a model answers without media, with its full-sentence answer ending "... is X." (`_key` gives X):
    arithmetic or an antonym (the spoken queries of the non-awakening negatives)."""
    kind = int(rng.integers(4))
    a, b = int(rng.integers(1, 10)), int(rng.integers(1, 10))
    if kind == 0:
        return f"What is {NUMBER_WORDS[a]} plus {NUMBER_WORDS[b]}?", f"{a} plus {b} is {a + b}."
    if kind == 1:
        a, b = max(a, b), min(a, b)
        return f"What is {NUMBER_WORDS[a]} minus {NUMBER_WORDS[b]}?", f"{a} minus {b} is {a - b}."
    if kind == 2 or not pairs:
        return f"What number comes after {NUMBER_WORDS[a]}?", f"The number after {a} is {a + 1}."
    pair = pairs[int(rng.integers(len(pairs)))]
    question, answer = antonym_question(pair, int(rng.integers(4)))
    return question, f"The opposite of {pair[0]} is {answer}."


def _said(voices: _Voices, stream: str, n: int, seed: int, corpus: Corpus, text_of: Callable[..., str],
          record_of: Callable[[int, Clip], dict[str, Any]], *, noise: bool = True) -> list[dict[str, Any]]:
    """`n` training clips of `stream`, each saying `text_of(rng, statements, questions)`, as `record_of(i, clip)`
    (`noise=False`: augmented without additive noise, `_Voices.say`)."""
    return [record_of(i, voices.say(stream, i, text_of(_rng(seed, 0, stream, i), corpus.train_statements,
                                                       corpus.train_questions), noise=noise)) for i in range(n)]


def _fragments(voices: _Voices, n: int, seed: int, corpus: Corpus) -> list[dict[str, Any]]:
    """`n` broken-off sentences (`spoken_text.fragment`) -> their words. Said last in the split and without additive
    noise (whose babble would draw on the clips said before), so `rebuild.rebuild_fragments` writes them into an
    existing folder exactly as a fresh build does."""
    return _said(voices, "asr_fragment", n, seed, corpus, fragment,
                 lambda i, c: {"set": "mini_asr_fragment", "id": f"af{i}", "audio": c.rel,
                               "conversations": _turns(ASR_PROMPT + "<audio>", "<3>" + c.text)}, noise=False)


class _Voices:
    """Says text in one split: the voice (and the augmentation, if any) drawn from the sample's own generator."""

    def __init__(self, root: Path, seed: int, split: int, pool: VoicePool, augment: AugmentConfig | None,
                 corpus: Corpus) -> None:
        self.speaker = Speaker(root, "media/speech")
        self.seed, self.split, self.pool, self.augment = seed, split, pool, augment
        statements = corpus.eval_statements if split else corpus.train_statements
        for i in range(8):  # the babble pool: other talkers of this split
            g = _rng(seed, split, "babble", i)
            self.speaker.prime(pool.pick(g), statements[int(g.integers(len(statements)))])

    def say(self, stream: str, i: int, text: str, plan: Plan | None = None, *, noise: bool = True) -> Clip:
        """Sample i of `stream` says `text`: `plan` if given, else one drawn when this split augments
        (`noise=False`: without additive noise)."""
        g = _rng(self.seed, self.split, f"speech/{stream}", i)
        voice = self.pool.pick(g)
        if plan is None and self.augment is not None:
            plan = draw_plan(g, self.augment if noise else replace(self.augment, p_noise=0.0))
        return self.speaker.say(voice, text, plan)

    def write_index(self, path: Path, counts: Counter[str], prefix: str) -> None:
        write_speech_index(path, self.speaker.index(), counts, prefix)


def write_speech_index(path: Path, rows: list[dict[str, Any]], counts: Counter[str], prefix: str) -> None:
    """The speech index (one clip per line) and its counts under `prefix`/speech/."""
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    counts[f"{prefix}/speech/clips"] = len(rows)
    counts[f"{prefix}/speech/voices"] = len({r["voice"] for r in rows})
    counts[f"{prefix}/speech/augmented"] = sum(bool(r["augment"]) for r in rows)
    counts.update(f"{prefix}/speech/augment/{op}" for r in rows for op in tag_ops(r["augment"]))


class _Split:
    """Writes one split's media (images / videos) and remembers their hashes."""

    def __init__(self, root: Path, seed: int, split: int, forbidden: set[str]) -> None:
        self.root, self.seed, self.split, self.forbidden = root, seed, split, forbidden
        self.hashes: set[str] = set()
        self.counts: Counter[str] = Counter()

    def _fresh(self, stream: str, i: int, make: Callable[[np.random.Generator], Any],
               write: Callable[[Any, Path], None], path: Path) -> Any:
        for attempt in range(20):
            item = make(_rng(self.seed, self.split, f"{stream}/{attempt}" if attempt else stream, i))
            write(item, path)
            digest = _sha(path)
            if digest not in self.forbidden:
                self.hashes.add(digest)
                return item
        raise RuntimeError(f"could not draw a held-out {stream} item #{i}")

    def image(self, stream: str, i: int, task: str) -> tuple[str, ImageItem]:
        rel = f"media/images/{stream}_{i:05d}.png"
        (self.root / rel).parent.mkdir(parents=True, exist_ok=True)
        item = self._fresh(stream, i, lambda g: make_image(task, g, held_out=self.split == 1),
                           lambda it, p: it.image.save(p, format="PNG"), self.root / rel)
        self.counts[f"image/{task}"] += 1
        return rel, item

    def region(self, stream: str, i: int) -> tuple[str, RegionItem]:
        rel = f"media/regions/{stream}_{i:05d}.png"
        (self.root / rel).parent.mkdir(parents=True, exist_ok=True)
        item = self._fresh(stream, i, lambda g: region_item(g, REGION_GRID),
                           lambda it, p: it.image.save(p, format="PNG"), self.root / rel)
        self.counts["region"] += 1
        return rel, item

    def video(self, stream: str, i: int, task: str) -> tuple[str, VideoItem]:
        rel = f"media/videos/{stream}_{i:05d}.mp4"
        item = self._fresh(stream, i, lambda g: make_video(task, g), lambda it, p: write_video(it.frames, p),
                           self.root / rel)
        self.counts[f"video/{task}"] += 1
        return rel, item


def _negatives(root: Path, voices: _Voices, n: int, seed: int, statements: tuple[str, ...],
               pairs: tuple[tuple[str, str], ...]) -> list[dict[str, Any]]:
    """`n` negatives records (audio paths relative to `root`): questions and natural statements, each in its own
    voice (training: augmented without noise, `generate_negatives` adds the noise)."""
    if n <= 0:
        return []
    rows = []
    for i in range(max(2, n)):
        rng = _rng(seed, voices.split, "negatives-speech", i)
        if i % 2:
            text, answer = _chat(rng, pairs)
            clip = voices.say("negatives", i, text, noise=False)
            rows.append({"audio": clip.rel.removeprefix("media/"), "text": text, "answer": answer, "is_query": True})
        else:
            clip = voices.say("negatives", i, statements[int(rng.integers(len(statements)))], noise=False)
            rows.append({"audio": clip.rel.removeprefix("media/"), "text": clip.text, "is_query": False})
    manifest = root / "media" / "negatives_source.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    out = generate_negatives(NegativesConfig(manifest, root / "media" / "negatives", num_samples=n, ratio=NEG_RATIO,
                                             noise_seconds=(0.5, 1.5), seed=seed))
    records = []
    for line in out.read_text(encoding="utf-8").splitlines():
        r = json.loads(line)
        r.pop("speech", None)  # an absolute path: the build must not depend on where it is written
        r["audio"] = "media/negatives/" + r["audio"]
        records.append(r)
    out.unlink()
    return records


def _train(root: Path, sizes: dict[str, int], seed: int, counts: Counter[str], corpus: Corpus, pool: VoicePool,
           augment: AugmentConfig | None) -> tuple[dict[str, Path], _Split]:
    media = _Split(root, seed, 0, set())
    voices = _Voices(root, seed, 0, pool, augment, corpus)

    vision = []
    for i in range(sizes["vision_image"]):
        rel, it = media.image("vision", i, _task(i))
        prompt = "<image>\n" + ("Describe the image." if i % 2 else "")
        vision.append({"set": "mini_vision", "id": f"vi{i}", "image": rel, "conversations": _turns(prompt, it.caption)})
    for i in range(sizes["vision_video"]):
        rel, it = media.video("vision_video", i, VIDEO_TASKS[i % len(VIDEO_TASKS)])
        vision.append({"set": "mini_vision", "id": f"vv{i}", "video": rel,
                       "conversations": _turns("<video>\nDescribe the video.", it.caption)})

    audio = []
    for i in range(sizes["asr"]):
        text = sentence(_rng(seed, 0, "asr", i), corpus.train_statements, corpus.train_questions)
        clip = voices.say("asr", i, text)
        audio.append({"set": "mini_asr", "id": f"a{i}", "audio": clip.rel,
                      "conversations": _turns(ASR_PROMPT + "<audio>", "<3>" + clip.text)})
    short = _said(voices, "asr_short", sizes.get("asr_short", 0), seed, corpus, short_words,  # one to three words
                  lambda i, c: {"set": "mini_asr_short", "id": f"aw{i}", "audio": c.rel,
                                "conversations": _turns(ASR_PROMPT + "<audio>", "<3>" + c.text)})
    addressed = _said(voices, "addressed", sizes.get("addressed", 0), seed, corpus, addressed_text,  # -> "<2>"
                      lambda i, c: {"set": "mini_addressed", "id": f"ad{i}", "audio": c.rel, "text": c.text,
                                    "conversations": _turns("<audio>", ""), "inserted_id": 1})

    instruct: list[dict[str, Any]] = []
    for i in range(sizes["image_typed"]):
        task = _task(i)
        rel, it = media.image("typed", i, task)
        instruct.append({"set": f"mini_image_{task}", "id": f"it{i}", "image": rel,
                         "conversations": _turns("<image>\n" + it.question, it.answer)})
    for i in range(sizes["image_spoken"]):
        task = _task(i)
        rel, it = media.image("spoken", i, task)
        clip = voices.say("image_spoken", i, it.question)
        instruct.append({"set": f"mini_image_{task}", "id": f"is{i}", "image": rel, "audio": clip.rel,
                         "question": clip.text, "conversations": _turns("<image>\n<audio>", it.answer)})
    for i in range(sizes["video_typed"] + sizes["video_spoken"]):
        task = VIDEO_TASKS[i % len(VIDEO_TASKS)]
        rel, vit = media.video("video_qa", i, task)
        record: dict[str, Any] = {"set": f"mini_video_{task}", "id": f"vq{i}", "video": rel}
        if i < sizes["video_typed"]:
            record["conversations"] = _turns("<video>\n" + vit.question, vit.answer)
        else:
            clip = voices.say("video_spoken", i, vit.question)
            record.update(audio=clip.rel, question=clip.text, conversations=_turns("<video>\n<audio>", vit.answer))
        instruct.append(record)
    # text chat: templated prompts (`chat`), answered in full sentences (exact, or the unmodified SmolLM2's);
    # the spoken ones say a prompt of the typed set in a training voice
    prompts = chat_prompts("train", sizes["chat_typed"], seed) if sizes["chat_typed"] else []
    answers = data_answers(prompts, root)
    typed = chat_records(prompts, answers, set_name="mini_chat", id_prefix="ct")
    instruct += typed
    for i in range(min(sizes["chat_spoken"], len(typed))):
        r = typed[int(_rng(seed, 0, "chat_spoken", i).integers(len(typed)))]
        question, answer = r["conversations"][0]["value"], r["conversations"][1]["value"]
        clip = voices.say("chat_spoken", i, question)
        instruct.append({"set": "mini_chat", "id": f"cs{i}", "kind": r["kind"], "audio": clip.rel,
                         "question": clip.text, "conversations": _turns("<audio>", answer)})
    negatives = _negatives(root, voices, sizes["negatives"], seed, corpus.train_statements, corpus.train_pairs)
    instruct += [dict(r, set="mini_negatives") for r in negatives]
    instruct = [instruct[i] for i in np.random.default_rng([seed, 0]).permutation(len(instruct))]
    dialogue = dialogues(instruct + addressed, sizes.get("dialogue", 0), seed)
    followup = followups(instruct, lambda i, t: voices.say("followup", i, t).rel, sizes.get("followup", 0), seed)

    scene_text = []
    for i in range(sizes.get("scene_text", 0)):
        task = SCENE_TEXT_TASKS[i % len(SCENE_TEXT_TASKS)]
        it = make_image(task, _rng(seed, 0, "scene_text", i))
        scene_text.append({"set": f"mini_scene_text_{task}", "id": f"st{i}",
                           "conversations": _turns(f"{it.caption} {it.question}", it.answer)})

    regions = _regions(media, sizes.get("vision_regions", 0))
    fragments = _fragments(voices, sizes.get("asr_fragment", 0), seed, corpus)  # the last clips said

    counts.update(f"train/instruct/{r['set']}" + (f"/{r['kind']}" if "kind" in r else "") for r in instruct)
    counts.update({f"train/media/{k}": v for k, v in media.counts.items()})
    out = {}
    for name, records in (("vision_align", vision), ("audio_align", audio), ("audio_short", short),
                          ("audio_fragments", fragments),
                          ("addressed", addressed), ("dialogue", dialogue), ("followup", followup),
                          ("instruct", instruct), ("scene_text", scene_text), ("vision_regions", regions)):
        out[name] = root / f"{name}.json"
        out[name].write_text(json.dumps(records, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        counts[f"train/{name}"] = len(records)
    voices.write_index(root / "speech.jsonl", counts, "train")
    return out, media


def _regions(media: _Split, n: int) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        rel, rit = media.region("regions", i)
        out.append({"set": "mini_regions", "id": f"rg{i}", "image": rel, "rows": list(rit.rows)})
    return out


def _asr_plan(seed: int, i: int) -> tuple[str, Plan | None]:
    """Eval ASR case i's condition (clean / noisy / telephone, one third each) and its fixed Plan."""
    condition = ASR_CONDITIONS[i % len(ASR_CONDITIONS)]
    g = _rng(seed, 1, "asr-condition", i)
    noise = NOISES[int(g.integers(len(NOISES)))]
    snrs = SNRS_DB[1:] if noise == "babble" else SNRS_DB
    snr, plan_seed = float(snrs[int(g.integers(len(snrs)))]), int(g.integers(2**31))
    if condition == "noisy":
        return condition, Plan(noise=noise, snr_db=snr, seed=plan_seed)
    if condition == "telephone":
        return condition, Plan(telephone=True, seed=plan_seed)
    return condition, None


def naming_cases(media: _Split, n: int) -> list[dict[str, Any]]:
    """Open-vocabulary naming: `n` typed questions about held-out renders of emoji concepts seen in training (other
    backgrounds and scales, and line drawings, `ImageItem.subgroup`), grouped naming/<subgroup>."""
    cases = []
    for i in range(n):
        rel, it = media.image("naming", i, "emoji")
        cases.append({"id": f"naming-{i}", "image": rel, "answer": it.answer, "text": it.question,
                      "expect_state": "<3>", "group": f"naming/{it.subgroup}"})
    return cases


def _eval(root: Path, sizes: dict[str, int], seed: int, forbidden: set[str], corpus: Corpus, pool: VoicePool,
          counts: Counter[str]) -> tuple[dict[str, Path], _Split]:
    media = _Split(root, seed, 1, forbidden)
    voices = _Voices(root, seed, 1, pool, None, corpus)
    cases: dict[str, list[dict[str, Any]]] = {k: [] for k in ("image", "video", "chat", "asr", "negatives")}
    cases["naming"] = naming_cases(media, sizes["eval_naming"])

    for i in range(sizes["eval_image_typed"] + sizes["eval_image_spoken"]):
        task = IMAGE_TASKS[i % len(IMAGE_TASKS)]  # evenly: every task measured on the same number of cases
        rel, it = media.image("image", i, task)
        case: dict[str, Any] = {"id": f"image-{i}", "image": rel, "answer": it.answer}
        sub = f"{it.subgroup}/" if it.subgroup else ""
        if i < sizes["eval_image_typed"]:
            case.update(text=it.question, expect_state="<3>", group=f"image/{task}/{sub}typed")
        else:
            case.update(audio=voices.say("image", i, it.question).rel, expect_state="<1>",
                        group=f"image/{task}/{sub}spoken")
        cases["image"].append(case)
    for i in range(sizes["eval_video"]):
        task = VIDEO_TASKS[i % len(VIDEO_TASKS)]
        rel, vit = media.video("video", i, task)
        case = {"id": f"video-{i}", "video": rel, "answer": vit.answer}
        if i % 2 == 0:
            case.update(text=vit.question, expect_state="<3>", group=f"video/{task}/typed")
        else:
            case.update(audio=voices.say("video", i, vit.question).rel, expect_state="<1>",
                        group=f"video/{task}/spoken")
        cases["video"].append(case)
    # chat with exact answers (arithmetic, capitals; prompts disjoint from training's), scored on the key word
    exact = [p for p in chat_prompts("eval", 4 * sizes["eval_chat"] + 8, seed) if p.answer is not None]
    for i, p in enumerate(exact[: sizes["eval_chat"]]):
        case = {"id": f"chat-{i}", "answer": _key(p.answer or ""), "match": "contains"}
        if i % 2 == 0:
            case.update(text=p.prompt, expect_state="<3>", group=f"chat/{p.family}/typed")
        else:
            case.update(audio=voices.say("chat", i, p.prompt).rel, expect_state="<1>",
                        group=f"chat/{p.family}/spoken")
        cases["chat"].append(case)
    cases["chat_typed"] = typed_chat_cases(sizes["eval_chat_typed"], sizes["eval_chat"], seed)  # not in all.jsonl
    for i in range(sizes["eval_asr"]):
        text = sentence(_rng(seed, 1, "asr", i), corpus.eval_statements, corpus.eval_questions)
        condition, plan = _asr_plan(seed, i)
        clip = voices.say("asr", i, text, plan)
        cases["asr"].append({"id": f"asr-{i}", "audio": clip.rel, "text": ASR_PROMPT, "expect_state": "<3>",
                             "transcript": clip.text, "group": f"asr/{condition}"})
    for r in _negatives(root, voices, sizes["eval_negatives"], seed + 1_000_003, corpus.eval_statements,
                        corpus.eval_pairs):
        case = {"id": r["id"], "audio": r["audio"], "group": f"negatives/{r['kind']}"}
        if r["kind"] == "query":
            reply = r["conversations"][1]["value"].removeprefix("<1>")
            case.update(expect_state="<1>", answer=_key(reply), match="contains")
        else:
            case["expect_state"] = "<2>"
        cases["negatives"].append(case)
    cases["dialogue"] = eval_dialogues(cases["chat"], cases["negatives"], lambda i, t: voices.say("addr", i, t).rel,
                                       sizes["eval_dialogue"], seed, corpus.eval_statements, corpus.eval_questions)
    cases["followup"] = eval_followups(cases["chat"], lambda i, t: voices.say("followup", i, t).rel,
                                       sizes["eval_followup"], seed)
    out = {}
    for name, rows in cases.items():
        if rows:
            out[name] = root / f"{name}.jsonl"
            out[name].write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
            counts[f"eval/{name}"] = len(rows)
            counts.update(f"eval/groups/{r['group']}" for r in rows)
    every = [r for k, rows in cases.items() if k not in ("dialogue", "followup", "chat_typed") for r in rows]
    out["all"] = root / "all.jsonl"
    out["all"].write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in every), encoding="utf-8")
    counts["eval/all"] = len(every)
    counts.update({f"eval/media/{k}": v for k, v in media.counts.items()})
    voices.write_index(root / "speech.jsonl", counts, "eval")
    return out, media


def build_mini_data(out_dir: str | Path, *, seed: int = 0, sizes: dict[str, int] | str | None = None,
                    augment: AugmentConfig | None = DEFAULT_AUGMENT) -> dict:
    """Write train/, eval/ and manifest.json under `out_dir`; `sizes`: counts (see DEFAULT_SIZES) or "small";
    `augment`: how training speech is augmented (None: not at all)."""
    t0 = time.perf_counter()
    base = SMALL_SIZES if sizes == "small" else DEFAULT_SIZES
    chosen = dict(base, **(sizes if isinstance(sizes, dict) else {}))
    unknown = set(chosen) - set(DEFAULT_SIZES)
    if unknown:
        raise ValueError(f"unknown size key(s) {sorted(unknown)} (known: {', '.join(DEFAULT_SIZES)})")
    corpus = load_corpus()
    tpool, epool = train_pool(), eval_pool()
    if epool.held_out and set(tpool.identities) & set(epool.identities):
        raise AssertionError("an eval voice is also a training voice")
    root = Path(out_dir)
    counts: Counter[str] = Counter()
    train, train_media = _train(root / "train", chosen, seed, counts, corpus, tpool, augment)
    evals, eval_media = _eval(root / "eval", chosen, seed, train_media.hashes, corpus, epool, counts)
    assert not train_media.hashes & eval_media.hashes, "an eval image or video is also in the training set"
    files = {str(p.relative_to(root)): _sha(p) for p in sorted(root.rglob("*"))
             if p.is_file() and p.name != "manifest.json"}
    listing = "".join(f"{h}  {p}\n" for p, h in files.items())
    wall = round(time.perf_counter() - t0, 2)
    manifest = {
        "seed": seed, "sizes": chosen, "counts": dict(sorted(counts.items())),
        "voices": {"train": tpool.identities, "eval": epool.identities, "eval_held_out": epool.held_out,
                   "note": epool.note, "train_pool": tpool.describe(), "eval_pool": epool.describe()},
        "text": corpus.summary(),
        "augment": None if augment is None else asdict(augment),
        "train": {k: str(p.relative_to(root)) for k, p in train.items()},
        "eval": {k: str(p.relative_to(root)) for k, p in evals.items()},
        "speech_index": {"train": "train/speech.jsonl", "eval": "eval/speech.jsonl"},
        "files_sha256": hashlib.sha256(listing.encode()).hexdigest(), "files": files, "wall_seconds": wall,
    }
    (root / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return dict(manifest, out_dir=str(root), manifest_path=str(root / "manifest.json"))
