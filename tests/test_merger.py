import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from rtwhisper.events import Word
from rtwhisper.filters import drop_hallucinated_tail
from rtwhisper.merger import (
    DOUBT_PROBABILITY,
    DOUBT_SPAN_S,
    MARGIN_GAP_S,
    OverlapMerger,
    repeated_head,
)
from rtwhisper.text import normalize_word


def w(text, a, b):
    return Word(" " + text, a, b)


def test_local_agreement_confirms_only_what_two_windows_agree_on():
    m = OverlapMerger()
    step = m.update([w("and", 0, 0.5), w("so", 0.5, 0.9), w("my", 0.9, 1.2)])
    assert step.committed == () and [x.text for x in step.partial] == [" and", " so", " my"]
    step = m.update([w("and", 0, 0.5), w("so", 0.5, 0.88), w("my", 0.9, 1.2), w("fellow", 1.2, 1.6)])
    assert [x.text.strip() for x in step.committed] == ["and", "so", "my"]
    assert [x.text.strip() for x in step.partial] == ["fellow"]
    assert m.commit_s == 1.2


def test_overlap_words_heard_again_are_dropped_despite_jitter():
    m = OverlapMerger()
    m.update([w("ask", 2.3, 3.6), w("not", 3.7, 4.2)])
    m.update([w("ask", 2.3, 3.6), w("not", 3.7, 4.2), w("what", 4.2, 5.2)])
    assert m.commit_s == 4.2
    # next window starts in the overlap: "not" heard again, its end jittered past the commit point
    step = m.update([w("not", 3.9, 4.45), w("what", 4.3, 5.2), w("your", 5.5, 5.8)], final=True)
    assert [x.text.strip() for x in m.committed] == ["ask", "not", "what", "your"]
    assert [x.text.strip() for x in step.committed] == ["what", "your"]


def test_fragment_of_the_last_committed_word_is_dropped():
    m = OverlapMerger()
    m.update([w("Americans", 1.5, 2.1)], final=True)
    step = m.update([w("cans", 2.0, 2.3), w("ask", 2.4, 3.0)], final=True)
    assert [x.text.strip() for x in step.committed] == ["ask"]


def test_words_skipped_by_a_new_window_are_kept():
    m = OverlapMerger()
    m.update([w("ask", 7.4, 8.5), w("what", 8.5, 8.8), w("you", 8.8, 9.0)])
    step = m.update([w("you", 8.8, 9.0), w("can", 9.0, 9.3)], final=True)
    assert [x.text.strip() for x in step.committed] == ["ask", "what", "you", "can"]


def test_forced_commit_bounds_latency():
    m = OverlapMerger()
    m.update([w("a", 0, 1), w("b", 1, 2), w("c", 2, 3)])
    step = m.update([w("x", 0, 1), w("y", 1, 2), w("z", 2, 3)], force_before_s=2.0)
    assert [x.text.strip() for x in step.committed] == ["x", "y"]


def test_repetition_loop_at_window_end_is_removed():
    words = [w("ask", 7.4, 8.5), w("what", 8.5, 8.8), w("you", 8.8, 9.1), w("can", 9.1, 9.4),
             w("Ask", 10.7, 10.9), w("what", 10.98, 10.98), w("you", 10.98, 10.98), w("can", 10.98, 10.98)]
    assert [x.text.strip() for x in drop_hallucinated_tail(words, 11.0)] == ["ask", "what", "you", "can"]
    genuine = [w("no", 0, 0.4), w("no", 0.5, 0.9), w("no", 1.0, 1.4)]
    assert drop_hallucinated_tail(genuine, 5.0) == genuine


def test_normalize_word():
    assert normalize_word(" Americans,") == normalize_word("americans.") == "americans"
    assert normalize_word(" 안녕하세요.") == "안녕하세요"


@st.composite
def timelines(draw):
    n = draw(st.integers(1, 40))
    t = draw(st.floats(0, 1))
    words = []
    vocab = ["alpha", "bravo", "charlie", "delta", "echo", "fox", "golf", "hotel", "india", "juliet"]
    for i in range(n):
        t += draw(st.sampled_from([0.0, 0.05, 0.3, 0.8]))
        d = draw(st.floats(0.15, 0.9))
        words.append(Word(" " + draw(st.sampled_from(vocab)) + str(i), round(t, 3), round(t + d, 3)))
        t += d
    return words


@settings(max_examples=150, deadline=None)
@given(words=timelines(), chunk=st.sampled_from([0.25, 0.5, 1.0, 2.0, 3.0]), jitter=st.sampled_from([0.0, 0.03, 0.05]),
       overlap_frac=st.sampled_from([0.0, 0.1, 0.25]), seed=st.integers(0, 1000),
       span=st.sampled_from([0.0, 0.5, 1.0]), doubted=st.sampled_from([0, 1, 3]))
def test_merged_finals_equal_the_source(words, chunk, jitter, overlap_frac, seed, span, doubted):
    """Random word timelines through the real processor with a fake engine: nothing lost or doubled
    (``doubted``: every n-th word heard below ``DOUBT_PROBABILITY``, which agreement holds back)."""
    from fakes import TimelineEngine, TimelineVad, ramp
    from rtwhisper import RealtimeWhisperProcessor

    duration = words[-1].end_s + 0.5
    engine = TimelineEngine(words, jitter_s=jitter, seed=seed, doubted=doubted)
    proc = RealtimeWhisperProcessor(engine=engine, vad=TimelineVad(words), chunk_duration=chunk,
                                    overlap_duration=chunk * overlap_frac, agreement_span_s=span)
    audio = ramp(duration)
    finals = []
    for i in range(0, len(audio), 1600):
        proc.feed(audio[i:i + 1600])
        finals += [e for e in proc.results() if e.is_final]
    finals += [e for e in proc.finish() if e.is_final]
    got = [x.text.strip() for e in finals for x in e.words]
    assert got == [x.text.strip() for x in words]
    times = [(x.start_s, x.end_s) for e in finals for x in e.words]
    assert all(a <= b for a, b in times)
    assert all(times[i][1] <= times[i + 1][0] + 1e-9 for i in range(len(times) - 1))
    # finals tile the stream: contiguous from 0 to the end of the audio
    assert finals[0].start_s == 0
    assert all(abs(finals[i].end_s - finals[i + 1].start_s) < 1e-9 for i in range(len(finals) - 1))
    assert abs(finals[-1].end_s - len(audio) / 16000) < 1e-6


@settings(max_examples=120, deadline=None)
@given(words=timelines(), paces=st.lists(st.sampled_from([None, 0.5, 0.8, 1.5]), min_size=1, max_size=8),
       jitter=st.sampled_from([0.0, 0.05]), seed=st.integers(0, 1000))
def test_paced_updates_lose_and_double_nothing(words, paces, jitter, seed):
    """A scheduler paces a stream's updates to longer steps than its own (``next_request(pace_s=…)``:
    load, a slower CPU; up to ``scheduler.MAX_PACE_S``), changing from one update to the next:
    every word once, in order, the finals tiling the stream."""
    from fakes import TimelineEngine, TimelineVad, ramp
    from rtwhisper import RealtimeWhisperProcessor

    engine = TimelineEngine(words, jitter_s=jitter, seed=seed)
    proc = RealtimeWhisperProcessor(engine=engine, vad=TimelineVad(words), chunk_duration=0.5,
                                    overlap_duration=0.1)
    audio = ramp(words[-1].end_s + 0.5)
    finals, k = [], 0
    for i in range(0, len(audio), 1600):
        proc.feed(audio[i:i + 1600])
        while (request := proc.next_request(pace_s=paces[k % len(paces)])) is not None:
            k += 1
            finals += [e for e in proc.apply(engine.transcribe_batch([request])[0]) if e.is_final]
        finals += [e for e in proc.take_events() if e.is_final]
    finals += [e for e in proc.finish() if e.is_final]
    got = [x.text.strip() for e in finals for x in e.words]
    assert got == [x.text.strip() for x in words]
    assert finals[0].start_s == 0 and abs(finals[-1].end_s - len(audio) / 16000) < 1e-6
    assert all(abs(a.end_s - b.start_s) < 1e-9 for a, b in itertools.pairwise(finals))


def test_squeezed_tail_without_acoustic_evidence_is_removed():
    # as seen at the end of long_lj001 with base: a loop packed into the last fraction of a second
    words = [w("natural", 109.53, 110.03), w("therefore,", 110.03, 110.51), w("for,", 110.67, 110.67),
             w("and", 110.67, 110.67), w("it", 110.67, 110.67), w("was", 110.67, 110.67),
             w("for,", 110.73, 110.79), w("and", 110.93, 110.95), w("it", 110.95, 110.95)]
    assert [x.text.strip() for x in drop_hallucinated_tail(words, 110.99)] == ["natural", "therefore,"]
    normal = [w("a", 0.0, 0.05), w("cat", 0.05, 0.4), w("sat", 0.45, 0.8)]
    assert drop_hallucinated_tail(normal, 0.8) == normal


def test_a_loop_back_through_the_final_text_is_cut():
    # zeroth_104_003_0253 with beam 5 (the korean preset): forced through the sentence so far,
    # the decoder wrote it again from its first word, 13 words in 1.6 s that had taken 7 s
    texts = "현재 백화점과 영화관 등은 오픈의 영화파고 있고 테마파크 및 아파트 등의 공사는 2018년".split()
    spans = [(0.0, 0.98), (0.98, 1.7), (1.7, 2.12), (2.12, 2.42), (2.42, 2.86), (2.86, 3.38), (3.38, 3.6),
             (3.6, 4.58), (4.58, 4.86), (4.86, 5.28), (5.28, 5.6), (5.6, 6.06), (6.06, 7.2)]
    final = [w(t, a, b) for t, (a, b) in zip(texts, spans, strict=True)] + [w("완공을", 7.2, 7.66)]
    again = [w("현재", 7.66, 7.88), w("백화점과", 7.88, 8.84)] + [w(t, 8.84, 8.84) for t in texts[2:-1]] \
        + [w("2018년", 8.84, 9.28)]
    assert drop_hallucinated_tail(again, 9.31, final=final) == []
    assert drop_hallucinated_tail([w("목표로", 7.66, 8.04), *again], 9.31, final=final) == [w("목표로", 7.66, 8.04)]
    # a speaker who repeats a phrase takes as long the second time: jfk's "can do for"
    said = [w("what", 5.5, 5.8), w("your", 5.8, 6.0), w("country", 6.0, 6.5), w("can", 6.5, 6.8),
            w("do", 6.8, 7.0), w("for", 7.0, 7.2), w("you,", 7.2, 7.6), w("ask", 8.0, 8.3)]
    heard = [w("what", 8.3, 8.5), w("you", 8.5, 8.7), w("can", 8.7, 9.0), w("do", 9.0, 9.2),
             w("for", 9.2, 9.4), w("your", 9.4, 9.6), w("country.", 9.6, 10.2)]
    assert drop_hallucinated_tail(heard, 10.5, final=said) == heard


def test_long_zero_length_loop_does_not_take_real_words_with_it():
    # as seen at the end of 1089-134686-0000 (base, beam 5): real words, then a loop of
    # zero-length words; averaging over the whole tail used to take the real words too
    real = [w("ladled", 6.76, 7.16), w("out", 7.16, 7.44), w("in", 7.44, 7.68), w("thick,", 7.68, 8.06),
            w("peppered", 8.32, 8.66), w("flour", 8.66, 8.96), w("-fatten", 8.96, 9.52), w("sauce.", 9.52, 9.88)]
    loop = [w("I'm" if i % 2 == 0 else "sorry", 10.4, 10.4) for i in range(46)]
    assert drop_hallucinated_tail(real + loop, 10.435) == real
    # a repeated run that takes no time is a loop even when the run before it takes none either
    words = [*real, w("to", 9.9, 9.9), w("us", 9.9, 9.9), w("now", 9.9, 9.9),
             w("to", 9.9, 9.9), w("us", 9.9, 9.9), w("now", 9.9, 9.9)]
    assert drop_hallucinated_tail(words, 10.435, timed=False) == [*real, *words[8:11]]


def test_phrase_skipped_in_the_middle_of_a_new_window_is_kept():
    m = OverlapMerger()
    m.update([w("for", 7.0, 7.1), w("you,", 7.1, 7.4), w("ask", 7.46, 8.5), w("what", 8.5, 8.76),
              w("you", 8.76, 9.06), w("can", 9.06, 9.32)])
    # the last window heard "for you" and "country", and nothing in between
    step = m.update([w("for", 7.0, 7.1), w("you", 7.1, 7.4), w("can", 9.1, 9.3), w("country.", 9.94, 10.36)],
                    final=True)
    assert [x.text.strip(" ,.") for x in step.committed] == ["for", "you", "ask", "what", "you", "can", "country"]
    # a word the new window replaced is not put back
    m = OverlapMerger()
    m.update([w("a", 0, 0.4), w("red", 0.5, 0.9), w("car", 1.0, 1.4)])
    step = m.update([w("a", 0, 0.4), w("bed", 0.5, 0.9), w("car", 1.0, 1.4)], final=True)
    assert [x.text.strip() for x in step.committed] == ["a", "bed", "car"]


def test_phrase_squashed_into_one_stretched_word_is_kept():
    # tiny.en's last window on jfk: "ask what you can do for your" came back as one 2.3 s "country."
    m = OverlapMerger()
    m.update([w("ask", 8.25, 8.66), w("what", 8.66, 8.95), w("you", 8.95, 9.27), w("can", 9.27, 9.5),
              w("do", 9.5, 9.75), w("for", 9.75, 9.88), w("your", 9.88, 9.96)])
    step = m.update([w("country.", 8.03, 10.34)], final=True)
    assert " ".join(x.text.strip() for x in step.committed) == "ask what you can do for your country."


def test_drawn_out_first_word_skipped_by_a_new_window_is_kept():
    # jfk as mp3: "ask" (2.40-3.68) overlaps the next word's start (3.49) and was skipped
    m = OverlapMerger()
    m.update([w("ask", 2.4, 3.68), w("not", 3.68, 4.24), w("what", 4.24, 5.24)])
    step = m.update([w("not", 3.49, 4.21), w("what", 4.21, 5.17), w("your", 5.52, 5.78)])
    assert [x.text.strip() for x in step.committed] == ["ask", "not", "what"]


def test_first_word_squeezed_out_by_a_stretched_next_word_is_kept():
    # test_ko.wav: "그는 1위절이" heard again as one "1위절이" from the window's start to the same end
    m = OverlapMerger()
    m.update([w("그는", 0.0, 0.94), w("1위절이", 0.94, 1.4), w("피하면서", 1.4, 1.78)])
    step = m.update([w("1위절이", 0.0, 1.4), w("피하면서", 1.4, 1.78), w("길", 1.8, 2.2)])
    assert [x.text.strip() for x in step.committed] == ["그는", "1위절이", "피하면서"]
    assert step.committed[1].start_s == 0.94  # the restored run keeps its own times


def test_a_first_word_the_new_window_rightly_dropped_stays_dropped():
    # a leading word the next window does not hear, its next word timed as before: not restored
    m = OverlapMerger()
    m.update([w("so", 0.0, 0.3), w("we", 0.5, 0.8), w("went", 0.8, 1.2)])
    step = m.update([w("we", 0.5, 0.8), w("went", 0.8, 1.2), w("home", 1.2, 1.6)])
    assert [x.text.strip() for x in step.committed] == ["so", "we", "went"]  # the time rule keeps it
    m = OverlapMerger()
    m.update([w("um", 0.0, 0.3), w("we", 0.3, 0.8), w("went", 0.8, 1.2)])
    step = m.update([w("we", 0.1, 0.6), w("went", 0.8, 1.2), w("home", 1.2, 1.6)])
    # "we" ends 0.2 s before the pending one: not that word stretched, so "um" stays out
    assert step.committed == () and [x.text.strip() for x in step.partial] == ["we", "went", "home"]
    # a doubled pending word heard once again (the long LJ file): no "that that"
    m = OverlapMerger()
    m.update([w("passing", 45.3, 45.86), w("that", 45.86, 46.54), w("that", 46.54, 46.64)])
    m.commit_before(45.86)  # "passing" final; "that that" pending
    step = m.update([w("that", 45.86, 46.58), w("as", 46.58, 46.92), w("an", 46.92, 47.06)])
    assert [x.text.strip() for x in m.committed + list(step.partial)] == ["passing", "that", "as", "an"]


def test_korean_spacing_does_not_stop_agreement():
    """"했다" / "했 다": the same characters with another spacing agree (Korean spacing varies)."""
    m = OverlapMerger()
    first = [Word(" 그는", 0.0, 0.4), Word(" 걸어", 0.4, 0.8), Word(" 갔다", 0.8, 1.2), Word(" 그리고", 1.2, 1.6)]
    second = [Word(" 그는", 0.0, 0.4), Word(" 걸어갔다", 0.4, 1.2), Word(" 그리고", 1.2, 1.6), Word(" 집에", 1.6, 2.0)]
    m.update(first)
    step = m.update(second)
    assert [w.text for w in step.committed] == [" 그는", " 걸어갔다", " 그리고"]
    # outside Korean, words still agree whole
    m = OverlapMerger()
    m.update([Word(" the", 0.0, 0.2), Word(" reader", 0.2, 0.6), Word(" said", 0.6, 0.9)])
    step = m.update([Word(" there", 0.0, 0.3), Word(" ader", 0.3, 0.6), Word(" said", 0.6, 0.9), Word(" so", 1.0, 1.2)])
    assert step.committed == ()


# "engraved" heard every quarter second: cut at first ("and gra"), then misheard ("and graved").
ENGRAVED = [
    (1.0, [w(" and", 0.5, 0.7), w(" gra", 0.7, 1.0)]),
    (1.25, [w(" and", 0.5, 0.7), w(" graved", 0.7, 1.2)]),
    (1.5, [w(" engraved", 0.5, 1.2), w(" in", 1.25, 1.4)]),
    (1.75, [w(" engraved", 0.5, 1.2), w(" in", 1.25, 1.4), w(" relief", 1.45, 1.7)]),
    (2.0, [w(" engraved", 0.5, 1.2), w(" in", 1.25, 1.4), w(" relief", 1.45, 1.7), w(" for", 1.75, 1.9)]),
    (2.25, [w(" relief", 1.45, 1.7), w(" for", 1.75, 1.9), w(" centuries", 1.95, 2.2)]),
]


def _final_words(merger):
    out = []
    for until, words in ENGRAVED:
        out += [x.text.strip() for x in merger.update(words, heard_until_s=until).committed]
    return out


def test_agreement_over_a_span_waits_for_a_hypothesis_that_heard_half_a_second_less():
    # Two hypotheses a quarter second apart agree on "and" (both heard the cut word): committed.
    assert _final_words(OverlapMerger())[:1] == ["and"]
    # Agreeing only with a hypothesis that heard at least 0.5 s less, "and" is never final, and
    # the words after the commit point still find their earlier hypothesis ("relief").
    assert _final_words(OverlapMerger(agreement_span_s=0.5)) == ["engraved", "in", "relief"]


def test_repeated_head_counts_the_words_that_spell_the_final_text_again():
    def words(*texts):
        return [Word(" " + t, i * 0.3, i * 0.3 + 0.25) for i, t in enumerate(texts)]

    assert repeated_head(words("Ask", "not."), words("ask", "not", "what", "your")) == 2
    assert repeated_head(words("했다"), words("했", "다", "그리고")) == 2  # Korean spacing differs
    assert repeated_head(words("Ask", "not."), words("Ask", "what")) == 0  # only part of it: none
    assert repeated_head(words("할"), words("할수", "있다")) == 0  # the word runs on past it
    assert repeated_head(words("there"), words("therefore")) == 0


def _doubted(text, a, b):
    return Word(" " + text, a, b, DOUBT_PROBABILITY / 2)


def test_a_doubted_word_needs_a_third_hypothesis_to_agree():
    """jfk's "what your country" after a pause: the first two windows both read "Like" (0.17,
    0.23); LocalAgreement-2 made it final, and the third window read "What"."""
    m = OverlapMerger()
    m.update([_doubted("Like", 0.3, 0.7), w("your.", 0.7, 0.9)], heard_until_s=1.0)
    step = m.update([_doubted("Like", 0.3, 0.7), w("your", 0.7, 0.9), w("country.", 0.9, 1.3)], heard_until_s=1.5)
    assert step.committed == ()  # agreed, but doubted: and nothing after it either
    step = m.update([w("What", 0.3, 0.7), w("your", 0.7, 0.9), w("country", 0.9, 1.4), w("can", 1.4, 1.8)],
                    heard_until_s=2.0)
    assert step.committed == ()  # the third reads another word: the agreement starts again
    step = m.update([w("What", 0.3, 0.7), w("your", 0.7, 0.9), w("country", 0.9, 1.4), w("can", 1.4, 1.8),
                     w("do", 1.8, 2.0)], heard_until_s=2.5)
    assert [x.text.strip() for x in step.committed] == ["What", "your", "country", "can"]


def test_a_word_three_hypotheses_agree_on_is_final_however_doubted():
    """Whisper doubts some words it always writes (a name, a rare word): a third agreeing
    hypothesis makes them final, so a doubt holds words back one update, not until the pause."""
    m = OverlapMerger()
    heard = [[w("the", 0.0, 0.2), _doubted("Guttenberg", 0.2, 0.9), w("Bible", 0.9, 1.3)][:n] for n in (2, 3, 3)]
    committed = [[x.text.strip() for x in m.update(h, heard_until_s=1.0 + i * 0.5).committed]
                 for i, h in enumerate(heard)]
    assert committed == [[], ["the"], ["Guttenberg"]]  # "Bible" is the last word: it waits for one after it


ASK_NOT = [  # jfk's "Ask not" after a pause, streamed with 0.3 s updates (base, grid phase 0)
    (3.51, [_doubted("and", 3.2, 3.43)]),
    (3.81, [_doubted("is", 3.2, 3.51)]),
    (4.11, [_doubted("is", 3.2, 3.69)]),
    (4.41, [_doubted("is", 3.2, 3.71), w("not", 3.9, 4.21)]),
    (4.71, [_doubted("is", 3.2, 3.71), w("not", 3.9, 4.21)]),
    (5.01, [_doubted("is", 3.2, 3.71), w("not", 3.9, 4.21), w("what", 4.9, 5.0)]),
]


def test_a_doubted_words_third_hypothesis_heard_a_second_less():
    """Quick updates hear little more each: "is" (0.03–0.05) came out of four windows 0.3 s
    apart, and the third agreeing one made it final before the pause's closing decode, which
    reads "Ask". The third must have heard ``DOUBT_SPAN_S`` less than the one that decides."""
    assert DOUBT_SPAN_S == 1.0  # two 0.5 s updates back: LocalAgreement-2 at 0.5 s is unchanged
    m = OverlapMerger()
    committed = [[x.text.strip() for x in m.update(words, heard_until_s=until).committed] for until, words in ASK_NOT]
    # 4.71 agrees with 4.41 and 4.11, but 4.11 heard only 0.6 s less: "is" (and "not" after it)
    # stays pending, for the closing decode if the pause comes now; at 5.01, 3.81 is a second back.
    assert committed == [[], [], [], [], [], ["is", "not"]]
    assert [x.text.strip() for x in m.pending] == ["what"]



ASK_WHAT = [  # jfk's second "ask" resampled from 24 kHz (the OpenAI Realtime path), 0.3 s updates (base)
    (8.70, [_doubted("As", 7.8, 8.54)]),
    (9.00, [w("Ask", 7.8, 8.56), w("what", 8.56, 8.76), w("you", 8.76, 8.98)]),
    (9.30, [_doubted("As", 7.8, 8.50), w("what", 8.50, 8.72), w("you", 8.72, 9.06), w("can.", 9.06, 9.28)]),
    (9.60, [_doubted("As", 7.8, 8.50), w("what", 8.50, 8.74), w("you", 8.74, 9.04), w("can", 9.04, 9.34),
            w("do.", 9.34, 9.58)]),
    (9.90, [_doubted("As", 7.8, 8.48), w("what", 8.48, 8.74), w("you", 8.74, 9.04), w("can", 9.04, 9.32),
            w("do", 9.32, 9.56), w("for", 9.56, 9.78), w("your.", 9.78, 9.88)]),
]


def test_a_doubted_word_is_not_final_while_a_hypothesis_in_between_reads_it_otherwise():
    """8.70, 9.30, 9.60 and 9.90 read "As" (0.07–0.15), 9.00 "Ask": the third agreeing hypothesis
    (8.70, a second before 9.90) and the two before 9.90 agree, but 9.00 does not, so "As" and the
    words after it wait (the next windows read "Ask", 0.51)."""
    m = OverlapMerger(agreement_margin_s=0.3)
    committed = [[x.text.strip() for x in m.update(words, heard_until_s=until).committed] for until, words in ASK_WHAT]
    assert committed == [[], [], [], [], []]
    step = m.update([_doubted("As", 7.8, 8.48), *ASK_WHAT[-1][1][1:], w("country.", 9.96, 10.18)], heard_until_s=10.2)
    assert step.committed == ()  # 9.00 is still within the second before 10.20
    step = m.update([w("Ask", 7.8, 8.52), *ASK_WHAT[-1][1][1:-1], w("your", 9.78, 9.96), w("country.", 9.96, 10.36)],
                    heard_until_s=10.5)
    assert step.committed == ()  # the reference read "As": no agreement on the first word
    step = m.update([w("Ask", 7.8, 8.52), *ASK_WHAT[-1][1][1:-1], w("your", 9.78, 9.96), w("country.", 9.96, 10.36)],
                    heard_until_s=10.8)
    assert " ".join(x.text.strip() for x in step.committed) == "Ask what you can do for your"
    # the rule of two hypotheses a second apart alone (what 0.5 s updates see) made "As" final at 9.90
    m = OverlapMerger(agreement_margin_s=0.3)
    for until, words in ASK_WHAT[:1] + ASK_WHAT[2:]:
        step = m.update(words, heard_until_s=until)
    assert [x.text.strip() for x in step.committed][:1] == ["As"]

def test_a_doubted_word_over_a_span_needs_the_hypothesis_a_span_before_the_reference():
    m = OverlapMerger(agreement_span_s=0.5)
    words = [w("a", 0.0, 0.2), _doubted("b", 0.2, 0.5), w("c", 0.5, 0.8), w("d", 0.8, 1.0)]
    committed = [[x.text.strip() for x in m.update(words, heard_until_s=until).committed]
                 for until in (1.0, 1.25, 1.5, 1.75, 2.0)]
    # 1.5 agrees with 1.0 ("a" final, "b" doubted); 2.0 agrees with 1.5, and 1.0 before that: "b c"
    assert committed == [[], [], ["a"], [], ["b", "c"]]


THEREFORE = [  # LJ001-0016's end streamed with 0.3 s updates (base, grid phase 0): words and their ends
    (4.5, [w(" natural.", 4.0, 4.28)]),
    (4.8, [w(" natural", 4.0, 4.30), w(" there.", 4.30, 4.64)]),
    (5.1, [w(" natural", 4.0, 4.30), w(" there", 4.30, 4.64), w(" for", 4.64, 4.94)]),
    (5.4, [w(" natural", 4.0, 4.30), w(" therefore.", 4.30, 4.96), w(" And", 5.2, 5.35)]),
]


def _therefore_finals(merger):
    return [[x.text.strip() for x in merger.update(words, heard_until_s=until).committed]
            for until, words in THEREFORE]


def test_agreement_margin_keeps_a_word_the_earlier_window_heard_only_to_its_end_pending():
    """Two windows 0.3 s apart both ended inside "therefore": the first read "there." ending
    0.16 s before its audio did, the second "there for", and LocalAgreement-2 made "there" final."""
    assert _therefore_finals(OverlapMerger())[1:3] == [["natural"], ["there"]]
    # The earlier window must have heard 0.3 s past a word's end to vouch for it: "there" waits,
    # and the next window, which hears the whole word, has it right.
    merger = OverlapMerger(agreement_margin_s=0.3)
    finals = _therefore_finals(merger)
    assert finals[:3] == [[], [], ["natural"]]
    assert finals[3] == []  # "therefore." has no earlier hypothesis that agrees: it is pending
    assert [x.text.strip() for x in merger.pending] == ["therefore.", "And"]


def test_agreement_margin_holds_only_for_hypotheses_closer_than_the_margin_gap():
    """At 0.5 s apart LocalAgreement-2 keeps its words without the margin (MARGIN_GAP_S): the
    same two hypotheses make "there" final with the margin when 0.5 s apart, and hold it 0.3 s apart."""
    first = [w(" natural", 4.0, 4.30), w(" there.", 4.30, 4.64)]
    second = [w(" natural", 4.0, 4.30), w(" there", 4.30, 4.64), w(" for", 4.64, 4.94)]
    assert MARGIN_GAP_S == 0.5
    for gap, expected in ((0.5, ["natural", "there"]), (0.4, ["natural"]), (0.3, ["natural"])):
        m = OverlapMerger(agreement_margin_s=0.3)
        m.update(first, heard_until_s=4.8)
        assert [x.text.strip() for x in m.update(second, heard_until_s=4.8 + gap).committed] == expected
        plain = OverlapMerger()
        plain.update(first, heard_until_s=4.8)
        assert [x.text.strip() for x in plain.update(second, heard_until_s=4.8 + gap).committed] == [
            "natural", "there"]


def test_agreement_margin_without_heard_times_changes_nothing():
    words = [w(" a", 0.0, 0.2), w(" b", 0.2, 0.4), w(" c", 0.4, 0.6)]
    for margin in (0.0, 0.3):
        m = OverlapMerger(agreement_margin_s=margin)
        m.update(words)
        assert [x.text.strip() for x in m.update(words).committed] == ["a", "b"]
