"""A stream in the scheduler (:class:`StreamHandle`), its tickets, and the pacing constants."""

from __future__ import annotations

import enum
import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import numpy as np

from ..engine.interface import DecodeRequest, Hypothesis
from ..errors import RtWhisperError
from ..events import TranscriptEvent

if TYPE_CHECKING:
    from ..processor import RealtimeWhisperProcessor


class Owner(Protocol):
    """What a handle needs of its scheduler (:class:`~rtwhisper.scheduling.Scheduler`)."""

    _cond: threading.Condition
    clock: Callable[[], float]

    def _drop(self, handle: StreamHandle, *, reason: StreamStopped | None, notify: bool) -> None: ...

log = logging.getLogger("rtwhisper.scheduler")

EventSink = Callable[[list[TranscriptEvent]], None]
"""Called on the scheduler's thread with a stream's new events; an empty list reports progress only
(silence skipped: ``processor.heard_until_s`` moved on)."""
class StopCause(enum.Enum):
    OVERLOADED = "overloaded"
    """The engine could not keep up, and this stream (the newest) was closed so the others do."""
    FAILED = "failed"
    """Recognition raised (the engine failed on this stream's window)."""


@dataclass(frozen=True)
class StreamStopped:
    """Why the scheduler closed a stream on its own: a cause to decide on, and a message to show."""

    cause: StopCause
    message: str

    def __str__(self) -> str:
        return self.message


CloseSink = Callable[["StreamStopped | None"], None]
"""Called once when a stream ends: ``None`` after ``finish()``, else why it was closed."""


@dataclass(eq=False)
class _Ticket:
    """One request of a stream: due since when, and its hypothesis once the engine answered."""

    request: DecodeRequest
    due_since: float
    hypothesis: Hypothesis | None = None


class _Done(NamedTuple):
    """An engine call that came back: its streams and tickets, and its hypotheses or its error."""

    batch: list[StreamHandle]
    tickets: list[_Ticket]
    hypotheses: list[Hypothesis] | None
    error: Exception | None
    started_s: float
    ended_s: float


def _mean(mean: float | None, value: float) -> float:
    """The running mean (``PACE_WEIGHT``) with one more value."""
    return value if mean is None else mean + PACE_WEIGHT * (value - mean)


class Overloaded(RtWhisperError):
    """The engine has no room for another live stream now; the message says how full it is."""


@dataclass(frozen=True)
class SchedulerStats:
    """What the scheduler has done, for ``/metrics`` and the benchmark."""

    streams: int
    load: float
    delay_s: float
    batches: int
    windows: int
    busy_s: float
    refused: int
    shed: int
    largest_batch: int
    demand: float = 0.0
    """Worker-seconds per second the live streams' updates need at their own steps (measured):
    over ``workers × TARGET_BUSY`` their steps widen (:meth:`Scheduler._pace`)."""


PACE_WEIGHT = 0.3
"""Weight of the newest decode in a stream's running means of decode time and work (an
exponentially weighted mean: a few updates follow a change of load, one slow decode does not)."""

TARGET_BUSY = 0.8
"""Share of the workers' time the streams' updates may take before their steps widen.

A queue's wait grows without bound as its load nears 1 (an M/D/1 queue waits 2 service times
at 0.8, 4.5 at 0.9); below it a due window finds a free worker almost at once."""

STREAM_CPU = 1.0
"""Cores one stream's updates may use on average on a CPU (``Scheduler(stream_cpu=…)``,
``rtwhisper serve --stream-cpu``; ``None``: no bound)."""

MAX_PACE_S = 1.0
"""The longest update step load may widen a stream's to. A word waits for the update after it and,
unless one hypothesis is sure of it, the one after that, plus the decode and its wait for a
worker: four real-time ``base`` streams on 2 AVX2 cores, paced to about 1.15 s, read final p90
5.8 s (max 12.5 s); at 1 s the streams admitted keep p90 near 4 s. A stream that would need
longer steps is not admitted."""

PROGRESS_EVERY_S = 0.5
"""How often a stream that only skips silence reports how far it has heard (an empty delivery)."""


@dataclass(eq=False)
class StreamHandle:
    """One stream in the scheduler. Its methods may be called from any thread."""

    id: int
    processor: RealtimeWhisperProcessor
    on_events: EventSink
    on_close: CloseSink
    opened_s: float
    _scheduler: Owner
    _inbox: deque[np.ndarray] = field(default_factory=deque)
    _inbox_s: float = 0.0
    _flush: bool = False
    _flushes_asked: int = 0
    flushes_done: int = 0
    """Calls of :meth:`flush` carried out so far (several asked while one waited count as done together)."""
    _finish: bool = False
    _changes: dict[str, Any] = field(default_factory=dict)  # knobs to change before the next request
    _closed: bool = False
    _due: _Ticket | None = None  # a request waiting for a worker
    _sent: deque[_Ticket] = field(default_factory=deque)  # requests on the engine, applied in this order
    _reported_s: float = 0.0  # heard_until_s at the last delivery
    received_s: float = 0.0
    """Audio handed to :meth:`feed`, in seconds (at the processor's input rate)."""
    compute_s: float = 0.0
    """This stream's share of engine time so far."""
    decode_s: float | None = None
    """Running mean of how long this stream's engine calls took (``None`` before the first)."""
    work_s: float | None = None
    """Running mean of this stream's share of a worker's time per update (a batch's time shared
    out by audio): what one more update of the stream costs the engine."""
    pace_s: float | None = None
    """The step the scheduler last paced the stream's updates at (``None``: the processor's own)."""

    def feed(self, samples: np.ndarray) -> None:
        """Queue audio for the stream (already validated: float32 mono at the processor's rate)."""
        with self._scheduler._cond:
            if self._closed or self._finish:
                return
            self._inbox.append(samples)
            self.received_s += len(samples) / self.processor.options.sample_rate
            self._scheduler._cond.notify()

    def flush(self) -> None:
        """Make what has been heard final (the client went quiet); events follow through ``on_events``,
        delivered even when empty, with :attr:`flushes_done` counting this flush by then."""
        with self._scheduler._cond:
            self._flush = True
            self._flushes_asked += 1
            self._scheduler._cond.notify()

    def update_options(self, **changes: Any) -> None:
        """Change live knobs of the stream (:meth:`~rtwhisper.processor.RealtimeWhisperProcessor.update_options`),
        on the scheduler's thread before its next request; values must already be checked."""
        with self._scheduler._cond:
            self._changes.update(changes)
            self._scheduler._cond.notify()

    def finish(self) -> None:
        """End the stream: its last events follow, then ``on_close(None)``."""
        with self._scheduler._cond:
            self._finish = True
            self._scheduler._cond.notify()

    def close(self) -> None:
        """Drop the stream without finishing it (the client is gone)."""
        self._scheduler._drop(self, reason=None, notify=False)

    @property
    def lag_s(self) -> float:
        """Audio received but not yet dealt with, beyond one update's worth: how far behind it is."""
        return self._unheard_s(self.received_s)

    @property
    def behind_s(self) -> float:
        """How far recognition trails real time: like :attr:`lag_s`, but audio counts only as fast
        as it could have been spoken since the stream opened (a fast sender is not behind)."""
        return self._unheard_s(min(self.received_s, self._scheduler.clock() - self.opened_s))

    def _unheard_s(self, until_s: float) -> float:
        """Audio up to ``until_s`` that recognition has not heard, beyond one update's worth."""
        return max(0.0, until_s - self.processor.heard_until_s - self.processor.options.chunk_duration)

    @property
    def _busy(self) -> bool:
        """Whether a request of the stream is waiting or on the engine."""
        return self._due is not None or bool(self._sent)


