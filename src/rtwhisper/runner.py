"""Driving a processor from a source: a plain generator, and a threaded runner for live input.

``stream(source, ...)`` is the simple form: read a block, feed it, yield what is ready.
For a live source that form makes capture wait while recognition runs; ``ThreadedRunner``
captures on its own thread into a bounded queue instead, feeds everything that arrived
since the last update at once (the chunker then takes one larger window, so a slow machine
catches up rather than falling further behind), and reports its lag. When the queue would
exceed ``max_lag_s`` the oldest audio is replaced by silence of the same length — the
stream's clock stays right, and the loss is reported, never silent.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from .events import TranscriptEvent
from .processor import RealtimeWhisperProcessor
from .sources.base import AudioSource


def stream(source: AudioSource, processor: RealtimeWhisperProcessor | None = None,
           **processor_options: Any) -> Iterator[TranscriptEvent]:
    """Yield the events of ``source`` recognised by ``processor`` (or a new one from the options)."""
    proc = processor if processor is not None else RealtimeWhisperProcessor(**processor_options)
    for block in source:
        proc.feed(block.samples)
        yield from proc.results()
    yield from proc.finish()


@dataclass(frozen=True)
class LagReport:
    """How far recognition trails capture, and how much audio had to be replaced by silence."""

    lag_s: float
    dropped_s: float
    captured_s: float


class ThreadedRunner:
    """Capture on a thread, recognise on the iterating thread; bounded lag, reported."""

    def __init__(self, source: AudioSource, processor: RealtimeWhisperProcessor, *, max_lag_s: float = 30.0,
                 on_lag: Callable[[LagReport], None] | None = None, report_lag_over_s: float | None = None) -> None:
        self.source = source
        self.processor = processor
        self.max_lag_s = max_lag_s
        self.on_lag = on_lag
        self.report_lag_over_s = (
            report_lag_over_s if report_lag_over_s is not None else 2 * processor.config.chunk_duration
        )
        self._queue: deque[np.ndarray] = deque()
        self._queued_samples = 0
        self._dropped_samples = 0
        self._captured_samples = 0
        self._pending_silence = 0
        self._lock = threading.Condition()
        self._done = False
        self._error: BaseException | None = None

    @property
    def captured_s(self) -> float:
        return self._captured_samples / 16000

    @property
    def dropped_s(self) -> float:
        return self._dropped_samples / 16000

    @property
    def lag_s(self) -> float:
        """Seconds of captured audio not yet heard by the recogniser."""
        return max(0.0, self.captured_s - self.processor.heard_until_s)

    def _capture(self) -> None:
        limit = int(self.max_lag_s * 16000)
        try:
            for block in self.source:
                with self._lock:
                    self._queue.append(block.samples)
                    self._queued_samples += len(block.samples)
                    self._captured_samples += len(block.samples)
                    while self._queued_samples > limit and len(self._queue) > 1:
                        oldest = self._queue.popleft()
                        self._queued_samples -= len(oldest)
                        self._dropped_samples += len(oldest)
                        self._pending_silence += len(oldest)  # fed as silence: the clock stays right
                    self._lock.notify()
        except BaseException as exc:
            self._error = exc
        finally:
            with self._lock:
                self._done = True
                self._lock.notify()

    def __iter__(self) -> Iterator[TranscriptEvent]:
        thread = threading.Thread(target=self._capture, name="rtwhisper-capture", daemon=True)
        thread.start()
        reported_drop = 0
        while True:
            with self._lock:
                while not self._queue and not self._done and not self._pending_silence:
                    self._lock.wait()
                silence = self._pending_silence
                self._pending_silence = 0
                blocks = list(self._queue)
                self._queue.clear()
                self._queued_samples = 0
                done = self._done and not blocks
            if silence:
                self.processor.feed(np.zeros(silence, dtype=np.float32))
            for samples in blocks:
                self.processor.feed(samples)
            if self._error is not None:
                raise self._error
            if done:
                break
            yield from self.processor.results()
            lagging = self.lag_s > self.report_lag_over_s or self._dropped_samples > reported_drop
            if self.on_lag is not None and lagging:
                reported_drop = self._dropped_samples
                self.on_lag(LagReport(self.lag_s, self.dropped_s, self.captured_s))
        thread.join()
        yield from self.processor.finish()
