"""Scoring a benchmark run: error rates against the reference, word seams, and the summary of a configuration."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..metrics import cer, normalize_text, wer
from .configs import BenchConfig


@dataclass
class FileResult:
    path: str
    lang: str
    duration_s: float
    offline_error: float
    streaming_error: float
    penalty: float
    final_latencies_s: list[float] = field(default_factory=list)
    partial_latencies_s: list[float] = field(default_factory=list)
    unaware_final_latencies_s: list[float] = field(default_factory=list)
    compute_s: float = 0.0
    duplicated_words: int = 0
    lost_words: int = 0
    streaming_text: str = ""
    offline_text: str = ""
    grid_errors: list[float] = field(default_factory=list)
    """The error of each grid phase (:data:`GRID_PHASE_S`): unaware runs, the audio k × 0.1 s late."""
    served_final_latencies_s: list[float] = field(default_factory=list)
    """Computation-aware, driven as the server drives a lone stream (:func:`simulate_served`)."""
    served_partial_latencies_s: list[float] = field(default_factory=list)


def error_rate(lang: str, reference: str, hypothesis: str) -> float:
    """WER for English (and other space-separated languages), CER for Korean, Chinese and Japanese."""
    return cer(reference, hypothesis) if lang in ("ko", "zh", "ja") else wer(reference, hypothesis)


def percentile(values: Sequence[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if len(values) else None


def seam_errors(offline: str, streaming: str) -> tuple[int, int]:
    """(duplicated, lost) words of the streaming transcript aligned against the offline one.

    Duplicated: an inserted run that repeats the words right before or after it. Lost: words
    of the offline transcript that streaming deleted outright (not replaced by another word).
    """
    import difflib

    a, b = normalize_text(offline).split(), normalize_text(streaming).split()
    duplicated = lost = 0
    for op, a1, a2, b1, b2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if op == "insert":
            n = b2 - b1
            if b[b1:b2] == b[max(b1 - n, 0):b1] or b[b1:b2] == b[b2:b2 + n]:
                duplicated += n
        elif op == "delete":
            lost += a2 - a1
    return duplicated, lost


def _mean(values: Sequence[float]) -> float | None:
    values = [v for v in values if v == v]  # drop NaN
    return float(np.mean(values)) if values else None


def summarize(config: BenchConfig, results: list[FileResult], load_s: float) -> dict[str, Any]:
    final = [x for r in results for x in r.final_latencies_s]
    partial = [x for r in results for x in r.partial_latencies_s]
    unaware = [x for r in results for x in r.unaware_final_latencies_s]
    served = [x for r in results for x in r.served_final_latencies_s]
    served_partial = [x for r in results for x in r.served_partial_latencies_s]
    audio_s = sum(r.duration_s for r in results)

    def stats(values: list[float]) -> dict[str, float | None]:
        return {"p50": percentile(values, 50), "p90": percentile(values, 90), "max": max(values) if values else None}

    en = [r for r in results if r.lang == "en"]
    ko = [r for r in results if r.lang == "ko"]

    def grid(rows: list[FileResult]) -> dict[str, Any]:
        """The set's mean penalty in each grid phase, and their mean and spread."""
        phases = min((len(r.grid_errors) for r in rows), default=0)
        runs = [_mean([r.grid_errors[k] - r.offline_error for r in rows]) for k in range(phases)]
        values = [v for v in runs if v is not None]
        return {"phases": phases, "penalty_by_phase": runs,
                "error": _mean([e for r in rows for e in r.grid_errors[:phases]]),
                "penalty": float(np.mean(values)) if values else None,
                "penalty_sd": float(np.std(values, ddof=1)) if len(values) > 1 else None}

    return {
        "name": config.name, "config": config.to_dict(), "files": [asdict(r) for r in results],
        "audio_s": audio_s,
        "wer_en": _mean([r.streaming_error for r in en]), "offline_wer_en": _mean([r.offline_error for r in en]),
        "cer_ko": _mean([r.streaming_error for r in ko]), "offline_cer_ko": _mean([r.offline_error for r in ko]),
        "penalty_en": _mean([r.penalty for r in en]), "penalty_ko": _mean([r.penalty for r in ko]),
        "grid_en": grid(en), "grid_ko": grid(ko),
        "final_latency_s": stats(final), "partial_latency_s": stats(partial),
        "unaware_final_latency_s": stats(unaware),
        "served_final_latency_s": stats(served), "served_partial_latency_s": stats(served_partial),
        "rtf": sum(r.compute_s for r in results) / max(audio_s, 1e-9), "model_load_s": load_s,
        "duplicated_words": sum(r.duplicated_words for r in results),
        "lost_words": sum(r.lost_words for r in results),
    }
