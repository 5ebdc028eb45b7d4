from pathlib import Path

import pytest

from rtwhisper import ModelNotFoundError, installed_models, resolve_model
from rtwhisper.metrics import cer, normalize_text, wer


def test_model_packs_resolve_offline_to_real_model_folders(tmp_path, monkeypatch):
    monkeypatch.setenv("RTWHISPER_CACHE_DIR", str(tmp_path))
    models = installed_models()
    assert set(models) >= {"tiny.en", "base"}
    base = Path(resolve_model("base"))
    assert base.parent.parent == tmp_path  # joined once into the cache
    assert (base / "model.bin").stat().st_size > 140_000_000
    assert (base / "config.json").is_file() and (base / "tokenizer.json").is_file()
    assert resolve_model("base") == str(base)  # second call reuses the join
    assert resolve_model(str(base)) == str(base)  # a folder path is taken as is


def test_a_folder_that_is_not_a_model_is_refused(tmp_path):
    with pytest.raises(ModelNotFoundError, match="not a CTranslate2 Whisper model folder"):
        resolve_model(str(tmp_path))


def test_size_name_not_installed_and_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError, match=r"downloads are off.*pip install"):
        resolve_model("small")


def test_normalizer_and_error_rates():
    assert normalize_text("The 15th-century Bible, of about 1455!") == \
        "the fifteenth century bible of about fourteen fifty five"
    assert wer("ask not what your country", "Ask not, what your country.") == 0
    assert wer("a b c d", "a x c") == 0.5
    assert cer("그는 이리저리", "그는이리저리") == 0
    assert cer("가나다라", "가나다") == 0.25


def test_korean_numbers_are_read_out_as_the_corpus_writes_them():
    from rtwhisper.metrics import korean_number

    assert [korean_number(n) for n in (10, 11, 2018, 10000, 15000, 100000000)] == [
        "십", "십일", "이천십팔", "만", "만오천", "일억"]
    # the Zeroth transcripts spell numbers out with spaces; Whisper writes digits
    assert cer("공사는 이천 십 팔 년 완공 예정", "공사는 2018년 완공 예정") == 0.0
    assert cer("삼 월 김 전 장관", "3월 김 전 장관") == 0.0
    assert wer("in 1455", "in fourteen fifty five") == 0.0  # English numbers as before
