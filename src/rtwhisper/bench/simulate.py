"""Benchmarks: accuracy, latency, cost, capacity and seams of streaming, against offline.

Run on any folder with a ``manifest.jsonl`` (``path`` relative to it, ``lang``, ``text``,
``duration_s``, optional ``long``/``synthetic``)::

    rtwhisper bench ../shared/audio --out benchmarks/results/latest

Latency is computation-aware, as in whisper_streaming's simulation (Macháček et al. 2023):
a virtual clock advances with the audio, which is made available at real-time pace, and
with the measured compute time of each update, during which no new audio is taken in. A
word's *final latency* is the clock when it was first emitted as final minus its end time
in the audio; its *partial latency* uses the first partial that contained it. The
computation-unaware figures (infinitely fast compute) are the lower bound the streaming
policy itself imposes.
"""

from __future__ import annotations

import gc
import os
import platform
import resource
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..engine import Hypothesis, WhisperEngine, device_cpu_layout, streaming_cpu_threads
from ..engine.layout import cpu_name, default_workers
from ..events import TranscriptEvent, Word
from ..models import resolve_model
from ..processor import RealtimeWhisperProcessor
from .configs import BenchConfig, default_configs
from .data import load_audio, load_manifest
from .scoring import FileResult, _mean, error_rate, seam_errors, summarize

BLOCK_S = 0.1

GRID_PHASE_S = BLOCK_S
"""Grid phases for the accuracy figure: phase k streams the file with k × 0.1 s of digital
silence before it, on the unaware clock (no timing in it, so the same words on any machine).

Why a mean over phases: a greedy int8 decoder flips close tokens, and a flipped token moves
every later commit, prefix and window, so one run's WER is one draw. Log-mels 1e-7 apart
streamed the shared English set at 3.29 and 4.25 % (``docs/benchmarks.md``). Where the update
grid falls against the speech is what a live stream cannot choose either (when the speaker
starts); the five phases of a 0.5 s update on 0.1 s blocks are all of them."""


def simulate(make: Callable[[], RealtimeWhisperProcessor], audio: np.ndarray, *, aware: bool
             ) -> tuple[list[tuple[float, TranscriptEvent]], float]:
    """Stream ``audio`` in real time on a virtual clock; return (clock, event) pairs and compute seconds.

    Aware: each update's measured compute advances the clock, and audio that arrived in the
    meantime is fed before the next update. Unaware: compute is free; the clock is the audio.
    """
    proc = make()
    duration = len(audio) / 16000
    block = int(BLOCK_S * 16000)
    clock, fed = 0.0, 0
    timeline: list[tuple[float, TranscriptEvent]] = []
    while fed < len(audio):
        available = min(len(audio), int(clock * 16000) if aware else fed + block)
        if available <= fed:  # nothing new has arrived: wait for the next block
            clock = (fed + block) / 16000
            continue
        for i in range(fed, available, block):
            proc.feed(audio[i:min(i + block, available)])
        fed = available
        if not aware:
            clock = fed / 16000
        started = time.perf_counter()
        events = proc.results()
        spent = time.perf_counter() - started
        if aware:
            clock += spent
        timeline += [(clock, e) for e in events]
    started = time.perf_counter()
    events = proc.finish()
    clock = max(clock, duration) + ((time.perf_counter() - started) if aware else 0.0)
    timeline += [(clock, e) for e in events]
    return timeline, proc.compute_s


def simulate_served(make: Callable[[], RealtimeWhisperProcessor], audio: np.ndarray, *, workers: int
                    ) -> tuple[list[tuple[float, TranscriptEvent]], float]:
    """Like :func:`simulate` (computation-aware), but driven as the server drives a lone stream.

    The server's :class:`~rtwhisper.scheduling.Scheduler` runs ``workers`` engine calls
    at once: with more workers than streams a lone stream's next update goes to a free worker
    while the one before it still runs (``next_request(ahead=True)``), and its updates come
    every ``spare_chunk_duration`` (``spare=True``). Here the decodes run one after another,
    each timed, and the virtual clock places each on the worker that took it (the engine
    should have the threads of one server worker: :meth:`Bench.served_engine`); hypotheses
    are applied in the order of the requests, as the scheduler applies them. The stream's
    end is one ``finish()`` after the audio, as with :func:`simulate`.
    """
    proc = make()
    duration = len(audio) / 16000
    block = int(BLOCK_S * 16000)
    spare = workers > 1
    clock, fed, compute = 0.0, 0, 0.0
    free_at = [0.0] * workers
    flight: list[tuple[float, Hypothesis]] = []  # (clock when back, hypothesis), in request order
    timeline: list[tuple[float, TranscriptEvent]] = []
    while True:
        # Whole samples up to the clock: a block's arrival time times 16000 can fall a hair
        # under its sample count, and the clock would then wait for that block forever.
        available = min(len(audio), int(clock * 16000 + 1e-6))
        for i in range(fed, available, block):
            proc.feed(audio[i:min(i + block, available)])
        fed = max(fed, available)
        while flight and flight[0][0] <= clock + 1e-9:
            timeline += [(clock, e) for e in proc.apply(flight.pop(0)[1])]
        for w in range(workers):
            if free_at[w] > clock + 1e-9:
                continue
            request = proc.next_request(ahead=bool(flight), spare=spare)
            if request is None:
                break
            started = time.perf_counter()
            hypothesis = proc.engine.transcribe_batch([request])[0]
            spent = time.perf_counter() - started
            compute += spent
            free_at[w] = clock + spent
            flight.append((clock + spent, hypothesis))
        timeline += [(clock, e) for e in proc.take_events()]
        if fed >= len(audio) and not flight:
            break
        due = [flight[0][0]] if flight else []
        due += [t for t in free_at if t > clock + 1e-9]
        if fed < len(audio):
            due.append((fed // block + 1) * block / 16000)
        clock = max(clock, min(due))
    started = time.perf_counter()
    events = proc.finish()
    spent = time.perf_counter() - started
    clock = max(clock, duration) + spent
    timeline += [(clock, e) for e in events]
    return timeline, compute + spent


RANDOM_SEED = 1


class Bench:
    """Runs configurations over a manifest and collects every figure."""

    def __init__(self, folder: Path, *, device: str = "cpu", compute_type: str = "auto",
                 progress: Callable[[str], None] | None = None) -> None:
        self.folder = folder
        self.entries = load_manifest(folder)
        self.device = device
        self.compute_type = compute_type
        self.progress = progress or (lambda message: None)
        self.engines: dict[str, WhisperEngine] = {}
        self.served_engines: dict[str, tuple[WhisperEngine, int]] = {}
        self.load_s: dict[str, float] = {}
        self.audio: dict[str, np.ndarray] = {}
        self.offline: dict[tuple[str, int, str | None, str, str], tuple[str, float]] = {}
        self.plain_models: dict[str, Any] = {}
        self.timelines: dict[tuple[str, str, str], list[Word]] = {}

    def engine(self, model_name: str) -> WhisperEngine:
        if model_name not in self.engines:
            started = time.perf_counter()
            # Decodes as a lone stream's do, in the library and on one server worker.
            path = resolve_model(model_name)
            self.engines[model_name] = WhisperEngine(
                path, device=self.device, compute_type=self.compute_type,
                cpu_threads=streaming_cpu_threads(path, self.compute_type, self.device))
            self.load_s[model_name] = time.perf_counter() - started
        return self.engines[model_name]

    def served_engine(self, model_name: str) -> tuple[WhisperEngine, int]:
        """An engine with the threads of one of the server's workers, and how many workers it has.

        As ``rtwhisper serve`` lays decodes out on this machine when told neither workers nor
        threads (:func:`~rtwhisper.engine.layout.cpu_layout` on a CPU; one worker on a GPU).
        """
        if model_name not in self.served_engines:
            engine = self.engine(model_name)
            path = resolve_model(model_name)
            layout = device_cpu_layout(path, self.compute_type, self.device)
            workers = layout.workers if layout is not None else default_workers(self.device)
            if layout is not None and layout.threads != layout.library_threads:  # the library engine's
                engine = WhisperEngine(path, device=self.device, compute_type=self.compute_type,
                                       cpu_threads=layout.threads)
            self.served_engines[model_name] = (engine, workers)
        return self.served_engines[model_name]

    def entries_for(self, config: BenchConfig, *, include_long: bool) -> list[dict[str, Any]]:
        engine = self.engine(config.model_name)
        chosen = []
        for e in self.entries:
            if e.get("long") and not include_long:
                continue
            if config.language and e["lang"] != config.language:
                continue
            if not engine.multilingual and e["lang"] != "en":
                continue
            chosen.append(e)
        return chosen

    def _audio(self, rel: str) -> np.ndarray:
        if rel not in self.audio:
            self.audio[rel] = load_audio(self.folder / rel)
        return self.audio[rel]

    def offline_text(self, model_name: str, beam_size: int, entry: dict[str, Any], task: str = "transcribe",
                     language: str | None = None) -> tuple[str, float]:
        """The same model's offline transcription of the whole file (plain faster-whisper, 30 s windows)."""
        language = language or (entry["lang"] if self.engine(model_name).multilingual else "en")
        key = (model_name, beam_size, language, task, entry["path"])
        if key not in self.offline:
            model = self._plain_model(model_name)
            started = time.perf_counter()
            segments, _ = model.transcribe(self._audio(entry["path"]), language=language, task=task,
                                           beam_size=beam_size, vad_filter=True)
            text = " ".join(s.text.strip() for s in segments)
            self.offline[key] = (text, time.perf_counter() - started)
        return self.offline[key]

    def _plain_model(self, model_name: str) -> Any:
        from faster_whisper import WhisperModel

        if model_name not in self.plain_models:
            self.plain_models[model_name] = WhisperModel(
                resolve_model(model_name), device=self.engine(model_name).device,
                compute_type=self.engine(model_name).compute_type)
        return self.plain_models[model_name]

    def run_config(self, config: BenchConfig, *, include_long: bool, unaware: bool = True,
                   grid_phases: int = 1, served: bool = False) -> dict[str, Any]:
        """Stream every chosen file: computation-aware, then ``grid_phases`` unaware runs (phase 0's
        latencies are the unaware column; every phase's error goes into the grid accuracy), and
        with ``served`` computation-aware as the server drives a lone stream (:func:`simulate_served`)."""
        results = []
        for entry in self.entries_for(config, include_long=include_long):
            self.progress(f"{config.name}: {entry['path']}")
            audio = self._audio(entry["path"])
            language = self.language(config, entry)
            timeline, compute_s = simulate(self.processors(config, entry), audio, aware=True)
            text = " ".join(e.text for _, e in timeline if e.is_final and e.text)
            offline, _ = self.offline_text(config.model_name, config.beam_size, entry, config.task, language)
            reference = entry["text"]
            if config.task == "translate":
                off_err = st_err = float("nan")
            else:
                off_err, st_err = error_rate(entry["lang"], reference, offline), error_rate(entry["lang"], reference,
                                                                                            text)
            duplicated, lost = seam_errors(offline, text)
            final, partial = self.latencies(config.model_name, entry, language, timeline, len(audio) / 16000)
            result = FileResult(
                entry["path"], entry["lang"], len(audio) / 16000, off_err, st_err, st_err - off_err,
                final, partial, [], compute_s, duplicated, lost, text, offline)
            if served:
                engine, workers = self.served_engine(config.model_name)
                served_timeline, _ = simulate_served(self.processors(config, entry, engine), audio, workers=workers)
                result.served_final_latencies_s, result.served_partial_latencies_s = self.latencies(
                    config.model_name, entry, language, served_timeline, len(audio) / 16000)
            for phase in range(grid_phases if unaware else 0):
                error, timeline_u = self.grid_run(config, entry, phase)
                result.grid_errors.append(error)
                if phase == 0:
                    result.unaware_final_latencies_s = self.latencies(config.model_name, entry, language,
                                                                      timeline_u, len(audio) / 16000)[0]
            results.append(result)
        return summarize(config, results, self.load_s.get(config.model_name, 0.0))

    def language(self, config: BenchConfig, entry: dict[str, Any]) -> str:
        """The language ``config`` streams ``entry`` in: its own, else the file's (English on an English-only model)."""
        return config.language or (entry["lang"] if self.engine(config.model_name).multilingual else "en")

    def processors(self, config: BenchConfig, entry: dict[str, Any], engine: WhisperEngine | None = None
                   ) -> Callable[[], RealtimeWhisperProcessor]:
        """A fresh processor for each run of ``entry`` under ``config`` (on ``engine``, else the model's)."""
        engine, language = engine or self.engine(config.model_name), self.language(config, entry)
        return lambda: RealtimeWhisperProcessor(engine=engine, options=config.options.replace(language=language))

    def grid_run(self, config: BenchConfig, entry: dict[str, Any], phase: int
                 ) -> tuple[float, list[tuple[float, TranscriptEvent]]]:
        """One unaware run of ``entry`` with ``phase`` × :data:`GRID_PHASE_S` of silence before it:
        (error of its final text, its timeline; phase 0's is on the file's own clock)."""
        lead = np.zeros(round(phase * GRID_PHASE_S * 16000), dtype=np.float32)
        timeline, _ = simulate(self.processors(config, entry), np.concatenate([lead, self._audio(entry["path"])]),
                               aware=False)
        text = " ".join(e.text for _, e in timeline if e.is_final and e.text)
        error = error_rate(entry["lang"], entry["text"], text) if config.task != "translate" else float("nan")
        return error, timeline

    def word_timeline(self, model_name: str, entry: dict[str, Any], language: str) -> list[Word]:
        """Word end times from one offline run (beam 5, word timestamps, no VAD): latency's reference clock."""
        from .realtime import offline_timeline

        key = (model_name, entry["path"], language)
        if key not in self.timelines:
            self.timelines[key] = offline_timeline(self.engine(model_name).whisper_model, self._audio(entry["path"]),
                                                   language)
        return self.timelines[key]

    def latencies(self, model_name: str, entry: dict[str, Any], language: str,
                  timeline: list[tuple[float, TranscriptEvent]], duration_s: float) -> tuple[list[float], list[float]]:
        """(final, partial) latency of every word, against the offline word timeline (``../shared/MEASURING.md``)."""
        from .realtime import score_stream

        record = {"messages": [(clock, event.to_dict()) for clock, event in timeline], "last_frame_s": duration_s}
        scored = score_stream(record, self.word_timeline(model_name, entry, language), None)
        return scored["final_latencies_s"], scored["partial_latencies_s"]

    def offline_config(self, model_name: str, beam_size: int) -> dict[str, Any]:
        rows = []
        for entry in self.entries_for(BenchConfig.of("offline", model_name, 2, 0), include_long=True):
            self.progress(f"offline {model_name} beam {beam_size}: {entry['path']}")
            text, seconds = self.offline_text(model_name, beam_size, entry)
            rows.append({"path": entry["path"], "lang": entry["lang"], "duration_s": entry["duration_s"],
                         "error": error_rate(entry["lang"], entry["text"], text), "compute_s": seconds})
        audio_s = sum(r["duration_s"] for r in rows)
        return {"name": f"offline:{model_name}:beam{beam_size}", "model": model_name, "beam_size": beam_size,
                "files": rows, "rtf": sum(r["compute_s"] for r in rows) / max(audio_s, 1e-9),
                "wer_en": _mean([r["error"] for r in rows if r["lang"] == "en"]),
                "cer_ko": _mean([r["error"] for r in rows if r["lang"] == "ko"])}

    def memory_per_stream(self, model_name: str, streams: int = 4, seconds: float = 20.0) -> dict[str, float]:
        """Peak RSS now, and the extra RSS each added live stream costs."""
        engine = self.engine(model_name)
        audio = next(self._audio(e["path"]) for e in self.entries if e.get("long")) if any(
            e.get("long") for e in self.entries) else self._audio(self.entries[0]["path"])
        audio = audio[: int(seconds * 16000)]
        gc.collect()
        before = _rss_mb()
        procs = [RealtimeWhisperProcessor(engine=engine, language="en") for _ in range(streams)]
        for p in procs:
            p.feed(audio)
            p.results()
        after = _rss_mb()
        return {"rss_before_mb": before, "rss_after_mb": after, "extra_mb_per_stream": (after - before) / streams,
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _rss_mb() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def environment(device: str, compute_type: str) -> dict[str, Any]:
    import ctranslate2
    import faster_whisper

    from .. import __version__

    return {"cpu": cpu_name(), "cores": os.cpu_count(), "python": sys.version.split()[0],
            "platform": platform.platform(),
            "rtwhisper": __version__, "faster_whisper": faster_whisper.__version__,
            "ctranslate2": ctranslate2.__version__, "numpy": np.__version__, "device": device,
            "compute_type": compute_type, "ct2_cuda_devices": ctranslate2.get_cuda_device_count(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}


def run_benchmark(folder: Path, out: Path, *, configs: Sequence[BenchConfig] | None = None, device: str = "cpu",
                  compute_type: str = "auto", quick: bool = False, include_long: str = "main",
                  grid_phases: int = 5, capacity: bool = True, realtime: bool = True, slow_cpu: bool = False,
                  progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run every configuration over ``folder`` and write ``results.json``, ``results.md`` and plots to ``out``.

    ``include_long``: ``"all"`` runs long files for every configuration, ``"main"`` only for the
    first (the long files dominate the run time on a CPU), ``"none"`` never. ``grid_phases``:
    the first configuration's unaware runs (:data:`GRID_PHASE_S`), the accuracy figure with its
    spread; the others run one. ``slow_cpu``: the real-time runs again at half speed
    (:class:`~rtwhisper.bench.slowdown.BusyCores`), reported beside the others.
    """
    import ctranslate2

    from ..models import installed_models

    # The offline baseline is plain faster-whisper, whose temperature fallback samples. Its
    # worker threads seed their generators from this on first use, so a run's fixed call
    # sequence gives the same samples every run (rtwhisper's own engine does not sample).
    ctranslate2.set_random_seed(RANDOM_SEED)
    started = time.perf_counter()
    bench = Bench(folder, device=device, compute_type=compute_type, progress=progress)
    available = sorted(installed_models())
    configs_given = configs is not None
    configs = list(configs) if configs is not None else default_configs(available, quick=quick)
    streaming = [bench.run_config(c, include_long=include_long == "all" or (include_long == "main" and i == 0),
                                  grid_phases=grid_phases if i == 0 else 1, served=i == 0)
                 for i, c in enumerate(configs)]
    models = sorted({c.model_name for c in configs})
    offline = [bench.offline_config(m, b) for m in models for b in (1, 5)]
    report: dict[str, Any] = {
        "set": str(folder), "environment": environment(bench.engine(configs[0].model_name).device,
                                                       bench.engine(configs[0].model_name).compute_type),
        "streaming": streaming, "offline": offline, "model_load_s": bench.load_s,
        "memory": bench.memory_per_stream(configs[0].model_name),
    }
    if realtime:
        from .realtime import realtime_models, realtime_section

        chosen = models if configs_given else realtime_models(available)  # ``--model``: that one only
        report["realtime"] = realtime_section(folder, bench.entries, chosen, progress=bench.progress,
                                              capacity=capacity, batching_engine=bench.engine(configs[0].model_name),
                                              slow=slow_cpu)
    report["wall_s"] = time.perf_counter() - started
    from .report import write_report

    write_report(report, out)
    return report


