"""Intake: fed audio → the stream's 16 kHz buffer and its voice-activity frames.

``feed()`` must be cheap enough for an audio callback, so it only validates and queues; the
queue is taken in (resampled, appended, cut into Silero's 32 ms frames) when recognition runs.
"""

from __future__ import annotations

import numpy as np

from ..audio import SAMPLE_RATE, StreamResampler, to_float32_mono
from ..chunker import Window
from ..vad import FRAME_SAMPLES, Endpointer, SpeechDetector

TRIM_STEP_SAMPLES = SAMPLE_RATE
"""The buffer drops audio no window can reach in steps of at least a second: no copy on every update."""


class Intake:
    """The stream's audio: what was fed, at 16 kHz, from ``start_sample`` on; voice activity into ``endpointer``."""

    def __init__(self, sample_rate: int, channels: int, bytes_format: str,
                 detector: SpeechDetector | None, endpointer: Endpointer) -> None:
        self.sample_rate = sample_rate
        self.channels = channels
        self.bytes_format = bytes_format
        self.detector = detector
        self.endpointer = endpointer
        self._resampler = StreamResampler(sample_rate) if sample_rate != SAMPLE_RATE else None
        self._vad_tail = np.zeros(0, dtype=np.float32)  # samples short of a whole VAD frame
        self._incoming: list[np.ndarray] = []
        self.audio = np.zeros(0, dtype=np.float32)
        self.start_sample = 0  # stream sample index of self.audio[0]
        self.available = 0  # samples at 16 kHz received so far
        self.fed_samples = 0  # samples fed, at the caller's rate

    @property
    def available_s(self) -> float:
        return self.available / SAMPLE_RATE

    @property
    def start_s(self) -> float:
        """Where the kept audio starts: nothing before it can be heard again."""
        return self.start_sample / SAMPLE_RATE

    def feed(self, audio: object) -> None:
        """Validate a block (:class:`~rtwhisper.errors.AudioFormatError`) and queue it."""
        samples = to_float32_mono(audio, channels=self.channels, bytes_format=self.bytes_format)
        if samples.size:
            self._incoming.append(samples)
            self.fed_samples += samples.size

    def ingest(self, *, final: bool = False) -> None:
        """Take the queued blocks in; ``final``: the stream ended (the resampler's and VAD's tails too)."""
        blocks = self._incoming
        self._incoming = []
        if self._resampler is not None and (blocks or final):
            joined = np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.float32)
            blocks = [self._resampler.process(joined, final=final)]
        blocks = [b for b in blocks if b.size]
        if blocks:
            self.audio = np.concatenate([self.audio, *blocks])
            self.available += sum(b.size for b in blocks)
        if self.detector is not None:
            pending = np.concatenate([self._vad_tail, *blocks]) if blocks else self._vad_tail
            if final and pending.size % FRAME_SAMPLES:
                pending = np.concatenate([pending, np.zeros(FRAME_SAMPLES - pending.size % FRAME_SAMPLES,
                                                            dtype=np.float32)])
            whole = pending.size - pending.size % FRAME_SAMPLES
            if whole:
                self.endpointer.push(self.detector(pending[:whole].reshape(-1, FRAME_SAMPLES)))
            self._vad_tail = pending[whole:]

    def window_audio(self, window: Window) -> np.ndarray:
        """The samples of ``window`` (from the first one kept)."""
        first_sample = round(window.start_s * SAMPLE_RATE) - self.start_sample
        end_sample = round(window.end_s * SAMPLE_RATE) - self.start_sample
        return self.audio[max(first_sample, 0):end_sample]

    def trim_before(self, time_s: float) -> None:
        """Drop the audio before ``time_s`` (no window starts before it any more)."""
        drop = int(time_s * SAMPLE_RATE) - self.start_sample
        if drop > TRIM_STEP_SAMPLES:
            self.audio = self.audio[drop:].copy()
            self.start_sample += drop
