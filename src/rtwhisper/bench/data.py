"""The benchmark's audio: a manifest folder's entries and their samples."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..audio import read_wav16


def load_audio(path: Path) -> np.ndarray:
    """16 kHz mono audio: WAV directly, anything else through the file source (PyAV)."""
    if path.suffix.lower() == ".wav" and (audio := read_wav16(path)) is not None:
        return audio
    from ..sources import FileSource

    return np.concatenate([b.samples for b in FileSource(path)])


def load_manifest(folder: Path) -> list[dict[str, Any]]:
    path = folder / "manifest.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: the benchmark set must be a folder with a manifest.jsonl")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
