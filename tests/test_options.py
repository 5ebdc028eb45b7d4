"""StreamOptions and its table of knobs: one validated type, and everything made from it."""

import dataclasses
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fakes import TimelineEngine, TimelineVad, ramp
from rtwhisper import KNOBS, AudioFormatError, ConfigError, RealtimeWhisperProcessor, StreamOptions, Word
from rtwhisper.options import LIVE_KNOBS, check_keyterms
from rtwhisper.presets import PRESETS
from rtwhisper.server.stream_config import CLIENT_KNOBS, CONFIG_KEYS, StreamConfig

WORDS = [Word(f" w{i}", 0.3 + 0.6 * i, 0.7 + 0.6 * i) for i in range(8)]


def test_every_field_has_its_row_and_the_rows_their_field():
    fields = dataclasses.fields(StreamOptions)
    assert [f.name for f in fields] == list(KNOBS)
    for f in fields:
        knob = KNOBS[f.name]
        assert knob.name == f.name and knob.group in ("window", "commit", "endpoint", "decode", "input")
        assert knob.help and knob.accepts()
        assert knob.check(f.default) == f.default  # every default is in its own range
    assert set(LIVE_KNOBS) == {"commit_probability", "commit_margin_s", "endpoint_silence_s",
                               "endpoint_max_silence_s", "beam_size", "initial_prompt", "keyterms"}


@pytest.mark.parametrize("name", [n for n, k in KNOBS.items() if k.kind in ("seconds", "probability", "integer")])
def test_a_number_outside_its_range_names_the_knob_and_the_range(name):
    knob = KNOBS[name]
    assert knob.high is not None
    with pytest.raises((ConfigError, AudioFormatError), match=name):
        StreamOptions(**{name: knob.high + 1})
    with pytest.raises((ConfigError, AudioFormatError), match=name):
        StreamOptions(**{name: True})  # a bool is not a number


@settings(max_examples=60, deadline=None)
@given(chunk=st.floats(0.05, 10.0), overlap_share=st.floats(0.0, 0.99), silence=st.floats(0.1, 10.0),
       extra=st.floats(0.0, 20.0), probability=st.one_of(st.none(), st.floats(0.0, 1.0)))
def test_values_in_range_make_options_that_echo_them(chunk, overlap_share, silence, extra, probability):
    options = StreamOptions(chunk_duration=chunk, overlap_duration=chunk * overlap_share, endpoint_silence_s=silence,
                            endpoint_max_silence_s=silence + extra if silence + extra <= 30 else 30.0,
                            commit_probability=probability)
    echoed = options.to_dict()
    assert echoed["chunk_duration"] == chunk and echoed["commit_probability"] == probability
    assert StreamOptions(**echoed) == options  # the echo makes the same options
    assert options.chunk_config().max_window_duration >= 2 * chunk + options.overlap_duration - 1e-9


def test_replace_checks_and_names_what_exists():
    options = StreamOptions().replace(language="ko", beam_size=5)
    assert (options.language, options.beam_size) == ("ko", 5)
    with pytest.raises(ConfigError, match=r"unknown option.*chunk_size.*options are: chunk_duration"):
        options.replace(chunk_size=1.0)
    with pytest.raises(ConfigError, match="endpoint_max_silence_s"):
        options.replace(endpoint_silence_s=2.0, endpoint_max_silence_s=1.0)
    with pytest.raises(ConfigError, match="overlap_duration"):
        options.replace(chunk_duration=1.0, overlap_duration=1.0)
    assert options.group("endpoint") == {"endpoint_silence_s": 0.5, "endpoint_max_silence_s": 0.5}
    with pytest.raises(ConfigError, match="groups are"):
        options.group("speed")


def test_presets_are_options_and_the_guides_keywords_still_work():
    assert all(isinstance(p.options, StreamOptions) for p in PRESETS.values())
    assert PRESETS["korean"].options.language == "ko" and PRESETS["korean"].options.beam_size == 5
    proc = RealtimeWhisperProcessor(model_name="base", chunk_duration=2, overlap_duration=0.2,
                                    engine=TimelineEngine([]))
    assert (proc.options.chunk_duration, proc.options.overlap_duration) == (2.0, 0.2)
    base = StreamOptions(language="ko", beam_size=5)
    proc = RealtimeWhisperProcessor(options=base, beam_size=3, engine=TimelineEngine([]))
    assert (proc.options.language, proc.options.beam_size) == ("ko", 3)  # keywords replace the options' values
    with pytest.raises(ConfigError, match="unknown option"):
        RealtimeWhisperProcessor(engine=TimelineEngine([]), chunk_size=1.0)


def test_a_clients_config_message_takes_every_knob_but_the_input_group():
    assert set(CLIENT_KNOBS) == {n for n, k in KNOBS.items() if k.group != "input"}
    assert set(CONFIG_KEYS) >= set(CLIENT_KNOBS) | {"preset", "format", "sample_rate", "partials"}
    config = StreamConfig.from_message({"type": "config", "max_window_duration": 20, "keyterms": ["Gutenberg"],
                                        "commit_probability": None})
    assert config.overrides() == {"max_window_duration": 20.0, "keyterms": ("Gutenberg",), "sample_rate": 16000}
    with pytest.raises(ConfigError, match="commit_probability must be a probability from 0 to 1"):
        StreamConfig.from_message({"commit_probability": 1.5})
    with pytest.raises(ConfigError, match=r"unknown config field.*channels"):
        StreamConfig.from_message({"channels": 2})


def test_the_command_lines_recognition_flags_are_the_table():
    from rtwhisper.cli import build_parser

    args = build_parser().parse_args(["transcribe", "x.wav", "--chunk", "1", "--commit-probability", "none",
                                      "--keyterms", "Gutenberg, woodcutters", "--endpoint-max-silence-s", "2"])
    assert (args.chunk_duration, args.commit_probability, args.endpoint_max_silence_s) == (1.0, None, 2.0)
    assert check_keyterms(args.keyterms) == ("Gutenberg", "woodcutters")
    assert not hasattr(args, "agreement_span_s")  # not given: the preset decides
    help_text = build_parser()._subparsers._group_actions[0].choices["listen"].format_help()  # type: ignore[union-attr]
    for name, knob in KNOBS.items():
        if knob.group != "input":
            assert f"--{(knob.flag or name).replace('_', '-')}" in help_text


def test_keyterms_reach_every_decode_and_change_mid_stream():
    engine = TimelineEngine(WORDS)
    proc = RealtimeWhisperProcessor(engine=engine, vad=TimelineVad(WORDS), language="en",
                                    keyterms=["Gutenberg", " woodcutters "])
    audio = ramp(5.0)
    for i in range(0, audio.size // 2, 1600):
        proc.feed(audio[i:i + 1600])
        proc.results()
    assert engine.calls and all(o.hotwords == "Gutenberg, woodcutters." for _, _, o in engine.calls)
    seen = len(engine.calls)
    proc.update_options(keyterms=("Caxton",), endpoint_silence_s=0.3)
    for i in range(audio.size // 2, audio.size, 1600):
        proc.feed(audio[i:i + 1600])
        proc.results()
    assert len(engine.calls) > seen and all(o.hotwords == "Caxton." for _, _, o in engine.calls[seen:])
    assert proc.options.endpoint_silence_s == 0.3
    with pytest.raises(ConfigError, match=r"chunk_duration cannot change mid-stream; these can: .*keyterms"):
        proc.update_options(chunk_duration=1.0)


def test_keyterms_are_bounded_and_typed():
    assert check_keyterms("a, b,,") == ("a", "b")
    with pytest.raises(ConfigError, match="list of strings"):
        StreamOptions(keyterms=[1, 2])  # type: ignore[list-item]
    with pytest.raises(ConfigError, match="at most 50 terms"):
        StreamOptions(keyterms=tuple(f"t{i}" for i in range(51)))
    with pytest.raises(ConfigError, match="500 in all"):
        StreamOptions(keyterms=tuple("x" * 90 for _ in range(6)))
    assert math.isclose(StreamOptions().commit_margin_s, 0.1)
