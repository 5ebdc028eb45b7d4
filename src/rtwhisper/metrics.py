"""Word and character error rates with one documented text normalizer.

The normalizer (used by the tests and the benchmarks alike): Unicode NFKC, case-folded,
hyphens and slashes become spaces, other punctuation and symbols are removed, whole
numbers written in digits become English words as they are read: ordinals ("15th" →
"fifteenth"), years from 1100 to 1999 in pairs ("1455" → "fourteen fifty five"), other whole
numbers in full ("42" → "forty two"); in text with Hangul, numbers become their Sino-Korean
reading instead ("2018년" → "이천십팔 년", as the Zeroth corpus writes "이천 십 팔 년"); and runs of
whitespace collapse. WER counts words; CER counts characters with spaces ignored (the usual
measure for Korean, whose spacing varies), so the metric measures recognition, not formatting.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
         "fifteen sixteen seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def number_to_words(n: int) -> str:
    """English words for a whole number below one trillion (larger ones stay as digits)."""
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    if n < 1000:
        rest = n % 100
        return _ONES[n // 100] + " hundred" + ("" if rest == 0 else " " + number_to_words(rest))
    for size, name in ((10**9, "billion"), (10**6, "million"), (1000, "thousand")):
        if n >= size:
            if n // size >= 1000:
                break
            rest = n % size
            return number_to_words(n // size) + " " + name + ("" if rest == 0 else " " + number_to_words(rest))
    return str(n)


_ORDINAL_ENDINGS = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
                    "nine": "ninth", "twelve": "twelfth"}


def _ordinal(words: str) -> str:
    head, _, last = words.rpartition(" ")
    if last in _ORDINAL_ENDINGS:
        last = _ORDINAL_ENDINGS[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return f"{head} {last}".strip()


def _spoken_number(match: re.Match[str]) -> str:
    digits, suffix = match.group(1), (match.group(2) or "")
    if len(digits) > 12:
        return match.group(0)
    n = int(digits)
    if suffix:
        return " " + _ordinal(number_to_words(n)) + " "
    if len(digits) == 4 and 1100 <= n <= 1999 and n % 100 != 0:
        hundreds, rest = divmod(n, 100)
        return f" {number_to_words(hundreds)} {'oh ' if rest < 10 else ''}{number_to_words(rest)} "
    return " " + number_to_words(n) + " "


_KO_DIGITS = "영일이삼사오육칠팔구"


def korean_number(n: int) -> str:
    """The Sino-Korean reading of a whole number, without spaces ("2018" → "이천십팔").

    One before 십, 백, 천 and 만 is not read (십, 백, 천, 만; but 일억, 일조), as numbers are spoken.
    """
    if n == 0:
        return "영"
    out = []
    for size, name in ((10**12, "조"), (10**8, "억"), (10**4, "만"), (1, "")):
        group, n = divmod(n, size)
        if group:
            words = ""
            for value, unit in ((1000, "천"), (100, "백"), (10, "십")):
                digit, group = divmod(group, value)
                if digit:
                    words += ("" if digit == 1 else _KO_DIGITS[digit]) + unit
            words += _KO_DIGITS[group] if group else ""
            out.append(("" if words == "일" and name == "만" else words) + name)
    return "".join(out)


def _has_hangul(text: str) -> bool:
    return any("\uac00" <= ch <= "\ud7a3" for ch in text)


def normalize_text(text: str) -> str:
    """The one normalizer: see the module docstring."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = re.sub(r"(?<=\d),(?=\d{3})", "", text)
    text = re.sub(r"[-/–—]", " ", text)
    if _has_hangul(text):
        text = re.sub(r"\d{1,16}", lambda m: " " + korean_number(int(m.group(0))) + " ", text)
    text = re.sub(r"(\d+)(st|nd|rd|th)?\b", _spoken_number, text)
    text = "".join(ch if not unicodedata.category(ch).startswith(("P", "S")) else " " for ch in text)
    return " ".join(text.split())


def edit_distance(reference: Sequence[str], hypothesis: Sequence[str]) -> int:
    """Levenshtein distance between two token sequences."""
    previous = list(range(len(hypothesis) + 1))
    for i, ref in enumerate(reference, 1):
        current = [i]
        for j, hyp in enumerate(hypothesis, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ref != hyp)))
        previous = current
    return previous[-1]


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate of ``hypothesis`` against ``reference``, both normalized (0.0–1.0+)."""
    ref = normalize_text(reference).split()
    hyp = normalize_text(hypothesis).split()
    return edit_distance(ref, hyp) / max(len(ref), 1)


def cer(reference: str, hypothesis: str) -> float:
    """Character error rate, spaces ignored, both normalized."""
    ref = normalize_text(reference).replace(" ", "")
    hyp = normalize_text(hypothesis).replace(" ", "")
    return edit_distance(list(ref), list(hyp)) / max(len(ref), 1)
