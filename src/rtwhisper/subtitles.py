"""Final words → subtitle cues, and SRT / WebVTT text.

Cues follow common captioning practice (the BBC and Netflix guidelines): at most 42
characters a line and two lines a cue, at most 7 s on screen, and a new cue after a
sentence end or a pause of 1 s or more. Cue times are the first word's start and the last
word's end, so they match the words.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .events import Word, join_words

MAX_CUE_CHARS = 84
MAX_CUE_S = 7.0
PAUSE_S = 1.0


@dataclass(frozen=True)
class Cue:
    start_s: float
    end_s: float
    text: str


def cues_from_words(words: Iterable[Word]) -> list[Cue]:
    """Group words into cues (see the module docstring)."""
    cues: list[Cue] = []
    current: list[Word] = []
    for word in words:
        if current:
            text = join_words([*current, word])
            too_long = len(text) > MAX_CUE_CHARS or word.end_s - current[0].start_s > MAX_CUE_S
            paused = word.start_s - current[-1].end_s >= PAUSE_S
            ended = current[-1].text.rstrip().endswith((".", "?", "!", "。", "？", "！"))
            if too_long or paused or ended:
                cues.append(Cue(current[0].start_s, current[-1].end_s, join_words(current)))
                current = []
        current.append(word)
    if current:
        cues.append(Cue(current[0].start_s, current[-1].end_s, join_words(current)))
    return cues


def _timestamp(seconds: float, separator: str) -> str:
    ms = max(0, round(seconds * 1000))
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{separator}{ms:03d}"


def _wrap(text: str, width: int = MAX_CUE_CHARS // 2) -> str:
    if len(text) <= width:
        return text
    cut = text.rfind(" ", 0, width + 1)
    if cut <= 0:
        return text
    return text[:cut] + "\n" + text[cut + 1:]


def to_srt(cues: Iterable[Cue]) -> str:
    """SubRip text: numbered cues, ``HH:MM:SS,mmm --> HH:MM:SS,mmm``."""
    blocks = [f"{i}\n{_timestamp(c.start_s, ',')} --> {_timestamp(c.end_s, ',')}\n{_wrap(c.text)}\n"
              for i, c in enumerate(cues, 1)]
    return "\n".join(blocks)


def to_vtt(cues: Iterable[Cue]) -> str:
    """WebVTT text: a ``WEBVTT`` header and ``HH:MM:SS.mmm --> HH:MM:SS.mmm`` cues."""
    blocks = [f"{_timestamp(c.start_s, '.')} --> {_timestamp(c.end_s, '.')}\n{_wrap(c.text)}\n" for c in cues]
    return "WEBVTT\n\n" + "\n".join(blocks)
