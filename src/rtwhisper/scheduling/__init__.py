"""One engine, many streams: the windows that streams have due, run as batches.

Each live stream is a :class:`~rtwhisper.processor.RealtimeWhisperProcessor` (sans-I/O). The
:class:`Scheduler` owns them on one thread: it feeds each the audio that arrived, asks each
for its due window (``next_request()``), hands up to ``max_batch`` of them as one engine call
to one of its ``workers`` engine threads — earliest due first, so no stream waits behind
another twice — and, when the call returns, hands each stream its events (``apply()``).
With two workers, two batches run at once on the engine's two CTranslate2 replicas (which
share the weights), each on its share of the cores; with fewer streams than workers, a
stream's next update goes to the spare worker while the one before it still runs
(``decode_ahead``), and its updates come every ``spare_chunk_duration`` instead of every
``chunk_duration`` (``next_request(spare=True)``). While the workers compute, the scheduler thread goes on feeding the
streams. Front ends (the server, the threaded runner) only call :meth:`StreamHandle.feed`,
:meth:`StreamHandle.flush` and :meth:`StreamHandle.finish` from any thread and receive events
through a callback.

Overload is handled in three steps, each visible:

1. **Cadence degrades by itself**: a stream whose update waited takes all the audio that
   arrived meanwhile in its next window, so under load each stream is updated less often
   but never falls further behind than one update.
2. **Admission control**: a new stream is refused (:class:`Overloaded`) while windows wait
   longer than ``max_delay_s`` for a worker once due (the p90 of the last ``load_window_s``):
   the engine is saturated, and one more stream would make every admitted stream fall behind.
   (Busy time alone says little: a lone stream keeps an idle engine busy by updating more
   often, and gives the time back when others arrive. Nor does a decode's own length: on a
   slow CPU one `base` update takes a second, and counting it as waiting refused a second
   stream that batching would have served.)
3. **Shedding**: if the engine is saturated and a stream still falls ``max_lag_s`` behind real
   time (:attr:`StreamHandle.behind_s`), the newest stream is closed with a reason
   ("overloaded"), so the others keep their latency. (Audio that a client sends faster than
   real time is not lag: the server's backlog limit deals with it.)

WhisperLive's ``batch_inference.py`` batches the same way (a short collection window, a
maximum batch size); the earliest-deadline-first order is the classic real-time rule
(Liu & Layland 1973).
"""

from __future__ import annotations

from .handle import (
    MAX_PACE_S,
    PACE_WEIGHT,
    PROGRESS_EVERY_S,
    STREAM_CPU,
    TARGET_BUSY,
    CloseSink,
    EventSink,
    Overloaded,
    SchedulerStats,
    StopCause,
    StreamHandle,
    StreamStopped,
)
from .scheduler import Scheduler

__all__ = [
    "MAX_PACE_S",
    "PACE_WEIGHT",
    "PROGRESS_EVERY_S",
    "STREAM_CPU",
    "TARGET_BUSY",
    "CloseSink",
    "EventSink",
    "Overloaded",
    "Scheduler",
    "SchedulerStats",
    "StopCause",
    "StreamHandle",
    "StreamStopped",
]
