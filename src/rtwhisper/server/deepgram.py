"""Deepgram's live transcription protocol (``/v1/listen``) on the same sans-I/O session.

Apps written against Deepgram's streaming API (its SDKs, or a bare WebSocket) switch to a
local rtwhisper by changing the URL. :class:`DeepgramSession` is :class:`StreamSession` — the
same limits, stall flush, idle timeout and close decisions — with Deepgram's shapes:

* settings come from the query string, not a config message: ``encoding`` (``linear16``;
  raw PCM only, so containers such as ``opus`` or ``mp3`` are refused), ``sample_rate``,
  ``channels`` (mixed to one stream), ``language`` (``en-US`` → ``en``; ``multi`` or none:
  detected), ``interim_results``, ``endpointing`` (milliseconds of silence that end an
  utterance, or ``false``), ``utterance_end_ms``, ``vad_events``, ``punctuate``, ``model``
  (any name is accepted; the server's own model answers, and ``Metadata`` names it);
* client messages ``KeepAlive`` (keeps the stream open without audio), ``Finalize`` (make
  what was heard final now: the next results carry ``from_finalize``) and ``CloseStream``
  (finish: the last results, then ``Metadata``, then close 1000);
* server messages ``Results`` (``channel.alternatives[0]`` with ``transcript``,
  ``confidence`` and ``words``; ``is_final``; ``speech_final`` on the result that ends an
  utterance at a pause: rtwhisper's ``end_of_utterance``; ``start`` and ``duration``),
  ``SpeechStarted`` (with ``vad_events``), ``UtteranceEnd`` (with ``utterance_end_ms``),
  ``Metadata`` and ``Error``.

Deepgram's defaults are kept where they are a choice of the client (no interim results, no
VAD events); its 10 ms default endpointing is not — Whisper needs context, so without
``endpointing`` the server's preset decides.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, parse_qsl

from ..audio import ACCEPTED_SAMPLE_RATES
from ..engine import validate_language
from ..errors import ConfigError
from ..events import TranscriptEvent
from ..options import check_keyterms
from ..text import normalize_word
from .protocol import Action, Message, SessionState, StreamSession, json_object
from .stream_config import StreamConfig

ENCODINGS = {"linear16": "s16le", "linear32f": "f32le"}
"""Raw PCM encodings accepted (Deepgram's ``linear16``; ``linear32f`` for float32 clients)."""

TRUE = ("true", "1", "yes")
FALSE = ("false", "0", "no")


MAX_DIGITS = 6
"""Digits a number in the query string may have (a sample rate, milliseconds): more is no setting."""


def _whole_number(value: str | None) -> int | None:
    """A query value of ASCII digits (at most ``MAX_DIGITS``) as an int, else ``None``.

    ``str.isdigit`` also passes "²" and Arabic-Indic digits, which ``int`` then refuses or reads,
    and ``int`` refuses a 4,300-digit string: each ended the stream with a traceback, not an error.
    """
    if value is None or not value.isascii() or not value.isdigit() or len(value) > MAX_DIGITS:
        return None
    return int(value)


def _boolean(params: dict[str, str], name: str, default: bool) -> bool:
    """A true/false query parameter; anything else is a :class:`ConfigError` (``maybe`` is not false)."""
    value = params.pop(name, None)
    if value is None:
        return default
    if value.lower() in TRUE:
        return True
    if value.lower() in FALSE:
        return False
    raise ConfigError(f"{name} must be true or false, got {value[:40]!r}")


def _shown(query: str, name: str) -> str:
    """A parameter's value as the client sent it, cut short for an error message."""
    value = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}.get(name)
    return "nothing" if value is None else repr(value[:40] + ("…" if len(value) > 40 else ""))


def read_pcm_format(params: dict[str, str], query: str, config: StreamConfig, *,
                    encoding: str | None = None, sample_rate: str | None = None) -> None:
    """Set ``config``'s raw PCM format from Deepgram's ``encoding`` and ``sample_rate`` (taken out of
    ``params``; the keyword arguments are the defaults when the query has none: v1 requires both,
    Flux defaults to 16 kHz ``linear16``). A bad value raises :class:`ConfigError`."""
    given = params.pop("encoding", encoding)
    if given is None or given not in ENCODINGS:
        shown = None if given is None else given[:40]
        raise ConfigError(
            f"encoding must be one of {', '.join(ENCODINGS)} (raw PCM), got {shown!r}; "
            "send containerized audio (wav, mp3, opus…) to POST /v1/audio/transcriptions instead")
    config.format = ENCODINGS[given]
    rate = _whole_number(params.pop("sample_rate", sample_rate))
    if rate not in ACCEPTED_SAMPLE_RATES:
        raise ConfigError(f"sample_rate must be one of {', '.join(map(str, ACCEPTED_SAMPLE_RATES))}, "
                          f"got {_shown(query, 'sample_rate')}")
    config.sample_rate = rate


def query_params(query: str) -> dict[str, str]:
    """A query string's parameters, the last value of each (blank ones kept: ``language=`` is an answer)."""
    return {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}


def unread(params: dict[str, str]) -> list[str]:
    """The parameters nothing read (the API key aside, which the guard checked): reported as ignored."""
    params.pop("api_key", None)
    return sorted(params)


def read_keyterms(params: dict[str, str], query: str, config: StreamConfig, *, keywords: bool = False) -> None:
    """Deepgram's ``keyterm`` (repeatable; and, with ``keywords``, v1's older ``keywords=term:boost``, the
    boost dropped) into the stream's ``keyterms`` knob (:class:`ConfigError` past its limits)."""
    names = ("keyterm", "keywords") if keywords else ("keyterm",)
    terms = [value.rsplit(":", 1)[0] if name == "keywords" and ":" in value else value
             for name, value in parse_qsl(query, keep_blank_values=True) if name in names]
    for name in names:
        params.pop(name, None)
    if terms:
        config.knobs["keyterms"] = check_keyterms(terms, "keyterm")


def language_code(value: str) -> str:
    """A Deepgram language (``en-US``, ``ko``) as Whisper's code, checked (:class:`ConfigError`)."""
    code = value.split("-")[0].lower()
    validate_language(code)
    return code


@dataclass
class DeepgramOptions:
    """What the query string asked for, beyond the stream's audio format."""

    model: str | None = None
    interim_results: bool = False
    punctuate: bool = True
    vad_events: bool = False
    utterance_end_ms: int | None = None
    ignored: list[str] = field(default_factory=list)

    @classmethod
    def parse(cls, query: str) -> tuple[DeepgramOptions, StreamConfig]:
        """The options and the stream config; a bad value raises :class:`ConfigError`."""
        params = query_params(query)
        options = cls(model=params.pop("model", None))
        config = StreamConfig(partials=False)
        read_pcm_format(params, query, config)
        channels = _whole_number(params.pop("channels", "1"))
        if channels is None or not 1 <= channels <= 8:
            raise ConfigError(f"channels must be 1 to 8 (they are mixed into one stream), got "
                              f"{_shown(query, 'channels')}")
        config.channels = channels
        language = params.pop("language", None)
        if language and language != "multi":
            config.knobs["language"] = language_code(language)
        read_keyterms(params, query, config, keywords=True)
        options.interim_results = _boolean(params, "interim_results", False)
        config.partials = options.interim_results
        options.punctuate = _boolean(params, "punctuate", True)
        options.vad_events = _boolean(params, "vad_events", False)
        endpointing = params.pop("endpointing", None)
        if endpointing is not None:
            milliseconds = _whole_number(endpointing)
            # Deepgram's meaning: this much silence ends the utterance (speech_final), whatever the
            # words say; the words-aware turn end is Flux's (/v2/listen).
            if endpointing.lower() == "false":
                silence_s = 10.0  # the longest pause accepted
            elif milliseconds is not None:
                silence_s = min(max(milliseconds / 1000, 0.1), 10.0)
            else:
                raise ConfigError(f"endpointing must be milliseconds or false, "
                                  f"got {_shown(query, 'endpointing')}")
            config.knobs.update(endpoint_silence_s=silence_s, endpoint_max_silence_s=silence_s)
        utterance_end = params.pop("utterance_end_ms", None)
        if utterance_end is not None:
            milliseconds = _whole_number(utterance_end)
            if milliseconds is None:
                raise ConfigError(f"utterance_end_ms must be milliseconds, got {_shown(query, 'utterance_end_ms')}")
            options.utterance_end_ms = milliseconds
        options.ignored = unread(params)
        return options, config


@dataclass
class DeepgramSession(StreamSession):
    """One ``/v1/listen`` stream: the native session's policy with Deepgram's messages."""

    byte_stream: bool = True

    options: DeepgramOptions = field(default_factory=DeepgramOptions)
    model_name: str = ""
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    _from_finalize: bool = False
    _in_utterance: bool = False
    _created: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()))

    @classmethod
    def from_query(cls, query: str, **kwargs: Any) -> DeepgramSession:
        """A session for the query string of a ``/v1/listen`` request (:class:`ConfigError` if bad)."""
        options, config = DeepgramOptions.parse(query)
        session = cls(options=options, **kwargs)
        session.config = config
        return session

    def receive_text(self, text: str, now: float) -> list[Action]:
        """``KeepAlive``, ``Finalize`` or ``CloseStream``."""
        self._now = now
        message = json_object(text)
        kind = message.get("type") if message is not None else None
        if kind == "KeepAlive":
            return self.keep_alive(now)
        if kind == "Finalize":
            if self._opened and self.state is SessionState.STREAMING:
                self._from_finalize = True
                self._flushed = True
                return [self._flush()]
            return []
        if kind == "CloseStream":
            return self._end()
        return self._bad("SchemaError", f"unknown message {text[:80]!r}; accepted: KeepAlive, Finalize, CloseStream "
                                        "(JSON objects with a \"type\"); send audio as binary frames")

    # -- Deepgram's shapes ------------------------------------------------------------------------

    def _error(self, code: str, message: str) -> Message:
        return {"type": "Error", "variant": code, "description": " ".join(message.split()), "message": code}

    def _ready(self, info: dict[str, Any]) -> Message:  # never sent: settings come from the URL
        return {}

    def _lag(self, lag_s: float) -> Message | None:
        return None  # Deepgram has no such message

    def _transcripts(self, events: list[TranscriptEvent]) -> list[Message]:
        out: list[Message] = []
        for event in events:
            if not event.is_final and not self.options.interim_results:
                continue
            if event.words and not self._in_utterance:
                self._in_utterance = True
                if self.options.vad_events:
                    out.append({"type": "SpeechStarted", "channel": [0, 1],
                                "timestamp": round(event.words[0].start_s, 3)})
            out.append(self._results(event))
            if event.is_final and event.end_of_utterance:
                self._in_utterance = False
                if self.options.utterance_end_ms is not None:
                    last = event.words[-1].end_s if event.words else event.end_s
                    out.append({"type": "UtteranceEnd", "channel": [0, 1], "last_word_end": round(last, 3)})
        return out

    def _results(self, event: TranscriptEvent) -> Message:
        words: list[dict[str, Any]] = [
            {"word": normalize_word(w.text), "start": round(w.start_s, 3), "end": round(w.end_s, 3),
             "confidence": round(w.probability, 4), "punctuated_word": w.text.strip()} for w in event.words]
        transcript = event.text if self.options.punctuate else " ".join(normalize_word(w.text) for w in event.words)
        confidence = sum(w.probability for w in event.words) / len(event.words) if event.words else 0.0
        from_finalize = event.is_final and self._from_finalize
        if event.is_final:
            self._from_finalize = False
        return {
            "type": "Results", "channel_index": [0, 1], "start": round(event.start_s, 3),
            "duration": round(max(0.0, event.end_s - event.start_s), 3), "is_final": event.is_final,
            "speech_final": event.is_final and event.end_of_utterance, "from_finalize": from_finalize,
            "channel": {"alternatives": [{"transcript": transcript, "confidence": round(confidence, 4),
                                          "words": words, "languages": [event.language] if event.language else []}]},
            "metadata": {"request_id": self.request_id, "model_uuid": self.request_id,
                         "model_info": self._model_info()},
        }

    def _model_info(self) -> dict[str, str]:
        return {"name": self.model_name, "version": "rtwhisper", "arch": "whisper"}

    def _done(self, audio_s: float) -> list[Message]:
        note = (f"model {self.options.model!r} is served by {self.model_name!r}" if self.options.model
                and self.options.model != self.model_name else "")
        if self.options.ignored:
            note += ("; " if note else "") + f"ignored parameters: {', '.join(self.options.ignored)}"
        return [{"type": "Metadata", "transaction_key": "deprecated", "request_id": self.request_id,
                 "sha256": "", "created": self._created, "duration": round(audio_s, 3),
                 "channels": self.config.channels,
                 "models": [self.model_name], "model_info": {self.model_name: self._model_info()},
                 "warnings": [note] if note else []}]
