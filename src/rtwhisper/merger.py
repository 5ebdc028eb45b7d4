"""Overlap de-duplication and confirmation: many window hypotheses → one append-only transcript.

Each window's words arrive with stream-clock times. The merger

1. drops what the overlap produced twice — words that lie before the commit point by
   time (midpoint rule, tolerant of timestamp jitter), a trailing fragment of the last
   committed word, and an n-gram that repeats the committed tail by text near the commit
   point (whisper_streaming's ``HypothesisBuffer.insert``: n ≤ 5, within 1 s; Whisper's
   word times jitter by several hundred milliseconds between windows);
2. confirms the longest common prefix of this hypothesis and the previous one
   (LocalAgreement-2, Liu et al. 2020, as used by whisper_streaming): a word is final
   once two consecutive windows, the second with more right context, agree on it — or,
   with ``agreement_span_s``, this one and the newest that heard at least that much less
   (updates faster than the span keep the span's evidence); with ``agreement_margin_s``
   the earlier one must have heard that far past the word's end — a word Whisper doubts
   (``DOUBT_PROBABILITY``) needs a third hypothesis to agree, and none in between to read
   it otherwise;
   and, before agreement, a leading word this one hypothesis is sure of: probability at
   least ``COMMIT_PROBABILITY``, ending ``COMMIT_MARGIN_S`` before its audio does;
3. keeps pending words that a new hypothesis skipped — at its start, in a silent gap, or
   squashed into one stretched word (Whisper drops words of an input now and then; the
   previous window heard them, and losing them is worse);
4. optionally forces words ending before a given time to final, which bounds latency and
   window length when hypotheses keep disagreeing; at the end of the stream everything
   left is final.

Finals are append-only and their times never go backwards.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .events import Word
from .text import PHRASE_ENDS, has_hangul, normalize_word

_SKIP_TOLERANCE_S = 0.1
_DRAWN_OUT_S = 0.5
_WORD_OVERLAP_S = 0.3  # how far a drawn-out word's end may run into the next word's start
COMMIT_PROBABILITY = 0.9
"""Probability at which one hypothesis makes a word final without waiting for a second one to
agree (with ``COMMIT_MARGIN_S``); WhisperLiveKit commits words above 0.95 without waiting.

Measured on the shared English clips (base, beam 1, 2 cores, virtual clock, back to back):
final p50 1.08 → 0.97 s, p90 1.57 → 1.49 s at the same WER (4.80 %; offline 5.30 %); 0.8 cost
0.95 WER points for 0.02 s more, and 0.7 (margin 0.2 s) 0.64 points for 0.09 s; the Korean
clips read the same (Korean words seldom reach 0.9). In real time (one stream, the long LJ
file, a real server, two runs of each alternating): final p50 1.11 / 1.14 → 1.00 / 1.02 s.
The 0.5 s presets set it; the processor's default is agreement alone: with 2 s updates the
second hypothesis hears much more and catches errors (the long LJ file: 3.94 % WER with one
sure hypothesis, 2.51 % with agreement alone)."""

AGREEMENT_MARGIN_S = 0.3
"""How far past a word's end the earlier of two agreeing hypotheses must have heard, for
updates faster than 0.5 s (``agreement_margin_s``; the processor's default is 0: any earlier
hypothesis that wrote the word).

Two windows 0.3 s apart that both end inside a long word both read its first part as a word:
LJ001-0016's "therefore" came out "there." (ending 0.16 s before its window's end), then
"there for", and LocalAgreement-2 made "there" final; the closing decode, forced through it,
read "fore." (0.29). The sure-hypothesis rule did not take it (0.41); agreement did. With 0.5 s
updates the second window heard the whole word. Measured with 0.3 s updates (``base``, 2 Zen 4
cores, with ``DOUBT_SPAN_S``): three grid phases of the English clips, free compute, 4.53 % WER
with no margin, 3.73 % with 0.2 s and 3.81 % with 0.3 s (0.5 s updates: 3.64 %); but the long
LJ file in real time, one stream, two runs each, read 3.91 / 3.20 % from offline with 0.2 s
and 1.42 / 2.85 % with 0.3 s (0.5 s updates: 1.42 / 1.42 %), final p50 0.91 / 0.87 s and 0.98 /
0.93 s (1.01 / 1.01 s). Not a preset's: ``docs/presets.md``."""

MARGIN_GAP_S = 0.5
"""``agreement_margin_s`` holds only for two hypotheses that heard less than this apart: at
0.5 s LocalAgreement-2 keeps the words without it, and a margin there only delays them. The
English clips over three grid phases (``base``, free compute, 0.5 s updates) read 3.73 % WER
with a 0.3 s margin against 3.64 % without, final p50 0.78 s against 0.66 s. With updates
that come 0.3 s apart while the engine has room and 0.5 s apart under load
(``spare_chunk_duration=0.3``) the margin guards the close pairs alone."""

COMMIT_MARGIN_S = 0.1
"""How far before the end of its window's audio a word must end for one hypothesis to make it
final: a word cut by the window's end ends where the audio does, and is not final (nor is a
hypothesis' last word). With 0.4 s a word seldom ended that early in the first window that
heard it, so the second hypothesis came first anyway (0.08 s of p50 at 0.9)."""

DOUBT_PROBABILITY = 0.3
"""Probability under which Whisper doubts a word it wrote: two agreeing hypotheses do not make
it final (a third must agree too), and an utterance that ends on one gets a decode of its own.

Two windows that hear a word's first sound the same way guess it the same way: jfk's "what
your country", after the pause behind "Ask not.", came out "Like" (0.17, then 0.23) in the
first two windows of the new phrase, and LocalAgreement-2 made it final; the third window,
hearing the whole word, reads "What". Measured on the shared set: ``docs/streaming.md``."""

DOUBT_SPAN_S = 1.0
"""How much less audio than the hypothesis that would make a doubted word final its third
agreeing hypothesis must have heard: two updates of 0.5 s back, as LocalAgreement-2 at the
0.5 s presets has it. Faster updates hear too little more each: at 0.3 s jfk's "Ask not",
after a pause, came out "is" (0.03–0.05) in four windows running, the third agreeing one only
0.6 s after the first, before the pause's closing decode (which reads "Ask") came.

Every hypothesis in that second must agree, not just the two ends of it: with 0.3 s updates
jfk's second "ask" (resampled from 24 kHz, as the OpenAI Realtime path hears it) came out
"As" (0.15), "Ask" (0.28), "As", "As", "As" (0.07–0.13), and the first, fourth and fifth made
"As" final while the second said otherwise; held, it waited for "Ask" (0.51, 0.44). At 0.5 s
updates the only hypothesis in between is the reference, which agrees anyway: the 0.5 s presets
are unchanged, and the shared clips over three grid phases read the same at 0.3 s as well
(English 3.81 % WER, Korean 9.14 % CER, ``base``)."""

def _heard_after(words: Sequence[Word], time_s: float) -> list[Word]:
    """The words whose middle lies at or after ``time_s``: those a commit point there leaves open
    (the midpoint rule, tolerant of timestamp jitter)."""
    return [w for w in words if (w.start_s + w.end_s) / 2 >= time_s]


def _agreed(previous: Sequence[Word], current: Sequence[Word]) -> int:
    """How many leading words of ``current`` the ``previous`` hypothesis agrees with (LocalAgreement).

    Words agree when their keys (:func:`normalize_word`) are equal. Korean spacing varies from
    one decode to the next ("했다" / "했 다", "할 수" / "할수"), so where Hangul is involved the
    comparison runs on the characters: a word agrees when its characters come next in the
    previous hypothesis, wherever that one put its spaces.
    """
    before = [normalize_word(w.text) for w in previous]
    text = "".join(before)
    word_at: dict[int, str] = {}  # where each previous word starts in ``text``
    start = 0
    for key in before:
        word_at[start] = key
        start += len(key)
    position = agreed = 0
    for word in current:
        key = normalize_word(word.text)
        if text[position:position + len(key)] != key:
            break
        if not has_hangul(key) and word_at.get(position) != key:
            break  # outside Korean, words agree whole, as before ("the reader" is not "there ader")
        position += len(key)
        agreed += 1
    return agreed


def repeated_head(final: Sequence[Word], words: Sequence[Word]) -> int:
    """How many leading ``words`` spell out ``final`` exactly (0 unless all of it, by
    :func:`normalize_word` keys and, for Hangul, whatever the spacing)."""
    same = _agreed(final, words)
    spelled = "".join(normalize_word(w.text) for w in words[:same])
    return same if same and spelled == "".join(normalize_word(w.text) for w in final) else 0


@dataclass(frozen=True)
class MergeStep:
    """What one window changed: newly final words, and the words still pending."""

    committed: tuple[Word, ...]
    partial: tuple[Word, ...]
    commit_s: float


class OverlapMerger:
    """Holds the committed transcript and the previous hypothesis; does no recognition."""

    def __init__(self, *, dedup_window_s: float = 1.0, max_ngram: int = 5, agreement_span_s: float = 0.0,
                 agreement_margin_s: float = 0.0) -> None:
        self.committed: list[Word] = []
        self.commit_s = 0.0
        self._pending: list[Word] = []
        self._dedup_window_s = dedup_window_s
        self._max_ngram = max_ngram
        self.agreement_span_s = agreement_span_s
        self.agreement_margin_s = agreement_margin_s
        # Earlier hypotheses' unconfirmed words, newest last, each with how far its window heard:
        # the agreement's other side when hypotheses come faster than ``agreement_span_s``, and
        # the third hypothesis that a doubted word needs.
        self._earlier: list[tuple[float, list[Word]]] = []

    @property
    def pending(self) -> tuple[Word, ...]:
        """The previous hypothesis' words that are not final yet."""
        return tuple(self._pending)

    def advance(self, to_s: float) -> None:
        """Move the commit point over audio that holds no words (silence, noise)."""
        if to_s > self.commit_s:
            self.commit_s = to_s
            self._pending = _heard_after(self._pending, to_s)
            self._forget_committed([])

    def boundary_s(self, lo_s: float, hi_s: float, *, min_pause_s: float = 0.3) -> tuple[float, bool] | None:
        """The latest point between two committed words in ``[lo_s, hi_s]``.

        Returns ``(time, is_pause)``: the middle of the latest pause (a gap of at least
        ``min_pause_s`` or a sentence end) if there is one in range, else the latest plain
        word boundary, else ``None``. A window that starts there starts where Whisper's
        training segments start: between words, best between phrases.
        """
        words = self.committed
        plain: float | None = None
        for i in range(len(words) - 1, 0, -1):
            previous, following = words[i - 1], words[i]
            point = previous.end_s + max(following.start_s - previous.end_s, 0.0) / 2
            if point > hi_s:
                continue
            if point < lo_s:
                break
            gap = following.start_s - previous.end_s
            if gap >= min_pause_s or previous.text.rstrip().endswith(PHRASE_ENDS):
                return point, True
            if plain is None:
                plain = point
        return (plain, False) if plain is not None else None

    def update(self, words: Sequence[Word], *, force_before_s: float | None = None, final: bool = False,
               after_prefix: bool = False, confident_before_s: float | None = None,
               min_probability: float = 1.0, heard_until_s: float | None = None,
               commit: bool = True) -> MergeStep:
        """Merge one window's hypothesis; return what became final and what is pending.

        ``after_prefix``: the decoder was forced through the final text, so every word is new
        (only its times are kept from running back past the commit point). Otherwise words the
        overlap produced again are dropped first. ``confident_before_s``: besides agreement, a
        leading word is final when it ends before this time with at least ``min_probability``.
        ``heard_until_s``: where this window's audio ends; with ``agreement_span_s``, the
        hypothesis agreed with is the newest one that heard at least that much less.
        ``commit=False``: nothing becomes final; the words are pending, and the hypothesis is kept
        for later ones to agree with (a window that hears a pause as it starts: its words end an
        utterance at the endpoint, but a pause can be a stop inside a word, "just | ly").
        """
        if after_prefix:
            new = list(words)
        else:
            new = self._drop_already_committed(list(words))
        if new:
            skipped: list[Word] = []
            if not after_prefix:
                # Whisper sometimes skips the first words of its input. Words the previous
                # hypothesis heard before this one's first word are kept, not lost. (After a
                # forced prefix the decoder starts right where the final text stops, and a
                # word's time right after the prefix is the least reliable: by time, a word
                # heard again would look skipped.)
                first = new[0].start_s
                skipped = [
                    w for w in self._pending
                    if (w.start_s + w.end_s) / 2 < first - _SKIP_TOLERANCE_S
                    and w.end_s <= first + (_WORD_OVERLAP_S if w.end_s - w.start_s >= _DRAWN_OUT_S
                                            else _SKIP_TOLERANCE_S)
                ]
            if not skipped:
                new = self._restore_squeezed_head(new)
            new = self._restore_inner_skips(skipped + new)
        agreed = self._confirmed(new, heard_until_s)
        count = len(new) if final else agreed
        if confident_before_s is not None and not final:
            while count < len(new) and new[count].end_s <= confident_before_s \
                    and new[count].probability >= min_probability:
                count += 1
        if not final:
            # The last word heard may still grow: its punctuation, or the rest of a word cut by
            # the end of the audio ("flour-fatten" + "ed"). It is final only once a word follows.
            count = max(0, min(count, len(new) - 1))
        if force_before_s is not None and not final:
            while count < len(new) and new[count].end_s <= force_before_s:
                count += 1
        if not commit and not final:
            count = 0
        committed = self._commit(new[:count])
        self._pending = new[count:]
        if heard_until_s is not None:
            self._earlier.append((heard_until_s, list(self._pending)))
            self._prune()
        return MergeStep(tuple(committed), tuple(self._pending), self.commit_s)

    def _confirmed(self, new: list[Word], heard_until_s: float | None) -> int:
        """How many leading words of ``new`` the agreement makes final.

        Those the hypothesis before agrees with (:meth:`_reference`), up to the first word under
        ``DOUBT_PROBABILITY`` that the hypotheses back to a third one (:meth:`_older_index`) do
        not all agree with as well.
        With ``agreement_margin_s``, the hypothesis before vouches only for the words that end
        that far before its audio did (:data:`AGREEMENT_MARGIN_S` says why) when it heard less
        than :data:`MARGIN_GAP_S` less than this one.
        """
        index = self._reference_index(heard_until_s)
        reference = self._reference(index, heard_until_s)
        if self.agreement_margin_s > 0 and index is not None and heard_until_s is not None:
            heard_s = self._earlier[index][0]
            if heard_until_s - heard_s < MARGIN_GAP_S - 1e-6:
                reference = [w for w in reference if w.end_s <= heard_s - self.agreement_margin_s]
        agreed = _agreed(reference, new)
        doubted = next((i for i, w in enumerate(new[:agreed]) if w.probability < DOUBT_PROBABILITY), agreed)
        if doubted < agreed:
            # The third (``DOUBT_SPAN_S`` back) and every hypothesis since it read the doubted word so.
            older = None if index is None or heard_until_s is None else self._older_index(index, heard_until_s)
            if older is None or any(_agreed(words, new) <= doubted for _, words in self._earlier[older:]):
                return doubted
        return agreed

    def _reference(self, index: int | None, heard_until_s: float | None) -> list[Word]:
        """The hypothesis that a new one must agree with: the previous one (LocalAgreement-2),
        or with ``agreement_span_s`` the newest that heard at least that much less audio
        (``index``, :meth:`_reference_index`'s).

        Updates may come as fast as the machine decodes, but two hypotheses a quarter second
        apart hear almost the same audio and agree on a word cut at the end of both ("and
        graved", "there fore"); the span keeps the evidence what it is at 0.5 s updates while
        the agreeing hypothesis comes sooner.
        """
        if heard_until_s is None or self.agreement_span_s <= 0:
            return self._pending
        return self._earlier[index][1] if index is not None else []

    def _reference_index(self, heard_until_s: float | None) -> int | None:
        """Where :meth:`_reference`'s hypothesis is in the earlier ones (``None``: none, or no heard
        times): the newest that heard a whole span less (without a span: the newest)."""
        if heard_until_s is None:
            return None
        return self._newest_heard_by(len(self._earlier), heard_until_s - self.agreement_span_s)

    def _older_index(self, reference: int, heard_until_s: float) -> int | None:
        """Where a doubted word's third hypothesis is (``None`` if there was none): before the
        reference, a span less than it heard and ``DOUBT_SPAN_S`` less than the new one. Without a
        span the reference is the latest earlier hypothesis (the pending words), and this the one
        before it at 0.5 s updates."""
        latest_s = min(self._earlier[reference][0] - self.agreement_span_s, heard_until_s - DOUBT_SPAN_S)
        return self._newest_heard_by(reference, latest_s)

    def _newest_heard_by(self, end: int, latest_s: float) -> int | None:
        """The newest of the first ``end`` earlier hypotheses whose audio ended by ``latest_s``."""
        for i in range(end - 1, -1, -1):
            if self._earlier[i][0] <= latest_s + 1e-6:
                return i
        return None

    def _forget_committed(self, committed: list[Word]) -> None:
        """Drop from the earlier hypotheses what is final now, and those the span no longer needs."""
        if not self._earlier:
            return
        kept: list[tuple[float, list[Word]]] = []
        for until, words in self._earlier:
            same = _agreed(committed, words)
            if same == len(committed):
                words = words[same:]
            kept.append((until, _heard_after(words, self.commit_s)))
        self._earlier = kept
        self._prune()

    def _prune(self) -> None:
        """Keep the earlier hypotheses that the next one may agree with, and its doubted words' third.

        The next one hears at least as much as the latest, so its reference and third are no
        older than those of a hypothesis that heard just as much as the latest.
        """
        if not self._earlier:
            return
        heard_s = self._earlier[-1][0]
        reference = self._reference_index(heard_s)
        if reference is None:
            return
        older = self._older_index(reference, heard_s)
        self._earlier = self._earlier[older if older is not None else 0:]

    def _restore_squeezed_head(self, new: list[Word]) -> list[Word]:
        """Put back the pending words that the new hypothesis's first word was stretched over.

        Whisper sometimes drops a window's first word and times its next one from the window's
        start: "그는 1위절이" (0–0.94, 0.94–1.4 s) heard again as "1위절이" (0–1.4 s) on the
        shared test_ko.wav, and the lost "그는" never came back. By time the dropped word does
        not look skipped (the new first word covers it); by text and end it does: the new first
        word is a pending word, ends where that one ends, and starts where the pending run does.
        """
        if not new or not self._pending or new[0].start_s > self._pending[0].start_s + _SKIP_TOLERANCE_S:
            return new
        first = new[0]
        key = normalize_word(first.text)
        if normalize_word(self._pending[0].text) == key:
            return new  # the same first word ("that that" from a doubled pending word is no skip)
        for k, word in enumerate(self._pending[1:], start=1):
            if normalize_word(word.text) == key and abs(word.end_s - first.end_s) <= _SKIP_TOLERANCE_S:
                restored = Word(first.text, word.start_s, first.end_s, first.probability)
                return [*self._pending[:k], restored, *new[1:]]
        return new

    def _restore_inner_skips(self, new: list[Word]) -> list[Word]:
        """Put back pending words that the new hypothesis skipped after its start.

        Aligned by text, a run of pending words that the new hypothesis lacks was heard by
        the previous window and dropped by this one (Whisper skips a phrase now and then,
        mostly in a long catch-up window) when either its times fall in a silent gap between
        two new words, or the new hypothesis has one or two stretched words (over 1 s each)
        spanning it where the pending run has three or more: a phrase squashed into a word.
        Words the new hypothesis replaced one for one are not touched.
        """
        if not self._pending or not new:
            return new
        from difflib import SequenceMatcher

        pending = self._pending
        matcher = SequenceMatcher(None, [normalize_word(w.text) for w in pending],
                                  [normalize_word(w.text) for w in new], autojunk=False)
        out: list[Word] = []
        last = 0
        tol = _SKIP_TOLERANCE_S
        for op, i1, i2, j1, j2 in matcher.get_opcodes():
            missing = pending[i1:i2]
            if op == "delete" and 0 < j1 < len(new):
                start, end = new[j1 - 1].end_s, new[j1].start_s
            elif op == "replace" and j2 - j1 <= 2 and i2 - i1 >= 3 * (j2 - j1) and all(
                    w.end_s - w.start_s > 1.0 for w in new[j1:j2]):
                start, end = new[j1].start_s, new[j2 - 1].end_s
            else:
                continue
            if all(start - tol <= w.start_s and w.end_s <= end + tol for w in missing):
                out += new[last:j1] + missing
                last = j1
        return out + new[last:]

    def commit_before(self, time_s: float) -> MergeStep:
        """Make the pending words that end by ``time_s`` final (the windows to come cannot hear them)."""
        count = 0
        while count < len(self._pending) and self._pending[count].end_s <= time_s:
            count += 1
        committed = self._commit(list(self._pending[:count]))
        self._pending = self._pending[count:]
        return MergeStep(tuple(committed), tuple(self._pending), self.commit_s)

    def flush(self) -> MergeStep:
        """End of stream with no audio left to hear: the pending words become final."""
        committed = self._commit(self._pending)
        self._pending = []
        self._earlier = []
        return MergeStep(tuple(committed), (), self.commit_s)

    def _commit(self, words: list[Word]) -> list[Word]:
        out = []
        for w in words:
            start = max(w.start_s, self.commit_s)
            end = max(w.end_s, start)
            word = Word(w.text, start, end, w.probability)
            out.append(word)
            self.committed.append(word)
            self.commit_s = end
        if out:
            self._forget_committed(words)
        return out

    def _drop_already_committed(self, words: list[Word]) -> list[Word]:
        commit = self.commit_s
        words = _heard_after(words, commit)
        if not self.committed or not words:
            return words
        last = normalize_word(self.committed[-1].text)
        first = normalize_word(words[0].text)
        if words[0].start_s < commit and first != last and last.endswith(first):
            words = words[1:]  # the tail of the last committed word, cut by the window start
        if not words or words[0].start_s > commit + self._dedup_window_s:
            return words
        tail = [normalize_word(w.text) for w in self.committed[-self._max_ngram:]]
        head = [normalize_word(w.text) for w in words[: self._max_ngram]]
        for n in range(min(len(tail), len(head)), 0, -1):
            if tail[-n:] == head[:n]:
                return words[n:]
        return words
