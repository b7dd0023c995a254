"""One config dataclass per component, composed into `VitaConfig`.

Configs are plain, frozen-by-convention dataclasses: built once (from a preset, our canonical `config.json`, or a
foreign config through `vita.checkpoint`), validated in `__post_init__`, never mutated at run time. Every field
has a value; nothing is read with a `getattr` default.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from vita.errors import ConfigError

SAMPLE_RATE = 16000  # Hz: the audio every model, the VAD and the duplex session take (other rates are resampled)


@dataclass
class LLMConfig:
    """Decoder-only LM of the Llama / Mistral / Mixtral / Qwen2 family.

    `num_experts == 0` means a dense SwiGLU MLP; `num_experts > 0` a Mixtral sparse MoE with top-k routing.
    """

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int = 0  # 0: hidden_size // num_heads
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    max_position_embeddings: int = 4096
    num_experts: int = 0
    num_experts_per_tok: int = 2
    qkv_bias: bool = False
    tie_word_embeddings: bool = False
    bos_token_id: int | None = 1
    eos_token_id: int | None = 2
    family: Literal["llama", "mistral", "mixtral", "qwen2"] = "llama"

    def __post_init__(self) -> None:
        if self.head_dim == 0:
            if self.hidden_size % self.num_heads:
                raise ConfigError(f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")
            self.head_dim = self.hidden_size // self.num_heads
        if self.num_heads % self.num_kv_heads:
            raise ConfigError(f"num_heads {self.num_heads} is not a multiple of num_kv_heads {self.num_kv_heads}")
        if self.num_experts and not 0 < self.num_experts_per_tok <= self.num_experts:
            raise ConfigError(f"num_experts_per_tok {self.num_experts_per_tok} not in 1..{self.num_experts}")
        for name in ("vocab_size", "hidden_size", "intermediate_size", "num_layers", "num_heads", "num_kv_heads"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"LLMConfig.{name} must be positive, got {getattr(self, name)}")


VISION_TOWERS = ("internvit", "efficientnet_lite0")


@dataclass
class VisionConfig:
    """The vision tower (`tower`: InternViT, or the EfficientNet-Lite0 CNN) + the VITA pixel shuffle that follows it.

    One tile [3, image_size, image_size] -> grid (image_size/patch)^2 patch tokens of width hidden_size ->
    [final LayerNorm if `post_norm`] -> x `feature_scale` -> 2x2 space-to-depth -> (grid/2)^2 tokens of width
    4*hidden_size. For the CNN, `patch_size` is its total stride (32) and hidden_size its head width (1280); the
    transformer fields (heads, layers, ...) are unused.
    """

    image_size: int = 448
    patch_size: int = 14
    hidden_size: int = 1024
    num_heads: int = 16
    intermediate_size: int = 4096
    num_layers: int = 24
    layer_norm_eps: float = 1e-6
    qkv_bias: bool = True
    num_channels: int = 3
    feature_scale: float = 0.5  # VITA multiplies the last-layer features by 0.5 before the pixel shuffle
    shuffle_factor: int = 2
    image_mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    image_std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    min_tiles: int = 1
    max_tiles: int = 12
    use_thumbnail: bool = True
    # a final LayerNorm on the last-layer tokens (DINOv2 has one; VITA-1.0's InternViT does not)
    post_norm: bool = False
    tower: str = "internvit"  # or "efficientnet_lite0" (vita.models.efficientnet)

    def __post_init__(self) -> None:
        self.image_mean = tuple(self.image_mean)  # type: ignore[assignment]
        self.image_std = tuple(self.image_std)  # type: ignore[assignment]
        if self.tower not in VISION_TOWERS:
            raise ConfigError(f"vision tower {self.tower!r}: not one of {', '.join(VISION_TOWERS)}")
        if self.hidden_size % self.num_heads:
            raise ConfigError(f"vision hidden_size {self.hidden_size} not divisible by num_heads {self.num_heads}")
        if self.image_size % self.patch_size:
            raise ConfigError(f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}")
        if self.grid_size % self.shuffle_factor:
            raise ConfigError(f"patch grid {self.grid_size} is not a multiple of shuffle_factor {self.shuffle_factor}")
        if not 1 <= self.min_tiles <= self.max_tiles:
            raise ConfigError(f"need 1 <= min_tiles <= max_tiles, got {self.min_tiles}, {self.max_tiles}")

    @property
    def grid_size(self) -> int:
        return self.image_size // self.patch_size

    @property
    def tokens_per_tile(self) -> int:
        return (self.grid_size // self.shuffle_factor) ** 2

    @property
    def output_size(self) -> int:
        return self.hidden_size * self.shuffle_factor**2


@dataclass
class FbankConfig:
    """Kaldi-compatible log-mel filterbank (povey window, pre-emphasis 0.97, DC removal, snip_edges)."""

    sample_rate: int = SAMPLE_RATE
    num_mel_bins: int = 80
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0
    dither: float = 0.0

    @property
    def frame_length(self) -> int:
        return int(self.sample_rate * self.frame_length_ms / 1000)

    @property
    def frame_shift(self) -> int:
        return int(self.sample_rate * self.frame_shift_ms / 1000)


@dataclass
class AudioConfig:
    """The 'whale' speech encoder: global CMVN -> Conv2dSubsampling4 -> pre-norm transformer with relative bias.

    Time: T fbank frames -> ((T-1)//2 - 1)//2 encoder frames (40 ms each).
    """

    kind: Literal["whale"] = "whale"
    input_dim: int = 80
    hidden_size: int = 1024
    num_heads: int = 16
    intermediate_size: int = 4096
    num_layers: int = 24
    max_positions: int = 5000
    layer_norm_eps: float = 1e-5
    fbank: FbankConfig = field(default_factory=FbankConfig)

    @property
    def sample_rate(self) -> int:
        """The waveform rate the encoder's front end expects."""
        return self.fbank.sample_rate

    def __post_init__(self) -> None:
        if isinstance(self.fbank, dict):
            self.fbank = FbankConfig(**self.fbank)
        if self.hidden_size % self.num_heads:
            raise ConfigError(f"audio hidden_size {self.hidden_size} not divisible by num_heads {self.num_heads}")


@dataclass
class LogMelConfig:
    """Whisper's log-mel front end: Hann(n_fft) STFT every hop samples, Slaney mel filters, log10, (x + 4) / 4.

    `chunk_seconds` is Whisper's fixed input window (30 s = 3000 frames); see `vita.media.logmel`.
    """

    sample_rate: int = SAMPLE_RATE
    num_mel_bins: int = 80
    n_fft: int = 400
    hop_length: int = 160
    chunk_seconds: int = 30

    @property
    def window_frames(self) -> int:
        return self.chunk_seconds * self.sample_rate // self.hop_length


@dataclass
class WhisperConfig:
    """Whisper's audio encoder (defaults: tiny.en): 2 conv1d + GELU (stride 2) -> positions -> pre-LN blocks -> LN.

    Time: T log-mel frames (10 ms) -> ceil(T / 2) encoder frames (20 ms). `pad_to_window`: each clip is padded with
    the silence floor to Whisper's 30 s window (what the encoder was trained on) and only its own frames are kept;
    False encodes just the clip's frames (faster, approximate; see `vita.models.whisper`). The window is
    min(logmel.window_frames, 2 * max_positions) frames; longer clips are encoded window by window.
    """

    kind: Literal["whisper"] = "whisper"
    input_dim: int = 80
    hidden_size: int = 384
    num_heads: int = 6
    intermediate_size: int = 1536
    num_layers: int = 4
    max_positions: int = 1500
    layer_norm_eps: float = 1e-5
    pad_to_window: bool = True
    logmel: LogMelConfig = field(default_factory=LogMelConfig)

    @property
    def sample_rate(self) -> int:
        """The waveform rate the encoder's front end expects."""
        return self.logmel.sample_rate

    def __post_init__(self) -> None:
        if isinstance(self.logmel, dict):
            self.logmel = LogMelConfig(**self.logmel)
        if self.hidden_size % self.num_heads:
            raise ConfigError(f"whisper hidden_size {self.hidden_size} not divisible by num_heads {self.num_heads}")
        if self.input_dim != self.logmel.num_mel_bins:
            raise ConfigError(f"whisper input_dim {self.input_dim} != log-mel bins {self.logmel.num_mel_bins}")


@dataclass(frozen=True)
class WhisperDecoderConfig:
    """Whisper's text decoder (defaults: tiny.en; `vita.models.whisper_decoder`) and its greedy decoding rules.

    Token ids are those of the checkpoint's own vocabulary; `suppress` / `suppress_begin` come from its config.json.
    """

    vocab_size: int = 51864
    hidden_size: int = 384
    num_heads: int = 6
    intermediate_size: int = 1536
    num_layers: int = 4
    max_positions: int = 448
    layer_norm_eps: float = 1e-5
    eot: int = 50256  # <|endoftext|>; every id above it is special or a timestamp
    prompt: tuple[int, ...] = (50257, 50362)  # <|startoftranscript|> <|notimestamps|> (English-only model)
    no_speech: int = 50361
    suppress: tuple[int, ...] = ()
    suppress_begin: tuple[int, ...] = (220, 50256)
    max_repeats: int = 4  # a tail n-gram said this many times in a row ends decoding (kept once)


@dataclass(frozen=True)
class TranscriberConfig:
    """Whisper's own decoder beside a CTC-aligned audio path (`vita.models.transcriber`): where it is confident, its
    transcript replaces the CTC read-out as the words the LLM reads.

    The encoder's first `tap_block` blocks are shared with `audio_encoder` (not fine-tuned there); the transcriber
    keeps Whisper's original blocks above them and its final norm. A clip is padded with the silence floor to at least
    `window_frames` log-mel frames (1000 = 10 s; Whisper misreads bare short clips) and by at least
    `margin_frames`. Its transcript is used when the
    average log-probability of its tokens is above `logprob_threshold` and <|nospeech|> is below
    `no_speech_threshold`; otherwise the CTC read-out stays.
    """

    decoder: WhisperDecoderConfig = field(default_factory=WhisperDecoderConfig)
    tap_block: int = 2
    window_frames: int = 1000
    margin_frames: int = 200  # and with at least this much silence after the clip (else Whisper may repeat its end)
    logprob_threshold: float = -0.7  # -0.3 until 2026-12-05b: looser takes more of Whisper's lead on real speech
    no_speech_threshold: float = 0.6
    # the two ears vote (`WhisperTranscriber.heard` with a read-out): where both hear words, the read-out's win when
    # (its CTC score - Whisper's words' CTC score) + vote_weight x (Whisper's score of the read-out's words - of its
    # own) > vote_margin; CTC scores per row at vote_scale, Whisper's per token. 0 = no vote (Whisper's when sure).
    # Chosen 2026-12-08 on development clips only (real speech's dev split, fresh sentences by training voices,
    # training noise clips), never the eval split: vita-mini's audio path heard 29.7 -> 25.8 % WER on the synthetic and
    # 34.9 -> 25.6 % on the real ones, noise heard as words 0 -> 0 of 40 (`recipes/mini/ears_vote/`).
    vote_scale: float = 0.5
    vote_weight: float = 0.5
    vote_margin: float = 0.2
    text_bytes: int = 0  # length of the decoder vocabulary's byte table (`vita.models.transcriber.byte_table`)

    def __post_init__(self) -> None:
        if isinstance(self.decoder, dict):
            d = {k: tuple(v) if isinstance(v, list) else v for k, v in self.decoder.items()}
            object.__setattr__(self, "decoder", WhisperDecoderConfig(**d))


@dataclass
class ProjectorConfig:
    """Vision projector `mlp2x_gelu`: Linear(in -> out), exact GELU, Linear(out -> out).

    `input_norm`: standardise the tower features per channel first, (x - input_mean) / input_std, with two fixed
    buffers measured on training images (`vita.training.feature_stats`). A training-time form only: it makes a
    projector over a frozen tower learn several times faster (the tower's features share a large mean), and
    `fold_input_norm` turns it back into the plain official MLP (the shipped vita-mini parts never carry it).
    """

    input_size: int
    output_size: int
    kind: Literal["mlp2x_gelu"] = "mlp2x_gelu"
    input_norm: bool = False


@dataclass
class AudioAdapterConfig:
    """Audio adapter: zero padded frames, right-pad k-1, Conv1d(stride 2), LayerNorm(eps 1e-3), GELU, Linear."""

    input_size: int
    output_size: int
    conv_size: int = 0  # 0: 2 * input_size (the official single-conv branch)
    kernel_size: int = 5
    stride: int = 2
    norm_eps: float = 1e-3
    # > 0: the LLM's vocabulary size; the rows were CTC-aligned to its token embeddings (vita.training.embed_align)
    # and reach the LLM compressed, one row per heard token (AudioAdapter.compress); 0: every row as it is
    ctc_vocab: int = 0
    ctc_snap: bool = False  # with ctc_vocab: each heard token's row is that token's input embedding (the LLM reads
    # exactly the text the read-out hears) instead of the mean of its frames

    def __post_init__(self) -> None:
        if self.conv_size == 0:
            self.conv_size = 2 * self.input_size


@dataclass(frozen=True)
class ReaderConfig:
    """The picture reader beside the vision tower (`vita.media.ocr`): the words it reads with at least
    `min_confidence` and `min_chars` letters or digits join the prompt after the picture's rows as `template`
    (videos' frames are not read). Detector: pictures scaled down to `max_side`; text where its probability >
    `bin_threshold`; a region kept when its mean probability >= `box_threshold` and both sides >= `min_box` px; its
    box grown by area * `unclip` / perimeter. Recogniser: lines at most `max_line_width` px wide at 48 px high; at most
    `max_words` words per picture."""

    min_confidence: float = 0.8
    min_chars: int = 2  # letters or digits in a reading (single characters are mostly shapes read as "A" or "0")
    template: str = ' It says "{words}".'
    max_side: int = 640  # 960 in PaddleOCR; a 640 x 480 camera frame takes ~70 ms here, 1280 x 720 ~200 ms at 960
    bin_threshold: float = 0.2
    box_threshold: float = 0.4
    unclip: float = 1.4
    min_box: int = 3
    max_line_width: int = 1280
    max_words: int = 8

    def __post_init__(self) -> None:
        if "{words}" not in self.template:
            raise ConfigError("reader.template must hold {words}")
        if not 0.0 <= self.min_confidence <= 1.0:
            raise ConfigError(f"reader.min_confidence {self.min_confidence} is not in [0, 1]")


@dataclass(frozen=True)
class TaggerConfig:
    """The picture tagger beside the vision tower (`vita.tagger`): a classifier `head` on EfficientNet-Lite0's pooled
    features looks at the picture at `image_size` px; its most likely class, when at least `min_confidence` sure, joins
    the prompt after the picture's rows (and any reader's words) as `template` (videos' frames are not tagged).
    `head`: "imagenet" (the package's own 1,000-class classifier), "mini-concepts" (vita-mini's emoji concepts, fitted
    by `python -m vita.cli.tools tagger_head`; `vita/assets/mini/concepts.safetensors`, not shipped yet) or the path of
    such a head file."""

    min_confidence: float = 0.5
    template: str = " It looks like: {label}."
    image_size: int = 256  # as vita-mini's tower (EfficientNet-Lite0 was trained at 224)
    head: str = "imagenet"

    def __post_init__(self) -> None:
        if not self.head:
            raise ConfigError("tagger.head is empty (\"imagenet\", \"mini-concepts\" or a head file's path)")
        if "{label}" not in self.template:
            raise ConfigError("tagger.template must hold {label}")
        if not 0.0 <= self.min_confidence <= 1.0:
            raise ConfigError(f"tagger.min_confidence {self.min_confidence} is not in [0, 1]")
        if self.image_size < 64 or self.image_size % 64:
            raise ConfigError(f"tagger.image_size {self.image_size} is not a multiple of 64 (>= 64)")


@dataclass
class VitaConfig:
    """The whole model. `vision`/`audio` may be None for a text-only model (a plain HF LLM directory)."""

    llm: LLMConfig
    vision: VisionConfig | None = None
    vision_projector: ProjectorConfig | None = None
    audio: AudioConfig | WhisperConfig | None = None  # `kind` tells which encoder
    audio_adapter: AudioAdapterConfig | None = None
    transcriber: TranscriberConfig | None = None  # Whisper's decoder beside a CTC-aligned Whisper audio path
    reader: ReaderConfig | None = None  # a text reader beside the vision tower (its words join the prompt)
    tagger: TaggerConfig | None = None  # an ImageNet classifier beside the vision tower (its label joins the prompt)
    # a turn the user typed is answered as typed: its reply starts with the `<3>` state token, forced (vita-mini); off,
    # the model chooses every state token itself (the official VITA code: parity)
    typed_state: bool = False
    # a reply whose last `loop_window` ids repeat a short block ("memory's memory's ...") ends there
    # (`vita.generation.loop.TokenLoop`; vita-mini); 0: greedy decoding runs on (the official VITA code: parity)
    loop_window: int = 0
    # a logit added to the not-query state's deciding id (the "2" of "<2>") where the reply picks its state
    # (`vita.generation.loop.TokenLoop(state_bias=...)`): a model's state decision moved back where its training put it
    # (`vita.eval.state_prob`, e.g. for a soup of runs); 0: off (the official VITA code: parity)
    state_bias: float = 0.0
    # the same for a reply whose prompt holds an earlier exchange (a follow-up, or speech after one); None: `state_bias`
    state_bias_after: float | None = None
    template: str = "mixtral_two"
    max_length: int = 9100
    # a second projector for video frames (`VitaModel.encode_images(video_rows=...)`): frames can be trained apart
    # from pictures, whose tiles keep `vision_projector`; None: frames share `vision_projector` (the official model)
    video_projector: ProjectorConfig | None = None

    def __post_init__(self) -> None:
        if isinstance(self.llm, dict):
            self.llm = LLMConfig(**self.llm)
        if isinstance(self.vision, dict):
            self.vision = VisionConfig(**self.vision)
        if isinstance(self.vision_projector, dict):
            self.vision_projector = ProjectorConfig(**self.vision_projector)
        if isinstance(self.video_projector, dict):
            self.video_projector = ProjectorConfig(**self.video_projector)
        if isinstance(self.audio, dict):
            self.audio = (WhisperConfig if self.audio.get("kind") == "whisper" else AudioConfig)(**self.audio)
        if isinstance(self.audio_adapter, dict):
            self.audio_adapter = AudioAdapterConfig(**self.audio_adapter)
        if isinstance(self.transcriber, dict):
            self.transcriber = TranscriberConfig(**self.transcriber)
        if isinstance(self.reader, dict):
            self.reader = ReaderConfig(**self.reader)
        if isinstance(self.tagger, dict):
            self.tagger = TaggerConfig(**self.tagger)
        for name in ("state_bias", "state_bias_after"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise ConfigError(f"{name} {value}: must be a finite number")
        if self.loop_window < 0 or 0 < self.loop_window < 3:
            raise ConfigError(f"loop_window {self.loop_window}: 0 (off) or at least 3 ids")
        if (self.reader is not None or self.tagger is not None) and self.vision is None:
            raise ConfigError("a picture reader or tagger needs a vision encoder")
        if self.transcriber is not None and not (
            isinstance(self.audio, WhisperConfig) and self.audio_adapter is not None and self.audio_adapter.ctc_vocab
            and self.audio_adapter.ctc_snap
            and 0 <= self.transcriber.tap_block < self.audio.num_layers
        ):
            raise ConfigError("a transcriber needs a Whisper audio encoder with a snapped CTC read-out "
                              "(audio_adapter.ctc_vocab, ctc_snap) and 0 <= tap_block < its layers")
        if (self.vision is None) != (self.vision_projector is None):
            raise ConfigError("vision and vision_projector must be given together")
        if (self.audio is None) != (self.audio_adapter is None):
            raise ConfigError("audio and audio_adapter must be given together")
        if self.video_projector is not None and self.vision is None:
            raise ConfigError("a video_projector needs a vision encoder (and its vision_projector)")
        for name in ("vision_projector", "video_projector"):
            projector = getattr(self, name)
            if projector is None:
                continue
            if projector.input_size != self.vision.output_size:
                raise ConfigError(f"{name} input {projector.input_size} != vision output {self.vision.output_size}")
            if projector.output_size != self.llm.hidden_size:
                raise ConfigError(f"{name} output {projector.output_size} != LLM hidden {self.llm.hidden_size}")
        if self.audio_adapter is not None:
            if self.audio_adapter.input_size != self.audio.hidden_size:
                raise ConfigError(
                    f"audio adapter input {self.audio_adapter.input_size} != audio hidden {self.audio.hidden_size}"
                )
            if self.audio_adapter.output_size != self.llm.hidden_size:
                raise ConfigError(
                    f"audio adapter output {self.audio_adapter.output_size} != LLM hidden {self.llm.hidden_size}"
                )

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        if data["video_projector"] is None:  # config files without one stay as they were written before it existed
            del data["video_projector"]
        return {"format": "vita", "version": 1, **data}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VitaConfig:
        data = dict(data)
        if data.pop("format", "vita") != "vita":
            raise ConfigError("not a vita config (field 'format' is not 'vita')")
        data.pop("version", None)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ConfigError(f"unknown keys in vita config: {sorted(unknown)}")
        return cls(**data)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> VitaConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))
