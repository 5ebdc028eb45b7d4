"""The recogniser behind a small interface.

* :mod:`.interface` — what the processor asks for (:class:`DecodeRequest`) and gets back
  (:class:`Hypothesis`), and the :class:`Engine` protocol;
* :mod:`.ctranslate2` — :class:`WhisperEngine`: batched encode / generate / align over CTranslate2;
* :mod:`.scheduler` — many streams' due windows → batches for one engine;
* :mod:`.cuda` — finding CUDA libraries, and the ``auto`` device that falls back to the CPU;
* :mod:`.layout` — how decodes share the CPU (workers × threads), measured once per machine.
"""

from __future__ import annotations

import threading

from .ctranslate2 import WhisperEngine, device_cpu_layout, runs_on_cpu, streaming_cpu_threads
from .cuda import COMPUTE_TYPES, DEVICES, CudaUnavailableError, resolve_compute_type
from .interface import (
    MAX_TOKENS_PER_SECOND,
    TASKS,
    DecodeOptions,
    DecodeRequest,
    Engine,
    FileTranscript,
    Hypothesis,
    SegmentScores,
    Task,
    validate_language,
)
from .layout import CpuLayout, cpu_layout

__all__ = [
    "COMPUTE_TYPES",
    "DEVICES",
    "MAX_TOKENS_PER_SECOND",
    "TASKS",
    "CpuLayout",
    "CudaUnavailableError",
    "DecodeOptions",
    "DecodeRequest",
    "Engine",
    "FileTranscript",
    "Hypothesis",
    "SegmentScores",
    "Task",
    "WhisperEngine",
    "cpu_layout",
    "device_cpu_layout",
    "resolve_compute_type",
    "runs_on_cpu",
    "shared_engine",
    "streaming_cpu_threads",
    "validate_language",
]

_ENGINES: dict[tuple[object, ...], WhisperEngine] = {}
_ENGINES_LOCK = threading.Lock()


def shared_engine(
    model_path: str,
    *,
    device: str = "auto",
    compute_type: str = "auto",
    cpu_threads: int = 0,
    num_workers: int = 1,
) -> WhisperEngine:
    """One loaded engine per (model, device, compute type, threads) in this process.

    Processors created with the same model share its weights, so a program holding many
    streams loads the model once.
    """
    key = (model_path, device, compute_type, cpu_threads, num_workers)
    with _ENGINES_LOCK:
        engine = _ENGINES.get(key)
        if engine is None:
            engine = WhisperEngine(model_path, device=device, compute_type=compute_type,
                                   cpu_threads=cpu_threads, num_workers=num_workers)
            _ENGINES[key] = engine
        return engine
