"""The real-time part of the benchmark alone, plus whole-file transcription against plain faster-whisper.

    python benchmarks/realtime_run.py ../shared/audio --out benchmarks/results/realtime-cpu2

A real ``rtwhisper serve`` and real-time clients (``../shared/MEASURING.md``): one long stream
per model, end of utterance, capacity per model, batched against one-by-one decoding; then
``rtwhisper transcribe FILE``'s whole-file path against ``faster_whisper.WhisperModel.transcribe``
on the same model, file and options, timed alternately in one process. Writes results.json
and results.md. ``rtwhisper bench`` runs the same real-time section after its virtual-clock
runs; this script is for when only the real-time figures are wanted (about 20 minutes on 2
cores).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from rtwhisper.bench.data import load_audio, load_manifest
from rtwhisper.bench.realtime import realtime_models, realtime_section
from rtwhisper.bench.report import realtime_lines
from rtwhisper.bench.simulate import environment
from rtwhisper.engine import DecodeOptions, shared_engine
from rtwhisper.metrics import wer
from rtwhisper.models import installed_models, resolve_model


def whole_file_against_faster_whisper(folder: Path, entry: dict[str, Any], model: str = "base",
                                      beam_size: int = 5, rounds: int = 2) -> dict[str, Any]:
    """The CLI's whole-file path and plain faster-whisper, same model/file/options, alternately timed."""
    from faster_whisper import WhisperModel

    engine = shared_engine(resolve_model(model), device="cpu")
    plain = WhisperModel(resolve_model(model), device="cpu", compute_type="int8")
    path = folder / entry["path"]
    times: dict[str, list[float]] = {"rtwhisper": [], "faster_whisper": []}
    texts: dict[str, str] = {}
    for _ in range(rounds):
        started = time.perf_counter()
        audio = load_audio(path)  # the CLI decodes the file too
        segments, _, _ = engine.iter_file(audio, DecodeOptions(language="en", beam_size=beam_size, vad=True),
                                          word_timestamps=False, condition_on_previous_text=True)
        texts["rtwhisper"] = " ".join(event.text for event, _ in segments)
        times["rtwhisper"].append(time.perf_counter() - started)
        started = time.perf_counter()
        segs, _ = plain.transcribe(str(path), language="en", beam_size=beam_size, vad_filter=True)
        texts["faster_whisper"] = " ".join(s.text.strip() for s in segs)
        times["faster_whisper"].append(time.perf_counter() - started)
    best = {k: min(v) for k, v in times.items()}
    return {"file": entry["path"], "model": model, "beam_size": beam_size, "seconds": best,
            "ratio": best["rtwhisper"] / best["faster_whisper"],
            "wer": {k: wer(entry["text"], t) for k, t in texts.items()}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--no-capacity", action="store_true")
    parser.add_argument("--slow-cpu", action="store_true", help="the real-time runs again at half speed, beside")
    args = parser.parse_args()
    entries = load_manifest(args.folder)

    def progress(message: str) -> None:
        print(f"[realtime] {message}", file=sys.stderr, flush=True)

    started = time.perf_counter()
    engine = shared_engine(resolve_model("base"), device="cpu")
    report: dict[str, Any] = {"set": str(args.folder), "environment": environment("cpu", "int8")}
    report["realtime"] = realtime_section(args.folder, entries, realtime_models(installed_models()), progress=progress,
                                          capacity=not args.no_capacity, batching_engine=engine,
                                          slow=args.slow_cpu)
    long = next(e for e in entries if e.get("long") and e["lang"] == "en" and "silence" not in e["path"])
    progress("whole-file transcription against faster-whisper")
    report["whole_file"] = whole_file_against_faster_whisper(args.folder, long)
    report["wall_s"] = time.perf_counter() - started
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(report, indent=1, default=float) + "\n", encoding="utf-8")
    w = report["whole_file"]
    env = report["environment"]
    lines = ["# Real-time results", "",
             f"Set: `{report['set']}`. Machine: {env['cpu']}, {env['cores']} cores; CTranslate2 {env['ctranslate2']}; "
             f"{env['date']}. Wall time {report['wall_s']:.0f} s.", *realtime_lines(report["realtime"]), "",
             "## Whole-file transcription (`rtwhisper transcribe FILE`)", "",
             f"{w['file']}, {w['model']}, beam {w['beam_size']}, VAD, best of 2 alternating runs: rtwhisper "
             f"{w['seconds']['rtwhisper']:.1f} s, plain faster-whisper {w['seconds']['faster_whisper']:.1f} s "
             f"(ratio {w['ratio']:.2f}); WER {w['wer']['rtwhisper']:.2%} against {w['wer']['faster_whisper']:.2%}.",
             ""]
    (args.out / "results.md").write_text("\n".join(lines), encoding="utf-8")
    print(f"wrote {args.out}/results.json and results.md ({report['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
