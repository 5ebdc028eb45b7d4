"""What a processor emits: small frozen dataclasses on the stream's own clock.

The shape follows the two-tier model every streaming recogniser exposes (Google's
``is_final``, Deepgram's ``is_final``/``speech_final``, whisper_streaming's committed and
uncommitted text): a *partial* may still change; a *final* never does.

Identity: all events of one utterance share ``segment_id``. Partials with the same
``segment_id`` replace each other, and the final with that ``segment_id`` replaces the
last partial; the next partial then has ``segment_id + 1``. A client therefore keeps
``finals + [latest partial]`` and never has to de-duplicate text. ``sequence`` orders all
events of a stream.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class Word:
    """One recognised word, with times in seconds from the start of the stream."""

    text: str
    start_s: float
    end_s: float
    probability: float = 1.0

    def shifted(self, offset_s: float) -> Word:
        """The same word with both times moved by ``offset_s`` (window → stream clock)."""
        return Word(self.text, self.start_s + offset_s, self.end_s + offset_s, self.probability)


@dataclass(frozen=True)
class TranscriptEvent:
    """A piece of transcript.

    ``start_s``/``end_s`` is the stretch of audio the event speaks for. Finals tile the
    stream without gaps: the first starts at 0, each starts where the previous ended, and
    after ``finish()`` the last one ends at the end of the fed audio, so every fed sample
    is accounted for (a final over silence has empty ``text``).
    """

    segment_id: int
    sequence: int
    is_final: bool
    text: str
    start_s: float
    end_s: float
    words: tuple[Word, ...] = field(default_factory=tuple)
    language: str | None = None
    language_probability: float | None = None
    end_of_utterance: bool = False
    """A final that closes an utterance: the speaker paused (voice activity), the stream stalled
    or ended. Deepgram's ``speech_final``; a caption line or a voice command is complete."""

    @property
    def type(self) -> Literal["partial", "final"]:
        """``"final"`` or ``"partial"``, the name used on the wire."""
        return "final" if self.is_final else "partial"

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready dict (the WebSocket and JSONL shape)."""
        return {
            "type": self.type,
            "segment_id": self.segment_id,
            "sequence": self.sequence,
            "is_final": self.is_final,
            "end_of_utterance": self.end_of_utterance,
            "text": self.text,
            "start_s": round(self.start_s, 3),
            "end_s": round(self.end_s, 3),
            "words": [
                {
                    "text": w.text,
                    "start_s": round(w.start_s, 3),
                    "end_s": round(w.end_s, 3),
                    "probability": round(w.probability, 4),
                }
                for w in self.words
            ],
            "language": self.language,
            "language_probability": (
                None if self.language_probability is None else round(self.language_probability, 4)
            ),
        }


def join_words(words: tuple[Word, ...] | list[Word]) -> str:
    """Text of a run of words. Whisper words carry their own leading space; strip the ends."""
    return "".join(w.text for w in words).strip()
