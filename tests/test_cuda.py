"""The CUDA path's failure modes, checked on a CPU-only machine (the GPU run is benchmarks/gpu_check.py)."""

from __future__ import annotations

import logging
import shutil
import sys
from pathlib import Path

import pytest

import rtwhisper.engine.ctranslate2 as ct2_engine
from conftest import load_wav
from rtwhisper.engine import CudaUnavailableError, WhisperEngine, cuda
from rtwhisper.models import resolve_model


@pytest.fixture
def pretend_gpu(monkeypatch):
    """CTranslate2 reports one GPU, as on a machine whose CUDA stack cannot run it."""
    monkeypatch.setattr(ct2_engine, "cuda_device_count", lambda: 1)


def test_auto_falls_back_to_cpu_with_one_warning(pretend_gpu, caplog):
    with caplog.at_level(logging.WARNING, logger="rtwhisper.engine"):
        engine = WhisperEngine(resolve_model("tiny.en"), device="auto")
    assert engine.device == "cpu" and engine.compute_type == "int8"
    assert engine.fallback_reason and "device='cpu'" in engine.fallback_reason
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "running on the CPU" in warnings[0].getMessage()
    # and it recognises speech on the CPU
    words = engine.transcribe(load_wav("en/jfk.wav")).words
    assert "country" in "".join(w.text for w in words).lower()


def test_cuda_asked_for_is_a_clear_error(pretend_gpu):
    with pytest.raises(CudaUnavailableError) as info:
        WhisperEngine(resolve_model("tiny.en"), device="cuda")
    assert "CUDA cannot run" in str(info.value) and "device='cpu'" in str(info.value)


def test_missing_cublas_names_the_package_to_install():
    hint = cuda.cuda_error_hint(RuntimeError("Library libcublas.so.12 is not found or cannot be loaded"))
    assert "rtwhisper[cuda]" in hint and "nvidia-cublas-cu12" in hint
    assert "driver" in cuda.cuda_error_hint(RuntimeError("CUDA driver version is insufficient"))


def test_cublas_is_preloaded_from_the_nvidia_wheel(tmp_path, monkeypatch):
    """A wheel laid out as nvidia-cublas-cu12 installs it: its libraries are loaded by name."""
    real = next(p for p in map(Path, ("/lib/x86_64-linux-gnu/libz.so.1", "/usr/lib/x86_64-linux-gnu/libz.so.1",
                                       "/lib64/libz.so.1")) if p.exists())
    lib = tmp_path / "nvidia" / "cublas" / "lib"
    lib.mkdir(parents=True)
    for name in ("libcublasLt.so.12", "libcublas.so.12"):
        shutil.copy(real, lib / name)  # any loadable library stands in for cuBLAS
    (tmp_path / "nvidia" / "__init__.py").write_text("")
    (tmp_path / "nvidia" / "cublas" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in [m for m in sys.modules if m == "nvidia" or m.startswith("nvidia.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(cuda, "_preloaded", None)
    loaded = cuda.preload_cuda_libraries()
    assert [Path(p).name for p in loaded] == ["libcublasLt.so.12", "libcublas.so.12"]
    assert cuda.preload_cuda_libraries() is loaded  # once per process
