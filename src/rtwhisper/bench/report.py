"""The benchmark's report: ``results.json``, a Markdown table and plots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np


def _fmt(value: float | None, scale: float = 1.0, digits: int = 2) -> str:
    return "–" if value is None or value != value else f"{value * scale:.{digits}f}"


def _grid(grid: dict[str, Any] | None) -> str:
    """A grid-phase penalty in points: ``mean ± sd (N)``, or the one phase's."""
    if not grid or not grid["phases"] or grid["penalty"] is None:
        return "–"
    spread = f" ± {grid['penalty_sd'] * 100:.2f}" if grid["penalty_sd"] is not None else ""
    return f"{grid['penalty'] * 100:+.2f}{spread} ({grid['phases']})"


def _served(s: dict[str, Any]) -> str:
    """The served columns (``simulate_served``): final p50/p90, partial p50; – where not run."""
    f, p = s.get("served_final_latency_s"), s.get("served_partial_latency_s")
    if not f or f["p50"] is None or not p:
        return "–"
    return f"{_fmt(f['p50'])}/{_fmt(f['p90'])}, {_fmt(p['p50'])}"


def markdown(report: dict[str, Any]) -> str:
    env = report["environment"]
    lines = [
        "# Benchmark results", "",
        f"Set: `{report['set']}`. Machine: {env['cpu']}, {env['cores']} cores, device {env['device']} "
        f"({env['compute_type']}); faster-whisper {env['faster_whisper']}, CTranslate2 {env['ctranslate2']}; "
        f"{env['date']}. Wall time {report['wall_s']:.0f} s.", "",
        "## Streaming", "",
        "| configuration | model | chunk/overlap | beam | WER en % | offline % | penalty | CER ko % | penalty | "
        "grid penalty en | grid penalty ko | final p50/p90/max s | partial p50 s | unaware final p50/p90 s | "
        "served final p50/p90, partial p50 s | RTF | dup | lost |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for s in report["streaming"]:
        c, f, p, u = s["config"], s["final_latency_s"], s["partial_latency_s"], s["unaware_final_latency_s"]
        lines.append(
            f"| {s['name']} | {c['model_name']} | {c['chunk_duration']:g}/{c['overlap_duration']:g} | "
            f"{c['beam_size']} | {_fmt(s['wer_en'], 100)} | {_fmt(s['offline_wer_en'], 100)} | "
            f"{_fmt(s['penalty_en'], 100)} | {_fmt(s['cer_ko'], 100)} | {_fmt(s['penalty_ko'], 100)} | "
            f"{_grid(s.get('grid_en'))} | {_grid(s.get('grid_ko'))} | "
            f"{_fmt(f['p50'])}/{_fmt(f['p90'])}/{_fmt(f['max'])} | {_fmt(p['p50'])} | "
            f"{_fmt(u['p50'])}/{_fmt(u['p90'])} | {_served(s)} | {_fmt(s['rtf'], digits=3)} | "
            f"{s['duplicated_words']} | {s['lost_words']} |")
    notes = [f"- {s['name']}: {s['config']['note']}" for s in report["streaming"] if s["config"]["note"]]
    if notes:
        lines += ["", *notes]
    lines += ["", "## Offline baseline (same models, whole files, faster-whisper with VAD)", "",
              "| configuration | WER en % | CER ko % | RTF |", "| --- | --- | --- | --- |"]
    for o in report["offline"]:
        lines.append(f"| {o['name']} | {_fmt(o['wer_en'], 100)} | {_fmt(o['cer_ko'], 100)} | "
                     f"{_fmt(o['rtf'], digits=3)} |")
    m = report["memory"]
    lines += ["", "## Cost", "",
              "- Model load: " + ", ".join(f"{k} {v:.2f} s" for k, v in report["model_load_s"].items()),
              f"- Peak RSS {m['peak_rss_mb']:.0f} MiB; each added live stream {m['extra_mb_per_stream']:.2f} MiB"]
    if report.get("realtime"):
        lines += realtime_lines(report["realtime"])
    lines += ["", "Columns: WER/CER of the final transcript against the reference (normalizer: "
              "`rtwhisper.metrics`); penalty = streaming − offline of the same model and beam; latencies per word, "
              "computation-aware on a virtual clock, one decode at a time as the library's `results()` runs them; "
              "unaware = infinitely fast compute; served = computation-aware as `rtwhisper serve` drives a lone "
              "stream (its workers and threads on this machine, the next update decoded ahead on a free worker, "
              "`spare_chunk_duration` steps while a worker is spare); grid penalty = the penalty on "
              "the unaware clock (the same words on any machine), mean ± sd over N grid phases (the file k × 0.1 s "
              "late), the low-noise accuracy figure; RTF = compute s per audio "
              "s; dup/lost = words duplicated or dropped against the offline transcript. Latencies are against word "
              "end times from one offline run of the same model (beam 5, word timestamps), as in the real-time runs.",
              ""]
    return "\n".join(lines)


def realtime_lines(rt: dict[str, Any]) -> list[str]:
    """The real-time section (a real server, real clients) as Markdown lines; the same again at half speed."""
    lines = ["", "## Real time: a real `rtwhisper serve`, real clients at real-time pace", "",
             "Measured as `../shared/MEASURING.md` says: 0.1 s frames on a drift-free clock, word end times "
             "from an offline run, latency at the client.", "", *_realtime_tables(rt)]
    slow = rt.get("slow")
    if slow:
        lines += ["", f"### The same machine at half speed ({slow.get('busy_processes')} busy process(es), one per "
                  "core: `rtwhisper bench --slow-cpu`)", "", *_realtime_tables(slow)]
    return lines


def _realtime_tables(rt: dict[str, Any]) -> list[str]:
    from .realtime import capacity_streams

    lines: list[str] = []
    runs = rt.get("single", []) + rt.get("capacity", []) + rt.get("overload", [])
    if runs:
        lines += ["| model | file | streams | WER % | final p50/p90/max s | partial p50 s | last final after audio s "
                  "| server CPU s |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for run in runs:
        f, p = run["final_latency_s"], run["partial_latency_s"]
        wers = [w for w in run["wer"] if w is not None]
        lasts = [x for x in run["last_final_after_audio_s"] if x is not None]
        lines.append(
            f"| {run['model']} | {Path(run['file']).name} ({run['audio_s']:.0f} s) | {run['streams']} | "
            f"{_fmt(max(wers) if wers else None, 100)} | {_fmt(f['p50'])}/{_fmt(f['p90'])}/{_fmt(f['max'])} | "
            f"{_fmt(p['p50'])} | {_fmt(max(lasts) if lasts else None)} | {_fmt(run['server_cpu_s'], digits=1)} |")
    if rt.get("pipe"):
        lines += ["", "Pipe mode: the same frames at the same pace written to `rtwhisper transcribe - --format jsonl` "
                  "(the command line's live mode), each line timed as it arrives; CPU s: that process's.", "",
                  "| model | file | WER % | final p50/p90/max s | partial p50 s | last final after audio s | CPU s |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
    for run in rt.get("pipe", []):
        f, p = run["final_latency_s"], run["partial_latency_s"]
        lines.append(f"| {run['model']} | {Path(run['file']).name} ({run['audio_s']:.0f} s) | "
                     f"{_fmt(run['wer'][0], 100)} | {_fmt(f['p50'])}/{_fmt(f['p90'])}/{_fmt(f['max'])} | "
                     f"{_fmt(p['p50'])} | {_fmt(run['last_final_after_audio_s'][0])} | "
                     f"{_fmt(run['server_cpu_s'], digits=1)} |")
    if rt.get("pipe"):
        lines.append("")
    for e in rt.get("end_of_utterance", []):
        lines.append(f"- End of utterance, {e['model']} on {Path(e['file']).name}: speech end → final "
                     f"{_fmt(e['speech_end_to_final_s'])} s with {e['silence_after_s']:g} s of silence sent; "
                     f"a client that stops sending: last frame → final {_fmt(e['stopped_last_frame_to_final_s'])} s"
                     f" (every word final: {e['stopped_every_word_final']})")
    for model in sorted({r["model"] for r in rt.get("capacity", [])}):
        lines.append(f"- Capacity, {model}: **{capacity_streams(rt['capacity'], model)}** real-time stream(s) "
                     "with pooled final-latency p90 ≤ 2 s (WER column: the worst stream)")
    for run in rt.get("overload", []):
        p90 = _fmt(run["final_latency_s"]["p90"])
        lines.append(f"- Twice that, {run['model']} × {run['streams']}: final p90 {p90} s over the streams "
                     f"served; {len(run['refused'])} refused or closed with a reason")
    for b in rt.get("batching", []):
        lines.append(f"- {b['windows']} windows in one batch: {b['batched_s']:.2f} s against "
                     f"{b['one_by_one_s']:.2f} s one by one (x{_fmt(b['ratio'])}); same words in "
                     f"{b['same_words']}/{b['windows']}")
    return lines


def write_report(report: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(report, indent=1, ensure_ascii=False, default=float) + "\n",
                                      encoding="utf-8")
    (out / "results.md").write_text(markdown(report), encoding="utf-8")
    plot(report, out)


def plot(report: dict[str, Any], out: Path) -> None:
    """latency_cdf.png (final latency per configuration) and penalty_vs_latency.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for s in report["streaming"]:
        values = sorted(x for f in s["files"] for x in f["final_latencies_s"])
        if values:
            ax.plot(values, np.arange(1, len(values) + 1) / len(values), label=s["name"])
    ax.set_xlabel("final latency per word (s, computation-aware)")
    ax.set_ylabel("fraction of words")
    ax.set_title("Final-latency CDF")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "latency_cdf.png", dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(8, 5))
    placed: list[tuple[float, float]] = []
    for s in report["streaming"]:
        x, y = s["final_latency_s"]["p50"], s["penalty_en"]
        if x is not None and y is not None:
            ax.scatter([x], [y * 100])
            # beside its point; stepped down a line for each point already labelled close by, so
            # configurations that land on one point stay legible
            near = sum(abs(x - px) < 0.05 and abs(y * 100 - py) < 0.3 for px, py in placed)
            ax.annotate(s["name"], (x, y * 100), fontsize=7, xytext=(4, 4 - 9 * near), textcoords="offset points")
            placed.append((x, y * 100))
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xlabel("final latency p50 (s)")
    ax.set_ylabel("WER penalty, streaming − offline (points)")
    ax.set_title("Accuracy cost against latency (English)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "penalty_vs_latency.png", dpi=110)
    plt.close(fig)
