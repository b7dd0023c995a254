"""The Python API: `vita.load(path_or_preset)` returns a `Vita` that answers over text, images, video and speech.

    >>> import vita
    >>> m = vita.load("tiny-random")
    >>> reply = m.generate("What is in the picture?", images=["cat.png"])
    >>> reply.state, reply.text
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import torch

from vita.checkpoint.assemble import whisper_vocabulary
from vita.checkpoint.load import load_model
from vita.devices import cpu_dtype, default_dtype, resolve_device
from vita.generation.loop import PromptCache, TextLoop, TokenLoop, cache_with_room
from vita.generation.sampling import SamplingConfig
from vita.models.encoder_cache import EncoderCache
from vita.models.vita import VitaModel
from vita.processor import ModelInputs, Processor, Turn
from vita.tokenizer import Tokenizer
from vita.tokens import STATE_QUERY_TEXT, state_decision, state_lead


@dataclass
class Reply:
    state: str | None  # "<1>" spoken query, "<2>" not a query (stay silent), "<3>" typed query, None if absent
    text: str  # visible answer: no state token, no stop string
    token_ids: list[int] = field(default_factory=list)  # generated ids (the stop id excluded)
    finish_reason: str = "length"  # "stop" (eos id or stop string) or "length"


INFERENCE_ENCODER_CACHE = 256 << 20  # bytes of encoder outputs a loaded model keeps (LRU)


@torch.inference_mode()
def _transcribe_clips(model: VitaModel, fbanks: list[torch.Tensor]) -> None:
    model.transcribe_clips(fbanks)


class Vita:
    def __init__(self, model: VitaModel, tokenizer: Tokenizer) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        if model.transcriber is not None:  # Whisper's words reach the LLM as its own tokens
            model.transcriber.bind_tokenizer(tokenizer)
            model.transcriber.bind_whisper_text(whisper_vocabulary())  # the two ears vote
        if model.encoder_cache is None:  # earlier turns' clips and images are not encoded again at every turn
            model.encoder_cache = EncoderCache(INFERENCE_ENCODER_CACHE)
        self.processor = Processor(tokenizer, model.config)
        self._cache: PromptCache | None = None  # the KV cache `stream` uses when the caller passes none
        self._ears: ThreadPoolExecutor | None = None  # `listen_ahead`'s thread, started on first use
        self.state_guess = state_lead(tokenizer)  # a reply's likely first id, run with the prompt (`TokenLoop`)
        # a typed turn's reply starts with these ids where the model answers typed turns as typed (`typed_state`)
        self.typed_state_ids = tuple(tokenizer.encode(STATE_QUERY_TEXT, add_special_tokens=False))
        self.state_decision = state_decision(tokenizer)  # (ids before, id) deciding "<2>": `VitaConfig.state_bias`

    def new_cache(self, max_seq_len: int) -> PromptCache:
        """A KV cache over this model's LLM for `stream(..., cache=...)` (prefix reuse across calls)."""
        return PromptCache(self.model.llm, min(max_seq_len, self.model.llm.config.max_position_embeddings))

    def _own_cache(self, needed: int) -> PromptCache:
        if self._cache is not None and self._cache.max_seq_len < needed:
            self._cache = None  # free the old one before allocating the next
        self._cache = cache_with_room(self._cache, self.model.llm, needed)
        self._cache.truncate(0)  # a cold prefill every call: the same bits as a fresh cache
        return self._cache

    @property
    def config(self):
        return self.model.config

    def embed(self, inputs: ModelInputs, transcribe: bool = True) -> torch.Tensor:
        """Model inputs -> the prompt's input rows [1, L, D] (text with the media spliced in). `transcribe=False`:
        clips whose Whisper transcript is not memoised read the CTC read-out (`listen_ahead` runs the decoder)."""
        return self.model.embed(inputs.token_ids.to(self.model.device), inputs.pixel_values, inputs.fbanks,
                                transcribe, video_rows=inputs.video_rows)

    def listen_ahead(self, inputs: ModelInputs) -> Future | None:
        """Whisper's decoder on the inputs' clips, on a helper thread of this model's own, memoising each transcript;
        None when nothing is left to transcribe. A caller embeds with `transcribe=False` meanwhile and, once the
        future is done, embeds again: the same rows as one plain `embed` (`vita.duplex.roles.ReplyJob`)."""
        model = self.model
        if not inputs.fbanks or model.encoder_cache is None or model.transcribed(inputs.fbanks):
            return None
        if self._ears is None:
            self._ears = ThreadPoolExecutor(1, thread_name_prefix="vita-ears", initializer=torch.set_num_threads,
                                            initargs=(1,))
        return self._ears.submit(_transcribe_clips, model, list(inputs.fbanks))

    def token_loop(self, cache: PromptCache, embeds: torch.Tensor, *, max_new_tokens: int,
                   sampling: SamplingConfig | None = None, generator: torch.Generator | None = None,
                   typed: bool = False, after_exchange: bool = False, **options: Any) -> TokenLoop:
        """The reply stream every path decodes with (this API, the chat server, both duplex roles): `embeds` over
        the caller's `cache`, this model's stop ids; `options` are `TokenLoop`'s (prefill_chunk, forced, donor...).
        The first id of the state tokens, where they share one, runs with the prompt (`guess`). `typed`: the prompt
        ends with a turn the user typed (`ModelInputs.typed`); where the model answers those as typed
        (`VitaConfig.typed_state`) and no other ids are forced, the reply starts with `<3>`. A reply that repeats a
        short block of ids ends there where the model says so (`VitaConfig.loop_window`). The model's not-query bias
        (`VitaConfig.state_bias`, or `state_bias_after` where the prompt holds an earlier exchange: `after_exchange`,
        `ModelInputs.after_exchange`) moves its state decision unless `options` name their own `state_bias`."""
        if typed and self.config.typed_state and not options.get("forced"):
            options.update(forced=self.typed_state_ids, forced_complete=False)
        options.setdefault("guess", self.state_guess)
        options.setdefault("loop_window", self.config.loop_window)
        bias = self.config.state_bias
        if after_exchange and self.config.state_bias_after is not None:
            bias = self.config.state_bias_after
        if bias and self.state_decision is not None:
            options.setdefault("state_bias", (*self.state_decision, bias))
        return TokenLoop(self.model.llm, cache, embeds, max_new_tokens=max_new_tokens,
                         sampling=sampling or SamplingConfig(), generator=generator,
                         stop_ids=self.tokenizer.stop_ids, **options)

    def inputs(
        self,
        text: str | None = None,
        *,
        images: Sequence[Any] = (),
        video: Any | None = None,
        audio: Any | None = None,
        history: Sequence[Turn] = (),
    ) -> ModelInputs:
        return self.processor.simple(text, images=images, video=video, audio=audio, history=history)

    @torch.inference_mode()
    def stream(
        self,
        inputs: ModelInputs,
        *,
        max_new_tokens: int = 256,
        sampling: SamplingConfig | None = None,
        stop_strings: tuple[str, ...] = ("</s>",),
        seed: int | None = None,
        cache: PromptCache | None = None,
    ) -> Iterator[str]:
        """Yield visible text deltas as tokens arrive; the finished `Reply` is the generator's return value.

        `cache`: the caller's KV cache (`new_cache`; a prompt prefix it already holds is not prefilled again);
        None: one this object owns, prefilled from scratch every call."""
        embeds = self.embed(inputs)  # [1, L, D]
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        L = embeds.shape[1]
        cache = cache if cache is not None else self._own_cache(L + max(max_new_tokens, 0) + 1)
        tokens = self.token_loop(cache, embeds, max_new_tokens=max_new_tokens, sampling=sampling, generator=gen,
                                 typed=inputs.typed, after_exchange=inputs.after_exchange)
        reply = TextLoop(tokens, self.tokenizer, stop_strings=stop_strings)
        yield from reply
        finish = "length" if reply.finish_reason == "length" else "stop"
        return Reply(reply.state, reply.stream.visible_text.strip(), list(reply.token_ids), finish)

    def generate(
        self,
        text: str | None = None,
        *,
        images: Sequence[Any] = (),
        video: Any | None = None,
        audio: Any | None = None,
        history: Sequence[Turn] = (),
        max_new_tokens: int = 256,
        sampling: SamplingConfig | None = None,
        seed: int | None = None,
    ) -> Reply:
        inputs = self.inputs(text, images=images, video=video, audio=audio, history=history)
        stream = self.stream(inputs, max_new_tokens=max_new_tokens, sampling=sampling, seed=seed)
        while True:
            try:
                next(stream)
            except StopIteration as stop:
                return stop.value


def load(
    path: str,
    *,
    dtype: str | torch.dtype | None = None,
    device: str | torch.device = "cpu",
    vision_tower: str | None = None,
    audio_encoder: str | None = None,
    quantize: str | None = None,
) -> Vita:
    """Load a model directory (ours, the official VITA-1.0 layout, or a plain HF LLM) or a preset name.

    `device`: cpu, cuda, cuda:N or auto (`vita.devices`); `dtype`: None is bf16 on CUDA and on the CPU
    `vita.devices.cpu_dtype(path)` (fp32; bf16 for vita-mini where the CPU has native bf16; $VITA_CPU_DTYPE);
    `quantize`: "int8" or "int4" quantizes the LLM's weights after loading (`vita.checkpoint.quantized`)."""
    device = resolve_device(device)
    dtype = default_dtype(device, cpu_dtype(path)) if dtype is None else dtype
    model, tokenizer = load_model(path, dtype=dtype, device=device, vision_tower=vision_tower,
                                  audio_encoder=audio_encoder)
    if quantize is not None:
        from vita.checkpoint.quantized import quantize_model_

        quantize_model_(model, quantize)
    return Vita(model, tokenizer)
