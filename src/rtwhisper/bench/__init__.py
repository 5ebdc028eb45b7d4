"""Benchmarks: accuracy, latency, cost and capacity of streaming, against offline.

* :mod:`.simulate` — the virtual clock (computation-aware, whisper_streaming's method) over a
  manifest folder, and the whole ``rtwhisper bench`` run;
* :mod:`.realtime` — a real server and real clients at real-time pace (``../shared/MEASURING.md``);
* :mod:`.client` — that client, run as its own process;
* :mod:`.report` — ``results.json``, the Markdown table and the plots.
"""

from .configs import BenchConfig
from .scoring import seam_errors
from .simulate import run_benchmark, simulate

__all__ = ["BenchConfig", "run_benchmark", "seam_errors", "simulate"]
