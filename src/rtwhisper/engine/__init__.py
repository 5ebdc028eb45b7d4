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

from .ctranslate2 import WhisperEngine, default_workers, device_cpu_layout, runs_on_cpu, streaming_cpu_threads
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
    "serving_engine",
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


def serving_engine(model_path: str, *, device: str = "auto", compute_type: str = "auto", workers: int = 0,
                   cpu_threads: int = 0) -> tuple[WhisperEngine, CpuLayout | None]:
    """The engine a :class:`~rtwhisper.engine.scheduler.Scheduler` serves streams from, and the
    measured layout it took (``None`` if none was measured).

    ``workers`` engine calls at once of ``cpu_threads`` each; neither given, how decodes share
    this CPU is measured once per machine and model (:func:`device_cpu_layout`: on 2 cores two
    one-thread workers, so that a lone stream's next update decodes while the one before it
    still runs), else :func:`~rtwhisper.engine.ctranslate2.default_workers`. ``rtwhisper serve``
    and the command line's live modes (:class:`~rtwhisper.runner.ThreadedRunner`) use it; a
    processor made by name decodes one window at a time and takes
    :func:`streaming_cpu_threads` instead.
    """
    layout = device_cpu_layout(model_path, compute_type, device) if not workers and not cpu_threads else None
    if layout is not None:
        workers, cpu_threads = layout.workers, layout.threads
    engine = shared_engine(model_path, device=device, compute_type=compute_type, cpu_threads=cpu_threads,
                           num_workers=workers or default_workers(device))
    return engine, layout
