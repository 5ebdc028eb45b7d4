"""Typed errors: every failure a caller can cause says what was wrong and what is accepted.

Each error also derives from the built-in exception a caller would naturally catch
(``ValueError`` for bad input, ``LookupError`` for a missing model), so code written
against the standard library keeps working.
"""

from __future__ import annotations


class RtWhisperError(Exception):
    """Base class of every error rtwhisper raises on purpose."""


class AudioFormatError(RtWhisperError, ValueError):
    """Fed audio is not in an accepted form (dtype, shape, byte count, values, sample rate)."""


class ConfigError(RtWhisperError, ValueError):
    """A processor, chunker or preset option is out of its accepted range."""


class ModelNotFoundError(RtWhisperError, LookupError):
    """A model name or path resolves to nothing usable on this machine."""


class StreamClosedError(RtWhisperError, RuntimeError):
    """Audio was fed, or results asked for, after ``finish()`` closed the stream."""


class RecognitionError(RtWhisperError, RuntimeError):
    """Recognition of a stream failed (the engine raised): the stream stopped, and this says why."""
