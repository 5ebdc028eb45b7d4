"""The recogniser behind a small interface, and its faster-whisper implementation.

The processor only needs "transcribe this window with these options, give me words
with times"; anything that does that is an :class:`Engine` (a fake one drives the fast
property tests). :class:`FasterWhisperEngine` is the real one: CTranslate2 through
faster-whisper, word timestamps, Silero VAD, and short encoder input.

Short encoder input: faster-whisper pads every window to Whisper's 30 s (3000 mel frames).
CTranslate2 ≥ 4.8 accepts fewer frames, and the encoder's cost grows with its input, so a
2 s streaming window padded to 30 s wastes most of each update. Trimming all the way to
the audio, though, makes Whisper loop on short windows (measured on jfk.wav, tiny.en and
base int8: 1–3.3 s windows gave "and so and so and so…" when trimmed to the audio). So the
encoder sees the window padded to ``min_encoder_s``, not to 30 s.

Why 20 s: with less padding Whisper more often runs on past a window's end ("…therefore,
therefore, for, for…"), and the retries that fix it cost more than the shorter encoder
saves. Measured on the long LJ file (111 s, base int8, 2 cores, deterministic fallback),
streaming WER / engine compute at 2 s and 5 s chunks:

========  =================  =================  ==========================
padding   2 s / 0.2 s        5 s / 0.5 s        seam duplicates
========  =================  =================  ==========================
10 s      2.87 % / 56.5 s    2.87 % / 80.6 s    one ("by by") at 5 s
20 s      2.87 % / 37.7 s    2.87 % / 25.6 s    none
30 s      2.51 % / 51.6 s    1.79 % / 29.1 s    one ("for for") at 2 s
========  =================  =================  ==========================

(offline, whole file: 2.15 %). Little audio (under 2 s) and the last window of a stream
always get the full 30 s (see ``FULL_INPUT_BELOW_FRAMES`` and ``DecodeOptions.end_of_stream``).
"""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np

from .audio import SAMPLE_RATE
from .errors import ConfigError
from .events import TranscriptEvent, Word

Task = Literal["transcribe", "translate"]
TASKS: tuple[str, ...] = ("transcribe", "translate")
DEVICES: tuple[str, ...] = ("auto", "cuda", "cpu")
# A decode is retried when its text compresses too well (a loop) or is too unlikely; the
# thresholds are Whisper's own (openai/whisper transcribe.py, also faster-whisper's defaults).
COMPRESSION_RATIO_THRESHOLD = 2.4
LOG_PROB_THRESHOLD = -1.0
FALLBACK_BEAM_SIZE = 5
FULL_INPUT_BELOW_FRAMES = 200
"""Encoder input with less audio than this (2 s of mel frames) keeps Whisper's 30 s padding."""
COMPUTE_TYPES: tuple[str, ...] = (
    "auto", "default", "int8", "int8_float16", "int8_float32", "int8_bfloat16",
    "int16", "float16", "bfloat16", "float32",
)


@dataclass(frozen=True)
class DecodeOptions:
    """Per-call decoding options; a shared engine serves streams with different ones."""

    language: str | None = None
    task: Task = "transcribe"
    beam_size: int = 1
    prompt: str | None = None
    vad: bool = True
    end_of_stream: bool = False
    """The window ends where the stream ends (the last window of ``finish()``). The encoder
    then sees Whisper's usual 30 s input, so that the model hears that speech stopped: with
    input that ends where a mid-sentence recording ends, it looped ("and it was natural
    therefore, therefore, for, for. The middle ages brought…" at the end of the long LJ
    file). One window per stream; it has no latency to save."""


@dataclass(frozen=True)
class SegmentScores:
    """Whisper's own figures for one decoded segment (what OpenAI's verbose_json reports)."""

    seek: int
    tokens: tuple[int, ...]
    temperature: float
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float


@dataclass(frozen=True)
class FileTranscript:
    """A whole recording's transcript: Whisper's segments as final events on the file's clock."""

    segments: tuple[TranscriptEvent, ...]
    language: str | None
    language_probability: float | None
    duration_s: float
    scores: tuple[SegmentScores, ...] = ()

    @property
    def text(self) -> str:
        return " ".join(seg.text for seg in self.segments if seg.text)

    @property
    def words(self) -> tuple[Word, ...]:
        return tuple(w for seg in self.segments for w in seg.words)


@dataclass(frozen=True)
class Hypothesis:
    """One window's recognition: words timed from the window's first sample."""

    words: tuple[Word, ...]
    language: str | None = None
    language_probability: float | None = None


class Engine(Protocol):
    """What the processor needs from a recogniser."""

    def transcribe(self, audio: np.ndarray, options: DecodeOptions) -> Hypothesis:
        """Recognise ``audio`` (float32 mono 16 kHz) and return its timed words."""
        ...


def validate_language(language: str | None) -> None:
    """A language code Whisper knows, or ``None`` (detect); :class:`ConfigError` otherwise.

    Checked up front so a bad code is a clear error at construction (or an HTTP 400), not a
    ValueError from inside a decode on a worker thread.
    """
    if language is None:
        return
    try:
        from faster_whisper.tokenizer import _LANGUAGE_CODES as codes
    except ImportError:  # a future faster-whisper without the table: let the decoder judge
        return
    if language not in codes:
        raise ConfigError(
            f"unknown language code {language!r}; use a Whisper code such as 'en' or 'ko' "
            f"(one of: {', '.join(sorted(codes))}), or None to detect")


def resolve_device(device: str) -> str:
    """``"auto"`` → ``"cuda"`` when CTranslate2 sees a GPU, else ``"cpu"``."""
    if device not in DEVICES:
        raise ConfigError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
    if device != "auto":
        return device
    import ctranslate2

    return "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"


def resolve_compute_type(compute_type: str, device: str) -> str:
    """``"auto"`` → float16 on CUDA, int8 on CPU (faster-whisper's README recommendations)."""
    if compute_type not in COMPUTE_TYPES:
        raise ConfigError(f"compute_type must be one of {', '.join(COMPUTE_TYPES)}, got {compute_type!r}")
    if compute_type != "auto":
        return compute_type
    return "float16" if device == "cuda" else "int8"


def _short_input_model_class() -> type:
    from faster_whisper import WhisperModel

    class ShortInputWhisperModel(WhisperModel):
        """WhisperModel whose encoder drops the zero padding beyond ``min_frames``.

        faster-whisper pads mel features with exact zeros (``pad_or_trim``); a real
        log-mel column is never all zero (silence normalises to -1.5), so trailing
        all-zero columns are padding and can be cut without knowing the seek position.
        """

        min_frames = 2000
        per_thread = threading.local()  # ``full_input = True`` here: pad to 30 s on this thread

        def encode(self, features: np.ndarray) -> Any:
            f = features if features.ndim == 2 else features[0]
            if self.min_frames < f.shape[-1] and not getattr(self.per_thread, "full_input", False):
                nonzero = np.flatnonzero(np.any(f != 0.0, axis=0))
                frames = int(nonzero[-1]) + 1 if len(nonzero) else 0
                if frames < FULL_INPUT_BELOW_FRAMES:
                    # Little audio (the tail faster-whisper seeks to after a window's last
                    # segment, or a lone word): padded only to min_frames, Whisper wrote
                    # sentences into it ("to us. I'm sorry I'm sorry…" after 0.55 s of
                    # trailing silence, "Ask what you can do for your country." again
                    # after jfk.wav's last 0.62 s); with its usual 30 s it writes nothing.
                    return super().encode(features)
                frames = max(frames, self.min_frames)
                frames += frames % 2  # the encoder's stride-2 convolution wants even input
                if frames < f.shape[-1]:
                    features = np.ascontiguousarray(f[:, :frames])
            return super().encode(features)

        def generate_with_fallback(self, encoder_output: Any, prompt: list[int], tokenizer: Any,
                                   options: Any) -> Any:
            """Whisper's retry of a failed decode, without sampling.

            Like Whisper's temperature fallback this works per decode (per 30 s seek), so a
            bad tail does not cost the good words before it. The steps: the requested
            decode; the same without the previous-text prompt (openai/whisper drops the
            prompt after a failed decode, ``prompt_reset_on_temperature``, and a prompt is
            what most often sent a window ending mid-sentence into "and it was natural
            therefore for, and it was natural therefore for, ..."); then beam 5 with
            repeated trigrams blocked. The first that passes Whisper's thresholds wins,
            else the best: under the compression threshold first, then by log-probability
            (faster-whisper's own rule when every temperature fails).
            """
            bare = prompt[prompt.index(tokenizer.sot):] if tokenizer.sot_prev in prompt else prompt
            wider = dataclasses.replace(options, beam_size=max(FALLBACK_BEAM_SIZE, options.beam_size),
                                        no_repeat_ngram_size=3)
            attempts = [(prompt, options), *([(bare, options)] if bare != prompt else []), (bare, wider)]
            tried = []
            for attempt_prompt, attempt_options in attempts:
                tried.append(super().generate_with_fallback(encoder_output, attempt_prompt, tokenizer,
                                                            attempt_options))
                if _decode_passes(tried[-1], options):
                    return tried[-1]
            return max(tried, key=lambda r: (r[3] <= COMPRESSION_RATIO_THRESHOLD, r[1]))

    return ShortInputWhisperModel


def _words(segment: Any) -> tuple[Word, ...]:
    """A faster-whisper segment's words as :class:`Word` (plain floats, not numpy scalars)."""
    return tuple(Word(w.word, float(w.start), float(w.end), float(w.probability)) for w in (segment.words or ()))


def _decode_passes(decode: tuple[Any, float, float, float], options: Any) -> bool:
    """Whisper's rule on one decode ``(result, avg_logprob, temperature, compression_ratio)``.

    Silence (no-speech probability over its threshold and a low log-probability) passes:
    faster-whisper then skips the segment, as Whisper does.
    """
    result, avg_logprob, _, compression_ratio = decode
    if (options.no_speech_threshold is not None and result.no_speech_prob > options.no_speech_threshold
            and avg_logprob < LOG_PROB_THRESHOLD):
        return True
    return compression_ratio <= COMPRESSION_RATIO_THRESHOLD and avg_logprob >= LOG_PROB_THRESHOLD


class FasterWhisperEngine:
    """faster-whisper / CTranslate2 engine. Thread-safe: one instance serves many streams.

    ``num_workers`` lets that many threads decode at once (CTranslate2 replicas share
    the weights); ``cpu_threads`` is the intra-op thread count of each (0: CTranslate2 picks).
    """

    def __init__(
        self,
        model_path: str,
        *,
        device: str = "auto",
        compute_type: str = "auto",
        cpu_threads: int = 0,
        num_workers: int = 1,
        min_encoder_s: float = 20.0,
    ) -> None:
        if not 0 < min_encoder_s <= 30:
            raise ConfigError(f"min_encoder_s must be in (0, 30] seconds, got {min_encoder_s}")
        self.device = resolve_device(device)
        self.compute_type = resolve_compute_type(compute_type, self.device)
        self.model_path = model_path
        model_class = _short_input_model_class()
        self.model = model_class(
            model_path,
            device=self.device,
            compute_type=self.compute_type,
            cpu_threads=cpu_threads,
            num_workers=num_workers,
        )
        self.model.min_frames = round(min_encoder_s * 100)
        self.multilingual: bool = bool(self.model.model.is_multilingual)

    def transcribe(self, audio: np.ndarray, options: DecodeOptions) -> Hypothesis:
        """Recognise one window with word timestamps."""
        segments, info = self._decode(audio, options)
        words = tuple(word for segment in segments for word in _words(segment))
        return Hypothesis(words, info.language, float(info.language_probability))

    def transcribe_file(self, audio: np.ndarray, options: DecodeOptions) -> FileTranscript:
        """Recognise a whole recording at once (the HTTP API's path): Whisper's segments, with words.

        The encoder sees the usual 30 s input here: faster-whisper seeks past each segment,
        and the short tail left at the end of a file, padded only to ``min_encoder_s``, was
        decoded as a repeat of the last sentence (jfk.wav, base: "Ask what you can do for
        your country." twice). A whole file has no latency to save.
        """
        segments, info = self._decode(audio, dataclasses.replace(options, end_of_stream=True))
        events = tuple(
            TranscriptEvent(
                segment_id=index, sequence=index, is_final=True, text=seg.text.strip(),
                start_s=float(seg.start), end_s=float(seg.end),
                words=_words(seg),
                language=info.language, language_probability=float(info.language_probability),
            )
            for index, seg in enumerate(segments)
        )
        scores = tuple(
            SegmentScores(int(seg.seek), tuple(seg.tokens), float(seg.temperature or 0.0), float(seg.avg_logprob),
                          float(seg.compression_ratio), float(seg.no_speech_prob))
            for seg in segments
        )
        return FileTranscript(events, info.language, float(info.language_probability), len(audio) / SAMPLE_RATE,
                              scores)

    def _decode(self, audio: np.ndarray, options: DecodeOptions) -> tuple[list[Any], Any]:
        """faster-whisper with the deterministic fallback; returns its segments and info."""
        if options.end_of_stream:
            self.model.per_thread.full_input = True
            try:
                return self._decode_once(audio, options)
            finally:
                self.model.per_thread.full_input = False
        return self._decode_once(audio, options)

    def _decode_once(self, audio: np.ndarray, options: DecodeOptions) -> tuple[list[Any], Any]:
        from faster_whisper.vad import VadOptions

        language = options.language
        validate_language(language)
        if not self.multilingual:
            if language not in (None, "en") or options.task == "translate":
                raise ConfigError(
                    f"model {self.model_path!r} is English-only; it cannot "
                    f"{'translate' if options.task == 'translate' else f'transcribe language {language!r}'}. "
                    "Use a multilingual model such as 'base'"
                )
            language = "en"
        duration_s = len(audio) / SAMPLE_RATE

        segments, info = self.model.transcribe(
            audio,
            language=language,
            task=options.task,
            beam_size=options.beam_size,
            # Greedy or beam search only, never sampling: CTranslate2 keeps its random
            # generator per worker thread and set_random_seed() does not reset a thread
            # that has sampled before, so a sampled fallback made the same window give
            # different words depending on earlier calls in the process (measured:
            # 3.6 % vs 2.5 % WER on the long LJ file). The model's generate_with_fallback
            # retries deterministically instead (see _short_input_model_class).
            temperature=0.0,
            compression_ratio_threshold=COMPRESSION_RATIO_THRESHOLD,
            log_prob_threshold=LOG_PROB_THRESHOLD,
            word_timestamps=True,
            condition_on_previous_text=False,
            initial_prompt=options.prompt or None,
            vad_filter=options.vad,
            vad_parameters=VadOptions(min_silence_duration_ms=1000) if options.vad else None,
            # A window cannot hold more speech than ~12 tokens a second (fast Korean);
            # the bound stops a looping decoder early instead of filling 448 tokens.
            max_new_tokens=min(440, int(duration_s * 12) + 16),
        )
        return list(segments), info


_ENGINES: dict[tuple[object, ...], FasterWhisperEngine] = {}
_ENGINES_LOCK = threading.Lock()


def shared_engine(
    model_path: str,
    *,
    device: str = "auto",
    compute_type: str = "auto",
    cpu_threads: int = 0,
    num_workers: int = 1,
) -> FasterWhisperEngine:
    """One loaded engine per (model, device, compute type) in this process.

    Processors created with the same model share its weights, so a server holding many
    streams loads the model once.
    """
    resolved_device = resolve_device(device)
    key = (model_path, resolved_device, resolve_compute_type(compute_type, resolved_device), cpu_threads, num_workers)
    with _ENGINES_LOCK:
        engine = _ENGINES.get(key)
        if engine is None:
            engine = FasterWhisperEngine(
                model_path, device=resolved_device, compute_type=compute_type,
                cpu_threads=cpu_threads, num_workers=num_workers,
            )
            _ENGINES[key] = engine
        return engine
