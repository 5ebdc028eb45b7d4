"""Whisper's log-mel spectrogram, computed on the calling thread alone.

faster-whisper's ``FeatureExtractor`` computes the values; only its BLAS is held to one
thread while it does. Its mel projection, ``mel_filters @ power``, goes to numpy's BLAS
(OpenBLAS in numpy's wheels), which splits a window's 80 × 201 × 1000 product over every core;
the helper threads then busy-wait for the next call (OpenBLAS's thread timeout, about 0.1 s)
on the very cores CTranslate2 decodes on next. Held to one thread, the product is the same to
the bit (checked on jfk.wav): a projection that differs by 1e-7 (``np.einsum``, tried) moves
close tokens of the greedy int8 decoder and, through every later commit, the words streamed
("therefore" came out "there for" at the end of LJ001-0016).

Measured on 2 Intel Xeon cores (the CPU layout probe: 8 s of speech, two decodes at once on
two one-thread workers): ``base`` 0.245 → 0.19 s a decode, ``tiny.en`` 0.126 → 0.093 s.
Holding the limit costs about 15 µs a call (``threadpoolctl``, which scikit-learn uses for the
same reason).
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

_LOCK = threading.Lock()
_HOLDERS = 0
_LIMIT: Any = None
_CONTROLLER: Any = None


def log_mel(extractor: Any, audio: np.ndarray) -> np.ndarray:
    """``extractor(audio)`` (a faster-whisper ``FeatureExtractor``) with numpy's BLAS on this thread alone."""
    _hold()
    try:
        return np.asarray(extractor(np.asarray(audio, dtype=np.float32)), dtype=np.float32)
    finally:
        _release()


def _hold() -> None:
    """The first of the threads computing features at once limits BLAS to one thread; the last restores it."""
    global _HOLDERS, _LIMIT, _CONTROLLER
    with _LOCK:
        if _HOLDERS == 0:
            if _CONTROLLER is None:
                from threadpoolctl import ThreadpoolController

                _CONTROLLER = ThreadpoolController()
            _LIMIT = _CONTROLLER.limit(limits=1, user_api="blas")
        _HOLDERS += 1


def _release() -> None:
    global _HOLDERS, _LIMIT
    with _LOCK:
        _HOLDERS -= 1
        if _HOLDERS == 0 and _LIMIT is not None:
            _LIMIT.restore_original_limits()
            _LIMIT = None
