"""The WebSocket protocol's sans-I/O session, driven directly (no sockets, fake engine)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fakes import TimelineEngine, ramp
from rtwhisper import RealtimeWhisperProcessor, Word
from rtwhisper.server.protocol import LAG_REPORT_S, StreamConfig, StreamSession

WORDS = [Word(f" w{i}", 0.3 + 0.6 * i, 0.7 + 0.6 * i) for i in range(12)]  # 12 words over 7.5 s


def session(**kwargs) -> StreamSession:
    made: list[tuple[str | None, dict]] = []

    def make(preset, **overrides):
        made.append((preset, overrides))
        return RealtimeWhisperProcessor(engine=TimelineEngine(WORDS), **overrides)

    s = StreamSession(make, **kwargs)
    s.made = made  # type: ignore[attr-defined]
    return s


def frames(audio: np.ndarray, block: int = 1600) -> list[bytes]:
    return [audio[i:i + block].astype("<f4").tobytes() for i in range(0, len(audio), block)]


def run(s: StreamSession, audio: np.ndarray) -> list[dict]:
    out: list[dict] = []
    for frame in frames(audio):
        out += s.receive_bytes(frame)
        out += s.recognise(s.take_pending())
    out += s.receive_text(json.dumps({"type": "end"}))
    assert s.ended
    out += s.finish(s.take_pending())
    return out


def test_guide_client_gets_finals_only_covering_the_stream():
    s = session()
    out = run(s, ramp(8.0))
    assert all("text" in m for m in out)
    assert {m["type"] for m in out} == {"final", "done"}
    finals = [m for m in out if m["type"] == "final"]
    assert " ".join(m["text"] for m in finals if m["text"]).split() == [w.text.strip() for w in WORDS]
    assert finals[0]["start_s"] == 0.0 and finals[-1]["end_s"] == pytest.approx(8.0)
    assert out[-1] == {"type": "done", "text": "", "audio_s": 8.0}


def test_config_first_gives_ready_and_partials():
    s = session()
    ready = s.receive_text(json.dumps({"type": "config", "language": "en", "chunk_duration": 1.0}))
    assert ready[0]["type"] == "ready" and ready[0]["language"] == "en" and ready[0]["chunk_duration"] == 1.0
    out = run(s, ramp(8.0))
    assert any(m["type"] == "partial" for m in out)
    assert s.made == [(None, {"language": "en", "chunk_duration": 1.0, "sample_rate": 16000})]


def test_bad_frames_are_rejected_whole_and_do_not_fix_the_settings():
    s = session()
    assert s.receive_bytes(b"\x00\x01\x02")[0]["code"] == "bad_audio"
    assert s.receive_bytes(np.array([np.inf], "<f4").tobytes())[0]["code"] == "bad_audio"
    assert s.processor is None and s.received_bytes == 0
    bad = s.receive_text(json.dumps({"type": "config", "language": "klingon"}))
    assert bad[0]["code"] == "bad_config" and "unknown language code" in bad[0]["message"]
    assert s.config == StreamConfig()  # the bad config left nothing behind
    assert s.receive_text(json.dumps({"type": "config", "format": "s16le"}))[0]["type"] == "ready"
    assert s.receive_bytes(np.zeros(160, "<i2").tobytes()) == []
    late = s.receive_text(json.dumps({"type": "config"}))
    assert late[0]["code"] == "bad_config" and "first message" in late[0]["message"]


@pytest.mark.parametrize(
    ("message", "code", "says"),
    [
        ("not json", "bad_message", "must be JSON"),
        ("[1, 2]", "bad_message", "JSON object"),
        ('{"type": "dance"}', "bad_message", "accepted: config, end"),
        ('{"type": "config", "format": "mp3"}', "bad_config", "f32le, s16le"),
        ('{"type": "config", "sample_rate": 12345}', "bad_config", "sample_rate must be one of"),
        ('{"type": "config", "volume": 11}', "bad_config", "unknown config field(s) volume"),
        ('{"type": "config", "partials": "yes"}', "bad_config", "true or false"),
        ('{"type": "config", "task": "summarize"}', "bad_config", "transcribe, translate"),
        ('{"type": "config", "preset": "fastest"}', "bad_config", "presets are"),
    ],
)
def test_bad_messages_say_what_is_accepted(message, code, says):
    reply = session().receive_text(message)
    assert reply[0]["type"] == "error" and reply[0]["code"] == code and says in reply[0]["message"]
    assert reply[0]["text"] == ""


def test_lag_is_reported_when_audio_waits_and_again_as_it_grows():
    s = session()
    reports = []
    for frame in frames(ramp(7.0)):
        s.receive_bytes(frame)
        report = s.lag_message()
        if report:
            reports.append(report["lag_s"])
    assert reports == pytest.approx([LAG_REPORT_S, 2 * LAG_REPORT_S, 3 * LAG_REPORT_S], abs=0.11)
    s.recognise(s.take_pending())
    assert s.lag_message() is None


def test_audio_after_end_is_an_error():
    s = session()
    s.receive_bytes(frames(ramp(1.0))[0])
    s.receive_text('{"type": "end"}')
    assert s.receive_bytes(frames(ramp(1.0))[0])[0]["code"] == "stream_ended"
