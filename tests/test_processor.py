"""The processor's contract, driven by a fake engine (fast) — the real model is in test_real_model.py."""

import numpy as np
import pytest

from fakes import TimelineEngine, ramp
from rtwhisper import (
    AudioFormatError,
    ConfigError,
    ModelNotFoundError,
    RealtimeWhisperProcessor,
    StreamClosedError,
    Word,
)
from rtwhisper.presets import KOREAN_PROMPT

WORDS = [Word(f" w{i}", 0.3 + i * 0.5, 0.3 + i * 0.5 + 0.4) for i in range(20)]  # 10.3 s of "speech"


def run(proc, audio, block):
    events = []
    for i in range(0, len(audio), block):
        proc.feed(audio[i:i + block])
        events += proc.results()
    return events + proc.finish()


def test_partials_then_finals_with_stable_ids_and_sequence():
    proc = RealtimeWhisperProcessor(engine=TimelineEngine(WORDS), chunk_duration=1.0, overlap_duration=0.2)
    events = run(proc, ramp(11.0), 1600)
    assert [e.sequence for e in events] == list(range(len(events)))
    assert any(not e.is_final for e in events) and any(e.is_final for e in events)
    finals = [e for e in events if e.is_final]
    assert [e.segment_id for e in finals] == list(range(len(finals)))
    for e in events:  # a partial belongs to the segment its final will close
        if not e.is_final:
            assert e.segment_id not in {f.segment_id for f in finals if f.sequence < e.sequence}
    assert " ".join(e.text for e in finals).split() == [w.text.strip() for w in WORDS]
    assert finals[-1].end_s == pytest.approx(11.0)
    assert all(e.to_dict()["type"] == e.type for e in events)


def test_same_transcript_whatever_the_block_size():
    texts = set()
    for block in (160, 1600, 16000, 176000):
        proc = RealtimeWhisperProcessor(engine=TimelineEngine(WORDS), chunk_duration=1.0, overlap_duration=0.2)
        texts.add(" ".join(e.text for e in run(proc, ramp(11.0), block) if e.is_final))
    assert len(texts) == 1


def test_feed_only_buffers():
    engine = TimelineEngine(WORDS)
    proc = RealtimeWhisperProcessor(engine=engine, chunk_duration=1.0, overlap_duration=0.2)
    proc.feed(ramp(5.0))
    assert engine.calls == []  # no recognition until results()
    assert proc.results() and engine.calls


def test_windows_hear_the_chunk_grid_and_respect_the_max_window():
    engine = TimelineEngine(WORDS)
    proc = RealtimeWhisperProcessor(engine=engine, chunk_duration=2.0, overlap_duration=0.2)
    run(proc, ramp(11.0), 1600)
    ends = [round(end, 3) for _, end, _ in engine.calls]
    assert ends[:5] == [2.0, 4.0, 6.0, 8.0, 10.0] and ends[-1] == 11.0
    assert all(end - start <= 15.0 + 1e-6 for start, end, _ in engine.calls)


def test_committed_text_before_the_window_is_the_prompt():
    engine = TimelineEngine(WORDS)
    proc = RealtimeWhisperProcessor(engine=engine, chunk_duration=1.0, overlap_duration=0.2,
                                    initial_prompt="Glossary: w0")
    run(proc, ramp(11.0), 16000)
    prompts = [opts.prompt for _, _, opts in engine.calls]
    assert prompts[0] == "Glossary: w0"
    assert any(p and p.startswith("Glossary: w0 w0 w1") for p in prompts[1:])


def test_prompt_echo_is_removed():
    echo = [Word(" 네,", 0.1, 0.3), Word(" 알겠습니다.", 0.3, 0.6), Word(" 감사합니다", 1.0, 1.6)]
    proc = RealtimeWhisperProcessor(engine=TimelineEngine(echo), language="ko", initial_prompt=KOREAN_PROMPT)
    events = run(proc, ramp(3.0), 1600)
    assert " ".join(e.text for e in events if e.is_final) == "감사합니다"


def test_silence_produces_one_empty_final_covering_the_stream():
    proc = RealtimeWhisperProcessor(engine=TimelineEngine([]), chunk_duration=2.0, overlap_duration=0.2)
    events = run(proc, ramp(9.0), 1600)
    assert [(e.is_final, e.text, e.start_s, e.end_s) for e in events] == [(True, "", 0.0, 9.0)]


def test_resampled_input_is_accounted_for():
    proc = RealtimeWhisperProcessor(engine=TimelineEngine([]), sample_rate=48000)
    proc.feed(np.zeros(48000 * 3, dtype=np.float32))
    events = proc.results() + proc.finish()
    assert proc.fed_duration_s == 3.0
    assert events[-1].end_s == pytest.approx(3.0)


def test_bad_input_is_a_typed_error_and_nothing_is_buffered():
    proc = RealtimeWhisperProcessor(engine=TimelineEngine(WORDS))
    with pytest.raises(AudioFormatError):
        proc.feed(np.array([np.nan], dtype=np.float32))
    with pytest.raises(AudioFormatError):
        proc.feed(b"\x00\x01\x02")
    assert proc.fed_duration_s == 0
    proc.finish()
    with pytest.raises(StreamClosedError, match="finish"):
        proc.feed(np.zeros(10, dtype=np.float32))
    assert proc.finish() == [] and proc.results() == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"task": "summarize"}, "task must be one of transcribe, translate"),
        ({"beam_size": 0}, "beam_size must be an integer from 1 to 20"),
        ({"chunk_duration": 1.0, "overlap_duration": 1.0}, "overlap_duration"),
        ({"sample_rate": 12345}, "sample rate"),
        ({"language": ""}, "language must be"),
        ({"language": "english"}, "unknown language code 'english'.*'en'"),
    ],
)
def test_bad_options_are_config_errors(kwargs, message):
    with pytest.raises((ConfigError, AudioFormatError), match=message):
        RealtimeWhisperProcessor(engine=TimelineEngine([]), **kwargs)


def test_unknown_model_lists_the_installed_ones():
    with pytest.raises(ModelNotFoundError, match=r"Installed offline models: base, tiny\.en"):
        RealtimeWhisperProcessor(model_name="large-v3")
    with pytest.raises(ModelNotFoundError, match="neither a folder nor a known size name"):
        RealtimeWhisperProcessor(model_name="gigantic")


def test_presets_apply_and_take_overrides():
    proc = RealtimeWhisperProcessor.from_preset("korean", engine=TimelineEngine([]))
    assert (proc.language, proc.initial_prompt, proc.beam_size) == ("ko", KOREAN_PROMPT, 5)
    proc = RealtimeWhisperProcessor.from_preset("low-latency", engine=TimelineEngine([]), chunk_duration=1.0)
    assert (proc.config.chunk_duration, proc.config.overlap_duration, proc.beam_size) == (1.0, 0.2, 1)
    assert RealtimeWhisperProcessor.from_preset("translate", engine=TimelineEngine([])).task == "translate"
    with pytest.raises(ConfigError, match="presets are: low_latency, high_accuracy, korean"):
        RealtimeWhisperProcessor.from_preset("fastest")
