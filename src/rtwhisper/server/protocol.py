"""The WebSocket protocol as a sans-I/O state machine: frames in, messages out.

:class:`StreamSession` does no I/O and starts no threads (the h11 / websockets sans-I/O
pattern). The ASGI app in :mod:`rtwhisper.server.app` owns the socket, calls
:meth:`StreamSession.receive_bytes` / :meth:`StreamSession.receive_text` for each frame,
runs :meth:`StreamSession.recognise` off the event loop, and sends what they return.

Wire format (compatible with the guide's clients, which send binary float32 frames and
read ``JSON.parse(data).text``):

* client → server, binary: PCM audio, float32 little-endian mono 16 kHz unless a config
  message said otherwise;
* client → server, text: JSON. ``{"type": "config", ...}`` as the first message chooses
  preset, language, task, input format and sample rate; ``{"type": "end"}`` ends the
  stream (the server flushes the remaining finals, sends ``{"type": "done"}`` and closes);
* server → client, text: JSON with ``type`` ``ready`` | ``partial`` | ``final`` | ``lag`` |
  ``error`` | ``done``, and always a ``text`` (empty where not a transcript). Transcript
  messages add ids, times, words and language (:meth:`rtwhisper.events.TranscriptEvent.to_dict`).
  A client that sends no config gets finals only, so the guide's clients, which append
  each message's ``text``, show each word once.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..audio import ACCEPTED_SAMPLE_RATES, BYTES_FORMATS, decode_pcm_bytes
from ..engine import TASKS
from ..errors import AudioFormatError, ConfigError, RtWhisperError
from ..events import TranscriptEvent
from ..presets import PRESETS

Message = dict[str, Any]
ProcessorFactory = Callable[..., Any]

CONFIG_KEYS = ("preset", "language", "task", "format", "sample_rate", "initial_prompt", "chunk_duration",
               "overlap_duration", "beam_size", "partials")

LAG_REPORT_S = 2.0
"""Report lag once the server is this far behind the audio a client sent, and again each
time it grows by as much (the guide's low-latency target is 1–2 s)."""


@dataclass
class StreamConfig:
    """What a client may choose in its first message."""

    preset: str | None = None
    language: str | None = None
    task: str | None = None
    format: str = "f32le"
    sample_rate: int = 16000
    initial_prompt: str | None = None
    chunk_duration: float | None = None
    overlap_duration: float | None = None
    beam_size: int | None = None
    partials: bool = False
    """Send partials too. Off for clients that send no config (the guide's clients append
    every message's ``text``, so they get finals only); on by default in a config message."""

    @classmethod
    def from_message(cls, message: Message) -> StreamConfig:
        """Validate a config message; unknown keys and bad values raise :class:`ConfigError`."""
        unknown = sorted(set(message) - {"type", *CONFIG_KEYS})
        if unknown:
            raise ConfigError(f"unknown config field(s) {', '.join(unknown)}; accepted: {', '.join(CONFIG_KEYS)}")
        config = cls()
        preset = message.get("preset")
        if preset is not None:
            key = preset.replace("-", "_") if isinstance(preset, str) else preset
            if key not in PRESETS:
                raise ConfigError(f"unknown preset {preset!r}; presets are: {', '.join(PRESETS)}")
            config.preset = key
        language = message.get("language")
        if language is not None and (not isinstance(language, str) or not language.strip()):
            raise ConfigError(f"language must be a code such as 'en' or 'ko', got {language!r}")
        config.language = language
        task = message.get("task")
        if task is not None and task not in TASKS:
            raise ConfigError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
        config.task = task
        fmt = message.get("format", "f32le")
        if fmt not in BYTES_FORMATS:
            raise ConfigError(f"format must be one of {', '.join(BYTES_FORMATS)}, got {fmt!r}")
        config.format = fmt
        rate = message.get("sample_rate", 16000)
        if isinstance(rate, bool) or rate not in ACCEPTED_SAMPLE_RATES:
            raise ConfigError(
                f"sample_rate must be one of {', '.join(map(str, ACCEPTED_SAMPLE_RATES))} Hz, got {rate!r}")
        config.sample_rate = int(rate)
        prompt = message.get("initial_prompt")
        if prompt is not None and not isinstance(prompt, str):
            raise ConfigError(f"initial_prompt must be a string, got {prompt!r}")
        config.initial_prompt = prompt
        for name in ("chunk_duration", "overlap_duration"):
            value = message.get(name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise ConfigError(f"{name} must be a number of seconds, got {value!r}")
            setattr(config, name, None if value is None else float(value))
        beam = message.get("beam_size")
        if beam is not None and (isinstance(beam, bool) or not isinstance(beam, int)):
            raise ConfigError(f"beam_size must be an integer, got {beam!r}")
        config.beam_size = beam
        partials = message.get("partials", True)
        if not isinstance(partials, bool):
            raise ConfigError(f"partials must be true or false, got {partials!r}")
        config.partials = partials
        return config

    def overrides(self) -> dict[str, Any]:
        """Processor keyword arguments this config sets (``None`` means the server's default)."""
        options: dict[str, Any] = {
            "language": self.language, "task": self.task, "initial_prompt": self.initial_prompt,
            "chunk_duration": self.chunk_duration, "overlap_duration": self.overlap_duration,
            "beam_size": self.beam_size,
        }
        options = {k: v for k, v in options.items() if v is not None}
        options["sample_rate"] = self.sample_rate  # frames are decoded here; the processor resamples
        return options


def error_message(code: str, message: str) -> Message:
    """The one shape of every error the server sends: a code to branch on and a sentence to show.

    Like every server message it has a ``text`` field (empty), because the guide's Android
    and iOS clients decode ``text`` from each message and fail on a message without one."""
    return {"type": "error", "text": "", "code": code, "message": " ".join(message.split())}


@dataclass
class StreamSession:
    """One WebSocket stream: parses frames, owns its processor, produces messages.

    ``make_processor(preset, **overrides)`` builds the processor (the server shares one
    engine among all of them). The processor is created on the first audio frame, or at
    the config message, so a config can only come first.
    """

    make_processor: ProcessorFactory
    processor: Any = None
    config: StreamConfig = field(default_factory=StreamConfig)
    ended: bool = False
    received_bytes: int = 0
    _pending: list[np.ndarray] = field(default_factory=list)
    _lag_reported_s: float = 0.0

    # -- frames in ------------------------------------------------------------------------

    def receive_bytes(self, data: bytes) -> list[Message]:
        """An audio frame. Returns error messages for a bad frame (nothing of it is kept)."""
        if self.ended:
            return [error_message("stream_ended", "audio after {\"type\": \"end\"}; open a new connection")]
        try:
            samples = decode_pcm_bytes(data, self.config.format, 1)
            if samples.size and not np.isfinite(samples).all():
                raise AudioFormatError("audio contains NaN or infinite samples; send finite PCM values")
        except AudioFormatError as exc:
            return [error_message("bad_audio", f"frame rejected: {exc}")]
        try:
            self._ensure_processor()  # the first accepted frame fixes the settings
        except RtWhisperError as exc:
            return [error_message("bad_config", str(exc))]
        self.received_bytes += len(data)
        if samples.size:
            self._pending.append(samples)
        return []

    def receive_text(self, text: str) -> list[Message]:
        """A JSON control message: ``config`` (first only) or ``end``."""
        try:
            message = json.loads(text)
        except ValueError:
            return [error_message("bad_message",
                                  "text frames must be JSON such as {\"type\": \"config\", ...} or "
                                  "{\"type\": \"end\"}; send audio as binary frames")]
        if not isinstance(message, dict):
            return [error_message("bad_message", "a text frame must hold a JSON object with a \"type\"")]
        kind = message.get("type")
        if kind == "end" or message.get("eof") is True:
            self.ended = True
            return []
        if kind == "config":
            if self.processor is not None:
                return [error_message("bad_config", "config must be the first message, before any audio")]
            try:
                config = StreamConfig.from_message(message)
                self.processor = self.make_processor(config.preset, **config.overrides())
            except RtWhisperError as exc:  # the previous settings stay in force
                return [error_message("bad_config", str(exc))]
            self.config = config
            return [self.ready_message()]
        return [error_message("bad_message", f"unknown message type {kind!r}; accepted: config, end")]

    # -- recognition (the app runs these off the event loop) --------------------------------

    @property
    def has_pending_audio(self) -> bool:
        return bool(self._pending)

    def take_pending(self) -> list[np.ndarray]:
        """Audio received since the last call, to feed before :meth:`recognise` (loop thread)."""
        pending, self._pending = self._pending, []
        return pending

    def recognise(self, blocks: list[np.ndarray]) -> list[Message]:
        """Feed the blocks and run the recognition that is due. Blocking: call it in a worker."""
        self._ensure_processor()
        for block in blocks:
            self.processor.feed(block)
        return self._messages(self.processor.results())

    def finish(self, blocks: list[np.ndarray]) -> list[Message]:
        """Feed the last blocks, flush every remaining final, then ``done``. Blocking."""
        self._ensure_processor()
        for block in blocks:
            self.processor.feed(block)
        messages = self._messages(self.processor.finish())
        messages.append({"type": "done", "text": "", "audio_s": round(self.processor.fed_duration_s, 3)})
        return messages

    def lag_message(self) -> Message | None:
        """A ``lag`` report when recognition fell behind what the client sent (see LAG_REPORT_S)."""
        if self.processor is None:
            return None
        pending_s = sum(b.size for b in self._pending) / self.config.sample_rate
        sent_s = self.processor.fed_duration_s + pending_s
        lag_s = sent_s - self.processor.heard_until_s
        if lag_s < self._lag_reported_s + LAG_REPORT_S:
            if lag_s < LAG_REPORT_S:
                self._lag_reported_s = 0.0
            return None
        self._lag_reported_s = lag_s
        return {"type": "lag", "text": "", "lag_s": round(lag_s, 2), "received_s": round(sent_s, 2),
                "recognised_s": round(self.processor.heard_until_s, 2)}

    def ready_message(self) -> Message:
        proc = self.processor
        return {"type": "ready", "text": "", "model": getattr(proc, "model_name", None), "language": proc.language,
                "task": proc.task, "format": self.config.format, "sample_rate": self.config.sample_rate,
                "chunk_duration": proc.config.chunk_duration, "overlap_duration": proc.config.overlap_duration}

    def _messages(self, events: list[TranscriptEvent]) -> list[Message]:
        return [e.to_dict() for e in events if e.is_final or self.config.partials]

    def _ensure_processor(self) -> None:
        if self.processor is None:
            self.processor = self.make_processor(self.config.preset, **self.config.overrides())

