"""The :class:`Scheduler`: due windows of many streams → batches on one engine's workers."""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np

from ..engine.interface import Engine, Hypothesis
from ..events import TranscriptEvent

if TYPE_CHECKING:
    from ..processor import RealtimeWhisperProcessor

from .handle import (
    MAX_PACE_S,
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
    _Done,
    _mean,
    _Ticket,
    log,
)


class Scheduler:
    """Serves many processors from one engine: a thread for the streams, ``workers`` for the engine.

    ``max_batch`` windows go in one engine call at most; ``batch_wait_s`` is how long a due
    window may wait for others to join it (WhisperLive waits 50 ms; on a CPU batching gains
    little, so the default is short). ``workers`` engine calls may run at once (give the
    engine as many CTranslate2 workers). ``max_streams`` is a hard cap. ``decode_ahead``: a
    worker that no stream can need decodes a stream's next update while its previous one is
    still on the engine (``next_request(ahead=True)``), so that a lone stream uses both cores,
    and with more workers than streams updates come every ``spare_chunk_duration``
    (:meth:`_spare`).
    """

    def __init__(self, engine: Engine, *, max_batch: int = 8, batch_wait_s: float = 0.02, max_delay_s: float = 1.0,
                 max_lag_s: float = 10.0, max_streams: int = 64, load_window_s: float = 10.0, workers: int = 1,
                 decode_ahead: bool = True, stream_cpu: float | None = STREAM_CPU,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self.engine = engine
        self.max_batch = max_batch
        self.batch_wait_s = batch_wait_s
        self.max_delay_s = max_delay_s
        self.max_lag_s = max_lag_s
        self.max_streams = max_streams
        self.load_window_s = load_window_s
        self.decode_ahead = decode_ahead
        self.stream_cpu = stream_cpu
        self.clock = clock
        self._cond = threading.Condition()
        self._streams: dict[int, StreamHandle] = {}
        self._ids = itertools.count(1)
        self._busy: deque[tuple[float, float]] = deque()  # (start, end) of recent engine calls
        self._delays: deque[tuple[float, float]] = deque()  # (when, due-to-started seconds) of recent windows
        self._running = True
        self._batches = 0
        self._windows = 0
        self._busy_total = 0.0
        self._refused = 0
        self._shed = 0
        self._largest = 0
        self._last_shed = -float("inf")
        self.workers = workers
        self._in_flight = 0  # engine calls running (scheduler thread only)
        self._done: deque[_Done] = deque()  # engine calls that came back, not yet applied
        self._engine_threads = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rtwhisper-engine")
        self._thread = threading.Thread(target=self._loop, name="rtwhisper-scheduler", daemon=True)
        self._thread.start()

    # -- streams -----------------------------------------------------------------------------

    def open(self, processor: RealtimeWhisperProcessor, on_events: EventSink,
             on_close: CloseSink | None = None) -> StreamHandle:
        """Admit a stream, or raise :class:`Overloaded` saying why not."""
        with self._cond:
            if not self._running:
                raise Overloaded("the scheduler is shutting down")
            n = len(self._streams)
            if n >= self.max_streams:
                self._refused += 1
                raise Overloaded(f"{n} live streams, the limit of this server")
            costs = [h.work_s / h.processor.options.chunk_duration for h in self._streams.values()
                     if h.work_s is not None]
            if costs:
                # One more stream like those measured, at the processor's own step: the steps it
                # would take everyone to (MAX_PACE_S at most) before the engine keeps up.
                needed = processor.options.chunk_duration * self._load_factor(sum(costs) / len(costs))
                if needed > MAX_PACE_S:
                    self._refused += 1
                    raise Overloaded(f"the recogniser is full: {n} live stream(s) use {self._demand():.2f} worker-"
                                     f"seconds a second of {self.workers} worker(s); one more would need updates "
                                     f"every {needed:.1f} s, over the {MAX_PACE_S:g} s this server allows")
            delay = self._delay()
            if n and delay > self.max_delay_s:
                self._refused += 1
                raise Overloaded(f"the recogniser is saturated: with {n} live stream(s) windows wait {delay:.1f} s "
                                 f"for a worker, over the {self.max_delay_s:g} s this server allows")
            handle = StreamHandle(next(self._ids), processor, on_events, on_close or (lambda reason: None),
                                  self.clock(), self)
            self._streams[handle.id] = handle
            return handle

    def stats(self) -> SchedulerStats:
        with self._cond:
            return SchedulerStats(len(self._streams), self._load(), self._delay(), self._batches, self._windows,
                                  self._busy_total, self._refused, self._shed, self._largest, self._demand())

    def load(self) -> float:
        """Fraction of the last ``load_window_s`` the engine was busy."""
        with self._cond:
            return self._load()

    @property
    def alive(self) -> bool:
        """Whether the scheduler's thread is running (a health check's question)."""
        return self._thread.is_alive()

    def shutdown(self) -> None:
        with self._cond:
            self._running = False
            self._cond.notify_all()
        self._thread.join(timeout=10)
        self._engine_threads.shutdown(wait=False)

    # -- the loop (scheduler thread) -------------------------------------------------------------

    def _load(self) -> float:
        now = self.clock()
        since = now - self.load_window_s
        while self._busy and self._busy[0][1] < since:
            self._busy.popleft()
        busy = sum(min(end, now) - max(start, since) for start, end in self._busy)
        return busy / self.load_window_s

    def _delay(self) -> float:
        """p90 of how long the windows of the last ``load_window_s`` waited for a worker once due (0 with none)."""
        since = self.clock() - self.load_window_s
        while self._delays and self._delays[0][0] < since:
            self._delays.popleft()
        return float(np.percentile([d for _, d in self._delays], 90)) if self._delays else 0.0

    def _loop(self) -> None:
        while True:
            with self._cond:
                while self._running and not self._has_work():
                    self._cond.wait(timeout=0.5)
                if not self._running:
                    return
                streams = list(self._streams.values())
                done = list(self._done)
                self._done.clear()
            for call in done:
                self._apply(call)
            for handle in streams:
                self._advance(handle)
            if self.decode_ahead:
                self._go_ahead(streams)
            if self._in_flight < self.workers:
                batch = self._choose()
                if batch:
                    self._submit(batch)
            self._shed_if_behind()

    def _has_work(self) -> bool:
        if self._done:
            return True
        worker_free = self._in_flight < self.workers
        # A stream with a window on the engine keeps its flush or finish for after it.
        return any(h._inbox or (not h._busy and (h._flush or h._finish)) or (worker_free and h._due is not None)
                   for h in self._streams.values())

    def _advance(self, handle: StreamHandle) -> None:
        """Give the stream its new audio; note its due window; run its flush or finish."""
        with self._cond:
            blocks = list(handle._inbox)
            handle._inbox.clear()
            flush, finish, handle._flush = handle._flush, handle._finish, False
            changes, handle._changes = handle._changes, {}
            flushes_asked = handle._flushes_asked
            if handle._closed:
                return
        proc = handle.processor
        try:
            if changes:
                proc.update_options(**changes)
            for block in blocks:
                proc.feed(block)
            if not handle._busy:
                if finish:
                    self._deliver(handle, self._timed(handle, proc.finish))
                    self._drop(handle, reason=None, notify=True)
                    return
                if flush:  # delivered even when empty: the front end learns the flush is done
                    events = self._timed(handle, proc.flush)
                    handle.flushes_done = flushes_asked
                    self._deliver(handle, events, progress=True)
                request = proc.next_request(**self._pace(handle))
                if request is not None:
                    handle._due = _Ticket(request, self.clock())
                events = proc.take_events()
                if events or proc.heard_until_s >= handle._reported_s + PROGRESS_EVERY_S:
                    # Silence skipped without a decode is progress too: an empty delivery says
                    # so, or a front end would count that audio as a backlog.
                    self._deliver(handle, events, progress=not events)
            elif flush or finish:
                with self._cond:  # after the window in flight
                    handle._flush |= flush
                    handle._finish |= finish
        except Exception as exc:  # one stream's failure must not stop the others
            self._fail(handle, exc)

    def _pace(self, handle: StreamHandle) -> dict[str, Any]:
        """How often the stream's updates may come, from what its decodes cost and the engine's load.

        Three floors on the step, each from a measured running mean (none before the first decode):

        * **load**: the steps all streams would need for their updates to fill at most
          ``TARGET_BUSY`` of the workers (:meth:`_load_factor`) — under load every stream's
          updates come less often, before windows wait for a worker;
        * **the stream's CPU**: on a CPU, one stream's updates use at most ``stream_cpu``
          cores on average (its work per update × threads ÷ step), so a slower CPU gets longer
          steps rather than a stream that burns every core (0.3 s steps on 2 AVX2 cores, where
          a ``base`` update costs 0.46 s of a core, used 1.8 cores for no lower latency);
        * **its own decode**: with no worker to decode ahead on, an update slower than its step
          lengthens the step instead of queueing behind itself.

        ``spare``: the engine has a worker to spare (more workers than streams, with
        ``decode_ahead``) and the CPU budget allows the ``spare_chunk_duration`` step.
        Capped at ``MAX_PACE_S``.
        """
        proc = handle.processor
        with self._cond:
            ahead = self.decode_ahead and len(self._streams) < self.workers
            factor = self._load_factor()
        floors = [proc.options.chunk_duration * factor if factor > 1.0 else 0.0]
        threads = getattr(self.engine, "cpu_threads", 0) or 0
        if handle.work_s is not None and threads and self.stream_cpu:
            floors.append(handle.work_s * threads / self.stream_cpu)
        if handle.decode_s is not None and not ahead:
            floors.append(handle.decode_s)
        floor = max(floors)
        spare = ahead and (proc.options.spare_chunk_duration is None or floor <= proc.options.spare_chunk_duration)
        pace = min(MAX_PACE_S, floor) if floor > 0 else None
        handle.pace_s = pace
        return {"spare": spare, "pace_s": pace}

    def _demand(self, extra_s: float = 0.0) -> float:
        """Worker-seconds per second the live streams' updates need at their own steps (plus ``extra_s``)."""
        return extra_s + sum(h.work_s / h.processor.options.chunk_duration
                             for h in self._streams.values() if h.work_s is not None)

    def _load_factor(self, extra_s: float = 0.0) -> float:
        """How much longer than their own the streams' steps must be for the engine to keep up:
        demand over ``TARGET_BUSY`` of the workers (1 or less: it keeps up as they are)."""
        return self._demand(extra_s) / (self.workers * TARGET_BUSY)

    def _go_ahead(self, streams: list[StreamHandle]) -> None:
        """Give workers that no stream can need the next update of streams already on the engine.

        A worker is spare when it would idle even if every stream without a window on the
        engine had one due now: fewer streams than workers. Then a stream decodes its next
        update while the previous one is still running (streams longest on the engine first);
        with as many streams as workers, each is decoded once at a time as before, and an
        ahead decode does not take a worker that another stream could need then.
        """
        with self._cond:
            spare = self.workers - self._in_flight - sum(not h._sent for h in self._streams.values())
            if spare <= 0:
                return
            ready = sorted((h for h in streams if h._sent and h._due is None and not h._closed
                            and not (h._flush or h._finish)), key=lambda h: h._sent[0].due_since)
        for handle in ready[:spare]:
            try:
                request = handle.processor.next_request(ahead=True, **self._pace(handle))
            except Exception as exc:
                self._fail(handle, exc)
                continue
            if request is not None:
                handle._due = _Ticket(request, self.clock())

    def _timed(self, handle: StreamHandle, step: Callable[[], list[TranscriptEvent]]) -> list[TranscriptEvent]:
        started = self.clock()
        events = step()
        ended = self.clock()
        with self._cond:
            self._note_busy(started, ended)
        handle.compute_s += ended - started
        return events

    def _choose(self) -> list[StreamHandle]:
        """Due streams for one free worker, earliest due first; wait briefly for a fuller batch.

        The due windows are shared out over the free workers (at most ``max_batch`` each): two
        windows and two free workers make two calls of one, which on a CPU finish sooner than one
        call of two (batching two windows gained ×1.1 there, two workers ×1.6).
        """
        deadline = None
        while True:
            with self._cond:
                due = sorted((h for h in self._streams.values() if h._due is not None),
                             key=lambda h: h._due.due_since if h._due is not None else 0.0)
                if not due:
                    return []
                free = max(1, self.workers - self._in_flight)
                share = min(self.max_batch, -(-len(due) // free))
                if len(due) >= self.max_batch or self.batch_wait_s <= 0:
                    return due[:share]
                if deadline is None:
                    deadline = due[0]._due.due_since + self.batch_wait_s if due[0]._due else self.clock()
                remaining = deadline - self.clock()
                waiting = [h for h in self._streams.values() if h._due is None and h._inbox]
                # Every stream due or on the engine: no other window can join.
                if remaining <= 0 or (not waiting and all(h._busy for h in self._streams.values())):
                    return due[:share]
                self._cond.wait(timeout=remaining)
            for handle in waiting:  # audio that arrived may make more windows due
                self._advance(handle)

    def _submit(self, batch: list[StreamHandle]) -> None:
        """Start the engine call for ``batch`` on a worker; :meth:`_apply` takes its result."""
        tickets = [h._due for h in batch if h._due is not None]
        for handle, ticket in zip(batch, tickets, strict=True):
            handle._sent.append(ticket)
            handle._due = None
        requests = [t.request for t in tickets]
        self._in_flight += 1

        def call() -> None:
            started = self.clock()
            hypotheses: list[Hypothesis] | None = None
            error: Exception | None = None
            try:
                hypotheses = self.engine.transcribe_batch(requests)
            except Exception as exc:
                error = exc
            with self._cond:
                self._done.append(_Done(batch, tickets, hypotheses, error, started, self.clock()))
                self._cond.notify_all()

        self._engine_threads.submit(call)

    def _apply(self, done: _Done) -> None:
        """Hand each stream of a finished engine call its events (scheduler thread).

        A stream's hypotheses are applied in the order of its requests: one that went ahead
        and came back first waits for the one before it.
        """
        batch, tickets, hypotheses, error, started, ended = done
        self._in_flight -= 1
        if error is not None or hypotheses is None:
            log.error("a batch of %d failed", len(batch), exc_info=error)
            for handle in batch:
                handle._sent.clear()
                handle._due = None
                stopped = StreamStopped(StopCause.FAILED, f"recognition failed: {type(error).__name__}: {error}")
                self._drop(handle, reason=stopped, notify=True)
            return
        if log.isEnabledFor(logging.DEBUG):
            log.debug("batch of %d: %.0f ms, waited %s ms", len(batch), (ended - started) * 1000,
                      [round((started - t.due_since) * 1000) for t in tickets])
        total = sum(t.request.duration_s for t in tickets) or 1.0
        with self._cond:
            self._note_busy(started, ended)
            self._batches += 1
            self._windows += len(batch)
            self._largest = max(self._largest, len(batch))
            for ticket, hypothesis in zip(tickets, hypotheses, strict=True):
                ticket.hypothesis = hypothesis
                self._delays.append((ended, max(0.0, started - ticket.due_since)))
        for handle, ticket in zip(batch, tickets, strict=True):
            share = (ended - started) * ticket.request.duration_s / total
            handle.compute_s += share
            handle.decode_s = _mean(handle.decode_s, ended - started)
            handle.work_s = _mean(handle.work_s, share)
            while handle._sent and handle._sent[0].hypothesis is not None and not handle._closed:
                answer = handle._sent.popleft().hypothesis
                assert answer is not None
                try:
                    events = handle.processor.apply(answer)
                except Exception as exc:
                    self._fail(handle, exc)
                    break
                if events:
                    self._deliver(handle, events)

    def _note_busy(self, started: float, ended: float) -> None:
        self._busy.append((started, ended))
        self._busy_total += ended - started

    def _shed_if_behind(self) -> None:
        with self._cond:
            # Shedding helps only with company, and the streams left need time to catch up.
            if len(self._streams) < 2 or self.clock() - self._last_shed < self.max_lag_s:
                return
            behind = [h for h in self._streams.values() if h.behind_s > self.max_lag_s]
            if not behind or self._delay() <= self.max_delay_s:
                return
            self._last_shed = self.clock()
            newest = max(self._streams.values(), key=lambda h: h.opened_s)
            self._shed += 1
        log.warning("overloaded: stream %d is %.1f s behind; closing the newest stream %d", behind[0].id,
                    behind[0].behind_s, newest.id)
        self._drop(newest, reason=StreamStopped(StopCause.OVERLOADED, f"overloaded: streams fell {self.max_lag_s:g} s "
                                                "behind; this stream, the newest, was closed so the others keep up "
                                                "— try again later"), notify=True)

    def _deliver(self, handle: StreamHandle, events: list[TranscriptEvent], *, progress: bool = False) -> None:
        handle._reported_s = handle.processor.heard_until_s
        if (events or progress) and not handle._closed:
            try:
                handle.on_events(events)
            except Exception:  # a front end's sink must not stop the scheduler
                log.exception("event sink of stream %d failed", handle.id)

    def _fail(self, handle: StreamHandle, exc: Exception) -> None:
        """Close one stream whose recognition raised (the others go on), saying why."""
        log.exception("stream %d failed", handle.id)
        self._drop(handle, reason=StreamStopped(StopCause.FAILED, f"recognition failed: {type(exc).__name__}: {exc}"),
                   notify=True)

    def _drop(self, handle: StreamHandle, *, reason: StreamStopped | None, notify: bool) -> None:
        with self._cond:
            if handle._closed:
                return
            handle._closed = True
            self._streams.pop(handle.id, None)
            self._cond.notify()
        if notify:
            try:
                handle.on_close(reason)
            except Exception:
                log.exception("close sink of stream %d failed", handle.id)

