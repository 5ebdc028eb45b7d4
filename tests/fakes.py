"""A fake engine that "hears" a known word timeline, for fast property tests of the core.

The audio fed to a processor under test is ``np.arange(n)``: each sample's value is its own
index, so the engine can tell which stretch of the stream a window covers without any
side channel. It returns the timeline's words inside the window with jittered times, a
fragment of a word cut by the window's end (a prefix, as Whisper hears half a word), and
a fragment of a word cut by the window's start (a suffix).
"""

from __future__ import annotations

import numpy as np

from rtwhisper.engine import DecodeOptions, Hypothesis
from rtwhisper.events import Word


class TimelineEngine:
    def __init__(self, words: list[Word], *, jitter_s: float = 0.0, seed: int = 0) -> None:
        self.words = words
        self.jitter_s = jitter_s
        self.seed = seed
        self.calls: list[tuple[float, float, DecodeOptions]] = []

    def _jitter(self, *key: float) -> float:
        if not self.jitter_s:
            return 0.0
        rng = np.random.default_rng(abs(hash((self.seed, *key))) % (2**32))
        return float(rng.uniform(-self.jitter_s, self.jitter_s))

    def transcribe(self, audio: np.ndarray, options: DecodeOptions) -> Hypothesis:
        start = float(audio[0]) / 16000 if len(audio) else 0.0
        end = start + len(audio) / 16000
        self.calls.append((start, end, options))
        out = []
        for i, w in enumerate(self.words):
            if w.end_s <= start or w.start_s >= end:
                continue
            a = max(w.start_s + self._jitter(i, start, 0), start)
            b = min(w.end_s + self._jitter(i, start, 1), end)
            text = w.text
            if w.start_s < start:  # cut by the window start: only its tail is heard
                heard = (w.end_s - start) / (w.end_s - w.start_s)
                text = " " + w.text.strip()[-max(1, int(len(w.text.strip()) * heard)):]
                a = start
            elif w.end_s > end:  # cut by the window end: only its head is heard
                heard = (end - w.start_s) / (w.end_s - w.start_s)
                text = " " + w.text.strip()[: max(1, int(len(w.text.strip()) * heard))] + "-"
                b = end
            b = max(b, a)
            out.append(Word(text, a - start, b - start, 0.9))
        return Hypothesis(tuple(out), "en", 0.99)


def ramp(duration_s: float) -> np.ndarray:
    """Audio whose samples are their own indices (see the module docstring)."""
    return np.arange(round(duration_s * 16000), dtype=np.float32)
