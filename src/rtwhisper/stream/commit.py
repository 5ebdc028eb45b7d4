"""Commit: a window's hypothesis → the words that are final now and the partial after them.

The rule, in one place (the agreement itself is :class:`~rtwhisper.merger.OverlapMerger`'s):

1. The hypothesis's words are cleaned: a recited initial prompt and a hallucinated tail (a loop
   back through the final words, words past the audio) are dropped; a window that hears a pause
   as it starts keeps only the words that start before the pause.
2. A word is final when two consecutive hypotheses agree on it (LocalAgreement-2; with
   ``agreement_span_s``, the new one and the newest that heard that much less audio; with
   ``agreement_margin_s``, the earlier one heard that far past the word; three, the first a
   second less than the new one, for a word Whisper doubts), or — with ``commit_probability``
   (the ``low_latency`` and ``commands`` presets: 0.9) — when one hypothesis is sure of it:
   probability at least that, ending ``commit_margin_s`` before the audio does, once the
   language is known.
3. Words that no later window can hear are final as last heard (``force_before_s``); a closing
   decode's words are all final.
4. A window that hears a pause as it starts makes nothing final: its words end the utterance at
   the endpoint if the pause lasts; a pause can also be a stop inside a word ("just | ly" on the
   long LJ file at 2 s updates), which the next window hears whole from the same start.
"""

from __future__ import annotations

from ..chunker import Window
from ..engine import DecodeRequest, Hypothesis
from ..events import Word
from ..filters import drop_hallucinated_tail
from ..merger import MergeStep, OverlapMerger, repeated_head
from ..options import StreamOptions
from ..text import normalize_word
from .planner import Update

FINAL_CONTEXT_WORDS = 64
"""Final words a hypothesis is checked against for a loop back through them (a window's forced
prefix holds fewer: windows are trimmed at ``ANCHOR_TRIM_S``)."""

PAUSE_WORD_SLACK_S = 0.05
"""How far past the start of a pause a word of the window that hears the pause may start (Whisper's
word starts lag the sound a little); a later one is speech resuming, or the padding's invention."""


class CommitRule:
    """The commit group of :class:`~rtwhisper.options.StreamOptions` applied to one stream's merger."""

    def __init__(self, options: StreamOptions, merger: OverlapMerger) -> None:
        self.options = options
        self.merger = merger

    def words(self, hypothesis: Hypothesis, update: Update) -> list[Word]:
        """The hypothesis's words on the stream's clock, cleaned (rule 1)."""
        window = update.window
        words = [w.shifted(window.start_s) for w in self._strip_prompt_echo(hypothesis.words, update.request)]
        committed = self.merger.committed
        words = drop_hallucinated_tail([_clamp(w, window) for w in words], window.end_s,
                                       timed=self.options.task == "transcribe",
                                       final=committed[max(0, update.committed - FINAL_CONTEXT_WORDS):update.committed])
        if update.speech_end_s is not None:  # a pause window speaks for the speech before the pause only
            words = [w for w in words if w.start_s < update.speech_end_s + PAUSE_WORD_SLACK_S]
        return words

    def step(self, words: list[Word], update: Update, *, silent: bool, language_known: bool,
             next_window_start_s: float) -> tuple[MergeStep, bool]:
        """(what the hypothesis makes final and partial, whether it heard a pause as it started)."""
        window = update.window
        closing = update.kind != "update"
        # One sure hypothesis commits only once the language is known (given, or two detections
        # agreed): before that it may be sure in the wrong one (LJ001-0011's first 0.5 s read
        # as Turkish at 0.95).
        probability = self.options.commit_probability
        confident = probability is not None and probability < 1.0 and self.options.task == "transcribe" \
            and language_known
        # Without a prefix, a window that starts before the commit point hears final words
        # again (a window pushed past its anchor by the maximum length): the merger drops them.
        committed = self.merger.committed
        last_end_s = committed[update.committed - 1].end_s if update.committed else 0.0
        after_prefix = bool(update.request.options.prefix) or window.start_s >= last_end_s - 1e-6
        if len(committed) > update.committed:
            # The window went ahead while the one before it was decoded, and that one made these
            # words final: the decoder was not forced through them and heard them again. Taken
            # off by text; spelled differently, the merger drops them by time and text.
            repeated = repeated_head(committed[update.committed:], words)
            words, after_prefix = (words[repeated:], after_prefix) if repeated else (words, False)
        hears_pause = update.speech_end_s is not None and not closing
        if closing and silent and not words:
            # A closing decode that Whisper's no-speech rule set aside is no evidence against the
            # words earlier windows heard: nothing is merged, and the utterance's end makes the
            # pending words final as they are. (espeak_ko.wav's closing window, its speech and 16 s
            # of silence, read as silence, and the words its partials had shown were taken back.)
            return MergeStep((), self.merger.pending, self.merger.commit_s), hears_pause
        return self.merger.update(
            words, final=closing, after_prefix=after_prefix,
            confident_before_s=window.end_s - self.options.commit_margin_s if confident else None,
            min_probability=1.0 if probability is None else probability,
            force_before_s=None if hears_pause else next_window_start_s,
            heard_until_s=window.end_s, commit=not hears_pause), hears_pause

    def _strip_prompt_echo(self, words: tuple[Word, ...], request: DecodeRequest) -> tuple[Word, ...]:
        """Drop a leading run of words that only repeats the initial prompt.

        Whisper sometimes "continues" a prompt by reciting it, most of all over silence;
        those words are not in the audio.
        """
        prompt = self.options.initial_prompt
        if not prompt or not words or request.options.prefix:
            return words
        target = normalize_word(prompt)
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


def _clamp(word: Word, window: Window) -> Word:
    start = min(max(word.start_s, window.start_s), window.end_s)
    end = min(max(word.end_s, start), window.end_s)
    return Word(word.text, start, end, word.probability)
