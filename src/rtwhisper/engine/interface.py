"""What the processor needs from a recogniser, in plain data.

The processor asks "recognise this window with these options, give me timed words"; an
:class:`Engine` answers a whole batch of such requests at once, so that one model can serve
the windows that many streams have due (:mod:`rtwhisper.scheduling`). A fake engine
drives the fast property tests; :class:`rtwhisper.engine.ctranslate2.WhisperEngine` is the
real one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np

from ..errors import ConfigError
from ..events import TranscriptEvent, Word

Task = Literal["transcribe", "translate"]
TASKS: tuple[str, ...] = ("transcribe", "translate")

MAX_TOKENS_PER_SECOND = 12
"""A window cannot hold more speech than ~12 tokens a second (fast Korean reaches it): the
bound on the tokens a decode may produce, so that a looping decoder stops early instead of
filling 448 tokens. The engine bounds a window by its length, the processor an update by its
audio after the commit point."""


@dataclass(frozen=True)
class DecodeOptions:
    """Per-request decoding options; one engine serves streams with different ones."""

    language: str | None = None
    """Language code, or ``None`` to detect it from this window."""
    task: Task = "transcribe"
    beam_size: int = 1
    prompt: str | None = None
    """Text said before the window (Whisper's ``<|startofprev|>`` context): style and vocabulary."""
    hotwords: str | None = None
    """Terms to expect (a stream's ``keyterms``), read before the prompt by every decode and never cut
    from it, as faster-whisper's ``hotwords``: Whisper then spells a name it would otherwise guess."""
    prefix: str | None = None
    """Text already final at the start of the window. The decoder is forced through it and only
    the words after it are returned, so final words are never decoded twice (the forced-prefix
    decoding of whisper_streaming's successor SimulStreaming and of Whisper's own ``prefix``)."""
    vad: bool = True
    """For whole files only: skip non-speech with faster-whisper's Silero VAD."""
    max_new_tokens: int | None = None
    """Most tokens to decode after the prefix (default: 12 a second of the window, the rate of
    fast Korean). A bound near the speech the window can hold stops a looping decoder early."""
    thorough: bool = True
    """Run Whisper's whole fallback on a decode that fails its thresholds (last a beam-5 decode).
    An interim streaming update sets ``False``: it retries only without the prompt, and a
    decode that still fails comes back with ``passed=False`` — the next update hears more."""
    end_of_stream: bool = False
    """The window ends where speech or the stream ends (the stream's last decode, an endpoint's,
    a flush's): the encoder sees its audio and then at least 4 s of silence (20 s in all at
    least), so that the model hears that speech stopped: with input that ends where a
    mid-sentence recording ends it looped ("and it was natural therefore, therefore, for,
    for…" at the end of the long LJ file)."""
    paused: bool = False
    """An interim window that ends at an endpoint (``endpoint_silence_s`` into a pause the voice
    activity detector heard): padded with silence like a closing window, but with an interim
    window's input length and beam, so that Whisper hears the speech stop and writes the
    sentence's end. Only there: padding every window 0.1 s into a pause wrote periods at comma
    pauses that the next window took back (final p90 1.57 s against 1.28-1.32 s on the long LJ
    file with 0.3 s spare updates)."""
    speech_end_s: float | None = None
    """Where voice activity says the window's speech ends, in seconds from its first sample (a
    closing decode's; ``None``: not known). A decode whose words stop ``SHORTFALL_S`` or more
    before it is decoded again another way, and the one that reaches further is kept: beam
    search forced through a window's last final words sometimes ends the text early (jfk's
    closing window, forced through "Ask what you", ended at "can do for" with beam 5, and
    "your country." was never heard)."""
    detect_language: bool = False
    """Detect the window's language even though ``language`` is given (the hypothesis reports it
    in ``detected_language``): a stream that expects a language hears when it changes."""


@dataclass(frozen=True, eq=False)
class DecodeRequest:
    """One window to recognise: float32 mono 16 kHz audio and how to decode it."""

    audio: np.ndarray
    options: DecodeOptions = field(default_factory=DecodeOptions)

    @property
    def duration_s(self) -> float:
        return len(self.audio) / 16000


@dataclass(frozen=True)
class Hypothesis:
    """One window's recognition: the words after the prefix, timed from the window's first sample."""

    words: tuple[Word, ...]
    language: str | None = None
    """The language decoded in."""
    language_probability: float | None = None
    no_speech_probability: float | None = None
    avg_logprob: float | None = None
    attempts: int = 1
    """Decodes it took (more than one when Whisper's thresholds sent it to the fallback)."""
    passed: bool = True
    """Whether the decode met Whisper's thresholds (compression ratio, mean log-probability)."""
    silent: bool = False
    """Whether Whisper's no-speech rule set the window aside (no-speech probability over 0.6 and
    mean log-probability under −1): it has no words, and says nothing against words that other
    windows heard."""
    detected_language: str | None = None
    """The window's detected language, where one was detected (no language given, or
    ``DecodeOptions.detect_language``)."""
    detected_probability: float | None = None


class Engine(Protocol):
    """What the processor needs from a recogniser."""

    def transcribe_batch(self, requests: Sequence[DecodeRequest]) -> list[Hypothesis]:
        """Recognise every request (in one batch where the engine can) and return their hypotheses in order."""
        ...


@dataclass(frozen=True)
class SegmentScores:
    """Whisper's own figures for one decoded segment (what OpenAI's verbose_json reports)."""

    seek: int
    tokens: tuple[int, ...]
    temperature: float
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float


@dataclass(frozen=True)
class FileTranscript:
    """A whole recording's transcript: Whisper's segments as final events on the file's clock."""

    segments: tuple[TranscriptEvent, ...]
    language: str | None
    language_probability: float | None
    duration_s: float
    scores: tuple[SegmentScores, ...] = ()

    @property
    def text(self) -> str:
        return " ".join(seg.text for seg in self.segments if seg.text)

    @property
    def words(self) -> tuple[Word, ...]:
        return tuple(w for seg in self.segments for w in seg.words)


def whisper_languages() -> tuple[str, ...] | None:
    """The language codes Whisper knows, before any model is loaded.

    A loaded model answers this publicly (``WhisperModel.supported_languages``); before one is
    loaded only faster-whisper's tokenizer table knows, so a future release without it means
    "let the decoder judge" (``None``), not a crash.
    """
    try:
        from faster_whisper.tokenizer import _LANGUAGE_CODES
    except ImportError:
        return None
    return tuple(_LANGUAGE_CODES)


def validate_language(language: str | None) -> None:
    """A language code Whisper knows, or ``None`` (detect); :class:`ConfigError` otherwise.

    Checked up front so a bad code is a clear error at construction (or an HTTP 400), not a
    ValueError from inside a decode on a worker thread.
    """
    if language is None:
        return
    codes = whisper_languages()
    if codes is not None and language not in codes:
        raise ConfigError(
            f"unknown language code {language!r}; use a Whisper code such as 'en' or 'ko' "
            f"(one of: {', '.join(sorted(codes))}), or None to detect")


def validate_options(options: DecodeOptions, *, multilingual: bool, model: str) -> None:
    """Check one request's options against what the model can do."""
    if options.task not in TASKS:
        raise ConfigError(f"task must be one of {', '.join(TASKS)}, got {options.task!r}")
    validate_language(options.language)
    if not multilingual and (options.language not in (None, "en") or options.task == "translate"):
        # Named by its folder's last part only: a server's error must not show where its files are.
        name = model.rstrip("/\\").replace("\\", "/").rsplit("/", 1)[-1]
        raise ConfigError(
            f"model {name!r} is English-only; it cannot "
            f"{'translate' if options.task == 'translate' else f'transcribe language {options.language!r}'}. "
            "Use a multilingual model such as 'base'")
