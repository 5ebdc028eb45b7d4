"""Benchmarks: the metrics on fakes, and `rtwhisper bench` end to end on a manifest folder made here."""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
import sys
import time

import pytest

from conftest import AUDIO_DIR
from fakes import TimelineEngine, TimelineVad, ramp
from rtwhisper import RealtimeWhisperProcessor, Word
from rtwhisper.bench import seam_errors, simulate


def test_seam_errors_count_duplicates_and_losses():
    assert seam_errors("ask not what your country", "ask not not what your country") == (1, 0)
    assert seam_errors("ask not what your country", "ask what your country") == (0, 1)
    assert seam_errors("no no no", "no no no") == (0, 0)


def test_the_main_configurations_are_the_servers_default_preset():
    from rtwhisper.bench import BenchConfig
    from rtwhisper.bench.configs import default_configs

    base, tiny = default_configs(["base", "tiny.en"], quick=True)
    preset = BenchConfig.from_preset("low_latency", ["base"]).options
    assert (base.name, base.model_name, tiny.name, tiny.model_name) == ("base 0.5s", "base", "tiny.en 0.5s", "tiny.en")
    assert base.options == tiny.options == preset
    assert preset.chunk_duration == 0.5 and preset.endpoint_max_silence_s == 1.0


def test_simulated_latency_is_computation_aware():
    words = [Word(f" w{i}", 0.2 + 0.5 * i, 0.6 + 0.5 * i) for i in range(10)]  # probability 1.0: sure

    def latencies(**options):
        def make():
            return RealtimeWhisperProcessor(engine=TimelineEngine(words), vad=TimelineVad(words), chunk_duration=1.0,
                                            overlap_duration=0.2, language="en", **options)

        timeline, _ = simulate(make, ramp(6.0), aware=False)
        finals = [(clock, w) for clock, e in timeline if e.is_final for w in e.words]
        assert [w.text.strip() for _, w in finals] == [w.text.strip() for w in words]
        return [clock - w.end_s for clock, w in finals]

    agreed = latencies(commit_probability=None)
    # a word is final once a later window agrees: between one and three chunks after it ends
    assert all(0 <= x <= 3.0 for x in agreed) and max(agreed) >= 1.0
    sure = latencies(commit_probability=0.9)  # a sure word is final in the first window that hears a word after it
    assert all(0 <= x <= 1.0 + 1e-9 for x in sure) and sum(sure) < sum(agreed)


class SlowEngine(TimelineEngine):
    """Takes ``seconds`` of real time over every decode (the served clock times each one)."""

    def __init__(self, words, seconds):
        super().__init__(words)
        self.seconds = seconds

    def transcribe(self, audio, options):
        time.sleep(self.seconds)
        return super().transcribe(audio, options)


def test_the_served_clock_decodes_ahead_on_a_spare_worker():
    from rtwhisper.bench.simulate import simulate_served

    words = [Word(f" w{i}", 0.2 + 0.5 * i, 0.6 + 0.5 * i) for i in range(4)]

    def served(workers, seconds):
        engine = SlowEngine(words, seconds)

        def make():
            return RealtimeWhisperProcessor(engine=engine, vad=TimelineVad(words), chunk_duration=0.5,
                                            overlap_duration=0.2, spare_chunk_duration=0.2, language="en")

        timeline, compute_s = simulate_served(make, ramp(2.5), workers=workers)
        finals = [(clock, w) for clock, e in timeline if e.is_final for w in e.words]
        assert [w.text.strip() for _, w in finals] == [w.text.strip() for w in words]
        assert all(clock >= w.end_s for clock, w in finals)  # nothing final before it was said
        # grid steps: not the closing decodes, nor the windows that hear a pause as it starts
        ends = [end for _, end, options in engine.calls if not options.end_of_stream and not options.paused]
        return [round(b - a, 3) for a, b in itertools.pairwise(ends)], compute_s, len(engine.calls)

    # Two workers: 0.2 s steps although each decode takes 0.3 s (the next one runs beside it).
    steps, compute_s, calls = served(2, 0.3)
    assert steps and min(steps) == pytest.approx(0.2) and steps.count(0.2) >= len(steps) // 2, steps
    assert compute_s == pytest.approx(0.3 * calls, rel=0.2)
    # One worker (a GPU's, or a CPU laid out whole): chunk_duration steps, one decode at a time.
    steps, _, _ = served(1, 0.0)
    assert steps and min(steps) >= 0.5 - 1e-9, steps


def test_the_served_clock_takes_in_every_block_of_a_long_file():
    # 32.3 s × 16000 is a hair under 516800 in floating point: the clock waited for that block forever.
    from rtwhisper.bench.simulate import simulate_served

    words = [Word(f" w{i}", 0.2 + 1.1 * i, 0.6 + 1.1 * i) for i in range(36)]

    def make():
        return RealtimeWhisperProcessor(engine=TimelineEngine(words), vad=TimelineVad(words), chunk_duration=0.5,
                                        overlap_duration=0.2, spare_chunk_duration=0.3, language="en")

    timeline, _ = simulate_served(make, ramp(40.0), workers=2)
    assert " ".join(e.text for _, e in timeline if e.is_final).split() == [w.text.strip() for w in words]
    assert timeline[-1][1].end_s == pytest.approx(40.0)


def test_the_grid_accuracy_is_the_mean_over_phases_with_its_spread():
    from rtwhisper.bench import BenchConfig
    from rtwhisper.bench.scoring import FileResult, summarize

    def row(lang, offline, grid):
        return FileResult("x.wav", lang, 1.0, offline, grid[0], grid[0] - offline, grid_errors=grid)

    rows = [row("en", 0.10, [0.10, 0.20, 0.30]), row("en", 0.00, [0.00, 0.00, 0.06]), row("ko", 0.2, [0.1])]
    s = summarize(BenchConfig.of("c", "base", 0.5, 0.2), rows, 0.0)
    # phase penalties over the English files: 0.0, 0.05, 0.13
    assert s["grid_en"]["penalty_by_phase"] == pytest.approx([0.0, 0.05, 0.13])
    assert s["grid_en"]["penalty"] == pytest.approx(0.06)
    assert s["grid_en"]["penalty_sd"] == pytest.approx(0.0656, abs=1e-4)
    assert s["grid_en"]["error"] == pytest.approx(0.66 / 6)
    assert s["grid_ko"] == {"phases": 1, "penalty_by_phase": [pytest.approx(-0.1)], "error": 0.1,
                            "penalty": pytest.approx(-0.1), "penalty_sd": None}


@pytest.mark.model
def test_bench_command_on_another_manifest_folder(tmp_path):
    folder = tmp_path / "set"
    (folder / "clips").mkdir(parents=True)
    entries = [json.loads(line) for line in (AUDIO_DIR / "manifest.jsonl").read_text().splitlines()]
    chosen = [e for e in entries if e["path"] in ("en/jfk.wav", "en/LJ001-0002.wav", "ko/test_ko.wav")]
    with open(folder / "manifest.jsonl", "w") as manifest:
        for e in chosen:  # a different layout: the set is only an argument
            shutil.copy(AUDIO_DIR / e["path"], folder / "clips" / e["path"].replace("/", "_"))
            manifest.write(json.dumps({**e, "path": "clips/" + e["path"].replace("/", "_")}) + "\n")

    out = tmp_path / "a"  # with the real-time runs: a real server and real clients
    result = subprocess.run([sys.executable, "benchmarks/run.py", str(folder), "--out", str(out), "--model",
                             "base", "--no-capacity", "--grid-phases", "2"], capture_output=True, text=True,
                            timeout=900)
    assert result.returncode == 0, result.stderr
    assert "[bench]" in result.stderr  # progress on stderr
    first = json.loads((out / "results.json").read_text())
    s = first["streaming"][0]
    assert s["wer_en"] == 0.0 and s["offline_wer_en"] == 0.0  # jfk and LJ001-0002 recognised exactly
    assert s["cer_ko"] is not None and s["cer_ko"] < 0.5
    assert 0.5 < s["final_latency_s"]["p50"] < 6 and s["partial_latency_s"]["p50"] <= s["final_latency_s"]["p50"]
    assert s["unaware_final_latency_s"]["p50"] <= s["final_latency_s"]["p50"] + 0.5
    # the accuracy over grid phases: the unaware run with the audio 0 and 0.1 s late
    assert s["grid_en"]["phases"] == 2 and len(s["grid_en"]["penalty_by_phase"]) == 2
    assert s["grid_en"]["error"] <= 0.05 and s["grid_ko"]["error"] < 0.5
    assert all(len(f["grid_errors"]) == 2 for f in s["files"])
    assert 0 < s["rtf"] < 2 and s["duplicated_words"] == 0
    assert {o["name"] for o in first["offline"]} == {"offline:base:beam1", "offline:base:beam5"}
    assert first["environment"]["cores"] and first["environment"]["ctranslate2"]
    md = (out / "results.md").read_text()
    assert "| base 0.5s/0.2s | base | 0.5/0.2 | 1 |" in md and " (2) |" in md
    # real time (no long file in this set: end of utterance on jfk) on the one model asked for
    eou = {e["model"]: e for e in first["realtime"]["end_of_utterance"]}
    assert set(eou) == {"base"}
    for e in eou.values():
        assert e["wer_with_silence"] <= 0.05 and e["stopped_every_word_final"]
        assert 0 < e["speech_end_to_final_s"] < 3 and e["end_of_utterance_flags"] >= 1
    assert "End of utterance, base on en_jfk.wav" in md
    for png in ("latency_cdf.png", "penalty_vs_latency.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_benchmark_server_that_dies_at_start_says_why():
    """The real-time runs start a real ``rtwhisper serve``; one that exits says what it printed."""
    from rtwhisper.bench.realtime import start_server

    with pytest.raises(RuntimeError) as caught:
        start_server("no-such-model", timeout_s=60)
    message = str(caught.value)
    assert "exited with 2" in message
    assert "model 'no-such-model' not found" in message


def test_a_benchmark_server_keeps_its_output_until_stopped():
    from rtwhisper.bench.realtime import start_server

    server = start_server("tiny.en", timeout_s=120)
    try:
        assert server.log is not None and not server.log.closed
    finally:
        server.stop()
    assert server.log.closed and server.process.returncode is not None


def test_serve_no_decode_ahead_reaches_the_scheduler():
    import urllib.request

    from rtwhisper.bench.realtime import start_server

    server = start_server("tiny.en", extra=["--no-decode-ahead"], timeout_s=120)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/health", timeout=10) as response:
            health = json.loads(response.read())
    finally:
        server.stop()
    assert health["decode_ahead"] is False and health["model"] == "tiny.en"


@pytest.mark.model
def test_pipe_mode_in_real_time_is_timed_at_the_client(manifest):
    """jfk written at real-time pace to a real ``rtwhisper transcribe -``: every word final, each
    timed on arrival against the offline word ends (under a second and a half after the word at p50)."""
    from rtwhisper.bench.realtime import pipe_run

    run = pipe_run("base", AUDIO_DIR / "en/jfk.wav", manifest["en/jfk.wav"]["text"], "en")
    assert run["wer"] == [0.0], run["text"]
    assert 0.2 < run["final_latency_s"]["p50"] < 1.5 and run["final_latency_s"]["max"] < 4, run["final_latency_s"]
    assert run["partial_latency_s"]["p50"] <= run["final_latency_s"]["p50"]
    assert 0 <= run["last_final_after_audio_s"][0] < 2 and run["server_cpu_s"] > 0


def test_the_report_has_a_pipe_mode_table():
    from rtwhisper.bench.report import realtime_lines

    run = {"model": "base", "file": "/x/long.wav", "audio_s": 111.0, "wer": [0.0285],
           "final_latency_s": {"p50": 0.97, "p90": 1.38, "max": 4.01}, "partial_latency_s": {"p50": 0.48},
           "last_final_after_audio_s": [0.63], "server_cpu_s": 150.2}
    lines = realtime_lines({"pipe": [run]})
    assert "| base | long.wav (111 s) | 2.85 | 0.97/1.38/4.01 | 0.48 | 0.63 | 150.2 |" in lines


def test_busy_cores_take_the_cpu_while_they_run_and_stop_after():
    """``rtwhisper bench --slow-cpu``'s slower machine: one spinning process per core, all gone after."""
    from pathlib import Path

    from rtwhisper.bench.realtime import stat_cpu_s
    from rtwhisper.bench.slowdown import BusyCores

    with BusyCores(2) as busy:
        assert busy.running == 2
        pids = [p.pid for p in busy._processes]
        time.sleep(1.0)
        spent = [stat_cpu_s(Path(f"/proc/{pid}/stat")) for pid in pids]
        assert all(s >= 0.2 for s in spent), spent  # each spun (a second shared with whatever else runs)
    assert busy.running == 0
    assert all(not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
               for pid in pids)


def test_the_report_shows_the_half_speed_runs_and_twice_the_capacity():
    from rtwhisper.bench.report import realtime_lines

    def run(streams, p90, refused=()):
        return {"model": "base", "file": "/x/long.wav", "audio_s": 60.0, "streams": streams, "wer": [0.02],
                "final_latency_s": {"p50": 0.9, "p90": p90, "max": 3.0}, "partial_latency_s": {"p50": 0.5},
                "last_final_after_audio_s": [0.6], "server_cpu_s": 70.0, "refused": list(refused)}

    normal = {"single": [run(1, 1.4)], "capacity": [run(1, 1.4), run(2, 1.9)], "overload": [run(4, 3.1, ["full"])]}
    slow = {"single": [run(1, 2.2)], "capacity": [run(1, 2.2)], "overload": [run(2, 3.5, ["full"])],
            "busy_processes": 2}
    text = "\n".join(realtime_lines({**normal, "slow": slow}))
    assert "half speed (2 busy process(es)" in text
    assert "- Capacity, base: **2** real-time stream(s)" in text and "- Capacity, base: **0** real-time" in text
    assert "- Twice that, base × 4: final p90 3.10 s over the streams served; 1 refused" in text


def test_turn_scores_time_the_end_of_each_clip_and_count_cut_ins_and_missed_ends():
    from rtwhisper.bench.turns import Clip, score_turns, turn_lines

    clips = [Clip("a.wav", 0.0, 0.5, 2.0), Clip("b.wav", 3.5, 4.0, 6.0)]

    def turn(event, t, *ends):
        return t, {"type": "TurnInfo", "event": event, "words": [{"word": "w", "end": e} for e in ends]}

    messages = [turn("EndOfTurn", 1.3, 0.8, 1.0),  # mid-clip: a false cut-in
                turn("EagerEndOfTurn", 2.3, 1.5, 2.0), turn("EndOfTurn", 2.5, 1.5, 2.0),
                turn("Update", 6.2, 4.5, 6.0)]  # clip b's turn never ends: a missed end
    scores = score_turns("v2", messages, clips)
    assert scores["false_cut_ins"] == 1 and scores["missed_ends"] == 1 and scores["turn_ends"] == 2
    assert scores["speech_end_to_turn_end_s"]["p50"] == pytest.approx(0.5)
    assert scores["speech_end_to_eager_s"]["p50"] == pytest.approx(0.3)
    assert scores["speech_end_to_final_s"]["n"] == 1
    native = [(2.4, {"type": "final", "end_of_utterance": False, "words": [{"end_s": 2.0}]}),
              (2.9, {"type": "final", "end_of_utterance": True, "words": [{"end_s": 2.0}]}),
              (6.4, {"type": "final", "end_of_utterance": True, "words": [{"end_s": 5.9}]})]
    scores = score_turns("native", native, clips)
    assert scores["speech_end_to_final_s"]["p50"] == pytest.approx(0.4)  # the words before the turn's end
    assert scores["speech_end_to_turn_end_s"]["max"] == pytest.approx(0.9) and scores["missed_ends"] == 0
    assert "0.40 / 0.40" in turn_lines([{"model": "base", **scores}])[2]
