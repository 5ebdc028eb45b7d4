"""The engine's log-mel: faster-whisper's values, and no core left busy after it (``engine.features``)."""

from __future__ import annotations

import functools
import math
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from faster_whisper.feature_extractor import FeatureExtractor

from conftest import load_wav
from rtwhisper.bench.realtime import stat_cpu_s
from rtwhisper.engine.features import log_mel
from rtwhisper.samples import sample_path


@functools.cache
def _speech() -> dict[str, np.ndarray]:
    from rtwhisper.audio import read_wav16

    jfk = read_wav16(sample_path())
    assert jfk is not None
    return {"jfk": jfk, "korean": load_wav("ko/zeroth_104_003_0019.wav")}


@pytest.mark.parametrize("n_mels", [80, 128])
def test_log_mel_is_faster_whispers_on_one_blas_thread_whatever_the_process_asks(n_mels: int) -> None:
    """A projection 1e-7 off changes streamed words (the module docstring): equality, not closeness.

    The values are faster-whisper's extractor's, with numpy's BLAS on one thread, whatever the
    process's BLAS threads. Its threaded product rounds the same on some CPUs (2 Intel Xeon
    cores) and up to 1.2e-7 off on others (2 AMD EPYC cores: OpenBLAS's Zen kernel splits the
    sum), so faster-whisper alone gives each machine's thread count its own features.
    """
    from threadpoolctl import threadpool_limits

    extractor = FeatureExtractor(feature_size=n_mels)
    for name, audio in _speech().items():
        for samples in (len(audio), 8 * 16000, 12345, 400, 1):
            clip = audio[:samples]
            ours = log_mel(extractor, clip)
            assert ours.dtype == np.float32 and ours.shape == (n_mels, samples // 160 + 1), name
            with threadpool_limits(limits=1, user_api="blas"):
                assert np.array_equal(ours, extractor(clip)), (name, samples)
            with threadpool_limits(limits=2, user_api="blas"):
                assert np.array_equal(log_mel(extractor, clip), ours), (name, samples)
                assert np.abs(extractor(clip) - ours).max() <= 2.5e-7, (name, samples)
    # speech is not silence: the values span Whisper's range, so equality above is not 0 == 0
    full = log_mel(FeatureExtractor(), _speech()["jfk"])
    assert full.max() == pytest.approx(full.min() + 2.0, abs=0.05) and full.std() > 0.2


def _other_threads_cpu_s() -> float:
    me = str(threading.get_native_id())
    seconds = (stat_cpu_s(Path("/proc/self/task") / tid / "stat") for tid in os.listdir("/proc/self/task") if tid != me)
    return sum(s for s in seconds if not math.isnan(s))  # NaN: the thread ended


def _cpu_of_others_during(compute) -> float:
    time.sleep(0.5)  # any earlier BLAS call's helper threads have stopped spinning
    before = _other_threads_cpu_s()
    for _ in range(10):
        compute()
        time.sleep(0.02)  # the gap between two updates, shortened
    return _other_threads_cpu_s() - before


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads per-thread CPU time from /proc")
def test_log_mel_leaves_no_thread_busy_beside_the_decoder() -> None:
    """numpy's OpenBLAS splits a matmul this size over the cores and its threads then spin
    ~0.1 s; CTranslate2 decodes on those cores right after the features."""
    extractor = FeatureExtractor()
    audio = _speech()["jfk"][: 8 * 16000]
    ours = _cpu_of_others_during(lambda: log_mel(extractor, audio))
    blas = _cpu_of_others_during(lambda: extractor(audio))  # BLAS on every core: for the message
    assert ours <= 0.03, f"other threads used {ours:.2f} s of CPU around 10 log-mels (a BLAS matmul: {blas:.2f} s)"
