"""Stream configurations side by side in real time: one real server per run, real-time clients.

    python benchmarks/realtime_configs.py --model base --seconds 45 --streams 1,16 --device cuda \
        --config 'default={"chunk_duration": 0.5}' \
        --config 'span={"chunk_duration": 0.25, "agreement_span_s": 0.5}' --out OUT_DIR

For each stream count and each ``--config`` (a WebSocket config message's keys), a fresh
``rtwhisper serve`` and that many clients sending the long LJ file's first ``--seconds`` at
real-time pace (``../shared/MEASURING.md``); latency against one offline word timeline of the
same audio, computed once (the reference its WER is against). Writes ``configs.json`` (with
each stream's final text) after every run (a run cut short keeps what
it measured) and prints one line per run. ``benchmarks/results/gpu-h200/agreement_span.json``
came from it.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from rtwhisper.bench.data import load_audio
from rtwhisper.bench.realtime import offline_timeline, realtime_run
from rtwhisper.models import resolve_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="base", help="a model name or CTranslate2 folder")
    parser.add_argument("--audio", default="../shared/audio/en/long_lj001_0001-0016.wav")
    parser.add_argument("--seconds", type=float, default=45.0)
    parser.add_argument("--streams", default="1", help="comma-separated stream counts")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--config", action="append", required=True, metavar="NAME=JSON")
    parser.add_argument("--server-args", default="--max-connections 64 --max-batch 32")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    wav, out = Path(args.audio), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    configs = [(spec.split("=", 1)[0], json.loads(spec.split("=", 1)[1])) for spec in args.config]
    timeline = offline_timeline(resolve_model(args.model), load_audio(wav)[: int(args.seconds * 16000)], "en")
    report: list[dict[str, Any]] = []
    for streams in (int(n) for n in args.streams.split(",")):
        for name, config in configs:
            started = time.perf_counter()
            r = realtime_run(args.model, wav, "", "en", streams=streams, seconds=args.seconds, device=args.device,
                             stagger_s=0.1, server_args=args.server_args.split(), config=config, timeline=timeline)
            final, partial = r["final_latency_s"], r["partial_latency_s"]
            worst = max((w for w in r["wer"] if w is not None), default=None)
            report.append({"run": f"{name} x{streams}", "config": config, "streams": streams, "final": final,
                           "partial_p50": partial["p50"], "worst_wer": worst, "wers": r["wer"],
                           "texts": [s["text"] for s in r["per_stream"]],
                           "server_cpu_s": r["server_cpu_s"], "wall_s": time.perf_counter() - started})
            print(f"{name} x{streams}: final p50/p90/max {final['p50']:.2f}/{final['p90']:.2f}/{final['max']:.2f} "
                  f"partial p50 {partial['p50']:.2f} worst WER {worst} server CPU {r['server_cpu_s']:.0f} s",
                  flush=True)
            (out / "configs.json").write_text(json.dumps(report, indent=1, default=str))


if __name__ == "__main__":
    main()
