"""Check the CUDA path (float16) end to end and time it: stream a clip, then a long file.

    python benchmarks/gpu_check.py MODEL_DIR AUDIO_DIR

Prints the device and compute type actually used, the streamed text of jfk.wav, and for
the long file the real-time factor of streaming (2 s chunks) and of offline transcription
with the same loaded model. Used on a lent GPU machine; CI never runs it.
"""

from __future__ import annotations

import sys
import time
import wave
from pathlib import Path

import numpy as np

from rtwhisper import FasterWhisperEngine, RealtimeWhisperProcessor
from rtwhisper.metrics import wer

JFK = "And so my fellow Americans, ask not what your country can do for you, ask what you can do for your country."


def load(path: Path) -> np.ndarray:
    with wave.open(str(path)) as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32768.0


def stream(engine: FasterWhisperEngine, audio: np.ndarray, chunk: float, overlap: float) -> tuple[str, float]:
    proc = RealtimeWhisperProcessor(engine=engine, chunk_duration=chunk, overlap_duration=overlap, language="en")
    started = time.perf_counter()
    finals = []
    for i in range(0, len(audio), 1600):
        proc.feed(audio[i:i + 1600])
        finals += [e.text for e in proc.results() if e.is_final]
    finals += [e.text for e in proc.finish() if e.is_final]
    return " ".join(t for t in finals if t), time.perf_counter() - started


def main() -> None:
    model_dir, audio_dir = Path(sys.argv[1]), Path(sys.argv[2])
    started = time.perf_counter()
    engine = FasterWhisperEngine(str(model_dir), device="auto", compute_type="auto")
    print(f"device={engine.device} compute_type={engine.compute_type} load_s={time.perf_counter() - started:.2f}")
    jfk = load(audio_dir / "jfk.wav")
    text, elapsed = stream(engine, jfk, 2.0, 0.2)
    print(f"jfk streamed: {text!r} WER={wer(JFK, text):.3f} wall_s={elapsed:.2f}")
    long = load(audio_dir / "long_lj001_0001-0016.wav")
    duration = len(long) / 16000
    for chunk, overlap in ((2.0, 0.2), (5.0, 0.5)):
        text, elapsed = stream(engine, long, chunk, overlap)
        print(f"long streamed chunk={chunk}: RTF={elapsed / duration:.4f} ({duration / elapsed:.0f}x real time) "
              f"words={len(text.split())}")
    started = time.perf_counter()
    segments, _ = engine.model.transcribe(long, language="en", beam_size=1)
    offline = " ".join(s.text for s in segments)
    elapsed = time.perf_counter() - started
    print(f"long offline: RTF={elapsed / duration:.4f} words={len(offline.split())}")


if __name__ == "__main__":
    main()
