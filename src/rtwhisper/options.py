"""StreamOptions: every setting of one stream's recognition, in one frozen, validated type.

As faster-whisper's ``TranscriptionOptions``: built once (from the constructor's keywords, a
preset, a client's config message, a query string or CLI flags), passed down to the parts that
use it, and echoed back (the server's ``ready`` message, the benchmark's report). Each field
carries its knob (group, kind, range, help) in its metadata, so :data:`KNOBS` — the table from
which the presets, the server's config message and echo, the CLI's recognition flags and the
benchmark's configurations are made — cannot drift from the type. Adding a knob is one field
here and the code that uses it.

Groups: ``window`` (how audio is cut into decodes), ``commit`` (when a word is final),
``endpoint`` (when an utterance ends), ``decode`` (what Whisper is asked), ``input`` (what the
caller feeds).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .audio import ACCEPTED_SAMPLE_RATES, BYTES_FORMATS, validate_input_spec
from .chunker import ChunkConfig
from .engine import TASKS, validate_language
from .errors import ConfigError
from .merger import COMMIT_MARGIN_S

GROUPS = ("window", "commit", "endpoint", "decode", "input")

MAX_KEYTERMS = 50
MAX_KEYTERM_CHARS = 100
MAX_KEYTERMS_CHARS = 500
"""Keyterms are read before every window's context and cut nothing of it, so their total is bounded:
Whisper's prompt holds 223 tokens, of which a streaming window's context uses 32 (``PROMPT_TOKENS``)."""

MAX_PROMPT_CHARS = 2000
"""The longest ``initial_prompt`` accepted. Whisper reads at most the last 223 tokens of a prompt
(about 1,000 characters of English), so more only costs: a 3.4 MB prompt was tokenized in full
for every window (11-14 s of compute per 11 s of audio, 1 GB more memory on the server)."""


@dataclass(frozen=True)
class Knob:
    """One setting: its group, kind and accepted range, and a line of help (CLI, docs, errors).

    ``kind``: ``seconds``, ``probability``, ``integer``, ``choice``, ``language`` or ``text``;
    ``optional``: ``None`` is a value of its own (say, "no spare step"); ``flag``: the CLI's
    shorter name where it has one (the guide's ``--chunk``).
    """

    group: str
    kind: str
    help: str
    low: float | None = None
    high: float | None = None
    optional: bool = False
    choices: tuple[Any, ...] = ()
    flag: str | None = None
    live: bool = False
    """May change mid-stream (:meth:`~rtwhisper.processor.RealtimeWhisperProcessor.update_options`)."""
    name: str = ""

    def check(self, value: object) -> Any:
        """``value`` as this knob holds it (seconds as float), or :class:`ConfigError` saying what is accepted."""
        if value is None and self.optional:
            return None
        if self.kind in ("seconds", "probability"):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or not self.low <= value <= self.high:  # type: ignore[operator]
                raise ConfigError(f"{self.name} must be {self.accepts()}, got {value!r}")
            return float(value)
        if self.kind == "integer":
            if isinstance(value, bool) or not isinstance(value, int) or not self.low <= value <= self.high:  # type: ignore[operator]
                raise ConfigError(f"{self.name} must be {self.accepts()}, got {value!r}")
            return value
        if self.kind == "choice":
            if value not in self.choices:
                raise ConfigError(f"{self.name} must be {self.accepts()}, got {value!r}")
            return value
        if self.kind == "terms":
            return check_keyterms(value, self.name)
        if self.kind == "language":
            if not isinstance(value, str) or not value.strip():
                raise ConfigError(f"{self.name} must be {self.accepts()}, got {value!r}")
            validate_language(value)
            return value
        check_prompt(value)
        return value

    def accepts(self) -> str:
        """What this knob accepts, in words (for errors and ``--help``)."""
        orelse = ", or None" if self.optional else ""
        if self.kind == "seconds":
            return f"a number of seconds from {self.low:g} to {self.high:g}{orelse}"
        if self.kind == "probability":
            return f"a probability from {self.low:g} to {self.high:g}{orelse}"
        if self.kind == "integer":
            return f"an integer from {self.low:g} to {self.high:g}{orelse}"
        if self.kind == "choice":
            return f"one of {', '.join(map(str, self.choices))}{orelse}"
        if self.kind == "language":
            return f"a language code such as 'en' or 'ko'{orelse}"
        if self.kind == "terms":
            return (f"a list of at most {MAX_KEYTERMS} words or short phrases (each at most {MAX_KEYTERM_CHARS} "
                    f"characters, {MAX_KEYTERMS_CHARS} in all)")
        return f"a string of at most {MAX_PROMPT_CHARS} characters{orelse}"


def _knob(default: Any, group: str, kind: str, help: str, low: float | None = None, high: float | None = None, *,
          optional: bool = False, choices: tuple[Any, ...] = (), flag: str | None = None, live: bool = False) -> Any:
    return field(default=default, metadata={"knob": Knob(group, kind, help, low, high, optional, choices, flag, live)})


@dataclass(frozen=True)
class StreamOptions:
    """How one stream is recognised. Defaults are the library constructor's; presets set their own.

    Values are checked when the object is made (:class:`ConfigError` naming the knob and what it
    accepts); :meth:`replace` makes a changed copy, checked again.
    """

    # -- window: how audio is cut into decodes (:mod:`rtwhisper.chunker`) --
    chunk_duration: float = _knob(
        0.5, "window", "seconds", "new audio per update (s): most of a word's wait to be final", 0.05, 15.0,
        flag="chunk")
    overlap_duration: float = _knob(
        0.2, "window", "seconds", "already-final audio each window hears again (s); below chunk_duration",
        0.0, 15.0, flag="overlap")
    max_window_duration: float | None = _knob(
        None, "window", "seconds", "longest window (s); None: 15 s or four chunks, at most 30 s",
        0.5, 30.0, optional=True)
    spare_chunk_duration: float | None = _knob(
        None, "window", "seconds", "update step while the engine has a worker to spare (s); None: chunk_duration",
        0.1, 15.0, optional=True)
    # -- commit: when a word is final (:mod:`rtwhisper.merger`) --
    commit_probability: float | None = _knob(
        None, "commit", "probability", "one hypothesis this sure of a word makes it final; None: two must agree",
        0.0, 1.0, optional=True, live=True)
    commit_margin_s: float = _knob(
        COMMIT_MARGIN_S, "commit", "seconds", "a sure word must end this long before the audio does (s)", 0.0, 5.0,
        live=True)
    agreement_span_s: float = _knob(
        0.0, "commit", "seconds", "how much less audio the hypothesis agreed with must have heard (s)", 0.0, 5.0)
    agreement_margin_s: float = _knob(
        0.0, "commit", "seconds", "how far past a word the hypothesis agreed with must have heard (s)", 0.0, 5.0)
    # -- endpoint: when an utterance ends (:mod:`rtwhisper.vad`) --
    endpoint_silence_s: float = _knob(
        0.5, "endpoint", "seconds", "pause that ends an utterance after a finished sentence (s)", 0.1, 10.0,
        live=True)
    endpoint_max_silence_s: float = _knob(
        0.5, "endpoint", "seconds", "pause that ends an unfinished phrase (s); at least endpoint_silence_s",
        0.1, 30.0, live=True)
    # -- decode: what Whisper is asked --
    language: str | None = _knob(
        None, "decode", "language", "language code; None: detected", optional=True)
    task: str = _knob("transcribe", "decode", "choice", "transcribe, or translate to English", choices=TASKS)
    beam_size: int = _knob(1, "decode", "integer", "beam width of interim decodes", 1, 20, live=True)
    initial_prompt: str | None = _knob(
        None, "decode", "text", "text the decoder reads as what came before (names, spelling)", optional=True,
        live=True)
    keyterms: tuple[str, ...] = _knob(
        (), "decode", "terms", "names and terms to expect (Deepgram's keyterm): every decode reads them first, "
        "as faster-whisper's hotwords", live=True)
    # -- input: what the caller feeds (:mod:`rtwhisper.audio`) --
    sample_rate: int = _knob(16000, "input", "choice", "sample rate of fed audio (Hz); resampled to 16 kHz",
                             choices=ACCEPTED_SAMPLE_RATES)
    channels: int = _knob(1, "input", "integer", "channels of fed audio; downmixed", 1, 32)
    bytes_format: str = _knob("f32le", "input", "choice", "layout of fed bytes", choices=BYTES_FORMATS)

    def __post_init__(self) -> None:
        validate_input_spec(self.sample_rate, self.channels, self.bytes_format)  # AudioFormatError, as feed()'s
        for name, knob in KNOBS.items():
            object.__setattr__(self, name, knob.check(getattr(self, name)))
        if self.endpoint_max_silence_s < self.endpoint_silence_s:
            raise ConfigError(f"endpoint_max_silence_s must be a number of seconds from endpoint_silence_s "
                              f"({self.endpoint_silence_s:g}) to 30, got {self.endpoint_max_silence_s!r}")
        self.chunk_config()  # the window's own relations (overlap below the step, the window's length)

    def chunk_config(self) -> ChunkConfig:
        """The chunker's part (its maximum window resolved)."""
        return ChunkConfig(self.chunk_duration, self.overlap_duration, self.max_window_duration)

    def replace(self, **changes: Any) -> StreamOptions:
        """A copy with ``changes`` (checked); an unknown name is a :class:`ConfigError` listing the knobs."""
        unknown = sorted(set(changes) - set(KNOBS))
        if unknown:
            raise ConfigError(f"unknown option(s) {', '.join(unknown)}; options are: {', '.join(KNOBS)}")
        return dataclasses.replace(self, **changes)

    def group(self, name: str) -> dict[str, Any]:
        """One group's values (``window``, ``commit``, ``endpoint``, ``decode``, ``input``)."""
        if name not in GROUPS:
            raise ConfigError(f"unknown group {name!r}; groups are: {', '.join(GROUPS)}")
        return {k: getattr(self, k) for k, knob in KNOBS.items() if knob.group == name}

    def to_dict(self, groups: Iterable[str] = GROUPS) -> dict[str, Any]:
        """The values, for an echo (the server's ``ready``) or a report."""
        wanted = set(groups)
        return {k: getattr(self, k) for k, knob in KNOBS.items() if knob.group in wanted}


KNOBS: dict[str, Knob] = {
    f.name: dataclasses.replace(f.metadata["knob"], name=f.name) for f in dataclasses.fields(StreamOptions)
}
"""Every knob by name, in the type's order: the one table the presets, the server, the CLI and the
benchmark are made from."""

LIVE_KNOBS = tuple(name for name, knob in KNOBS.items() if knob.live)
"""The knobs a stream may change while it runs (the others shape state a change would orphan:
the window grid, the merger's agreement, the language tracker, the input format)."""


def read_overrides(data: Mapping[str, Any], names: Iterable[str]) -> dict[str, Any]:
    """The knobs among ``names`` that ``data`` sets, each checked alone (``None`` or absent: not set).

    For a client's config message, a query string already typed, or CLI flags: the values a
    preset's options are then :meth:`~StreamOptions.replace`-d with. A value out of range is a
    :class:`ConfigError` here, before any stream is made.
    """
    overrides = {}
    for name in names:
        value = data.get(name)
        if value is not None:
            overrides[name] = KNOBS[name].check(value)
    return overrides


def check_prompt(prompt: object) -> None:
    """An initial prompt: ``None`` or a string of at most ``MAX_PROMPT_CHARS``; :class:`ConfigError` otherwise."""
    if prompt is None:
        return
    if not isinstance(prompt, str):
        raise ConfigError(f"initial_prompt must be a string, got {type(prompt).__name__}")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise ConfigError(f"initial_prompt is {len(prompt)} characters; at most {MAX_PROMPT_CHARS} are accepted "
                          "(Whisper reads only the last 223 tokens of a prompt)")


def check_keyterms(value: object, name: str = "keyterms") -> tuple[str, ...]:
    """Keyterms as a tuple of stripped strings (a list, a tuple, or one comma-separated string)."""
    terms = value.split(",") if isinstance(value, str) else value
    if not isinstance(terms, (list, tuple)) or not all(isinstance(t, str) for t in terms):
        raise ConfigError(f"{name} must be a list of strings, got {type(value).__name__}")
    cleaned = tuple(t.strip() for t in terms if t.strip())
    if len(cleaned) > MAX_KEYTERMS or any(len(t) > MAX_KEYTERM_CHARS for t in cleaned) \
            or sum(len(t) for t in cleaned) > MAX_KEYTERMS_CHARS:
        raise ConfigError(f"{name} must be at most {MAX_KEYTERMS} terms of at most {MAX_KEYTERM_CHARS} characters, "
                          f"{MAX_KEYTERMS_CHARS} in all; got {len(cleaned)} terms, "
                          f"{sum(len(t) for t in cleaned)} characters")
    return cleaned
