"""Deepgram's /v1/listen protocol on the sans-I/O session: query parsing and message shapes (milliseconds)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fakes import ramp
from rtwhisper.errors import ConfigError
from rtwhisper.server.deepgram import DeepgramSession
from rtwhisper.server.protocol import CLOSE_NORMAL, CLOSE_POLICY, SessionLimits
from test_protocol import WORDS, Driver

QUERY = "model=nova-3&encoding=linear16&sample_rate=16000&channels=1&language=en-US"


def s16(audio: np.ndarray, channels: int = 1) -> list[bytes]:
    pcm = np.round(audio * 32767).astype("<i2")
    if channels > 1:
        pcm = np.repeat(pcm, channels)
    step = 1600 * channels
    return [pcm[i:i + step].tobytes() for i in range(0, len(pcm), step)]


def drive(query: str, audio: np.ndarray, *, channels: int = 1, end: str = '{"type": "CloseStream"}') -> Driver:
    driver = Driver(session=DeepgramSession.from_query(query, limits=SessionLimits(), model_name="base"))
    for frame in s16(audio, channels):
        driver.frame(frame)
    driver.text(end)
    return driver


def test_finals_metadata_and_close():
    d = drive(QUERY, ramp(8.0))
    results = [m for m in d.sent if m["type"] == "Results"]
    assert results and all(m["is_final"] for m in results)  # no interim results unless asked
    words = [w["word"] for m in results for w in m["channel"]["alternatives"][0]["words"]]
    assert words == [w.text.strip() for w in WORDS]
    assert any(m["speech_final"] for m in results)
    first = results[0]
    assert first["channel_index"] == [0, 1] and first["metadata"]["model_info"]["name"] == "base"
    assert {"start", "end", "confidence", "punctuated_word"} <= set(first["channel"]["alternatives"][0]["words"][0])
    meta = d.sent[-1]
    assert meta["type"] == "Metadata" and meta["duration"] == pytest.approx(8.0) and meta["channels"] == 1
    assert "served by 'base'" in meta["warnings"][0]  # the model asked for is named, and who answered
    assert d.closed.code == CLOSE_NORMAL
    assert d.opened_with[0][1]["language"] == "en" and d.opened_with[0][1]["sample_rate"] == 16000


def test_interim_results_vad_events_and_utterance_end():
    d = drive(QUERY + "&interim_results=true&vad_events=true&utterance_end_ms=1000&endpointing=300", ramp(8.0))
    kinds = [m["type"] for m in d.sent]
    assert "SpeechStarted" in kinds and "UtteranceEnd" in kinds
    assert any(m["type"] == "Results" and not m["is_final"] for m in d.sent)
    assert d.opened_with[0][1]["endpoint_silence_s"] == pytest.approx(0.3)
    assert d.opened_with[0][1]["endpoint_max_silence_s"] == pytest.approx(0.3)  # Deepgram's: silence alone
    end = next(m for m in d.sent if m["type"] == "UtteranceEnd")
    assert end["last_word_end"] > 0


def test_keepalive_finalize_and_stereo():
    d = Driver(session=DeepgramSession.from_query(QUERY.replace("channels=1", "channels=2"), limits=SessionLimits(
        idle_timeout_s=5.0), model_name="base"))
    for frame in s16(ramp(4.0), channels=2):
        d.frame(frame)
    d.text('{"type": "Finalize"}')
    finals = [m for m in d.sent if m["type"] == "Results" and m["is_final"]]
    assert finals and finals[-1]["from_finalize"]
    for _ in range(8):  # KeepAlive holds a quiet stream open past the idle timeout
        d.now += 1.0
        d.text('{"type": "KeepAlive"}')
        d.perform(d.session.tick(d.now))
    assert d.closed is None
    d.text('{"type": "CloseStream"}')
    assert d.closed.code == CLOSE_NORMAL and d.sent[-1]["type"] == "Metadata" and d.sent[-1]["channels"] == 2


def test_bad_messages_get_deepgram_errors_and_the_stream_goes_on():
    d = Driver(session=DeepgramSession.from_query(QUERY, limits=SessionLimits(), model_name="base"))
    d.text("not json")
    d.text(json.dumps({"type": "Configure"}))
    errors = [m for m in d.sent if m["type"] == "Error"]
    assert len(errors) == 2 and all(e["description"] for e in errors) and d.closed is None
    for frame in s16(ramp(2.0)):
        d.frame(frame)
    d.text('{"type": "CloseStream"}')
    assert d.closed.code == CLOSE_NORMAL


@pytest.mark.parametrize(("query", "message"), [
    ("encoding=opus&sample_rate=16000", "encoding must be one of linear16"),
    ("encoding=linear16", "sample_rate must be one of"),
    ("encoding=linear16&sample_rate=16000&channels=0", "channels must be 1 to 8"),
    ("encoding=linear16&sample_rate=16000&language=klingon", "unknown language code"),
    ("encoding=linear16&sample_rate=16000&endpointing=soon", "endpointing must be milliseconds or false"),
])
def test_bad_queries_are_refused_with_a_reason(query, message):
    with pytest.raises(ConfigError, match=message):
        DeepgramSession.from_query(query)


def test_keyterm_and_keywords_become_the_streams_keyterms():
    session = DeepgramSession.from_query(QUERY + "&keyterm=Gutenberg&keyterm=movable%20types&keywords=Caxton:2")
    assert session.config.overrides()["keyterms"] == ("Gutenberg", "movable types", "Caxton")
    assert "keyterm" not in session.options.ignored and "keywords" not in session.options.ignored
    with pytest.raises(ConfigError, match="keyterm must be at most 50 terms"):
        DeepgramSession.from_query(QUERY + "".join(f"&keyterm=t{i}" for i in range(51)))


def test_ignored_parameters_are_reported():
    d = drive(QUERY + "&diarize=true&smart_format=true", ramp(3.0))
    assert "ignored parameters: diarize, smart_format" in d.sent[-1]["warnings"][0]
    assert CLOSE_POLICY != d.closed.code


@pytest.mark.parametrize("name", ["sample_rate", "channels", "endpointing", "utterance_end_ms"])
@pytest.mark.parametrize("value", ["%C2%B2", "%D9%A1%D9%A6%D9%A0%D9%A0%D9%A0", "9" * 4300, "-5", "1e3", ""])
def test_numbers_in_the_query_string_are_ascii_digits_or_a_config_error(name, value):
    """A Unicode digit ("²", Arabic-Indic "١٦٠٠٠") passed ``str.isdigit`` and then crashed ``int`` or was
    read as a number; 4,300 digits crashed ``int``: each ended the stream with a traceback and close 1006."""
    query = "&".join(f"{k}={v}" for k, v in {"encoding": "linear16", "sample_rate": "16000", name: value}.items())
    with pytest.raises(ConfigError, match=name):
        DeepgramSession.from_query(query)


def test_a_boolean_that_is_neither_true_nor_false_is_a_config_error():
    with pytest.raises(ConfigError, match="interim_results must be true or false"):
        DeepgramSession.from_query(QUERY + "&interim_results=maybe")
    assert DeepgramSession.from_query(QUERY + "&interim_results=false&vad_events=0").options.interim_results is False


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["encoding", "sample_rate", "channels", "language", "interim_results",
                                        "endpointing", "utterance_end_ms", "vad_events", "punctuate", "model"]),
                       st.text(max_size=30), max_size=6))
def test_any_query_string_is_a_session_or_a_config_error(params):
    from urllib.parse import urlencode

    query = urlencode({"encoding": "linear16", "sample_rate": "16000", **params})
    try:
        DeepgramSession.from_query(query)
    except ConfigError as exc:
        assert str(exc)


def test_audio_is_a_byte_stream_split_anywhere():
    """Deepgram's API takes audio as bytes: a client reading a pipe in odd-sized chunks (3,201
    bytes) splits samples between frames. Every sample arrives, none is refused as bad audio."""
    pcm = np.round(ramp(4.0) * 32767).astype("<i2").tobytes()
    driver = Driver(session=DeepgramSession.from_query(QUERY, limits=SessionLimits(), model_name="base"))
    fed = []
    original = driver.perform

    def perform(actions):
        fed.extend(len(a.samples) for a in actions if type(a).__name__ == "Feed")
        original(actions)

    driver.perform = perform
    for i in range(0, len(pcm), 3201):
        driver.frame(pcm[i:i + 3201])
    driver.text('{"type": "CloseStream"}')
    assert not [m for m in driver.sent if m["type"] == "Error"]
    assert sum(fed) == 4 * 16000
    assert driver.sent[-1]["type"] == "Metadata" and driver.sent[-1]["duration"] == pytest.approx(4.0)
