"""Raw PCM from a pipe or stdin: ``ffmpeg … -f f32le -ar 16000 -ac 1 - | rtwhisper transcribe -``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

import numpy as np

from ..audio import BYTES_PER_SAMPLE, SAMPLE_RATE, StreamResampler, to_float32_mono, validate_input_spec
from ..errors import AudioFormatError
from .base import DEFAULT_BLOCK_S, AudioBlock, BlockClock, SourceError


class PipeSource:
    """Read raw little-endian PCM until end of input; a partial frame at the end is an error."""

    live = True

    def __init__(self, stream: BinaryIO, *, input_format: str = "f32le", sample_rate: int = SAMPLE_RATE,
                 channels: int = 1, block_s: float = DEFAULT_BLOCK_S) -> None:
        validate_input_spec(sample_rate, channels, input_format)
        self.stream = stream
        self.input_format = input_format
        self.sample_rate = sample_rate
        self.channels = channels
        self.frame_bytes = BYTES_PER_SAMPLE[input_format] * channels
        self.read_bytes = max(1, int(block_s * sample_rate)) * self.frame_bytes
        self.bytes_read = 0

    def __iter__(self) -> Iterator[AudioBlock]:
        clock = BlockClock()
        resampler = StreamResampler(self.sample_rate) if self.sample_rate != SAMPLE_RATE else None
        carry = b""
        read = getattr(self.stream, "read1", self.stream.read)
        while True:
            data = read(self.read_bytes)
            if not data:
                break
            self.bytes_read += len(data)
            data = carry + data
            whole = len(data) - len(data) % self.frame_bytes
            carry = data[whole:]
            if whole:
                samples = self._samples(data[:whole])
                if resampler is not None:
                    samples = resampler.process(samples)
                if samples.size:
                    yield clock.stamp(samples)
        if self.bytes_read == 0:
            raise SourceError("no audio: the input was empty (expected raw " + self.input_format + " PCM)")
        if carry:
            raise AudioFormatError(
                f"input ended with {len(carry)} stray byte(s): {self.bytes_read} bytes is not a whole number of "
                f"{self.input_format} frames ({self.frame_bytes} bytes each for {self.channels} channel(s))"
            )
        if resampler is not None:
            tail = resampler.process(np.zeros(0, dtype=np.float32), final=True)
            if tail.size:
                yield clock.stamp(tail)

    def _samples(self, data: bytes) -> np.ndarray:
        try:
            return to_float32_mono(data, channels=self.channels, bytes_format=self.input_format)
        except AudioFormatError as exc:
            raise AudioFormatError(f"{exc} (is the input really {self.input_format}?)") from None
