"""The engine's pure rules on a hypothesis's words (no model): faster-whisper's hallucination score."""

from rtwhisper.engine.ctranslate2 import _anomalous
from rtwhisper.events import Word


def test_words_crammed_into_no_time_are_anomalous():
    """The sign-off made up from a closing window's silence: four words in 40 ms."""
    made_up = [Word(" MBC", 1.46, 1.47, 0.6), Word(" 뉴스", 1.47, 1.48, 0.7), Word(" 김혜연", 1.48, 1.49, 0.5),
               Word("입니다.", 1.49, 1.50, 0.9)]
    assert _anomalous(made_up)


def test_spoken_words_are_not_anomalous():
    spoken = [Word(" And", 0.3, 0.5, 0.9), Word(" so", 0.5, 0.8, 0.95), Word(" my", 0.8, 1.0, 0.9),
              Word(" fellow", 1.0, 1.4, 0.99), Word(" Americans.", 1.4, 2.1, 0.97)]
    assert not _anomalous(spoken)
    # one doubted short word among them is no anomaly either (a score of 1 + 0.8, under 3)
    assert not _anomalous([*spoken[:2], Word(" uh", 0.8, 0.88, 0.1), *spoken[3:]])


def test_punctuation_alone_counts_for_nothing_and_a_long_stretched_word_does():
    assert not _anomalous([Word(" ...", 0.0, 0.0, 0.1)])
    # 2.5 s past the 2 s a word may take, over two words: nearly every word is anomalous
    assert _anomalous([Word(" Thank", 0.0, 4.5, 0.2), Word(" you.", 4.5, 6.0, 0.3)])
