"""OpenAI's Realtime transcription protocol on the sans-I/O session: events in, events out (milliseconds)."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from fakes import TimelineEngine, TimelineVad, ramp
from rtwhisper import RealtimeWhisperProcessor, Word
from rtwhisper.errors import ConfigError
from rtwhisper.server.openai_realtime import RealtimeSession
from rtwhisper.server.protocol import Feed, Flush, SessionLimits
from test_protocol import WORDS, Driver


def session() -> Driver:
    return Driver(session=RealtimeSession.from_query("intent=transcription", limits=SessionLimits(),
                                                     model_name="base"))


def append(d: Driver, audio: np.ndarray, rate: int = 16000) -> None:
    pcm = np.round(audio * 32767).astype("<i2")
    step = rate // 10
    for i in range(0, len(pcm), step):
        d.now += 0.1
        d.text(json.dumps({"type": "input_audio_buffer.append",
                           "audio": base64.b64encode(pcm[i:i + step].tobytes()).decode()}))


def update(d: Driver, **audio_input) -> None:
    d.text(json.dumps({"type": "session.update", "session": {"type": "transcription",
                                                             "audio": {"input": audio_input}}}))


def test_created_updated_and_server_vad_items():
    d = session()
    assert d.sent[0]["type"] == "session.created" and d.sent[0]["session"]["type"] == "transcription"
    update(d, format={"type": "audio/pcm", "rate": 16000}, transcription={"model": "whisper-1", "language": "en"},
           turn_detection={"type": "server_vad", "silence_duration_ms": 400})
    assert d.sent[1]["type"] == "session.updated"
    assert d.sent[1]["session"]["audio"]["input"]["turn_detection"]["silence_duration_ms"] == 400
    append(d, ramp(8.0))
    d.perform(d.session.tick(d.now + 1.0))  # the client pauses: the stall flush ends the utterance
    kinds = [m["type"] for m in d.sent]
    assert "input_audio_buffer.speech_started" in kinds and "input_audio_buffer.committed" in kinds
    completed = [m for m in d.sent if m["type"] == "conversation.item.input_audio_transcription.completed"]
    deltas = [m for m in d.sent if m["type"] == "conversation.item.input_audio_transcription.delta"]
    assert completed and deltas
    assert " ".join(m["transcript"] for m in completed).split() == [w.text.strip() for w in WORDS]
    for item in completed:  # every item's deltas add up to its transcript
        assert "".join(m["delta"] for m in deltas if m["item_id"] == item["item_id"]) == item["transcript"]
    assert d.opened_with[0][1]["language"] == "en" and d.opened_with[0][1]["endpoint_silence_s"] == 0.4
    assert len({m["event_id"] for m in d.sent}) == len(d.sent)


def test_a_running_stream_changes_its_prompt_and_silence_but_not_its_format():
    d = session()
    update(d, format={"type": "audio/pcm", "rate": 16000}, transcription={"language": "en", "prompt": "Gutenberg"},
           turn_detection={"type": "server_vad", "silence_duration_ms": 400})
    append(d, ramp(3.0))
    update(d, format={"type": "audio/pcm", "rate": 16000}, transcription={"language": "en", "prompt": "Caxton"},
           turn_detection={"type": "server_vad", "silence_duration_ms": 800})
    assert d.sent[-1]["type"] == "session.updated" and d.closed is None
    assert d.retuned[-1].changes == {"initial_prompt": "Caxton", "endpoint_silence_s": 0.8,
                                     "endpoint_max_silence_s": 0.8}
    assert (d.processor.options.initial_prompt, d.processor.options.endpoint_silence_s) == ("Caxton", 0.8)
    update(d, format={"type": "audio/pcm", "rate": 24000}, transcription={"language": "en"})
    assert d.sent[-1]["type"] == "error" and "cannot change" in d.sent[-1]["error"]["message"]
    assert d.processor.options.endpoint_silence_s == 0.8 and d.closed is None


def test_manual_commit_without_turn_detection():
    d = session()
    update(d, format={"type": "audio/pcm", "rate": 24000}, turn_detection=None)
    audio = np.interp(np.arange(0, 4.0, 1 / 24000), np.arange(0, 4.0, 1 / 16000), ramp(4.0)).astype(np.float32)
    append(d, audio, rate=24000)
    assert not [m for m in d.sent if m["type"].endswith("completed")]  # no turn detection: no item ends alone
    d.text(json.dumps({"type": "input_audio_buffer.commit"}))
    completed = [m for m in d.sent if m["type"].endswith("completed")]
    assert len(completed) == 1 and completed[0]["transcript"]
    assert not [m for m in d.sent if m["type"] == "input_audio_buffer.speech_started"]


class LateDriver(Driver):
    """A driver whose recogniser runs behind the socket, as the server's scheduler does: actions
    queue up and run only when :meth:`catch_up` is called."""

    def __init__(self, *args, **kwargs):
        self.queued: list = []
        self.late = False
        super().__init__(*args, **kwargs)

    def perform(self, actions) -> None:
        if self.late:
            self.queued += [a for a in actions if isinstance(a, (Feed, Flush))]
            actions = [a for a in actions if not isinstance(a, (Feed, Flush))]
        super().perform(actions)

    def catch_up(self) -> None:
        self.late, queued, self.queued = False, self.queued, []
        super().perform(queued)


def test_push_to_talk_commit_ends_one_item_with_everything_appended_before_it():
    # Without turn detection, audio appended all at once and committed at once: the recogniser
    # hears it after the commit, ending an utterance (a pause) on the way. The item used to end at
    # that first end of utterance, holding its first words only, the rest deltas of an item never
    # committed or completed; it ends now when the commit's flush is carried out.
    words = [Word(" w0", 0.3, 0.7), Word(" w1", 0.8, 1.2), Word(" w2", 2.6, 3.0), Word(" w3", 3.1, 3.5)]
    d = LateDriver(session=RealtimeSession.from_query("intent=transcription", limits=SessionLimits(),
                                                      model_name="base"))
    update(d, format={"type": "audio/pcm", "rate": 16000}, turn_detection=None)
    d.late = True
    append(d, ramp(4.0))
    d.text(json.dumps({"type": "input_audio_buffer.commit"}))
    assert not [m for m in d.sent if m["type"].endswith("completed")]
    d.processor = RealtimeWhisperProcessor(engine=TimelineEngine(words), vad=TimelineVad(words), sample_rate=16000)
    d.catch_up()
    completed = [m for m in d.sent if m["type"].endswith("completed")]
    committed = [m for m in d.sent if m["type"] == "input_audio_buffer.committed"]
    assert len(completed) == 1 and len(committed) == 1, [m["type"] for m in d.sent]
    assert completed[0]["transcript"].split() == ["w0", "w1", "w2", "w3"]
    deltas = [m for m in d.sent if m["type"].endswith("delta")]
    assert {m["item_id"] for m in deltas} == {completed[0]["item_id"]}


def test_errors_in_the_api_shape_and_the_session_goes_on():
    d = session()
    d.text("{nope")
    d.text(json.dumps({"type": "response.create"}))
    d.text(json.dumps({"type": "input_audio_buffer.append", "audio": "!!!"}))
    update(d, format={"type": "audio/pcmu"})
    errors = [m for m in d.sent if m["type"] == "error"]
    assert len(errors) == 4 and all(e["error"]["message"] and e["error"]["type"] for e in errors)
    append(d, ramp(1.0))
    update(d, transcription={"language": "ko"})  # too late: audio has started, and a language is fixed
    assert d.sent[-1]["type"] == "error" and "language" in d.sent[-1]["error"]["message"]
    assert d.closed is None


def test_clear_drops_what_was_not_transcribed():
    d = session()
    update(d, format={"type": "audio/pcm", "rate": 16000}, turn_detection=None)
    append(d, ramp(3.0))
    d.text(json.dumps({"type": "input_audio_buffer.clear"}))
    assert d.sent[-1]["type"] == "input_audio_buffer.cleared"
    d.text(json.dumps({"type": "input_audio_buffer.commit"}))
    completed = [m for m in d.sent if m["type"].endswith("completed")]
    assert completed and completed[-1]["transcript"] == ""


def test_only_transcription_sessions():
    with pytest.raises(ConfigError, match="intent=transcription"):
        RealtimeSession.from_query("model=gpt-realtime")


@pytest.mark.parametrize("session_update", [
    {"audio": {"input": {"format": "pcm16"}}},
    {"audio": {"input": {"turn_detection": "server_vad"}}},
    {"audio": {"input": ["format"]}},
    {"audio": "pcm"},
    {"audio": {"input": {"transcription": "whisper-1"}}},
    {"audio": {"input": {"transcription": {"prompt": 42}}}},
    {"audio": {"input": {"transcription": {"prompt": ["a"]}}}},
    {"audio": {"input": {"transcription": {"language": 7}}}},
    {"audio": {"input": {"format": {"type": "audio/pcm", "rate": True}}}},
])
def test_a_session_update_of_the_wrong_shape_is_an_error_event_and_the_session_goes_on(session_update):
    """A string or list where the API has an object raised AttributeError (close 1006, no error); a
    non-string prompt was echoed as accepted and failed the first decode (close 1011)."""
    d = session()
    d.text(json.dumps({"type": "session.update", "event_id": "evt_7", "session": {"type": "transcription",
                                                                                  **session_update}}))
    error = d.sent[-1]
    assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error", error
    assert error["error"]["event_id"] == "evt_7" and error["error"]["message"]
    update(d, format={"type": "audio/pcm", "rate": 16000}, transcription={"language": "en"})
    assert d.sent[-1]["type"] == "session.updated" and d.closed is None


def test_a_prompt_longer_than_whisper_reads_is_refused():
    d = session()
    update(d, transcription={"prompt": "word " * 1000})
    assert d.sent[-1]["type"] == "error" and "at most 2000" in d.sent[-1]["error"]["message"]
    update(d, transcription={"prompt": "Kubernetes, Prometheus."})
    assert d.sent[-1]["type"] == "session.updated"


@pytest.mark.parametrize("audio", [None, "", 12345678, ["AAAA"]])
def test_an_append_without_base64_audio_is_an_error(audio):
    """Missing or empty audio was ignored without a word, and ``"audio": 12345678`` decoded as audio."""
    d = session()
    message = {"type": "input_audio_buffer.append", "event_id": "evt_1"}
    if audio is not None:
        message["audio"] = audio
    d.text(json.dumps(message))
    assert d.sent[-1]["type"] == "error" and d.sent[-1]["error"]["event_id"] == "evt_1"
    assert d.session.received_s == 0


def test_appends_split_inside_a_sample_lose_nothing():
    """An append of 3,201 bytes ends half-way through a PCM16 sample: the odd byte waits for the
    next append (OpenAI's buffer is bytes), instead of the append being refused as bad audio."""
    d = session()
    update(d, format={"type": "audio/pcm", "rate": 16000}, transcription={"model": "whisper-1", "language": "en"})
    pcm = np.round(ramp(8.0) * 32767).astype("<i2").tobytes()
    for i in range(0, len(pcm), 3201):
        d.now += 0.1
        d.text(json.dumps({"type": "input_audio_buffer.append",
                           "audio": base64.b64encode(pcm[i:i + 3201]).decode()}))
    d.perform(d.session.tick(d.now + 1.0))
    assert not [m for m in d.sent if m["type"] == "error"]
    assert d.session.received_s == pytest.approx(8.0)
    completed = [m for m in d.sent if m["type"] == "conversation.item.input_audio_transcription.completed"]
    assert " ".join(m["transcript"] for m in completed).split() == [w.text.strip() for w in WORDS]
