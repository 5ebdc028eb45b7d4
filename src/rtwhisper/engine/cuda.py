"""Finding a usable GPU: CUDA libraries, the ``auto`` device, and errors that say what to install.

CTranslate2's PyPI wheels (4.5 and later) are built against CUDA 12 and open cuBLAS by its
file name, ``libcublas.so.12``, at the first matrix product, not at load. A machine with
only a newer CUDA (13) or no CUDA toolkit at all therefore loads a model on the GPU and
fails at the first encode ("Library libcublas.so.12 is not found or cannot be loaded"),
the faster-whisper issues 717, 783 and 1431. Two things make that a non-event here:

* :func:`preload_cuda_libraries` loads cuBLAS 12 from the ``nvidia-cublas-cu12`` wheel
  (``pip install "rtwhisper[cuda]"``) before CTranslate2 asks for it: once a library with
  that name is loaded, the dynamic linker hands it to CTranslate2's ``dlopen``;
* :func:`probe_cuda` runs one tiny encode right after loading, so ``device="auto"`` takes
  the GPU only when it really runs and otherwise falls back to the CPU with a one-line
  warning, while ``device="cuda"`` fails at once with an error that names the package.
"""

from __future__ import annotations

import ctypes
import importlib.util
import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError

log = logging.getLogger("rtwhisper.engine")

DEVICES: tuple[str, ...] = ("auto", "cuda", "cpu")
COMPUTE_TYPES: tuple[str, ...] = (
    "auto", "default", "int8", "int8_float16", "int8_float32", "int8_bfloat16",
    "int16", "float16", "bfloat16", "float32",
)
CUDA_PACKAGES = "nvidia-cublas-cu12"
"""What ``rtwhisper[cuda]`` installs: the CUDA 12 cuBLAS that CTranslate2's wheels open."""

_CUBLAS_FILES = ("libcublasLt.so.12", "libcublas.so.12")  # Lt first: libcublas needs it
_preloaded: list[str] | None = None


class CudaUnavailableError(ConfigError):
    """``device="cuda"`` was asked for, and the GPU cannot run this model; the message says why."""


def cuda_device_count() -> int:
    """GPUs CTranslate2 sees (0 without a driver or without a CUDA build)."""
    import ctranslate2

    try:
        return int(ctranslate2.get_cuda_device_count())
    except Exception:  # a CPU-only build or a broken driver: no GPU
        return 0


def _wheel_library_dirs() -> list[Path]:
    """The ``lib`` folders of NVIDIA's CUDA 12 wheels, where installed."""
    dirs = []
    for package in ("nvidia.cublas", "nvidia.cuda_runtime"):
        try:
            spec = importlib.util.find_spec(package)
        except (ImportError, ValueError):
            spec = None
        if spec is not None and spec.submodule_search_locations:
            for location in spec.submodule_search_locations:
                if (Path(location) / "lib").is_dir():
                    dirs.append(Path(location) / "lib")
    return dirs


def preload_cuda_libraries() -> list[str]:
    """Load cuBLAS 12 from the ``nvidia-cublas-cu12`` wheel, if installed; return what was loaded.

    Idempotent. Loading with ``RTLD_GLOBAL`` registers the library under its name, so that
    CTranslate2's later ``dlopen("libcublas.so.12")`` finds it without ``LD_LIBRARY_PATH``.
    """
    global _preloaded
    if _preloaded is not None:
        return _preloaded
    loaded = []
    for folder in _wheel_library_dirs():
        for name in _CUBLAS_FILES:
            path = folder / name
            if path.is_file():
                try:
                    ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
                    loaded.append(str(path))
                except OSError as exc:  # a wheel for another architecture, say
                    log.warning("could not load %s: %s", path, exc)
    _preloaded = loaded
    return loaded


def cuda_error_hint(error: BaseException) -> str:
    """A sentence that turns a CUDA failure into what to do about it."""
    text = str(error)
    if "cublas" in text.lower():
        return (f"{text.strip()}: CTranslate2's wheels need the CUDA 12 cuBLAS; "
                f"pip install 'rtwhisper[cuda]' (installs {CUDA_PACKAGES}), or use device='cpu'")
    if "driver" in text.lower():
        return f"{text.strip()}: the NVIDIA driver is missing or too old for CUDA 12; use device='cpu'"
    return f"{text.strip()}; use device='cpu'"


def probe_cuda(model: Any, n_mels: int) -> None:
    """Run one tiny encode on a freshly loaded model; raises what CUDA raises if it cannot run."""
    import ctranslate2

    features = ctranslate2.StorageView.from_array(np.zeros((1, n_mels, 200), dtype=np.float32))
    model.encode(features)


def resolve_compute_type(compute_type: str, device: str) -> str:
    """``"auto"`` → float16 on CUDA, int8 on CPU (faster-whisper's README recommendations)."""
    if compute_type not in COMPUTE_TYPES:
        raise ConfigError(f"compute_type must be one of {', '.join(COMPUTE_TYPES)}, got {compute_type!r}")
    if compute_type != "auto":
        return compute_type
    return "float16" if device == "cuda" else "int8"


def check_device(device: str) -> None:
    if device not in DEVICES:
        raise ConfigError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")


def runs_on_cpu(device: str) -> bool:
    """Whether an engine for ``device`` decodes on the CPU (``auto`` without a visible GPU)."""
    return device == "cpu" or (device == "auto" and cuda_device_count() == 0)
