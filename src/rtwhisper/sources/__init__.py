"""Audio sources: each yields :class:`AudioBlock` (float32 mono 16 kHz with its stream time)."""

from .arrays import ArraySource, IterableSource
from .base import DEFAULT_BLOCK_S, AudioBlock, AudioSource, SourceError
from .file import FileSource
from .microphone import MicrophoneSource, list_input_devices
from .pipe import PipeSource

__all__ = [
    "DEFAULT_BLOCK_S",
    "ArraySource",
    "AudioBlock",
    "AudioSource",
    "FileSource",
    "IterableSource",
    "MicrophoneSource",
    "PipeSource",
    "SourceError",
    "list_input_devices",
]
