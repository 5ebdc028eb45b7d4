"""Keyterms: recall of the terms they name against none, and what they cost on the other clips.

    python benchmarks/keyterms.py ../shared/audio --out benchmarks/results/keyterms-amd-cpu2

Every English clip under 30 s streams through ``low_latency`` (``base``) in 0.1 s blocks at three
grid phases, once without keyterms and once with ``KEYTERMS`` — words of the shared set that
``base`` spells otherwise without them (a name, a compound, a British spelling; found by
comparing its finals with the references). Recall: of the clips whose reference holds a term, the
share whose final text holds it as written. Cost: WER on the clips that hold none of them (a
keyterm written where it was not said, or words lost to it, show there). One process per core,
one decode thread each; no decision depends on a clock, so the words are exact on one machine.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from same_words import drive  # the library as a user drives it (this folder is on the path)

KEYTERMS = ("Gutenberg", "woodcutters", "counselled")


def _job(args: tuple[str, tuple[str, ...], int]) -> dict[str, Any]:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from rtwhisper import RealtimeWhisperProcessor
    from rtwhisper.bench.data import load_audio

    path, keyterms, phase = args
    processor = RealtimeWhisperProcessor.from_preset("low_latency", model_name="base", cpu_threads=1,
                                                     keyterms=keyterms)
    events = drive(processor, load_audio(Path(path)), phase)
    return {"path": path, "keyterms": list(keyterms), "phase": phase,
            "text": " ".join(e.text for e in events if e.is_final and e.text)}


def _holds(text: str, term: str) -> bool:
    return re.search(rf"\b{re.escape(term.lower())}\b", text.lower()) is not None


def main() -> int:
    from rtwhisper.bench.scoring import error_rate

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--phases", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    entries = [json.loads(line) for line in (args.folder / "manifest.jsonl").read_text().splitlines() if line.strip()]
    entries = [e for e in entries if e["lang"] == "en" and e["duration_s"] <= 30]
    reference = {str(args.folder / e["path"]): e["text"] for e in entries}
    jobs = [(path, terms, phase) for path in reference for terms in ((), KEYTERMS) for phase in range(args.phases)]
    with ProcessPoolExecutor(args.jobs) as pool:
        runs = list(pool.map(_job, jobs))
    rows = []
    for label, terms in (("none", ()), ("keyterms", KEYTERMS)):
        mine = [r for r in runs if tuple(r["keyterms"]) == terms]
        hits = [(r["path"], t, _holds(r["text"], t)) for r in mine for t in KEYTERMS if _holds(reference[r["path"]], t)]
        others = [r for r in mine if not any(_holds(reference[r["path"]], t) for t in KEYTERMS)]
        def wer(some: list[dict[str, Any]]) -> float:
            return sum(error_rate("en", reference[r["path"]], r["text"]) for r in some) / max(len(some), 1)

        rows.append({"keyterms": label, "recall": sum(h for *_, h in hits) / max(len(hits), 1),
                     "occurrences": len(hits), "wer_other": wer(others), "other_runs": len(others),
                     "wer_all": wer(mine), "missed": sorted({f"{Path(p).name}: {t}" for p, t, h in hits if not h})})
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "keyterms.json").write_text(json.dumps({"keyterms": KEYTERMS, "phases": args.phases, "rows": rows,
                                                        "runs": runs}, indent=1, ensure_ascii=False))
    lines = ["| keyterms | recall of the terms | occurrences | WER, clips without them | WER, all clips |",
             "|---|---|---|---|---|"]
    lines += [f"| {r['keyterms']} | {100 * r['recall']:.0f} % | {r['occurrences']} | {100 * r['wer_other']:.2f} % "
              f"| {100 * r['wer_all']:.2f} % |" for r in rows]
    (args.out / "keyterms.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    for r in rows:
        if r["missed"]:
            print(f"{r['keyterms']}: missed {', '.join(r['missed'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
