"""Named settings: the guide's three tuning presets and its four recommended uses.

Each preset is plain data, a model name and :class:`~rtwhisper.options.StreamOptions`;
``RealtimeWhisperProcessor.from_preset(name, **overrides)`` applies it. A preset naming a
model that is not installed fails at construction with the list of installed models, so
``from_preset("captions", model_name="base")`` is the way to use a large-model preset on a
machine that only has the small packs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import ConfigError
from .merger import AGREEMENT_MARGIN_S, COMMIT_PROBABILITY
from .options import StreamOptions

KOREAN_PROMPT = "네, 알겠습니다. 그럼 시작할게요."
"""Korean initial prompt: ordinary polite spoken Korean with punctuation.

("Yes, understood. Let's begin.") The guide's prompt ("한국어 전용 모드", "Korean-only
mode") is a label, not speech, and Whisper repeats it: on the shared clips with base it
leaked "한국어 전용" into the output, while this short spoken exchange gave the lowest CER
on the real Korean clip (0.105 against 0.21 without a prompt and 0.32 with the guide's).
Any echo of the prompt at the start of a window is removed before merging.

The ``korean`` preset no longer uses it: on the ten Zeroth sentences and their joined file
(base, beam 5, streaming) it cost 0.9 points of CER on the clips (7.81 % against 6.94 %
without) and 0.2 on the long file, and on held-out spontaneous speech 1.3 points (23.4 %
against 22.1 %). It stays here for callers who want a style prompt.
"""


@dataclass(frozen=True)
class Preset:
    """A named model and :class:`~rtwhisper.options.StreamOptions`."""

    name: str
    description: str
    model_name: str
    options: StreamOptions

    def stream_options(self, **overrides: Any) -> StreamOptions:
        """This preset's options with ``overrides`` (any knob of :data:`~rtwhisper.options.KNOBS`).

        A longer ``endpoint_silence_s`` than the preset's ``endpoint_max_silence_s`` raises
        that too (unless it is given as well): the pause after an unfinished phrase is never
        shorter than after a sentence (Deepgram's ``endpointing=2000`` on the default preset).
        A ``chunk_duration`` given without ``spare_chunk_duration`` drops the preset's spare
        step: the caller chose the cadence (the guide's ``chunk_duration=2`` means 2 s updates,
        not 0.3 s ones whenever a worker is free).
        """
        changes = dict(overrides)
        silence = overrides.get("endpoint_silence_s")
        if "endpoint_max_silence_s" not in overrides and isinstance(silence, (int, float)) \
                and not isinstance(silence, bool):
            changes["endpoint_max_silence_s"] = max(self.options.endpoint_max_silence_s, silence)
        if "chunk_duration" in overrides and "spare_chunk_duration" not in overrides:
            changes["spare_chunk_duration"] = None
        return self.options.replace(**changes)


_LIVE = StreamOptions(endpoint_max_silence_s=1.0)
"""What every preset starts from: the library's defaults, but a second's pause (not half a second)
ends an unfinished phrase, as the presets have always had it."""


def _preset(name: str, description: str, model_name: str, **options: Any) -> Preset:
    return Preset(name, description, model_name, _LIVE.replace(**options))


# The guide's presets changed the update step, not the model or beam: a word used to wait for
# two windows of ``chunk_duration`` each, so 2 s chunks meant finals 3–4 s late. Windows now
# hear everything since a phrase start whatever the step, and the step only sets how soon a
# word can become final (docs/streaming.md has the measurements). The 0.5 s beam-1 presets
# commit a word one hypothesis is sure of (probability 0.9, ending 0.1 s before the audio: 0.11 s
# of final p50 in real time, the same WER); the others wait for two hypotheses to agree
# (LocalAgreement-2): at 2 s updates the second hypothesis catches errors (one sure hypothesis:
# 3.94 % WER on the long LJ file against 2.51 %). 0.3 s updates cost 2.2–3.4 WER points for
# 0.26–0.31 s, and 0.25 s updates agreeing over 0.5 s (``agreement_span_s``) 0.39–1.37 points
# for 0.12–0.15 s (0.06–0.11 s in real time on the long file; on a GPU 0.17 s).
# 0.3 s updates with ``agreement_margin_s=0.3`` (``AGREEMENT_MARGIN_S``) read jfk right since a
# doubted word's third hypothesis must have heard a second less (``DOUBT_SPAN_S``). A fixed 0.3 s
# step costs 50 % more compute and made two streams on 2 cores worse; taken only while the
# engine has a worker to spare (``spare_chunk_duration``: the server's scheduler has more
# workers than streams, one stream on 2 cores) it takes 0.1 s off one stream's final p50 and
# 0.4-0.5 s off its p90 on 2 Zen 4 cores in real time and leaves two streams as they were, and
# since an unfinished phrase gets a padded decode at its endpoint it ends utterances in time
# (jfk's "country." 0.61 s after the speech). The two presets for live speech on a small model
# (``low_latency``, ``commands``) take it; with a doubted word held while any hypothesis in its
# second reads it otherwise (``merger.DOUBT_SPAN_S``), jfk resampled from 24 kHz (the OpenAI
# Realtime path) no longer reads "As what" at 0.3 s updates (``docs/presets.md``).
SPARE_CHUNK_DURATION = 0.3
"""The ``low_latency`` and ``commands`` presets' update step while the engine has a worker to
spare (``spare_chunk_duration``), with ``AGREEMENT_MARGIN_S``."""
PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        _preset("low_latency", "live conversation: small model, 0.5 s updates (0.3 s with a worker to spare), "
                "greedy decoding, 0.5 s endpointing",
                "base", chunk_duration=0.5, overlap_duration=0.2, beam_size=1, commit_probability=COMMIT_PROBABILITY,
                agreement_margin_s=AGREEMENT_MARGIN_S, spare_chunk_duration=SPARE_CHUNK_DURATION),
        _preset("high_accuracy", "broadcast and subtitles: large model, beam search, longer pauses end a sentence",
                "large-v3", chunk_duration=1.0, overlap_duration=0.5, beam_size=5, endpoint_silence_s=0.8,
                endpoint_max_silence_s=1.5),
        _preset("korean", "Korean only: beam 5, no initial prompt (the prompt measurably hurt)",
                "large-v3", chunk_duration=0.5, overlap_duration=0.2, beam_size=5, language="ko"),
        _preset("captions", "live captions (guide: WebSocket + large-v3)",
                "large-v3", chunk_duration=1.0, overlap_duration=0.5, beam_size=5),
        _preset("commands", "voice commands (guide: WebSocket + base): a short pause ends the command",
                "base", chunk_duration=0.5, overlap_duration=0.2, beam_size=1, endpoint_silence_s=0.3,
                endpoint_max_silence_s=0.6, commit_probability=COMMIT_PROBABILITY,
                agreement_margin_s=AGREEMENT_MARGIN_S, spare_chunk_duration=SPARE_CHUNK_DURATION),
        _preset("meeting", "meeting transcription (guide: large-v3): 2 s updates, long pauses end a sentence",
                "large-v3", chunk_duration=2.0, overlap_duration=1.0, beam_size=5, endpoint_silence_s=1.0,
                endpoint_max_silence_s=2.0),
        _preset("translate", "live translation to English (guide: large-v3 + task translate)",
                "large-v3", chunk_duration=1.0, overlap_duration=0.5, beam_size=5, task="translate",
                endpoint_silence_s=0.8, endpoint_max_silence_s=1.5),
    )
}


def get_preset(name: str) -> Preset:
    """Look a preset up by name (``-`` and ``_`` are interchangeable)."""
    key = name.replace("-", "_") if isinstance(name, str) else name
    try:
        return PRESETS[key]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown preset {name!r}; presets are: {', '.join(PRESETS)}") from None
