"""Compare two benchmark runs: per configuration, the change in error rates, latency and RTF.

    python benchmarks/compare.py benchmarks/results/A/results.json benchmarks/results/B/results.json

Use it to judge a change (run before and after) or the noise between two runs of the same command.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def figures(run: dict) -> dict[str, dict[str, float | None]]:
    out = {}
    for s in run["streaming"]:
        out[s["name"]] = {
            "wer_en": s["wer_en"], "cer_ko": s["cer_ko"],
            "final_p50": s["final_latency_s"]["p50"], "final_p90": s["final_latency_s"]["p90"],
            "partial_p50": s["partial_latency_s"]["p50"], "rtf": s["rtf"],
        }
    return out


def main(a_path: str, b_path: str) -> int:
    a, b = (figures(json.loads(Path(p).read_text())) for p in (a_path, b_path))
    keys = ["wer_en", "cer_ko", "final_p50", "final_p90", "partial_p50", "rtf"]
    print("| configuration | " + " | ".join(f"Δ {k}" for k in keys) + " |")
    print("| --- |" + " --- |" * len(keys))
    for name in a:
        if name not in b:
            continue
        cells = []
        for k in keys:
            x, y = a[name][k], b[name][k]
            cells.append("–" if x is None or y is None else f"{y - x:+.3f}")
        print(f"| {name} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(*sys.argv[1:3]))
