"""Which language a stream's next window is decoded in, from Whisper's detections.

A stream with a language given decodes in it. Without one, the language is detected and
locked for an utterance once two detections agree (:data:`LANGUAGE_LOCK_PROBABILITY`); the next
utterance starts in it, detected again alongside, and two sure detections of another
(:data:`LANGUAGE_SWITCH_PROBABILITY`) switch it: a bilingual speaker changes language between
utterances, not inside one.
"""

from __future__ import annotations

import enum

from ..engine import DecodeRequest, Hypothesis

LANGUAGE_SWITCH_PROBABILITY = 0.8
"""How sure a window's detection must be to end the last utterance's language.

An utterance after a pause starts in the language of the one before, detected alongside:
a speaker keeps their language far more often than they switch, and Whisper's detection on
the first second of a new utterance is often wrong and unsure (jfk's "ask not", a short
phrase between two pauses, read as Greek through a microphone; German and Italian partials
on the shared clips). A detection of another language at this probability sends the next
window to the detector, and two in a row lock it (a bilingual speaker's Korean after English
reads at 0.9–1.0 from its first window)."""

LANGUAGE_LOCK_PROBABILITY = 0.5
"""Once two successive detections agree at this probability (faster-whisper's
language_detection_threshold), keep the language for the utterance.

One detection is not enough: Whisper's detection on a window's first half second is often sure
and wrong. Streamed without a language, LJ001-0011's first 0.5 s read as Turkish at 0.95 and the
whole clip came out in Turkish ("Önceden birçeyiz var…"); from 1 s on it reads English. On the
shared clips 0.5 s windows were wrong for 4 of 23 English clips. Agreement, LocalAgreement's rule
for words, costs one update (0.5 s) before the language holds."""


class LanguageState(enum.Enum):
    GIVEN = "given"
    """The caller named the language: no detection at all."""
    DETECTING = "detecting"
    """The stream's first utterance: windows are detected until two agree."""
    LOCKED = "locked"
    """Two detections agreed (or one confirmed the last utterance's): kept to the utterance's end."""
    CARRIED = "carried"
    """A new utterance, decoded in the last one's language and detected alongside."""
    CHALLENGED = "challenged"
    """A sure detection named another language: the next window's detection decides."""


Detection = tuple[str | None, float | None]


class LanguageTracker:
    """The language state of one stream; :meth:`note` takes each window's detection in."""

    def __init__(self, language: str | None) -> None:
        self.language = language
        self._detected: Detection = (language, None)  # locked language
        self._guess: Detection = (language, None)  # latest detection
        self._prior: str | None = None  # the last utterance's locked language
        self._challenge: tuple[str, float] | None = None  # a sure detection of another one
        self._prompt_from = 0  # the first final word the prompt may hold: none from before a switch

    @property
    def state(self) -> LanguageState:
        if self.language is not None:
            return LanguageState.GIVEN
        if self._detected[0] is not None:
            return LanguageState.LOCKED
        if self._prior is None:
            return LanguageState.DETECTING
        return LanguageState.CARRIED if self._challenge is None else LanguageState.CHALLENGED

    @property
    def known(self) -> bool:
        """Whether the language is given or locked (one sure hypothesis may then commit words)."""
        return self._detected[0] is not None

    def reported(self) -> Detection:
        """The language (and its probability) events carry: the locked one, else the latest detection."""
        return self._detected if self._detected[0] is not None else self._guess

    def prompt_start(self, committed: int) -> int:
        """The first of ``committed`` final words that may be prompt: text in another language is no context.

        After a switch (and while a detection questions the language) the prompt starts at the
        switch. With jfk's English as the prompt, Korean after it decoded "in Korean" read "Ask
        not." and LocalAgreement made it final.
        """
        return self._prompt_from if self._challenge is None else committed

    def next_utterance(self) -> None:
        """After an utterance, a detected language is detected again for the next one.

        A bilingual speaker (Korean and English in one meeting) changes language between
        utterances; with the first detection locked for the whole stream, Whisper decoded the
        Korean half "in English" as Chinese-character loops ("沖泡的鞋子, 沖泡的鞋子, …" in the
        soak test). Within an utterance the language stays locked. The next one starts in it
        (the prior, :data:`LANGUAGE_SWITCH_PROBABILITY`), detected alongside: a detection of
        it at :data:`LANGUAGE_LOCK_PROBABILITY` locks it again, from the utterance's first
        update; two sure ones of another switch.
        """
        if self.language is None and self._detected[0] is not None:
            self._prior = self._detected[0]
            self._guess = self._detected
            self._detected = (None, None)
        self._challenge = None

    def for_decode(self) -> tuple[str | None, bool]:
        """(language to decode the next window in, whether the engine detects it as well).

        Given or locked: that one. At an utterance's start, the language of the one before
        (:data:`LANGUAGE_SWITCH_PROBABILITY`), detected alongside; once a sure detection names
        another, ``None``: the window's detection decides.
        """
        if self.language is not None or self._detected[0] is not None:
            return (self.language or self._detected[0]), False
        if self._prior is not None and self._challenge is None:
            return self._prior, True
        return None, False

    def note(self, hypothesis: Hypothesis, request: DecodeRequest, committed: int) -> bool:
        """Take a window's detection in (``committed``: final words so far).

        True when the window was decoded in the last utterance's language and its detection
        surely named another: its words are no evidence. (Korean after English through `base`:
        the first English windows decoded "in Korean" came back empty or failed.)
        """
        if self.language is not None or self._detected[0] is not None:
            return False
        detect = request.options.detect_language
        if not detect and not (hypothesis.words and hypothesis.passed):
            return False  # a detection without words is one on silence; with detect, a decode in the
            # wrong language that came back empty or failed is the evidence
        language = hypothesis.detected_language if detect else hypothesis.language
        probability = (hypothesis.detected_probability if detect else hypothesis.language_probability) or 0.0
        if language is None:
            return False
        guess, self._guess = self._guess, (language, probability)
        if self._prior is None:  # the stream's first utterance: two agreeing detections
            if guess[0] == language and min(guess[1] or 0.0, probability) >= LANGUAGE_LOCK_PROBABILITY:
                self._detected = (language, probability)
            return False
        if language == self._prior or probability < LANGUAGE_SWITCH_PROBABILITY:
            # The last utterance's language, or an unsure word against it: it holds.
            if language == self._prior and probability >= LANGUAGE_LOCK_PROBABILITY:
                self._detected = (language, probability)
            if language != self._prior:
                self._guess = guess  # the events keep the language the words are decoded in
            self._challenge = None
            return False
        if self._challenge is not None and self._challenge[0] == language:
            self._detected = (language, probability)  # two sure detections in a row: the speaker switched
            self._prompt_from = committed
        self._challenge = (language, probability)
        return detect
