"""What a benchmark run measures: configurations (a model and :class:`~rtwhisper.options.StreamOptions`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from ..merger import AGREEMENT_MARGIN_S, COMMIT_PROBABILITY
from ..options import StreamOptions
from ..presets import get_preset

BENCH_OPTIONS = StreamOptions(endpoint_max_silence_s=1.0, commit_probability=COMMIT_PROBABILITY)
"""Where a benchmark configuration starts: the presets' pauses and the ``low_latency`` commit rule
(one sure hypothesis commits) at 0.5 s updates — ``low_latency`` without its spare step."""


@dataclass(frozen=True)
class BenchConfig:
    """One streaming configuration to measure: a model and :class:`~rtwhisper.options.StreamOptions`."""

    name: str
    model_name: str
    options: StreamOptions = BENCH_OPTIONS
    note: str = ""

    @classmethod
    def of(cls, name: str, model_name: str, chunk_duration: float, overlap_duration: float, *, note: str = "",
           **knobs: Any) -> BenchConfig:
        """A configuration from :data:`BENCH_OPTIONS` with the update step, the overlap and any knobs changed."""
        return cls(name, model_name, BENCH_OPTIONS.replace(chunk_duration=chunk_duration,
                                                           overlap_duration=overlap_duration, **knobs), note)

    @classmethod
    def from_preset(cls, preset: str, available: Sequence[str], fallback: str = "base") -> BenchConfig:
        p = get_preset(preset)
        model, note = p.model_name, ""
        if model not in available:
            note = f"preset names {model}, not installed: {fallback} substituted"
            model = fallback
        return cls(f"preset:{preset}", model, p.options, note)

    @property
    def language(self) -> str | None:
        return self.options.language

    @property
    def task(self) -> str:
        return self.options.task

    @property
    def beam_size(self) -> int:
        return self.options.beam_size

    def to_dict(self) -> dict[str, Any]:
        """For the report: the name, the model, the note and every knob."""
        return {"name": self.name, "model_name": self.model_name, "note": self.note, **self.options.to_dict()}


def default_configs(available: Sequence[str], *, quick: bool = False) -> list[BenchConfig]:
    """The comparisons of one run: the main settings on both models, the presets, and a sweep of the knobs."""
    # The server's and CLI's default (``low_latency``) on both models.
    configs = [replace(BenchConfig.from_preset("low_latency", available), name="base 0.5s", model_name="base")]
    if "tiny.en" in available:
        configs.append(replace(configs[0], name="tiny.en 0.5s", model_name="tiny.en"))
    if quick:
        return configs
    configs += [BenchConfig.from_preset(p, available) for p in ("high_accuracy", "korean", "captions")]
    # The knobs against each other: update step, the commit rule, the endpoint pause.
    configs += [BenchConfig.of(f"sweep base {c:g}s", "base", c, 0.2) for c in (0.3, 1.0, 2.0)]
    configs += [BenchConfig.of(f"sweep base 0.3s agreement margin {AGREEMENT_MARGIN_S:g}s", "base", 0.3, 0.2,
                            agreement_margin_s=AGREEMENT_MARGIN_S)]
    configs += [BenchConfig.of("sweep base 0.5s agreement only", "base", 0.5, 0.2, commit_probability=None),
                BenchConfig.of("sweep base 0.25s agreeing over 0.5s", "base", 0.25, 0.2, agreement_span_s=0.5),
                BenchConfig.of("sweep base 0.5s endpoint 0.3s", "base", 0.5, 0.2, endpoint_silence_s=0.3,
                            endpoint_max_silence_s=0.3),
                BenchConfig.of("sweep base 0.5s endpoint 0.3/1.0s", "base", 0.5, 0.2, endpoint_silence_s=0.3,
                            endpoint_max_silence_s=1.0),
                BenchConfig.of("sweep base 0.5s endpoint 1.0s", "base", 0.5, 0.2, endpoint_silence_s=1.0,
                            endpoint_max_silence_s=1.0)]
    return configs
