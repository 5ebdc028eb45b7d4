"""Property tests over what ``feed()`` may be given: every input is either accepted and accounted
for to the sample, or refused with a typed error that leaves the stream as it was.

Abuse testing found these classes of bad input (issue #15): wrong dtypes and shapes, NaN and
infinity, samples far outside [-1, 1] (3e38, int16 values sent as floats), bytes that are not
whole frames. Hypothesis draws mixtures of good and bad blocks; the fake engine and VAD keep
each example to milliseconds.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fakes import TimelineEngine
from rtwhisper import AudioFormatError, RealtimeWhisperProcessor
from rtwhisper.errors import RtWhisperError

GOOD_DTYPES = (np.float32, np.float64, np.int16)


def good_block() -> st.SearchStrategy[np.ndarray]:
    floats = hnp.arrays(np.float32, st.integers(0, 4000),
                        elements=st.floats(-1.0, 1.0, width=32, allow_nan=False))
    ints = hnp.arrays(np.int16, st.integers(0, 4000))
    return st.one_of(floats, ints)


def bad_block() -> st.SearchStrategy[object]:
    return st.one_of(
        # NaN or infinity somewhere
        hnp.arrays(np.float32, st.integers(1, 200), elements=st.sampled_from([np.nan, np.inf, -np.inf, 0.1])).filter(
            lambda a: not np.isfinite(a).all()),
        # far out of range (3e38), or int16 values sent as floats
        hnp.arrays(np.float32, st.integers(1, 200), elements=st.floats(3.0, 3.0000000054977558e+38, width=32)),
        hnp.arrays(np.float32, st.integers(1, 200), elements=st.floats(-32768, -3.0, width=32)),
        # wrong dtypes and shapes
        hnp.arrays(st.sampled_from([np.int32, np.uint8, np.complex64, np.bool_]), st.integers(1, 50)),
        hnp.arrays(np.float32, st.tuples(st.integers(1, 20), st.integers(2, 4))),
        hnp.arrays(np.float32, st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 3))),
        # bytes that are not whole float32 frames; things that are not audio at all
        st.binary(min_size=1, max_size=64).filter(lambda b: len(b) % 4 != 0),
        st.sampled_from([None, "audio", 3.5, [0.1, "x"], {"a": 1}]),
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.booleans(), st.data()), min_size=1, max_size=12))
def test_every_block_is_accepted_and_counted_or_refused_with_a_typed_error(plan):
    proc = RealtimeWhisperProcessor(engine=TimelineEngine([]), vad=False, chunk_duration=0.5)
    fed = 0
    for good, data in plan:
        block = data.draw(good_block() if good else bad_block())
        before = proc.fed_duration_s
        if good:
            proc.feed(block)
            fed += len(block)
        else:
            with pytest.raises(RtWhisperError) as info:
                proc.feed(block)
            assert isinstance(info.value, (AudioFormatError, TypeError, ValueError))
            assert str(info.value)  # says what was wrong
            assert proc.fed_duration_s == before  # nothing of a refused block is buffered
        proc.results()
    events = proc.finish()
    assert proc.fed_duration_s == pytest.approx(fed / 16000)
    if fed:
        assert events and events[-1].is_final and events[-1].end_s == pytest.approx(fed / 16000, abs=1e-6)


def test_int16_values_sent_as_floats_say_how_to_fix_it():
    proc = RealtimeWhisperProcessor(engine=TimelineEngine([]), vad=False)
    with pytest.raises(AudioFormatError, match="32768"):
        proc.feed(np.full(1600, 12000.0, dtype=np.float32))
