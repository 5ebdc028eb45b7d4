"""Same words before and after a change: every shared file's finals, dumped or compared.

    # at the commit before a change (its src/ first on the path):
    git worktree add /tmp/before HEAD
    PYTHONPATH=/tmp/before/src python benchmarks/same_words.py ../shared/audio --write /tmp/before.json
    # after it:
    python benchmarks/same_words.py ../shared/audio --against /tmp/before.json

A refactoring that means to change no behaviour (issue #41) must give the same finals, word for
word and to the millisecond, for every shared file at three grid phases (the file 0, 0.1 and
0.2 s late) through the presets. The processor is driven as a library user drives it: 0.1 s
blocks, ``results()`` after each, then ``finish()``. No decision depends on a clock there, so a
run is exact on one machine (not across CPUs: int8 kernels round differently). Each file runs
in a process of its own with one decode thread, one process per core.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

BLOCK_S = 0.1
PHASE_S = 0.1

# (preset, model, which files): the presets that decode differently (beam, step, commit rule).
RUNS = (
    ("low_latency", "base", "all"),
    ("korean", "base", "ko"),
    ("high_accuracy", "base", "en-short"),
    ("meeting", "base", "en-short"),
)


def drive(processor: Any, audio: Any, phase: int) -> list[Any]:
    """Every event of ``audio`` (``phase`` × 0.1 s late) fed in 0.1 s blocks, ``results()`` after each, then
    ``finish()``: the library as a user drives it."""
    import numpy as np

    audio = np.concatenate([np.zeros(round(phase * PHASE_S * 16000), dtype=np.float32), audio])
    block = round(BLOCK_S * 16000)
    events = []
    for start in range(0, audio.size, block):
        processor.feed(audio[start:start + block])
        events += processor.results()
    return events + processor.finish()


def _job(args: tuple[str, str, str, int]) -> dict[str, Any]:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from rtwhisper.bench.simulate import load_audio
    from rtwhisper.processor import RealtimeWhisperProcessor

    preset, model, path, phase = args
    processor = RealtimeWhisperProcessor.from_preset(preset, model_name=model, cpu_threads=1)
    events = drive(processor, load_audio(Path(path)), phase)
    finals = [{"text": e.text, "start_s": round(e.start_s, 3), "end_s": round(e.end_s, 3),
               "end_of_utterance": e.end_of_utterance,
               "words": [[w.text, round(w.start_s, 3), round(w.end_s, 3)] for w in e.words]}
              for e in events if e.is_final]
    return {"key": f"{preset}|{model}|{Path(path).parent.name}/{Path(path).name}|{phase}", "finals": finals}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--write", type=Path, help="dump the finals here")
    parser.add_argument("--against", type=Path, help="compare with a dump; exit 1 on any difference")
    parser.add_argument("--phases", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--only", help="run only the presets named here (comma-separated)")
    args = parser.parse_args()
    entries = [json.loads(line) for line in (args.folder / "manifest.jsonl").read_text().splitlines() if line.strip()]
    jobs = []
    for preset, model, which in RUNS:
        if args.only and preset not in args.only.split(","):
            continue
        for entry in entries:
            if which == "ko" and entry["lang"] != "ko":
                continue
            if which == "en-short" and (entry["lang"] != "en" or entry["duration_s"] > 30):
                continue
            for phase in range(args.phases):
                jobs.append((preset, model, str(args.folder / entry["path"]), phase))
    jobs.sort(key=lambda j: -Path(j[2]).stat().st_size)  # the long files first: the pool ends together
    results: dict[str, Any] = {}
    with ProcessPoolExecutor(args.jobs) as pool:
        for done, result in enumerate(pool.map(_job, jobs), 1):
            results[result["key"]] = result["finals"]
            print(f"[{done}/{len(jobs)}] {result['key']}: "
                  f"{' '.join(f['text'] for f in result['finals'] if f['text'])[:80]}", file=sys.stderr)
    if args.write:
        args.write.write_text(json.dumps(results, ensure_ascii=False, indent=0, sort_keys=True))
    if args.against:
        before = json.loads(args.against.read_text())
        keys = sorted(set(before) & set(results))
        differ = [k for k in keys if before[k] != results[k]]
        for key in differ:
            old = " ".join(f["text"] for f in before[key] if f["text"])
            new = " ".join(f["text"] for f in results[key] if f["text"])
            print(f"DIFFERS {key}\n  before: {old}\n  after:  {new}" if old != new else
                  f"DIFFERS {key} (same text; times or final boundaries differ)")
        print(f"{len(keys) - len(differ)} of {len(keys)} runs give identical finals "
              f"({len(set(results) - set(before))} new, {len(set(before) - set(results))} missing)")
        return 1 if differ or set(before) - set(results) else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
