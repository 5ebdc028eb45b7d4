"""A fake engine and a fake VAD that "hear" a known word timeline, for fast property tests of the core.

The audio fed to a processor under test is ``np.arange(n) / 2**24``: each sample's value is
its own index, scaled into [-1, 1] exactly (a power of two keeps float32 exact up to 17
minutes), so the engine can tell which stretch of the stream a window covers without any
side channel. It returns the timeline's words inside the window with jittered times, a
fragment of a word cut by the window's end (a prefix, as Whisper hears half a word), and
a fragment of a word cut by the window's start (a suffix). Like the real engine it is
forced through the request's prefix and returns only what follows it.
"""

from __future__ import annotations

import numpy as np

from rtwhisper.engine import DecodeOptions, DecodeRequest, Hypothesis
from rtwhisper.events import Word
from rtwhisper.text import normalize_word


class TimelineEngine:
    def __init__(self, words: list[Word], *, jitter_s: float = 0.0, seed: int = 0, doubted: int = 0) -> None:
        self.words = words
        self.doubted = doubted  # every n-th word is heard at probability 0.2 (0: none)
        self.jitter_s = jitter_s
        self.seed = seed
        self.calls: list[tuple[float, float, DecodeOptions]] = []
        self.batches: list[int] = []

    def _jitter(self, *key: float) -> float:
        if not self.jitter_s:
            return 0.0
        rng = np.random.default_rng(abs(hash((self.seed, *key))) % (2**32))
        return float(rng.uniform(-self.jitter_s, self.jitter_s))

    def transcribe_batch(self, requests: list[DecodeRequest]) -> list[Hypothesis]:
        self.batches.append(len(requests))
        return [self.transcribe(r.audio, r.options) for r in requests]

    def transcribe(self, audio: np.ndarray, options: DecodeOptions) -> Hypothesis:
        start = sample_index(audio[0]) / 16000 if len(audio) else 0.0
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
            doubt = self.doubted and i % self.doubted == self.doubted - 1
            out.append(Word(text, a - start, b - start, 0.2 if doubt else 0.9))
        return Hypothesis(tuple(_after_prefix(out, options.prefix)), "en", 0.99)


def _after_prefix(words: list[Word], prefix: str | None) -> list[Word]:
    """The words after the forced prefix: the prefix's words in order (and any fragment before them) go."""
    if not prefix:
        return words
    keys = [normalize_word(t) for t in prefix.split()]
    heard = [normalize_word(w.text) for w in words]
    for skip in range(len(words) + 1):
        if heard[skip:skip + len(keys)] == keys:
            return words[skip + len(keys):]
    return words[len(keys):]


class TimelineVad:
    """Speech probability 1 where a timeline word is, 0 elsewhere, read off the ramp audio's values."""

    def __init__(self, words: list[Word]) -> None:
        self.spans = [(w.start_s, w.end_s) for w in words]

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        starts = frames[:, 0].astype(np.float64) * SCALE / 16000
        return np.array([1.0 if any(a < t + 0.032 and t < b for a, b in self.spans) else 0.0 for t in starts],
                        dtype=np.float32)


SCALE = float(2**24)


def ramp(duration_s: float) -> np.ndarray:
    """Audio whose samples are their own indices (see the module docstring)."""
    return (np.arange(round(duration_s * 16000), dtype=np.float64) / SCALE).astype(np.float32)


def sample_index(value: float) -> int:
    return round(float(value) * SCALE)
