"""The latency knobs against each other on the English clips, virtual clock only.

    python benchmarks/sweep.py ../shared/audio --out benchmarks/results/sweep-cpu2

Each configuration streams every English clip of the manifest on the virtual clock that
advances with each update's measured compute (and, for the "unaware" column, with the audio
alone), scored against the same model offline: the update step (0.5 s default, 0.4 s, 0.3 s),
agreement alone (``commit_probability=None``: no word final on one sure hypothesis), and 0.25 s
updates agreeing with the hypothesis that heard 0.5 s less (``agreement_span_s``). Writes
results.json, results.md and the plots (WER penalty against final p50:
``penalty_vs_latency.png``). About 25 minutes on 2 cores. ``rtwhisper bench`` runs a wider
sweep (presets, endpoint pauses, real-time runs).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rtwhisper.bench import BenchConfig, run_benchmark

CONFIGS = [
    BenchConfig.of("sweep base 0.5s (low_latency)", "base", 0.5, 0.2, language="en"),
    BenchConfig.of("sweep base 0.4s", "base", 0.4, 0.2, language="en"),
    BenchConfig.of("sweep base 0.3s", "base", 0.3, 0.2, language="en"),
    BenchConfig.of("sweep base 0.5s agreement only", "base", 0.5, 0.2, language="en", commit_probability=None),
    BenchConfig.of("sweep base 0.25s agreeing over 0.5s", "base", 0.25, 0.2, language="en", agreement_span_s=0.5),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", help="folder with manifest.jsonl")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    run_benchmark(Path(args.folder), Path(args.out), configs=CONFIGS, realtime=False, include_long="none",
                  grid_phases=1, capacity=False,
                  progress=lambda message: print("[bench]", message, file=sys.stderr, flush=True))


if __name__ == "__main__":
    main()
