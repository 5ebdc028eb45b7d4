"""Planner: which window of a stream is due, and the engine request that decodes it.

Windows end on a grid of update steps (:mod:`rtwhisper.chunker`) and start at the anchor, a
word boundary before the commit point: the final words inside a window are the decoder's forced
prefix, so they are never decoded twice and never duplicated; the final words before it, its
prompt. Besides the grid: a window that hears the speech stop as soon as voice activity says it
stopped (:meth:`Planner.pause_window`), and the closing decodes of an utterance or a stream.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from ..chunker import Chunker, Window
from ..engine import MAX_TOKENS_PER_SECOND, DecodeOptions, DecodeRequest
from ..events import join_words
from ..merger import OverlapMerger
from ..options import StreamOptions
from .intake import Intake
from .language import LanguageTracker
from .utterance import HEARD_AFTER_SPEECH_S, Utterances

PROMPT_CONTEXT_CHARS = 200
"""Committed text passed as the next window's prompt: whisper_streaming's 200 characters."""

ANCHOR_TRIM_S = 8.0
"""Window length beyond which its start moves to a later pause or phrase end. Windows up to the
engine's 10 s minimum encoder input cost the same encode, and Whisper decodes best from a phrase
start. Measured on the long LJ file (base, 2 cores): trimming at 4–6 s instead cut compute by a
tenth and cost a point of WER (less context); the forced prefix costs ~7 ms a token, which is
what keeps windows from growing further."""

MIN_CONTEXT_S = 4.0
"""Audio a window keeps when its start moves: Whisper needs acoustic context before new words."""

PREROLL_S = 0.5
"""Audio kept before detected speech: Silero opens speech up to ~0.1 s after its onset, and a
window that starts inside the first word loses it."""

CLOSING_BEAM_SIZE = 5
"""Beam width of an utterance's closing decode (at least; Whisper's own for files, as
faster-whisper's ``beam_size=5``). Interim words wait for a second hypothesis; a closing
decode's are final at once, and greedy decoding there takes a token that only looks best
alone: LJ001-0016 ends on "therefore", and the closing decode forced through "...it was
natural" read " there" (0.31) then " for" (0.61) where the beam keeps "therefore" (joint
0.19 against 0.30). Costs 0.14 s of a 0.81 s closing decode there; an interim update keeps
the stream's beam."""

CONTEXT_WORDS = 3
"""Final words of the last utterance that the next one's windows hear again, as forced prefix,
when it follows a short pause (``CONTEXT_PAUSE_S``).

A window that starts in a pause hears its first word with nothing before it, and Whisper's
reading of that word then hangs on where exactly the window starts and on the CPU's rounding:
jfk's "ask not", 0.9 s after "my fellow Americans", read "is not" (probability 0.03-0.15) from
half the starts in that pause on 2 AVX2 cores (int8 and float32 alike). Started inside "my
fellow Americans" with those words forced, the window reads "Ask" at 0.81-0.92 from every start
and on both compute types: the words before the pause tell the decoder where it stands."""

CONTEXT_PAUSE_S = 2.0
"""Silence after the last final word beyond which the next utterance starts afresh: a new
window opens ``PREROLL_S`` before its speech, with the final text as prompt only (a longer
pause is a new start, and the words before it say little about the first word after it)."""

AHEAD_REQUESTS = 1
"""Windows a scheduler may have on the engine beyond the first (``next_request(ahead=True)``).

One: two decodes of a stream at once fill the two workers of a 2-core machine, and a third
would only queue behind them."""

UpdateKind = Literal["update", "endpoint", "flush", "last"]


@dataclass(frozen=True)
class Update:
    """A window that is due, and why; ``committed`` counts the final words when it was made."""

    window: Window
    kind: UpdateKind
    request: DecodeRequest
    committed: int
    speech_end_s: float | None = None
    """For a window that hears a pause as it starts: where voice activity says the speech stopped."""


def keyterms_text(keyterms: tuple[str, ...]) -> str | None:
    """The keyterms as the text a decode reads first: a list that ends a sentence.

    Ended with a period, they read as a finished sentence before the window, and the window's first
    word starts one (with a bare list, Whisper heard the window as its continuation: "printing in
    the only sense…" in lower case on 19 of the 60 other English runs, jfk's "and saw my fellow
    Americans" at one grid phase).
    """
    text = ", ".join(keyterms)
    return None if not text else text if text.endswith((".", "?", "!")) else text + "."


class Planner:
    """The stream's window positions and the requests in flight."""

    def __init__(self, options: StreamOptions, intake: Intake, utterances: Utterances, merger: OverlapMerger,
                 language: LanguageTracker, finalize_before: Callable[[float], None]) -> None:
        self.options = options
        chunks = options.chunk_config()
        self.chunker = Chunker(chunks)
        self.max_window_s = float(chunks.max_window_duration or 30.0)
        self.intake = intake
        self.utterances = utterances
        self.merger = merger
        self.language = language
        self._finalize_before = finalize_before
        self.last_end_s = 0.0  # end of the last window decided on (decoded or skipped as silence)
        self.anchor_s = 0.0  # where windows start: a word boundary before the commit point
        self.step_now_s = options.chunk_duration  # the update step last asked for
        self.failed_updates = 0  # interim decodes in a row that failed Whisper's thresholds
        self.inflight: deque[Update] = deque()  # requests handed out, oldest first

    def horizon_s(self) -> float:
        """Take in the audio fed so far; how far a window may reach."""
        self.intake.ingest()
        return self.utterances.horizon_s(self.intake.available_s)

    def step_s(self, spare: bool, pace_s: float | None = None) -> float:
        """New audio per update: ``chunk_duration``, or ``spare_chunk_duration`` (at most that)
        while the engine has a worker to spare; never less than ``pace_s``.

        A word waits for the update after it ends and, unless one hypothesis is sure of it,
        for the one after that: the step is most of the final latency a machine with time to
        spare can take off. A step shorter than the engine can serve only queues updates: a
        scheduler measures what each decode costs and paces the stream (``pace_s``), so a
        slower CPU, or a busier one, gets longer steps instead of a growing lag.
        """
        chunk = self.options.chunk_duration
        if spare and self.options.spare_chunk_duration is not None:
            chunk = min(chunk, self.options.spare_chunk_duration)
        # Paced no further than two steps in a window: each word is still heard twice.
        return max(chunk, min(pace_s or 0.0, (self.max_window_s - self.options.overlap_duration) / 2))

    def grid_window(self, limit_s: float, step_s: float, *, last_end_s: float | None = None,
                    final: bool = False) -> Window | None:
        """The next window on the grid (:meth:`~rtwhisper.chunker.Chunker.next_window`)."""
        return self.chunker.next_window(anchor_s=self.anchor_s,
                                        last_end_s=self.last_end_s if last_end_s is None else last_end_s,
                                        available_s=limit_s, final=final, step_s=step_s)

    def pause_window(self, horizon_s: float, last_end_s: float) -> Window | None:
        """A window that hears the speech stop, as soon as voice activity says it stopped.

        The last words' work is then done during the pause: when the endpoint comes
        (``endpoint_silence_s`` later) the words were heard to their end and close with no
        decode of their own. On the grid, the update that heard the pause came up to a step
        after it, and the endpoint then waited for a decode: jfk's last word was final 0.75 s
        after it ended with a 0.3 s endpoint (``base``, 2 AVX2 cores, one decode at a time),
        0.55 s with this window. ``last_end_s``: where the last window applied or in flight ends.

        The window ends where voice activity has heard silence to, not at the audio's end: a
        speaker who goes on after a short pause must not be heard starting a word in a window
        padded as if the speech had stopped (LJ001-0003's "wood blocks | engraved" read "blocks
        in the Chinese", and "in grave" followed); and only the words that start before the
        pause are kept (:mod:`.commit`).
        """
        end_s = self.utterances.pause_window_end_s(horizon_s, last_end_s)
        return None if end_s is None else Window(self.anchor_s, end_s)

    def ahead(self, spare: bool, pace_s: float | None) -> DecodeRequest | None:
        """A plain update after the windows in flight, or ``None``.

        Only updates go ahead: an endpoint, a skipped pause or a stream's end waits for the
        hypotheses in flight, which decide it.
        """
        if len(self.inflight) > AHEAD_REQUESTS or self.inflight[-1].kind != "update":
            return None
        horizon = self.horizon_s()
        if self.utterances.next_endpoint(horizon) is not None:
            return None
        last_end_s = self.inflight[-1].window.end_s
        if (pause_window := self.pause_window(horizon, last_end_s)) is not None:
            # The speech stopped after the window in flight: hear its end now, on the idle worker.
            return self.make_update(pause_window, "update", paused=True,
                                    speech_end_s=self.utterances.pause_started_s).request
        window = self.grid_window(horizon, self.step_s(spare, pace_s), last_end_s=last_end_s)
        if window is None or not self.has_new_speech(window.end_s) \
                or self.utterances.ends_between(last_end_s, window.end_s):
            return None  # silence, or an utterance's end inside it: the window in flight decides first
        return self.make_update(window, "update").request

    def has_new_speech(self, until_s: float) -> bool:
        """Whether a decode of the audio up to ``until_s`` could change anything: speech the last
        decode did not hear."""
        heard = self.last_end_s - HEARD_AFTER_SPEECH_S if self.merger.pending else self.merger.commit_s
        return self.utterances.has_new_speech(until_s, heard)

    def skip_silence(self, until_s: float) -> None:
        """No speech to hear up to ``until_s``: move on without a decode."""
        self.last_end_s = until_s
        if not self.merger.pending:
            self.merger.advance(until_s - PREROLL_S)
            if until_s - PREROLL_S - self.last_word_end_s() > CONTEXT_PAUSE_S:
                # A long pause: the next utterance starts afresh (a short one keeps the last words).
                self.anchor_s = max(self.anchor_s, until_s - PREROLL_S, 0.0)

    def make_update(self, window: Window, kind: UpdateKind, *, paused: bool = False,
                    speech_end_s: float | None = None) -> Update:
        """The request that decodes ``window``, handed out (in flight until applied)."""
        # Whisper hears at most 30 s: a longer window would lose its end without a word.
        window = Window(max(window.start_s, window.end_s - self.max_window_s), window.end_s)
        if window.start_s > self.anchor_s + 1e-9 and not self.inflight:
            # Cut to the maximum length (a stream paced to longer steps than its own, or one that
            # fell behind): pending words it no longer hears whole are final as last heard, not lost.
            cut = [w.end_s for w in self.merger.pending if w.start_s < window.start_s + 1e-6]
            if cut:
                self._finalize_before(max(cut))
        request = DecodeRequest(self.intake.window_audio(window), self._options(window, kind, paused))
        update = Update(window, kind, request, len(self.merger.committed), speech_end_s)
        self.inflight.append(update)
        return update

    def _options(self, window: Window, kind: UpdateKind, paused: bool) -> DecodeOptions:
        prompt, prefix = self.context(window.start_s)
        language, detect = self.language.for_decode()
        return DecodeOptions(
            language=language,
            detect_language=detect,
            task=self.options.task,  # type: ignore[arg-type]
            beam_size=self.options.beam_size if kind == "update" else max(self.options.beam_size, CLOSING_BEAM_SIZE),
            prompt=prompt,
            hotwords=keyterms_text(self.options.keyterms),
            prefix=prefix,
            # Closing decodes hear the speech end: silence after the window (4 s at least). A flush
            # (a source that went quiet) is one too: as far as anyone knows, speech stopped there.
            end_of_stream=kind != "update",
            paused=paused,
            speech_end_s=None if kind == "update" else self.utterances.speech_end_in(window),
            max_new_tokens=None if kind != "update" else int(
                (window.end_s - self.merger.commit_s) * MAX_TOKENS_PER_SECOND) + 8,
            thorough=kind != "update" or self.failed_updates > 0,
        )

    def context(self, window_start_s: float) -> tuple[str | None, str | None]:
        """(prompt, prefix): final text before the window, and final text inside it."""
        committed = self.merger.committed
        split = len(committed)
        while split > 0 and (committed[split - 1].start_s + committed[split - 1].end_s) / 2 >= window_start_s:
            split -= 1
        prefix = join_words(committed[split:]) or None
        first = self.language.prompt_start(len(committed))
        context = join_words(committed[max(0, first, split - 80):split])[-PROMPT_CONTEXT_CHARS:]
        parts = [p for p in (self.options.initial_prompt, context) if p]
        return (" ".join(parts) if parts else None), prefix

    def next_window_start_s(self, window: Window) -> float:
        """The earliest start the window after ``window`` may have (plus the overlap it hears again):
        words ending before it fall out of every later window."""
        step = max(self.options.chunk_duration, self.step_now_s)
        return window.end_s + step + self.options.overlap_duration - self.max_window_s

    def move_anchor(self, window: Window) -> None:
        """Move the start of later windows forward, to a pause or phrase end, once windows grow long.

        Whisper, trained on segments that start between phrases, skips or garbles words when
        its input starts inside a word or sentence (whisper_streaming likewise trims its
        buffer only at segment ends). Final words after the anchor are the decoder's forced
        prefix; those before it, its prompt.
        """
        commit = self.merger.commit_s
        overlap = self.options.overlap_duration
        step = max(self.options.chunk_duration, self.step_now_s)
        next_end = window.end_s + step
        if next_end - self.anchor_s <= ANCHOR_TRIM_S:
            return
        # A pause or phrase end that leaves the next window MIN_CONTEXT_S of audio: preferred.
        found = self.merger.boundary_s(self.anchor_s + overlap, min(commit - overlap, next_end - MIN_CONTEXT_S))
        if found is not None and found[1]:
            target = found[0]
        elif next_end - self.anchor_s > self.max_window_s - step:
            # About to exceed the maximum: any word boundary that keeps the window within it.
            required = next_end - self.max_window_s + step
            found = self.merger.boundary_s(required, commit - overlap) or self.merger.boundary_s(required, commit)
            target = found[0] if found is not None else commit
        else:
            return
        self.anchor_s = max(self.anchor_s, target, 0.0)

    def after_utterance(self, end_s: float) -> None:
        """Move past an utterance that ended at ``end_s``: the next one's windows start at the last
        ``CONTEXT_WORDS`` final words, which they hear again as forced prefix, while the pause after
        them is short (``CONTEXT_PAUSE_S``); else in the pause, and never inside the last word (a
        stream that stalled mid-speech goes on right after its last final word).

        (Forcing the whole finished sentence instead made the words after a pause worse — "concerned.
        Differ's from": the decoder kept re-tokenizing its last word; forced through its last few
        words, with the rest as prompt, it reads on.)
        """
        self.last_end_s = max(self.last_end_s, end_s)
        committed = self.merger.committed
        # (A maximum window under ANCHOR_TRIM_S leaves no room for the words before the pause.)
        if committed and end_s - committed[-1].end_s <= CONTEXT_PAUSE_S and self.max_window_s > ANCHOR_TRIM_S:
            first = max(0, len(committed) - CONTEXT_WORDS)
            start = committed[first].start_s
            if first:  # between that word and the one before it
                start = (committed[first - 1].end_s + start) / 2
            self.anchor_s = max(start, self.intake.start_s)  # no further back than the audio kept
            return
        # Silero opens speech up to ~0.2 s after a soft onset ("and…"): keep 0.3 s of the pause.
        self.anchor_s = min(end_s, max(end_s - min(0.3, self.utterances.endpoint_silence_s), self.last_word_end_s()))

    def last_word_end_s(self) -> float:
        return self.merger.committed[-1].end_s if self.merger.committed else 0.0
