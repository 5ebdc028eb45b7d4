"""The threaded runner with a fake engine: capture never waits, lag is bounded and reported."""

import itertools
import threading
import time

import numpy as np
import pytest

from fakes import TimelineEngine, TimelineVad, ramp
from rtwhisper import RealtimeWhisperProcessor, RecognitionError, Word
from rtwhisper.runner import LagReport, ThreadedRunner, stream
from rtwhisper.sources import ArraySource, IterableSource

WORDS = [Word(f" w{i}", 0.3 + i * 0.5, 0.7 + i * 0.5) for i in range(18)]


class SlowEngine(TimelineEngine):
    def transcribe(self, audio, options):
        time.sleep(0.3)
        return super().transcribe(audio, options)


def test_stream_generator_gives_all_words():
    proc = RealtimeWhisperProcessor(engine=TimelineEngine(WORDS), vad=TimelineVad(WORDS), chunk_duration=1.0,
                                    overlap_duration=0.2)
    events = list(stream(IterableSource(np.array_split(ramp(10.0), 37)), proc))
    assert " ".join(e.text for e in events if e.is_final).split() == [w.text.strip() for w in WORDS]


def test_threaded_runner_catches_up_and_reports_lag():
    proc = RealtimeWhisperProcessor(engine=SlowEngine(WORDS), vad=TimelineVad(WORDS), chunk_duration=0.5,
                                    overlap_duration=0.1)

    def live_blocks():  # 10 s of audio delivered 4x faster than real time
        for block in np.array_split(ramp(10.0), 100):
            time.sleep(0.025)
            yield block

    reports: list[LagReport] = []
    runner = ThreadedRunner(IterableSource(live_blocks(), live=True), proc, on_lag=reports.append,
                            report_lag_over_s=0.5)
    events = list(runner)
    assert " ".join(e.text for e in events if e.is_final).split() == [w.text.strip() for w in WORDS]
    assert reports and reports[0].lag_s > 0.5 and runner.dropped_s == 0
    assert proc.updates < 20  # one window per batch of pending audio, not one per chunk


def test_overflow_is_replaced_by_silence_and_reported():
    proc = RealtimeWhisperProcessor(engine=SlowEngine(WORDS), vad=TimelineVad(WORDS), chunk_duration=0.5,
                                    overlap_duration=0.1)
    reports: list[LagReport] = []
    runner = ThreadedRunner(ArraySource(ramp(10.0)), proc, max_lag_s=1.0, on_lag=reports.append)
    events = list(runner)
    assert runner.dropped_s > 0 and any(r.dropped_s > 0 for r in reports)
    assert events[-1].is_final and abs(events[-1].end_s - 10.0) < 1e-6  # the clock stayed right


def test_backpressure_waits_for_recognition_instead_of_dropping():
    """A pipe's writer can wait: with ``backpressure`` nothing is replaced by silence, every word comes."""
    proc = RealtimeWhisperProcessor(engine=SlowEngine(WORDS), vad=TimelineVad(WORDS), chunk_duration=0.5,
                                    overlap_duration=0.1)
    runner = ThreadedRunner(ArraySource(ramp(10.0)), proc, max_lag_s=1.0, backpressure=True)
    events = list(runner)
    assert runner.dropped_s == 0
    assert " ".join(e.text for e in events if e.is_final).split() == [w.text.strip() for w in WORDS]


class TwoWorkerEngine(TimelineEngine):
    """Says it has two workers; each decode takes 0.25 s of real time (0.3 s of audio at double
    speed take 0.15 s: the next update is due while one runs); counts decodes at once."""

    num_workers = 2

    def __init__(self, words):
        super().__init__(words)
        self.running = self.most_at_once = 0
        self.count_lock = threading.Lock()

    def transcribe(self, audio, options):
        with self.count_lock:
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        time.sleep(0.25)
        with self.count_lock:
            self.running -= 1
        return super().transcribe(audio, options)


def paced(audio, block_s=0.1, speed=2.0):
    for i in range(0, len(audio), int(block_s * 16000)):
        time.sleep(block_s / speed)
        yield audio[i:i + int(block_s * 16000)]


def test_a_lone_stream_on_two_workers_takes_the_spare_step_and_decodes_ahead():
    """As `rtwhisper serve` runs a lone stream: updates every ``spare_chunk_duration`` (0.3 s),
    the next one decoded while the one before it runs; one worker keeps ``chunk_duration``."""
    steps = {}
    two = TwoWorkerEngine(WORDS)
    for engine in (two, SlowEngine(WORDS)):
        proc = RealtimeWhisperProcessor(engine=engine, vad=TimelineVad(WORDS), chunk_duration=0.5,
                                        spare_chunk_duration=0.3, language="en")
        events = list(ThreadedRunner(IterableSource(paced(ramp(10.0)), live=True), proc))
        assert " ".join(e.text for e in events if e.is_final).split() == [w.text.strip() for w in WORDS]
        # grid steps: between two plain updates with no window that heard a pause between them
        calls = sorted((round(end, 2), options.end_of_stream or options.paused) for _, end, options in engine.calls)
        steps[type(engine).__name__] = {round(b - a, 2) for (a, off_a), (b, off_b) in itertools.pairwise(calls)
                                        if not off_a and not off_b}
    assert steps["TwoWorkerEngine"] == {0.3}, steps
    assert min(steps["SlowEngine"]) >= 0.5, steps
    assert two.most_at_once == 2  # the next update decoded while the one before it ran


def test_a_failing_engine_stops_the_runner_with_a_recognition_error():
    class Broken(TimelineEngine):
        def transcribe(self, audio, options):
            raise RuntimeError("CUDA out of memory")

    proc = RealtimeWhisperProcessor(engine=Broken(WORDS), vad=TimelineVad(WORDS), chunk_duration=0.5)
    with pytest.raises(RecognitionError, match="recognition failed: RuntimeError: CUDA out of memory"):
        list(ThreadedRunner(IterableSource(paced(ramp(3.0), speed=10.0), live=True), proc))
