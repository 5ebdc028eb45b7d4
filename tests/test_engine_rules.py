"""The engine's pure rules on a hypothesis's words (no model): faster-whisper's hallucination score."""

from rtwhisper.engine.words import _anomalous
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


def _tokenizer(language: str):
    from faster_whisper.tokenizer import Tokenizer
    from tokenizers import Tokenizer as HfTokenizer

    from rtwhisper import resolve_model

    hf = HfTokenizer.from_file(f"{resolve_model('base')}/tokenizer.json")
    return Tokenizer(hf, True, task="transcribe", language=language)


def test_the_forced_prefix_is_the_last_words_of_the_final_text():
    from rtwhisper.engine.words import _forced_start

    tok = _tokenizer("en")
    prefix = tok.encode(" And so my fellow Americans, ask not what your country can do for you,")
    cut = _forced_start(tok, prefix, 4)
    assert tok.decode(prefix[cut:]) == " can do for you,"  # the comma is no word
    assert tok.decode(prefix[:cut]) + tok.decode(prefix[cut:]) == tok.decode(prefix)
    assert _forced_start(tok, prefix, None) == 0
    assert _forced_start(tok, prefix, 40) == 0  # fewer words than that: all of them
    assert _forced_start(tok, [], 4) == 0


def test_the_forced_prefix_never_holds_half_a_hangul_syllable():
    from rtwhisper.engine.words import _forced_start

    tok = _tokenizer("ko")
    text = " 동백꽃 속으로 폭 파묻혀 버렸다"
    prefix = tok.encode(text)
    for words, expected in [(1, " 버렸다"), (2, " 파묻혀 버렸다"), (4, " 속으로 폭 파묻혀 버렸다")]:
        cut = _forced_start(tok, prefix, words)
        assert tok.decode(prefix[cut:]) == expected
        assert "\ufffd" not in tok.decode(prefix[:cut])


def test_forced_prefix_words_is_checked():
    import pytest

    from rtwhisper import resolve_model
    from rtwhisper.engine.ctranslate2 import WhisperEngine
    from rtwhisper.errors import ConfigError

    for bad in (0, -1, 2.5, True, "4"):
        with pytest.raises(ConfigError, match="forced_prefix_words"):
            WhisperEngine(resolve_model("tiny.en"), device="cpu", forced_prefix_words=bad)  # type: ignore[arg-type]
