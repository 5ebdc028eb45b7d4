"""Where the next window of audio starts and ends.

The guide's two knobs keep their names and meaning:

* ``chunk_duration`` — how much new audio triggers an update. Each update hears the
  audio since the last update (2 s in the low-latency preset), so this is the floor of
  partial latency and the period of engine calls.
* ``overlap_duration`` — how much already-finalised audio each window hears again before
  its new part, so that a word cut at the previous commit point is heard whole and
  recognised; the merger then drops what the overlap produced twice.

Unlike a fixed grid of independent chunks, a window always starts at the last commit
point (minus the overlap), not at a fixed stride: audio whose words are not final yet is
heard again with more right context, which is what lets consecutive hypotheses agree
(whisper_streaming's "process the buffer from the last commit" policy, Macháček et al.
2023). ``max_window_duration`` bounds that re-hearing, and so the cost of one update.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .errors import ConfigError

MAX_WHISPER_WINDOW_S = 30.0
"""Whisper's encoder sees at most 30 s (3000 mel frames)."""

_EPS = 1e-9


@dataclass(frozen=True)
class Window:
    """A stretch of the stream, in seconds on the stream's clock."""

    start_s: float
    end_s: float

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


@dataclass(frozen=True)
class ChunkConfig:
    """Validated chunking parameters.

    ``max_window_duration`` defaults to 15 s (whisper_streaming's buffer-trimming default:
    long enough for sentence context, short enough that one update stays cheap on a CPU),
    or four chunks when that is longer (up to Whisper's 30 s), so that unconfirmed audio
    always has room for two more updates before it has to be forced final.
    """

    chunk_duration: float = 2.0
    overlap_duration: float = 0.2
    max_window_duration: float | None = None

    def __post_init__(self) -> None:
        if self.max_window_duration is None and isinstance(self.chunk_duration, (int, float)):
            object.__setattr__(self, "max_window_duration", default_max_window(float(self.chunk_duration)))
        for name in ("chunk_duration", "overlap_duration", "max_window_duration"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ConfigError(f"{name} must be a finite number of seconds, got {value!r}")
        if self.chunk_duration <= 0:
            raise ConfigError(f"chunk_duration must be > 0 seconds, got {self.chunk_duration}")
        if not 0 <= self.overlap_duration < self.chunk_duration:
            raise ConfigError(
                f"overlap_duration must be >= 0 and < chunk_duration ({self.chunk_duration} s), "
                f"got {self.overlap_duration}"
            )
        if self.chunk_duration > MAX_WHISPER_WINDOW_S / 2:
            raise ConfigError(
                f"chunk_duration must be at most {MAX_WHISPER_WINDOW_S / 2:g} s so that a window "
                f"(new audio plus unconfirmed audio) fits Whisper's 30 s input, got {self.chunk_duration}"
            )
        low = 2 * self.chunk_duration + self.overlap_duration
        if self.max_window_duration is None or not low <= self.max_window_duration <= MAX_WHISPER_WINDOW_S:
            raise ConfigError(
                f"max_window_duration must be between 2 × chunk_duration + overlap_duration "
                f"({low:g} s) and {MAX_WHISPER_WINDOW_S:g} s, got {self.max_window_duration}"
            )


def default_max_window(chunk_duration: float) -> float:
    """15 s, or four chunks when longer, capped at Whisper's 30 s."""
    return min(MAX_WHISPER_WINDOW_S, max(15.0, 4 * chunk_duration))


class Chunker:
    """Decides the windows of a stream from three numbers; holds no audio.

    ``next_window`` is a pure function of (commit point, end of the last window, audio
    available), which keeps it easy to test: windows end on a grid of ``chunk_duration``
    steps (so the same audio gives the same windows however it was fed), start
    ``overlap_duration`` before the commit point, and never exceed the maximum length.
    """

    def __init__(self, config: ChunkConfig) -> None:
        self.config = config

    def next_window(self, *, anchor_s: float, last_end_s: float, available_s: float, final: bool,
                    step_s: float | None = None) -> Window | None:
        """The next window to transcribe, or ``None`` when no update is due.

        An update is due once a whole chunk of new audio has arrived (``step_s`` of it when
        given: a shorter step while the engine has room); when several are
        pending (the caller fed a lot at once, or inference fell behind), one window takes
        them all, up to the maximum length, so a late stream catches up instead of
        queueing. With ``final`` the rest of the audio is due even if shorter than a chunk.
        """
        chunk = self.config.chunk_duration if step_s is None else step_s
        pending = available_s - last_end_s
        if pending <= _EPS:
            return None
        if final:
            end = available_s
        elif pending + _EPS < chunk:
            return None
        else:
            end = last_end_s + math.floor((pending + _EPS) / chunk) * chunk
        start = anchor_s
        # Cap the window, but always advance by at least one chunk (or to the end of the audio).
        max_window = float(self.config.max_window_duration or MAX_WHISPER_WINDOW_S)
        room = start + max_window - last_end_s
        end = min(end, last_end_s + max(1, math.floor((room + _EPS) / chunk)) * chunk, available_s)
        start = max(start, end - max_window)
        return Window(start, end)
