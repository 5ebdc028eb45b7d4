"""RealtimeWhisperProcessor: the sans-I/O core of rtwhisper.

Audio in, events out, nothing else: no threads, no sockets, no sleeping, no clock. Like
h11's ``Connection``, it is driven by its caller:

* ``feed(audio)`` validates and buffers a block — cheap enough for an audio callback;
* ``results()`` runs the recognition that is due (one engine call per ``chunk_duration``
  of new audio) and returns the new events;
* ``finish()`` ends the stream: the rest of the audio is recognised and becomes final.

Sources, the threaded runner, the server and the command line are adapters around it.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from .audio import SAMPLE_RATE, StreamResampler, to_float32_mono, validate_input_spec
from .chunker import ChunkConfig, Chunker, Window
from .engine import TASKS, DecodeOptions, Engine, Hypothesis, shared_engine, validate_language
from .errors import ConfigError, StreamClosedError
from .events import TranscriptEvent, Word, join_words
from .merger import OverlapMerger, drop_hallucinated_tail, normalize_word
from .models import resolve_model
from .presets import get_preset

PROMPT_CONTEXT_CHARS = 200
"""Committed text passed as the next window's prompt: whisper_streaming's 200 characters."""

ANCHOR_TRIM_S = 6.0
"""Window length beyond which its start moves to a later pause or phrase end. Measured on the
long LJ file with base on 2 cores: 6 s instead of 10 s cut compute by 18 % and the
computation-aware final-latency p90 of the first 30 s from 12.2 s to 6.5 s, with the same
words give or take one."""

LANGUAGE_LOCK_PROBABILITY = 0.5
"""Once detection is this sure (faster-whisper's language_detection_threshold), keep the language."""


class RealtimeWhisperProcessor:
    """Streaming Whisper recognition of one audio stream.

    Parameters keep the guide's names. ``chunk_duration`` is the new audio per update,
    ``overlap_duration`` the already-final audio each window hears again (see
    :mod:`rtwhisper.chunker`). ``engine`` lets many processors share one loaded model; by
    default processors with the same model, device and compute type share one anyway.
    Input format: ``sample_rate`` (resampled to 16 kHz), ``channels`` (downmixed), and
    ``bytes_format`` for bytes (``"f32le"`` or ``"s16le"``).
    """

    def __init__(
        self,
        model_name: str = "base",
        chunk_duration: float = 2.0,
        overlap_duration: float = 0.2,
        language: str | None = None,
        initial_prompt: str | None = None,
        *,
        task: str = "transcribe",
        beam_size: int = 1,
        device: str = "auto",
        compute_type: str = "auto",
        vad: bool = True,
        engine: Engine | None = None,
        max_window_duration: float | None = None,
        sample_rate: int = SAMPLE_RATE,
        channels: int = 1,
        bytes_format: str = "f32le",
        cpu_threads: int = 0,
    ) -> None:
        if task not in TASKS:
            raise ConfigError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
        if isinstance(beam_size, bool) or not isinstance(beam_size, int) or not 1 <= beam_size <= 20:
            raise ConfigError(f"beam_size must be an integer from 1 to 20, got {beam_size!r}")
        if language is not None and (not isinstance(language, str) or not language.strip()):
            raise ConfigError(f"language must be a language code such as 'en' or 'ko', or None, got {language!r}")
        validate_language(language)
        validate_input_spec(sample_rate, channels, bytes_format)
        self.config = ChunkConfig(chunk_duration, overlap_duration, max_window_duration)
        self.language = language
        self.initial_prompt = initial_prompt
        self.task = task
        self.beam_size = beam_size
        self.vad = vad
        self.sample_rate = sample_rate
        self.channels = channels
        self.bytes_format = bytes_format
        if engine is None:
            engine = shared_engine(
                resolve_model(model_name), device=device, compute_type=compute_type, cpu_threads=cpu_threads
            )
        if getattr(engine, "multilingual", True) is False and (language not in (None, "en") or task == "translate"):
            raise ConfigError(
                f"model {model_name!r} is English-only: it cannot "
                f"{'translate' if task == 'translate' else f'transcribe language {language!r}'}; "
                "use a multilingual model such as 'base'"
            )
        self.engine: Engine = engine
        self.model_name = model_name

        self._chunker = Chunker(self.config)
        self._max_window_s = float(self.config.max_window_duration or 30.0)
        self._merger = OverlapMerger()
        self._resampler = StreamResampler(sample_rate) if sample_rate != SAMPLE_RATE else None
        self._incoming: list[np.ndarray] = []
        self._audio = np.zeros(0, dtype=np.float32)
        self._audio_start = 0  # stream sample index of self._audio[0]
        self._available = 0  # samples at 16 kHz received so far
        self._fed_input_samples = 0  # samples fed, at the caller's rate
        self._last_end_s = 0.0
        self._anchor_s = 0.0  # where windows start: a pause before the commit point
        self._covered_s = 0.0
        self._segment_id = 0
        self._sequence = 0
        self._partial_text = ""
        self._detected: tuple[str | None, float | None] = (language, None)  # locked language
        self._guess: tuple[str | None, float | None] = (language, None)  # latest detection
        self._finished = False
        self.compute_s = 0.0
        """Seconds spent in the engine so far (for real-time-factor accounting)."""
        self.updates = 0
        """Engine calls so far."""

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> RealtimeWhisperProcessor:
        """A processor with a preset's options, any of them overridden by keyword."""
        options: dict[str, Any] = {**get_preset(name).options(), **overrides}
        return cls(**options)

    # -- input ------------------------------------------------------------------------

    def feed(self, audio: object) -> None:
        """Buffer a block of audio: a numpy array (float32/float64/int16) or raw bytes.

        Validation happens here, so a bad block raises :class:`~rtwhisper.errors.AudioFormatError`
        at the call that fed it and nothing of it is buffered.
        """
        if self._finished:
            raise StreamClosedError("feed() after finish(): this stream is closed; create a new processor")
        samples = to_float32_mono(audio, channels=self.channels, bytes_format=self.bytes_format)
        if samples.size:
            self._incoming.append(samples)
            self._fed_input_samples += samples.size

    @property
    def fed_duration_s(self) -> float:
        """Seconds of audio fed so far, on the caller's clock."""
        return self._fed_input_samples / self.sample_rate

    @property
    def heard_until_s(self) -> float:
        """The stream time up to which audio has been recognised at least once."""
        return self._last_end_s

    @property
    def final_until_s(self) -> float:
        """The stream time up to which the transcript is final."""
        return self._covered_s

    @property
    def is_finished(self) -> bool:
        return self._finished

    def _ingest(self, *, final: bool = False) -> None:
        blocks = self._incoming
        self._incoming = []
        if self._resampler is not None:
            joined = np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.float32)
            blocks = [self._resampler.process(joined, final=final)]
        blocks = [b for b in blocks if b.size]
        if not blocks:
            return
        self._audio = np.concatenate([self._audio, *blocks])
        self._available += sum(b.size for b in blocks)

    # -- recognition --------------------------------------------------------------------

    def results(self) -> list[TranscriptEvent]:
        """Run the recognition that is due and return the new events (possibly none)."""
        if self._finished:
            return []
        self._ingest()
        events: list[TranscriptEvent] = []
        while True:
            window = self._chunker.next_window(
                anchor_s=self._anchor_s,
                last_end_s=self._last_end_s,
                available_s=self._available / SAMPLE_RATE,
                final=False,
            )
            if window is None:
                return events
            events.extend(self._process(window, last=False))

    def finish(self) -> list[TranscriptEvent]:
        """End the stream: recognise the rest and make everything final.

        After this the final events cover the fed audio from 0 to its end.
        """
        if self._finished:
            return []
        self._ingest(final=True)
        self._finished = True
        events: list[TranscriptEvent] = []
        end_s = self._available / SAMPLE_RATE
        while True:
            window = self._chunker.next_window(
                anchor_s=self._anchor_s, last_end_s=self._last_end_s, available_s=end_s, final=True
            )
            if window is None:
                break
            events.extend(self._process(window, last=window.end_s >= end_s - 1e-9))
        step = self._merger.flush()  # words the last window heard, with no later window to confirm them
        if step.committed or self._covered_s < end_s - 1e-9 or self._partial_text:
            events.append(self._event(True, step.committed, self._covered_s, max(end_s, self._covered_s)))
            self._covered_s = max(end_s, self._covered_s)
        return events

    def _process(self, window: Window, *, last: bool) -> list[TranscriptEvent]:
        hypothesis = self._transcribe(window, last=last)
        words = [w.shifted(window.start_s) for w in self._strip_prompt_echo(hypothesis.words)]
        words = drop_hallucinated_tail([_clamp(w, window) for w in words], window.end_s,
                                       timed=self.task == "transcribe")
        self._last_end_s = window.end_s
        if not words and not last and not self._merger.pending:
            # Nothing heard and nothing pending: silence or noise. Move on, keeping the last
            # chunk in case speech starts at its end. (An empty hypothesis while words are
            # pending is a decoder miss, not evidence against them: they stay pending.)
            self._merger.advance(window.end_s - self.config.chunk_duration)
        # Force what the next window could not hear again without exceeding the maximum.
        force_before = window.end_s + self.config.chunk_duration + self.config.overlap_duration \
            - self._max_window_s
        step = self._merger.update(words, force_before_s=force_before, final=last)
        self._move_anchor(window, heard_words=bool(words))
        self._trim_buffer()

        events = []
        if step.committed or (last and self._partial_text):
            end_s = window.end_s if last else step.commit_s
            events.append(self._event(True, step.committed, self._covered_s, max(end_s, self._covered_s)))
            self._covered_s = max(end_s, self._covered_s)
        elif last and window.end_s > self._covered_s:
            events.append(self._event(True, (), self._covered_s, window.end_s))
            self._covered_s = window.end_s
        if not last:
            text = join_words(step.partial)
            if text != self._partial_text:
                events.append(self._event(False, step.partial, self._covered_s, window.end_s))
        return events

    def _transcribe(self, window: Window, *, last: bool = False) -> Hypothesis:
        first_sample = round(window.start_s * SAMPLE_RATE) - self._audio_start
        end_sample = round(window.end_s * SAMPLE_RATE) - self._audio_start
        audio = self._audio[max(first_sample, 0):end_sample]
        options = DecodeOptions(
            language=self._detected[0] if self.language is None else self.language,
            task=self.task,  # type: ignore[arg-type]
            beam_size=self.beam_size,
            prompt=self._prompt(),
            vad=self.vad,
            end_of_stream=last,
        )
        started = time.perf_counter()
        hypothesis = self.engine.transcribe(audio, options)
        self.compute_s += time.perf_counter() - started
        self.updates += 1
        if self.language is None and self._detected[0] is None and hypothesis.words and hypothesis.language:
            self._guess = (hypothesis.language, hypothesis.language_probability)
            if (hypothesis.language_probability or 0.0) >= LANGUAGE_LOCK_PROBABILITY:
                self._detected = self._guess
        return hypothesis

    def _move_anchor(self, window: Window, *, heard_words: bool) -> None:
        """Move the start of later windows forward, to a pause, once windows grow long.

        Windows re-hear the unconfirmed audio and, up to ``ANCHOR_TRIM_S``, some confirmed
        audio before it, starting at a pause between phrases: Whisper, trained on segments
        that start between phrases, skips or garbles words when its input starts inside a
        word or sentence (whisper_streaming likewise trims its buffer only at segment ends).
        """
        commit = self._merger.commit_s
        overlap = self.config.overlap_duration
        next_end = window.end_s + self.config.chunk_duration
        if not heard_words and not self._merger.pending:
            self._anchor_s = max(self._anchor_s, commit - overlap, 0.0)
            return
        if next_end - self._anchor_s <= ANCHOR_TRIM_S:
            return
        # The next window must start here or later to fit the maximum length.
        required = next_end - self._max_window_s + overlap
        found = self._merger.boundary_s(self._anchor_s + overlap, commit)
        if found is not None and (found[1] or found[0] >= required):
            target = found[0]
        elif next_end - self._anchor_s > self._max_window_s:
            found = self._merger.boundary_s(required, commit)
            target = found[0] if found is not None else commit
        else:
            return
        self._anchor_s = max(self._anchor_s, target - overlap, 0.0)

    def _prompt(self) -> str | None:
        before = [w for w in self._merger.committed[-80:] if w.end_s <= self._anchor_s + 1e-6]
        context = join_words(before)[-PROMPT_CONTEXT_CHARS:]
        parts = [p for p in (self.initial_prompt, context) if p]
        return " ".join(parts) if parts else None

    def _strip_prompt_echo(self, words: tuple[Word, ...]) -> tuple[Word, ...]:
        """Drop a leading run of words that only repeats the initial prompt.

        Whisper sometimes "continues" a prompt by reciting it, most of all over silence;
        those words are not in the audio.
        """
        if not self.initial_prompt or not words:
            return words
        target = normalize_word(self.initial_prompt)
        so_far = ""
        echoed = 0
        for index, word in enumerate(words):
            candidate = so_far + normalize_word(word.text)
            if not target.startswith(candidate):
                break
            so_far = candidate
            echoed = index + 1
        # A run that recites the prompt's beginning (at least 4 characters) is an echo.
        return words[echoed:] if len(so_far) >= min(4, len(target)) else words

    def _trim_buffer(self) -> None:
        keep_from_s = self._anchor_s
        drop = int(keep_from_s * SAMPLE_RATE) - self._audio_start
        if drop > SAMPLE_RATE:  # trim in ≥ 1 s steps to avoid copying on every update
            self._audio = self._audio[drop:].copy()
            self._audio_start += drop

    def _event(self, is_final: bool, words: tuple[Word, ...], start_s: float, end_s: float) -> TranscriptEvent:
        language, probability = self._detected if self._detected[0] is not None else self._guess
        event = TranscriptEvent(
            segment_id=self._segment_id,
            sequence=self._sequence,
            is_final=is_final,
            text=join_words(words),
            start_s=start_s,
            end_s=end_s,
            words=tuple(words),
            language=language,
            language_probability=probability,
        )
        self._sequence += 1
        if is_final:
            self._segment_id += 1
            self._partial_text = ""
        else:
            self._partial_text = event.text
        return event


def _clamp(word: Word, window: Window) -> Word:
    start = min(max(word.start_s, window.start_s), window.end_s)
    end = min(max(word.end_s, start), window.end_s)
    return Word(word.text, start, end, word.probability)
