"""Transcript: the events a stream has given, numbered, and how far its finals cover the audio.

Every part that decides words sends them here; the numbering (``segment_id`` per final,
``sequence`` per event) and the final cover (finals cover ``[0, covered_s)`` without gaps, so
every fed sample is accounted for) are kept in one place.
"""

from __future__ import annotations

from collections.abc import Callable

from ..events import TranscriptEvent, Word, join_words
from .language import Detection


class Transcript:
    """Numbered events; ``ready`` holds those decided without a decode, until taken."""

    def __init__(self, language: Callable[[], Detection]) -> None:
        self._language = language
        self.segment_id = 0
        self.sequence = 0
        self.covered_s = 0.0
        """Finals cover [0, this)."""
        self.partial_text = ""
        """The text of the last partial shown ("" once a final settled it)."""
        self.has_text = False
        """The open utterance has shown words (a partial or a final)."""
        self.ready: list[TranscriptEvent] = []

    def take(self) -> list[TranscriptEvent]:
        events, self.ready = self.ready, []
        return events

    @property
    def said(self) -> bool:
        """Whether the open utterance has shown anything that its end must close."""
        return bool(self.partial_text or self.has_text)

    def partial(self, words: tuple[Word, ...], end_s: float) -> TranscriptEvent | None:
        """A partial of ``words`` up to ``end_s``, or ``None`` when it would only drop words from the end
        of the one shown: partials never flicker back to a shorter, older text (the next final settles it)."""
        text = join_words(words)
        if text == self.partial_text or self.partial_text.startswith(text):
            return None
        return self._event(False, words, self.covered_s, end_s)

    def final(self, words: tuple[Word, ...], until_s: float, *, end_of_utterance: bool = False) -> TranscriptEvent:
        """A final of ``words`` covering the audio from the last final to ``until_s``."""
        event = self._event(True, words, self.covered_s, max(until_s, self.covered_s),
                            end_of_utterance=end_of_utterance)
        self.covered_s = max(self.covered_s, until_s)
        return event

    def commit(self, words: tuple[Word, ...], until_s: float) -> TranscriptEvent:
        """Words final inside an utterance (it goes on)."""
        event = self.final(words, until_s)
        self.has_text = True
        return event

    def end_utterance(self, words: tuple[Word, ...], at_s: float, *, always: bool) -> list[TranscriptEvent]:
        """The utterance's last final, with ``end_of_utterance`` if anything was said (none if nothing
        was, unless ``always``: the stream's last final covers its end even when empty)."""
        said = bool(words) or self.said
        events = [self.final(words, at_s, end_of_utterance=said)] if said or always else []
        self.covered_s = max(self.covered_s, at_s)
        self.has_text = False
        return events

    def _event(self, is_final: bool, words: tuple[Word, ...], start_s: float, end_s: float, *,
               end_of_utterance: bool = False) -> TranscriptEvent:
        language, probability = self._language()
        event = TranscriptEvent(
            segment_id=self.segment_id,
            sequence=self.sequence,
            is_final=is_final,
            text=join_words(words),
            start_s=start_s,
            end_s=end_s,
            words=tuple(words),
            language=language,
            language_probability=probability,
            end_of_utterance=end_of_utterance,
        )
        self.sequence += 1
        if is_final:
            self.segment_id += 1
            self.partial_text = ""
        else:
            self.partial_text = event.text
            if event.text:
                self.has_text = True
        return event
