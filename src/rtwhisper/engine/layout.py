"""How decodes share the CPU: engine workers × threads each, measured once per machine and model.

Two layouts compete on a machine with ``cores`` cores (``cores >= 2``):

* **split** — two workers of ``cores // 2`` threads each (CTranslate2 replicas sharing the
  weights): two decodes at once, a lone stream's next update on the spare worker;
* **whole** — one worker of ``cores`` threads: one decode at a time on every core, many
  streams batched into it.

Which wins is a property of the machine, not of rtwhisper, and the two machines this project
was measured on disagree. On a 2-core Intel Xeon (AVX-512, CTranslate2 on Intel MKL) an update
of ``base`` took 328 ms on one thread and 439 ms on two (intra-op threads slow the decoder's
small steps), and two one-thread workers beat one two-thread worker for every load tried. On a
2-core AMD EPYC (AVX2, CTranslate2 on oneDNN) one update took 1.62 s on each of two one-thread
workers at once and 0.96 s on one two-thread worker: a lone real-time ``base`` stream over a
real server had final p50 3.48 s split and 2.62 s whole, four ``tiny.en`` streams 4.86 s and
3.67 s (``docs/benchmarks.md``; measured while numpy's BLAS threads spun after each log-mel:
since the log-mel holds them to one, the same AMD machine decodes ``base`` in 0.45 s each of
two at once and 0.47 s whole, and the probe picks *split* there too). So the layout is
measured: :func:`cpu_layout` decodes the bundled sample as a streaming update (its first
words a forced prefix: :data:`PROBE_PREFIX` says why) both ways (two decodes at once on
*split*, one on *whole*) and keeps *whole* when its decode is no slower
than each of the two at once — a lone stream's update is then at least as quick — and two of
its decodes one after the other take at most
``WHOLE_THROUGHPUT_LOSS`` times the two at once on *split*: many streams need the throughput.
(On the Xeon ``tiny.en`` decoded a little faster whole, 0.12 s against 0.15 s, but two took
1.4–1.7× as long as on two workers: four real-time ``tiny.en`` streams read final p90 3.07 s
whole against 1.69 s split. On the EPYC two whole decodes took 1.09× (``base``) and 1.21×
(``tiny.en``) the two at once.) Those Xeon figures were taken while the log-mel's matmul left
numpy's BLAS threads spinning beside the decodes (:mod:`~rtwhisper.engine.features`); without
them, two ``base`` decodes at once take 0.19 s each, as one alone, against 0.28 s whole, and
``tiny.en`` 0.094 s against 0.155 s: *split* wins for both there. A processor that
runs one decode at a time (the library's ``results()``) compares one decode on ``cores // 2``
threads against one on ``cores``.

The probe's figures are cached (``cpu-layout.json`` in :func:`~rtwhisper.models.cache_dir`),
keyed by CPU, core count, CTranslate2 version, model and compute type, and the layout is
chosen from them on every read: measuring costs a few decodes (about 1 s for ``base`` on the
Xeon and 8 s on the EPYC with the old probe; 11 s, ``tiny.en`` 5 s, on the slower EPYC with
:data:`PROBE_PREFIX` all forced, revision 3), once, and a new rule applies to old figures.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .interface import Engine

if TYPE_CHECKING:
    from .interface import DecodeRequest

log = logging.getLogger("rtwhisper.engine")

PROBE_S = 11.0
"""Seconds of the bundled sample one probe decode hears (all of it): a dense streaming window."""
PROBE_PREFIX = "And so my fellow Americans, ask not what your country can do for you,"
"""The probe window's final words, given as a streaming update gives them: the engine forces
the decoder through the last four (``FORCED_PREFIX_WORDS``, 5 tokens) with the rest as its
prompt, then it reads 9 tokens and aligns all 26.

A streaming update is mostly decoder steps, which threads slow where they speed up the
encoder's large matrices, so a probe without them (revision 2: 8 s, 15 tokens read) favoured
threads the real windows do not. Measured on 2 AMD EPYC cores (``base`` int8, 2026-12-03):
without the prefix one two-thread decode took 0.56–0.68 s against 0.50–0.58 s on one thread
(a coin flip, and the cached figures chose two threads for the library); with the whole
prefix forced (revision 3) 1.23 s against 0.81 s; with its last four words forced (revision
4) 0.55 s against 0.60 s, and 0.69 s each of two at once."""
PROBE_ROUNDS = 2
"""Timed rounds per layout (after one warm-up); the best counts, as timeit's ``min`` does."""
CACHE_FILE = "cpu-layout.json"
WHOLE_THROUGHPUT_LOSS = 1.3
"""How much longer two decodes one after the other on *whole* may take than two at once on
*split* for *whole* to be kept (the module docstring: measured 1.09–1.21 where *whole* served
better, 1.43–1.70 where it halved the streams served)."""
REAL_TIME_UPDATE_S = 0.5
"""The longest server decode of one update (the probe's, :attr:`CpuLayout.update_s`) at which a
lone stream's 0.5 s updates keep its finals within about a second of the words. On 2 AMD EPYC
cores (2026-12-03, one real-time stream of the long LJ file): ``tiny.en`` probes 0.33 s and
reads final p50/p90 0.70–0.72/1.10–1.16 s, partial 0.26–0.28 s; ``base`` 0.69 s and
1.08–1.14/1.74–1.98 s, partial 0.63–0.66 s. With the whole final text forced (probe revision
3) they probed 0.45 and 0.81 s and read 0.84 and 1.49–1.56 s: between them p50 is 1.0 s at
about 0.55–0.6 s. (The probe without its prefix read 0.19 s for ``base`` on 2 Intel Xeon
cores, finals 0.9–1.0 s; its limit was 0.4 s.)"""

PROBE_REVISION = 4
"""Part of the cache key: figures probed by an older engine are measured again. 2: the log-mel
no longer wakes numpy's BLAS threads, which slowed decodes beside it (``engine.features``).
3: the probe decodes with a forced prefix, as streaming updates do (:data:`PROBE_PREFIX`).
4: updates force only their last final words (``FORCED_PREFIX_WORDS``), the rest a prompt."""

_LOCK = threading.Lock()
_PRIME_LOCK = threading.Lock()
_PRIMED = False


@dataclass(frozen=True)
class CpuLayout:
    """Engine workers and threads per worker for decoding on this CPU.

    ``workers`` × ``threads``: the server's engine. ``library_threads``: the threads of a
    processor's engine that decodes one window at a time. ``probe_s``: the probe's seconds
    per decode — ``"split"`` (each of two at once), ``"split_alone"`` (one on the split
    threads) and ``"whole"`` — empty when nothing was measured. ``source``: ``"measured"``,
    ``"cached"`` or ``"rule"`` (one core: nothing to choose).
    """

    workers: int
    threads: int
    library_threads: int
    probe_s: dict[str, float] = field(default_factory=dict)
    source: str = "rule"

    @property
    def update_s(self) -> float | None:
        """Seconds the server's engine takes over one update, as probed (``None``: not measured).

        Each of two at once on *split* (a lone stream's next update runs beside the one in
        flight), one on *whole*.
        """
        if not self.probe_s:
            return None
        return self.probe_s.get("whole" if self.workers == 1 else "split")

    @property
    def real_time(self) -> bool | None:
        """Whether updates are quick enough here for finals about a second after the words
        (:data:`REAL_TIME_UPDATE_S`); ``None``: not measured."""
        update = self.update_s
        return None if update is None else update <= REAL_TIME_UPDATE_S


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity, which containers set)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def choose(cores: int, probe_s: dict[str, float], *, source: str = "measured") -> CpuLayout:
    """The layout the probe's figures call for (the rule in the module docstring)."""
    share = max(1, cores // 2)
    whole = (probe_s["whole"] <= probe_s["split"]
             and 2 * probe_s["whole"] <= WHOLE_THROUGHPUT_LOSS * probe_s["split"])
    library = cores if probe_s["whole"] < probe_s["split_alone"] else share
    return CpuLayout(1 if whole else 2, cores if whole else share, library, dict(probe_s), source)


EngineFactory = Callable[[int, int], Engine]
"""(threads, workers) → an engine of the model to measure, on the CPU."""


def cpu_layout(model_path: str, compute_type: str, make_engine: EngineFactory, *,
               cache: Path | None = None) -> CpuLayout:
    """This machine's layout for ``model_path``: from the cache, else measured with engines from
    ``make_engine`` (and cached).

    ``cache``: the cache file (default ``cpu-layout.json`` in rtwhisper's cache folder).
    """
    from ..models import cache_dir

    cores = available_cores()
    if cores < 2:
        return CpuLayout(1, 1, 1)
    path = cache or cache_dir() / CACHE_FILE
    key = cache_key(model_path, compute_type, cores)
    with _LOCK, _machine_lock(path):  # no other process writes the file while it is held
        entries = _read(path)
        known = entries.get(key)
        if isinstance(known, dict) and isinstance(known.get("probe_s"), dict):
            try:
                return choose(cores, {k: float(v) for k, v in known["probe_s"].items()}, source="cached")
            except (KeyError, TypeError, ValueError):
                pass  # an entry of another shape: measure again
        log.info("rtwhisper: measuring how this CPU decodes %s best (once; cached in %s)", model_path, path)
        layout = choose(cores, probe(make_engine, cores))
        entries[key] = {"probe_s": layout.probe_s, "measured_at": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(entries, indent=1, sort_keys=True), encoding="utf-8")
            tmp.replace(path)
        except OSError as exc:  # a read-only cache costs a probe per process, nothing else
            log.warning("rtwhisper: could not cache the CPU layout in %s: %s", path, exc)
        log.info("rtwhisper: %d worker(s) × %d thread(s) (probe: %s)", layout.workers, layout.threads,
                 {k: round(v, 3) for k, v in layout.probe_s.items()})
        return layout


def probe_request() -> DecodeRequest:
    """The probe's decode: the bundled sample's first ``PROBE_S`` after :data:`PROBE_PREFIX`
    (the words it reads: "ask what you can do for your country.")."""
    from ..audio import SAMPLE_RATE, read_wav16
    from ..samples import sample_path
    from .interface import DecodeOptions, DecodeRequest

    audio = read_wav16(sample_path())
    assert audio is not None, "the bundled sample is 16 kHz mono 16-bit"
    return DecodeRequest(audio[: int(PROBE_S * SAMPLE_RATE)], DecodeOptions(language="en", prefix=PROBE_PREFIX))


def probe(make_engine: EngineFactory, cores: int) -> dict[str, float]:
    """Seconds per :func:`probe_request` decode: split (two at once, and alone) and whole."""
    request = probe_request()
    engine = make_engine

    def split_figures() -> dict[str, float]:
        split = engine(max(1, cores // 2), 2)

        def together() -> None:
            threads = [threading.Thread(target=split.transcribe_batch, args=([request],)) for _ in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()

        return {"split": _best(together), "split_alone": _best(lambda: split.transcribe_batch([request]))}

    out = split_figures()  # its engine is freed before the next one loads
    whole = engine(cores, 1)
    out["whole"] = _best(lambda: whole.transcribe_batch([request]))
    return out


def prime_cpu_threads(model_path: str, compute_type: str) -> None:
    """Before a process's first multi-threaded CPU decode: two one-thread encodes at once on a
    throwaway pair of replicas (once per process).

    Measured on a 2-core AMD EPYC (CTranslate2 4.8.5 on oneDNN and libgomp), not understood: a
    two-thread engine that is the first to decode in its process runs every decode at about
    the speed of one thread (``base``: 1.17 s for 8 s of speech; the encoder's largest matrix
    product 28.7 ms against 14.1 ms); once two single-thread replicas have run at the same time
    in the process, it runs them at two threads' speed (0.77 s), for the life of the process.
    One replica alone, or a two-thread engine used and freed, changes nothing. It costs two
    2 s encodes and a model load (about 0.5 s for ``base`` on that machine).
    """
    global _PRIMED
    with _PRIME_LOCK:
        if _PRIMED:
            return
        _PRIMED = True
        import ctranslate2

        from .cuda import resolve_compute_type

        pair = ctranslate2.models.Whisper(model_path, device="cpu", compute_type=resolve_compute_type(
            compute_type, "cpu"), intra_threads=1, inter_threads=2)
        features = ctranslate2.StorageView.from_array(np.zeros((1, pair.n_mels, 200), dtype=np.float32))
        runs = [threading.Thread(target=pair.encode, args=(features,)) for _ in range(2)]
        for run in runs:
            run.start()
        for run in runs:
            run.join()
        del pair


def _best(run: Any) -> float:
    run()  # warm-up: the first call allocates and packs
    times = []
    for _ in range(PROBE_ROUNDS):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def cache_key(model_path: str, compute_type: str, cores: int) -> str:
    """The cache entry of a probe: what its figures depend on (CPU, cores, CTranslate2, model,
    compute type, and the engine as far as it changes them: :data:`PROBE_REVISION`)."""
    import ctranslate2

    return (f"{cpu_name()}|{cores} cores|ctranslate2 {ctranslate2.__version__}|{model_path}|{compute_type}"
            f"|probe {PROBE_REVISION}")


def cpu_name() -> str:
    """The CPU as its figures depend on it: its name, family, model and vector ISA.

    Clouds name different CPUs alike: two 2-core "AMD EPYC" machines of this project decoded
    ``base`` at 0.69 s (AVX2) and 0.35 s (AVX-512 with VNNI, whose int8 kernels CTranslate2
    uses) per update, so a name alone let one machine's probe and benchmark figures pass for
    the other's.
    """
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return describe_cpu(f.read())
    except OSError:
        import platform

        return platform.processor() or "cpu"


def describe_cpu(cpuinfo: str) -> str:
    """``/proc/cpuinfo``'s first processor as :func:`cpu_name` names it."""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        if not line.strip():
            if fields:
                break  # the first processor is enough: the others are the same CPU
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    name = fields.get("model name", "cpu")
    flags = set(fields.get("flags", "").split())
    if "avx512f" in flags:
        isa = "AVX-512 VNNI" if "avx512_vnni" in flags else "AVX-512"
    else:
        isa = "AVX2" if "avx2" in flags else "no AVX2" if flags else ""
    details = [f"family {fields['cpu family']} model {fields['model']}"] \
        if "cpu family" in fields and "model" in fields else []
    details += [isa] if isa else []
    return f"{name} ({', '.join(details)})" if details else name


@contextlib.contextmanager
def _machine_lock(path: Path) -> Iterator[None]:
    """Hold a lock file beside the cache: processes that start together (Ray Serve's replicas)
    measure one at a time, and the later ones read what the first measured, instead of timing
    decodes that compete for the same cores."""
    try:
        import fcntl

        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path.with_suffix(".lock"), "a")  # held for the block
    except (ImportError, OSError):  # no flock (Windows) or no writable cache: measure unlocked
        yield
        return
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        handle.close()


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def default_cpu_threads(num_workers: int = 1) -> int:
    """The cores this process may run on, shared by the workers."""
    return max(1, available_cores() // max(1, num_workers))


def default_workers(device: str) -> int:
    """Engine calls to run at once when neither workers nor threads are measured or given: 1 on a
    GPU (more were not measured), else 2 on a CPU with 2 cores or more.

    A server on a CPU told neither asks :func:`~rtwhisper.engine.layout.cpu_layout`, which
    measures two workers against one (on 2 Intel cores two one-thread workers beat one
    two-thread worker for every load tried; on 2 AMD cores one two-thread worker won).
    """
    from .cuda import runs_on_cpu

    if not runs_on_cpu(device):
        return 1
    return min(2, available_cores())
