"""Words from Whisper's tokens: their times from the alignment, their punctuation, and the checks
that a decode went wrong (a loop back through its context, an anomalous run of words)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..events import Word

ANOMALY_SCORE = 3.0
"""Word-timing anomaly at which a window Whisper thinks silent is read as silence (``_anomalous``)."""
_SENTENCE_MARKS = ".。!！?？"
_PREPEND_PUNCTUATION = "\"'“¿([{-"
_APPEND_PUNCTUATION = "\"'.。,，!！?？:：”)]}、"


LOOP_BACK_TOKENS = 4
"""Tokens in a row that a decode repeats from its prompt or the window's final text to be taken
as having gone back to where they were said (``_loops_back``)."""


def _loops_back(tokens: list[int], context: list[int], n: int = LOOP_BACK_TOKENS) -> bool:
    """Whether ``tokens`` repeat ``n`` tokens in a row of ``context``.

    Forced through the last final words only, the decoder sometimes finds them (or words like
    them) earlier in the window and reads on from there: on LJ001-0005, forced through "As the
    invention of", the closing decode went on "movable metal letters in the middle of…" from
    the sentence's start "The invention of movable metal letters", and the merger, which drops
    a hypothesis that repeats final words, lost "the art of printing." A repeat that was really
    said costs a second decode, not a word.
    """
    if len(tokens) < n or len(context) < n:
        return False
    said = {tuple(context[i:i + n]) for i in range(len(context) - n + 1)}
    return any(tuple(tokens[i:i + n]) in said for i in range(len(tokens) - n + 1))


def _forced_start(tokenizer: Any, prefix: list[int], words: int | None) -> int:
    """Where in ``prefix`` the forced part starts: at the last ``words`` words (``FORCED_PREFIX_WORDS``).

    Cut between words as faster-whisper's tokenizer splits them (on spaces; on whole Unicode
    characters for languages written without them), so neither part holds half a Hangul
    syllable; punctuation does not count as a word. ``None`` forces the whole prefix.
    """
    if words is None or not prefix:
        return 0
    _, word_tokens = tokenizer.split_to_word_tokens(list(prefix))
    cut = len(prefix)
    counted = 0
    for toks in reversed(word_tokens):
        if counted == words:
            break
        cut -= len(toks)
        if any(ch.isalnum() for ch in tokenizer.decode(toks)):
            counted += 1
    return cut


def _timed_words(tokenizer: Any, prefix: list[int], tokens: list[int], alignment: Any) -> tuple[Word, ...]:
    """The words after ``prefix``, timed by the alignment of ``prefix + tokens``.

    Words are split by faster-whisper's tokenizer (on spaces, or on whole Unicode characters for
    languages written without them), so a word never holds half a Hangul syllable; a last word
    whose bytes are incomplete (the decoder stopped inside a character) is dropped. Punctuation
    joins its word, as in Whisper's ``merge_punctuations``.
    """
    text_tokens = [*prefix, *tokens]
    words, word_tokens = tokenizer.split_to_word_tokens([*text_tokens, tokenizer.eot])
    if len(word_tokens) <= 1:
        return ()
    pairs = alignment.alignments
    if not pairs:
        return ()
    text_indices = np.array([p[0] for p in pairs])
    time_indices = np.array([p[1] for p in pairs])
    jumps = np.pad(np.diff(text_indices), (1, 0), constant_values=1).astype(bool)
    jump_times = time_indices[jumps] / 50.0  # encoder frames: 20 ms
    probabilities = np.asarray(alignment.text_token_probs, dtype=np.float64)
    boundaries = np.pad(np.cumsum([len(t) for t in word_tokens[:-1]]), (1, 0))
    entries = []
    for k, (word, toks) in enumerate(zip(words[:-1], word_tokens[:-1], strict=True)):
        a, b = int(boundaries[k]), int(boundaries[k + 1])
        if b > len(jump_times) - 1 or a >= len(jump_times):
            break
        probability = float(np.mean(probabilities[a:b])) if a < b <= len(probabilities) else 0.0
        entries.append({"word": word, "tokens": toks, "first": a, "last": b,
                        "start": float(jump_times[a]), "end": float(jump_times[b]), "probability": probability})
    _merge_punctuation(entries)
    _truncate_long_words(entries)
    out = []
    for e in entries:
        if not e["word"] or e["last"] <= len(prefix):
            continue  # punctuation merged away, or a word of the prefix
        text = e["word"]
        if e["first"] < len(prefix):
            # A word the decoder continued past the prefix ("flour" + "-fatten"): only its new
            # part, and nothing if that is punctuation alone (a comma after a final word).
            text = tokenizer.decode(text_tokens[len(prefix):e["last"]])
            if not any(ch.isalnum() for ch in text):
                continue
        if "\ufffd" in text:
            continue  # incomplete bytes: half a character
        out.append(Word(text, e["start"], max(e["end"], e["start"]), e["probability"]))
    return tuple(out)


SHORTFALL_S = 0.4
"""Speech after a closing decode's last word beyond which the window is decoded again
(``DecodeOptions.speech_end_s``)."""


def _last_word_end_s(tokenizer: Any, prefix: list[int], tokens: list[int], alignment: Any) -> float:
    """Where a decode's last new word ends in its window (0 with none)."""
    if not tokens or alignment is None:
        return 0.0
    words = _timed_words(tokenizer, prefix, tokens, alignment)
    return words[-1].end_s if words else 0.0


def _anomalous(words: Sequence[Word]) -> bool:
    """faster-whisper's hallucination test (``hallucination_silence_threshold``, after openai/whisper).

    Each word scores 1 for a probability under 0.15, up to 2 for lasting under 133 ms and its
    excess over 2 s; the first eight words with letters in them are anomalous at 3 in all, or
    when nearly every one of them is.
    """
    spoken = [w for w in words if any(ch.isalnum() for ch in w.text)][:8]
    if not spoken:
        return False
    score = 0.0
    for w in spoken:
        duration = w.end_s - w.start_s
        score += (w.probability < 0.15) + max(0.0, 0.133 - duration) * 15 + max(0.0, duration - 2.0)
    return score >= ANOMALY_SCORE or score + 0.01 >= len(spoken)


def _merge_punctuation(entries: list[dict[str, Any]]) -> None:
    """Attach opening punctuation to the next word and closing punctuation to the previous one."""
    for i in range(len(entries) - 2, -1, -1):
        previous, following = entries[i], entries[i + 1]
        if previous["word"].startswith(" ") and previous["word"].strip() in _PREPEND_PUNCTUATION \
                and previous["word"].strip():
            following["word"] = previous["word"] + following["word"].lstrip()
            following["first"] = previous["first"]
            following["start"] = min(previous["start"], following["start"])
            previous["word"] = ""
    last = None
    for e in entries:
        if not e["word"]:
            continue
        if last is not None and not last["word"].endswith(" ") and e["word"] in _APPEND_PUNCTUATION:
            last["word"] += e["word"]
            last["last"] = e["last"]
            e["word"] = ""
            continue
        last = e


def _truncate_long_words(entries: list[dict[str, Any]]) -> None:
    """Whisper's word-timing fix at sentence boundaries: no word there longer than twice the median."""
    durations = np.array([e["end"] - e["start"] for e in entries if e["word"]])
    durations = durations[durations.nonzero()]
    if not len(durations):
        return
    max_duration = 2 * min(0.7, float(np.median(durations)))
    for i in range(1, len(entries)):
        e, previous = entries[i], entries[i - 1]
        if e["word"] and e["end"] - e["start"] > max_duration and previous["word"].rstrip().endswith(
                tuple(_SENTENCE_MARKS)):
            e["start"] = e["end"] - max_duration
