"""The threaded runner with a fake engine: capture never waits, lag is bounded and reported."""

import time

import numpy as np

from fakes import TimelineEngine, TimelineVad, ramp
from rtwhisper import RealtimeWhisperProcessor, Word
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
