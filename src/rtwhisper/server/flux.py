"""Deepgram Flux's turn API (``/v2/listen``) on the same sans-I/O session.

Voice agents ask one question of speech recognition: has the user finished, and what did
they say? Flux answers with turns, and agents built on Deepgram's SDK (``listen.v2``) or
Pipecat's Flux service switch to a local rtwhisper by changing the URL. :class:`FluxSession`
is :class:`~rtwhisper.server.protocol.StreamSession` — the same limits, idle timeout and
close decisions — speaking Flux:

* settings from the query string: ``model`` (``flux-general-en``: English; any other name:
  language detected, or ``language_hint``), ``encoding`` (``linear16``; ``linear32f`` for
  float32 clients), ``sample_rate``, ``eot_threshold`` (0.5–1.0, default 0.7),
  ``eager_eot_threshold`` (0.3–0.9, off unless given), ``eot_timeout_ms`` (500–60000,
  default 5000); other parameters are ignored, and a ``Warning`` names them;
* client messages: binary audio, ``Configure`` (new ``thresholds``, answered with
  ``ConfigureSuccess`` or ``ConfigureFailure``), ``ForceEndTurn`` and ``CloseStream``;
* server messages: ``Connected``; ``TurnInfo`` with ``event`` ``StartOfTurn``, ``Update``
  (each time recognition moves on), ``EagerEndOfTurn``, ``TurnResumed`` and ``EndOfTurn``
  (with ``trigger``: ``model``, ``manual`` or ``timeout``), each carrying ``turn_index``,
  the turn's ``audio_window_start``/``end``, its ``transcript`` and ``words`` so far and an
  ``end_of_turn_confidence``; ``Warning``; ``Error``.

**End-of-turn confidence** weighs the pause by what the words say (:func:`end_of_turn_confidence`):
after a finished sentence (Whisper's own punctuation) it starts at 0.5 and reaches 1.0 after
``SENTENCE_PAUSE_S`` of silence; after an unfinished phrase ("and…", no final punctuation) it
reaches 1.0 only after ``PHRASE_PAUSE_S``. The turn ends where the confidence reaches
``eot_threshold`` — the default 0.7 is 0.3 s of silence after a finished sentence (the
``endpointing=300`` voice agents use with Deepgram's v1 API) and 1.05 s after an unfinished
phrase — or ``eot_timeout_ms`` after the speech, whichever comes first. The recogniser's own
endpoint rule (``endpoint_silence_s`` after a sentence, ``endpoint_max_silence_s`` after a
phrase) is set from these, so the turn ends with the recogniser's closing final, whose words
are heard to their end.

**Flux's promise is kept**: when ``EndOfTurn`` follows ``EagerEndOfTurn`` with no
``TurnResumed`` between them, its transcript is the eager one; if the closing words differ,
``TurnResumed`` comes first.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError
from ..events import TranscriptEvent, Word
from ..options import check_keyterms
from ..text import SENTENCE_ENDS
from .deepgram import _shown, _whole_number, language_code, query_params, read_keyterms, read_pcm_format, unread
from .protocol import Action, Message, Retune, Send, SessionState, StreamSession, json_object
from .stream_config import StreamConfig

SENTENCE_PAUSE_S = 0.75
"""Silence after a finished sentence by which the end-of-turn confidence reaches 1.0 (from 0.5):
the default threshold 0.7 then ends a turn 0.3 s after a sentence, as ``endpointing=300`` does."""
PHRASE_PAUSE_S = 1.5
"""Silence after an unfinished phrase by which the confidence reaches 1.0 (from 0): 1.05 s at 0.7."""
EOT_THRESHOLD = 0.7
"""Flux's default ``eot_threshold``."""
EOT_TIMEOUT_MS = 5000
"""Flux's default ``eot_timeout_ms``."""
MIN_ENDPOINT_S = 0.1
"""The shortest pause the recogniser takes as an endpoint."""
MAX_ENDPOINT_S = 10.0
"""The longest pause after a sentence the recogniser accepts (after a phrase: ``MAX_PHRASE_S``)."""
MAX_PHRASE_S = 30.0


def end_of_turn_confidence(pause_s: float | None, finished: bool) -> float:
    """How sure the speaker is done: silence so far (``None``: speaking) weighed by the words."""
    if pause_s is None:
        return 0.0
    if finished:
        return min(1.0, 0.5 + 0.5 * pause_s / SENTENCE_PAUSE_S)
    return min(1.0, pause_s / PHRASE_PAUSE_S)


def _pause_for(confidence: float, finished: bool) -> float:
    """The silence after which :func:`end_of_turn_confidence` reaches ``confidence``."""
    if finished:
        return max(0.0, (confidence - 0.5) / 0.5 * SENTENCE_PAUSE_S)
    return confidence * PHRASE_PAUSE_S


@dataclass(frozen=True)
class Thresholds:
    """Flux's three end-of-turn settings, checked."""

    eot_threshold: float = EOT_THRESHOLD
    eager_eot_threshold: float | None = None
    eot_timeout_ms: int = EOT_TIMEOUT_MS

    def __post_init__(self) -> None:
        if not _number(self.eot_threshold) or not 0.5 <= self.eot_threshold <= 1.0:
            raise ConfigError(f"eot_threshold must be from 0.5 to 1.0, got {self.eot_threshold!r}")
        if self.eager_eot_threshold is not None and (
                not _number(self.eager_eot_threshold) or not 0.3 <= self.eager_eot_threshold <= 0.9):
            raise ConfigError(f"eager_eot_threshold must be from 0.3 to 0.9, got {self.eager_eot_threshold!r}")
        if self.eager_eot_threshold is not None and self.eager_eot_threshold > self.eot_threshold:
            raise ConfigError(f"eager_eot_threshold ({self.eager_eot_threshold}) must not be over "
                              f"eot_threshold ({self.eot_threshold})")
        if isinstance(self.eot_timeout_ms, bool) or not isinstance(self.eot_timeout_ms, int) \
                or not 500 <= self.eot_timeout_ms <= 60000:
            raise ConfigError(f"eot_timeout_ms must be a whole number from 500 to 60000, got {self.eot_timeout_ms!r}")

    def endpoints(self) -> tuple[float, float]:
        """The recogniser's (``endpoint_silence_s``, ``endpoint_max_silence_s``) for these thresholds."""
        timeout_s = self.eot_timeout_ms / 1000
        if self.eot_threshold >= 1.0:  # confidence-based ends off: only the timeout ends a turn
            sentence = phrase = timeout_s
        else:
            sentence = min(_pause_for(self.eot_threshold, True), timeout_s)
            phrase = min(_pause_for(self.eot_threshold, False), timeout_s)
        sentence = min(max(sentence, MIN_ENDPOINT_S), MAX_ENDPOINT_S)
        return sentence, min(max(phrase, sentence), MAX_PHRASE_S)

    def timed_out(self, finished: bool) -> bool:
        """Whether a turn that ends now ends by ``eot_timeout_ms`` rather than by its confidence."""
        if self.eot_threshold >= 1.0:
            return True
        return self.eot_timeout_ms / 1000 < _pause_for(self.eot_threshold, finished) - 1e-9

    def to_message(self) -> dict[str, Any]:
        return {"eot_threshold": self.eot_threshold, "eager_eot_threshold": self.eager_eot_threshold,
                "eot_timeout_ms": self.eot_timeout_ms}


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _query_number(params: dict[str, str], name: str, query: str) -> float | None:
    value = params.pop(name, None)
    if value is None:
        return None
    try:
        number = float(value) if len(value) <= 12 and value.isascii() else math.nan
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise ConfigError(f"{name} must be a number, got {_shown(query, name)}")
    return number


@dataclass
class FluxOptions:
    """What the query string asked for, beyond the stream's audio format."""

    model: str = "flux-general-en"
    thresholds: Thresholds = field(default_factory=Thresholds)
    ignored: list[str] = field(default_factory=list)

    @classmethod
    def parse(cls, query: str) -> tuple[FluxOptions, StreamConfig]:
        """The options and the stream config; a bad value raises :class:`ConfigError`."""
        params = query_params(query)
        options = cls(model=params.pop("model", "") or "flux-general-en")
        config = StreamConfig(partials=True)
        read_pcm_format(params, query, config, encoding="linear16", sample_rate="16000")
        read_keyterms(params, query, config)
        hint = params.pop("language_hint", None)
        if options.model.startswith("flux-general-en"):
            config.knobs["language"] = "en"
        elif hint:
            config.knobs["language"] = language_code(hint)
        eot = _query_number(params, "eot_threshold", query)
        eager = _query_number(params, "eager_eot_threshold", query)
        timeout = params.pop("eot_timeout_ms", None)
        timeout_ms = _whole_number(timeout) if timeout is not None else EOT_TIMEOUT_MS
        if timeout_ms is None:
            raise ConfigError(f"eot_timeout_ms must be a whole number of milliseconds, "
                              f"got {_shown(query, 'eot_timeout_ms')}")
        options.thresholds = Thresholds(EOT_THRESHOLD if eot is None else eot, eager, timeout_ms)
        silence_s, max_silence_s = options.thresholds.endpoints()
        config.knobs.update(endpoint_silence_s=silence_s, endpoint_max_silence_s=max_silence_s)
        options.ignored = unread(params)
        return options, config


@dataclass
class FluxSession(StreamSession):
    """One ``/v2/listen`` stream: the native session's policy, reported as Flux's turns."""

    byte_stream: bool = True

    options: FluxOptions = field(default_factory=FluxOptions)
    model_name: str = ""
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    turn_index: int = 0
    _sequence: int = 0
    _finals: list[Word] = field(default_factory=list)  # the turn's final words
    _partial: tuple[Word, ...] = ()  # the turn's latest partial words
    _turn_start_s: float | None = None  # set while a turn is open
    _window_end_s: float = 0.0
    _eager: str | None = None  # the transcript an EagerEndOfTurn promised, until resumed or ended
    _forced_flush: int | None = None  # the flush a ForceEndTurn asked for

    @classmethod
    def from_query(cls, query: str, **kwargs: Any) -> FluxSession:
        """A session for the query string of a ``/v2/listen`` request (:class:`ConfigError` if bad)."""
        options, config = FluxOptions.parse(query)
        session = cls(options=options, **kwargs)
        session.config = config
        return session

    def start(self, now: float) -> list[Action]:
        actions = super().start(now)
        actions.append(Send(self._message({"type": "Connected"})))
        if self.options.ignored:
            actions.append(Send(self._message({
                "type": "Warning", "code": "UNSUPPORTED_PARAMETERS",
                "description": f"ignored parameters: {', '.join(self.options.ignored)}"})))
        return actions

    def receive_text(self, text: str, now: float) -> list[Action]:
        """``Configure``, ``ForceEndTurn`` or ``CloseStream``."""
        self._now = now
        message = json_object(text)
        kind = message.get("type") if message is not None else None
        if message is not None and kind == "Configure":
            return self._configure(message)
        if kind == "ForceEndTurn":
            if self._opened and self.state is SessionState.STREAMING:
                self._flushed = True
                flush = self._flush()
                self._forced_flush = self.flushes_sent
                return [flush]
            return []
        if kind == "CloseStream":
            return self._end()
        if kind == "KeepAlive":
            return self.keep_alive(now)
        return self._bad("UNPARSABLE_CLIENT_MESSAGE",
                         f"unknown message {text[:80]!r}; accepted: Configure, ForceEndTurn, CloseStream "
                         "(JSON objects with a \"type\"); send audio as binary frames")

    def _configure(self, message: Message) -> list[Action]:
        thresholds = message.get("thresholds")
        unknown = sorted(set(message) - {"type", "thresholds", "keyterms"})
        current = self.options.thresholds
        try:
            if unknown:
                raise ConfigError(f"unsupported field(s) {', '.join(unknown)}; accepted: thresholds, keyterms")
            keyterms = None if message.get("keyterms") is None else check_keyterms(message["keyterms"], "keyterms")
            if thresholds is not None and not isinstance(thresholds, dict):
                raise ConfigError("thresholds must be an object with eot_threshold, eager_eot_threshold, "
                                  "eot_timeout_ms")
            given = dict(thresholds or {})
            extra = sorted(set(given) - {"eot_threshold", "eager_eot_threshold", "eot_timeout_ms"})
            if extra:
                raise ConfigError(f"unknown threshold(s) {', '.join(extra)}")
            new = Thresholds(given.get("eot_threshold", current.eot_threshold),
                             given.get("eager_eot_threshold", current.eager_eot_threshold),
                             given.get("eot_timeout_ms", current.eot_timeout_ms))
        except ConfigError as exc:
            return [Send(self._message({"type": "ConfigureFailure", "code": "INVALID_CONFIGURATION",
                                        "description": str(exc)}))]
        self.options.thresholds = new
        silence_s, max_silence_s = new.endpoints()
        changes: dict[str, Any] = {"endpoint_silence_s": silence_s, "endpoint_max_silence_s": max_silence_s}
        if keyterms is not None:
            changes["keyterms"] = keyterms
        self.config.knobs.update(changes)
        success = Send(self._message({"type": "ConfigureSuccess", "thresholds": new.to_message(),
                                      "keyterms": list(self.config.knobs.get("keyterms", ()))}))
        return [Retune(changes), success] if self._opened else [success]

    # -- turns ------------------------------------------------------------------------------------

    def _transcripts(self, events: list[TranscriptEvent]) -> list[Message]:
        """The turn's messages for one batch of events: at most one ``Update`` (the newest text)."""
        out: list[Message] = []
        shown = self._text() if self._turn_start_s is not None else None  # what the client has now
        for event in events:
            self._window_end_s = max(self._window_end_s, event.end_s)
            if event.is_final:
                self._finals += event.words
                self._partial = ()
            else:
                self._partial = event.words
            words = self._words()
            if words and self._turn_start_s is None:
                self._turn_start_s = words[0].start_s
                out.append(self._turn_info("StartOfTurn", 0.0))
                shown = self._text()
            if self._turn_start_s is None:
                continue
            if self._eager is not None and self._text() != self._eager:
                self._eager = None  # speech went on, or the closing decode heard other words
                out.append(self._turn_info("TurnResumed", 0.0))
                shown = self._text()
            if event.is_final and event.end_of_utterance:
                out += self._end_turn("timeout" if self.options.thresholds.timed_out(self._finished())
                                      else "model")
                shown = None
        if self._turn_start_s is not None and shown is not None and self._text() != shown:
            out.append(self._turn_info("Update", self._confidence()))
        if self._turn_start_s is not None and self._eager is None and self.pause_s is not None:
            eager = self.options.thresholds.eager_eot_threshold
            confidence = self._confidence()
            if eager is not None and self._words() and confidence >= eager:
                self._eager = self._text()
                out.append(self._turn_info("EagerEndOfTurn", confidence))
        if self._forced_flush is not None and self.flushes_done >= self._forced_flush:
            self._forced_flush = None
            if self._turn_start_s is not None:  # a turn whose words were all final already
                out += self._end_turn("manual")
        return out

    def _end_turn(self, trigger: str) -> list[Message]:
        if self._forced_flush is not None and self.flushes_done >= self._forced_flush:
            trigger, self._forced_flush = "manual", None
        elif self.state is SessionState.ENDING:
            trigger = "manual"  # CloseStream ended it
        if self._eager is not None and self._text() != self._eager:
            self._eager = None
            out = [self._turn_info("TurnResumed", 0.0)]
        else:
            out = []
        confidence = max(self._confidence(), 0.0 if trigger != "model" else self.options.thresholds.eot_threshold)
        out.append(self._turn_info("EndOfTurn", min(confidence, 1.0), trigger=trigger))
        self.turn_index += 1
        self._finals, self._partial, self._turn_start_s, self._eager = [], (), None, None
        return out

    def _words(self) -> list[Word]:
        return [*self._finals, *self._partial]

    def _text(self) -> str:
        return "".join(w.text for w in self._words()).strip()

    def _finished(self) -> bool:
        words = self._words()
        return bool(words) and words[-1].text.rstrip().endswith(SENTENCE_ENDS)

    def _confidence(self) -> float:
        return round(end_of_turn_confidence(self.pause_s, self._finished()), 4)

    def _turn_info(self, event: str, confidence: float, *, trigger: str | None = None) -> Message:
        words = self._words()
        message: Message = {
            "type": "TurnInfo", "event": event, "turn_index": self.turn_index,
            "audio_window_start": round(self._turn_start_s or 0.0, 3),
            "audio_window_end": round(max(self._window_end_s, words[-1].end_s if words else 0.0), 3),
            "transcript": self._text(),
            "words": [{"word": w.text.strip(), "confidence": round(w.probability, 4),
                       "start": round(w.start_s, 3), "end": round(w.end_s, 3)} for w in words],
            "end_of_turn_confidence": confidence,
        }
        if trigger is not None:
            message["trigger"] = trigger
        return self._message(message)

    # -- Flux's shapes ----------------------------------------------------------------------------

    def _message(self, body: Message) -> Message:
        message = {"type": body["type"], "request_id": self.request_id, "sequence_id": self._sequence}
        message.update(body)
        self._sequence += 1
        return message

    def _error(self, code: str, message: str) -> Message:
        return self._message({"type": "Error", "code": code.upper(), "description": " ".join(message.split())})

    def _ready(self, info: dict[str, Any]) -> Message:  # never sent: settings come from the URL
        return {}

    def _lag(self, lag_s: float) -> Message | None:
        return None

    def _done(self, audio_s: float) -> list[Message]:
        if self._turn_start_s is not None:  # the stream ended inside a turn: it ends with it
            return self._end_turn("manual")
        return []
