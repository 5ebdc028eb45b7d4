"""The recogniser behind a small interface.

* :mod:`.interface` — what the processor asks for (:class:`DecodeRequest`) and gets back
  (:class:`Hypothesis`), and the :class:`Engine` protocol;
* :mod:`.ctranslate2` — :class:`WhisperEngine`: batched encode / generate / align over CTranslate2;
* :mod:`.cuda` — finding CUDA libraries, and the ``auto`` device that falls back to the CPU;
* :mod:`.layout` — how decodes share the CPU (workers × threads), measured once per machine.
"""

from __future__ import annotations

import threading

from ..models import resolve_model
from .ctranslate2 import WhisperEngine
from .cuda import COMPUTE_TYPES, DEVICES, CudaUnavailableError, resolve_compute_type, runs_on_cpu
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
from .layout import CpuLayout, cpu_layout, default_cpu_threads, default_workers

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
    "default_cpu_threads",
    "default_workers",
    "device_cpu_layout",
    "resolve_compute_type",
    "runs_on_cpu",
    "serving_engine",
    "shared_engine",
    "streaming_cpu_threads",
    "streaming_engine",
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


def streaming_cpu_threads(model_path: str, compute_type: str = "auto", device: str = "cpu") -> int:
    """CPU threads for the decodes of one stream that has the engine to itself, measured on this
    machine (:func:`~rtwhisper.engine.layout.cpu_layout`, ``library_threads``); 0 (the engine's
    default, nothing measured) where ``device`` does not decode on the CPU.

    A streaming window's decoder steps multiply small matrices, and whether intra-op threads
    speed them up depends on the CPU: on a 2-core Intel Xeon one `base` update took 328 ms on
    one thread and 439 ms on two, on a 2-core AMD EPYC 1.43 s and 1.23 s. Whole files, whose
    30 s windows are large, keep every core.
    """
    layout = device_cpu_layout(model_path, compute_type, device)
    return layout.library_threads if layout is not None else 0


def device_cpu_layout(model_path: str, compute_type: str = "auto", device: str = "cpu") -> CpuLayout | None:
    """How decodes share this machine's CPU for the model (:func:`~rtwhisper.engine.layout.cpu_layout`,
    measured once per machine, model and compute type), or ``None`` where ``device`` does not
    decode on the CPU: the library's threads, and the server's workers and threads when told
    neither (``rtwhisper serve``, and the benchmark's served clock that mirrors it)."""
    if not runs_on_cpu(device):
        return None
    compute_type = resolve_compute_type(compute_type, "cpu")

    def make_engine(threads: int, workers: int) -> WhisperEngine:
        return WhisperEngine(model_path, device="cpu", compute_type=compute_type, cpu_threads=threads,
                             num_workers=workers)

    return cpu_layout(model_path, compute_type, make_engine)


def streaming_engine(model_name: str, *, device: str = "auto", compute_type: str = "auto",
                     cpu_threads: int = 0) -> WhisperEngine:
    """The engine a processor made by model name decodes with, one window at a time: the model
    resolved (:func:`~rtwhisper.models.resolve_model`) and loaded once per process, with
    ``cpu_threads`` or else :func:`streaming_cpu_threads` (measured once per machine and cached).

    The processor itself does no I/O; this factory is where loading and measuring happen.
    """
    path = resolve_model(model_name)
    return shared_engine(path, device=device, compute_type=compute_type,
                         cpu_threads=cpu_threads or streaming_cpu_threads(path, compute_type, device))


def serving_engine(model_path: str, *, device: str = "auto", compute_type: str = "auto", workers: int = 0,
                   cpu_threads: int = 0) -> tuple[WhisperEngine, CpuLayout | None]:
    """The engine a :class:`~rtwhisper.scheduling.Scheduler` serves streams from, and the
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
