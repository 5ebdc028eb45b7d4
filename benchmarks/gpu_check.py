"""The CUDA path, checked and timed on a lent GPU machine (CI never runs it).

    python benchmarks/gpu_check.py --models tiny.en=DIR base=DIR --audio AUDIO_DIR --out OUT_DIR

For each model, in float16 on the GPU:

1. which device ``device="auto"`` really took (and, if it fell back, why);
2. batched against one-by-one decoding of the same windows, in one run: throughput ratio, and
   whether the words are the same;
3. jfk.wav and the long LJ file streamed (WER, real-time factor);
4. capacity: a real ``rtwhisper serve`` and N real-time WebSocket clients (20 s of speech
   each, started ``--stagger`` apart), pooled final-latency p50/p90 and each stream's WER,
   for growing N, until p90 passes 2 s or streams are refused.

Writes ``gpu_check.json`` to OUT_DIR and prints a summary.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from rtwhisper import RealtimeWhisperProcessor
from rtwhisper.bench.data import load_manifest
from rtwhisper.bench.realtime import batching_ratio, realtime_run
from rtwhisper.engine import WhisperEngine
from rtwhisper.metrics import wer

JFK = "And so my fellow Americans, ask not what your country can do for you, ask what you can do for your country."


def load(path: Path) -> np.ndarray:
    with wave.open(str(path)) as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32768.0


def reference(audio_dir: Path, name: str) -> str | None:
    """The file's transcript from a ``manifest.jsonl`` beside it (as in the shared audio folder), if there is one."""
    if not (audio_dir / "manifest.jsonl").is_file():
        return None
    return next((str(e["text"]) for e in load_manifest(audio_dir) if Path(e["path"]).name == name), None)


def stream(engine: WhisperEngine, audio: np.ndarray) -> tuple[str, float]:
    proc = RealtimeWhisperProcessor(engine=engine, language="en")
    started = time.perf_counter()
    finals = []
    for i in range(0, len(audio), 1600):
        proc.feed(audio[i:i + 1600])
        finals += [e.text for e in proc.results() if e.is_final]
    finals += [e.text for e in proc.finish() if e.is_final]
    return " ".join(t for t in finals if t), time.perf_counter() - started


def batching(engine: WhisperEngine, long: np.ndarray, sizes: list[int]) -> list[dict[str, Any]]:
    """Windows of 6 s from the long file: one batch of B against B single calls (the benchmark's own measure)."""
    rows = []
    for row in batching_ratio(engine, long, tuple(sizes)):
        b, batched_s, single_s, same = row["windows"], row["batched_s"], row["one_by_one_s"], row["same_words"]
        rows.append({"batch": b, "batched_s": batched_s, "one_by_one_s": single_s, "speedup": single_s / batched_s,
                     "windows_per_s": b / batched_s, "same_words": f"{same}/{b}"})
        print(f"  batch {b:3d}: {batched_s * 1000:7.1f} ms vs one by one {single_s * 1000:7.1f} ms "
              f"(x{single_s / batched_s:.1f}), {b / batched_s:6.1f} windows/s, same words {same}/{b}", flush=True)
    return rows


def profile(engine: WhisperEngine, long: np.ndarray, windows: int = 32) -> list[str]:
    """Where one batch of 32 six-second windows spends its time (cProfile, by own time)."""
    import cProfile
    import io
    import pstats

    from rtwhisper.engine import DecodeOptions, DecodeRequest

    requests = [DecodeRequest(long[k * 32000: k * 32000 + 96000], DecodeOptions(language="en"))
                for k in range(windows)]
    engine.transcribe_batch(requests)
    profiler = cProfile.Profile()
    profiler.enable()
    engine.transcribe_batch(requests)
    profiler.disable()
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(8)
    lines = [line for line in text.getvalue().splitlines() if line.strip()][-10:]
    print("\n".join(lines), flush=True)
    return lines


def capacity(name: str, audio_dir: Path, counts: list[int], stagger: float, seconds: float,
             server_args: list[str], device: str, save: Callable[[list[dict[str, Any]]], None]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    wav = audio_dir / "long_lj001_0001-0016.wav"
    for n in counts:
        started = time.perf_counter()
        try:
            r = realtime_run(name, wav, "", "en", streams=n, seconds=seconds, device=device, stagger_s=stagger,
                             server_args=server_args)
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:  # reported, and the report is kept
            rows.append({"streams": n, "error": f"{type(exc).__name__}: {exc}"})
            print(f"  {name} x{n}: {type(exc).__name__}: {exc}", flush=True)
            save(rows)
            break
        f = r["final_latency_s"]
        refused = len(r["refused"])
        worst = max((w for w in r["wer"] if w is not None), default=None)
        worst_stream = max(r["per_stream"], key=lambda s: s["wer"] if s["wer"] is not None else -1.0, default=None)
        rows.append({"worst_stream_text": worst_stream and worst_stream["text"],
                     "worst_stream_close": worst_stream and worst_stream["close"],
                     "streams": n, "final_p50": f["p50"], "final_p90": f["p90"], "final_max": f["max"],
                     "partial_p50": r["partial_latency_s"]["p50"], "worst_wer": worst, "refused": refused,
                     "server_cpu_s": r["server_cpu_s"], "wall_s": time.perf_counter() - started})
        print(f"  {name} x{n}: final p50 {f['p50']} p90 {f['p90']} max {f['max']} partial p50 "
              f"{r['partial_latency_s']['p50']} worst WER {worst} refused {refused} "
              f"server CPU {r['server_cpu_s']:.1f} s", flush=True)
        save(rows)
        if f["p90"] is None or f["p90"] > 2.0 or refused:
            break
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", nargs="+", required=True, help="NAME=DIR")
    parser.add_argument("--audio", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--streams", default="8,16,32,64,128")
    parser.add_argument("--stagger", type=float, default=0.1)
    parser.add_argument("--server-args", default="--max-connections 256 --max-batch 32",
                        help="passed to rtwhisper serve (the CPU defaults cap streams at 16, batches at 8)")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--batches", default="1,2,4,8,16,32")
    parser.add_argument("--device", default="cuda", help="the server's device in the capacity runs")
    parser.add_argument("--skip-capacity", action="store_true")
    args = parser.parse_args()
    audio_dir = Path(args.audio)
    jfk, long = load(audio_dir / "jfk.wav"), load(audio_dir / "long_lj001_0001-0016.wav")
    long_reference = reference(audio_dir, "long_lj001_0001-0016.wav")
    report: dict[str, Any] = {"models": {}}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    def save() -> None:  # after every step: a run cut short by its time limit still reports what it measured
        (out / "gpu_check.json").write_text(json.dumps(report, indent=1, default=str))
    for spec in args.models:
        name, folder = spec.split("=", 1)
        print(f"== {name}", flush=True)
        started = time.perf_counter()
        engine = WhisperEngine(folder, device="auto", compute_type="auto")
        entry: dict[str, Any] = {"device": engine.device, "compute_type": engine.compute_type,
                                 "fallback_reason": engine.fallback_reason,
                                 "load_s": time.perf_counter() - started}
        report["models"][name] = entry
        save()
        print(f"  device={engine.device} compute_type={engine.compute_type} fallback={engine.fallback_reason}",
              flush=True)
        text, elapsed = stream(engine, jfk)
        entry["jfk"] = {"text": text, "wer": wer(JFK, text), "wall_s": elapsed}
        text, elapsed = stream(engine, long)
        entry["long"] = {"words": len(text.split()), "rtf": elapsed / (len(long) / 16000), "text": text,
                         "wer": wer(long_reference, text) if long_reference else None}
        print(f"  jfk WER {entry['jfk']['wer']:.3f}; long streamed RTF {entry['long']['rtf']:.4f}, "
              f"WER {entry['long']['wer']}", flush=True)
        save()
        entry["profile"] = profile(engine, long)
        save()
        entry["batching"] = batching(engine, long, [int(x) for x in args.batches.split(",")])
        save()
        del engine
        if not args.skip_capacity:
            def keep(rows: list[dict[str, Any]], entry: dict[str, Any] = entry) -> None:
                entry["capacity"] = rows
                save()
            capacity(folder, audio_dir, [int(x) for x in args.streams.split(",")], args.stagger, args.seconds,
                     args.server_args.split(), args.device, keep)
    print("done", flush=True)


if __name__ == "__main__":
    main()
