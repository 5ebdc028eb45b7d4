"""The stream protocol's sans-I/O session, driven directly: no sockets, no threads, no model (milliseconds)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fakes import TimelineEngine, TimelineVad, ramp
from rtwhisper import RealtimeWhisperProcessor, Word
from rtwhisper.server.protocol import (
    CLOSE_INTERNAL,
    CLOSE_NORMAL,
    CLOSE_POLICY,
    CLOSE_TOO_BIG,
    CLOSE_TRY_AGAIN,
    LAG_REPORT_S,
    Close,
    CloseReason,
    Feed,
    Finish,
    Flush,
    Open,
    Retune,
    Send,
    SessionLimits,
    SessionState,
    StreamConfig,
    StreamSession,
)

WORDS = [Word(f" w{i}", 0.3 + 0.6 * i, 0.7 + 0.6 * i) for i in range(12)]  # 12 words over 7.5 s


class Driver:
    """Performs a session's actions the way the WebSocket driver does, with a processor run inline."""

    def __init__(self, limits: SessionLimits | None = None, session: StreamSession | None = None,
                 words: list[Word] | None = None) -> None:
        self.session = session or StreamSession(limits or SessionLimits())
        self.words = WORDS if words is None else words
        self.sent: list[dict] = []
        self.closed: Close | None = None
        self.processor: RealtimeWhisperProcessor | None = None
        self.opened_with: list[tuple[str | None, dict]] = []
        self.flushes_done = 0
        self.retuned: list[Retune] = []
        self.now = 0.0
        self.perform(self.session.start(self.now))

    def perform(self, actions) -> None:
        for action in actions:
            if isinstance(action, Send):
                self.sent.append(action.message)
            elif isinstance(action, Close):
                self.closed = action
            elif isinstance(action, Open):
                self.opened_with.append((action.preset, action.overrides))
                try:
                    self.processor = RealtimeWhisperProcessor(engine=TimelineEngine(self.words),
                                                              vad=TimelineVad(self.words), **action.overrides)
                except ValueError as exc:
                    self.perform(self.session.open_failed("bad_config", str(exc)))
                    continue
                self.perform(self.session.opened({"model": "fake", "chunk_duration": 0.5}))
            elif isinstance(action, Feed):
                assert self.processor is not None
                self.processor.feed(action.samples)
                events = self.processor.results()
                self.perform(self.session.recognised(events, self.processor.heard_until_s, self.flushes_done,
                                                     self.processor.pause_s))
            elif isinstance(action, Flush):
                assert self.processor is not None
                events = self.processor.flush()
                self.flushes_done += 1
                self.perform(self.session.recognised(events, self.processor.heard_until_s, self.flushes_done,
                                                     self.processor.pause_s))
            elif isinstance(action, Retune):
                assert self.processor is not None
                self.processor.update_options(**action.changes)
                self.retuned.append(action)
            elif isinstance(action, Finish):
                assert self.processor is not None
                events = self.processor.finish()
                self.perform(self.session.recognised(events, self.processor.heard_until_s))
                self.perform(self.session.recogniser_closed(None, self.processor.fed_duration_s))

    def frame(self, data: bytes, dt: float = 0.1) -> None:
        self.now += dt
        self.perform(self.session.receive_bytes(data, self.now))

    def text(self, text: str) -> None:
        self.perform(self.session.receive_text(text, self.now))

    def wait(self, seconds: float) -> None:
        """Let time pass with no frame, calling tick() at every deadline the session asks for."""
        end = self.now + seconds
        while (deadline := self.session.next_deadline()) is not None and deadline <= end:
            self.now = max(self.now, deadline)
            self.perform(self.session.tick(self.now))
        self.now = end


def frames(audio: np.ndarray, block: int = 1600) -> list[bytes]:
    return [audio[i:i + block].astype("<f4").tobytes() for i in range(0, len(audio), block)]


def stream(d: Driver, audio: np.ndarray, *, end: bool = True) -> None:
    for data in frames(audio):
        d.frame(data)
    if end:
        d.text(json.dumps({"type": "end"}))


def test_guide_client_gets_finals_only_covering_the_stream():
    d = Driver()
    stream(d, ramp(8.0))
    assert all("text" in m for m in d.sent)
    assert {m["type"] for m in d.sent} == {"final", "done"}
    finals = [m for m in d.sent if m["type"] == "final"]
    assert " ".join(m["text"] for m in finals if m["text"]).split() == [w.text.strip() for w in WORDS]
    assert finals[0]["start_s"] == 0.0 and finals[-1]["end_s"] == pytest.approx(8.0)
    assert d.sent[-1] == {"type": "done", "text": "", "audio_s": 8.0}
    assert d.closed == Close(CLOSE_NORMAL, "end of stream") and d.session.state is SessionState.CLOSED


def test_config_first_gives_ready_and_partials():
    d = Driver()
    d.text(json.dumps({"type": "config", "language": "en", "chunk_duration": 1.0}))
    assert d.sent[0]["type"] == "ready" and d.sent[0]["model"] == "fake"
    stream(d, ramp(8.0))
    assert any(m["type"] == "partial" for m in d.sent)
    assert d.opened_with == [(None, {"language": "en", "chunk_duration": 1.0, "sample_rate": 16000})]
    d = Driver()
    d.text(json.dumps({"type": "config", "endpoint_silence_s": 0.3, "endpoint_max_silence_s": 0.8,
                       "commit_probability": 0.9, "commit_margin_s": 0.2, "agreement_span_s": 0.5,
                       "agreement_margin_s": 0.3}))
    assert d.opened_with == [(None, {"endpoint_silence_s": 0.3, "endpoint_max_silence_s": 0.8,
                                     "commit_probability": 0.9, "commit_margin_s": 0.2, "agreement_span_s": 0.5,
                                     "agreement_margin_s": 0.3, "sample_rate": 16000})]


def test_bad_frames_are_rejected_whole_and_do_not_fix_the_settings():
    d = Driver()
    d.frame(b"\x00\x01\x02")
    d.frame(np.array([np.inf], "<f4").tobytes())
    d.frame(np.full(1600, 3e38, "<f4").tobytes())
    d.frame(np.full(1600, 12000.0, "<f4").tobytes())  # int16 values sent as floats
    assert [m["code"] for m in d.sent] == ["bad_audio"] * 4
    assert "divide by 32768" in d.sent[3]["message"] and "peak" in d.sent[2]["message"]
    assert d.processor is None and d.session.received_bytes == 0
    d.text(json.dumps({"type": "config", "language": "klingon"}))
    assert d.sent[-1]["code"] == "bad_config" and "unknown language code" in d.sent[-1]["message"]
    assert d.session.config == StreamConfig()  # the bad config left nothing behind
    d.text(json.dumps({"type": "config", "format": "s16le"}))
    assert d.sent[-1]["type"] == "ready"
    d.frame(np.zeros(160, "<i2").tobytes())
    d.text(json.dumps({"type": "config"}))
    assert d.sent[-1]["code"] == "bad_config" and "first message" in d.sent[-1]["message"]
    assert d.closed is None  # every bad input got an error; the stream goes on


@pytest.mark.parametrize(
    ("message", "code", "says"),
    [
        ("not json", "bad_message", "must be JSON"),
        ("[" * 100_000, "bad_message", "must be JSON"),  # deeply nested: a RecursionError inside json
        ("[1, 2]", "bad_message", "JSON object"),
        ('{"type": "dance"}', "bad_message", "accepted: config, end"),
        ('{"type": "config", "format": "mp3"}', "bad_config", "f32le, s16le"),
        ('{"type": "config", "sample_rate": 12345}', "bad_config", "sample_rate must be one of"),
        ('{"type": "config", "volume": 11}', "bad_config", "unknown config field(s) volume"),
        ('{"type": "config", "partials": "yes"}', "bad_config", "true or false"),
        ('{"type": "config", "task": "summarize"}', "bad_config", "transcribe, translate"),
        ('{"type": "config", "preset": "fastest"}', "bad_config", "presets are"),
        ('{"type": "config", "commit_probability": "high"}', "bad_config", "probability from 0 to 1"),
        ('{"type": "config", "endpoint_max_silence_s": true}', "bad_config", "number of seconds"),
    ],
)
def test_bad_messages_say_what_is_accepted(message, code, says):
    d = Driver()
    d.text(message)
    assert d.sent[0]["type"] == "error" and d.sent[0]["code"] == code and says in d.sent[0]["message"]
    assert d.sent[0]["text"] == "" and d.closed is None


def test_repeated_invalid_frames_close_the_stream_and_do_not_keep_it_alive():
    d = Driver(SessionLimits(idle_timeout_s=3.0, max_bad_frames=10))
    for _ in range(9):
        d.frame(b"\x00", dt=0.5)
    assert d.closed is None
    d.frame(b"\x00", dt=0.5)
    assert d.closed == Close(CLOSE_POLICY, "too many invalid frames")
    # one bad byte every 2 s never counts as activity: the idle timeout closes it
    d = Driver(SessionLimits(idle_timeout_s=3.0, max_bad_frames=1000))
    for _ in range(3):
        d.frame(b"\x00", dt=1.0)
        d.wait(0.0)
    d.wait(1.0)
    assert d.closed is not None and d.closed.code == 1001 and d.sent[-1]["code"] == "idle_timeout"


def test_oversized_frame_closes_with_1009():
    d = Driver(SessionLimits(max_frame_bytes=64 * 1024))
    d.frame(b"\x00" * (100 * 1024))
    assert d.sent[0]["code"] == "frame_too_big" and d.closed == Close(CLOSE_TOO_BIG, "frame too big")


def test_a_client_that_goes_quiet_gets_its_words_final_and_stays_open():
    d = Driver(SessionLimits(stall_flush_s=0.6, idle_timeout_s=60))
    d.text(json.dumps({"type": "config"}))
    stream(d, ramp(3.2), end=False)  # w0..w4 heard; w4 (2.7–3.1 s) is the last, nothing after it yet
    d.wait(0.7)
    finals = [m for m in d.sent if m["type"] == "final"]
    assert " ".join(m["text"] for m in finals if m["text"]).split() == ["w0", "w1", "w2", "w3", "w4"]
    assert finals[-1]["end_of_utterance"] and d.closed is None
    d.wait(5.0)  # no second flush for the same audio
    assert len([m for m in d.sent if m["type"] == "final"]) == len(finals)
    assert d.session.state is SessionState.STREAMING


def test_idle_client_with_audio_is_finished_not_cut():
    d = Driver(SessionLimits(idle_timeout_s=3.0))
    stream(d, ramp(2.0), end=False)
    d.wait(3.5)
    assert d.sent[-1]["type"] == "done" and d.closed == Close(CLOSE_NORMAL, "end of stream")
    assert any(m.get("code") == "idle_timeout" for m in d.sent)


def test_lag_is_reported_when_recognition_is_behind_and_not_when_it_keeps_up():
    s = StreamSession(SessionLimits())
    s.start(0.0)
    actions = s.receive_bytes(frames(ramp(0.1))[0], 0.1)
    assert any(isinstance(a, Open) for a in actions)
    s.opened({"chunk_duration": 2.0})
    reports = []
    for i, data in enumerate(frames(ramp(9.0))[1:], start=2):  # recognition stays at 0 s
        for a in s.receive_bytes(data, i * 0.1):
            if isinstance(a, Send) and a.message["type"] == "lag":
                reports.append(a.message["lag_s"])
    # lag counts beyond the 2 s update step: reported at 2, 4 and 6 s behind (to a 0.1 s frame each)
    assert reports == pytest.approx([LAG_REPORT_S, 2 * LAG_REPORT_S, 3 * LAG_REPORT_S], abs=0.25)
    keeping_up = [a for a in s.recognised([], 8.5) if isinstance(a, Send)]
    assert keeping_up == []  # 0.5 s waiting, within one 2 s step: not lag


def test_refused_stream_is_told_why_and_closed_with_1013():
    s = StreamSession(SessionLimits())
    s.start(0.0)
    s.receive_bytes(frames(ramp(0.1))[0], 0.1)
    actions = s.refuse(CloseReason.OVERLOADED, "no room for another stream now")
    assert isinstance(actions[0], Send) and actions[0].message["code"] == "overloaded"
    assert actions[1] == Close(CLOSE_TRY_AGAIN, "overloaded") and s.state is SessionState.CLOSED


def test_a_stream_the_scheduler_stops_is_closed_by_its_cause():
    from rtwhisper.scheduling import StopCause, StreamStopped

    for cause, code, kind in ((StopCause.OVERLOADED, CLOSE_TRY_AGAIN, "overloaded"),
                              (StopCause.FAILED, CLOSE_INTERNAL, "internal")):
        s = StreamSession(SessionLimits())
        s.start(0.0)
        actions = s.recogniser_closed(StreamStopped(cause, f"{kind}: why"), 1.0)
        assert isinstance(actions[0], Send) and actions[0].message["code"] == kind
        assert "why" in actions[0].message["message"] and isinstance(actions[1], Close)
        assert actions[1].code == code


def test_audio_after_end_is_an_error():
    d = Driver()
    d.frame(frames(ramp(1.0))[0])
    s = d.session
    s.receive_text('{"type": "end"}', 1.0)
    assert s.state is SessionState.ENDING
    assert s.receive_bytes(frames(ramp(1.0))[0], 1.1)[0].message["code"] == "stream_ended"


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(
    st.binary(max_size=64),
    st.text(max_size=64),
    st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                 lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                 max_leaves=8).map(json.dumps),
    st.fixed_dictionaries({"type": st.sampled_from(["config", "end", "x"])},
                          optional={"language": st.text(max_size=5), "sample_rate": st.integers(),
                                    "format": st.text(max_size=6), "chunk_duration": st.floats()}).map(json.dumps),
), max_size=12))
def test_any_sequence_of_frames_gets_typed_answers_and_never_raises(inputs):
    d = Driver(SessionLimits(max_bad_frames=1000))
    for item in inputs:
        if d.closed is not None:
            break
        if isinstance(item, bytes):
            d.frame(item)
        else:
            d.text(item)
    for m in d.sent:
        assert isinstance(m["text"], str) and m["type"] in ("ready", "partial", "final", "lag", "error", "done")
        if m["type"] == "error":
            assert m["code"] and m["message"]
