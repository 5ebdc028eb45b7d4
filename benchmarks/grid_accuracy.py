"""The accuracy verdict alone: a configuration's WER/CER penalty over grid phases, in parallel.

    python benchmarks/grid_accuracy.py ../shared/audio --out benchmarks/results/grid-cpu2

Every file of the manifest (long ones included) streams on the unaware clock in each grid
phase (``rtwhisper.bench.simulate.GRID_PHASE_S``: the file 0, 0.1, … s late), scored against
the same model offline, as ``rtwhisper bench`` scores its first configuration. No run is timed,
so the words are the same however busy the machine (not across CPUs, whose int8 kernels and
BLAS round differently) and the files can share the cores: one process per core, one decode
thread each. ``rtwhisper bench`` gives the same figure with the latencies,
one process; this script is for when only the accuracy is wanted (about 30 minutes on 2 AMD
EPYC cores for 5 phases of the shared set).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

_BENCH: Any = None


def _worker_init(folder: str) -> None:
    os.environ["OMP_NUM_THREADS"] = "1"  # before CTranslate2 loads: the offline baseline on one thread too
    import ctranslate2

    from rtwhisper.bench.simulate import RANDOM_SEED, Bench

    ctranslate2.set_random_seed(RANDOM_SEED)
    global _BENCH
    _BENCH = Bench(Path(folder))


def _file(args: tuple[Any, dict[str, Any], int]) -> dict[str, Any]:
    from rtwhisper.bench.scoring import error_rate

    config, entry, phases = args
    bench = _BENCH
    offline, _ = bench.offline_text(config.model_name, config.beam_size, entry, config.task,
                                    bench.language(config, entry))
    errors = [bench.grid_run(config, entry, phase)[0] for phase in range(phases)]
    return {"entry": entry, "offline_error": error_rate(entry["lang"], entry["text"], offline), "grid_errors": errors}


def main() -> int:
    from rtwhisper.bench.configs import BenchConfig
    from rtwhisper.bench.data import load_manifest
    from rtwhisper.bench.scoring import FileResult, summarize
    from rtwhisper.bench.simulate import environment

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--model", default="base")
    parser.add_argument("--chunk", type=float, default=0.5)
    parser.add_argument("--overlap", type=float, default=0.2)
    parser.add_argument("--phases", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    config = BenchConfig.of(f"{args.model} {args.chunk:g}s/{args.overlap:g}s", args.model, args.chunk, args.overlap)
    entries = sorted(load_manifest(args.folder), key=lambda e: -e["duration_s"])  # longest first: even shares
    started = time.perf_counter()
    rows = []
    with ProcessPoolExecutor(args.jobs, initializer=_worker_init, initargs=(str(args.folder),)) as pool:
        for row in pool.map(_file, [(config, e, args.phases) for e in entries]):
            print(f"[grid] {row['entry']['path']}: {[round(x, 3) for x in row['grid_errors']]}", file=sys.stderr,
                  flush=True)
            rows.append(row)
    results = [FileResult(r["entry"]["path"], r["entry"]["lang"], r["entry"]["duration_s"], r["offline_error"],
                          r["grid_errors"][0], r["grid_errors"][0] - r["offline_error"], grid_errors=r["grid_errors"])
               for r in rows]
    summary = summarize(config, results, 0.0)
    report = {"set": str(args.folder), "environment": environment("cpu", "int8"), "streaming": summary,
              "wall_s": time.perf_counter() - started}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(report, indent=1, default=float) + "\n", encoding="utf-8")
    lines = ["# Accuracy over grid phases", "",
             f"Set: `{args.folder}`. Configuration {config.name} (beam {config.beam_size}), {args.phases} phases, "
             f"every file; machine {report['environment']['cpu']}, {report['environment']['cores']} cores; "
             f"{report['environment']['date']}; wall time {report['wall_s']:.0f} s.", "",
             "| set | offline % | streaming % (mean over phases) | penalty points, mean ± sd | by phase |",
             "| --- | --- | --- | --- | --- |"]
    sets = (("English WER", "grid_en", "offline_wer_en"), ("Korean CER", "grid_ko", "offline_cer_ko"))
    for lang, key, offline in sets:
        g = summary[key]
        if not g["phases"]:
            continue
        sd = f" ± {g['penalty_sd'] * 100:.2f}" if g["penalty_sd"] is not None else ""
        lines.append(f"| {lang} | {summary[offline] * 100:.2f} | {g['error'] * 100:.2f} | "
                     f"{g['penalty'] * 100:+.2f}{sd} | {', '.join(f'{x * 100:+.2f}' for x in g['penalty_by_phase'])} |")
    (args.out / "results.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
