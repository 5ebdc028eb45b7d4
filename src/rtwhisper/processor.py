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

import time
from typing import Any

from .chunker import Window
from .engine import DecodeRequest, Engine, Hypothesis, streaming_engine
from .errors import ConfigError, StreamClosedError
from .events import TranscriptEvent, Word
from .merger import OverlapMerger
from .options import LIVE_KNOBS, StreamOptions
from .presets import get_preset
from .stream.commit import CommitRule
from .stream.intake import Intake
from .stream.language import LanguageTracker
from .stream.planner import Planner
from .stream.transcript import Transcript
from .stream.utterance import (
    Utterances,
    UtteranceState,
    doubts_pending,
    sentence_complete,
    words_fall_short,
)
from .vad import SileroVad, SpeechDetector, Utterance


class RealtimeWhisperProcessor:
    """Streaming Whisper recognition of one audio stream.

    Settings are one :class:`~rtwhisper.options.StreamOptions` (``options``), or its knobs as
    keywords with the guide's names: ``RealtimeWhisperProcessor(model_name="base",
    chunk_duration=0.5, overlap_duration=0.2)``; keywords given with ``options`` replace its
    values. :data:`~rtwhisper.options.KNOBS` has every knob's range and meaning.

    The engine: ``engine`` lets many processors share one loaded model; else ``model_name``,
    ``device``, ``compute_type`` and ``cpu_threads`` name one, loaded by
    :func:`~rtwhisper.engine.streaming_engine` (processors with the same model share it anyway).
    ``vad`` is ``True`` (Silero), ``False`` (decode every update, no endpointing) or a
    :class:`~rtwhisper.vad.SpeechDetector`.
    """

    def __init__(
        self,
        model_name: str = "base",
        chunk_duration: float | None = None,
        overlap_duration: float | None = None,
        language: str | None = None,
        initial_prompt: str | None = None,
        *,
        options: StreamOptions | None = None,
        device: str = "auto",
        compute_type: str = "auto",
        vad: bool | SpeechDetector = True,
        engine: Engine | None = None,
        cpu_threads: int = 0,
        **knobs: Any,
    ) -> None:
        # The guide's positional knobs; None: the options' value (or the default).
        given = {"chunk_duration": chunk_duration, "overlap_duration": overlap_duration, "language": language,
                 "initial_prompt": initial_prompt}
        knobs.update({k: v for k, v in given.items() if v is not None})
        self.options = (options or StreamOptions()).replace(**knobs)
        if engine is None:
            engine = streaming_engine(model_name, device=device, compute_type=compute_type, cpu_threads=cpu_threads)
        opts = self.options
        if getattr(engine, "multilingual", True) is False and (opts.language not in (None, "en")
                                                               or opts.task == "translate"):
            raise ConfigError(
                f"model {model_name!r} is English-only: it cannot "
                f"{'translate' if opts.task == 'translate' else f'transcribe language {opts.language!r}'}; "
                "use a multilingual model such as 'base'"
            )
        self.engine: Engine = engine
        self.model_name = model_name
        detector = (SileroVad() if vad is True else None) if isinstance(vad, bool) else vad
        self.vad = detector is not None
        self._merger = OverlapMerger(agreement_span_s=opts.agreement_span_s,
                                     agreement_margin_s=opts.agreement_margin_s)
        self._utterances = Utterances(detector, opts.endpoint_silence_s, opts.endpoint_max_silence_s)
        self._intake = Intake(opts.sample_rate, opts.channels, opts.bytes_format, detector,
                              self._utterances.endpointer)
        self._language = LanguageTracker(opts.language)
        self._transcript = Transcript(self._language.reported)
        self._planner = Planner(opts, self._intake, self._utterances, self._merger, self._language,
                                self._finalize_before)
        self._commit = CommitRule(opts, self._merger)
        self._passed_over = False  # an interim hypothesis of this utterance was no evidence
        self._finished = False
        self.compute_s = 0.0
        """Seconds spent in the engine so far by ``results()``/``flush()``/``finish()`` (RTF accounting)."""
        self.updates = 0
        """Windows decoded so far."""

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> RealtimeWhisperProcessor:
        """A processor with a preset's model and options, any of them overridden by keyword
        (:meth:`~rtwhisper.presets.Preset.stream_options` says how overrides combine)."""
        preset = get_preset(name)
        engine_args = {k: overrides.pop(k) for k in ("model_name", "device", "compute_type", "vad", "engine",
                                                      "cpu_threads") if k in overrides}
        engine_args.setdefault("model_name", preset.model_name)
        if "options" in overrides:
            raise ConfigError("from_preset() takes knobs as keywords; pass options= to the constructor instead")
        return cls(options=preset.stream_options(**overrides), **engine_args)

    # -- input ------------------------------------------------------------------------

    def feed(self, audio: object) -> None:
        """Buffer a block of audio: a numpy array (float32/float64/int16) or raw bytes.

        Validation happens here, so a bad block raises :class:`~rtwhisper.errors.AudioFormatError`
        at the call that fed it and nothing of it is buffered.
        """
        if self._finished:
            raise StreamClosedError("feed() after finish(): this stream is closed; create a new processor")
        self._intake.feed(audio)

    @property
    def fed_duration_s(self) -> float:
        """Seconds of audio fed so far, on the caller's clock."""
        return self._intake.fed_samples / self.options.sample_rate

    @property
    def heard_until_s(self) -> float:
        """The stream time up to which audio has been dealt with (decoded, or skipped as silence)."""
        return self._planner.last_end_s

    @property
    def final_until_s(self) -> float:
        """The stream time up to which the transcript is final."""
        return self._transcript.covered_s

    @property
    def is_finished(self) -> bool:
        return self._finished

    @property
    def utterance_state(self) -> UtteranceState:
        """Quiet, speaking or paused, by voice activity (always speaking without VAD)."""
        return self._utterances.state

    @property
    def in_speech(self) -> bool:
        """Whether an utterance is open by voice activity (always ``True`` without VAD)."""
        return self._utterances.state is not UtteranceState.QUIET

    @property
    def pause_s(self) -> float | None:
        """How long the open utterance's speech has paused so far, in audio seconds: ``None``
        while the speaker speaks, between utterances, or without VAD.

        What a turn detector weighs with the words (Deepgram Flux's end-of-turn confidence in
        :mod:`rtwhisper.server.flux`): a finished sentence after 0.2 s of silence is likelier
        the end of a turn than an unfinished one after the same pause.
        """
        return self._utterances.pause_s

    def update_options(self, **changes: Any) -> None:
        """Change knobs mid-stream, from the next decode on: those of
        :data:`~rtwhisper.options.LIVE_KNOBS` (the pauses that end an utterance, the commit
        probability and margin, the beam, the initial prompt, the keyterms). Checked as the
        constructor checks them (:class:`ConfigError`); another knob is refused, naming those that
        may change. For clients that tune recognition while they talk (Deepgram Flux's
        ``Configure``, OpenAI Realtime's ``session.update``).
        """
        fixed = sorted(set(changes) - set(LIVE_KNOBS))
        if fixed:
            raise ConfigError(f"{', '.join(fixed)} cannot change mid-stream; these can: {', '.join(LIVE_KNOBS)}")
        self.options = self.options.replace(**changes)
        self._planner.options = self._commit.options = self.options
        self._utterances.set_endpointing(self.options.endpoint_silence_s, self.options.endpoint_max_silence_s)

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
        planner = self._planner
        if self._finished or planner.inflight:
            return events
        available_s = self._intake.available_s
        if available_s > planner.last_end_s + 1e-9 and planner.has_new_speech(available_s):
            update = planner.make_update(Window(planner.anchor_s, available_s), "flush")
            events += self._run(update.request)
        elif self._merger.pending or self._transcript.partial_text:
            events += self._close_utterance(available_s)
        return events

    def finish(self) -> list[TranscriptEvent]:
        """End the stream: recognise the rest and make everything final.

        After this the final events cover the fed audio from 0 to its end.
        """
        if self._finished:
            return []
        planner = self._planner
        if planner.inflight:
            raise RuntimeError("finish() while a request from next_request() awaits apply()")
        self._intake.ingest(final=True)
        events = self.results()
        self._finished = True
        end_s = self._intake.available_s
        while end_s > planner.last_end_s + 1e-9:
            window = planner.grid_window(end_s, self.options.chunk_duration, final=True)
            if window is None:
                break
            if not planner.has_new_speech(window.end_s) and not self._merger.pending:
                planner.skip_silence(window.end_s)
                continue
            update = planner.make_update(window, "last" if window.end_s >= end_s - 1e-9 else "update")
            events += self._run(update.request)
        # Words the last window heard, with no later window to confirm them; the finals cover the end.
        if self._merger.pending or self._transcript.covered_s < end_s - 1e-9 or self._transcript.partial_text:
            events += self._close_utterance(end_s, always=True)
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
        measured cost and the engine's load): the step is never shorter.

        One request is out at a time: until :meth:`apply` gets its hypothesis, this returns
        ``None`` — unless ``ahead``: a scheduler with an idle worker may then have the next
        plain update (the next grid step past the window in flight) decoded at the same time,
        up to ``AHEAD_REQUESTS`` of them. :meth:`apply` takes the hypotheses in the order of
        the requests. A decode lasts about as long as a step on a loaded CPU (0.2–0.3 s for
        ``base`` on 2 cores against 0.25 s updates), so one at a time leaves the second core
        idle and the update that would confirm a word waits for the one before it.
        """
        planner = self._planner
        if self._finished:
            return None
        if planner.inflight:
            return planner.ahead(spare, pace_s) if ahead else None
        horizon = planner.horizon_s()
        chunk = planner.step_now_s = planner.step_s(spare, pace_s)
        while True:
            limit = horizon
            endpoint = self._utterances.next_endpoint(horizon)
            if endpoint is not None and endpoint.end_s is not None and endpoint.ended_s is not None:
                if endpoint.ended_s <= planner.last_end_s + chunk + 1e-9:
                    request, closed = self._endpoint(endpoint, horizon)
                    if request is not None:
                        return request
                    if closed:
                        continue
                else:
                    limit = min(limit, endpoint.ended_s - 1e-6)  # the endpoint comes first
            elif (pause_window := planner.pause_window(horizon, planner.last_end_s)) is not None:
                return planner.make_update(pause_window, "update", paused=True,
                                           speech_end_s=self._utterances.pause_started_s).request
            window = planner.grid_window(limit, chunk)
            if window is None:
                return None
            if not planner.has_new_speech(window.end_s):
                planner.skip_silence(window.end_s)
                continue
            return planner.make_update(window, "update").request

    def _endpoint(self, endpoint: Utterance, horizon_s: float) -> tuple[DecodeRequest | None, bool]:
        """An utterance whose end voice activity heard: (the decode that decides it, or ``None``;
        whether it closed without one — its events wait in :meth:`take_events`). Neither: its
        deadline (``endpoint_max_silence_s`` after an unfinished phrase) is still ahead."""
        planner, merger, has_text = self._planner, self._merger, self._transcript.has_text
        end_s, ended_s = endpoint.end_s, endpoint.ended_s
        assert end_s is not None and ended_s is not None  # next_request() asks only about an ended one
        complete = sentence_complete(merger, has_text)
        if not self._utterances.heard_to_the_end(endpoint, planner.last_end_s) or not (
                complete or self._utterances.heard_the_pause(endpoint, planner.last_end_s)):
            # Hear the phrase to its end first (one decode, padded with silence: the speech
            # stopped), then decide. An unfinished phrase that no decode heard pause after gets
            # it too: windows 0.1-0.3 s into the pause write no period, and without this one the
            # endpoint waited endpoint_max_silence_s.
            return planner.make_update(Window(planner.anchor_s, ended_s), "update", paused=True).request, False
        deadline = ended_s if complete else max(ended_s, end_s + self._utterances.endpoint_max_silence_s)
        if deadline > horizon_s + 1e-9:
            return None, False
        if words_fall_short(merger, has_text, endpoint) or doubts_pending(merger) or self._passed_over:
            # The last hypothesis stopped before the speech did (Whisper ends early when speech
            # runs to the window's end), holds a word it doubts, or some were no evidence (failed,
            # the wrong language): one whole decode that hears the silence after the speech.
            return planner.make_update(Window(planner.anchor_s, deadline), "endpoint").request, False
        self._transcript.ready += self._close_utterance(deadline)
        self._utterances.endpointer.forget_before(deadline)
        return None, True

    def apply(self, hypothesis: Hypothesis) -> list[TranscriptEvent]:
        """Turn the engine's answer to :meth:`next_request`'s request into events."""
        planner = self._planner
        if not planner.inflight:
            raise RuntimeError("apply() without a request from next_request()")
        update = planner.inflight.popleft()
        self.updates += 1
        window = update.window
        contradicted = self._language.note(hypothesis, update.request, len(self._merger.committed))
        if not hypothesis.passed and update.kind == "update" and not update.request.options.thorough:
            # A decode that failed Whisper's thresholds (a loop, most often) is no evidence:
            # nothing changes, and the next update, which hears more, decides — with the
            # whole fallback (beam 5, repeats blocked) so that failures cannot run on while
            # the window slides past words no decode has passed.
            planner.failed_updates += 1
            return self._pass_over(window)
        planner.failed_updates = 0
        if contradicted and update.kind == "update":
            # Decoded in the last utterance's language, which this window's own detection
            # surely denies: its words are that language's reading of another one. The next
            # update decodes in the detected language.
            return self._pass_over(window)
        # Evidence again: a window that failed before this one no longer needs the closing decode.
        self._passed_over = False
        words = self._commit.words(hypothesis, update)
        planner.last_end_s = max(planner.last_end_s, window.end_s)
        if update.request.options.paused:
            self._utterances.paused_heard_s = max(self._utterances.paused_heard_s, window.end_s)
        events = self.take_events()
        step, hears_pause = self._commit.step(words, update, silent=hypothesis.silent,
                                              language_known=self._language.known,
                                              next_window_start_s=planner.next_window_start_s(window))
        if update.kind != "update":
            # The stream's last window always ends with a final (empty if nothing was said), so
            # that the finals cover every sample fed.
            events += self._close_utterance(window.end_s, step.committed, always=update.kind == "last")
            self._utterances.endpointer.forget_before(window.end_s)
        else:
            events += self._show(step.committed, step.commit_s, step.partial, window)
            if not hears_pause:
                planner.move_anchor(window)
        self._intake.trim_before(planner.anchor_s)
        return events

    def _show(self, committed: tuple[Word, ...], commit_s: float, partial: tuple[Word, ...],
              window: Window) -> list[TranscriptEvent]:
        """An interim step's events: the words it made final, and the partial after them."""
        events = [self._transcript.commit(committed, commit_s)] if committed else []
        shown = self._transcript.partial(partial, window.end_s)
        return events + ([shown] if shown is not None else [])

    def take_events(self) -> list[TranscriptEvent]:
        """Events decided without a decode (an utterance that ended with every word already final).

        ``results()`` and ``apply()`` include them; a scheduler that drives ``next_request()``
        takes them here when no request is due.
        """
        return self._transcript.take()

    def _pass_over(self, window: Window) -> list[TranscriptEvent]:
        """An interim hypothesis that is no evidence: nothing changes but the words no later
        window can reach, which are final now, as the hypothesis before would have made them."""
        self._planner.last_end_s = max(self._planner.last_end_s, window.end_s)
        self._passed_over = True
        self._finalize_before(self._planner.next_window_start_s(window))
        return self.take_events()

    def _finalize_before(self, time_s: float) -> None:
        """Make the pending words that end by ``time_s`` final (no window to come hears them)."""
        step = self._merger.commit_before(time_s)
        if step.committed:
            self._transcript.ready.append(self._transcript.commit(step.committed, step.commit_s))

    def _close_utterance(self, at_s: float, committed: tuple[Word, ...] = (), *,
                         always: bool = False) -> list[TranscriptEvent]:
        """End the utterance at ``at_s``: ``committed`` and every pending word become final — the one
        close path, for an endpoint, a flush, a closing decode and the stream's end.

        One final event carries them with ``end_of_utterance`` (none if nothing was said,
        unless ``always``: the stream's last final covers its end even when empty).
        """
        flushed = committed + self._merger.flush().committed
        self._merger.advance(at_s)
        events = self._transcript.end_utterance(flushed, at_s, always=always)
        self._planner.after_utterance(at_s)
        self._passed_over = False
        self._language.next_utterance()
        return events
