"""Microphone capture through PortAudio (``pip install "rtwhisper[mic]"``)."""

from __future__ import annotations

import queue
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..audio import SAMPLE_RATE, StreamResampler
from .base import DEFAULT_BLOCK_S, AudioBlock, BlockClock, SourceError


def _sounddevice() -> Any:
    try:
        import sounddevice
    except ImportError:
        raise SourceError('microphone input needs the sounddevice package: pip install "rtwhisper[mic]"') from None
    except OSError as exc:  # sounddevice raises OSError when the PortAudio library is missing
        raise SourceError(f"PortAudio is not installed ({exc}); on Debian/Ubuntu: apt install libportaudio2") from None
    return sounddevice


def list_input_devices() -> list[dict[str, Any]]:
    """Input devices PortAudio sees: index, name, channels, default sample rate."""
    sd = _sounddevice()
    return [
        {"index": i, "name": d["name"], "channels": d["max_input_channels"],
         "default_samplerate": d["default_samplerate"]}
        for i, d in enumerate(sd.query_devices()) if d["max_input_channels"] > 0
    ]


def _resolve_device(device: str | int | None) -> int | None:
    devices = list_input_devices()
    if not devices:
        raise SourceError("no audio input device found (PortAudio sees none)")
    if device is None:
        return None
    if isinstance(device, int) or (isinstance(device, str) and device.isdigit()):
        index = int(device)
        if any(d["index"] == index for d in devices):
            return index
    else:
        matches = [d for d in devices if str(device).lower() in d["name"].lower()]
        if matches:
            return int(matches[0]["index"])
    names = "; ".join(f"{d['index']}: {d['name']}" for d in devices)
    raise SourceError(f"no input device {device!r}; input devices are: {names}")


class MicrophoneSource:
    """Capture from an input device by name (substring) or index; blocks of ``block_s``.

    The PortAudio callback only copies samples into a queue, so capture never waits for
    recognition. ``duration_s`` stops after that much audio (``None``: until ``stop()``).
    """

    live = True

    def __init__(self, device: str | int | None = None, *, block_s: float = DEFAULT_BLOCK_S,
                 duration_s: float | None = None) -> None:
        self.sd = _sounddevice()
        self.device = _resolve_device(device)
        info = self.sd.query_devices(self.device, "input")
        self.sample_rate = int(info["default_samplerate"])
        self.block = max(1, int(block_s * self.sample_rate))
        self.duration_s = duration_s
        self._queue: queue.Queue[np.ndarray | None] = queue.Queue()
        self._stopped = False

    def stop(self) -> None:
        self._stopped = True
        self._queue.put(None)

    def __iter__(self) -> Iterator[AudioBlock]:
        clock = BlockClock()
        resampler = StreamResampler(self.sample_rate) if self.sample_rate != SAMPLE_RATE else None

        def callback(indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
            self._queue.put(indata[:, 0].copy())

        try:
            stream = self.sd.InputStream(samplerate=self.sample_rate, channels=1, dtype="float32",
                                         blocksize=self.block, device=self.device, callback=callback)
        except Exception as exc:
            raise SourceError(f"cannot open input device: {exc}") from None
        limit = None if self.duration_s is None else int(self.duration_s * self.sample_rate)
        captured = 0
        with stream:
            while not self._stopped and (limit is None or captured < limit):
                samples = self._queue.get()
                if samples is None:
                    break
                if limit is not None:
                    samples = samples[: limit - captured]
                captured += len(samples)
                if resampler is not None:
                    samples = resampler.process(samples, final=limit is not None and captured >= limit)
                if samples.size:
                    yield clock.stamp(samples)
