"""rtwhisper: real-time (streaming) speech recognition with Whisper through faster-whisper.

The core is :class:`RealtimeWhisperProcessor` — audio in (``feed``), events out
(``results``/``finish``), no I/O of its own.
"""

from .audio import SAMPLE_RATE
from .chunker import ChunkConfig, Chunker, Window
from .engine import DecodeOptions, DecodeRequest, Engine, Hypothesis, WhisperEngine, shared_engine
from .errors import (
    AudioFormatError,
    ConfigError,
    ModelNotFoundError,
    RecognitionError,
    RtWhisperError,
    StreamClosedError,
)
from .events import TranscriptEvent, Word
from .merger import OverlapMerger
from .models import installed_models, resolve_model
from .options import KNOBS, Knob, StreamOptions
from .presets import PRESETS, Preset, get_preset
from .processor import RealtimeWhisperProcessor

__version__ = "0.1.0"

__all__ = [
    "KNOBS",
    "PRESETS",
    "SAMPLE_RATE",
    "AudioFormatError",
    "ChunkConfig",
    "Chunker",
    "ConfigError",
    "DecodeOptions",
    "DecodeRequest",
    "Engine",
    "Hypothesis",
    "Knob",
    "ModelNotFoundError",
    "OverlapMerger",
    "Preset",
    "RealtimeWhisperProcessor",
    "RecognitionError",
    "RtWhisperError",
    "StreamClosedError",
    "StreamOptions",
    "TranscriptEvent",
    "WhisperEngine",
    "Window",
    "Word",
    "get_preset",
    "installed_models",
    "resolve_model",
    "shared_engine",
]
