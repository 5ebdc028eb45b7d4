"""OpenAI's Realtime API, transcription sessions (``/v1/realtime?intent=transcription``), on the same session.

Apps that transcribe with OpenAI's Realtime API point the SDK's ``websocket_base_url`` at
``ws://HOST:8765/v1`` instead. :class:`RealtimeSession` is :class:`StreamSession` — the same
limits, endpointing and close decisions — speaking OpenAI's events:

* client: ``session.update`` with a transcription session (input format ``audio/pcm`` at
  24 kHz by default, any accepted rate; ``transcription.model``, ``language``, ``prompt``;
  ``turn_detection`` ``server_vad`` with ``silence_duration_ms``, or ``null``) — before the
  first audio, since a running stream cannot change model settings;
  ``input_audio_buffer.append`` (base64 PCM16), ``input_audio_buffer.commit`` (end the
  item now), ``input_audio_buffer.clear`` (drop what was not transcribed yet);
* server: ``session.created`` / ``session.updated``, ``input_audio_buffer.speech_started`` /
  ``speech_stopped`` (server VAD: rtwhisper's endpointing), ``input_audio_buffer.committed``,
  ``conversation.item.input_audio_transcription.delta`` (final text as it is decided; a delta
  is never taken back) and ``.completed`` (the item's whole transcript), ``input_audio_buffer.cleared``
  and ``error`` in the API's shape.

Without turn detection an item lasts until the client commits, as in the API.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from ..audio import ACCEPTED_SAMPLE_RATES
from ..engine import validate_language
from ..errors import ConfigError
from ..events import TranscriptEvent, join_words
from ..options import check_prompt
from .protocol import Action, Message, Retune, Send, SessionState, StreamSession, json_object
from .stream_config import StreamConfig

DEFAULT_RATE = 24000
"""The API's ``audio/pcm`` rate."""


def _object(parent: dict[str, Any], key: str) -> dict[str, Any] | None:
    """``parent[key]`` if it is an object, ``{}`` where it is missing or null, ``None`` for anything else."""
    value = parent.get(key)
    if value is None:
        return {}
    return value if isinstance(value, dict) else None


def _new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:20]}"


@dataclass
class RealtimeSession(StreamSession):
    """One transcription session of OpenAI's Realtime API."""

    byte_stream: bool = True

    model_name: str = ""
    session_id: str = field(default_factory=lambda: _new_id("sess"))
    server_vad: bool = True
    silence_duration_ms: int | None = None
    transcription_model: str = "whisper-1"
    _ids: Any = field(default_factory=lambda: itertools.count(1))
    _item: str | None = None  # the item being transcribed
    _previous_item: str | None = None
    _item_text: list[str] = field(default_factory=list)
    _item_start_s: float = 0.0
    _committing: bool = False  # a commit's flush is on its way
    _clearing: bool = False  # a clear's flush is on its way: its finals are dropped
    _client_event_id: str | None = None  # the client event being handled, for its error
    _commit_flush: int = 0  # the flush (``flushes_sent``) whose completion ends the committed item

    @classmethod
    def from_query(cls, query: str, **kwargs: Any) -> RealtimeSession:
        params = {k: v[-1] for k, v in parse_qs(query).items()}
        if params.get("intent") != "transcription":
            raise ConfigError("only transcription sessions are served here: connect to "
                              "/v1/realtime?intent=transcription")
        session = cls(**kwargs)
        session.config = StreamConfig(format="s16le", sample_rate=DEFAULT_RATE, partials=False)
        return session

    def start(self, now: float) -> list[Action]:
        super().start(now)
        return [self._send_event("session.created", session=self._session())]

    def receive_text(self, text: str, now: float) -> list[Action]:
        self._now = now
        message = json_object(text)
        if message is None:
            return self._bad("invalid_json", "client events are JSON objects with a \"type\"")
        kind = message.get("type")
        event_id = message.get("event_id")
        self._client_event_id = event_id if isinstance(event_id, str) else None  # errors name the event
        if kind == "input_audio_buffer.append":
            data = message.get("audio")
            if not isinstance(data, str) or not data:
                return self._bad("invalid_value", "input_audio_buffer.append needs \"audio\": a non-empty base64 "
                                                  f"string of PCM16, got {type(data).__name__}")
            try:
                audio = base64.b64decode(data, validate=True)
            except (binascii.Error, ValueError):
                return self._bad("invalid_value", "input_audio_buffer.append needs \"audio\": base64 PCM16")
            return self.receive_bytes(audio, now) if audio else []
        if kind == "session.update":
            return self._update(message.get("session"))
        if kind == "input_audio_buffer.commit":
            if not self._opened or self.state is not SessionState.STREAMING:
                return self._bad("input_audio_buffer_commit_empty", "nothing to commit: append audio first")
            self._committing = True
            self._flushed = True
            flush = self._flush()
            self._commit_flush = self.flushes_sent  # the item ends once this flush is carried out
            return [flush]
        if kind == "input_audio_buffer.clear":
            self._item_text = []
            if self._opened and self.state is SessionState.STREAMING:
                self._clearing = True
                self._flushed = True
                return [self._flush(), self._send_event("input_audio_buffer.cleared")]
            return [self._send_event("input_audio_buffer.cleared")]
        return self._bad("invalid_request_error", f"unknown or unsupported event type {kind!r}; accepted: "
                                                  "session.update, input_audio_buffer.append, "
                                                  "input_audio_buffer.commit, input_audio_buffer.clear")

    def _update(self, session: Any) -> list[Action]:
        running = self.state is not SessionState.AWAITING_CONFIG or self._opened
        if running and self.state is not SessionState.STREAMING:
            return self._bad("invalid_request_error", "session.update after the stream ended")
        if not isinstance(session, dict) or session.get("type", "transcription") != "transcription":
            return self._bad("invalid_request_error", "session must be {\"type\": \"transcription\", ...}")
        audio = _object(session, "audio")
        audio_input = _object(audio, "input") if isinstance(audio, dict) else None
        fmt = _object(audio_input, "format") if isinstance(audio_input, dict) else None
        transcription = _object(audio_input, "transcription") if isinstance(audio_input, dict) else None
        for name, value in (("session.audio", audio), ("session.audio.input", audio_input),
                            ("session.audio.input.format", fmt),
                            ("session.audio.input.transcription", transcription)):
            if value is None:
                return self._bad("invalid_type", f"{name} must be an object, as in the API reference")
        assert isinstance(audio_input, dict) and isinstance(fmt, dict) and isinstance(transcription, dict)
        config = StreamConfig(format="s16le", sample_rate=self.config.sample_rate, partials=False)
        if fmt:
            if fmt.get("type") != "audio/pcm":
                return self._bad("invalid_value", f"audio format {fmt.get('type')!r} is not supported; use audio/pcm")
            rate = fmt.get("rate", DEFAULT_RATE)
            if isinstance(rate, bool) or rate not in ACCEPTED_SAMPLE_RATES:
                return self._bad("invalid_value", f"rate must be one of {', '.join(map(str, ACCEPTED_SAMPLE_RATES))}")
            config.sample_rate = int(rate)
        language, prompt, model = (transcription.get(k) for k in ("language", "prompt", "model"))
        for name, value in (("language", language), ("prompt", prompt), ("model", model)):
            if value is not None and not isinstance(value, str):
                return self._bad("invalid_type", f"transcription.{name} must be a string, got {type(value).__name__}")
        try:
            validate_language(language or None)
            check_prompt(prompt)
        except ConfigError as exc:
            return self._bad("invalid_value", str(exc))
        config.knobs.update(language=language or None, initial_prompt=prompt or None)
        server_vad, silence_ms = self.server_vad, self.silence_duration_ms  # the session's until all is checked
        if "turn_detection" in audio_input:
            turn = audio_input["turn_detection"]
            if turn is not None and not isinstance(turn, dict):
                return self._bad("invalid_type", "turn_detection must be an object such as "
                                                 "{\"type\": \"server_vad\"}, or null")
            server_vad = turn is not None
            if turn is not None:
                if turn.get("type", "server_vad") != "server_vad":
                    return self._bad("invalid_value", "turn_detection must be server_vad or null")
                silence = turn.get("silence_duration_ms")
                if silence is not None:
                    if isinstance(silence, bool) or not isinstance(silence, int) or not 100 <= silence <= 10000:
                        return self._bad("invalid_value", "silence_duration_ms must be 100 to 10000")
                    silence_ms = silence
        if silence_ms is not None:
            # OpenAI's meaning: this much silence ends the speech, whatever was said (a silence-only
            # rule, as its server VAD is); the words-aware turn end is /v2/listen's.
            config.knobs.update(endpoint_silence_s=silence_ms / 1000, endpoint_max_silence_s=silence_ms / 1000)
        if running and (config.sample_rate, config.knobs.get("language"), server_vad) != (
                self.config.sample_rate, self.config.knobs.get("language"), self.server_vad):
            return self._bad("invalid_request_error", "a running stream's audio format, language and turn "
                                                      "detection type cannot change; its transcription prompt "
                                                      "and silence_duration_ms can")
        self.config, self.server_vad, self.silence_duration_ms = config, server_vad, silence_ms
        self.transcription_model = model or self.transcription_model
        updated = self._send_event("session.updated", session=self._session())
        if not running:
            return [updated]
        # A running stream changes its prompt and its silence, from the next decode on.
        changes: dict[str, Any] = {k: config.knobs.get(k) for k in (
            "initial_prompt", "endpoint_silence_s", "endpoint_max_silence_s") if k in config.knobs}
        return [Retune(changes), updated]

    # -- OpenAI's shapes --------------------------------------------------------------------------

    def _send_event(self, kind: str, **fields: Any) -> Action:
        return Send(self._event(kind, **fields))

    def _event(self, kind: str, **fields: Any) -> Message:
        return {"type": kind, "event_id": f"event_{next(self._ids)}", **fields}

    def _session(self) -> Message:
        turn = ({"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300,
                 "silence_duration_ms": self.silence_duration_ms or 500} if self.server_vad else None)
        return {"type": "transcription", "id": self.session_id, "object": "realtime.transcription_session",
                "audio": {"input": {"format": {"type": "audio/pcm", "rate": self.config.sample_rate},
                                    "transcription": {"model": self.transcription_model,
                                                      "language": self.config.knobs.get("language"),
                                                      "prompt": self.config.knobs.get("initial_prompt") or ""},
                                    "noise_reduction": None, "turn_detection": turn}}}

    def _error(self, code: str, message: str) -> Message:
        kind = "invalid_request_error" if code not in ("overloaded", "internal") else "server_error"
        return self._event("error", error={"type": kind, "code": code, "message": " ".join(message.split()),
                                           "param": None, "event_id": self._client_event_id})

    def _ready(self, info: dict[str, Any]) -> Message:
        return {}  # never sent: session.updated answered the update

    def _lag(self, lag_s: float) -> Message | None:
        return None

    def _done(self, audio_s: float) -> list[Message]:
        return []  # the API has no end-of-stream event: the client closes

    def recognised(self, events: list[TranscriptEvent], recognised_s: float,
                   flushes_done: int | None = None, pause_s: float | None = None) -> list[Action]:
        actions = super().recognised(events, recognised_s, flushes_done, pause_s)
        if self._committing and self.flushes_done >= self._commit_flush and self.state is not SessionState.CLOSED:
            # The commit's flush is carried out, its last finals (in ``events``) sent as deltas:
            # the item ends with everything appended before the commit. (Ending it once the
            # recognised audio reached the commit point ended it at the first update that got
            # there, before the flush's own words, or never, where a resampler held samples back.)
            actions += [Send(m) for m in self._complete(None)]
        return actions

    def _transcripts(self, events: list[TranscriptEvent]) -> list[Message]:
        out: list[Message] = []
        for event in events:
            if not event.is_final:
                continue  # deltas are never taken back, so only final text is sent
            if self._clearing:
                if event.end_of_utterance or not event.words:
                    self._clearing = False
                self._item = None
                continue
            if event.words:
                if self._item is None:
                    self._item = _new_id("item")
                    self._item_start_s = event.words[0].start_s
                    self._item_text = []
                    if self.server_vad:
                        out.append(self._event("input_audio_buffer.speech_started",
                                               audio_start_ms=int(self._item_start_s * 1000), item_id=self._item))
                text = join_words(event.words)
                delta = text if not self._item_text else " " + text
                self._item_text.append(text)
                out.append(self._event("conversation.item.input_audio_transcription.delta", item_id=self._item,
                                       content_index=0, delta=delta))
            if event.end_of_utterance and self.server_vad and not self._committing:
                out += self._complete(event)  # a committed item ends with its flush, in recognised()
        return out

    def _complete(self, event: TranscriptEvent | None) -> list[Message]:
        """End the current item: committed, then completed (a commit with nothing said: an empty item)."""
        committing, self._committing = self._committing, False
        end_s = event.end_s if event is not None else self.recognised_s
        if self._item is None:
            if not committing:
                return []
            self._item, self._item_text, self._item_start_s = _new_id("item"), [], end_s
        item, self._item = self._item, None
        out = []
        if self.server_vad and not committing:
            out.append(self._event("input_audio_buffer.speech_stopped", audio_end_ms=int(end_s * 1000),
                                   item_id=item))
        out.append(self._event("input_audio_buffer.committed", item_id=item, previous_item_id=self._previous_item))
        out.append(self._event("conversation.item.input_audio_transcription.completed", item_id=item,
                               content_index=0, transcript=" ".join(self._item_text),
                               usage={"type": "duration", "seconds": round(max(0.0, end_s - self._item_start_s), 3)}))
        self._previous_item = item
        self._item_text = []
        return out
