"""The processor's contract, driven by a fake engine (fast) — the real model is in test_real_model.py."""

import itertools
from dataclasses import replace

import numpy as np
import pytest

from fakes import TimelineEngine, TimelineVad, ramp
from rtwhisper import (
    AudioFormatError,
    ConfigError,
    ModelNotFoundError,
    RealtimeWhisperProcessor,
    StreamClosedError,
    Word,
)
from rtwhisper.engine import Hypothesis
from rtwhisper.presets import KOREAN_PROMPT
from rtwhisper.stream import commit as commit_module
from rtwhisper.stream.utterance import ENDPOINT_DOUBT_PROBABILITY

WORDS = [Word(f" w{i}", 0.3 + i * 0.5, 0.3 + i * 0.5 + 0.4) for i in range(20)]  # 10.3 s of "speech"


def proc_for(words, **kwargs):
    """A processor on the fake engine, hearing speech where the timeline has words."""
    engine = TimelineEngine(words)
    return RealtimeWhisperProcessor(engine=engine, vad=TimelineVad(words), **kwargs), engine


def run(proc, audio, block):
    events = []
    for i in range(0, len(audio), block):
        proc.feed(audio[i:i + block])
        events += proc.results()
    return events + proc.finish()


def test_partials_then_finals_with_stable_ids_and_sequence():
    proc = proc_for(WORDS, chunk_duration=1.0, overlap_duration=0.2)[0]
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
        proc = proc_for(WORDS, chunk_duration=1.0, overlap_duration=0.2)[0]
        texts.add(" ".join(e.text for e in run(proc, ramp(11.0), block) if e.is_final))
    assert len(texts) == 1


def test_feed_only_buffers():
    proc, engine = proc_for(WORDS, chunk_duration=1.0, overlap_duration=0.2)
    proc.feed(ramp(5.0))
    assert engine.calls == []  # no recognition until results()
    assert proc.results() and engine.calls


def test_windows_hear_the_chunk_grid_then_the_endpoint():
    sentence = [*WORDS[:-1], Word(" w19.", WORDS[-1].start_s, WORDS[-1].end_s)]
    proc, engine = proc_for(sentence, chunk_duration=2.0, overlap_duration=0.2)
    events = run(proc, ramp(11.0), 1600)
    ends = [round(end, 3) for _, end, _ in engine.calls]
    # updates on the 2 s grid; the pause after the sentence's last word (10.2 s) is heard as
    # soon as voice activity says the speech stopped (one window, ~0.1 s into it), and ends the
    # utterance 0.5 s after the speech (to a 32 ms VAD frame) with no decode of its own: the
    # words were heard to their end; the silence after it costs no decode
    assert ends[:5] == [2.0, 4.0, 6.0, 8.0, 10.0]
    assert ends[5:] == [pytest.approx(10.4, abs=0.04)] and engine.calls[5][2].paused
    assert all(end - start <= 15.0 + 1e-6 for start, end, _ in engine.calls)
    closing = [e for e in events if e.end_of_utterance]
    assert len(closing) == 1 and closing[0].is_final and closing[0].end_s == pytest.approx(10.7, abs=0.04)
    assert events[-1].end_s == pytest.approx(11.0)


def test_an_unfinished_phrase_waits_longer_and_speech_that_resumes_continues_it():
    words = [Word(" one", 0.5, 0.9), Word(" two", 1.0, 1.4), Word(" three", 2.1, 2.5), Word(" four.", 2.6, 3.0)]
    proc, _ = proc_for(words, endpoint_silence_s=0.4, endpoint_max_silence_s=1.0)
    events = run(proc, ramp(5.0), 1600)
    closing = [e for e in events if e.end_of_utterance]
    # "two" has no sentence end: the 0.7 s pause after it is not an endpoint; "four." is one
    assert len(closing) == 1 and closing[0].text.endswith("four.")
    assert closing[0].end_s == pytest.approx(3.4, abs=0.04)


def test_without_vad_every_chunk_is_decoded():
    engine = TimelineEngine(WORDS)
    proc = RealtimeWhisperProcessor(engine=engine, vad=False, chunk_duration=2.0, overlap_duration=0.2)
    run(proc, ramp(13.0), 1600)
    assert [round(end, 3) for _, end, _ in engine.calls] == [2.0, 4.0, 6.0, 8.0, 10.0, 12.0, 13.0]


SENTENCES = [Word(f" s{i}{'.' if i % 5 == 4 else ''}", 0.3 + i * 0.5, 0.3 + i * 0.5 + 0.4) for i in range(30)]


class FailingEngine(TimelineEngine):
    """Fails Whisper's thresholds (a loop) on every decode that is not ``thorough``."""

    def transcribe(self, audio, options):
        hypothesis = super().transcribe(audio, options)
        if options.thorough:
            return hypothesis
        return Hypothesis(hypothesis.words, "en", 0.99, passed=False)


def test_failed_decodes_get_the_whole_fallback_next_and_lose_no_word():
    """A failed interim decode is ignored, the next one is thorough, and a window never passes 30 s."""
    words = [Word(f" w{i}", 0.3 + i * 0.5, 0.7 + i * 0.5) for i in range(100)]  # 50 s of speech, no pause
    engine = FailingEngine(words)
    proc = RealtimeWhisperProcessor(engine=engine, vad=False, chunk_duration=5.0, overlap_duration=0.5)
    events = run(proc, ramp(52.0), 8000)
    thorough = [options.thorough for _, _, options in engine.calls]
    # a failure is never followed by another plain decode: the next one has the whole fallback
    assert thorough[0] is False and all(a or b for a, b in itertools.pairwise(thorough)), thorough
    assert all(end - start <= 30.0 + 1e-6 for start, end, _ in engine.calls)
    assert " ".join(e.text for e in events if e.is_final).split() == [w.text.strip() for w in words]


def test_final_text_before_the_window_is_the_prompt_and_inside_it_the_prefix():
    proc, engine = proc_for(SENTENCES, chunk_duration=1.0, overlap_duration=0.2, initial_prompt="Glossary: s0")
    events = run(proc, ramp(16.0), 1600)
    assert " ".join(e.text for e in events if e.is_final).split() == [w.text.strip() for w in SENTENCES]
    calls = [(start, opts) for start, _, opts in engine.calls]
    assert calls[0][1].prompt == "Glossary: s0" and calls[0][1].prefix is None
    # windows move to sentence ends once long; what is final before the start is the prompt,
    # what is final inside the window is the forced prefix (never decoded again)
    moved = [(start, opts) for start, opts in calls if start > 0]
    assert moved, "windows never moved"
    for start, opts in moved:
        before = [w.text.strip() for w in SENTENCES if (w.start_s + w.end_s) / 2 < start]
        assert opts.prompt is not None and opts.prompt.startswith("Glossary: s0")
        assert opts.prompt.endswith(before[-1])
        if opts.prefix:
            assert opts.prefix.split()[0] == next(w.text.strip() for w in SENTENCES if w.start_s >= start)


def test_prompt_echo_is_removed():
    echo = [Word(" 네,", 0.1, 0.3), Word(" 알겠습니다.", 0.3, 0.6), Word(" 감사합니다", 1.0, 1.6)]
    proc = RealtimeWhisperProcessor(engine=TimelineEngine(echo), vad=TimelineVad(echo), language="ko",
                                    initial_prompt=KOREAN_PROMPT)
    events = run(proc, ramp(3.0), 1600)
    assert " ".join(e.text for e in events if e.is_final and e.text) == "감사합니다"


def test_silence_costs_no_decode_and_gives_one_empty_final_covering_the_stream():
    proc, engine = proc_for([], chunk_duration=2.0, overlap_duration=0.2)
    events = run(proc, ramp(9.0), 1600)
    assert engine.calls == []
    assert [(e.is_final, e.text, e.start_s, e.end_s) for e in events] == [(True, "", 0.0, 9.0)]


def test_pause_ends_the_utterance_quickly():
    words = [Word(" hello", 0.5, 0.9), Word(" world.", 1.0, 1.6)]  # a finished sentence
    proc, _ = proc_for(words, endpoint_silence_s=0.4)
    audio = ramp(4.0)
    final_at = None
    for i in range(0, len(audio), 1600):  # 0.1 s blocks, as a live client sends them
        proc.feed(audio[i:i + 1600])
        for e in proc.results():
            if e.end_of_utterance and final_at is None:
                final_at = (i + 1600) / 16000
                assert e.is_final
    # speech ends at 1.6 s: the utterance is final 0.4 s of pause later (to a 32 ms frame and a 0.1 s block)
    assert final_at is not None and final_at <= 1.6 + 0.4 + 0.15


class MishearingEngine(TimelineEngine):
    """The interim decode that hears the phrase to its end reads "ask" as "is" at ``probability``
    (the one before heard "ask", so the two disagree and the words stay pending); a closing one
    (silence after the speech) hears "ask". jfk's "Ask not", measured: "is" at 0.04, "Ask" at 0.48."""

    def __init__(self, words, probability):
        super().__init__(words)
        self.probability = probability

    def transcribe(self, audio, options):
        hypothesis = super().transcribe(audio, options)
        if options.end_of_stream or self.calls[-1][1] < 1.45:
            return hypothesis
        return replace(hypothesis, words=tuple(
            replace(w, text=" is", probability=self.probability) if w.text == " ask" else w
            for w in hypothesis.words))


@pytest.mark.parametrize(("probability", "final"), [(0.04, "ask not."), (0.8, "is not.")])
def test_an_utterance_end_with_a_doubted_word_gets_a_decode_of_its_own(probability, final):
    words = [Word(" ask", 0.5, 0.9), Word(" not.", 1.0, 1.35)]  # the 1.5 s update hears the end
    engine = MishearingEngine(words, probability)
    proc = RealtimeWhisperProcessor(engine=engine, vad=TimelineVad(words), language="en",
                                    endpoint_silence_s=0.4, commit_probability=None)
    events = []
    for i in range(0, 16000 * 3, 1600):
        proc.feed(ramp(3.0)[i:i + 1600])
        events += proc.results()
    ends = [e for e in events if e.end_of_utterance]
    assert len(ends) == 1 and " ".join(e.text for e in events if e.is_final) == final
    closing = [options for _, _, options in engine.calls if options.end_of_stream]
    # a word Whisper doubts: the closing decode decides; one it is sure of: the endpoint costs no decode
    assert len(closing) == (1 if probability < ENDPOINT_DOUBT_PROBABILITY else 0)


class DetectingEngine(TimelineEngine):
    """Detects the given languages, one per decode without a language, then the last one."""

    def __init__(self, words, languages):
        super().__init__(words)
        self.languages = list(languages)

    def transcribe(self, audio, options):
        hypothesis = super().transcribe(audio, options)
        if options.language is not None:
            return replace(hypothesis, language=options.language, language_probability=1.0)
        language, probability = self.languages.pop(0) if len(self.languages) > 1 else self.languages[0]
        return replace(hypothesis, language=language, language_probability=probability)


@pytest.mark.parametrize(("detections", "locked_at"), [
    ([("tr", 0.95), ("en", 0.99), ("en", 0.99)], 3),  # a sure, wrong first guess is not kept
    ([("en", 0.9), ("en", 0.9)], 2),
    ([("en", 0.4), ("en", 0.9), ("ko", 0.9), ("ko", 0.9)], 4),  # unsure guesses do not count
])
def test_a_language_is_kept_once_two_detections_agree(detections, locked_at):
    engine = DetectingEngine(WORDS, detections)
    proc = RealtimeWhisperProcessor(engine=engine, vad=TimelineVad(WORDS))
    events = run(proc, ramp(11.0), 1600)
    sent = [options.language for _, _, options in engine.calls]
    expected = detections[-1][0]
    assert sent[:locked_at] == [None] * locked_at and set(sent[locked_at:]) == {expected}
    assert {e.language for e in events if e.is_final and e.text} == {expected}


class TwoUtteranceEngine(TimelineEngine):
    """Two utterances with a pause between them; the second is spoken in ``second`` and its
    windows are detected as ``detections`` (one per decode that detects, then the last one).
    A window decoded in a language other than the one spoken reads its words as ``?word``."""

    PAUSE_S = 2.5

    def __init__(self, words, second, detections):
        super().__init__(words)
        self.second = second
        self.detections = list(detections)

    def transcribe(self, audio, options):
        hypothesis = super().transcribe(audio, options)
        start, end, _ = self.calls[-1]
        spoken = self.second if end > self.PAUSE_S else "en"
        detected = None
        if options.language is None or options.detect_language:
            detected = ("en", 0.95) if end <= self.PAUSE_S else (
                self.detections.pop(0) if len(self.detections) > 1 else self.detections[0])
        language, probability = (options.language, 1.0) if options.language else detected
        words = tuple(w if language == spoken or start + w.end_s <= self.PAUSE_S else replace(w, text=" ?" + w.text[1:])
                      for w in hypothesis.words)
        return replace(hypothesis, words=words, language=language, language_probability=probability,
                       detected_language=detected and detected[0], detected_probability=detected and detected[1])


TWO_UTTERANCES = [Word(" and", 0.3, 0.6), Word(" so", 0.7, 1.0), Word(" my", 1.1, 1.4), Word(" friends", 1.5, 1.9),
                  Word(" ask", 3.0, 3.3), Word(" not", 3.4, 3.7), Word(" what", 3.8, 4.1), Word(" your", 4.2, 4.5),
                  Word(" country", 4.6, 5.1)]


@pytest.mark.parametrize(("second", "detections", "sent_after_pause"), [
    # unsure misdetections after the pause: the last utterance's language holds, detected alongside
    ("en", [("el", 0.6), ("en", 0.9)], [("en", True), ("en", True), ("en", False)]),
    ("en", [("el", 0.6), ("de", 0.7), ("en", 0.55)], [("en", True)] * 3 + [("en", False)]),
    # a sure one, once: the next window goes to the detector, which hears English again
    ("en", [("el", 0.9), ("en", 0.8)], [("en", True), (None, False), ("en", False)]),
    # the speaker switched: two sure detections in a row lock the new language
    ("ko", [("ko", 0.97), ("ko", 0.99)], [("en", True), (None, False), ("ko", False)]),
])
def test_an_utterance_after_a_pause_starts_in_the_language_before(second, detections, sent_after_pause):
    engine = TwoUtteranceEngine(TWO_UTTERANCES, second, detections)
    proc = RealtimeWhisperProcessor(engine=engine, vad=TimelineVad(TWO_UTTERANCES), endpoint_silence_s=0.4)
    events = run(proc, ramp(6.5), 1600)
    after = [(o.language, o.detect_language) for _, end, o in engine.calls if end > TwoUtteranceEngine.PAUSE_S]
    assert after[:len(sent_after_pause)] == sent_after_pause
    # no word read in the wrong language was ever shown, partial or final
    assert not [e.text for e in events if "?" in e.text]
    finals = [e for e in events if e.is_final and e.text]
    assert " ".join(e.text for e in finals) == "and so my friends ask not what your country"
    assert {e.language for e in finals if e.start_s > TwoUtteranceEngine.PAUSE_S} == {second}


def test_flush_makes_everything_final_and_the_stream_goes_on():
    words = [Word(" one", 0.5, 0.9), Word(" two", 1.0, 1.4), Word(" three", 1.5, 1.9), Word(" four", 3.0, 3.4)]
    proc, _ = proc_for(words)
    audio = ramp(4.0)
    proc.feed(audio[: 16000 * 2])  # the client stops mid-utterance, no pause yet
    events = proc.results() + proc.flush()
    finals = [e for e in events if e.is_final]
    assert " ".join(e.text for e in finals) == "one two three" and finals[-1].end_of_utterance
    assert proc.flush() == []  # nothing new: nothing to do
    proc.feed(audio[16000 * 2:])
    events = proc.results() + proc.finish()
    assert " ".join(e.text for e in events if e.is_final).split() == ["four"]
    assert events[-1].end_s == pytest.approx(4.0)


def test_scheduler_interface_one_request_at_a_time():
    proc, engine = proc_for(WORDS, chunk_duration=1.0)
    proc.feed(ramp(2.9))
    request = proc.next_request()
    # due: the 1 s grid up to the audio fed
    assert request is not None and request.duration_s == pytest.approx(2.0)
    assert proc.next_request() is None  # the first must be applied before the next is due
    with pytest.raises(RuntimeError, match="apply"):
        proc.finish()
    events = proc.apply(engine.transcribe_batch([request])[0])
    assert events and proc.next_request() is None  # nothing more due before 3.0 s
    with pytest.raises(RuntimeError, match="without a request"):
        proc.apply(Hypothesis(()))


def test_a_window_is_due_at_its_grid_point_not_a_block_later():
    # 0.5 s fed in 0.1 s blocks: the VAD has heard 15 whole 32 ms frames (0.48 s). The window
    # to 0.5 s is due now; waiting for the VAD's 16th frame put every update 0.1 s late.
    proc, _ = proc_for(WORDS, chunk_duration=0.5)
    audio = ramp(0.5)
    for i in range(0, len(audio), 1600):
        proc.feed(audio[i:i + 1600])
    request = proc.next_request()
    assert request is not None and request.duration_s == pytest.approx(0.5)


def test_a_scheduler_may_have_the_next_update_decoded_ahead():
    proc, engine = proc_for(WORDS, chunk_duration=0.25, agreement_span_s=0.5)
    audio = ramp(3.0)
    proc.feed(audio[:16000])
    first = proc.next_request()
    assert first is not None and first.duration_s == pytest.approx(1.0)
    assert proc.next_request(ahead=True) is None  # no new audio past the window in flight
    proc.feed(audio[16000:20000])
    second = proc.next_request(ahead=True)
    assert proc.next_request() is None  # a plain request waits for the first to be applied
    # the next grid step past the one in flight, from the same start, with the same final text
    assert second is not None and second.duration_s == pytest.approx(1.25)
    assert second.options.prefix == first.options.prefix
    proc.feed(audio[20000:24000])
    assert proc.next_request(ahead=True) is None  # one ahead at most
    answers = engine.transcribe_batch([first, second])
    events = proc.apply(answers[0]) + proc.apply(answers[1])
    shown = [w.text.strip() for w in events[-1].words]  # the newest partial: every word heard, once
    assert [w.text.strip() for e in events if e.is_final for w in e.words] + shown == ["w0", "w1"]
    assert proc.next_request() is not None  # both applied, in order: the stream goes on


def drive_ahead(proc, engine, audio, block=1600):
    """Stream ``audio`` with two decodes in flight whenever possible, the oldest applied one block later.

    The engine answers each request when it is made, from the final text of that moment: a
    window that went ahead hears, without a prefix, what the one before it makes final.
    """
    events, flight = [], []
    for i in range(0, len(audio), block):
        proc.feed(audio[i:i + block])
        while flight and len(flight) > 1:
            events += proc.apply(flight.pop(0))
        request = proc.next_request(ahead=bool(flight))
        if request is not None:
            flight.append(engine.transcribe_batch([request])[0])
        events += proc.take_events()
    while flight:
        events += proc.apply(flight.pop(0))
    return events + proc.finish()


@pytest.mark.parametrize("jitter_s", [0.0, 0.08])
def test_updates_decoded_ahead_lose_and_repeat_no_word(jitter_s, monkeypatch):
    repeats, original = [], commit_module.repeated_head

    def recorded(final, words):
        repeats.append(original(final, words))
        return repeats[-1]

    monkeypatch.setattr(commit_module, "repeated_head", recorded)
    words = [Word(f" w{i}", 0.3 + i * 0.3, 0.3 + i * 0.3 + 0.25) for i in range(30)]  # no pause: no endpoint
    engine = TimelineEngine(words, jitter_s=jitter_s, seed=3)
    proc = RealtimeWhisperProcessor(engine=engine, vad=TimelineVad(words), chunk_duration=0.25,
                                    agreement_span_s=0.5)
    events = drive_ahead(proc, engine, ramp(10.0))
    finals = [w.text.strip() for e in events if e.is_final for w in e.words]
    assert finals == [w.text.strip() for w in words]
    # windows went ahead with a prefix that the one before them outdated: they heard the words
    # it made final again, without a prefix, and those were taken off by text
    assert repeats and all(n > 0 for n in repeats)
    assert events[-1].end_s == pytest.approx(10.0)


class ShrinkingEngine:
    """Hears "a b c", then only "a b" (Whisper dropping an unsure last word), then "a b c d"."""

    def __init__(self) -> None:
        self.answers = [["a", "b", "c"], ["a", "b"], ["a", "b", "c", "d"]]

    def transcribe_batch(self, requests):
        out = []
        for _ in requests:
            texts = self.answers.pop(0) if self.answers else ["a", "b", "c", "d"]
            out.append(Hypothesis(tuple(Word(" " + t, 0.1 + 0.3 * i, 0.3 + 0.3 * i, 0.5) for i, t in enumerate(texts))))
        return out


def test_partials_never_flicker_back_to_a_shorter_text():
    proc = RealtimeWhisperProcessor(engine=ShrinkingEngine(), vad=False, chunk_duration=0.5, commit_probability=None)
    shown = []
    audio = np.zeros(16000 * 2, dtype=np.float32)
    for i in range(0, len(audio), 8000):
        proc.feed(audio[i:i + 8000])
        shown += [e.text for e in proc.results() if not e.is_final]
    assert shown and all(not earlier.startswith(later) or earlier == later
                         for k, later in enumerate(shown) for earlier in shown[:k])


def test_resampled_input_is_accounted_for():
    proc = RealtimeWhisperProcessor(engine=TimelineEngine([]), vad=False, sample_rate=48000)
    proc.feed(np.zeros(48000 * 3, dtype=np.float32))
    events = proc.results() + proc.finish()
    assert proc.fed_duration_s == 3.0
    assert events[-1].end_s == pytest.approx(3.0)


def test_bad_input_is_a_typed_error_and_nothing_is_buffered():
    proc = RealtimeWhisperProcessor(engine=TimelineEngine(WORDS), vad=TimelineVad(WORDS))
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
        ({"endpoint_silence_s": 0}, "endpoint_silence_s must be a number of seconds from 0.1"),
        ({"commit_probability": 1.5}, "commit_probability must be a probability from 0 to 1, or None"),
        ({"agreement_span_s": -0.5}, "agreement_span_s must be a number of seconds from 0 to 5"),
        ({"agreement_margin_s": 6}, "agreement_margin_s must be a number of seconds from 0 to 5"),
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
    assert (proc.options.language, proc.options.initial_prompt, proc.options.beam_size) == ("ko", None, 5)
    proc = RealtimeWhisperProcessor.from_preset("low-latency", engine=TimelineEngine([]))
    assert (proc.options.chunk_duration, proc.options.spare_chunk_duration,
            proc.options.agreement_margin_s) == (0.5, 0.3, 0.3)
    # a cadence the caller chose drops the preset's spare step (0.3 s updates whenever a worker is free)
    proc = RealtimeWhisperProcessor.from_preset("low-latency", engine=TimelineEngine([]), chunk_duration=1.0)
    assert (proc.options.chunk_duration, proc.options.beam_size, proc.options.spare_chunk_duration) == (1.0, 1, None)
    proc = RealtimeWhisperProcessor.from_preset("commands", engine=TimelineEngine([]), chunk_duration=1.0,
                                                spare_chunk_duration=0.4)
    assert (proc.options.chunk_duration, proc.options.spare_chunk_duration) == (1.0, 0.4)
    assert RealtimeWhisperProcessor.from_preset("translate", engine=TimelineEngine([])).options.task == "translate"
    # a pause longer than the preset's longest (Deepgram's endpointing=false asks for 10 s) raises it too
    proc = RealtimeWhisperProcessor.from_preset("low_latency", engine=TimelineEngine([]), endpoint_silence_s=10.0)
    assert (proc.options.endpoint_silence_s, proc.options.endpoint_max_silence_s) == (10.0, 10.0)
    with pytest.raises(ConfigError, match="endpoint_max_silence_s"):
        RealtimeWhisperProcessor.from_preset("low_latency", engine=TimelineEngine([]), endpoint_silence_s=2.0,
                                             endpoint_max_silence_s=1.0)
    with pytest.raises(ConfigError, match="presets are: low_latency, high_accuracy, korean"):
        RealtimeWhisperProcessor.from_preset("fastest")


class OnceEngine:
    """Hears "a b c d" (probability 0.5 each) in whatever window it gets."""

    def transcribe_batch(self, requests):
        return [Hypothesis(tuple(Word(" " + t, 0.1 + 0.3 * i, 0.3 + 0.3 * i, 0.5) for i, t in enumerate("abcd")))
                for _ in requests]


@pytest.mark.parametrize(("probability", "final"), [(None, ""), (1.0, ""), (0.9, ""), (0.5, "a b c"), (0.0, "a b c")])
def test_one_hypothesis_commits_words_at_or_above_commit_probability(probability, final):
    """``commit_probability=0.0`` commits on the margin alone (AlignAtt's rule), not never;
    ``None`` and ``1.0`` wait for agreement."""
    proc = RealtimeWhisperProcessor(engine=OnceEngine(), vad=False, chunk_duration=0.5, language="en",
                                    commit_probability=probability, commit_margin_s=0.4)
    proc.feed(np.zeros(16000 * 2, dtype=np.float32))  # one 2 s window: the words end by 1.2 s
    assert " ".join(e.text for e in proc.results() if e.is_final) == final


class SilentCloseEngine(OnceEngine):
    """Hears "a b c d" in every interim window; Whisper's no-speech rule sets the closing one aside."""

    def transcribe_batch(self, requests):
        heard = super().transcribe_batch(requests)
        return [Hypothesis((), silent=True) if r.options.end_of_stream else h
                for r, h in zip(requests, heard, strict=True)]


@pytest.mark.parametrize("silent", [True, False])
def test_a_closing_decode_set_aside_as_silence_takes_back_no_words(silent):
    """espeak_ko.wav: its closing window read as silence, and the words its partials showed were
    lost. A closing decode that found nothing, by contrast, is evidence: the words go."""

    closing = []

    class Engine(SilentCloseEngine):
        def transcribe_batch(self, requests):
            closing.extend(r.options.end_of_stream for r in requests)
            return [h if h.words or silent else Hypothesis(()) for h in super().transcribe_batch(requests)]

    proc = RealtimeWhisperProcessor(engine=Engine(), vad=False, chunk_duration=0.5, commit_probability=None)
    proc.feed(np.zeros(16000 * 2, dtype=np.float32))
    partials = [e.text for e in proc.results() if not e.is_final]
    proc.feed(np.zeros(16000 // 4, dtype=np.float32))  # the last window hears more: it is decoded
    finals = [e.text for e in proc.finish() if e.is_final]
    assert closing[-1] is True
    assert partials and partials[-1].split() == ["a", "b", "c", "d"]
    # one interim window heard the words (pending: nothing agreed with it); the closing one decides
    assert " ".join(finals).split() == (["a", "b", "c", "d"] if silent else [])


def test_one_hypothesis_commits_nothing_before_the_language_is_known():
    """Streamed without a language, a sure hypothesis may be sure in the wrong one (LJ001-0011's
    first 0.5 s read as Turkish at 0.95): until two detections agree, words wait for agreement."""
    proc = RealtimeWhisperProcessor(engine=OnceEngine(), vad=False, chunk_duration=0.5, commit_probability=0.0,
                                    commit_margin_s=0.4)  # OnceEngine detects no language
    proc.feed(np.zeros(16000 * 2, dtype=np.float32))
    assert [e.text for e in proc.results() if e.is_final] == []


class VanishingEngine(TimelineEngine):
    """Hears the timeline in the first window and in closing ones; the interim windows after the
    first come back empty (a hypothesis later set aside, as a sign-off made up from silence is)."""

    def transcribe_batch(self, requests):
        heard = super().transcribe_batch(requests)
        return [h if len(self.calls) == 1 or r.options.end_of_stream else Hypothesis((), "en", 0.99)
                for r, h in zip(requests, heard, strict=True)]


def test_an_utterance_whose_shown_words_no_hypothesis_holds_gets_its_end_decoded():
    """The stream's first utterance showed a partial that later hypotheses dropped: no word is
    pending or final, yet something was shown. Its end is heard again (it raised IndexError)."""
    words = [Word(" a", 0.3, 0.7), Word(" b", 0.8, 1.2)]
    engine = VanishingEngine(words)
    proc = RealtimeWhisperProcessor(engine=engine, vad=TimelineVad(words), language="en", chunk_duration=0.5,
                                    commit_probability=None)
    events = []
    audio = ramp(3.0)
    for i in range(0, len(audio), 1600):
        proc.feed(audio[i:i + 1600])
        events += proc.results()
    assert [e.text for e in events if not e.is_final][:1] == ["a-"]
    finals = [e for e in events if e.is_final]
    assert [e.text for e in finals] == ["a b"] and finals[0].end_of_utterance
    assert engine.calls[-1][2].end_of_stream  # the end was decoded, with silence after it
    assert finals[0].end_s <= 1.2 + 0.5 + 0.1


def test_a_spare_engine_takes_updates_every_spare_chunk():
    # 0.5 s updates, 0.3 s while a scheduler says the engine has a worker to spare.
    proc, _ = proc_for(WORDS, chunk_duration=0.5, spare_chunk_duration=0.3)
    audio = ramp(2.0)
    proc.feed(audio[:9600])  # 0.6 s
    plain = proc.next_request()
    assert plain is not None and plain.duration_s == pytest.approx(0.5)
    proc, _ = proc_for(WORDS, chunk_duration=0.5, spare_chunk_duration=0.3)
    proc.feed(audio[:9600])
    spare = proc.next_request(spare=True)
    assert spare is not None and spare.duration_s == pytest.approx(0.6)  # two 0.3 s steps due at once
    proc.feed(audio[9600:14400])  # to 0.9 s
    ahead = proc.next_request(ahead=True, spare=True)
    assert ahead is not None and ahead.duration_s == pytest.approx(0.9)
    # Without a spare step the flag changes nothing; the spare step is never longer than the chunk.
    still, _ = proc_for(WORDS, chunk_duration=0.5)
    still.feed(audio[:9600])
    assert still.next_request(spare=True).duration_s == pytest.approx(0.5)
    short, _ = proc_for(WORDS, chunk_duration=0.25, spare_chunk_duration=0.3)
    short.feed(audio[:9600])
    assert short.next_request(spare=True).duration_s == pytest.approx(0.5)  # two 0.25 s steps


@pytest.mark.parametrize("bad", [0, 0.05, -1, "0.3", True, 20.0])
def test_spare_chunk_duration_is_checked(bad):
    with pytest.raises(ConfigError, match=r"spare_chunk_duration must be a number of seconds from 0\.1 to 15"):
        proc_for(WORDS, spare_chunk_duration=bad)


PAUSED = [Word(f" p{i}{'.' if i == 4 else ''}", 0.3 + i * 0.5, 0.7 + i * 0.5) for i in range(5)] + [
    Word(f" q{i}", 4.3 + i * 0.5, 4.7 + i * 0.5) for i in range(4)]  # a pause from 2.7 to 4.3 s


class PeriodEngine(TimelineEngine):
    """Writes a sentence's period only when it hears the speech stop, as Whisper does: in a window
    padded with silence (a closing or paused one), not in one that ends 0.1-0.3 s into the pause."""

    def transcribe(self, audio, options):
        hypothesis = super().transcribe(audio, options)
        if options.end_of_stream or options.paused:
            return hypothesis
        words = tuple(replace(w, text=w.text.rstrip(".")) for w in hypothesis.words)
        return Hypothesis(words, "en", 0.99)


def first_eou_at(engine, **kwargs):
    """Audio fed (s) when the first utterance's final came, and the first final."""
    proc = RealtimeWhisperProcessor(engine=engine, vad=TimelineVad(PAUSED), **kwargs)
    audio = ramp(7.0)
    for i in range(0, len(audio), 1600):
        proc.feed(audio[i:i + 1600])
        for e in proc.results():
            if e.is_final and e.end_of_utterance:
                return (i + 1600) / 16000, e
    raise AssertionError("no end of utterance before the stream ended")


@pytest.mark.parametrize("chunk", [0.3, 0.5])
def test_an_unfinished_phrase_gets_a_padded_decode_at_its_endpoint(chunk):
    # Grid windows 0.1-0.3 s into the pause wrote no period (the phrase looked unfinished) and
    # the utterance waited endpoint_max_silence_s (1.0 s); a decode padded with silence as soon as
    # voice activity says the speech stopped (0.1 s into the pause) hears it stop and writes it,
    # and the endpoint (0.5 s) closes the sentence with no decode of its own.
    engine = PeriodEngine(PAUSED)
    at_s, final = first_eou_at(engine, chunk_duration=chunk, endpoint_max_silence_s=1.0)  # the presets'
    assert at_s <= 2.7 + 0.5 + 0.1 + 1e-9, (at_s, final)
    assert final.text.split()[-1] == "p4."
    padded = [end for _, end, options in engine.calls if options.paused]
    assert padded and all(2.7 + 0.1 - 1e-9 <= end <= 2.7 + 0.3 for end in padded), padded
    # Interim windows that end inside the speech or later in the pause are never padded.
    assert not any(options.paused for _, end, options in engine.calls if end < 2.75 or 3.1 < end < 6.0)


class FailsShortEngine(TimelineEngine):
    """Fails Whisper's thresholds on short interim windows (a phrase's first, 0.5 s)."""

    def transcribe(self, audio, options):
        hypothesis = super().transcribe(audio, options)
        if options.end_of_stream or len(audio) > 0.8 * 16000:
            return hypothesis
        return Hypothesis(hypothesis.words, "en", 0.99, passed=False)


def test_a_failed_first_window_that_later_ones_outheard_needs_no_closing_decode():
    engine = FailsShortEngine(PAUSED)
    proc = RealtimeWhisperProcessor(engine=engine, vad=TimelineVad(PAUSED), chunk_duration=0.5)
    events = run(proc, ramp(7.0), 1600)
    assert " ".join(e.text for e in events if e.is_final).split() == [w.text.strip() for w in PAUSED]
    closing = [end for _, end, options in engine.calls if options.end_of_stream]
    assert closing == [], closing  # both utterances ended without a decode of their own
