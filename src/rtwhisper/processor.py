"""RealtimeWhisperProcessor: the sans-I/O core of rtwhisper.

Audio in, events out, nothing else: no threads, no sockets, no sleeping, no clock. Like
h11's ``Connection``, it is driven by its caller:

* ``feed(audio)`` validates and buffers a block — cheap enough for an audio callback;
* ``results()`` runs the recognition that is due and returns the new events;
* ``flush()`` makes everything heard so far final (a live source that went quiet);
* ``finish()`` ends the stream: the rest of the audio is recognised and becomes final.

For a scheduler that batches many streams on one model, ``results()`` splits in two:
``next_request()`` says which window is due (or ``None``) and ``apply(hypothesis)`` turns the
engine's answer into events.

How a word becomes final (see ``docs/streaming.md`` for the measurements):

1. **Voice activity** (Silero, :mod:`rtwhisper.vad`) gates the engine: audio with no speech
   since the last final word costs no decode.
2. **Updates** every ``chunk_duration`` of new audio while speech is unfinal. Each window
   starts at a word boundary before the commit point; the final words inside it are a
   forced decoder prefix, so they are never decoded twice and never duplicated.
3. **Commit**: a word is final when two consecutive hypotheses agree on it
   (LocalAgreement-2; with ``agreement_span_s``, the new one and the newest that heard that
   much less audio; with ``agreement_margin_s``, the earlier one heard that far past the word;
   three, the first a second less than the new one, for a word Whisper doubts:
   ``DOUBT_PROBABILITY``, ``DOUBT_SPAN_S``), or — with ``commit_probability``, as the
   ``low_latency`` and ``commands`` presets set it (0.9) — when one hypothesis is sure
   of it: probability at least that, ending ``commit_margin_s`` (0.1 s) before the audio does.
4. **Endpointing**: a pause of ``endpoint_silence_s`` after a finished sentence (or of
   ``endpoint_max_silence_s`` after an unfinished phrase: Whisper's punctuation tells them
   apart) ends the utterance: everything pending becomes final, and that final has
   ``end_of_utterance``. The phrase is heard to its end first, so the endpoint itself costs
   no decode — unless the words stop well before the speech does (``SHORTFALL_S``) or hold a
   word Whisper doubts (``ENDPOINT_DOUBT_PROBABILITY``): then one decode of the whole
   utterance, with silence after it and beam 5 (``CLOSING_BEAM_SIZE``), decides its end.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from .audio import SAMPLE_RATE, StreamResampler, to_float32_mono, validate_input_spec
from .chunker import ChunkConfig, Chunker, Window
from .engine import (
    MAX_TOKENS_PER_SECOND,
    TASKS,
    DecodeOptions,
    DecodeRequest,
    Engine,
    Hypothesis,
    shared_engine,
    streaming_cpu_threads,
    validate_language,
)
from .errors import ConfigError, StreamClosedError
from .events import TranscriptEvent, Word, join_words
from .merger import (
    COMMIT_MARGIN_S,
    DOUBT_PROBABILITY,
    SENTENCE_ENDS,
    MergeStep,
    OverlapMerger,
    drop_hallucinated_tail,
    normalize_word,
    repeated_head,
)
from .models import resolve_model
from .presets import get_preset
from .vad import FRAME_S, FRAME_SAMPLES, Endpointer, SileroVad, SpeechDetector, Utterance

FINAL_CONTEXT_WORDS = 64
"""Final words a hypothesis is checked against for a loop back through them (a window's forced
prefix holds fewer: windows are trimmed at ``ANCHOR_TRIM_S``)."""

PROMPT_CONTEXT_CHARS = 200
"""Committed text passed as the next window's prompt: whisper_streaming's 200 characters."""

ANCHOR_TRIM_S = 8.0
"""Window length beyond which its start moves to a later pause or phrase end. Windows up to the
engine's 10 s minimum encoder input cost the same encode, and Whisper decodes best from a phrase
start. Measured on the long LJ file (base, 2 cores): trimming at 4–6 s instead cut compute by a
tenth and cost a point of WER (less context); the forced prefix costs ~7 ms a token, which is
what keeps windows from growing further."""

LANGUAGE_SWITCH_PROBABILITY = 0.8
"""How sure a window's detection must be to end the last utterance's language.

An utterance after a pause starts in the language of the one before, detected alongside:
a speaker keeps their language far more often than they switch, and Whisper's detection on
the first second of a new utterance is often wrong and unsure (jfk's "ask not", a short
phrase between two pauses, read as Greek through a microphone; German and Italian partials
on the shared clips). A detection of another language at this probability sends the next
window to the detector, and two in a row lock it (a bilingual speaker's Korean after English
reads at 0.9–1.0 from its first window). Measured on the shared clips: see the docs."""

MIN_CONTEXT_S = 4.0
"""Audio a window keeps when its start moves: Whisper needs acoustic context before new words."""

LANGUAGE_LOCK_PROBABILITY = 0.5
"""Once two successive detections agree at this probability (faster-whisper's
language_detection_threshold), keep the language for the utterance.

One detection is not enough: Whisper's detection on a window's first half second is often sure
and wrong. Streamed without a language, LJ001-0011's first 0.5 s read as Turkish at 0.95 and the
whole clip came out in Turkish ("Önceden birçeyiz var…"); from 1 s on it reads English. On the
shared clips 0.5 s windows were wrong for 4 of 23 English clips. Agreement, LocalAgreement's rule
for words, costs one update (0.5 s) before the language holds."""

PREROLL_S = 0.5
"""Audio kept before detected speech: Silero opens speech up to ~0.1 s after its onset, and a
window that starts inside the first word loses it."""

HEARD_AFTER_SPEECH_S = 0.1
"""Silence a decode must have heard after an utterance's last speech for its hypothesis to be
taken as that utterance's end without another decode."""

PAUSE_WORD_SLACK_S = 0.05
"""How far past the start of a pause a word of the window that hears the pause may start (Whisper's
word starts lag the sound a little); a later one is speech resuming, or the padding's invention."""

SHORTFALL_S = 0.4
"""Speech after an utterance's last word beyond which its end gets a decode of its own: Whisper
sometimes stops early when speech runs to the end of its input (on the shared Korean clips the
last phrase was lost: "동백꽃속으로" without "폭 파묻혀 버렸다"), and the endpoint decode, with
silence after the speech end, hears it."""

ENDPOINT_DOUBT_PROBABILITY = DOUBT_PROBABILITY
"""A pending word below this probability (the merger's, under which agreement needs a third
hypothesis too) gets its utterance's end a decode of its own (one
that hears the silence after the speech), instead of becoming final as the last interim
hypothesis read it. Interim windows are padded as if speech went on: on jfk's short "Ask not"
between two pauses the last one read "is not" ("is" at 0.04) where the closing decode reads
"Ask not!" (0.48). Grid-exact over the shared set (``base``, beam 1, with a log-mel 1e-7 off
faster-whisper's): English 4.25 → 4.14 % WER, Korean the same; on the virtual clock the same
final p50."""

CLOSING_BEAM_SIZE = 5
"""Beam width of an utterance's closing decode (at least; Whisper's own for files, as
faster-whisper's ``beam_size=5``). Interim words wait for a second hypothesis; a closing
decode's are final at once, and greedy decoding there takes a token that only looks best
alone: LJ001-0016 ends on "therefore", and the closing decode forced through "...it was
natural" read " there" (0.31) then " for" (0.61) where the beam keeps "therefore" (joint
0.19 against 0.30; 2 AMD cores, whose log-mel rounds 1e-7 apart from the Xeon's, which read
"therefore" greedily). Costs 0.14 s of a 0.81 s closing decode there; an interim update keeps
the stream's beam. Measured on the shared set: ``docs/streaming.md``."""

CONTEXT_WORDS = 3
"""Final words of the last utterance that the next one's windows hear again, as forced prefix,
when it follows a short pause (``CONTEXT_PAUSE_S``).

A window that starts in a pause hears its first word with nothing before it, and Whisper's
reading of that word then hangs on where exactly the window starts and on the CPU's rounding:
jfk's "ask not", 0.9 s after "my fellow Americans", read "is not" (probability 0.03-0.15) from
half the starts in that pause on 2 AVX2 cores (int8 and float32 alike) and was made final by
every path; on another CPU "is" scored just over a rule's bar. Started inside "my fellow
Americans" with those words forced, the window reads "Ask" at 0.81-0.92 from every start and
on both compute types: the words before the pause tell the decoder where it stands. Measured
over three grid phases of the shared set (``base``, 0.5 s updates, 2 AVX2 cores): English WER the
same (4.36 %), Korean CER 16.07 → 15.13 %."""

CONTEXT_PAUSE_S = 2.0
"""Silence after the last final word beyond which the next utterance starts afresh: a new
window opens ``PREROLL_S`` before its speech, with the final text as prompt only (a longer
pause is a new start, and the words before it say little about the first word after it)."""

UpdateKind = Literal["update", "endpoint", "flush", "last"]


AHEAD_REQUESTS = 1
"""Windows a scheduler may have on the engine beyond the first (``next_request(ahead=True)``).

One: two decodes of a stream at once fill the two workers of a 2-core machine, and a third
would only queue behind them."""


@dataclass(frozen=True)
class _Update:
    """A window that is due, and why; ``committed`` counts the final words when it was made."""

    window: Window
    kind: UpdateKind
    request: DecodeRequest
    committed: int
    speech_end_s: float | None = None
    """For a window that hears a pause as it starts: where voice activity says the speech stopped."""


class RealtimeWhisperProcessor:
    """Streaming Whisper recognition of one audio stream.

    Parameters keep the guide's names. ``chunk_duration`` is the new audio per update,
    ``overlap_duration`` the already-final audio each window hears again (see
    :mod:`rtwhisper.chunker`). ``engine`` lets many processors share one loaded model; by
    default processors with the same model, device and compute type share one anyway.
    Input format: ``sample_rate`` (resampled to 16 kHz), ``channels`` (downmixed), and
    ``bytes_format`` for bytes (``"f32le"`` or ``"s16le"``). ``cpu_threads``: CTranslate2's
    threads per decode on a CPU (0: what decodes one window fastest on this machine, measured
    once and cached — :func:`~rtwhisper.engine.ctranslate2.streaming_cpu_threads` says why).

    Latency knobs: ``endpoint_silence_s`` and ``endpoint_max_silence_s`` (pauses that end an
    utterance after a finished sentence and after an unfinished phrase), ``commit_probability``
    and ``commit_margin_s`` (when one hypothesis suffices: ``None``, the default, or ``1.0``
    waits for two hypotheses to agree on every word, LocalAgreement-2 alone; the ``low_latency``
    and ``commands`` presets, the server's default among them, commit a word of probability 0.9
    or more that ends 0.1 s before the audio, :data:`~rtwhisper.merger.COMMIT_PROBABILITY` —
    at their 0.5 s updates the second hypothesis hears little more, at 2 s it catches errors;
    ``0.0`` commits on the margin alone),
    ``agreement_span_s`` (how much less audio the hypothesis agreed with must have heard; 0: the
    previous one, LocalAgreement-2; with updates shorter than the span, the evidence stays that
    of span-long updates while the agreeing hypothesis comes sooner — worth it where decodes are
    cheap, a GPU), ``agreement_margin_s`` (how far past a word's end the hypothesis agreed
    with must have heard, when it heard less than 0.5 s less: 0.3 s with 0.3 s updates, where
    two windows may both end inside one long word, :data:`~rtwhisper.merger.AGREEMENT_MARGIN_S`),
    and ``spare_chunk_duration`` (the update step while a scheduler says the engine has a worker
    to spare, ``next_request(spare=True)``; ``None``, the presets' default: ``chunk_duration``
    at any load; ``docs/presets.md`` has what 0.3 s gains and costs).
    ``vad`` is ``True`` (Silero), ``False`` (decode every update, no endpointing)
    or a :class:`~rtwhisper.vad.SpeechDetector`.
    """

    def __init__(
        self,
        model_name: str = "base",
        chunk_duration: float = 0.5,
        overlap_duration: float = 0.2,
        language: str | None = None,
        initial_prompt: str | None = None,
        *,
        task: str = "transcribe",
        beam_size: int = 1,
        device: str = "auto",
        compute_type: str = "auto",
        vad: bool | SpeechDetector = True,
        engine: Engine | None = None,
        max_window_duration: float | None = None,
        sample_rate: int = SAMPLE_RATE,
        channels: int = 1,
        bytes_format: str = "f32le",
        cpu_threads: int = 0,
        endpoint_silence_s: float = 0.5,
        endpoint_max_silence_s: float = 0.5,
        commit_probability: float | None = None,
        commit_margin_s: float = COMMIT_MARGIN_S,
        agreement_span_s: float = 0.0,
        agreement_margin_s: float = 0.0,
        spare_chunk_duration: float | None = None,
    ) -> None:
        if task not in TASKS:
            raise ConfigError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
        if isinstance(beam_size, bool) or not isinstance(beam_size, int) or not 1 <= beam_size <= 20:
            raise ConfigError(f"beam_size must be an integer from 1 to 20, got {beam_size!r}")
        if language is not None and (not isinstance(language, str) or not language.strip()):
            raise ConfigError(f"language must be a language code such as 'en' or 'ko', or None, got {language!r}")
        validate_language(language)
        check_prompt(initial_prompt)
        validate_input_spec(sample_rate, channels, bytes_format)
        _check_seconds("endpoint_silence_s", endpoint_silence_s, 0.1, 10.0)
        _check_seconds("endpoint_max_silence_s", endpoint_max_silence_s, endpoint_silence_s, 30.0)
        _check_seconds("commit_margin_s", commit_margin_s, 0.0, 5.0)
        _check_seconds("agreement_span_s", agreement_span_s, 0.0, 5.0)
        _check_seconds("agreement_margin_s", agreement_margin_s, 0.0, 5.0)
        if spare_chunk_duration is not None:
            _check_seconds("spare_chunk_duration", spare_chunk_duration, 0.1, 15.0)
        if commit_probability is not None and (isinstance(commit_probability, bool) or not isinstance(
                commit_probability, (int, float)) or not 0.0 <= commit_probability <= 1.0):
            raise ConfigError(f"commit_probability must be from 0 to 1, or None, got {commit_probability!r}")
        self.config = ChunkConfig(chunk_duration, overlap_duration, max_window_duration)
        self.language = language
        self.initial_prompt = initial_prompt
        self.task = task
        self.beam_size = beam_size
        self.vad = bool(vad)
        self.endpoint_silence_s = float(endpoint_silence_s)
        self.endpoint_max_silence_s = float(endpoint_max_silence_s)
        self.commit_probability = commit_probability
        self.commit_margin_s = float(commit_margin_s)
        self.agreement_span_s = float(agreement_span_s)
        self.agreement_margin_s = float(agreement_margin_s)
        self.spare_chunk_duration = None if spare_chunk_duration is None else float(spare_chunk_duration)
        self.sample_rate = sample_rate
        self.channels = channels
        self.bytes_format = bytes_format
        if engine is None:
            path = resolve_model(model_name)
            engine = shared_engine(path, device=device, compute_type=compute_type,
                                   cpu_threads=cpu_threads or streaming_cpu_threads(path, compute_type, device))
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
        self._merger = OverlapMerger(agreement_span_s=self.agreement_span_s,
                                     agreement_margin_s=self.agreement_margin_s)
        self._resampler = StreamResampler(sample_rate) if sample_rate != SAMPLE_RATE else None
        self._detector: SpeechDetector | None = (SileroVad() if vad is True else None) if isinstance(vad, bool) \
            else vad
        self._endpointer = Endpointer(endpoint_silence_s=self.endpoint_silence_s)
        self._vad_tail = np.zeros(0, dtype=np.float32)  # samples short of a whole VAD frame
        self._incoming: list[np.ndarray] = []
        self._audio = np.zeros(0, dtype=np.float32)
        self._audio_start = 0  # stream sample index of self._audio[0]
        self._available = 0  # samples at 16 kHz received so far
        self._fed_input_samples = 0  # samples fed, at the caller's rate
        self._last_end_s = 0.0  # end of the last window decided on (decoded or skipped as silence)
        self._paused_heard_s = -1.0  # end of the last window padded as if the speech had stopped
        self._anchor_s = 0.0  # where windows start: a word boundary before the commit point
        self._covered_s = 0.0  # finals cover [0, this)
        self._segment_id = 0
        self._sequence = 0
        self._failed_updates = 0  # interim decodes in a row that failed Whisper's thresholds
        self._step_now_s = self.config.chunk_duration  # the update step last asked for
        self._partial_text = ""
        self._utterance_has_text = False
        self._passed_over = False  # an interim hypothesis of this utterance was no evidence
        self._inflight: deque[_Update] = deque()  # requests handed out, oldest first
        self._ready: list[TranscriptEvent] = []
        self._detected: tuple[str | None, float | None] = (language, None)  # locked language
        self._guess: tuple[str | None, float | None] = (language, None)  # latest detection
        self._prior: str | None = None  # the last utterance's locked language
        self._challenge: tuple[str, float] | None = None  # a sure detection of another one
        self._prompt_from = 0  # the first final word the prompt may hold: none from before a switch
        self._finished = False
        self.compute_s = 0.0
        """Seconds spent in the engine so far by ``results()``/``flush()``/``finish()`` (RTF accounting)."""
        self.updates = 0
        """Windows decoded so far."""

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> RealtimeWhisperProcessor:
        """A processor with a preset's options, any of them overridden by keyword.

        A longer ``endpoint_silence_s`` than the preset's ``endpoint_max_silence_s`` raises
        that too (unless it is given as well): the pause after an unfinished phrase is never
        shorter than after a sentence (Deepgram's ``endpointing=2000`` on the default preset).
        A ``chunk_duration`` given without ``spare_chunk_duration`` drops the preset's spare
        step: the caller chose the cadence (the guide's ``chunk_duration=2`` means 2 s updates,
        not 0.3 s ones whenever a worker is free).
        """
        options: dict[str, Any] = {**get_preset(name).options(), **overrides}
        silence = overrides.get("endpoint_silence_s")
        if "endpoint_max_silence_s" not in overrides and isinstance(silence, (int, float)) \
                and not isinstance(silence, bool):
            options["endpoint_max_silence_s"] = max(options["endpoint_max_silence_s"], silence)
        if "chunk_duration" in overrides and "spare_chunk_duration" not in overrides:
            options["spare_chunk_duration"] = None
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
        """The stream time up to which audio has been dealt with (decoded, or skipped as silence)."""
        return self._last_end_s

    @property
    def final_until_s(self) -> float:
        """The stream time up to which the transcript is final."""
        return self._covered_s

    @property
    def is_finished(self) -> bool:
        return self._finished

    @property
    def in_speech(self) -> bool:
        """Whether an utterance is open by voice activity (always ``True`` without VAD)."""
        if self._detector is None:
            return True
        return any(u.end_s is None for u in self._endpointer.utterances)

    @property
    def pause_s(self) -> float | None:
        """How long the open utterance's speech has paused so far, in audio seconds: ``None``
        while the speaker speaks, between utterances, or without VAD.

        What a turn detector weighs with the words (Deepgram Flux's end-of-turn confidence in
        :mod:`rtwhisper.server.flux`): a finished sentence after 0.2 s of silence is likelier
        the end of a turn than an unfinished one after the same pause.
        """
        started = self._endpointer.pause_started_s
        return None if started is None or self._detector is None else max(0.0, self._endpointer.now_s - started)

    def set_endpointing(self, endpoint_silence_s: float, endpoint_max_silence_s: float) -> None:
        """Change the pauses that end an utterance mid-stream (from the next audio on).

        For clients that tune end-of-turn detection while they talk (Deepgram Flux's
        ``Configure``). Checked like the constructor's arguments (:class:`ConfigError`).
        """
        _check_seconds("endpoint_silence_s", endpoint_silence_s, 0.1, 10.0)
        _check_seconds("endpoint_max_silence_s", endpoint_max_silence_s, endpoint_silence_s, 30.0)
        self.endpoint_silence_s = float(endpoint_silence_s)
        self.endpoint_max_silence_s = float(endpoint_max_silence_s)
        self._endpointer.endpoint_silence_s = self.endpoint_silence_s

    def _ingest(self, *, final: bool = False) -> None:
        blocks = self._incoming
        self._incoming = []
        if self._resampler is not None and (blocks or final):
            joined = np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.float32)
            blocks = [self._resampler.process(joined, final=final)]
        blocks = [b for b in blocks if b.size]
        if blocks:
            self._audio = np.concatenate([self._audio, *blocks])
            self._available += sum(b.size for b in blocks)
        if self._detector is not None:
            pending = np.concatenate([self._vad_tail, *blocks]) if blocks else self._vad_tail
            if final and pending.size % FRAME_SAMPLES:
                pending = np.concatenate([pending, np.zeros(FRAME_SAMPLES - pending.size % FRAME_SAMPLES,
                                                            dtype=np.float32)])
            whole = pending.size - pending.size % FRAME_SAMPLES
            if whole:
                self._endpointer.push(self._detector(pending[:whole].reshape(-1, FRAME_SAMPLES)))
            self._vad_tail = pending[whole:]

    # -- recognition --------------------------------------------------------------------

    def results(self) -> list[TranscriptEvent]:
        """Run the recognition that is due and return the new events (possibly none)."""
        events: list[TranscriptEvent] = []
        while (request := self.next_request()) is not None:
            events += self._run(request)
        return events + self.take_events()

    def flush(self) -> list[TranscriptEvent]:
        """Make everything heard so far final, as if the speaker had paused; the stream stays open.

        For a live source that stopped sending (a client that went quiet without ending its
        stream): the last words do not wait for more audio or the end of the stream.
        """
        events = self.results()
        if self._finished or self._inflight:
            return events
        available_s = self._available / SAMPLE_RATE
        if available_s > self._last_end_s + 1e-9 and self._has_new_speech(available_s):
            update = self._make_update(Window(self._anchor_s, available_s), "flush")
            events += self._run(update.request)
        elif self._merger.pending or self._partial_text:
            events += self._close_utterance(available_s)
        return events

    def finish(self) -> list[TranscriptEvent]:
        """End the stream: recognise the rest and make everything final.

        After this the final events cover the fed audio from 0 to its end.
        """
        if self._finished:
            return []
        if self._inflight:
            raise RuntimeError("finish() while a request from next_request() awaits apply()")
        self._ingest(final=True)
        events = self.results()
        self._finished = True
        end_s = self._available / SAMPLE_RATE
        while end_s > self._last_end_s + 1e-9:
            window = self._chunker.next_window(anchor_s=self._anchor_s, last_end_s=self._last_end_s,
                                               available_s=end_s, final=True)
            if window is None:
                break
            if not self._has_new_speech(window.end_s) and not self._merger.pending:
                self._skip_silence(window.end_s)
                continue
            update = self._make_update(window, "last" if window.end_s >= end_s - 1e-9 else "update")
            events += self._run(update.request)
        step = self._merger.flush()  # words the last window heard, with no later window to confirm them
        if step.committed or self._covered_s < end_s - 1e-9 or self._partial_text:
            events.append(self._event(True, step.committed, self._covered_s, max(end_s, self._covered_s),
                                      end_of_utterance=bool(step.committed or self._partial_text
                                                            or self._utterance_has_text)))
            self._covered_s = max(end_s, self._covered_s)
        return events

    def _run(self, request: DecodeRequest) -> list[TranscriptEvent]:
        started = time.perf_counter()
        hypothesis = self.engine.transcribe_batch([request])[0]
        self.compute_s += time.perf_counter() - started
        return self.apply(hypothesis)

    # -- the scheduler's interface --------------------------------------------------------

    def next_request(self, *, ahead: bool = False, spare: bool = False,
                     pace_s: float | None = None) -> DecodeRequest | None:
        """The window due for recognition, as an engine request, or ``None`` if none is due.

        ``spare``: the engine has a worker to spare for this stream (a scheduler says so from
        its load and this stream's measured decodes); updates may then come every
        ``spare_chunk_duration`` of new audio instead of every ``chunk_duration``.
        ``pace_s``: the shortest step the engine can serve this stream at (its decodes'
        measured cost and the engine's load): the step is never shorter (:meth:`_step_s`).

        One request is out at a time: until :meth:`apply` gets its hypothesis, this returns
        ``None`` — unless ``ahead``: a scheduler with an idle worker may then have the next
        plain update (the next grid step past the window in flight) decoded at the same time,
        up to ``AHEAD_REQUESTS`` of them. :meth:`apply` takes the hypotheses in the order of
        the requests. A decode lasts about as long as a step on a loaded CPU (0.2–0.3 s for
        ``base`` on 2 cores against 0.25 s updates), so one at a time leaves the second core
        idle and the update that would confirm a word waits for the one before it.
        """
        if self._finished:
            return None
        if self._inflight:
            return self._next_ahead(spare, pace_s) if ahead else None
        horizon = self._horizon_s()
        chunk = self._step_s(spare, pace_s)
        self._step_now_s = chunk
        while True:
            endpoint = self._next_endpoint(horizon)
            next_grid = self._last_end_s + chunk
            limit = horizon
            if endpoint is not None and endpoint.end_s is not None and endpoint.ended_s is not None:
                if endpoint.ended_s <= next_grid + 1e-9:
                    if not self._heard_to_the_end(endpoint) or not (
                            self._sentence_complete() or self._heard_the_pause(endpoint)):
                        # Hear the phrase to its end first (one decode, padded with silence: the
                        # speech stopped), then decide. An unfinished phrase that no decode heard
                        # pause after gets it too: windows 0.1-0.3 s into the pause write no
                        # period, and without this one the endpoint waited endpoint_max_silence_s.
                        return self._make_update(Window(self._anchor_s, endpoint.ended_s), "update",
                                                 paused=True).request
                    deadline = endpoint.ended_s if self._sentence_complete() \
                        else max(endpoint.ended_s, endpoint.end_s + self.endpoint_max_silence_s)
                    if deadline <= horizon + 1e-9:
                        if self._words_fall_short(endpoint) or self._doubts_pending() or self._passed_over:
                            # The last hypothesis stopped before the speech did (Whisper ends
                            # early when speech runs to the window's end), holds a word it
                            # doubts, or some were no evidence (failed, the wrong language):
                            # one whole decode that hears the silence after the speech.
                            return self._make_update(Window(self._anchor_s, deadline), "endpoint").request
                        self._ready += self._close_utterance(deadline)
                        self._endpointer.forget_before(deadline)
                        continue
                else:
                    limit = min(limit, endpoint.ended_s - 1e-6)  # the endpoint comes first
            elif (pause_window := self._pause_window(horizon, self._last_end_s)) is not None:
                return self._make_update(pause_window, "update", paused=True,
                                         speech_end_s=self._endpointer.pause_started_s).request
            window = self._chunker.next_window(anchor_s=self._anchor_s, last_end_s=self._last_end_s,
                                               available_s=limit, final=False, step_s=chunk)
            if window is None:
                return None
            if not self._has_new_speech(window.end_s):
                self._skip_silence(window.end_s)
                continue
            return self._make_update(window, "update").request

    def _pause_window(self, horizon_s: float, last_end_s: float) -> Window | None:
        """A window that hears the speech stop, as soon as voice activity says it stopped.

        The last words' work is then done during the pause: when the endpoint comes
        (``endpoint_silence_s`` later) the words were heard to their end and close with no
        decode of their own (:meth:`_heard_to_the_end`). On the grid, the update that heard the
        pause came up to a step after it, and the endpoint then waited for a decode: jfk's last
        word was final 0.75 s after it ended with a 0.3 s endpoint (``base``, 2 AVX2 cores, one
        decode at a time), 0.55 s with this window. Once per pause: the window itself hears past
        its start. ``last_end_s``: where the last window applied or in flight ends.

        The window ends where voice activity has heard silence to, not at the audio's end: a
        speaker who goes on after a short pause must not be heard starting a word in a window
        padded as if the speech had stopped (LJ001-0003's "wood blocks | engraved" read "blocks
        in the Chinese", and "in grave" followed); and :meth:`apply` keeps only the words that
        start before the pause.
        """
        pause_s = self._endpointer.pause_started_s
        if pause_s is None or self._detector is None:
            return None
        heard_s = pause_s + HEARD_AFTER_SPEECH_S
        end_s = min(horizon_s, self._endpointer.now_s)
        if end_s < heard_s - 1e-9:
            return None  # not silent long enough yet by voice activity (a gap between words is no pause)
        if last_end_s >= heard_s - 1e-9 or end_s <= last_end_s + FRAME_S:
            return None
        return Window(self._anchor_s, end_s)

    def _horizon_s(self) -> float:
        """Take in the audio fed so far; how far a window may reach.

        Voice activity is known in whole Silero frames (32 ms), and the audio past the last
        one waits for the next block; a window may still take it in. Stopping at the last
        whole frame put nearly every grid point (0.5 s is 15.6 frames) one fed block late —
        0.1 s of every word's latency with 0.1 s blocks.
        """
        self._ingest()
        horizon = self._available / SAMPLE_RATE
        if self._detector is not None:
            horizon = min(horizon, self._endpointer.now_s + FRAME_S)
        return horizon

    def _step_s(self, spare: bool, pace_s: float | None = None) -> float:
        """New audio per update: ``chunk_duration``, or ``spare_chunk_duration`` (at most that)
        while the engine has a worker to spare; never less than ``pace_s``.

        A word waits for the update after it ends and, unless one hypothesis is sure of it,
        for the one after that: the step is most of the final latency a machine with time to
        spare can take off. A step shorter than the engine can serve only queues updates: a
        scheduler measures what each decode costs and paces the stream (``pace_s``), so a
        slower CPU, or a busier one, gets longer steps instead of a growing lag.
        """
        chunk = self.config.chunk_duration
        if spare and self.spare_chunk_duration is not None:
            chunk = min(chunk, self.spare_chunk_duration)
        # Paced no further than two steps in a window: each word is still heard twice.
        return max(chunk, min(pace_s or 0.0, (self._max_window_s - self.config.overlap_duration) / 2))

    def _next_ahead(self, spare: bool, pace_s: float | None) -> DecodeRequest | None:
        """A plain update after the windows in flight, or ``None``.

        Only updates go ahead: an endpoint, a skipped pause or a stream's end waits for the
        hypotheses in flight, which decide it.
        """
        if len(self._inflight) > AHEAD_REQUESTS or self._inflight[-1].kind != "update":
            return None
        horizon = self._horizon_s()
        if self._next_endpoint(horizon) is not None:
            return None
        last_end_s = self._inflight[-1].window.end_s
        if (pause_window := self._pause_window(horizon, last_end_s)) is not None:
            # The speech stopped after the window in flight: hear its end now, on the idle worker.
            return self._make_update(pause_window, "update", paused=True,
                                     speech_end_s=self._endpointer.pause_started_s).request
        window = self._chunker.next_window(anchor_s=self._anchor_s, last_end_s=last_end_s, available_s=horizon,
                                           final=False, step_s=self._step_s(spare, pace_s))
        if window is None or not self._has_new_speech(window.end_s) or any(
                u.ended_s is not None and last_end_s < u.ended_s <= window.end_s
                for u in self._endpointer.utterances):
            return None  # silence, or an utterance's end inside it: the window in flight decides first
        return self._make_update(window, "update").request

    def apply(self, hypothesis: Hypothesis) -> list[TranscriptEvent]:
        """Turn the engine's answer to :meth:`next_request`'s request into events."""
        if not self._inflight:
            raise RuntimeError("apply() without a request from next_request()")
        update = self._inflight.popleft()
        self.updates += 1
        window = update.window
        contradicted = self._note_language(hypothesis, update.request)
        if not hypothesis.passed and update.kind == "update" and not update.request.options.thorough:
            # A decode that failed Whisper's thresholds (a loop, most often) is no evidence:
            # nothing changes, and the next update, which hears more, decides — with the
            # whole fallback (beam 5, repeats blocked) so that failures cannot run on while
            # the window slides past words no decode has passed.
            self._failed_updates += 1
            return self._pass_over(window)
        self._failed_updates = 0
        if contradicted and update.kind == "update":
            # Decoded in the last utterance's language, which this window's own detection
            # surely denies: its words are that language's reading of another one. The next
            # update decodes in the detected language.
            return self._pass_over(window)
        # Evidence again: a window that failed before this one no longer needs the closing decode.
        self._passed_over = False
        words = [w.shifted(window.start_s) for w in self._strip_prompt_echo(hypothesis.words, update.request)]
        words = drop_hallucinated_tail([_clamp(w, window) for w in words], window.end_s,
                                       timed=self.task == "transcribe",
                                       final=self._merger.committed[
                                           max(0, update.committed - FINAL_CONTEXT_WORDS):update.committed])
        if update.speech_end_s is not None:  # a pause window speaks for the speech before the pause only
            words = [w for w in words if w.start_s < update.speech_end_s + PAUSE_WORD_SLACK_S]
        self._last_end_s = max(self._last_end_s, window.end_s)
        if update.request.options.paused:
            self._paused_heard_s = max(self._paused_heard_s, window.end_s)
        events = self.take_events()
        closing = update.kind != "update"
        # One sure hypothesis commits only once the language is known (given, or two detections
        # agreed): before that it may be sure in the wrong one (LJ001-0011's first 0.5 s read
        # as Turkish at 0.95).
        confident = self.commit_probability is not None and self.commit_probability < 1.0 \
            and self.task == "transcribe" and self._detected[0] is not None
        # Without a prefix, a window that starts before the commit point hears final words
        # again (a window pushed past its anchor by the maximum length): the merger drops them.
        committed = self._merger.committed
        last_end_s = committed[update.committed - 1].end_s if update.committed else 0.0
        after_prefix = bool(update.request.options.prefix) or window.start_s >= last_end_s - 1e-6
        if len(committed) > update.committed:
            # The window went ahead while the one before it was decoded, and that one made these
            # words final: the decoder was not forced through them and heard them again. Taken
            # off by text; spelled differently, the merger drops them by time and text.
            repeated = repeated_head(committed[update.committed:], words)
            words, after_prefix = (words[repeated:], after_prefix) if repeated else (words, False)
        # A window that hears a pause as it starts makes nothing final and moves no anchor: its
        # words end the utterance at the endpoint if the pause lasts; a pause can also be a stop
        # inside a word ("just | ly" on the long LJ file at 2 s updates), which the next window
        # hears whole from the same start.
        hears_pause = update.speech_end_s is not None and not closing
        if closing and hypothesis.silent and not words:
            # A closing decode that Whisper's no-speech rule set aside is no evidence against the
            # words earlier windows heard: nothing is merged, and the utterance's end below makes
            # the pending words final as they are (the merger's flush). (espeak_ko.wav's closing
            # window, its speech and 16 s of silence, read as silence, and the words its partials
            # had shown were taken back.)
            step = MergeStep((), self._merger.pending, self._merger.commit_s)
        else:
            step = self._merger.update(
                words, final=closing, after_prefix=after_prefix,
                confident_before_s=window.end_s - self.commit_margin_s if confident else None,
                min_probability=1.0 if self.commit_probability is None else self.commit_probability,
                force_before_s=None if hears_pause else self._next_window_start_s(window),
                heard_until_s=window.end_s, commit=not hears_pause)
        if closing:
            # The stream's last window always ends with a final (empty if nothing was said), so
            # that the finals cover every sample fed.
            events += self._close_utterance(window.end_s, step.committed, always=update.kind == "last")
            self._endpointer.forget_before(window.end_s)
        else:
            if step.committed:
                events.append(self._event(True, step.committed, self._covered_s,
                                          max(step.commit_s, self._covered_s)))
                self._covered_s = max(self._covered_s, step.commit_s)
                self._utterance_has_text = True
            text = join_words(step.partial)
            if text != self._partial_text and not self._partial_text.startswith(text):
                # A partial that only drops words from the end of the one shown is held back:
                # partials never flicker back to a shorter, older text (the next final settles it).
                events.append(self._event(False, step.partial, self._covered_s, window.end_s))
            if not hears_pause:
                self._move_anchor(window)
        self._trim_buffer()
        return events

    def _pass_over(self, window: Window) -> list[TranscriptEvent]:
        """An interim hypothesis that is no evidence: nothing changes but the words no later
        window can reach, which are final now, as the hypothesis before would have made them."""
        self._last_end_s = max(self._last_end_s, window.end_s)
        self._passed_over = True
        self._finalize_before(self._next_window_start_s(window))
        return self.take_events()

    def _finalize_before(self, time_s: float) -> None:
        """Make the pending words that end by ``time_s`` final (no window to come hears them)."""
        step = self._merger.commit_before(time_s)
        if step.committed:
            self._ready.append(self._event(True, step.committed, self._covered_s,
                                           max(step.commit_s, self._covered_s)))
            self._covered_s = max(self._covered_s, step.commit_s)
            self._utterance_has_text = True

    # -- decisions --------------------------------------------------------------------------

    def take_events(self) -> list[TranscriptEvent]:
        """Events decided without a decode (an utterance that ended with every word already final).

        ``results()`` and ``apply()`` include them; a scheduler that drives ``next_request()``
        takes them here when no request is due.
        """
        events, self._ready = self._ready, []
        return events

    def _next_endpoint(self, horizon_s: float) -> Utterance | None:
        """The earliest utterance whose pause a live listener has heard by ``horizon_s``, not final yet.

        An utterance whose phrase was unfinished and after which speech came back within
        ``endpoint_max_silence_s`` is no endpoint: the next one continues it.
        """
        utterances = self._endpointer.utterances
        for i, u in enumerate(utterances):
            if u.ended_s is None or u.end_s is None or u.ended_s > horizon_s + 1e-9:
                return None
            resumed = i + 1 < len(utterances) and utterances[i + 1].start_s < u.end_s + self.endpoint_max_silence_s
            if not resumed:
                return u
        return None

    def _sentence_complete(self) -> bool:
        """Whether the words of the utterance so far end a sentence (or there are none)."""
        words = self._merger.pending or tuple(self._merger.committed[-1:])
        if not words or (not self._utterance_has_text and not self._merger.pending):
            return True
        return words[-1].text.rstrip().endswith(SENTENCE_ENDS)

    def _heard_to_the_end(self, utterance: Utterance) -> bool:
        """The last decode heard the utterance's end and some silence after it: its words stand.

        Then the endpoint needs no decode of its own: what is pending becomes final as it is,
        ``endpoint_silence_s`` after the speech stopped instead of a decode later.
        """
        end_s = utterance.end_s if utterance.end_s is not None else math.inf
        return self._last_end_s >= end_s + HEARD_AFTER_SPEECH_S

    def _heard_the_pause(self, utterance: Utterance) -> bool:
        """Whether the last decode heard the utterance's pause up to its endpoint, or a window padded
        as if the speech had stopped heard the speech stop (:meth:`_pause_window`): Whisper then
        wrote the sentence's period if it meant one, and a second padded decode at the endpoint only
        cost a decode's time (LJ clips that end on a comma: 0.3 s more for each)."""
        if utterance.ended_s is not None and self._last_end_s >= utterance.ended_s - 1e-9:
            return True
        return utterance.end_s is not None and self._paused_heard_s >= utterance.end_s + HEARD_AFTER_SPEECH_S - 1e-9

    def _words_fall_short(self, utterance: Utterance) -> bool:
        """Whether the utterance's words end ``SHORTFALL_S`` or more before its speech does."""
        if utterance.end_s is None or not (self._merger.pending or self._utterance_has_text):
            return False
        words = self._merger.pending or self._merger.committed
        if not words:
            return True  # a partial showed words that no hypothesis holds now: hear the end again
        return words[-1].end_s < utterance.end_s - SHORTFALL_S

    def _doubts_pending(self) -> bool:
        """Whether a pending word is one Whisper itself doubts (``ENDPOINT_DOUBT_PROBABILITY``)."""
        return any(w.probability < ENDPOINT_DOUBT_PROBABILITY for w in self._merger.pending)

    def _has_new_speech(self, until_s: float) -> bool:
        """Whether a decode of the audio up to ``until_s`` could change anything: speech the last
        decode did not hear (a pause with every word already heard costs no decode)."""
        if self._detector is None:
            return True
        heard = self._last_end_s - HEARD_AFTER_SPEECH_S if self._merger.pending else self._merger.commit_s
        pause = self._endpointer.pause_started_s
        for u in self._endpointer.utterances:
            end = u.end_s if u.end_s is not None else pause  # an open utterance in a pause: speech stopped there
            if u.opened_s <= until_s + 1e-9 and (end is None or end > heard):
                return True
        return False

    def _skip_silence(self, until_s: float) -> None:
        """No speech to hear up to ``until_s``: move on without a decode."""
        self._last_end_s = until_s
        if not self._merger.pending:
            self._merger.advance(until_s - PREROLL_S)
            if until_s - PREROLL_S - self._last_word_end_s() > CONTEXT_PAUSE_S:
                # A long pause: the next utterance starts afresh (a short one keeps the last words).
                self._anchor_s = max(self._anchor_s, until_s - PREROLL_S, 0.0)

    def _close_utterance(self, at_s: float, committed: tuple[Word, ...] = (), *,
                         always: bool = False) -> list[TranscriptEvent]:
        """End the utterance at ``at_s``: ``committed`` and every pending word become final.

        One final event carries them with ``end_of_utterance`` (none if nothing was said,
        unless ``always``: the stream's last final covers its end even when empty).
        """
        flushed = committed + self._merger.flush().committed
        self._merger.advance(at_s)
        said = bool(flushed or self._partial_text or self._utterance_has_text)
        events = []
        if said or always:
            events.append(self._event(True, flushed, self._covered_s, max(at_s, self._covered_s),
                                      end_of_utterance=said))
        self._covered_s = max(self._covered_s, at_s)
        self._last_end_s = max(self._last_end_s, at_s)
        self._anchor_s = self._after_utterance_s(at_s)
        self._utterance_has_text = False
        self._passed_over = False
        self._redetect_language()
        return events

    def _after_utterance_s(self, end_s: float) -> float:
        """Where the next utterance's windows start: at the last ``CONTEXT_WORDS`` final words, which
        they hear again as forced prefix, while the pause after them is short (``CONTEXT_PAUSE_S``);
        else in the pause, and never inside the last word (a stream that stalled mid-speech goes
        on right after its last final word).

        (Forcing the whole finished sentence instead made the words after a pause worse — "concerned.
        Differ's from": the decoder kept re-tokenizing its last word; forced through its last few
        words, with the rest as prompt, it reads on.)
        """
        committed = self._merger.committed
        # (A maximum window under ANCHOR_TRIM_S leaves no room for the words before the pause.)
        if committed and end_s - committed[-1].end_s <= CONTEXT_PAUSE_S and self._max_window_s > ANCHOR_TRIM_S:
            first = max(0, len(committed) - CONTEXT_WORDS)
            start = committed[first].start_s
            if first:  # between that word and the one before it
                start = (committed[first - 1].end_s + start) / 2
            return max(start, self._audio_start / SAMPLE_RATE)  # no further back than the audio kept
        # Silero opens speech up to ~0.2 s after a soft onset ("and…"): keep 0.3 s of the pause.
        return min(end_s, max(end_s - min(0.3, self.endpoint_silence_s), self._last_word_end_s()))

    def _last_word_end_s(self) -> float:
        return self._merger.committed[-1].end_s if self._merger.committed else 0.0

    def _next_window_start_s(self, window: Window) -> float:
        """The earliest start the window after ``window`` may have (plus the overlap it hears again):
        words ending before it fall out of every later window."""
        step = max(self.config.chunk_duration, self._step_now_s)
        return window.end_s + step + self.config.overlap_duration - self._max_window_s

    def _make_update(self, window: Window, kind: UpdateKind, *, paused: bool = False,
                     speech_end_s: float | None = None) -> _Update:
        # Whisper hears at most 30 s: a longer window would lose its end without a word.
        window = Window(max(window.start_s, window.end_s - self._max_window_s), window.end_s)
        if window.start_s > self._anchor_s + 1e-9 and not self._inflight:
            # Cut to the maximum length (a stream paced to longer steps than its own, or one that
            # fell behind): pending words it no longer hears whole are final as last heard, not lost.
            cut = [w.end_s for w in self._merger.pending if w.start_s < window.start_s + 1e-6]
            if cut:
                self._finalize_before(max(cut))
        first_sample = round(window.start_s * SAMPLE_RATE) - self._audio_start
        end_sample = round(window.end_s * SAMPLE_RATE) - self._audio_start
        audio = self._audio[max(first_sample, 0):end_sample]
        prompt, prefix = self._context(window.start_s)
        language, detect = self._decode_language()
        options = DecodeOptions(
            language=language,
            detect_language=detect,
            task=self.task,  # type: ignore[arg-type]
            beam_size=self.beam_size if kind == "update" else max(self.beam_size, CLOSING_BEAM_SIZE),
            prompt=prompt,
            prefix=prefix,
            # Closing decodes hear the speech end: silence after the window (4 s at least). A flush
            # (a source that went quiet) is one too: as far as anyone knows, speech stopped there.
            end_of_stream=kind != "update",
            paused=paused,
            speech_end_s=None if kind == "update" else self._speech_end_in(window),
            max_new_tokens=None if kind != "update" else int(
                (window.end_s - self._merger.commit_s) * MAX_TOKENS_PER_SECOND) + 8,
            thorough=kind != "update" or self._failed_updates > 0,
        )
        update = _Update(window, kind, DecodeRequest(audio, options), len(self._merger.committed), speech_end_s)
        self._inflight.append(update)
        return update

    def _speech_end_in(self, window: Window) -> float | None:
        """Where the window's speech ends by voice activity, from its first sample (``None``: no VAD,
        or no speech in it)."""
        if self._detector is None:
            return None
        pause_s = self._endpointer.pause_started_s  # the open utterance's speech stopped there
        ends = [(u.end_s if u.end_s is not None else pause_s if pause_s is not None else window.end_s)
                for u in self._endpointer.utterances if u.start_s < window.end_s]
        if not ends:
            return None
        end = max(ends)
        return max(0.0, min(end, window.end_s) - window.start_s)

    def _context(self, window_start_s: float) -> tuple[str | None, str | None]:
        """(prompt, prefix): final text before the window, and final text inside it."""
        committed = self._merger.committed
        split = len(committed)
        while split > 0 and (committed[split - 1].start_s + committed[split - 1].end_s) / 2 >= window_start_s:
            split -= 1
        prefix = join_words(committed[split:]) or None
        # Text in another language is no context: after a switch (and while a detection questions
        # the language) the prompt starts at the switch. With jfk's English as the prompt, Korean
        # after it decoded "in Korean" read "Ask not." and LocalAgreement made it final.
        first = self._prompt_from if self._challenge is None else len(committed)
        context = join_words(committed[max(0, first, split - 80):split])[-PROMPT_CONTEXT_CHARS:]
        parts = [p for p in (self.initial_prompt, context) if p]
        return (" ".join(parts) if parts else None), prefix

    def _redetect_language(self) -> None:
        """After an utterance, a detected language is detected again for the next one.

        A bilingual speaker (Korean and English in one meeting) changes language between
        utterances; with the first detection locked for the whole stream, Whisper decoded the
        Korean half "in English" as Chinese-character loops ("沖泡的鞋子, 沖泡的鞋子, …" in the
        soak test). Within an utterance the language stays locked. The next one starts in it
        (the prior, :data:`LANGUAGE_SWITCH_PROBABILITY`), detected alongside: a detection of
        it at :data:`LANGUAGE_LOCK_PROBABILITY` locks it again, from the utterance's first
        update; two sure ones of another switch.
        """
        if self.language is None and self._detected[0] is not None:
            self._prior = self._detected[0]
            self._guess = self._detected
            self._detected = (None, None)
        self._challenge = None

    def _decode_language(self) -> tuple[str | None, bool]:
        """(language to decode the next window in, whether the engine detects it as well).

        Given or locked: that one. At an utterance's start, the language of the one before
        (:data:`LANGUAGE_SWITCH_PROBABILITY`), detected alongside; once a sure detection names
        another, ``None``: the window's detection decides.
        """
        if self.language is not None or self._detected[0] is not None:
            return (self.language or self._detected[0]), False
        if self._prior is not None and self._challenge is None:
            return self._prior, True
        return None, False

    def _note_language(self, hypothesis: Hypothesis, request: DecodeRequest) -> bool:
        """Take a window's detection into the language state (``_detected`` locks it).

        True when the window was decoded in the last utterance's language and its detection
        surely named another: its words are no evidence. (Korean after English through `base`:
        the first English windows decoded "in Korean" came back empty or failed.)
        """
        if self.language is not None or self._detected[0] is not None:
            return False
        detect = request.options.detect_language
        if not detect and not (hypothesis.words and hypothesis.passed):
            return False  # a detection without words is one on silence; with detect, a decode in the
            # wrong language that came back empty or failed is the evidence
        language = hypothesis.detected_language if detect else hypothesis.language
        probability = (hypothesis.detected_probability if detect else hypothesis.language_probability) or 0.0
        if language is None:
            return False
        guess, self._guess = self._guess, (language, probability)
        if self._prior is None:  # the stream's first utterance: two agreeing detections
            if guess[0] == language and min(guess[1] or 0.0, probability) >= LANGUAGE_LOCK_PROBABILITY:
                self._detected = (language, probability)
            return False
        if language == self._prior or probability < LANGUAGE_SWITCH_PROBABILITY:
            # The last utterance's language, or an unsure word against it: it holds.
            if language == self._prior and probability >= LANGUAGE_LOCK_PROBABILITY:
                self._detected = (language, probability)
            if language != self._prior:
                self._guess = guess  # the events keep the language the words are decoded in
            self._challenge = None
            return False
        if self._challenge is not None and self._challenge[0] == language:
            self._detected = (language, probability)  # two sure detections in a row: the speaker switched
            self._prompt_from = len(self._merger.committed)
        self._challenge = (language, probability)
        return detect

    def _move_anchor(self, window: Window) -> None:
        """Move the start of later windows forward, to a pause or phrase end, once windows grow long.

        Whisper, trained on segments that start between phrases, skips or garbles words when
        its input starts inside a word or sentence (whisper_streaming likewise trims its
        buffer only at segment ends). Final words after the anchor are the decoder's forced
        prefix; those before it, its prompt.
        """
        commit = self._merger.commit_s
        overlap = self.config.overlap_duration
        step = max(self.config.chunk_duration, self._step_now_s)
        next_end = window.end_s + step
        if next_end - self._anchor_s <= ANCHOR_TRIM_S:
            return
        # A pause or phrase end that leaves the next window MIN_CONTEXT_S of audio: preferred.
        found = self._merger.boundary_s(self._anchor_s + overlap, min(commit - overlap, next_end - MIN_CONTEXT_S))
        if found is not None and found[1]:
            target = found[0]
        elif next_end - self._anchor_s > self._max_window_s - step:
            # About to exceed the maximum: any word boundary that keeps the window within it.
            required = next_end - self._max_window_s + step
            found = self._merger.boundary_s(required, commit - overlap) or self._merger.boundary_s(required, commit)
            target = found[0] if found is not None else commit
        else:
            return
        self._anchor_s = max(self._anchor_s, target, 0.0)

    def _strip_prompt_echo(self, words: tuple[Word, ...], request: DecodeRequest) -> tuple[Word, ...]:
        """Drop a leading run of words that only repeats the initial prompt.

        Whisper sometimes "continues" a prompt by reciting it, most of all over silence;
        those words are not in the audio.
        """
        if not self.initial_prompt or not words or request.options.prefix:
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
        drop = int(self._anchor_s * SAMPLE_RATE) - self._audio_start
        if drop > SAMPLE_RATE:  # trim in ≥ 1 s steps to avoid copying on every update
            self._audio = self._audio[drop:].copy()
            self._audio_start += drop

    def _event(self, is_final: bool, words: tuple[Word, ...], start_s: float, end_s: float, *,
               end_of_utterance: bool = False) -> TranscriptEvent:
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
            end_of_utterance=end_of_utterance,
        )
        self._sequence += 1
        if is_final:
            self._segment_id += 1
            self._partial_text = ""
        else:
            self._partial_text = event.text
            if event.text:
                self._utterance_has_text = True
        return event


def _clamp(word: Word, window: Window) -> Word:
    start = min(max(word.start_s, window.start_s), window.end_s)
    end = min(max(word.end_s, start), window.end_s)
    return Word(word.text, start, end, word.probability)


MAX_PROMPT_CHARS = 2000
"""The longest ``initial_prompt`` accepted. Whisper reads at most the last 223 tokens of a prompt
(about 1,000 characters of English), so more only costs: a 3.4 MB prompt was tokenized in full
for every window (11-14 s of compute per 11 s of audio, 1 GB more memory on the server)."""


def check_prompt(prompt: object) -> None:
    """An initial prompt: ``None`` or a string of at most ``MAX_PROMPT_CHARS``; :class:`ConfigError` otherwise."""
    if prompt is None:
        return
    if not isinstance(prompt, str):
        raise ConfigError(f"initial_prompt must be a string, got {type(prompt).__name__}")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise ConfigError(f"initial_prompt is {len(prompt)} characters; at most {MAX_PROMPT_CHARS} are accepted "
                          "(Whisper reads only the last 223 tokens of a prompt)")


def _check_seconds(name: str, value: object, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ConfigError(f"{name} must be a number of seconds from {low:g} to {high:g}, got {value!r}")
