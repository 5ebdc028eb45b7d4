"""Driving a processor from a source: a plain generator, and a threaded runner for live input.

``stream(source, ...)`` is the simple form: read a block, feed it, run ``results()``, yield
what is ready; one decode at a time, on the caller's thread. ``ThreadedRunner`` is the live
form (the command line's microphone, pipe and ``--realtime`` modes): capture runs on its own
thread into a bounded queue, and recognition goes through a
:class:`~rtwhisper.scheduling.Scheduler`, as one stream of ``rtwhisper serve`` does.
With an engine of two workers (:func:`~rtwhisper.engine.serving_engine` measures that layout
for 2 cores) the next update decodes on the second worker while the one before it still runs,
and updates come every ``spare_chunk_duration``: the server's lone-stream path, final words
sooner than one decode at a time gives them (``docs/cli.md`` has the measurement). Audio that
arrived during a decode goes into the next window, so a slow machine catches up rather than
falling further behind; when more than ``max_lag_s`` waits unheard, the oldest queued audio
is replaced by silence of the same length — the stream's clock stays right, and the loss is
reported, never silent — or, with ``backpressure`` (a pipe, a paced file: sources whose writer
can wait), capture waits instead and nothing is lost.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import RecognitionError
from .events import TranscriptEvent
from .processor import RealtimeWhisperProcessor
from .scheduling import Scheduler, StreamHandle, StreamStopped
from .sources.base import AudioSource

LAG_REPORT_STEP_S = 1.0
"""A lag worth reporting is reported again only once it has grown by this much more."""


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
    """Capture on a thread, recognise through a scheduler; events on the iterating thread; bounded lag, reported.

    ``workers``: engine calls at once (default: the engine's ``num_workers``, 1 for an engine
    that does not say). ``backpressure``: when ``max_lag_s`` of audio waits, stop reading the
    source until recognition catches up, instead of replacing the oldest with silence: right
    for a source that waits when unread (a pipe: ``ffmpeg … | rtwhisper transcribe -`` writes
    faster than real time), wrong for a microphone, whose driver would drop audio unreported.
    Iterating runs the stream to the source's end; a recognition failure raises
    :class:`~rtwhisper.errors.RecognitionError` (the capture's own errors are raised as they are).
    """

    def __init__(self, source: AudioSource, processor: RealtimeWhisperProcessor, *, max_lag_s: float = 30.0,
                 on_lag: Callable[[LagReport], None] | None = None, report_lag_over_s: float | None = None,
                 workers: int | None = None, backpressure: bool = False) -> None:
        self.source = source
        self.processor = processor
        self.max_lag_s = max_lag_s
        self.on_lag = on_lag
        self.report_lag_over_s = report_lag_over_s
        """Lag worth a report (``None``: beyond what the stream's pace makes normal, :meth:`_expected_lag_s`)."""
        self.workers = workers or int(getattr(processor.engine, "num_workers", 1) or 1)
        self.backpressure = backpressure
        self._queue: deque[np.ndarray] = deque()
        self._queued_samples = 0
        self._dropped_samples = 0
        self._captured_samples = 0
        self._pending_silence = 0
        self._lock = threading.Condition()
        self._done = False
        self._error: BaseException | None = None
        self._events: list[TranscriptEvent] = []
        self._closed = False
        self._close_reason: StreamStopped | None = None
        self._stopping = False

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
                    while self.backpressure and self._queued_samples >= limit and not self._stopping:
                        self._lock.wait(timeout=0.1)
                    if self._stopping:
                        return
                    self._queue.append(block.samples)
                    self._queued_samples += len(block.samples)
                    self._captured_samples += len(block.samples)
                    while not self.backpressure and self._queued_samples > limit and len(self._queue) > 1:
                        oldest = self._queue.popleft()
                        self._queued_samples -= len(oldest)
                        self._dropped_samples += len(oldest)
                        self._pending_silence += len(oldest)  # fed as silence: the clock stays right
                    self._lock.notify_all()
        except BaseException as exc:
            self._error = exc
        finally:
            with self._lock:
                self._done = True
                self._lock.notify_all()

    def _on_events(self, events: list[TranscriptEvent]) -> None:  # the scheduler's thread
        with self._lock:
            self._events += events
            self._lock.notify_all()

    def _on_close(self, reason: StreamStopped | None) -> None:  # the scheduler's thread
        with self._lock:
            self._closed, self._close_reason = True, reason
            self._lock.notify_all()

    def _expected_lag_s(self, handle: StreamHandle) -> float:
        """How far recognition trails capture when it keeps up: a step of audio waiting for its
        update, the update's own step, and its decode (the scheduler's pace and measured decode;
        nothing is reported before the first decode is measured: the model's first call is slow)."""
        if handle.decode_s is None:
            return float("inf")
        step = max(self.processor.options.chunk_duration, handle.pace_s or 0.0)
        return 2 * step + handle.decode_s

    def _unheard_s(self) -> float:
        """Audio handed to the scheduler that recognition has not heard yet."""
        return self.captured_s - self._queued_samples / 16000 - self._pending_silence / 16000 \
            - self.processor.heard_until_s

    def __iter__(self) -> Iterator[TranscriptEvent]:
        scheduler = Scheduler(self.processor.engine, workers=self.workers, max_streams=1, batch_wait_s=0.0)
        handle = scheduler.open(self.processor, self._on_events, self._on_close)
        thread = threading.Thread(target=self._capture, name="rtwhisper-capture", daemon=True)
        thread.start()
        reported_drop, reported_lag = 0, 0.0
        finishing = False
        try:
            while True:
                with self._lock:
                    # Queued audio waits while more than max_lag_s is unheard (and is replaced
                    # by silence once the queue holds that much too).
                    while not (self._events or self._closed or self._error is not None
                               or ((self._queue or self._pending_silence) and self._unheard_s() <= self.max_lag_s)
                               or (self._done and not self._queue and not self._pending_silence and not finishing)):
                        self._lock.wait(timeout=0.1)
                    events, self._events = self._events, []
                    blocks: list[np.ndarray] = []
                    silence = 0
                    if self._unheard_s() <= self.max_lag_s:
                        silence, self._pending_silence = self._pending_silence, 0
                        blocks = list(self._queue)
                        self._queue.clear()
                        self._queued_samples = 0
                    self._lock.notify_all()  # a capture waiting on a full queue
                    end = self._done and not self._queue and not self._pending_silence and not finishing
                    closed = self._closed
                if self._error is not None:
                    raise self._error
                if silence:
                    handle.feed(np.zeros(silence, dtype=np.float32))
                for samples in blocks:
                    handle.feed(samples)
                if end:
                    handle.finish()
                    finishing = True
                yield from events
                if closed:
                    if self._close_reason is not None:
                        raise RecognitionError(f"the stream stopped: {self._close_reason}")
                    break
                # Reported once it passes what the stream's pace makes normal, and again each time it
                # grows by LAG_REPORT_STEP_S more (or audio was dropped): not on every block.
                lag = self.lag_s
                over = self.report_lag_over_s if self.report_lag_over_s is not None else self._expected_lag_s(handle)
                if lag <= over:
                    reported_lag = 0.0
                grown = lag > over and lag >= reported_lag + LAG_REPORT_STEP_S
                if self.on_lag is not None and (grown or self._dropped_samples > reported_drop) and (blocks or silence):
                    reported_drop, reported_lag = self._dropped_samples, lag
                    self.on_lag(LagReport(lag, self.dropped_s, self.captured_s))
        finally:
            with self._lock:
                self._stopping = True
                self._lock.notify_all()
            handle.close()
            scheduler.shutdown()
        thread.join()
