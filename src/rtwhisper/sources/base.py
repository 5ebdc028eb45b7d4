"""The audio source interface: an iterable of timed blocks of float32 mono 16 kHz.

Anything that yields :class:`AudioBlock` is a source — a file, a pipe, a microphone, or a
user's own network or telephony stream. Sources know nothing of recognition or transport.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from ..errors import RtWhisperError

DEFAULT_BLOCK_S = 0.1
"""Block length: 0.1 s, what the guide's clients send per WebSocket frame (1600 samples)."""


class SourceError(RtWhisperError, OSError):
    """A source cannot deliver audio: missing or unreadable file, no device, no PortAudio."""


@dataclass(frozen=True)
class AudioBlock:
    """A block of float32 mono 16 kHz samples, and where it starts on the stream's clock."""

    samples: np.ndarray
    start_s: float

    @property
    def duration_s(self) -> float:
        return len(self.samples) / 16000


@runtime_checkable
class AudioSource(Protocol):
    """What a source is: iterate it to get blocks; ``live`` says whether it runs in real time."""

    live: bool

    def __iter__(self) -> Iterator[AudioBlock]: ...


class BlockClock:
    """Stamps consecutive blocks with their start time (one helper for every source)."""

    def __init__(self) -> None:
        self.samples = 0

    def stamp(self, samples: np.ndarray) -> AudioBlock:
        block = AudioBlock(samples, self.samples / 16000)
        self.samples += len(samples)
        return block
