"""Sources over audio already in memory: one array, or any iterable of arrays."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

from ..audio import SAMPLE_RATE, StreamResampler, to_float32_mono, validate_input_spec
from .base import DEFAULT_BLOCK_S, AudioBlock, BlockClock


class ArraySource:
    """Cut one array (any accepted dtype, at ``sample_rate``) into blocks."""

    live = False

    def __init__(self, audio: np.ndarray, *, sample_rate: int = SAMPLE_RATE, channels: int = 1,
                 block_s: float = DEFAULT_BLOCK_S) -> None:
        validate_input_spec(sample_rate, channels, "f32le")
        samples = to_float32_mono(audio, channels=channels)
        if sample_rate != SAMPLE_RATE:
            resampler = StreamResampler(sample_rate)
            samples = resampler.process(samples, final=True)
        self.samples = samples
        self.block = max(1, int(block_s * SAMPLE_RATE))

    def __iter__(self) -> Iterator[AudioBlock]:
        clock = BlockClock()
        for i in range(0, len(self.samples), self.block):
            yield clock.stamp(self.samples[i:i + self.block])


class IterableSource:
    """Wrap any iterable of 16 kHz mono blocks (a generator, a queue reader) as a source."""

    def __init__(self, blocks: Iterable[np.ndarray], *, live: bool = False) -> None:
        self.blocks = blocks
        self.live = live

    def __iter__(self) -> Iterator[AudioBlock]:
        clock = BlockClock()
        for block in self.blocks:
            samples = to_float32_mono(block)
            if samples.size:
                yield clock.stamp(samples)
