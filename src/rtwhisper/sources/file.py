"""Audio files and the audio track of videos, decoded by PyAV (the decoder faster-whisper installs).

Every format ffmpeg reads (wav, flac, mp3, ogg/opus, m4a, mp4, mkv, …) is decoded,
downmixed and resampled to 16 kHz mono by libswresample, block by block, so a long file
never sits in memory whole. ``realtime=True`` paces the blocks at the speed of the audio,
replaying a file as if it were live.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

from ..audio import SAMPLE_RATE
from .base import DEFAULT_BLOCK_S, AudioBlock, BlockClock, SourceError


class FileSource:
    """Decode a media file (a path, or an open binary file such as an upload) into blocks of 16 kHz mono float32."""

    def __init__(self, path: str | Path | IO[bytes], *, block_s: float = DEFAULT_BLOCK_S,
                 realtime: bool = False, name: str | None = None) -> None:
        self._file: IO[bytes] | None = None
        if isinstance(path, (str, Path)):
            self.path = Path(path)
            if not self.path.is_file():
                raise SourceError(f"cannot read {self.path}: no such file")
        else:
            self._file = path
            self.path = Path(name or getattr(path, "name", None) or "upload")
        self.block = max(1, int(block_s * SAMPLE_RATE))
        self.live = realtime
        self.duration_s = self._probe()

    def _open(self) -> Any:
        import av

        if self._file is None:
            return av.open(str(self.path), metadata_errors="ignore")
        self._file.seek(0)
        return av.open(self._file, mode="r", metadata_errors="ignore")  # a spooled upload says "w+b"

    def _probe(self) -> float | None:
        import av

        try:
            with self._open() as container:
                if not container.streams.audio:
                    raise SourceError(f"{self.path} has no audio stream")
                stream = container.streams.audio[0]
                if stream.duration is not None and stream.time_base is not None:
                    return float(stream.duration * stream.time_base)
                if container.duration is not None:
                    return container.duration / 1_000_000
                return None
        except SourceError:
            raise
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            raise SourceError(f"cannot decode {self.path}: {exc}") from None

    def __iter__(self) -> Iterator[AudioBlock]:
        import av

        clock = BlockClock()
        pending = np.zeros(0, dtype=np.float32)
        started = time.monotonic()
        try:
            with self._open() as container:
                resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
                stream = container.streams.audio[0]
                for frame in self._frames(container, stream):
                    for out in resampler.resample(frame):
                        pending = np.concatenate([pending, out.to_ndarray().reshape(-1)])
                    while len(pending) >= self.block:
                        yield self._pace(clock.stamp(pending[: self.block].copy()), started)
                        pending = pending[self.block:]
                for out in resampler.resample(None):
                    pending = np.concatenate([pending, out.to_ndarray().reshape(-1)])
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            raise SourceError(f"cannot decode {self.path}: {exc}") from None
        for i in range(0, len(pending), self.block):
            yield self._pace(clock.stamp(pending[i:i + self.block].copy()), started)

    @staticmethod
    def _frames(container, stream):  # type: ignore[no-untyped-def]
        import av

        try:
            yield from container.decode(stream)
        except av.error.InvalidDataError:
            # A damaged tail: keep what decoded, as ffmpeg does, unless nothing did.
            return

    def _pace(self, block: AudioBlock, started: float) -> AudioBlock:
        if self.live:
            delay = started + block.start_s - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        return block
