import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtwhisper.chunker import ChunkConfig, Chunker
from rtwhisper.errors import ConfigError


@pytest.mark.parametrize(
    ("chunk", "overlap", "message"),
    [
        (0, 0, "chunk_duration must be > 0"),
        (-1, 0, "chunk_duration must be > 0"),
        (2, 2, "overlap_duration must be >= 0 and < chunk_duration"),
        (2, -0.1, "overlap_duration must be >= 0"),
        (float("nan"), 0, "finite number"),
        ("2", 0, "finite number"),
        (20, 1, "at most 15 s"),
    ],
)
def test_invalid_durations_are_rejected_with_the_rule(chunk, overlap, message):
    with pytest.raises(ConfigError, match=message):
        ChunkConfig(chunk, overlap)


def test_default_max_window_scales_with_chunk():
    assert ChunkConfig(2, 0.2).max_window_duration == 15
    assert ChunkConfig(5, 0.5).max_window_duration == 20
    assert ChunkConfig(10, 1).max_window_duration == 30


def test_no_window_until_a_chunk_has_arrived():
    c = Chunker(ChunkConfig(2, 0.2))
    assert c.next_window(anchor_s=0, last_end_s=0, available_s=1.9, final=False) is None
    w = c.next_window(anchor_s=0, last_end_s=0, available_s=2.05, final=False)
    assert (w.start_s, w.end_s) == (0, 2)
    w = c.next_window(anchor_s=0, last_end_s=0, available_s=1.9, final=True)
    assert (w.start_s, w.end_s) == (0, 1.9)


@settings(max_examples=300, deadline=None)
@given(
    chunk=st.floats(0.5, 10),
    overlap_frac=st.floats(0, 0.9),
    anchor_frac=st.floats(0, 1),
    last_end=st.floats(0, 100),
    pending=st.floats(0, 60),
    final=st.booleans(),
    step_frac=st.one_of(st.none(), st.floats(0.2, 1.0)),
)
def test_windows_progress_stay_within_bounds_and_end_on_the_grid(chunk, overlap_frac, anchor_frac, last_end,
                                                                 pending, final, step_frac):
    # ``step_s`` (a shorter step while the engine has room) moves the grid, nothing else.
    config = ChunkConfig(chunk, chunk * overlap_frac)
    anchor = last_end * anchor_frac
    available = last_end + pending
    step = None if step_frac is None else chunk * step_frac
    w = Chunker(config).next_window(anchor_s=anchor, last_end_s=last_end, available_s=available, final=final,
                                    step_s=step)
    chunk = chunk if step is None else step
    if w is None:
        assert pending < chunk + 1e-9 and (not final or pending <= 1e-9)
        return
    assert w.end_s > last_end  # always progress
    assert w.end_s <= available + 1e-9  # never beyond the audio
    assert w.start_s >= anchor - 1e-9  # never before the anchor
    assert w.duration_s <= config.max_window_duration + 1e-6
    if not final:
        steps = (w.end_s - last_end) / chunk
        assert abs(steps - round(steps)) < 1e-6 and round(steps) >= 1
