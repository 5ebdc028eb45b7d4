"""Many streams on one engine: batching, fairness, admission and shedding, on fake engines (fast)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from fakes import TimelineEngine, TimelineVad, ramp
from rtwhisper import RealtimeWhisperProcessor, Word
from rtwhisper.scheduling import Overloaded, Scheduler, StopCause

WORDS = [Word(f" w{i}", 0.3 + 0.5 * i, 0.7 + 0.5 * i) for i in range(10)]  # 5.2 s of "speech"


class SlowEngine(TimelineEngine):
    """Each batch costs ``per_batch_s`` plus ``per_item_s`` a window, like a real engine's shared steps."""

    def __init__(self, words, per_batch_s=0.0, per_item_s=0.0):
        super().__init__(words)
        self.per_batch_s = per_batch_s
        self.per_item_s = per_item_s
        self.order: list[list[int]] = []

    def transcribe_batch(self, requests):
        time.sleep(self.per_batch_s + self.per_item_s * len(requests))
        return super().transcribe_batch(requests)


class Collector:
    def __init__(self) -> None:
        self.events = []
        self.closed = threading.Event()
        self.reason: str | None = "open"

    def on_events(self, events):
        self.events += events

    def on_close(self, reason):
        self.reason = reason
        self.closed.set()

    @property
    def words(self):
        return [w.text.strip() for e in self.events if e.is_final for w in e.words]


def processor(engine, **kwargs):
    return RealtimeWhisperProcessor(engine=engine, vad=TimelineVad(WORDS), chunk_duration=0.5, **kwargs)


def test_many_streams_each_get_their_own_words_in_batches():
    engine = SlowEngine(WORDS, per_batch_s=0.01)
    scheduler = Scheduler(engine, max_batch=8, batch_wait_s=0.05)
    try:
        collectors = [Collector() for _ in range(6)]
        handles = [scheduler.open(processor(engine), c.on_events, c.on_close) for c in collectors]
        audio = ramp(6.0)
        for i in range(0, len(audio), 1600):  # the six streams' frames arrive interleaved, 10x real time
            for h in handles:
                h.feed(audio[i:i + 1600])
            time.sleep(0.01)
        for h in handles:
            h.finish()
        for c in collectors:
            assert c.closed.wait(30) and c.reason is None
            assert c.words == [w.text.strip() for w in WORDS]
        stats = scheduler.stats()
        assert stats.largest_batch > 1 and stats.windows > stats.batches  # windows shared engine calls
        assert max(engine.batches) <= 8
        assert stats.streams == 0
    finally:
        scheduler.shutdown()


def test_earliest_due_first_and_no_stream_starves():
    engine = SlowEngine(WORDS, per_batch_s=0.02)
    scheduler = Scheduler(engine, max_batch=1, batch_wait_s=0.0)
    try:
        collectors = [Collector() for _ in range(4)]
        handles = [scheduler.open(processor(engine), c.on_events, c.on_close) for c in collectors]
        audio = ramp(6.0)
        for i in range(0, len(audio), 8000):
            for h in handles:
                h.feed(audio[i:i + 8000])
            time.sleep(0.05)
        for h in handles:
            h.finish()
        for c in collectors:
            assert c.closed.wait(30)
            assert c.words == [w.text.strip() for w in WORDS]
        # one window a batch: the streams took turns, none was served twice while another waited long
        served = [call[0] for call in engine.calls]
        assert len(served) >= 8
        stats = scheduler.stats()
        assert stats.delay_s < 1.0
    finally:
        scheduler.shutdown()


def test_cadence_degrades_under_load_instead_of_falling_behind():
    # 0.15 s per window, one at a time, four streams at 2x real time: each update must take
    # more audio than one 0.5 s step, and every word still arrives
    engine = SlowEngine(WORDS, per_item_s=0.15)
    scheduler = Scheduler(engine, max_batch=1, batch_wait_s=0.0, max_delay_s=60, max_lag_s=60)
    try:
        collectors = [Collector() for _ in range(4)]
        handles = [scheduler.open(processor(engine), c.on_events, c.on_close) for c in collectors]
        audio = ramp(6.0)
        for i in range(0, len(audio), 1600):
            for h in handles:
                h.feed(audio[i:i + 1600])
            time.sleep(0.05)
        for h in handles:
            h.finish()
        for c in collectors:
            assert c.closed.wait(60)
            assert c.words == [w.text.strip() for w in WORDS]
        steps = sorted(end - start for start, end, _ in engine.calls)
        assert steps[-1] > 1.0  # windows grew: the cadence degraded
    finally:
        scheduler.shutdown()


def test_admission_refuses_when_windows_wait_too_long():
    engine = SlowEngine(WORDS, per_item_s=0.1)
    scheduler = Scheduler(engine, max_batch=1, batch_wait_s=0.0, max_delay_s=0.05, max_lag_s=600)
    try:
        collectors = [Collector() for _ in range(3)]
        handles = [scheduler.open(processor(engine), c.on_events, c.on_close) for c in collectors]
        for h in handles:
            h.feed(ramp(3.0))
        deadline = time.monotonic() + 10
        while scheduler.stats().delay_s <= 0.05 and time.monotonic() < deadline:
            time.sleep(0.02)
        with pytest.raises(Overloaded, match=r"saturated: with 3 live stream\(s\) windows wait .* over the 0.05 s"):
            scheduler.open(processor(engine), Collector().on_events)
        assert scheduler.stats().refused == 1
        for h in handles:
            h.finish()
        for c in collectors:
            assert c.closed.wait(30) and c.reason is None
    finally:
        scheduler.shutdown()


def test_hard_cap_on_streams():
    engine = TimelineEngine(WORDS)
    scheduler = Scheduler(engine, max_streams=2)
    try:
        scheduler.open(processor(engine), lambda e: None)
        scheduler.open(processor(engine), lambda e: None)
        with pytest.raises(Overloaded, match="2 live streams, the limit"):
            scheduler.open(processor(engine), lambda e: None)
    finally:
        scheduler.shutdown()


class AudioCostEngine(TimelineEngine):
    """Each window costs ``per_audio_s`` seconds per second of its audio: an engine slower than real time."""

    def __init__(self, words, per_audio_s):
        super().__init__(words)
        self.per_audio_s = per_audio_s

    def transcribe_batch(self, requests):
        time.sleep(self.per_audio_s * sum(r.duration_s for r in requests))
        return super().transcribe_batch(requests)


def test_saturated_engine_sheds_the_newest_stream_with_a_reason():
    """Two real-time streams on an engine that needs 0.25 s per second of window: they fall behind
    real time (windows grow to the maximum), and the newest is closed so that the other keeps up."""
    speech = [Word(f" w{i}", 0.3 + 0.5 * i, 0.7 + 0.5 * i) for i in range(30)]  # 15 s
    engine = AudioCostEngine(speech, per_audio_s=0.25)
    scheduler = Scheduler(engine, max_batch=1, batch_wait_s=0.0, max_delay_s=0.1, max_lag_s=1.0)

    def stream() -> RealtimeWhisperProcessor:
        return RealtimeWhisperProcessor(engine=engine, vad=TimelineVad(speech), chunk_duration=0.5)

    try:
        old, new = Collector(), Collector()
        first = scheduler.open(stream(), old.on_events, old.on_close)
        time.sleep(0.01)
        second = scheduler.open(stream(), new.on_events, new.on_close)
        audio = ramp(15.0)
        started = time.monotonic()
        for k, i in enumerate(range(0, len(audio), 1600)):  # at real-time pace
            time.sleep(max(0.0, started + 0.1 * k - time.monotonic()))
            first.feed(audio[i:i + 1600])
            if not new.closed.is_set():
                second.feed(audio[i:i + 1600])
        assert new.closed.wait(30)
        assert new.reason is not None and new.reason.cause is StopCause.OVERLOADED and "newest" in new.reason.message
        assert not old.closed.is_set()
        engine.per_audio_s = 0.01  # what is left to decode is not what this test is about
        first.finish()
        assert old.closed.wait(60) and old.reason is None
        assert scheduler.stats().shed >= 1
    finally:
        scheduler.shutdown()


def test_a_client_sending_faster_than_real_time_is_not_shed():
    """Audio sent ahead of real time (ffmpeg | websocat) is backlog, not lag: with the engine
    saturated and both streams far behind their received audio, nobody is closed."""
    speech = [Word(f" w{i}", 0.3 + 0.5 * i, 0.7 + 0.5 * i) for i in range(40)]  # 20 s
    engine = AudioCostEngine(speech, per_audio_s=0.1)  # the first window (15 s, the most) costs 1.5 s

    def stream() -> RealtimeWhisperProcessor:
        return RealtimeWhisperProcessor(engine=engine, vad=TimelineVad(speech), chunk_duration=0.5)

    scheduler = Scheduler(engine, max_batch=1, batch_wait_s=0.0, max_delay_s=0.05, max_lag_s=1.0)
    try:
        collectors = [Collector() for _ in range(2)]
        handles = [scheduler.open(stream(), c.on_events, c.on_close) for c in collectors]
        for h in handles:
            h.feed(ramp(20.0))  # all at once
        # both first windows decoded (the second waited 3 s for the worker: saturated), 5 s still unheard
        deadline = time.monotonic() + 30
        while scheduler.stats().windows < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert scheduler.stats().delay_s > 1.0 and all(h.lag_s > 1.0 for h in handles)
        assert all(h.behind_s <= 1.0 for h in handles)
        engine.per_audio_s = 0.01  # the rest of the backlog, quickly: every word still counted below
        for h in handles:
            h.finish()
        for c in collectors:
            assert c.closed.wait(60) and c.reason is None, c.reason
        assert scheduler.stats().shed == 0
        assert all(len(c.words) == len(speech) for c in collectors), [" ".join(c.words) for c in collectors]
    finally:
        scheduler.shutdown()


def test_flush_and_a_failing_engine():
    class Broken(TimelineEngine):
        def transcribe_batch(self, requests):
            raise RuntimeError("GPU fell off the bus")

    engine = TimelineEngine(WORDS)
    scheduler = Scheduler(engine)
    try:
        c = Collector()
        handle = scheduler.open(processor(engine), c.on_events, c.on_close)
        handle.feed(ramp(2.25))  # stops in the gap after w3
        handle.flush()
        deadline = time.monotonic() + 10
        while not any(e.end_of_utterance for e in c.events) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert c.words == ["w0", "w1", "w2", "w3"] and not c.closed.is_set()
    finally:
        scheduler.shutdown()
    broken = Broken(WORDS)
    scheduler = Scheduler(broken)
    try:
        c = Collector()
        scheduler.open(processor(broken), c.on_events, c.on_close).feed(ramp(2.0))
        assert c.closed.wait(10) and c.reason is not None and c.reason.cause is StopCause.FAILED
        assert "GPU fell off the bus" in c.reason.message
        c2 = Collector()
        scheduler.open(processor(engine), c2.on_events, c2.on_close)  # the scheduler goes on
    finally:
        scheduler.shutdown()


class GatedEngine(TimelineEngine):
    """Holds each engine call until the test opens the gate: a batch 'on the engine' for as long as it likes."""

    def __init__(self, words):
        super().__init__(words)
        self.gate = threading.Event()
        self.started: list[int] = []
        self.running = 0
        self.most_at_once = 0
        self._lock = threading.Lock()

    def transcribe_batch(self, requests):
        with self._lock:
            self.started.append(len(requests))
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        try:
            assert self.gate.wait(30)
            return super().transcribe_batch(requests)
        finally:
            with self._lock:
                self.running -= 1


def wait_until(condition, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    return condition()


def test_streams_are_fed_while_a_batch_is_on_the_engine():
    engine = GatedEngine(WORDS)
    scheduler = Scheduler(engine, max_batch=8, batch_wait_s=0.0)
    try:
        collectors = [Collector() for _ in range(3)]
        busy = scheduler.open(processor(engine), collectors[0].on_events, collectors[0].on_close)
        audio = ramp(6.0)
        busy.feed(audio[:16000])  # 1 s of speech: a window falls due and goes to the engine, which holds it
        assert wait_until(lambda: engine.started == [1])
        others = [scheduler.open(processor(engine), c.on_events, c.on_close) for c in collectors[1:]]
        for h in others:
            h.feed(audio[:48000])
        # The other streams' audio went through their VAD, and their windows fell due, while the
        # engine was still busy with the first batch; they wait for it, and then go together.
        assert wait_until(lambda: all(h._due is not None and not h._inbox for h in others))
        assert not engine.gate.is_set() and engine.started == [1]
        assert all(h._due is not None and h._due.request.duration_s >= 2.0 for h in others)
        engine.gate.set()
        assert wait_until(lambda: len(engine.started) >= 2) and engine.started[1] == 2
        for h, sent in zip([busy, *others], (16000, 48000, 48000), strict=True):
            h.feed(audio[sent:])
            h.finish()
        for c in collectors:
            assert c.closed.wait(30) and c.reason is None
            assert c.words == [w.text.strip() for w in WORDS]
    finally:
        engine.gate.set()
        scheduler.shutdown()


@pytest.mark.parametrize("workers", [1, 2])
def test_workers_run_that_many_engine_calls_at_once(workers):
    engine = GatedEngine(WORDS)
    scheduler = Scheduler(engine, max_batch=1, batch_wait_s=0.0, workers=workers)
    try:
        collectors = [Collector() for _ in range(3)]
        handles = [scheduler.open(processor(engine), c.on_events, c.on_close) for c in collectors]
        audio = ramp(6.0)
        for h in handles:
            h.feed(audio[:16000])
        assert wait_until(lambda: len(engine.started) == workers)
        time.sleep(0.2)  # no more calls start while the gate holds them
        assert engine.running == workers and len(engine.started) == workers
        engine.gate.set()
        for h in handles:
            h.feed(audio[16000:])
            h.finish()
        for c in collectors:
            assert c.closed.wait(30) and c.reason is None
            assert c.words == [w.text.strip() for w in WORDS]
        assert engine.most_at_once == workers
    finally:
        engine.gate.set()
        scheduler.shutdown()


class CountingEngine(SlowEngine):
    """A slow engine that counts how many calls run at once."""

    def __init__(self, words, per_batch_s):
        super().__init__(words, per_batch_s=per_batch_s)
        self.running = 0
        self.most_at_once = 0
        self._lock = threading.Lock()

    def transcribe_batch(self, requests):
        with self._lock:
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        try:
            return super().transcribe_batch(requests)
        finally:
            with self._lock:
                self.running -= 1


class AheadCounting(RealtimeWhisperProcessor):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.ahead = 0
        self.ends = []

    def next_request(self, *, ahead=False, **pace):
        request = super().next_request(ahead=ahead, **pace)
        self.ahead += bool(ahead and request is not None)
        if request is not None and not request.options.paused:  # an endpoint's decode is off the grid
            self.ends.append(self._planner.inflight[-1].window.end_s)
        return request


def stream_fast(handles, seconds, speed):
    audio = ramp(seconds)
    for i in range(0, len(audio), 1600):
        for h in handles:
            h.feed(audio[i:i + 1600])
        time.sleep(0.1 / speed)
    for h in handles:
        h.finish()


def stream_on_two_workers(streams, decode_ahead, per_batch_s, speed, **options):
    """Stream 6 s of the timeline to ``streams`` processors on two workers; every word arrives once, in order."""
    engine, procs, _ = paced_streams(streams, per_batch_s=per_batch_s, workers=2, speed=speed,
                                     decode_ahead=decode_ahead, **options)
    return engine, procs


@pytest.mark.parametrize(("streams", "decode_ahead", "goes_ahead"),
                         [(1, True, True), (1, False, False), (2, True, False)])
def test_a_spare_worker_decodes_a_lone_streams_next_update_ahead(streams, decode_ahead, goes_ahead):
    # Decodes (0.12 s) outlast the update step (0.25 s of audio every 0.083 s at 3x real time).
    # A lone stream on two workers has its next update decoded while the one before is still
    # running; with as many streams as workers, or decode_ahead off, one at a time.
    engine, procs = stream_on_two_workers(streams, decode_ahead, 0.12, 3.0, chunk_duration=0.25,
                                          agreement_span_s=0.5)
    assert all((p.ahead > 0) == goes_ahead for p in procs)
    if streams == 1:
        assert engine.most_at_once == (2 if goes_ahead else 1)


@pytest.mark.parametrize(("streams", "decode_ahead", "spare"), [(1, True, True), (1, False, False), (2, True, False)])
def test_a_lone_stream_updates_every_spare_chunk_while_a_worker_is_spare(streams, decode_ahead, spare):
    # 0.5 s updates, 0.3 s while the engine has more workers than streams: a lone stream on two
    # workers gets windows 0.3 s apart; two streams (or decode_ahead off) keep 0.5 s.
    _, procs = stream_on_two_workers(streams, decode_ahead, 0.02, 2.0, chunk_duration=0.5, spare_chunk_duration=0.3)
    for p in procs:
        steps = np.round(np.diff(p.ends), 3)
        assert len(steps) >= 8
        if spare:
            assert np.median(steps) == pytest.approx(0.3)  # on 0.1 s blocks: 0.3 s steps, a few longer
        else:
            assert steps.min() >= 0.5 - 1e-6


# -- pacing from measured compute --------------------------------------------------------------------


def paced_streams(streams, *, per_batch_s, workers, speed, stream_cpu=None, cpu_threads=0, decode_ahead=True,
                  **options):
    """Stream 6 s of the timeline to ``streams`` processors; every word arrives once, in order.
    Returns the engine, the processors (their window ends) and each stream's last pace."""
    engine = CountingEngine(WORDS, per_batch_s=per_batch_s)
    engine.cpu_threads = cpu_threads  # a CPU engine's threads per worker (0: a GPU's)
    scheduler = Scheduler(engine, max_batch=1, batch_wait_s=0.0, workers=workers, max_delay_s=60, max_lag_s=60,
                          decode_ahead=decode_ahead, stream_cpu=stream_cpu)
    try:
        collectors = [Collector() for _ in range(streams)]
        procs = [AheadCounting(engine=engine, vad=TimelineVad(WORDS), **options) for _ in collectors]
        handles = [scheduler.open(p, c.on_events, c.on_close) for p, c in zip(procs, collectors, strict=True)]
        stream_fast(handles, 6.0, speed=speed)
        for c in collectors:
            assert c.closed.wait(60) and c.reason is None
            assert c.words == [w.text.strip() for w in WORDS]  # in order, none lost or repeated
    finally:
        scheduler.shutdown()
    return engine, procs, [h.pace_s for h in handles]


@pytest.mark.parametrize(("stream_cpu", "spare"), [(None, True), (1.0, True), (0.4, False)])
def test_a_stream_takes_the_spare_step_only_where_its_updates_fit_the_cpu_it_may_use(stream_cpu, spare):
    # Updates cost 0.2 s of one core each. At 0.3 s steps that is 0.67 of a core: within a budget
    # of one core, over one of 0.4 (which asks for steps of 0.5 s at least: its own 0.5 s).
    _, procs, _ = paced_streams(1, per_batch_s=0.2, workers=2, speed=1.0, stream_cpu=stream_cpu, cpu_threads=1,
                             chunk_duration=0.5, spare_chunk_duration=0.3)
    steps = np.round(np.diff(procs[0].ends), 3)
    assert len(steps) >= 6
    if spare:
        assert np.median(steps) == pytest.approx(0.3)
    else:
        assert np.median(steps) >= 0.5 - 1e-6


def test_under_load_every_streams_updates_come_less_often_instead_of_waiting():
    # Three streams on one worker, each 0.5 s update costing 0.3 s: 1.8 worker-seconds a second
    # at their own steps. Paced to ~1.1 s (TARGET_BUSY of the worker), capped at MAX_PACE_S (1 s).
    from rtwhisper.scheduling import MAX_PACE_S

    _, procs, paces = paced_streams(3, per_batch_s=0.3, workers=1, speed=1.0, chunk_duration=0.5)
    for p, pace in zip(procs, paces, strict=True):
        steps = np.diff(p.ends)
        assert np.median(steps) >= 0.8, steps
        assert pace is not None and 0.8 <= pace <= MAX_PACE_S


def test_a_stream_the_engine_could_not_serve_within_the_longest_step_is_refused_with_the_reason():
    # Each 0.5 s update costs 0.3 s of the one worker: two streams need 0.75 s steps, a third
    # would need 1.1 s, over MAX_PACE_S (1 s): refused, saying so; the two admitted keep every word.
    engine = CountingEngine(WORDS, per_batch_s=0.3)
    scheduler = Scheduler(engine, max_batch=1, batch_wait_s=0.0, workers=1, max_delay_s=60, max_lag_s=60)
    try:
        collectors = [Collector() for _ in range(2)]
        handles = [scheduler.open(processor(engine), c.on_events, c.on_close) for c in collectors]
        audio = ramp(6.0)
        refused = None
        for i in range(0, len(audio), 1600):
            for h in handles:
                h.feed(audio[i:i + 1600])
            time.sleep(0.1)
            if i >= 3 * 16000 and refused is None:
                with pytest.raises(Overloaded) as info:
                    scheduler.open(processor(engine), Collector().on_events)
                refused = str(info.value)
        for h in handles:
            h.finish()
        for c in collectors:
            assert c.closed.wait(60) and c.reason is None
            assert c.words == [w.text.strip() for w in WORDS]
    finally:
        scheduler.shutdown()
    assert refused is not None and "full" in refused and "updates every" in refused, refused
    assert scheduler.stats().refused == 1
