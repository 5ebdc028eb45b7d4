"""Shared fixtures: the shared speech set, the real models, a fake engine for property tests."""

from __future__ import annotations

import json
import os
import wave
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach for a model hub

REPO = Path(__file__).resolve().parent.parent
AUDIO_DIR = Path(os.environ.get("RTWHISPER_AUDIO_DIR", REPO.parent / "shared" / "audio"))


def load_manifest() -> dict[str, dict]:
    path = AUDIO_DIR / "manifest.jsonl"
    if not path.is_file():
        pytest.fail(f"speech set not found at {AUDIO_DIR}; set RTWHISPER_AUDIO_DIR")
    return {e["path"]: e for e in map(json.loads, path.read_text().splitlines()) if e}


def load_wav(rel: str) -> np.ndarray:
    """A 16 kHz mono 16-bit WAV from the shared set as float32."""
    with wave.open(str(AUDIO_DIR / rel)) as w:
        assert w.getframerate() == 16000 and w.getnchannels() == 1 and w.getsampwidth() == 2
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32768.0


@pytest.fixture(scope="session")
def manifest() -> dict[str, dict]:
    return load_manifest()


@pytest.fixture(scope="session")
def base_engine():
    from rtwhisper import resolve_model, shared_engine

    return shared_engine(resolve_model("base"), device="cpu")


@pytest.fixture(scope="session")
def tiny_engine():
    from rtwhisper import resolve_model, shared_engine

    return shared_engine(resolve_model("tiny.en"), device="cpu")
