"""End of speech → final and → end of turn, as a voice agent sees them (``rtwhisper.bench.turns``).

    python benchmarks/turns.py ../shared/audio --out benchmarks/results/turns-cpu2

For each model (``tiny.en`` and ``base`` by default) a real ``rtwhisper serve`` and one real-time
client per protocol — ``/v1/listen`` with ``endpointing=300``, ``/v2/listen`` (Flux) with its
default thresholds and ``eager_eot_threshold=0.5``, and the native WebSocket with a silence-only
0.3 s rule — each sending the shared English clips one after another with 1.5 s of silence
between them. Reports, per protocol, the time from each clip's last word (offline word
timeline) to its final words and to the end of its turn (p50 / p95, Pipecat's STT benchmark
figures), the false cut-ins and the missed ends. Writes results.json and results.md (about 20
minutes on 2 cores). Pipecat's own services: ``benchmarks/pipecat_agent.py``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

from rtwhisper.bench.simulate import environment
from rtwhisper.bench.turns import PROTOCOLS, turn_lines, turns_run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="the shared audio folder (with manifest.jsonl)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--models", default="tiny.en,base")
    parser.add_argument("--protocols", default=",".join(PROTOCOLS))
    parser.add_argument("--limit", type=int, default=None, help="the first N clips only")
    args = parser.parse_args()
    rows = []
    for model in args.models.split(","):
        rows += turns_run(args.folder, model, tuple(args.protocols.split(",")), limit=args.limit)
    cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    report = {"environment": environment("cpu", "int8"), "lscpu": cpu, "rows": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    (args.out / "results.md").write_text("\n".join(["# End of speech → final and end of turn", "",
                                                    *turn_lines(rows), ""]), encoding="utf-8")
    print("\n".join(turn_lines(rows)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
