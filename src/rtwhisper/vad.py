"""Voice activity on a live stream, and where utterances end.

:class:`SileroVad` runs the Silero VAD model that faster-whisper ships (``silero_vad_v6.onnx``,
through onnxruntime) frame by frame, carrying the model's recurrent state and context from
one call to the next, so a stream fed in any block sizes gets exactly the probabilities of
one pass over the whole recording (checked in the tests). It costs about 0.06 ms per 32 ms
frame on one core: 0.2 % of real time.

:class:`Endpointer` turns those probabilities into speech and pauses with Silero's own
hysteresis (speech starts at 0.5 and ends under 0.35, ``get_speech_timestamps``' threshold
and ``neg_threshold``): an utterance opens after ``min_speech_s`` of speech and ends when a
pause reaches ``endpoint_silence_s``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

FRAME_SAMPLES = 512
"""Silero's frame at 16 kHz: 32 ms."""
FRAME_S = FRAME_SAMPLES / 16000
_CONTEXT_SAMPLES = 64

SPEECH_THRESHOLD = 0.5
SILENCE_THRESHOLD = 0.35


class SpeechDetector(Protocol):
    """Gives one speech probability per 512-sample frame of 16 kHz audio."""

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """``frames``: (n, 512) float32, consecutive; returns (n,) probabilities."""
        ...


class SileroVad:
    """Streaming Silero VAD: one instance per stream (it holds that stream's recurrent state)."""

    def __init__(self) -> None:
        from faster_whisper.vad import get_vad_model

        self._session = get_vad_model().session  # shared, loaded once per process
        self._h = np.zeros((1, 1, 128), dtype=np.float32)
        self._c = np.zeros((1, 1, 128), dtype=np.float32)
        self._context = np.zeros(_CONTEXT_SAMPLES, dtype=np.float32)

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        if not len(frames):
            return np.zeros(0, dtype=np.float32)
        previous = np.concatenate([self._context[None], frames[:-1, -_CONTEXT_SAMPLES:]], axis=0)
        batch = np.ascontiguousarray(np.concatenate([previous, frames], axis=1), dtype=np.float32)
        out, self._h, self._c = self._session.run(None, {"input": batch, "h": self._h, "c": self._c})
        self._context = frames[-1, -_CONTEXT_SAMPLES:].copy()
        return np.asarray(out, dtype=np.float32).reshape(-1)


@dataclass
class Utterance:
    """A stretch of speech, in stream seconds.

    ``start_s``/``end_s`` are where speech starts and stops (``end_s`` is ``None`` while it
    goes on); ``opened_s`` and ``ended_s`` are when a live listener could know it: after
    ``min_speech_s`` of speech, and after ``endpoint_silence_s`` of pause.
    """

    start_s: float
    opened_s: float
    end_s: float | None = None
    ended_s: float | None = None


class Endpointer:
    """Utterances from per-frame speech probabilities; holds no audio.

    ``push(probabilities)`` advances the stream by one frame per probability. The result is a
    function of the probabilities alone, never of how they were split between calls.
    """

    def __init__(self, *, endpoint_silence_s: float = 0.5, min_speech_s: float = 0.1) -> None:
        self.endpoint_silence_s = endpoint_silence_s
        self.min_speech_s = min_speech_s
        self.frames = 0
        self.utterances: list[Utterance] = []
        """Every utterance not yet dropped with :meth:`forget_before`; the last may be open."""
        self._speaking = False  # inside speech, by the hysteresis
        self._run_start = 0  # first frame of the current run of speech
        self._last_speech = -1  # the latest frame sure to be speech (at or over 0.5)
        self._open: Utterance | None = None

    @property
    def now_s(self) -> float:
        """How much audio the probabilities so far cover."""
        return self.frames * FRAME_S

    @property
    def pause_started_s(self) -> float | None:
        """Where the current pause inside the open utterance began (``None`` while speaking or with none open).

        Timed, like the utterance's end, from the last frame sure to be speech."""
        if self._open is None or self._speaking:
            return None
        return (self._last_speech + 1) * FRAME_S

    def push(self, probabilities: np.ndarray) -> None:
        """Advance by one frame per probability."""
        min_frames = max(1, round(self.min_speech_s / FRAME_S))
        gap_frames = max(1, round(self.endpoint_silence_s / FRAME_S))
        for p in probabilities:
            frame = self.frames
            self.frames += 1
            if self._speaking and p < SILENCE_THRESHOLD:
                self._speaking = False
            elif not self._speaking and p >= SPEECH_THRESHOLD:
                self._speaking = True
                self._run_start = frame
            if p >= SPEECH_THRESHOLD:
                # A pause is timed from the last sure speech frame: the hysteresis (down to 0.35)
                # keeps speech open ~0.1 s into the fade of the last word, which only delays it.
                self._last_speech = frame
            if self._speaking and self._open is None and frame - self._run_start + 1 >= min_frames:
                self._open = Utterance(self._run_start * FRAME_S, (frame + 1) * FRAME_S)
                self.utterances.append(self._open)
            if self._open is not None and not self._speaking and frame - self._last_speech >= gap_frames:
                self._open.end_s = (self._last_speech + 1) * FRAME_S
                self._open.ended_s = (frame + 1) * FRAME_S
                self._open = None

    def forget_before(self, time_s: float) -> None:
        """Drop utterances that ended before ``time_s`` (the caller is done with them)."""
        self.utterances = [u for u in self.utterances if u.end_s is None or u.end_s > time_s]
