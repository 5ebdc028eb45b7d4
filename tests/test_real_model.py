"""The real thing: faster-whisper models from the model packs on real speech from ../shared/audio."""

from __future__ import annotations

import difflib
import itertools
import re

import numpy as np
import pytest

from conftest import load_wav
from rtwhisper import RealtimeWhisperProcessor
from rtwhisper.events import join_words
from rtwhisper.metrics import cer, normalize_text, wer

pytestmark = pytest.mark.model

HANGUL = re.compile(r"[\uac00-\ud7a3]")


def stream(proc: RealtimeWhisperProcessor, audio: np.ndarray, block_s: float = 0.1, *, flush: bool = False):
    """Feed ``audio`` in blocks as a live client does; then end the stream (or only flush it)."""
    block = int(block_s * 16000)
    events = []
    for i in range(0, len(audio), block):
        proc.feed(audio[i:i + block])
        events += proc.results()
    events += proc.flush() if flush else proc.finish()
    return events


def final_text(events) -> str:
    return " ".join(e.text for e in events if e.is_final and e.text)


def seam_duplicates(reference: str, hypothesis: str) -> list[str]:
    """Inserted words (against the reference) that repeat the words right before them."""
    ref, hyp = normalize_text(reference).split(), normalize_text(hypothesis).split()
    found = []
    for op, _, _, b1, b2 in difflib.SequenceMatcher(None, ref, hyp, autojunk=False).get_opcodes():
        if op == "insert":
            n = b2 - b1
            if hyp[b1:b2] == hyp[max(b1 - n, 0):b1] or hyp[b1:b2] == hyp[b2:b2 + n]:
                found.append(" ".join(hyp[max(b1 - n, 0):b2]))
    return found


def test_jfk_low_latency_every_word_once(base_engine, manifest):
    audio = load_wav("en/jfk.wav")
    proc = RealtimeWhisperProcessor.from_preset("low_latency", engine=base_engine)
    events = stream(proc, audio, 0.1)
    reference = normalize_text(manifest["en/jfk.wav"]["text"]).split()
    got = normalize_text(final_text(events)).split()
    assert got == reference, f"{got} != {reference}"
    finals = [e for e in events if e.is_final]
    words = [w for e in finals for w in e.words]
    assert all(a.end_s <= b.start_s + 1e-6 for a, b in itertools.pairwise(words))  # times monotonic
    assert words[0].start_s < 1.0 and 9.5 < words[-1].end_s <= 11.1  # on the stream's clock
    assert finals[0].start_s == 0 and finals[-1].end_s == pytest.approx(len(audio) / 16000)
    assert any(not e.is_final for e in events)  # partials came before the finals
    assert {e.language for e in events} == {"en"}


@pytest.mark.parametrize("late_s", [0.0, 0.1, 0.2])
def test_jfk_with_fast_updates_and_an_agreement_margin_every_word(base_engine, manifest, late_s):
    """0.3 s updates with a 0.3 s agreement margin, at every phase of their grid.

    "Ask not", after a pause, came out "is" (0.03–0.05) in four windows 0.3 s apart; three of
    them made it final before the pause's closing decode (which reads "Ask") until a doubted
    word's third hypothesis had to have heard a second less (``DOUBT_SPAN_S``).
    """
    audio = np.concatenate([np.zeros(round(late_s * 16000), dtype=np.float32), load_wav("en/jfk.wav")])
    proc = RealtimeWhisperProcessor.from_preset("low_latency", engine=base_engine, chunk_duration=0.3,
                                                agreement_margin_s=0.3)
    got = normalize_text(final_text(stream(proc, audio, 0.1))).split()
    assert got == normalize_text(manifest["en/jfk.wav"]["text"]).split()


JFK_CASES = [
    # (name, from_preset's preset or None for the guide's constructor, options, grid phases in seconds)
    ("guide 2 s / 0.2 s", None, {"chunk_duration": 2.0, "overlap_duration": 0.2}, (0.0, 0.5, 1.0, 1.5)),
    ("low_latency", "low_latency", {}, (0.1, 0.2, 0.3, 0.4)),
    ("high_accuracy", "high_accuracy", {"beam_size": 5}, (0.0, 0.5)),
    ("commands", "commands", {}, (0.0, 0.2)),
]


@pytest.mark.parametrize(("name", "preset", "options", "late_s"),
                         [(n, p, o, t) for n, p, o, phases in JFK_CASES for t in phases],
                         ids=[f"{n}@{t:g}s" for n, _, _, phases in JFK_CASES for t in phases])
def test_jfk_reads_every_word_at_every_step_and_grid_phase(base_engine, manifest, name, preset, options, late_s):
    """The README's own sample, through the library as people call it (0.1 s blocks, ``results()``,
    then ``finish()``), at each path's update step and at several phases of its grid.

    On 2 AVX2 cores jfk's "ask not", after a 0.9 s pause, read "is not" (probability 0.03-0.15)
    from windows that started in the pause, and every path made it final; a window that starts
    at the words before the pause, forced through them, reads "Ask" at 0.8-0.9
    (``stream.planner.CONTEXT_WORDS``). With ``high_accuracy`` fed in 0.1 s blocks the last decode,
    beam 5 forced through "Ask what you", stopped at "can do for" and "your country." was lost
    (``DecodeOptions.speech_end_s``).
    """
    audio = np.concatenate([np.zeros(round(late_s * 16000), dtype=np.float32), load_wav("en/jfk.wav")])
    if preset is None:
        proc = RealtimeWhisperProcessor(engine=base_engine, **options)
    else:
        proc = RealtimeWhisperProcessor.from_preset(preset, engine=base_engine, **options)
    got = normalize_text(final_text(stream(proc, audio, 0.1))).split()
    assert got == normalize_text(manifest["en/jfk.wav"]["text"]).split(), (name, late_s)


def test_jfk_sent_at_24_khz_with_fast_updates_keeps_its_second_ask(base_engine):
    """jfk as the OpenAI Realtime path hears it (24 kHz PCM16, resampled by the processor), 0.3 s
    updates with the 0.3 s margin (the spare step of ``low_latency``).

    The second "ask" came out "As" (0.15), "Ask" (0.28), "As", "As", "As" (0.07–0.13) in the
    phrase's first windows, and three of them made "As what you can do for" final though the
    second read otherwise; a doubted word now needs every hypothesis in its second to agree.
    (The first "ask", alone after a 1.2 s pause, is a coin toss for ``base`` even offline.)
    """
    audio = np.concatenate([load_wav("en/jfk.wav"), np.zeros(2 * 16000, np.float32)])
    rate = 24000
    at_24k = np.interp(np.arange(0, len(audio) / 16000, 1 / rate), np.arange(len(audio)) / 16000, audio)
    pcm = np.round(at_24k * 32767).astype("<i2")
    proc = RealtimeWhisperProcessor.from_preset("low_latency", engine=base_engine, language="en",
                                                chunk_duration=0.3, sample_rate=rate)
    events = []
    for i in range(0, len(pcm), rate // 10):
        proc.feed(pcm[i:i + rate // 10])
        events += proc.results()
    events += proc.finish()
    got = normalize_text(final_text(events))
    assert got.endswith("ask what you can do for your country"), got
    assert wer("and so my fellow americans ask not what your country can do for you "
               "ask what you can do for your country", got) <= 0.05, got

@pytest.mark.parametrize("name", ["en/LJ001-0003.wav"])
def test_quarter_second_updates_agreeing_over_half_a_second_keep_the_words(base_engine, manifest, name):
    """0.25 s updates, each agreeing with the hypothesis that heard 0.5 s less (``agreement_span_s``).

    Agreeing with the previous hypothesis instead (a quarter second apart), both windows hear a
    drawn-out word cut the same way and commit it: "in grave 天 relief" (LJ001-0003), measured
    with this model; over the span the words stay the reference's. (jfk's "Why do you are
    country" was mended the same way on 2 Intel cores; on 2 AMD cores, whose int8 kernels round
    differently, hypotheses half a second apart still agree on it: docs/streaming.md.)
    """
    audio = load_wav(name)
    proc = RealtimeWhisperProcessor.from_preset("low_latency", engine=base_engine, chunk_duration=0.25,
                                                agreement_span_s=0.5)
    events = stream(proc, audio, 0.1)
    text = final_text(events)
    reference = manifest[name]["text"]
    assert wer(reference, text) <= 0.09, text  # jfk: every word; LJ001-0003: "woodcutters" as two words
    assert not seam_duplicates(reference, text)
    words = [w for e in events if e.is_final for w in e.words]
    assert all(a.end_s <= b.start_s + 1e-6 for a, b in itertools.pairwise(words))
    assert proc.updates > len(audio) / 16000 / 0.5  # more updates than 0.5 s updates would make


def test_updates_decoded_ahead_on_a_spare_worker_keep_the_words(base_engine, manifest):
    """A lone stream on two scheduler workers: its next 0.25 s update is decoded while the one
    before it still runs (fed at twice real time, every decode outlasts a step), and a window
    that went ahead hears again, without a prefix, the words the one before it made final."""
    import threading
    import time

    from rtwhisper.scheduling import Scheduler

    audio = load_wav("en/jfk.wav")
    proc = RealtimeWhisperProcessor.from_preset("low_latency", engine=base_engine, chunk_duration=0.25,
                                                agreement_span_s=0.5)
    asked = proc.next_request
    ahead = []

    def counted(**kwargs):
        request = asked(**kwargs)
        ahead.append(bool(kwargs.get("ahead") and request is not None))
        return request

    proc.next_request = counted  # type: ignore[method-assign]
    events, closed = [], threading.Event()
    scheduler = Scheduler(base_engine, workers=2, max_batch=1, batch_wait_s=0.0, max_delay_s=60, max_lag_s=60)
    try:
        handle = scheduler.open(proc, events.extend, lambda reason: closed.set())
        for i in range(0, len(audio), 1600):
            handle.feed(audio[i:i + 1600])
            time.sleep(0.05)
        handle.finish()
        assert closed.wait(120)
    finally:
        scheduler.shutdown()
    text = final_text(events)
    reference = manifest["en/jfk.wav"]["text"]
    assert normalize_text(text) == normalize_text(reference), text
    assert sum(ahead) >= 3, sum(ahead)
    words = [w for e in events if e.is_final for w in e.words]
    assert all(a.end_s <= b.start_s + 1e-6 for a, b in itertools.pairwise(words))


@pytest.mark.parametrize("path", ["en/jfk.wav", "en/LJ001-0016.wav"])
def test_a_word_one_hypothesis_is_sure_of_is_final_sooner_and_the_same(base_engine, manifest, path):
    """The default commit rule: a word of probability 0.9 or more that ends 0.1 s before its
    window's audio is final without waiting for the next update to agree. Measured here, on the
    audio's clock (0.1 s blocks, compute free): per-word median 0.65 / 0.72 s against
    0.79 / 0.84 s with agreement alone, every word the same (LJ001-0001 too: 0.73 / 0.84 s; left
    out of the suite for its time)."""
    audio = load_wav(path)

    def run(**options):
        proc = RealtimeWhisperProcessor.from_preset("low_latency", engine=base_engine, language="en", **options)
        waits, events = [], []
        for i in range(0, len(audio), 1600):
            proc.feed(audio[i:i + 1600])
            for e in proc.results():
                events.append(e)
                waits += [min(i + 1600, len(audio)) / 16000 - w.end_s for w in e.words if e.is_final]
        events += proc.finish()
        return float(np.median(waits)), final_text(events)

    sure, agreed = run(), run(commit_probability=None)
    assert wer(manifest[path]["text"], sure[1]) == 0, sure[1]
    assert sure[1] == agreed[1]
    assert sure[0] <= agreed[0] - 0.05, (sure[0], agreed[0])


def test_a_processor_made_by_name_decodes_with_the_threads_measured_for_this_machine():
    """Its engine's threads are what decoded one window fastest here (on 2 Intel cores one
    thread: 328 ms against 439 ms an update of base; on one 2-core AMD EPYC both, 1.23 s against
    1.43 s; on another one, probed with a streaming update's forced prefix, one: 0.81 s against 1.23 s)."""
    from rtwhisper.engine import device_cpu_layout
    from rtwhisper.engine.layout import available_cores, choose
    from rtwhisper.models import resolve_model

    layout = device_cpu_layout(resolve_model("tiny.en"), "int8")
    assert layout is not None
    proc = RealtimeWhisperProcessor("tiny.en", device="cpu")
    assert proc.engine.cpu_threads == layout.library_threads  # type: ignore[attr-defined]
    if layout.probe_s:  # measured (2 cores or more): the rule's choice from its own figures
        assert layout == choose(available_cores(), layout.probe_s, source=layout.source)
        assert all(0 < t < 30 for t in layout.probe_s.values())
    events = stream(proc, load_wav("en/jfk.wav"))
    assert "country" in final_text(events).lower()


def test_the_layout_probe_decodes_a_streaming_update(base_engine):
    """The probe's window is decoded as an update is: its first words forced, the rest read.
    A probe whose prefix the decoder ended at once would time the encoder and nothing else."""
    from rtwhisper.engine.layout import PROBE_PREFIX, probe_request

    request = probe_request()
    hypothesis = base_engine.transcribe_batch([request])[0]
    assert request.options.prefix == PROBE_PREFIX
    assert normalize_text(join_words(hypothesis.words)) == "ask what you can do for your country"
    assert all(0 < w.start_s < w.end_s <= len(request.audio) / 16000 + 0.1 for w in hypothesis.words)


class _Recording:
    """A CTranslate2 model that records the prompts ``generate`` gets."""

    def __init__(self, model):
        self.model, self.prompts = model, []

    def generate(self, features, prompts, **kwargs):
        self.prompts.extend(prompts)
        return self.model.generate(features, prompts, **kwargs)

    def __getattr__(self, name):
        return getattr(self.model, name)


def test_the_decoder_is_forced_through_the_last_final_words_only():
    """The final text before them goes to the prompt (read in one pass, not token by token):
    the same new words, timed the same (the alignment still covers all the final text)."""
    from rtwhisper import resolve_model
    from rtwhisper.engine import WhisperEngine
    from rtwhisper.engine.layout import probe_request
    from rtwhisper.engine.window import FORCED_PREFIX_WORDS

    request = probe_request()
    results = {}
    for words in (FORCED_PREFIX_WORDS, None):
        engine = WhisperEngine(resolve_model("base"), device="cpu", cpu_threads=1, forced_prefix_words=words)
        engine.model = recording = _Recording(engine.model)
        results[words] = engine.transcribe_batch([request])[0].words, recording.prompts[0]
        tokenizer = engine._tokenizer("transcribe", "en")
    (short, short_prompt), (whole, whole_prompt) = results[FORCED_PREFIX_WORDS], results[None]
    assert normalize_text(join_words(short)) == normalize_text(join_words(whole)) == \
        "ask what you can do for your country"
    assert [round(w.start_s, 1) for w in short] == [round(w.start_s, 1) for w in whole]
    forced = short_prompt[short_prompt.index(tokenizer.no_timestamps) + 1:]
    assert tokenizer.decode(forced) == " can do for you,"
    assert "ask not what your country" in tokenizer.decode(short_prompt[:short_prompt.index(tokenizer.sot)])
    assert tokenizer.decode(whole_prompt[whole_prompt.index(tokenizer.no_timestamps) + 1:]).startswith(" And so my")


def test_windows_are_padded_with_silence_as_whisper_pads_them():
    """Past a window's audio the encoder hears what OpenAI's Whisper feeds it: the log-mel of zeros."""
    from faster_whisper.feature_extractor import FeatureExtractor

    from rtwhisper.engine.window import SILENCE_LOG_MEL, silence_level

    extractor = FeatureExtractor()
    audio = load_wav("en/jfk.wav")[: 3 * 16000]
    window = extractor(audio)[:, :300]
    whisper = extractor(np.concatenate([audio, np.zeros(5 * 16000, dtype=np.float32)]))  # padding=N_SAMPLES
    np.testing.assert_allclose(whisper[:, 302:800], silence_level(window), atol=1e-5)
    assert silence_level(window) < float(window.mean()) and silence_level(window) > SILENCE_LOG_MEL
    assert silence_level(extractor(np.zeros(16000, dtype=np.float32))) == SILENCE_LOG_MEL


def test_a_closing_window_hears_its_audio_and_four_seconds_of_silence(base_engine):
    """Not Whisper's 30 s: an encode twice as costly (0.96 s against 0.44 s on one core) was
    the wait for an utterance's last words, and bought no accuracy."""
    from rtwhisper.engine import DecodeOptions

    closing, interim = DecodeOptions(end_of_stream=True), DecodeOptions()
    assert base_engine._input_frames(300, interim) == 1000  # 3 s of audio: 10 s at least
    assert base_engine._input_frames(300, closing) == 2000  # 20 s at least
    assert base_engine._input_frames(1750, closing) == 2200  # 17.5 s + 4 s of silence, in 2 s steps
    assert base_engine._input_frames(2800, closing) == 3000  # never past Whisper's 30 s


@pytest.mark.parametrize("path", ["ko/zeroth_104_003_0280.wav", "ko/zeroth_104_003_0294.wav",
                                  "ko/zeroth_104_003_0451.wav"])
def test_a_closing_window_after_the_speech_makes_nothing_up(base_engine, path):
    """The last 1.5 s of these sentences hold the end of a word and the silence after it; decoded
    as a closing window on Whisper's full 30 s input, each came out as the broadcast sign-off
    "MBC 뉴스 김혜연입니다." that is not in the audio."""
    from rtwhisper.engine import DecodeOptions

    hypothesis = base_engine.transcribe(load_wav(path)[-24000:], DecodeOptions(language="ko", end_of_stream=True))
    text = "".join(w.text for w in hypothesis.words)
    assert "뉴스" not in text and "MBC" not in text, text
    assert len(HANGUL.findall(text)) <= 8, text  # at most the sentence's last word or two


def test_a_closing_decode_read_as_silence_keeps_the_words_the_partials_showed(base_engine):
    """espeak_ko.wav is synthetic Korean that no model reads well (offline 72 % CER). Its closing
    decode (the speech, then 16 s of silence) fails Whisper's no-speech test (probability 0.67,
    mean log-probability -1.13, on 2 Intel cores), and the words its partials had shown used to
    be lost with it."""
    closing = []

    class Recording:
        multilingual = True

        def transcribe_batch(self, requests):
            hypotheses = base_engine.transcribe_batch(requests)
            closing.extend(h for r, h in zip(requests, hypotheses, strict=True) if r.options.end_of_stream)
            return hypotheses

    proc = RealtimeWhisperProcessor.from_preset("korean", model_name="base", engine=Recording())
    events = stream(proc, load_wav("ko/espeak_ko.wav"))
    shown = [e.text for e in events if not e.is_final and e.text]
    text = final_text(events)
    # The clip's words are never lost: on 2 Intel cores its partials showed them and the closing
    # decode was read as silence; on 2 AMD cores (other numerics) the closing decode read words of
    # its own (mean log-probability -0.77 to -0.96, not silence): either way they end final.
    assert closing and len(HANGUL.findall(text)) >= 4, (text, shown)
    if closing[-1].silent and shown:  # set aside: the words the partials showed stand
        assert len(HANGUL.findall(text)) >= len(HANGUL.findall(shown[-1])) - 2, (text, shown[-1])
    elif not closing[-1].silent:  # heard: its words are the utterance's end
        heard = "".join(w.text for w in closing[-1].words)
        assert HANGUL.findall(text)[-3:] == HANGUL.findall(heard)[-3:], (text, heard)


def test_the_last_word_before_silence_is_heard_whole(base_engine, manifest):
    """A closing window padded with faster-whisper's zeros heard a sound still going on after its last word.

    LJ001-0016 ends on "therefore" 30 ms before the file does ("there for..." with zeros).
    Interim windows keep the zeros (speech goes on): padded with silence, jfk's "What your
    country" after "Ask not." became "Why you are country" (guarded by
    ``test_jfk_low_latency_every_word_once`` and the real-time server tests).
    """
    path = "en/LJ001-0016.wav"
    proc = RealtimeWhisperProcessor.from_preset("low_latency", engine=base_engine)
    text = final_text(stream(proc, load_wav(path)))
    assert wer(manifest[path]["text"], text) == 0, text


def test_a_flush_hears_the_last_word_whole(base_engine, manifest):
    """A source that goes quiet is flushed: as far as anyone knows its speech stopped, so the
    flush decode is padded with silence like a closing one ("there for." with zeros)."""
    path = "en/LJ001-0016.wav"
    proc = RealtimeWhisperProcessor.from_preset("low_latency", engine=base_engine)
    events = stream(proc, load_wav(path), flush=True)
    assert wer(manifest[path]["text"], final_text(events)) == 0, final_text(events)
    assert not proc.is_finished


def test_a_first_half_second_detected_as_another_language_is_not_kept(base_engine, manifest):
    """With no language given (the server's default), LJ001-0011's first 0.5 s is detected as
    Turkish at 0.95; locked on that one detection, the whole clip came out in Turkish."""
    path = "en/LJ001-0011.wav"
    proc = RealtimeWhisperProcessor.from_preset("low_latency", engine=base_engine)
    events = stream(proc, load_wav(path))
    assert {e.language for e in events if e.is_final and e.text} == {"en"}
    assert wer(manifest[path]["text"], final_text(events)) <= 0.1, final_text(events)


def test_a_speaker_who_switches_language_is_followed_and_one_who_keeps_it_is_kept(base_engine, manifest):
    """No language given: each utterance starts in the one before's, detected alongside, and two
    sure detections of another switch (``LANGUAGE_SWITCH_PROBABILITY``). English, Korean, English
    with pauses between: each part in its language, no window's words shown in the wrong one."""
    parts = ["en/jfk.wav", "ko/zeroth_104_003_0294.wav", "en/LJ001-0008.wav"]
    gap = np.zeros(int(1.2 * 16000), dtype=np.float32)
    starts, audio, t = [], [], 0.0
    for rel in parts:
        clip = load_wav(rel)
        starts.append(t)
        audio += [clip, gap]
        t += (len(clip) + len(gap)) / 16000
    # a word belongs to the clip it is in or the pause after it (a first word's start may lie in the pause)
    spans = [(a - 0.6, b - 0.6) for a, b in zip(starts, [*starts[1:], t + 1.0], strict=True)]
    proc = RealtimeWhisperProcessor.from_preset("low_latency", engine=base_engine)
    events = stream(proc, np.concatenate(audio))
    assert {e.language for e in events if e.text} == {"en", "ko"}  # partials too: no Greek, German…
    words = [(w, e.language) for e in events if e.is_final for w in e.words]
    for rel, (a, b) in zip(parts, spans, strict=True):
        mine = [(w, language) for w, language in words if a <= (w.start_s + w.end_s) / 2 < b]
        text = "".join(w.text for w, _ in mine)
        lang = manifest[rel]["lang"]
        assert {language for _, language in mine} == {lang}, (rel, text)
        error = cer(manifest[rel]["text"], text) if lang == "ko" else wer(manifest[rel]["text"], text)
        assert error <= (0.15 if lang == "ko" else 0.1), (rel, text)  # measured: 6.5 % CER, 0 % and 0 % WER


@pytest.fixture(scope="module")
def long_file(manifest):
    """The long file and the same model's offline transcription by plain faster-whisper."""
    from faster_whisper import WhisperModel

    from rtwhisper import resolve_model

    rel = "en/long_lj001_0001-0016.wav"
    audio = load_wav(rel)
    model = WhisperModel(resolve_model("base"), device="cpu", compute_type="int8")
    segments, _ = model.transcribe(audio, language="en", beam_size=1)
    offline = " ".join(s.text for s in segments)
    return audio, manifest[rel]["text"], offline


def test_long_file_streaming_matches_offline(long_file, base_engine):
    """The guide's 2 s chunks with 0.2 s overlap (5 s / 0.5 s measured the same: 2.87 %;
    ``rtwhisper bench`` runs every preset on this file)."""
    chunk, overlap = 2.0, 0.2
    audio, reference, offline = long_file
    proc = RealtimeWhisperProcessor(engine=base_engine, chunk_duration=chunk, overlap_duration=overlap,
                                    language="en")
    hypothesis = final_text(stream(proc, audio, 0.5))
    offline_wer, stream_wer = wer(reference, offline), wer(reference, hypothesis)
    print(f"chunk {chunk} overlap {overlap}: streaming WER {stream_wer:.2%} offline WER {offline_wer:.2%}")
    assert seam_duplicates(reference, hypothesis) == []
    # Issue #2: within 1.0 point of the same model offline (measured: 2.87 % at 2 s, 2.87 % at 5 s,
    # 2.15 % offline). Decoding is deterministic (no sampled fallback), so the figure does not
    # depend on what ran before in this process.
    assert stream_wer <= offline_wer + 0.01, hypothesis


def silent_stretches(audio: np.ndarray, min_s: float = 2.0) -> list[tuple[float, float]]:
    """Runs of digital silence (exact zeros) of at least ``min_s``."""
    zero = np.concatenate([[False], audio == 0.0, [False]])
    edges = np.flatnonzero(np.diff(zero.astype(np.int8)))
    runs = [(a / 16000, b / 16000) for a, b in zip(edges[::2], edges[1::2], strict=False)]
    return [(a, b) for a, b in runs if b - a >= min_s]


@pytest.mark.parametrize("mode", ["english", "korean"])
def test_no_words_in_silence_or_noise(base_engine, mode):
    options = {"language": "en"} if mode == "english" else {"preset": "korean"}
    def make():
        if "preset" in options:
            return RealtimeWhisperProcessor.from_preset("korean", engine=base_engine)
        return RealtimeWhisperProcessor(engine=base_engine, **options)

    audio = load_wav("en/long_lj001_with_silences.wav")
    # from 5 s before the first of the three 8 s silences to 4 s past the second (a second of
    # speech costs the suite about one of decoding; beam 5 several): the Korean mode hears the first
    start_s, end_s = (22, 72) if mode == "english" else (19, 39)
    audio = audio[start_s * 16000:end_s * 16000]
    stretches = silent_stretches(audio)
    assert len(stretches) >= (2 if mode == "english" else 1)
    words = [w for e in stream(make(), audio, 0.5) if e.is_final for w in e.words]
    assert len(words) > (60 if mode == "english" else 20)
    inside = [(w.text, w.start_s) for w in words for a, b in stretches
              if a + 0.5 < (w.start_s + w.end_s) / 2 < b - 0.5]
    assert inside == []

    silence = np.zeros(60 * 16000, dtype=np.float32)
    noise = np.random.default_rng(0).normal(0, 0.1, 60 * 16000).astype(np.float32)
    for name, audio in (("silence", silence), ("noise", noise)):
        events = stream(make(), audio, 0.5)
        assert final_text(events) == "", name
        assert events[-1].is_final and events[-1].end_s == pytest.approx(60.0)


def test_korean_mode_on_real_korean_speech(base_engine, manifest):
    rel = "ko/test_ko.wav"
    proc = RealtimeWhisperProcessor.from_preset("korean", engine=base_engine)
    text = final_text(stream(proc, load_wav(rel)))
    print("korean:", text)
    assert len(HANGUL.findall(text)) >= 12
    assert cer(manifest[rel]["text"], text) <= 0.25
    assert "알겠습니다" not in text  # the initial prompt does not leak


def test_korean_streaming_is_as_accurate_as_offline(base_engine, manifest):
    """Issue #14: the korean preset (base) within 1.0 CER point of base offline with beam 5 on the
    ten Zeroth sentences joined (100 s, nine seams between speakers); no prompt text in the
    output. The sentences one by one, pooled, held too (the suite ran both; ``rtwhisper bench``
    measures them): the joined file is the one with the seams."""
    rel = "ko/long_zeroth_104.wav"
    audio = load_wav(rel)
    text = final_text(stream(RealtimeWhisperProcessor.from_preset("korean", engine=base_engine), audio))
    segments, _ = base_engine.whisper_model.transcribe(audio, language="ko", beam_size=5, vad_filter=True)
    offline = " ".join(s.text for s in segments)
    reference = manifest[rel]["text"]
    streaming_cer, offline_cer = cer(reference, text), cer(reference, offline)
    print(f"korean CER: streaming {streaming_cer:.2%}, offline {offline_cer:.2%}")
    assert "알겠습니다" not in text
    assert len(HANGUL.findall(text)) >= 0.8 * len(HANGUL.findall(reference))  # nothing lost at the seams
    assert streaming_cer <= offline_cer + 0.01, text


def test_korean_translated_to_english(base_engine):
    proc = RealtimeWhisperProcessor.from_preset("korean", engine=base_engine, task="translate")
    text = final_text(stream(proc, load_wav("ko/test_ko.wav")))
    print("translation:", text)
    assert not HANGUL.search(text)
    assert len(re.findall(r"[A-Za-z]+", text)) >= 4
    # base translates this clip loosely and not always alike ("He went to the left side of the road
    # while avoiding…", "He went to the 1st floor…"); the verb 걸어갔다 (walked / went) is always there.
    assert re.search(r"\b(side|road|way|walk|walked|went|avoid|avoiding)\b", text, re.I)


def test_english_only_model_streams_and_refuses_korean(tiny_engine, manifest):
    proc = RealtimeWhisperProcessor(engine=tiny_engine, chunk_duration=2.0, overlap_duration=0.2)
    text = final_text(stream(proc, load_wav("en/jfk.wav")))
    assert wer(manifest["en/jfk.wav"]["text"], text) <= 0.1
    from rtwhisper import ConfigError

    with pytest.raises(ConfigError, match="English-only"):
        RealtimeWhisperProcessor(engine=tiny_engine, language="ko")
    with pytest.raises(ConfigError, match="English-only"):
        RealtimeWhisperProcessor(engine=tiny_engine, task="translate")


def test_keyterms_spell_a_name_base_guesses_and_leave_the_rest():
    """LJ001-0007's "the Gutenberg, or forty-two line Bible": ``base`` streamed "guttenberg" without
    keyterms on 2 AVX2 cores (what it reads without them may hang on the CPU's rounding, so it is
    not asserted) and "Gutenberg" with them (``benchmarks/keyterms.py`` measures recall and cost over
    the shared set); jfk, which holds none of them, reads the same words with them as without."""
    audio = load_wav("en/LJ001-0007.wav")
    keyed = final_text(stream(RealtimeWhisperProcessor.from_preset(
        "low_latency", model_name="base", keyterms=["Gutenberg", "woodcutters", "counselled"]), audio))
    assert "Gutenberg" in keyed and "forty-two line bible" in keyed.lower().replace("42", "forty-two"), keyed
    jfk = load_wav("en/jfk.wav")
    without = final_text(stream(RealtimeWhisperProcessor.from_preset("low_latency", model_name="base"), jfk))
    with_terms = final_text(stream(RealtimeWhisperProcessor.from_preset(
        "low_latency", model_name="base", keyterms=["Gutenberg", "woodcutters", "counselled"]), jfk))
    assert normalize_text(with_terms) == normalize_text(without)
    assert "ask not what your country can do for you" in normalize_text(with_terms)
