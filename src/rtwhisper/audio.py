"""Turning whatever a caller feeds into float32 mono 16 kHz, or saying exactly why not.

Whisper models take 16 kHz mono float32 in [-1, 1]; that is the one internal format.
Everything else (int16, bytes, other rates, several channels) is converted here, once,
and only where the caller said what the data is: a stereo array is downmixed only when
the caller declared ``channels=2``, never guessed, because a (n, 2) array might just as
well be two mono streams.
"""

from __future__ import annotations

import wave
from pathlib import Path
from typing import Literal

import numpy as np

from .errors import AudioFormatError

SAMPLE_RATE = 16_000
"""Whisper's sample rate; every internal timestamp counts samples at this rate."""

BytesFormat = Literal["f32le", "s16le"]
BYTES_FORMATS: tuple[str, ...] = ("f32le", "s16le")
"""Raw PCM byte layouts accepted, named as ffmpeg names them (``-f f32le``)."""

ACCEPTED_SAMPLE_RATES: tuple[int, ...] = (
    8_000, 11_025, 12_000, 16_000, 22_050, 24_000, 32_000, 44_100, 48_000, 88_200, 96_000,
)
"""Input rates that can be resampled to 16 kHz: the rates of telephony, speech codecs and audio hardware."""

_ACCEPTED_DTYPES = ("float32", "float64", "int16")
BYTES_PER_SAMPLE = {"f32le": 4, "s16le": 2}
"""Bytes in one sample of each raw PCM layout."""


def validate_input_spec(sample_rate: int, channels: int, bytes_format: str) -> None:
    """Check a stream's declared input format up front, so a bad one fails at construction."""
    if sample_rate not in ACCEPTED_SAMPLE_RATES:
        raise AudioFormatError(
            f"sample rate {sample_rate!r} Hz is not supported; accepted rates are "
            f"{', '.join(str(r) for r in ACCEPTED_SAMPLE_RATES)} Hz"
        )
    if not isinstance(channels, int) or isinstance(channels, bool) or not 1 <= channels <= 32:
        raise AudioFormatError(f"channels must be an integer from 1 to 32, got {channels!r}")
    if bytes_format not in BYTES_FORMATS:
        raise AudioFormatError(
            f"bytes format {bytes_format!r} is not supported; accepted: {', '.join(BYTES_FORMATS)}"
        )


def decode_pcm_bytes(data: bytes | bytearray | memoryview, bytes_format: str, channels: int) -> np.ndarray:
    """Raw little-endian PCM bytes → float32 samples (interleaved channels kept as columns)."""
    size = BYTES_PER_SAMPLE[bytes_format] * channels
    raw = bytes(data)
    if len(raw) % size:
        raise AudioFormatError(
            f"got {len(raw)} bytes, which is not a whole number of {bytes_format} frames "
            f"({size} bytes per frame for {channels} channel(s)); send whole samples only"
        )
    if bytes_format == "f32le":
        samples = np.frombuffer(raw, dtype="<f4").astype(np.float32)
    else:
        samples = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
    return samples.reshape(-1, channels) if channels > 1 else samples


def to_float32_mono(data: object, *, channels: int = 1, bytes_format: str = "f32le") -> np.ndarray:
    """Validate one fed block and return it as contiguous float32 mono (rate unchanged).

    Accepts a 1-D array (mono), a 2-D ``(frames, channels)`` array when ``channels`` says so,
    or raw bytes in ``bytes_format``. Raises :class:`AudioFormatError` otherwise.
    """
    if isinstance(data, (bytes, bytearray, memoryview)):
        array = decode_pcm_bytes(data, bytes_format, channels)
    elif isinstance(data, np.ndarray):
        array = data
    else:
        raise AudioFormatError(
            f"cannot feed {type(data).__name__}; accepted: a numpy array "
            f"({', '.join(_ACCEPTED_DTYPES)}) or bytes ({', '.join(BYTES_FORMATS)})"
        )

    if array.dtype == np.int16:
        array = array.astype(np.float32) / 32768.0
    elif array.dtype in (np.float32, np.float64):
        array = array.astype(np.float32, copy=False)
    else:
        raise AudioFormatError(
            f"audio dtype {array.dtype} is not accepted; accepted dtypes: {', '.join(_ACCEPTED_DTYPES)} "
            "(int16 is scaled by 1/32768)"
        )

    if array.ndim == 2 and array.shape[1] == 1 and channels == 1:
        array = array[:, 0]
    if array.ndim == 2:
        if channels == 1:
            raise AudioFormatError(
                f"got a 2-D array of shape {array.shape} but the stream is mono; pass channels="
                f"{array.shape[1]} to downmix (frames, channels) audio, or feed 1-D samples"
            )
        if array.shape[1] != channels:
            raise AudioFormatError(
                f"got shape {array.shape} but the stream was declared with {channels} channels; "
                f"expected (frames, {channels})"
            )
        array = array.mean(axis=1, dtype=np.float32)
    elif array.ndim != 1:
        raise AudioFormatError(
            f"audio must be 1-D (mono) or 2-D (frames, channels), got {array.ndim}-D shape {array.shape}"
        )
    elif channels > 1:
        raise AudioFormatError(
            f"stream was declared with {channels} channels, so arrays must have shape (frames, {channels}); "
            f"got 1-D shape {array.shape}"
        )

    check_sample_range(array)
    return np.ascontiguousarray(array, dtype=np.float32)


MAX_ABS_SAMPLE = 2.0
"""Largest float sample accepted. Float PCM lives in [-1, 1]; decoders and resamplers overshoot a
little (clipped peaks), so up to 2 passes. Far beyond it the samples are not float PCM: most
often int16 values sent as floats (peaks in the thousands), which Whisper hears as noise ("No,
no, no…"), or garbage (3e38) that ruins every window it is in."""


def check_sample_range(samples: np.ndarray, bytes_format: str = "f32le") -> None:
    """Raise :class:`AudioFormatError` for NaN, infinite or out-of-range float samples, saying how to fix it."""
    if not samples.size:
        return
    if not np.isfinite(samples).all():
        bad = int(np.count_nonzero(~np.isfinite(samples)))
        raise AudioFormatError(
            f"audio contains {bad} NaN or infinite sample(s); samples must be finite floats in [-1, 1]")
    if bytes_format != "f32le":
        return
    peak = float(np.max(np.abs(samples)))
    if peak > MAX_ABS_SAMPLE:
        hint = (" — these look like int16 values sent as floats: divide by 32768, or send int16 "
                "(bytes_format/format 's16le')") if 100 < peak <= 32768 else ""
        raise AudioFormatError(
            f"float samples must be in [-1, 1]; got a peak of {peak:.4g}{hint}")


class StreamResampler:
    """Streaming resampler to 16 kHz that gives the same output however the input is split.

    A windowed-sinc low-pass (Hann window, cutoff at 0.45 × the lower of the two rates,
    the usual anti-aliasing margin) followed by linear interpolation at the output
    instants. Both stages keep their history between calls, so block boundaries leave no
    clicks and no samples are dropped. For files, the PyAV source resamples with
    libswresample instead; this exists for arrays and bytes fed at another rate.
    """

    _TAPS = 63

    def __init__(self, from_rate: int, to_rate: int = SAMPLE_RATE) -> None:
        self.from_rate = from_rate
        self.to_rate = to_rate
        self._step = from_rate / to_rate
        cutoff = 0.45 * min(from_rate, to_rate) / from_rate
        n = np.arange(self._TAPS) - (self._TAPS - 1) / 2
        taps = 2 * cutoff * np.sinc(2 * cutoff * n) * np.hanning(self._TAPS)
        self._taps = (taps / taps.sum()).astype(np.float32)
        self._history = np.zeros(self._TAPS - 1, dtype=np.float32)
        self._filtered = np.zeros(0, dtype=np.float32)  # filtered samples not yet fully used
        self._filtered_offset = 0  # input index of self._filtered[0] (delay-compensated)
        self._next_out = 0  # index of the next output sample
        self._delay = (self._TAPS - 1) // 2
        self._in_count = 0

    def process(self, block: np.ndarray, *, final: bool = False) -> np.ndarray:
        """Resample one block; with ``final=True`` flush the filter's delay line."""
        if self.from_rate == self.to_rate:
            return block
        x = np.concatenate([self._history, block])
        if final:
            x = np.concatenate([x, np.zeros(self._delay, dtype=np.float32)])
        filtered = np.convolve(x, self._taps, mode="valid").astype(np.float32)
        self._history = x[-(self._TAPS - 1):]
        if final:
            self._history = self._history[: len(self._history) - self._delay]
        self._in_count += len(block)
        self._filtered = np.concatenate([self._filtered, filtered])
        # filtered[k] corresponds to input index (filtered_offset + k - delay)
        total_out = -(-self._in_count * self.to_rate // self.from_rate)  # ceil: n × to / from samples in all
        if not final:
            total_out = min(total_out, int(np.floor(
                (self._filtered_offset - self._delay + len(self._filtered) - 2) / self._step)) + 1)
        positions = np.arange(self._next_out, max(total_out, self._next_out)) * self._step
        local = positions - (self._filtered_offset - self._delay)
        local = np.clip(local, 0, max(len(self._filtered) - 1, 0))
        if len(self._filtered) == 0 or len(positions) == 0:
            return np.zeros(0, dtype=np.float32)
        out = np.interp(local, np.arange(len(self._filtered)), self._filtered).astype(np.float32)
        self._next_out += len(positions)
        # drop filtered samples no later output needs
        keep_from = int(np.floor(self._next_out * self._step)) - (self._filtered_offset - self._delay) - 1
        if keep_from > 0:
            self._filtered = self._filtered[keep_from:]
            self._filtered_offset += keep_from
        return out


def read_wav16(path: str | Path) -> np.ndarray | None:
    """A 16 kHz mono 16-bit WAV file as float32 samples, or ``None`` if it is another kind of WAV.

    The bundled sample and the shared set are such files: read directly, without a decoder.
    """
    with wave.open(str(path)) as w:
        if w.getframerate() != SAMPLE_RATE or w.getnchannels() != 1 or w.getsampwidth() != 2:
            return None
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32768.0
