"""The one recording that ships with rtwhisper, so that a fresh install has something to hear.

``jfk.wav``: 11 s of J. F. Kennedy's inaugural address (1961), a work of the U.S. government
and so in the public domain; whisper.cpp ships the same clip for the same reason.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

SAMPLE_TEXT = ("And so my fellow Americans, ask not what your country can do for you, "
               "ask what you can do for your country.")
"""What is said in the sample."""


def sample_path() -> Path:
    """The bundled sample's path (16 kHz mono 16-bit WAV)."""
    return Path(str(files("rtwhisper") / "data" / "jfk.wav"))
