"""The native WebSocket protocol as a sans-I/O state machine: inputs in, actions out.

:class:`StreamSession` is the whole protocol of one stream, as the websockets library's
``protocol.py`` is for WebSocket framing: it does no I/O, starts no threads and reads no
clock of its own. The driver (:mod:`rtwhisper.server.ws`) hands it what happened — a frame,
the time, events from the recogniser — and performs the :data:`Action` s it returns: send a
message, open the recogniser stream, feed it audio, flush or finish it, close the socket.
Every close decision (frame cap, backlog, idle, repeated bad input, overload) is made here,
so the policy is tested in milliseconds without sockets or a model.

States: ``AWAITING_CONFIG`` (no audio yet; a config message may come first) → ``STREAMING``
(audio flows) → ``ENDING`` (``{"type": "end"}`` or the idle timeout: the last finals are on
their way) → ``CLOSED``.

Wire format (compatible with the guide's clients, which send binary float32 frames and
read ``JSON.parse(data).text``):

* client → server, binary: PCM audio, float32 little-endian mono 16 kHz unless a config
  message said otherwise;
* client → server, text: JSON. ``{"type": "config", ...}`` as the first message chooses
  preset, language, task, input format and sample rate; ``{"type": "end"}`` ends the
  stream (the server flushes the remaining finals, sends ``{"type": "done"}`` and closes);
* server → client, text: JSON with ``type`` ``ready`` | ``partial`` | ``final`` | ``lag`` |
  ``error`` | ``done``, and always a ``text`` (empty where not a transcript). Transcript
  messages add ids, times, words, language and ``end_of_utterance``
  (:meth:`rtwhisper.events.TranscriptEvent.to_dict`). A client that sends no config gets
  finals only, so the guide's clients, which append each message's ``text``, show each
  word once.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..audio import BYTES_PER_SAMPLE, check_sample_range, decode_pcm_bytes
from ..errors import AudioFormatError, ConfigError
from ..events import TranscriptEvent
from ..scheduling import StopCause, StreamStopped
from .stream_config import StreamConfig

Message = dict[str, Any]

LAG_REPORT_S = 2.0
"""Report lag once recognition is this far behind the audio a client sent (beyond the update
step it is waiting for), and again each time it grows by as much (the guide's low-latency
target is 1–2 s)."""

# WebSocket close codes (RFC 6455 §7.4.1).
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001  # idle timeout
CLOSE_POLICY = 1008  # too far behind, repeated bad input, auth
CLOSE_TOO_BIG = 1009  # frame over max_frame_bytes
CLOSE_INTERNAL = 1011
CLOSE_TRY_AGAIN = 1013  # server full or overloaded


class CloseReason(enum.Enum):
    """Every way a stream's socket closes: its WebSocket code, the close frame's reason, and the
    error code the client's message carries before it (where one goes with it)."""

    END_OF_STREAM = (CLOSE_NORMAL, "end of stream", "")
    IDLE = (CLOSE_GOING_AWAY, "idle timeout", "idle_timeout")
    FRAME_TOO_BIG = (CLOSE_TOO_BIG, "frame too big", "frame_too_big")
    BAD_CONFIGURATION = (CLOSE_POLICY, "bad configuration", "bad_config")
    BAD_PARAMETERS = (CLOSE_POLICY, "bad parameters", "bad_request")
    TOO_MANY_ERRORS = (CLOSE_POLICY, "too many invalid frames", "too_many_errors")
    TOO_FAR_BEHIND = (CLOSE_POLICY, "too far behind", "backlog")
    SERVER_FULL = (CLOSE_TRY_AGAIN, "server full", "server_full")
    OVERLOADED = (CLOSE_TRY_AGAIN, "overloaded", "overloaded")
    INTERNAL = (CLOSE_INTERNAL, "internal error", "internal")

    @property
    def code(self) -> int:
        return int(self.value[0])

    @property
    def text(self) -> str:
        return str(self.value[1])

    @property
    def error_code(self) -> str:
        return str(self.value[2])


class SessionState(enum.Enum):
    AWAITING_CONFIG = "awaiting_config"
    STREAMING = "streaming"
    ENDING = "ending"
    CLOSED = "closed"


# -- actions: what the driver must do ------------------------------------------------------------


@dataclass(frozen=True)
class Send:
    """Send this JSON message."""

    message: Message


@dataclass(frozen=True)
class Open:
    """Create the recogniser stream with the client's settings (a preset and processor overrides).

    The driver answers with :meth:`StreamSession.opened` or :meth:`StreamSession.open_failed`."""

    preset: str | None
    overrides: dict[str, Any]


@dataclass(frozen=True, eq=False)
class Feed:
    """Give the recogniser this audio (float32 mono at the client's sample rate)."""

    samples: np.ndarray


@dataclass(frozen=True)
class Flush:
    """Make what the recogniser heard final: the client went quiet."""


@dataclass(frozen=True)
class Finish:
    """End the recogniser stream: its last finals follow, then :meth:`StreamSession.recogniser_closed`."""


@dataclass(frozen=True)
class Retune:
    """Change live knobs of the stream (:data:`~rtwhisper.options.LIVE_KNOBS`: the pauses that end an
    utterance, keyterms, …), from the next decode on (a client's mid-stream setting); values checked."""

    changes: dict[str, Any]


@dataclass(frozen=True)
class Close:
    """Close the socket with this code and reason; nothing more is sent."""

    code: int
    reason: str

    @classmethod
    def of(cls, reason: CloseReason) -> Close:
        return cls(reason.code, reason.text)


Action = Send | Open | Feed | Flush | Finish | Retune | Close


@dataclass(frozen=True)
class SessionLimits:
    """The server's policy for one stream (from :class:`~rtwhisper.server.config.ServerConfig`)."""

    max_frame_bytes: int = 16 << 20
    idle_timeout_s: float = 60.0
    stall_flush_s: float = 0.6
    max_backlog_s: float = 600.0
    max_bad_frames: int = 10
    """Invalid frames in a row after which the stream is closed (a well-behaved client sends none)."""


def json_object(text: str) -> Message | None:
    """A text frame as a JSON object, or ``None`` (not JSON, nested too deep, or not an object)."""
    try:
        message = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return message if isinstance(message, dict) else None


def error_message(code: str, message: str) -> Message:
    """The one shape of every error the server sends: a code to branch on and a sentence to show.

    Like every server message it has a ``text`` field (empty), because the guide's Android
    and iOS clients decode ``text`` from each message and fail on a message without one."""
    return {"type": "error", "text": "", "code": code, "message": " ".join(message.split())}


@dataclass
class StreamSession:
    """One WebSocket stream's protocol (see the module docstring). Every method returns actions."""

    limits: SessionLimits = field(default_factory=SessionLimits)
    state: SessionState = SessionState.AWAITING_CONFIG
    config: StreamConfig = field(default_factory=StreamConfig)
    received_bytes: int = 0
    received_s: float = 0.0
    """Audio received, in seconds."""
    recognised_s: float = 0.0
    """Audio the recogniser has dealt with (reported with its events)."""
    _opening: bool = False
    _opened: bool = False
    _pending_config: StreamConfig = field(default_factory=StreamConfig)  # a config waiting for its Open
    _held: list[np.ndarray] = field(default_factory=list)  # audio received before the recogniser opened
    _started_s: float = 0.0
    _chunk_s: float = 0.0  # the recogniser's update step: lag within it is not lag
    _last_audio_s: float | None = None
    _flushed: bool = True
    _bad_in_a_row: int = 0
    _lag_reported_s: float = 0.0
    _now: float = 0.0
    flushes_sent: int = 0
    """:class:`Flush` actions this session has returned."""
    flushes_done: int = 0
    """Of those, how many the recogniser has carried out (reported with its events)."""
    byte_stream: bool = False
    """Whether audio is a byte stream that frames may split anywhere, a sample's bytes included
    (Deepgram's and OpenAI's APIs: a client reading a file or a pipe in arbitrary chunks); the
    native protocol's frames hold whole samples, and a frame that does not is an error."""
    _carry: bytes = b""  # the bytes of a split sample, waiting for the rest (byte streams only)
    pause_s: float | None = None
    """The speaker's silence inside the open utterance, as of the last events (see :meth:`recognised`)."""

    # -- inputs from the client -------------------------------------------------------------------

    def start(self, now: float) -> list[Action]:
        """The socket was accepted at ``now``."""
        self._now = self._started_s = now
        return []

    def keep_alive(self, now: float) -> list[Action]:
        """The client holds a quiet stream open (Deepgram's ``KeepAlive``): the idle timeout counts from now."""
        if self.state in (SessionState.AWAITING_CONFIG, SessionState.STREAMING):
            self._last_audio_s = now
        return []

    def receive_bytes(self, data: bytes, now: float) -> list[Action]:
        """An audio frame."""
        self._now = now
        if self.state in (SessionState.ENDING, SessionState.CLOSED):
            return self._bad("stream_ended", "audio after {\"type\": \"end\"}; open a new connection")
        if len(data) > self.limits.max_frame_bytes:
            return [Send(self._error(
                "frame_too_big", f"a frame of {len(data)} bytes is over the limit of {self.limits.max_frame_bytes}; "
                "send audio in smaller frames (0.1 s is 6400 bytes)")), *self._close(CloseReason.FRAME_TOO_BIG)]
        if self.byte_stream:
            data = self._carry + bytes(data)
            size = BYTES_PER_SAMPLE[self.config.format] * self.config.channels
            whole = len(data) - len(data) % size
            data, self._carry = data[:whole], data[whole:]
        try:
            samples = decode_pcm_bytes(data, self.config.format, self.config.channels)
            check_sample_range(samples, self.config.format)
            if samples.ndim == 2:  # interleaved channels: one stream hears their mix
                samples = samples.mean(axis=1, dtype=np.float32)
        except AudioFormatError as exc:
            return self._bad("bad_audio", f"frame rejected: {exc}")
        self._bad_in_a_row = 0
        self.received_bytes += len(data)
        self.received_s += samples.size / self.config.sample_rate
        self._last_audio_s = now
        actions: list[Action] = []
        if self.state is SessionState.AWAITING_CONFIG:
            self.state = SessionState.STREAMING  # the first accepted frame fixes the settings
            actions += self._open()
        if samples.size:
            self._flushed = False
            if self._opened:
                actions.append(Feed(samples))
            else:
                self._held.append(samples)
        return actions + self._lag_actions()

    def receive_text(self, text: str, now: float) -> list[Action]:
        """A JSON control message: ``config`` (first only) or ``end``."""
        self._now = now
        try:
            message = json.loads(text)
        except (ValueError, RecursionError):
            return self._bad("bad_message", "text frames must be JSON such as {\"type\": \"config\", ...} or "
                                            "{\"type\": \"end\"}; send audio as binary frames")
        if not isinstance(message, dict):
            return self._bad("bad_message", "a text frame must hold a JSON object with a \"type\"")
        kind = message.get("type")
        if kind == "end" or message.get("eof") is True:
            return self._end()
        if kind == "config":
            if self.state is not SessionState.AWAITING_CONFIG or self._opening:
                return self._bad("bad_config", "config must be the first message, before any audio")
            try:
                config = StreamConfig.from_message(message)
            except ConfigError as exc:  # the previous settings stay in force
                return self._bad("bad_config", str(exc))
            self._pending_config = config
            self._opening = True
            return [Open(config.preset, config.overrides())]
        return self._bad("bad_message", f"unknown message type {kind!r}; accepted: config, end")

    def tick(self, now: float) -> list[Action]:
        """Time passed with no frame: stall flush and idle timeout."""
        self._now = now
        if self.state in (SessionState.ENDING, SessionState.CLOSED):
            return []
        since = now - (self._last_audio_s if self._last_audio_s is not None else self._started_s)
        if since >= self.limits.idle_timeout_s - 1e-6:
            if self.received_bytes:
                # A client that stopped sending without {"type": "end"} (websocat -n at the end of
                # its input): its audio is still transcribed to the end, then the socket closes.
                return [Send(self._error("idle_timeout", f"no audio for {self.limits.idle_timeout_s:g} s; "
                                                           "finishing the stream")), *self._end()]
            return [Send(self._error("idle_timeout", f"no audio for {self.limits.idle_timeout_s:g} s; closing")),
                    *self._close(CloseReason.IDLE)]
        if not self._flushed and self._opened and since >= self.limits.stall_flush_s - 1e-6:
            self._flushed = True  # once per stall: the last words become final without waiting
            return [self._flush()]
        return []

    def next_deadline(self) -> float | None:
        """When :meth:`tick` must be called next if no frame comes first (``None``: no timer)."""
        if self.state in (SessionState.ENDING, SessionState.CLOSED):
            return None
        last = self._last_audio_s if self._last_audio_s is not None else self._started_s
        idle = last + self.limits.idle_timeout_s
        if not self._flushed and self._opened:
            return min(idle, last + self.limits.stall_flush_s)
        return idle

    # -- inputs from the recogniser ---------------------------------------------------------------

    def opened(self, info: dict[str, Any]) -> list[Action]:
        """The recogniser stream exists (``info``: what the ready message reports)."""
        self._opened = True
        self._chunk_s = float(info.get("chunk_duration") or 0.0)
        actions: list[Action] = []
        if self._opening:  # a config message asked for it: tell the client what it got
            self.config = self._pending_config
            self._opening = False
            actions.append(Send(self._ready(info)))
        actions += [Feed(samples) for samples in self._held]
        self._held = []
        if self.state is SessionState.ENDING:
            actions.append(Finish())
        return actions

    def open_failed(self, code: str, reason: str) -> list[Action]:
        """The recogniser stream could not be made from the client's settings: the error, and the stream
        goes on (a new config may follow) — unless audio already came with them, which closes it."""
        self._opening = False
        if self.state is SessionState.STREAMING:  # audio came with settings that cannot work
            return [Send(self._error(code, reason)), *self._close(CloseReason.BAD_CONFIGURATION)]
        return [Send(self._error(code, reason))]

    def refuse(self, reason: CloseReason, message: str) -> list[Action]:
        """Refuse or end the stream for ``reason`` (the server is full, has no room, or cannot honour the
        parameters): ``message`` in this API's error shape, then the close. As websockets' ``reject()``,
        every close the server decides is made here; the driver only carries it out."""
        return [Send(self._error(reason.error_code, message)), *self._close(reason)]

    def recognised(self, events: list[TranscriptEvent], recognised_s: float,
                   flushes_done: int | None = None, pause_s: float | None = None) -> list[Action]:
        """Events from the recogniser; ``recognised_s``: how much audio it has dealt with;
        ``flushes_done``: how many of this session's flushes it has carried out (with these events);
        ``pause_s``: how long the speaker has been silent inside the open utterance (``None``:
        speaking, or no utterance open), for protocols that report turns."""
        self.recognised_s = max(self.recognised_s, recognised_s)
        self.pause_s = pause_s
        if flushes_done is not None:
            self.flushes_done = max(self.flushes_done, flushes_done)
        if self.state is SessionState.CLOSED:
            return []
        actions: list[Action] = [Send(m) for m in self._transcripts(events)]
        return actions + self._lag_actions()

    def recogniser_closed(self, reason: StreamStopped | None, audio_s: float) -> list[Action]:
        """The recogniser stream ended: after :class:`Finish` (``reason`` is ``None``) or on its own."""
        if self.state is SessionState.CLOSED:
            return []
        if reason is None:
            return [*(Send(m) for m in self._done(audio_s)), *self._close(CloseReason.END_OF_STREAM)]
        return self.refuse(CloseReason.OVERLOADED if reason.cause is StopCause.OVERLOADED else CloseReason.INTERNAL,
                           reason.message)

    def disconnected(self) -> list[Action]:
        """The client went away: nothing to send."""
        self.state = SessionState.CLOSED
        return []

    # -- internals --------------------------------------------------------------------------------

    def _open(self) -> list[Action]:
        if self._opening or self._opened:
            return []
        self._opening = False
        return [Open(self.config.preset, self.config.overrides())]

    def _flush(self) -> Flush:
        """A flush, counted: the recogniser's events say when it has been carried out."""
        self.flushes_sent += 1
        return Flush()

    def _end(self) -> list[Action]:
        if self.state in (SessionState.ENDING, SessionState.CLOSED):
            return []
        if self.state is SessionState.AWAITING_CONFIG and not self._opening and not self._opened:
            self.state = SessionState.ENDING
            return [*(Send(m) for m in self._done(0.0)), *self._close(CloseReason.END_OF_STREAM)]
        self.state = SessionState.ENDING
        return [Finish()] if self._opened else []

    def _bad(self, code: str, message: str) -> list[Action]:
        """An error for a bad input; the stream goes on, unless the client sends nothing else."""
        self._bad_in_a_row += 1
        actions: list[Action] = [Send(self._error(code, message))]
        if self._bad_in_a_row >= self.limits.max_bad_frames:
            actions += [Send(self._error("too_many_errors", f"{self._bad_in_a_row} invalid frames in a row; "
                                                              "closing"))]
            actions += self._close(CloseReason.TOO_MANY_ERRORS)
        return actions

    def _lag_actions(self) -> list[Action]:
        """A ``lag`` report when recognition is behind (see LAG_REPORT_S); a close past the backlog limit."""
        if not self._opened:
            return []
        # Audio within one update step of the last one is waiting for its turn, not late.
        lag_s = max(0.0, self.received_s - self.recognised_s - self._chunk_s)
        if lag_s > self.limits.max_backlog_s:
            return [Send(self._error("backlog", f"{lag_s:.0f} s of audio waiting, over the limit of "
                                                  f"{self.limits.max_backlog_s:g} s; send audio no faster than "
                                                  "real time")), *self._close(CloseReason.TOO_FAR_BEHIND)]
        if lag_s < self._lag_reported_s + LAG_REPORT_S:
            if lag_s < LAG_REPORT_S:
                self._lag_reported_s = 0.0
            return []
        self._lag_reported_s = lag_s
        lag = self._lag(lag_s)
        return [Send(lag)] if lag is not None else []

    # -- the messages: the native protocol's shapes (another protocol overrides these) ------------

    def _error(self, code: str, message: str) -> Message:
        return error_message(code, message)

    def _ready(self, info: dict[str, Any]) -> Message:
        return {"type": "ready", "text": "", **info, "format": self.config.format,
                "sample_rate": self.config.sample_rate}

    def _transcripts(self, events: list[TranscriptEvent]) -> list[Message]:
        return [e.to_dict() for e in events if e.is_final or self.config.partials]

    def _done(self, audio_s: float) -> list[Message]:
        return [{"type": "done", "text": "", "audio_s": round(audio_s, 3)}]

    def _lag(self, lag_s: float) -> Message | None:
        return {"type": "lag", "text": "", "lag_s": round(lag_s, 2), "received_s": round(self.received_s, 2),
                "recognised_s": round(self.recognised_s, 2)}

    def _close(self, reason: CloseReason) -> list[Action]:
        self.state = SessionState.CLOSED
        return [Close.of(reason)]
