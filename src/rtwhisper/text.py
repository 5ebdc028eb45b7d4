"""Words as text: the comparison key the merger and filters agree on, and where sentences end.

One place for what counts as the same word (:func:`normalize_word`) and as the end of a sentence
(:data:`SENTENCE_ENDS`: the endpoint rule, the turn detector and the command line's line breaks).
"""

from __future__ import annotations

import unicodedata

SENTENCE_ENDS = (".", "?", "!", "。", "？", "！", "…")
"""Marks that end a sentence (Whisper writes the full-width ones in Chinese and Japanese)."""
PHRASE_ENDS = (*SENTENCE_ENDS, ",", ";", ":", "，", "、")


def normalize_word(text: str) -> str:
    """Comparison key of a word: case-folded, punctuation and spaces removed."""
    key = "".join(ch for ch in text.casefold() if not unicodedata.category(ch).startswith(("P", "Z", "S")))
    return key or text.strip().casefold()


def has_hangul(text: str) -> bool:
    return any("\uac00" <= ch <= "\ud7a3" or "\u1100" <= ch <= "\u11ff" or "\u3130" <= ch <= "\u318f"
               for ch in text)
