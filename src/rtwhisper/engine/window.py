"""One window's decode: Whisper's thresholds, the input it is encoded from, and the item that carries
it through a batch (:class:`~rtwhisper.engine.ctranslate2.WhisperEngine`)."""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from .interface import DecodeRequest
from .words import SHORTFALL_S, _last_word_end_s

COMPRESSION_RATIO_THRESHOLD = 2.4
LOG_PROB_THRESHOLD = -1.0
NO_SPEECH_THRESHOLD = 0.6
"""Whisper's silence rule: no-speech probability over 0.6 with a mean log-probability under −1."""
FALLBACK_BEAM_SIZE = 5
FRAMES_PER_SECOND = 100  # log-mel frames
FULL_INPUT_FRAMES = 3000  # Whisper's 30 s
FRAME_BUCKET = 200
"""Encoder inputs are rounded up to 2 s steps so that windows of similar length share a batch."""
CLOSING_MIN_S = 20.0
CLOSING_SILENCE_S = 4.0
"""A closing window's encoder input: its audio and at least this much silence, at least
``CLOSING_MIN_S`` in all (``WhisperEngine`` says why not Whisper's 30 s)."""
SILENCE_LOG_MEL = -1.5
"""Whisper's normalised log-mel of digital silence, ``(log10(1e-10) + 4) / 4``."""
LOG_MEL_RANGE = 2.0
"""Whisper keeps 8 log10 units below a recording's loudest frame: 2 once normalised (÷ 4)."""
MAX_PROMPT_TOKENS = 223  # Whisper's max_length // 2 - 1
PROMPT_TOKENS = 32
"""Previous-text prompt length once a stream has that much final text (see ``_bucketed``)."""
FORCED_PREFIX_WORDS = 4
"""Words of a window's final text that the decoder is forced through; the words before them
join the previous-text prompt (and all of them are aligned, so word times do not change).

CTranslate2 reads a prompt in one pass but forces a prefix token by token, each step as dear
as a decoded one, and a streaming window's final text is most of its tokens (4321 forced
against 2380 read over the 214 updates of the long LJ file). The decoder needs only the last
few final words to find where it stands in the audio; the words before are context, which a
prompt gives as well (Whisper's own way with text before its window). Measured on those
updates (``base``, one AMD EPYC core): ``generate`` 0.34–0.36 s → 0.19–0.21 s a window with 3
to 5 words forced; in real time (the long LJ file's first 60 s, one stream, 2 cores) final
p50 1.50 → 1.12–1.18 s and server CPU 102 → 76 s, the same words; over the shared set's
grid phases the same WER and CER within their spread (``docs/benchmarks.md``). A decode
that goes back to an earlier place where those words were said is decoded again forced
through all of them (``_loops_back``)."""


_Conditioning = Literal["tail", "whole", "bare"]
"""How a decode is conditioned on text (``_Item.conditioning``)."""

_Language = tuple[str, float, str | None, float | None]
"""(language to decode in, its probability, detected language, its probability)."""


@dataclass
class _Item:
    """One request on its way through a batch."""

    index: int
    request: DecodeRequest
    features: np.ndarray  # (n_mels, frames): the window's log-mel, unpadded
    tokenizer: Any
    prompt: list[int]  # previous-text part, may be empty
    prefix: list[int]  # the window's final text: aligned, and forced after the start sequence
    context: list[int]  # ``prompt`` and the head of ``prefix``: the prompt when only ``forced`` is forced
    forced: list[int]  # the tail of ``prefix`` (``FORCED_PREFIX_WORDS``)
    language: str
    language_probability: float
    detected_language: str | None
    detected_probability: float | None
    tokens: list[int] | None = None
    avg_logprob: float = 0.0
    no_speech_prob: float = 0.0
    attempts: int = 0
    alignment: Any = None

    @property
    def content_frames(self) -> int:
        return int(self.features.shape[-1])

    def conditioning(self, how: _Conditioning) -> tuple[list[int], list[int]]:
        """(previous-text prompt, forced prefix) for a decode: the last final words forced and the
        words before them in the prompt (``tail``), all of them forced after the prompt
        (``whole``), or all of them forced and no prompt (``bare``: Whisper's retry)."""
        if how == "tail":
            return self.context, self.forced
        return (self.prompt if how == "whole" else []), self.prefix


def _bucketed(prompt: list[int]) -> list[int]:
    """The previous-text prompt, cut (oldest tokens first) to at most ``PROMPT_TOKENS``.

    CTranslate2 batches only prompts whose ``<|startoftranscript|>`` sits at the same position.
    The processor passes ~200 characters of final text (40–50 English tokens), so past its
    first seconds every stream's prompt is exactly ``PROMPT_TOKENS`` long and shares one
    ``generate`` with the others; Whisper cuts its prompt the same way (the last
    ``max_length // 2 - 1`` tokens). Padding short prompts to one length instead (with spaces)
    changed words: on jfk "what your country" became "why you are country".
    """
    return prompt[-PROMPT_TOKENS:]


HOTWORD_TOKENS = MAX_PROMPT_TOKENS - PROMPT_TOKENS - 1
"""The most tokens of hotwords a decode reads: what Whisper's prompt holds beside a streaming window's context."""


def _hotwords(tokenizer: Any, hotwords: str | None) -> list[int]:
    """The hotwords' tokens (faster-whisper's way: one space, then the text), at most ``HOTWORD_TOKENS``."""
    if not hotwords or not hotwords.strip():
        return []
    return tokenizer.encode(" " + hotwords.strip())[:HOTWORD_TOKENS]


def silence_level(features: np.ndarray) -> float:
    """The value that pads a window's log-mel to the encoder's input length: silence, as Whisper hears it.

    OpenAI's Whisper appends 30 s of zeros to the audio before the log-mel
    (``log_mel_spectrogram(audio, padding=N_SAMPLES)``), so in its own transcription the
    input past the speech is digital silence: the floor, 8 log10 units below the loudest
    frame. faster-whisper pads the finished features with 0 instead (its ``pad_or_trim``):
    log10 −4, several units over that floor for speech, a faint sound still going on.
    Padded with it, a closing window (the speech ended) read its last word as unfinished
    ("natural there for..." for "therefore" at the end of LJ001-0016). Interim windows, whose
    speech goes on, keep the 0 (``WhisperEngine._encode``); measured in ``docs/streaming.md``.
    """
    if features.size == 0:
        return SILENCE_LOG_MEL
    return max(SILENCE_LOG_MEL, float(features.max()) - LOG_MEL_RANGE)


def _even(frames: int) -> int:
    """The encoder's stride-2 convolution wants an even number of frames."""
    return frames + frames % 2


def _compression_ratio(text: str) -> float:
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def _rank(tokenizer: Any, tokens: list[int], avg_logprob: float) -> tuple[bool, float]:
    """Whisper's "best of the failed decodes": under the compression threshold first, then by log-probability."""
    return (_compression_ratio(tokenizer.decode(tokens)) <= COMPRESSION_RATIO_THRESHOLD, avg_logprob)


def _stops_short(it: _Item) -> bool:
    """Whether a decode's words end ``SHORTFALL_S`` or more before the speech of its window does."""
    speech_end_s = it.request.options.speech_end_s
    if speech_end_s is None or not it.tokens or it.alignment is None:
        return False
    return _last_word_end_s(it.tokenizer, it.prefix, it.tokens, it.alignment) < speech_end_s - SHORTFALL_S
