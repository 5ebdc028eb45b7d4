"""Deepgram Flux's /v2/listen turn protocol on the sans-I/O session: turns, thresholds, the eager promise."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fakes import ramp
from rtwhisper import Word
from rtwhisper.errors import ConfigError
from rtwhisper.server.flux import (
    EOT_THRESHOLD,
    FluxSession,
    Thresholds,
    end_of_turn_confidence,
)
from rtwhisper.server.protocol import CLOSE_NORMAL, SessionLimits
from test_protocol import Driver

QUERY = "model=flux-general-en&encoding=linear16&sample_rate=16000"

# Two turns: a sentence, 2 s of silence, then a phrase that pauses 0.6 s mid-way ("And then … close the door.").
TURNS = [Word(" Turn", 0.3, 0.6), Word(" on", 0.7, 0.9), Word(" the", 1.0, 1.2), Word(" lights.", 1.3, 1.7),
         Word(" And", 3.7, 3.9), Word(" then", 4.0, 4.3),
         Word(" close", 4.9, 5.2), Word(" the", 5.3, 5.4), Word(" door.", 5.5, 5.9)]


def s16(audio: np.ndarray) -> list[bytes]:
    pcm = np.round(audio * 32767).astype("<i2")
    return [pcm[i:i + 1600].tobytes() for i in range(0, len(pcm), 1600)]


def drive(query: str, audio: np.ndarray, *, words: list[Word] = TURNS, end: bool = True,
          at: dict[int, str] | None = None) -> Driver:
    """Stream ``audio`` (0.1 s frames) to a Flux session; ``at``: text messages sent before frame i."""
    driver = Driver(session=FluxSession.from_query(query, limits=SessionLimits(), model_name="base"), words=words)
    for i, frame in enumerate(s16(audio)):
        if at and i in at:
            driver.text(at[i])
        driver.frame(frame)
    if end:
        driver.text('{"type": "CloseStream"}')
    return driver


def turn_infos(d: Driver) -> list[dict]:
    return [m for m in d.sent if m["type"] == "TurnInfo"]


def ends(d: Driver) -> list[dict]:
    return [m for m in turn_infos(d) if m["event"] == "EndOfTurn"]


def test_connected_turns_and_close():
    d = drive(QUERY, ramp(8.0))
    assert d.sent[0]["type"] == "Connected" and d.sent[0]["sequence_id"] == 0
    assert [m["sequence_id"] for m in d.sent] == list(range(len(d.sent)))  # every message counts
    assert {m["request_id"] for m in d.sent} == {d.sent[0]["request_id"]}
    finished = ends(d)
    assert [m["transcript"] for m in finished] == ["Turn on the lights.", "And then close the door."]
    assert [m["turn_index"] for m in finished] == [0, 1] and {m["trigger"] for m in finished} == {"model"}
    assert finished[0]["end_of_turn_confidence"] >= EOT_THRESHOLD
    assert finished[0]["audio_window_start"] == pytest.approx(0.3) and finished[0]["audio_window_end"] >= 1.7
    assert [w["word"] for w in finished[1]["words"]] == ["And", "then", "close", "the", "door."]
    assert finished[1]["words"][0]["start"] == pytest.approx(3.7, abs=0.05)
    for index in (0, 1):  # each turn: StartOfTurn first, EndOfTurn last, Updates between
        events = [m["event"] for m in turn_infos(d) if m["turn_index"] == index]
        assert events[0] == "StartOfTurn" and events[-1] == "EndOfTurn" and "Update" in events
    assert d.closed.code == CLOSE_NORMAL
    assert d.opened_with[0][1]["language"] == "en"


def test_an_unfinished_phrase_is_not_cut_where_silence_alone_would_cut_it():
    """A 0.6 s pause after "then": the default ends a turn 0.3 s after a finished sentence, but
    waits 1.05 s after an unfinished phrase; a silence-only rule at 0.3 s cuts the turn in two."""
    words_rule = drive(QUERY, ramp(8.0))
    assert [m["transcript"] for m in ends(words_rule)][1] == "And then close the door."
    # The same session with one pause for both (silence alone decides): the phrase is cut.
    d = Driver(session=FluxSession.from_query(QUERY, limits=SessionLimits(), model_name="base"), words=TURNS)
    d.session.config.knobs["endpoint_max_silence_s"] = d.session.config.knobs["endpoint_silence_s"]
    for frame in s16(ramp(8.0)):
        d.frame(frame)
    d.text('{"type": "CloseStream"}')
    assert [m["transcript"] for m in ends(d)] == ["Turn on the lights.", "And then", "close the door."]


def test_eager_end_of_turn_then_the_same_transcript_at_the_end():
    d = drive(QUERY + "&eager_eot_threshold=0.5", ramp(8.0))
    infos = turn_infos(d)
    eager = [m for m in infos if m["event"] == "EagerEndOfTurn"]
    assert eager and eager[0]["transcript"] == "Turn on the lights."
    assert EOT_THRESHOLD > eager[0]["end_of_turn_confidence"] >= 0.5
    first_end = ends(d)[0]
    assert infos.index(eager[0]) < infos.index(first_end) and first_end["transcript"] == eager[0]["transcript"]
    assert first_end["sequence_id"] > eager[0]["sequence_id"]


def test_eager_then_speech_resumes():
    """A sentence-like phrase ("And then.") with a short pause: eager, then the speaker goes on."""
    words = [Word(" Stop.", 0.3, 0.7), Word(" And", 1.3, 1.5), Word(" go.", 1.6, 1.9)]
    d = drive(QUERY + "&eager_eot_threshold=0.5&eot_threshold=0.9", ramp(5.0), words=words)
    events = [(m["event"], m["transcript"]) for m in turn_infos(d)]
    eager = events.index(("EagerEndOfTurn", "Stop."))
    resumed = [i for i, (e, t) in enumerate(events) if e == "TurnResumed"]
    assert resumed and resumed[0] > eager and events[resumed[0]][1].startswith("Stop. A")
    assert all(e != "Update" or t != events[resumed[0]][1] for e, t in events[resumed[0] + 1:])  # no echo
    assert [t for e, t in events if e == "EndOfTurn"] == ["Stop. And go."]


def test_force_end_turn_and_close_stream_end_turns_manually():
    d = drive(QUERY, ramp(5.0), at={45: '{"type": "ForceEndTurn"}'})  # mid-way through the second turn
    finished = ends(d)
    assert finished[0]["trigger"] == "model" and finished[1]["trigger"] == "manual"
    assert finished[1]["transcript"].startswith("And then")
    assert len(finished) == 3 and finished[-1]["trigger"] == "manual"  # CloseStream inside a turn ends it too
    assert [m["transcript"] for m in finished[:2]] == ["Turn on the lights.", "And then"]


def test_eot_threshold_one_leaves_only_the_timeout():
    d = drive(QUERY + "&eot_threshold=1.0&eot_timeout_ms=1500", ramp(8.0))
    finished = ends(d)
    assert finished[0]["trigger"] == "timeout" and finished[0]["transcript"] == "Turn on the lights."
    assert d.opened_with[0][1]["endpoint_silence_s"] == pytest.approx(1.5)


def test_configure_changes_the_thresholds_mid_stream():
    d = drive(QUERY, ramp(8.0), at={10: json.dumps({"type": "Configure", "thresholds": {"eot_threshold": 0.9}}),
                                    12: json.dumps({"type": "Configure", "thresholds": {"eot_threshold": 2}}),
                                    14: json.dumps({"type": "Configure", "keyterms": ["x"], "foo": 1})})
    success = [m for m in d.sent if m["type"] == "ConfigureSuccess"]
    assert success[0]["thresholds"]["eot_threshold"] == 0.9 and success[0]["thresholds"]["eot_timeout_ms"] == 5000
    failures = [m for m in d.sent if m["type"] == "ConfigureFailure"]
    assert len(failures) == 2 and "eot_threshold must be from 0.5 to 1.0" in failures[0]["description"]
    assert d.retuned and d.retuned[0].changes["endpoint_silence_s"] == pytest.approx(0.6)
    assert d.processor.options.endpoint_silence_s == pytest.approx(0.6)
    assert next(m["transcript"] for m in ends(d)) == "Turn on the lights."


def test_keyterms_from_the_query_and_configure_reach_the_decoder():
    d = drive(QUERY + "&keyterm=Gutenberg&keyterm=Caxton", ramp(8.0),
              at={10: json.dumps({"type": "Configure", "keyterms": ["woodcutters"]}),
                  12: json.dumps({"type": "Configure", "keyterms": [1]})})
    assert d.opened_with[0][1]["keyterms"] == ("Gutenberg", "Caxton")
    success = [m for m in d.sent if m["type"] == "ConfigureSuccess"]
    assert success[0]["keyterms"] == ["woodcutters"]
    assert next(m for m in d.sent if m["type"] == "ConfigureFailure")["description"].startswith("keyterms must be")
    assert d.retuned[0].changes["keyterms"] == ("woodcutters",) and d.processor.options.keyterms == ("woodcutters",)
    hotwords = [o.hotwords for _, _, o in d.processor.engine.calls]
    assert hotwords[0] == "Gutenberg, Caxton." and hotwords[-1] == "woodcutters."


def test_end_of_turn_confidence_weighs_the_words():
    assert end_of_turn_confidence(None, True) == 0.0
    assert end_of_turn_confidence(0.3, True) == pytest.approx(0.7)
    assert end_of_turn_confidence(0.3, False) == pytest.approx(0.2)
    assert end_of_turn_confidence(5.0, False) == 1.0
    assert Thresholds().endpoints() == pytest.approx((0.3, 1.05))
    assert Thresholds(0.9, None, 400 + 600).endpoints() == pytest.approx((0.6, 1.0))


@pytest.mark.parametrize("query, needle", [
    ("encoding=opus", "encoding must be one of"),
    ("sample_rate=%C2%B2", "sample_rate must be one of"),
    ("eot_threshold=0.2", "eot_threshold must be from 0.5"),
    ("eot_threshold=nan", "eot_threshold must be a number"),
    ("eot_threshold=" + "9" * 40, "eot_threshold must be a number"),
    ("eager_eot_threshold=0.8&eot_threshold=0.6", "must not be over eot_threshold"),
    ("eot_timeout_ms=100", "eot_timeout_ms must be a whole number from 500"),
    ("eot_timeout_ms=1e3", "eot_timeout_ms must be a whole number of milliseconds"),
])
def test_bad_query_values_are_config_errors(query, needle):
    with pytest.raises(ConfigError, match=needle):
        FluxSession.from_query(QUERY + "&" + query)


def test_unknown_parameters_and_messages_are_reported():
    d = Driver(session=FluxSession.from_query(QUERY + "&keyterm=rtwhisper&mip_opt_out=true",
                                              limits=SessionLimits(), model_name="base"))
    warning = d.sent[1]
    assert warning["type"] == "Warning" and "mip_opt_out" in warning["description"]
    assert "keyterm" not in warning["description"]  # honoured now
    d.text("not json")
    d.text('{"type": "Finalize"}')
    errors = [m for m in d.sent if m["type"] == "Error"]
    assert len(errors) == 2 and all(m["code"] == "UNPARSABLE_CLIENT_MESSAGE" for m in errors)
    assert d.closed is None  # a bad message is reported; the stream goes on


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(0.05, 1.2), st.floats(0.1, 0.5), st.booleans()), min_size=1, max_size=12),
       st.sampled_from([None, 0.5, 0.6]), st.sampled_from([0.7, 0.8, 0.9]))
def test_turns_are_well_formed_and_the_eager_promise_holds(gaps, eager, eot):
    """Random speech and pauses: every turn starts once and ends once, indices count up, no word is
    lost or doubled, and an EndOfTurn that follows an EagerEndOfTurn with no TurnResumed keeps its text."""
    words, t = [], 0.2
    for i, (gap, length, period) in enumerate(gaps):
        t += gap
        words.append(Word(f" w{i}{'.' if period else ''}", t, t + length))
        t += length
    query = QUERY + f"&eot_threshold={eot}" + (f"&eager_eot_threshold={eager}" if eager else "")
    d = drive(query, ramp(t + 2.0), words=words)
    infos = turn_infos(d)
    said = " ".join(m["transcript"] for m in infos if m["event"] == "EndOfTurn")
    assert said.split() == [w.text.strip() for w in words]
    eager_text: dict[int, str] = {}
    started: set[int] = set()
    expected_index = 0
    for m in infos:
        index, event = m["turn_index"], m["event"]
        assert index == expected_index
        if event == "StartOfTurn":
            assert index not in started
            started.add(index)
        else:
            assert index in started
        if event == "EagerEndOfTurn":
            eager_text[index] = m["transcript"]
        elif event == "TurnResumed":
            eager_text.pop(index, None)
        elif event == "EndOfTurn":
            if index in eager_text:
                assert m["transcript"] == eager_text.pop(index)
            expected_index += 1
