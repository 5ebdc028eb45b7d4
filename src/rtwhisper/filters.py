"""Hypothesis filters: the decoder artefacts Whisper leaves at the end of a window, removed before
a hypothesis is merged (:mod:`rtwhisper.stream.commit`)."""

from __future__ import annotations

from collections.abc import Sequence

from .events import Word
from .text import normalize_word

SQUEEZED_WORD_S = 0.06
"""Mean length under which a tail of words was squeezed into no audio (the decoder ran out of it)."""
TIMED_WORD_S = 0.15
"""A word this long was aligned to real audio."""


def drop_hallucinated_tail(words: Sequence[Word], window_end_s: float, *, timed: bool = True,
                           final: Sequence[Word] = ()) -> list[Word]:
    """Remove the decoder artefacts Whisper leaves at the end of a window.

    * Words squeezed into no time at the end (a tail of two or more words averaging under
      60 ms, or one zero-length word at the window's very end): the decoder ran out of
      audio and kept writing; the aligner found no frames for them. Only with ``timed``:
      translated words are aligned to speech in another language, and their times say
      little, so this rule is off for translation.
    * A trailing run of three or more words that repeats the run just before it while
      taking under half its time, or no time at all: the classic repetition loop. A
      speaker who repeats a phrase takes about as long the second time.
    * The same loop through the text already final (``final``, the words before and in the
      forced prefix): a run of three or more words that repeats a run of them in under half
      its time. The hypothesis is cut where the run starts. (Seen on a Zeroth clip with beam
      5: forced through a whole sentence, the decoder wrote it again, 13 words in 1.6 s that
      had taken 7 s, and the end of the stream made them final.)
    """
    out = _cut_repeat_of_final(list(words), final)
    for n in range(len(out) // 2, 2, -1):
        first, second = out[-2 * n : -n], out[-n:]
        if [normalize_word(w.text) for w in first] != [normalize_word(w.text) for w in second]:
            continue
        if _replayed(first, second):
            out = out[:-n]
            break
    # A tail of words with (almost) no duration has no acoustic evidence behind it. The tail
    # ends (going back) at the first word with a real duration: otherwise a long loop of
    # zero-length words would pull the average of real words before it under the bar and
    # take them too (seen: 46 squeezed "I'm sorry"s took "ladled out in thick, peppered
    # flour-fatten sauce." with them).
    if timed:
        total, cut = 0.0, len(out)
        for i in range(len(out) - 1, -1, -1):
            duration = out[i].end_s - out[i].start_s
            if duration >= TIMED_WORD_S:
                break
            total += duration
            count = len(out) - i
            if count >= 2 and total / count < SQUEEZED_WORD_S:
                cut = i
        out = out[:cut]
    while out and out[-1].end_s - out[-1].start_s < 0.02 and out[-1].start_s >= window_end_s - 0.05:
        out.pop()
    return out


def _cut_repeat_of_final(words: list[Word], final: Sequence[Word]) -> list[Word]:
    """``words`` up to the first run of three or more that repeats a run of ``final`` in under half its time."""
    if len(words) < 3 or len(final) < 3:
        return words
    keys = [normalize_word(w.text) for w in final]
    new = [normalize_word(w.text) for w in words]
    for i in range(len(words) - 2):
        if not new[i]:
            continue
        for j in range(len(final)):
            n = 0
            while i + n < len(words) and j + n < len(final) and new[i + n] and new[i + n] == keys[j + n]:
                n += 1
            if n >= 3 and _replayed(final[j:j + n], words[i:i + n]):
                return words[:i]
    return words


def _replayed(first: Sequence[Word], again: Sequence[Word]) -> bool:
    """Whether ``again``, the same words as ``first``, took under half their time or none at all.

    A decoder loop, not speech: a speaker who repeats a phrase takes about as long again.
    """
    again_s = again[-1].end_s - again[0].start_s
    return again_s < 0.5 * (first[-1].end_s - first[0].start_s) or again_s < SQUEEZED_WORD_S * len(again)
