"""Soak test (outside CI): stream a long time through one processor; report memory, cost and loops.

    python benchmarks/soak.py ../shared/audio --minutes 60 --out benchmarks/results/soak-cpu2.json

The shared set's English and Korean recordings, with 2 s of silence between them, are fed in
0.1 s blocks, over and over, to one ``RealtimeWhisperProcessor`` (as a live stream that never
ends), as fast as recognition goes. Every simulated minute the script records the resident
memory, compute seconds per audio minute, and whether the finals hold a repetition loop (the
same 3-word phrase three times in a row, Whisper's hallucination pattern). At the end it
checks that the finals cover every sample fed. Exit status 1 if RSS grew by more than
``--max-growth-mb`` after the first minute, a loop was found, or samples went missing.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from rtwhisper import RealtimeWhisperProcessor
from rtwhisper.bench.data import load_audio, load_manifest
from rtwhisper.metrics import normalize_text


def rss_mb() -> float:
    """Current resident set size (Linux /proc), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def loops(text: str, n: int = 3, times: int = 3) -> list[str]:
    """Phrases of ``n`` words repeated ``times`` times in a row."""
    words = normalize_text(text).split()
    found = []
    for i in range(len(words) - n * times + 1):
        phrase = words[i:i + n]
        if all(words[i + k * n:i + (k + 1) * n] == phrase for k in range(1, times)):
            found.append(" ".join(phrase))
    return sorted(set(found))


def programme(folder: Path) -> tuple[np.ndarray, str]:
    """The shared recordings (not the long joined files) with 2 s of silence after each."""
    parts, languages = [], set()
    for entry in load_manifest(folder):
        if entry.get("long") or entry.get("synthetic"):
            continue
        parts += [load_audio(folder / entry["path"]), np.zeros(32000, dtype=np.float32)]
        languages.add(entry["lang"])
    return np.concatenate(parts), "ko" if languages == {"ko"} else ("en" if languages == {"en"} else "")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--minutes", type=float, default=60.0, help="audio minutes to stream (default 60)")
    parser.add_argument("--model", default="base")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--max-growth-mb", type=float, default=50.0)
    args = parser.parse_args()

    audio, _ = programme(args.folder)
    proc = RealtimeWhisperProcessor(model_name=args.model, device="cpu")  # language detected per stream
    block = 1600
    total = int(args.minutes * 60 * 16000)
    fed = 0
    finals: list[Any] = []
    samples: list[dict[str, Any]] = []
    next_report = 60 * 16000
    started = time.perf_counter()
    last_compute = 0.0
    while fed < total:
        offset = fed % len(audio)
        piece = audio[offset:offset + min(block, total - fed)]
        proc.feed(piece)
        fed += len(piece)
        finals += [e for e in proc.results() if e.is_final]
        if fed >= next_report:
            text = " ".join(e.text for e in finals[-200:])
            sample = {"audio_min": fed / 16000 / 60, "rss_mb": round(rss_mb(), 1),
                      "compute_s_per_audio_min": round(proc.compute_s - last_compute, 2),
                      "loops": loops(text), "wall_s": round(time.perf_counter() - started, 1)}
            last_compute = proc.compute_s
            samples.append(sample)
            print(json.dumps(sample), file=sys.stderr, flush=True)
            next_report += 60 * 16000
    finals += [e for e in proc.finish() if e.is_final]
    covered = finals[-1].end_s if finals else 0.0
    all_loops = loops(" ".join(e.text for e in finals))
    growth = samples[-1]["rss_mb"] - samples[0]["rss_mb"] if samples else 0.0
    report = {"model": args.model, "audio_min": fed / 16000 / 60, "samples": samples,
              "rss_growth_mb_after_first_minute": round(growth, 1), "loops": all_loops,
              "finals_cover_s": covered, "fed_s": fed / 16000, "compute_s": proc.compute_s,
              "wall_s": time.perf_counter() - started}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    per_min = proc.compute_s / max(report["audio_min"], 1e-9)
    print(f"{report['audio_min']:.1f} audio min: RSS {samples[0]['rss_mb'] if samples else 0:.0f} → "
          f"{samples[-1]['rss_mb'] if samples else 0:.0f} MiB, compute {per_min:.1f} s per audio min, "
          f"loops {all_loops or 'none'}, finals cover {covered:.1f} of {fed / 16000:.1f} s")
    ok = growth <= args.max_growth_mb and not all_loops and abs(covered - fed / 16000) < 1e-3
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
