"""The Whisper engine: batched encode, generate and align over CTranslate2's public API.

faster-whisper supplies what it is good at: model loading (``WhisperModel``), the log-mel
features (computed with numpy's BLAS held to one thread: :mod:`~rtwhisper.engine.features`),
the tokenizer, and the whole-file pipeline for uploads. A streaming update needs
none of its segment loop: one window is one encode, one ``generate`` and one ``align``. Doing
exactly that here, for a whole batch of windows at once, is what lets one model serve many
streams (WhisperLive's ``batch_inference.py`` batches the same three calls), and it costs a
third of ``WhisperModel.transcribe`` on a single window (base int8, 2 cores, jfk.wav: 0.33 s
against 0.95 s, which seeks past the last segment and decodes the tail a second time).

Decoding is deterministic: greedy or beam search, never sampling. CTranslate2 keeps its
random generator per worker thread and ``set_random_seed()`` does not reset a thread that
has sampled before, so Whisper's sampled temperature fallback made the same window give
different words depending on earlier calls (measured: 3.6 % vs 2.5 % WER on the long LJ
file). A decode that fails Whisper's thresholds (compression ratio 2.4, mean log-probability
−1: openai/whisper's ``transcribe.py``) is retried without the previous-text prompt
(Whisper's own prompt reset after a failed decode), then with beam 5 and repeated trigrams
blocked; the first that passes wins, else the best by Whisper's rule.
"""

from __future__ import annotations

import logging
import os
import threading
import zlib
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ..audio import SAMPLE_RATE
from ..errors import ConfigError
from ..events import TranscriptEvent, Word
from .cuda import (
    CudaUnavailableError,
    check_device,
    cuda_device_count,
    cuda_error_hint,
    preload_cuda_libraries,
    probe_cuda,
    resolve_compute_type,
)
from .features import log_mel
from .interface import (
    MAX_TOKENS_PER_SECOND,
    DecodeOptions,
    DecodeRequest,
    FileTranscript,
    Hypothesis,
    SegmentScores,
    validate_options,
)
from .layout import CpuLayout, available_cores, cpu_layout, prime_cpu_threads

log = logging.getLogger("rtwhisper.engine")

COMPRESSION_RATIO_THRESHOLD = 2.4
LOG_PROB_THRESHOLD = -1.0
NO_SPEECH_THRESHOLD = 0.6
"""Whisper's silence rule: no-speech probability over 0.6 with a mean log-probability under −1."""
ANOMALY_SCORE = 3.0
"""Word-timing anomaly at which a window Whisper thinks silent is read as silence (``_anomalous``)."""
FALLBACK_BEAM_SIZE = 5
FRAMES_PER_SECOND = 100  # log-mel frames
FULL_INPUT_FRAMES = 3000  # Whisper's 30 s
FRAME_BUCKET = 200
"""Encoder inputs are rounded up to 2 s steps so that windows of similar length share a batch."""
CLOSING_MIN_S = 20.0
CLOSING_SILENCE_S = 4.0
"""A closing window's encoder input: its audio and at least this much silence, at least
``CLOSING_MIN_S`` in all (``WhisperEngine`` says why not Whisper's 30 s)."""
SILENCE_LOG_MEL = -1.5
"""Whisper's normalised log-mel of digital silence, ``(log10(1e-10) + 4) / 4``."""
LOG_MEL_RANGE = 2.0
"""Whisper keeps 8 log10 units below a recording's loudest frame: 2 once normalised (÷ 4)."""
MAX_PROMPT_TOKENS = 223  # Whisper's max_length // 2 - 1
PROMPT_TOKENS = 32
"""Previous-text prompt length once a stream has that much final text (see ``_bucketed``)."""
FORCED_PREFIX_WORDS = 4
"""Words of a window's final text that the decoder is forced through; the words before them
join the previous-text prompt (and all of them are aligned, so word times do not change).

CTranslate2 reads a prompt in one pass but forces a prefix token by token, each step as dear
as a decoded one, and a streaming window's final text is most of its tokens (4321 forced
against 2380 read over the 214 updates of the long LJ file). The decoder needs only the last
few final words to find where it stands in the audio; the words before are context, which a
prompt gives as well (Whisper's own way with text before its window). Measured on those
updates (``base``, one AMD EPYC core): ``generate`` 0.34–0.36 s → 0.19–0.21 s a window with 3
to 5 words forced; in real time (the long LJ file's first 60 s, one stream, 2 cores) final
p50 1.50 → 1.12–1.18 s and server CPU 102 → 76 s, the same words; over the shared set's
grid phases the same WER and CER within their spread (``docs/benchmarks.md``). A decode
that goes back to an earlier place where those words were said is decoded again forced
through all of them (``_loops_back``)."""
_SENTENCE_MARKS = ".。!！?？"
_PREPEND_PUNCTUATION = "\"'“¿([{-"
_APPEND_PUNCTUATION = "\"'.。,，!！?？:：”)]}、"


_Conditioning = Literal["tail", "whole", "bare"]
"""How a decode is conditioned on text (``_Item.conditioning``)."""

_Language = tuple[str, float, str | None, float | None]
"""(language to decode in, its probability, detected language, its probability)."""


@dataclass
class _Item:
    """One request on its way through a batch."""

    index: int
    request: DecodeRequest
    features: np.ndarray  # (n_mels, frames): the window's log-mel, unpadded
    tokenizer: Any
    prompt: list[int]  # previous-text part, may be empty
    prefix: list[int]  # the window's final text: aligned, and forced after the start sequence
    context: list[int]  # ``prompt`` and the head of ``prefix``: the prompt when only ``forced`` is forced
    forced: list[int]  # the tail of ``prefix`` (``FORCED_PREFIX_WORDS``)
    language: str
    language_probability: float
    detected_language: str | None
    detected_probability: float | None
    tokens: list[int] | None = None
    avg_logprob: float = 0.0
    no_speech_prob: float = 0.0
    attempts: int = 0
    alignment: Any = None

    @property
    def content_frames(self) -> int:
        return int(self.features.shape[-1])

    def conditioning(self, how: _Conditioning) -> tuple[list[int], list[int]]:
        """(previous-text prompt, forced prefix) for a decode: the last final words forced and the
        words before them in the prompt (``tail``), all of them forced after the prompt
        (``whole``), or all of them forced and no prompt (``bare``: Whisper's retry)."""
        if how == "tail":
            return self.context, self.forced
        return (self.prompt if how == "whole" else []), self.prefix


class WhisperEngine:
    """A Whisper model on CTranslate2, serving batches of windows. Thread-safe.

    ``num_workers`` lets that many threads run batches at once (CTranslate2 replicas share
    the weights); ``cpu_threads`` is the intra-op thread count of each. 0 means the cores this
    process may run on, divided among the workers (:func:`default_cpu_threads`): CTranslate2's
    own default is 4 whatever the machine, which oversubscribes 2 cores and leaves most of a
    16-core machine idle. ``min_encoder_s`` is how much input the encoder sees at least.

    Why a minimum: the encoder's cost grows with its input (base int8 on 2 cores: 21 ms for
    2 s, 71 ms for 10 s, 200 ms for 20 s, 450 ms for 30 s), but trimmed all the way to the
    window, Whisper loops on short windows ("and so and so and so…", jfk.wav, 1–3 s windows).
    Padded to 10 s (with silence as Whisper pads, :func:`silence_level`, where the speech
    ended; with faster-whisper's 0 where it goes on) the streaming windows keep offline
    accuracy (measured in ``docs/streaming.md``), short ones too: with voice
    activity gating the decodes, a short window always holds speech (the old rule that gave
    windows under 2 s the full 30 s cost a third of the compute on short utterances and
    changed no word on the shared set).

    A closing window (an utterance's or a stream's end, a flush) hears its speech end: its
    audio, then at least ``CLOSING_SILENCE_S`` of silence, at least ``CLOSING_MIN_S`` in all.
    It used to get Whisper's full 30 s, whose encode costs twice 20 s's (base int8, one core:
    0.96 s against 0.44 s; 10 s: 0.10 s) and made every closing decode about 1.1 s: the wait
    for the last words of an utterance. Padded with silence, 30 s was no better: closing
    decodes of the 32 recorded shared clips read the same English with 20 s (2.69 % WER both)
    and better Korean (8.90 % CER against 10.08 %), and on their last 1.5 s (after the speech)
    30 s made up "MBC 뉴스 김혜연입니다." three times where 20 s gave nothing. Shorter minimums
    (12, 16 s) read the same on whole clips but garbled more words on windows that start inside
    a sentence.
    """

    def __init__(
        self,
        model_path: str,
        *,
        device: str = "auto",
        compute_type: str = "auto",
        cpu_threads: int = 0,
        num_workers: int = 1,
        min_encoder_s: float = 10.0,
        forced_prefix_words: int | None = FORCED_PREFIX_WORDS,
    ) -> None:
        from faster_whisper import WhisperModel

        check_device(device)
        if not 2 <= min_encoder_s <= 30:
            raise ConfigError(f"min_encoder_s must be from 2 to 30 seconds, got {min_encoder_s}")
        self.model_path = model_path
        self.min_frames = _even(round(min_encoder_s * FRAMES_PER_SECOND))
        if forced_prefix_words is not None and (isinstance(forced_prefix_words, bool) or not isinstance(
                forced_prefix_words, int) or forced_prefix_words < 1):
            raise ConfigError(f"forced_prefix_words must be a whole number of words, at least 1, or None "
                              f"(force the whole final text), got {forced_prefix_words!r}")
        self.forced_prefix_words = forced_prefix_words
        self.num_workers = num_workers
        """Engine calls that may run at once (CTranslate2 replicas sharing the weights)."""
        self.device = "cpu"
        self.cpu_threads = 0
        """Intra-op threads per worker on the CPU (0 on a GPU)."""
        self.fallback_reason: str | None = None
        """Why ``device="auto"`` runs on the CPU although a GPU is visible (``None`` otherwise)."""
        wanted = device
        if device == "auto":
            wanted = "cuda" if cuda_device_count() > 0 else "cpu"
        if wanted == "cuda":
            preload_cuda_libraries()
            try:
                model = WhisperModel(model_path, device="cuda", compute_type=resolve_compute_type(compute_type, "cuda"),
                                     num_workers=num_workers)
                probe_cuda(model.model, model.feature_extractor.mel_filters.shape[0])
                self.device = "cuda"
            except Exception as exc:
                hint = cuda_error_hint(exc)
                if device == "cuda":
                    raise CudaUnavailableError(f"CUDA cannot run {model_path!r}: {hint}") from exc
                self.fallback_reason = hint
                log.warning("rtwhisper: the GPU cannot run the model (%s); running on the CPU", hint)
        if self.device == "cpu":
            self.cpu_threads = cpu_threads or default_cpu_threads(num_workers)
            if self.cpu_threads > 1:
                prime_cpu_threads(model_path, compute_type)
            model = WhisperModel(model_path, device="cpu", compute_type=resolve_compute_type(compute_type, "cpu"),
                                 cpu_threads=self.cpu_threads, num_workers=num_workers)
        self.compute_type = resolve_compute_type(compute_type, self.device)
        self.whisper_model = model
        self.model = model.model  # ctranslate2.models.Whisper
        self.multilingual: bool = bool(self.model.is_multilingual)
        self.supported_languages: tuple[str, ...] = tuple(model.supported_languages)
        self._tokenizers: dict[tuple[str, str | None], Any] = {}
        self._tokenizers_lock = threading.Lock()
        cores = os.cpu_count() or 1
        self._feature_pool = ThreadPoolExecutor(min(8, cores), "rtw-features") if cores > 2 else None

    # -- public ------------------------------------------------------------------------------

    def transcribe(self, audio: np.ndarray, options: DecodeOptions | None = None) -> Hypothesis:
        """Recognise one window (a batch of one)."""
        return self.transcribe_batch([DecodeRequest(audio, options or DecodeOptions())])[0]

    def transcribe_batch(self, requests: Sequence[DecodeRequest]) -> list[Hypothesis]:
        """Recognise many windows: one encode, one generate and one align per group that can share them.

        Requests are grouped by encoder input length and beam size (one CTranslate2 call takes
        one of each); languages, tasks, prompts and prefixes may differ within a group.
        """
        for request in requests:
            validate_options(request.options, multilingual=self.multilingual, model=self.model_path)
        results: list[Hypothesis | None] = [None] * len(requests)
        groups: dict[tuple[int, int], list[int]] = {}
        if len(requests) > 1 and self._feature_pool is not None:
            # numpy's FFT releases the GIL: many streams' log-mels in parallel, not one by one
            features = list(self._feature_pool.map(self._features, [r.audio for r in requests]))
        else:
            features = [self._features(r.audio) for r in requests]
        for i, request in enumerate(requests):
            key = (self._input_frames(features[i].shape[-1], request.options), request.options.beam_size)
            groups.setdefault(key, []).append(i)
        for (frames, beam_size), indices in groups.items():
            hypotheses = self._decode_group([requests[i] for i in indices], [features[i] for i in indices],
                                            frames, beam_size)
            for i, hypothesis in zip(indices, hypotheses, strict=True):
                results[i] = hypothesis
        return [r for r in results if r is not None]

    def transcribe_file(self, audio: np.ndarray, options: DecodeOptions) -> FileTranscript:
        """Recognise a whole recording: faster-whisper's own file pipeline, deterministic (temperature 0)."""
        segments, language, probability = self.iter_file(audio, options)
        pairs = list(segments)
        return FileTranscript(tuple(e for e, _ in pairs), language, probability, len(audio) / SAMPLE_RATE,
                              tuple(s for _, s in pairs))

    def iter_file(self, audio: np.ndarray, options: DecodeOptions, *, word_timestamps: bool = True,
                  condition_on_previous_text: bool = False,
                  ) -> tuple[Iterator[tuple[TranscriptEvent, SegmentScores]], str | None, float]:
        """A whole recording as faster-whisper transcribes a file: segments as they are decoded.

        Returns (segments, language, language probability); each segment is a final event on
        the file's clock with Whisper's scores. For someone who has the whole file, the
        streaming windows only cost time (3.6× on the shared long file): this is the 30 s
        window pipeline of ``WhisperModel.transcribe`` itself, with temperature 0 so that
        a file always gives the same text, and ``options.vad`` as its ``vad_filter``.
        """
        validate_options(options, multilingual=self.multilingual, model=self.model_path)
        language = options.language if self.multilingual else "en"
        segments, info = self.whisper_model.transcribe(
            audio, language=language, task=options.task, beam_size=options.beam_size,
            temperature=0.0, word_timestamps=word_timestamps,
            condition_on_previous_text=condition_on_previous_text,
            initial_prompt=options.prompt or None, vad_filter=options.vad)

        def events() -> Iterator[tuple[TranscriptEvent, SegmentScores]]:
            for index, seg in enumerate(segments):
                event = TranscriptEvent(
                    segment_id=index, sequence=index, is_final=True, text=seg.text.strip(),
                    start_s=float(seg.start), end_s=float(seg.end),
                    words=tuple(Word(w.word, float(w.start), float(w.end), float(w.probability))
                                for w in (seg.words or ())),
                    language=info.language, language_probability=float(info.language_probability),
                )
                yield event, SegmentScores(int(seg.seek), tuple(seg.tokens), float(seg.temperature or 0.0),
                                           float(seg.avg_logprob), float(seg.compression_ratio),
                                           float(seg.no_speech_prob))

        return events(), info.language, float(info.language_probability)

    # -- one group: encode, detect, generate (with fallback), align ------------------------------

    def _features(self, audio: np.ndarray) -> np.ndarray:
        content = max(1, len(audio) // (SAMPLE_RATE // FRAMES_PER_SECOND))
        return log_mel(self.whisper_model.feature_extractor, audio)[:, :content]

    def _input_frames(self, content_frames: int, options: DecodeOptions) -> int:
        frames = max(content_frames, self.min_frames)
        if options.end_of_stream:
            frames = max(frames, content_frames + round(CLOSING_SILENCE_S * FRAMES_PER_SECOND),
                         round(CLOSING_MIN_S * FRAMES_PER_SECOND))
        frames = -(-frames // FRAME_BUCKET) * FRAME_BUCKET
        return min(_even(frames), FULL_INPUT_FRAMES)

    def _encode(self, features: list[np.ndarray], frames: int, ended: list[bool]) -> Any:
        import ctranslate2

        batch = np.empty((len(features), features[0].shape[0], frames), dtype=np.float32)
        for row, f in enumerate(features):
            # Speech that ended: silence after it, as Whisper pads. Speech still going on (an
            # interim window): faster-whisper's 0, a sound going on — with silence after a short
            # window's first words Whisper took them for a whole phrase ("Why you are country"
            # for jfk's drawn-out "What your country", committed by two updates).
            batch[row] = silence_level(f) if ended[row] else 0.0
            batch[row, :, : min(f.shape[-1], frames)] = f[:, :frames]
        return self.model.encode(ctranslate2.StorageView.from_array(batch))

    def _decode_group(self, requests: list[DecodeRequest], features: list[np.ndarray], frames: int,
                      beam_size: int) -> list[Hypothesis]:
        encoded = self._encode(features, frames, [r.options.end_of_stream or r.options.paused for r in requests])
        languages = self._languages(requests, encoded)
        items = []
        for i, (request, (language, probability, detected, detected_p)) in enumerate(
                zip(requests, languages, strict=True)):
            options = request.options
            tokenizer = self._tokenizer(options.task, language)
            prompt = tokenizer.encode(" " + options.prompt.strip()) if options.prompt and options.prompt.strip() else []
            prefix = tokenizer.encode(" " + options.prefix.strip()) if options.prefix and options.prefix.strip() else []
            prefix = prefix[-MAX_PROMPT_TOKENS:]
            cut = _forced_start(tokenizer, prefix, self.forced_prefix_words)
            items.append(_Item(i, request, features[i], tokenizer, _bucketed(prompt), prefix,
                               _bucketed(prompt + prefix[:cut]), prefix[cut:], language, probability, detected,
                               detected_p))
        self._generate(items, encoded, beam_size, "tail", blocked_ngrams=0)
        # A decoder forced through the last final words only that went back to an earlier
        # place where they (or words like them) were said: again, forced through all of them.
        self._generate([it for it in items if it.forced != it.prefix and _loops_back(it.tokens or [], [
            *it.context, *it.prefix])], encoded, beam_size, "whole", blocked_ngrams=0)
        # Whisper's fallback, without sampling: failed decodes again without the prompt (those
        # that had one), then with a wider beam and repeated trigrams blocked.
        self._retry([it for it in items if not self._passes(it) and it.context], encoded, beam_size, 0)
        self._retry([it for it in items if not self._passes(it) and it.request.options.thorough], encoded,
                    max(FALLBACK_BEAM_SIZE, beam_size), 3)
        self._align(items, encoded)
        self._hear_to_the_end([it for it in items if _stops_short(it)], encoded, beam_size)
        return [self._hypothesis(it) for it in items]

    def _hear_to_the_end(self, short: list[_Item], encoded: Any, beam_size: int) -> None:
        """Decode again the closing windows whose words stop before their speech does.

        Forced through the whole final text instead of its tail (or, where that is all it was
        forced through, greedily); the decode that reaches further into the speech is kept when
        it passes Whisper's thresholds.
        """
        if not short:
            return
        kept = {id(it): (it.tokens, it.avg_logprob, it.no_speech_prob, it.alignment) for it in short}
        whole = [it for it in short if it.forced != it.prefix]
        greedy = [it for it in short if it.forced == it.prefix and beam_size > 1]
        self._generate(whole, encoded, beam_size, "whole", blocked_ngrams=0)
        self._generate(greedy, encoded, 1, "tail", blocked_ngrams=0)
        self._align(whole + greedy, encoded)
        for it in short:
            tokens, avg_logprob, no_speech_prob, alignment = kept[id(it)]
            before = _last_word_end_s(it.tokenizer, it.prefix, tokens or [], alignment)
            if self._passes(it) and _last_word_end_s(it.tokenizer, it.prefix, it.tokens or [], it.alignment) > before:
                continue
            it.tokens, it.avg_logprob, it.no_speech_prob, it.alignment = tokens, avg_logprob, no_speech_prob, alignment

    def _retry(self, failed: list[_Item], encoded: Any, beam_size: int, blocked_ngrams: int) -> None:
        """Decode ``failed`` again without the prompt; keep whichever decode ranks higher by Whisper's rule."""
        if not failed:
            return
        kept = {id(it): (it.tokens or [], it.avg_logprob, it.no_speech_prob) for it in failed}
        self._generate(failed, encoded, beam_size, "bare", blocked_ngrams=blocked_ngrams)
        for it in failed:
            tokens, avg_logprob, no_speech_prob = kept[id(it)]
            if _rank(it.tokenizer, tokens, avg_logprob) > _rank(it.tokenizer, it.tokens or [], it.avg_logprob):
                it.tokens, it.avg_logprob, it.no_speech_prob = tokens, avg_logprob, no_speech_prob

    def _languages(self, requests: list[DecodeRequest], encoded: Any) -> list[_Language]:
        """(language to decode in, its probability, detected language, its probability) per request."""
        if not self.multilingual:
            return [("en", 1.0, None, None)] * len(requests)
        out: list[_Language] = [
            (r.options.language or "", 1.0, None, None) for r in requests]
        if any(r.options.language is None or r.options.detect_language for r in requests):
            detected = self.model.detect_language(encoded)
            for i, request in enumerate(requests):
                if request.options.language is None or request.options.detect_language:
                    token, probability = detected[i][0]
                    found = (token[2:-2], float(probability))
                    out[i] = (*(found if request.options.language is None else out[i][:2]), *found)
        return out

    def _tokenizer(self, task: str, language: str | None) -> Any:
        from faster_whisper.tokenizer import Tokenizer

        key = (task, language if self.multilingual else None)
        with self._tokenizers_lock:
            tokenizer = self._tokenizers.get(key)
            if tokenizer is None:
                tokenizer = Tokenizer(self.whisper_model.hf_tokenizer, self.multilingual, task=task,
                                      language=language if self.multilingual else None)
                self._tokenizers[key] = tokenizer
            return tokenizer

    def _generate(self, items: list[_Item], encoded: Any, beam_size: int, how: _Conditioning, *,
                  blocked_ngrams: int) -> None:
        """``generate`` over the items, one call per position of ``<|startoftranscript|>``.

        CTranslate2 batches prompts of different lengths only when the start token sits at the
        same position in each (``_bucketed``: past its first seconds every stream's prompt has
        the same length); prefixes after it may differ.

        Blank suppression is off: after a forced prefix the decoder must be free to stop at once
        (nothing new was said), and a window without one holds speech by voice activity, so an
        empty answer there only means "not yet" — the next update hears more.
        """
        groups: dict[int, list[tuple[_Item, list[int], list[int]]]] = {}
        for it in items:
            text, forced = it.conditioning(how)
            groups.setdefault(len(text) + 1 if text else 0, []).append((it, text, forced))
        for group in groups.values():  # ``encoded`` holds every item of the batch; take the group's rows
            self._generate_group(group, self._rows(encoded, [it.index for it, _, _ in group]), beam_size,
                                 blocked_ngrams=blocked_ngrams)

    def _generate_group(self, group: list[tuple[_Item, list[int], list[int]]], encoded: Any, beam_size: int, *,
                        blocked_ngrams: int) -> None:
        prompts = []
        budget = 0
        for it, text, forced in group:
            tok = it.tokenizer
            head = [tok.sot_prev, *text] if text else []
            prompt = [*head, *tok.sot_sequence, tok.no_timestamps, *forced]
            prompts.append(prompt)
            new_tokens = it.request.options.max_new_tokens or int(
                it.request.duration_s * MAX_TOKENS_PER_SECOND) + 16
            budget = max(budget, len(prompt) + min(new_tokens, 440))
        results = self.model.generate(
            encoded, prompts, beam_size=beam_size, max_length=min(budget, 448), return_scores=True,
            return_no_speech_prob=True, suppress_blank=False, suppress_tokens=[-1],
            no_repeat_ngram_size=blocked_ngrams)
        for (it, _, forced), result in zip(group, results, strict=True):
            tokens = list(result.sequences_ids[0])
            if forced and tokens[: len(forced)] == forced:
                tokens = tokens[len(forced):]  # CTranslate2 returns the forced prefix too
            tokens = [t for t in tokens if t < it.tokenizer.eot]
            length = len(tokens)
            # CTranslate2's score is the sum of log-probabilities over the length; Whisper
            # averages over the tokens plus the end of text (faster-whisper does the same).
            it.avg_logprob = float(result.scores[0]) * length / (length + 1) if result.scores else 0.0
            it.no_speech_prob = float(result.no_speech_prob)
            it.tokens = tokens
            it.attempts += 1

    def _passes(self, it: _Item) -> bool:
        tokens = it.tokens or []
        if it.no_speech_prob > NO_SPEECH_THRESHOLD and it.avg_logprob < LOG_PROB_THRESHOLD:
            return True  # silence: the hypothesis is dropped below, as Whisper skips the segment
        if not tokens:
            return True
        return (_compression_ratio(it.tokenizer.decode(tokens)) <= COMPRESSION_RATIO_THRESHOLD
                and it.avg_logprob >= LOG_PROB_THRESHOLD)

    def _rows(self, encoded: Any, rows: list[int]) -> Any:
        """Some rows of an encoder output (a batch item's row is its ``index``).

        On the CPU a view of the same memory; on a GPU the rows travel through the host, which
        for one batch is well under a millisecond next to the decode it serves.
        """
        import ctranslate2

        if list(rows) == list(range(int(encoded.shape[0]))):
            return encoded
        if self.device == "cpu":
            return ctranslate2.StorageView.from_array(np.ascontiguousarray(np.asarray(encoded)[rows]))
        host = np.asarray(encoded.to_device(ctranslate2.Device.cpu))
        return ctranslate2.StorageView.from_array(np.ascontiguousarray(host[rows])).to_device(ctranslate2.Device.cuda)

    def _align(self, items: list[_Item], encoded: Any) -> None:
        """Word times from the cross-attention of the alignment heads (``align``), per start sequence."""
        by_start: dict[tuple[int, ...], list[_Item]] = {}
        for it in items:
            if it.tokens and not self._is_silence(it):
                by_start.setdefault(tuple(it.tokenizer.sot_sequence), []).append(it)
        for start, group in by_start.items():
            results = self.model.align(self._rows(encoded, [it.index for it in group]), list(start),
                                       [[*it.prefix, *(it.tokens or [])] for it in group],
                                       [it.content_frames for it in group], median_filter_width=7)
            for it, result in zip(group, results, strict=True):
                it.alignment = result

    @staticmethod
    def _is_silence(it: _Item) -> bool:
        return it.no_speech_prob > NO_SPEECH_THRESHOLD and it.avg_logprob < LOG_PROB_THRESHOLD

    def _hypothesis(self, it: _Item) -> Hypothesis:
        words: tuple[Word, ...] = ()
        if it.tokens and it.alignment is not None:
            words = _timed_words(it.tokenizer, it.prefix, it.tokens, it.alignment)
        silent = self._is_silence(it)
        if words and it.no_speech_prob > NO_SPEECH_THRESHOLD and _anomalous(words):
            # A window Whisper thinks silent whose words the alignment crams into no time: a
            # sign-off made up from the silence ("MBC 뉴스 김혜연입니다." in 40 ms, mean
            # log-probability −0.98, just over Whisper's −1, on 2 AMD cores).
            words, silent = (), True
        return Hypothesis(words, it.language, it.language_probability, it.no_speech_prob, it.avg_logprob,
                          it.attempts, self._passes(it) or silent, silent=silent,
                          detected_language=it.detected_language, detected_probability=it.detected_probability)


# -- helpers -----------------------------------------------------------------------------------


def default_cpu_threads(num_workers: int = 1) -> int:
    """The cores this process may run on, shared by the workers."""
    return max(1, available_cores() // max(1, num_workers))


def runs_on_cpu(device: str) -> bool:
    """Whether an engine for ``device`` decodes on the CPU (``auto`` without a visible GPU)."""
    return device == "cpu" or (device == "auto" and cuda_device_count() == 0)


def streaming_cpu_threads(model_path: str, compute_type: str = "auto", device: str = "cpu") -> int:
    """CPU threads for the decodes of one stream that has the engine to itself, measured on this
    machine (:func:`~rtwhisper.engine.layout.cpu_layout`, ``library_threads``); 0 (the engine's
    default, nothing measured) where ``device`` does not decode on the CPU.

    A streaming window's decoder steps multiply small matrices, and whether intra-op threads
    speed them up depends on the CPU: on a 2-core Intel Xeon one `base` update took 328 ms on
    one thread and 439 ms on two, on a 2-core AMD EPYC 1.43 s and 1.23 s. Whole files, whose
    30 s windows are large, keep every core.
    """
    layout = device_cpu_layout(model_path, compute_type, device)
    return layout.library_threads if layout is not None else 0


def device_cpu_layout(model_path: str, compute_type: str = "auto", device: str = "cpu") -> CpuLayout | None:
    """How decodes share this machine's CPU for the model (:func:`~rtwhisper.engine.layout.cpu_layout`,
    measured once per machine, model and compute type), or ``None`` where ``device`` does not
    decode on the CPU: the library's threads, and the server's workers and threads when told
    neither (``rtwhisper serve``, and the benchmark's served clock that mirrors it)."""
    if not runs_on_cpu(device):
        return None
    return cpu_layout(model_path, resolve_compute_type(compute_type, "cpu"))


def default_workers(device: str) -> int:
    """Engine calls to run at once when neither workers nor threads are measured or given: 1 on a
    GPU (more were not measured), else 2 on a CPU with 2 cores or more.

    A server on a CPU told neither asks :func:`~rtwhisper.engine.layout.cpu_layout`, which
    measures two workers against one (on 2 Intel cores two one-thread workers beat one
    two-thread worker for every load tried; on 2 AMD cores one two-thread worker won).
    """
    if not runs_on_cpu(device):
        return 1
    return min(2, available_cores())


def _bucketed(prompt: list[int]) -> list[int]:
    """The previous-text prompt, cut (oldest tokens first) to at most ``PROMPT_TOKENS``.

    CTranslate2 batches only prompts whose ``<|startoftranscript|>`` sits at the same position.
    The processor passes ~200 characters of final text (40–50 English tokens), so past its
    first seconds every stream's prompt is exactly ``PROMPT_TOKENS`` long and shares one
    ``generate`` with the others; Whisper cuts its prompt the same way (the last
    ``max_length // 2 - 1`` tokens). Padding short prompts to one length instead (with spaces)
    changed words: on jfk "what your country" became "why you are country".
    """
    return prompt[-PROMPT_TOKENS:]


def silence_level(features: np.ndarray) -> float:
    """The value that pads a window's log-mel to the encoder's input length: silence, as Whisper hears it.

    OpenAI's Whisper appends 30 s of zeros to the audio before the log-mel
    (``log_mel_spectrogram(audio, padding=N_SAMPLES)``), so in its own transcription the
    input past the speech is digital silence: the floor, 8 log10 units below the loudest
    frame. faster-whisper pads the finished features with 0 instead (its ``pad_or_trim``):
    log10 −4, several units over that floor for speech, a faint sound still going on.
    Padded with it, a closing window (the speech ended) read its last word as unfinished
    ("natural there for..." for "therefore" at the end of LJ001-0016). Interim windows, whose
    speech goes on, keep the 0 (``WhisperEngine._encode``); measured in ``docs/streaming.md``.
    """
    if features.size == 0:
        return SILENCE_LOG_MEL
    return max(SILENCE_LOG_MEL, float(features.max()) - LOG_MEL_RANGE)


def _even(frames: int) -> int:
    """The encoder's stride-2 convolution wants an even number of frames."""
    return frames + frames % 2


def _compression_ratio(text: str) -> float:
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def _rank(tokenizer: Any, tokens: list[int], avg_logprob: float) -> tuple[bool, float]:
    """Whisper's "best of the failed decodes": under the compression threshold first, then by log-probability."""
    return (_compression_ratio(tokenizer.decode(tokens)) <= COMPRESSION_RATIO_THRESHOLD, avg_logprob)


LOOP_BACK_TOKENS = 4
"""Tokens in a row that a decode repeats from its prompt or the window's final text to be taken
as having gone back to where they were said (``_loops_back``)."""


def _loops_back(tokens: list[int], context: list[int], n: int = LOOP_BACK_TOKENS) -> bool:
    """Whether ``tokens`` repeat ``n`` tokens in a row of ``context``.

    Forced through the last final words only, the decoder sometimes finds them (or words like
    them) earlier in the window and reads on from there: on LJ001-0005, forced through "As the
    invention of", the closing decode went on "movable metal letters in the middle of…" from
    the sentence's start "The invention of movable metal letters", and the merger, which drops
    a hypothesis that repeats final words, lost "the art of printing." A repeat that was really
    said costs a second decode, not a word.
    """
    if len(tokens) < n or len(context) < n:
        return False
    said = {tuple(context[i:i + n]) for i in range(len(context) - n + 1)}
    return any(tuple(tokens[i:i + n]) in said for i in range(len(tokens) - n + 1))


def _forced_start(tokenizer: Any, prefix: list[int], words: int | None) -> int:
    """Where in ``prefix`` the forced part starts: at the last ``words`` words (``FORCED_PREFIX_WORDS``).

    Cut between words as faster-whisper's tokenizer splits them (on spaces; on whole Unicode
    characters for languages written without them), so neither part holds half a Hangul
    syllable; punctuation does not count as a word. ``None`` forces the whole prefix.
    """
    if words is None or not prefix:
        return 0
    _, word_tokens = tokenizer.split_to_word_tokens(list(prefix))
    cut = len(prefix)
    counted = 0
    for toks in reversed(word_tokens):
        if counted == words:
            break
        cut -= len(toks)
        if any(ch.isalnum() for ch in tokenizer.decode(toks)):
            counted += 1
    return cut


def _timed_words(tokenizer: Any, prefix: list[int], tokens: list[int], alignment: Any) -> tuple[Word, ...]:
    """The words after ``prefix``, timed by the alignment of ``prefix + tokens``.

    Words are split by faster-whisper's tokenizer (on spaces, or on whole Unicode characters for
    languages written without them), so a word never holds half a Hangul syllable; a last word
    whose bytes are incomplete (the decoder stopped inside a character) is dropped. Punctuation
    joins its word, as in Whisper's ``merge_punctuations``.
    """
    text_tokens = [*prefix, *tokens]
    words, word_tokens = tokenizer.split_to_word_tokens([*text_tokens, tokenizer.eot])
    if len(word_tokens) <= 1:
        return ()
    pairs = alignment.alignments
    if not pairs:
        return ()
    text_indices = np.array([p[0] for p in pairs])
    time_indices = np.array([p[1] for p in pairs])
    jumps = np.pad(np.diff(text_indices), (1, 0), constant_values=1).astype(bool)
    jump_times = time_indices[jumps] / 50.0  # encoder frames: 20 ms
    probabilities = np.asarray(alignment.text_token_probs, dtype=np.float64)
    boundaries = np.pad(np.cumsum([len(t) for t in word_tokens[:-1]]), (1, 0))
    entries = []
    for k, (word, toks) in enumerate(zip(words[:-1], word_tokens[:-1], strict=True)):
        a, b = int(boundaries[k]), int(boundaries[k + 1])
        if b > len(jump_times) - 1 or a >= len(jump_times):
            break
        probability = float(np.mean(probabilities[a:b])) if a < b <= len(probabilities) else 0.0
        entries.append({"word": word, "tokens": toks, "first": a, "last": b,
                        "start": float(jump_times[a]), "end": float(jump_times[b]), "probability": probability})
    _merge_punctuation(entries)
    _truncate_long_words(entries)
    out = []
    for e in entries:
        if not e["word"] or e["last"] <= len(prefix):
            continue  # punctuation merged away, or a word of the prefix
        text = e["word"]
        if e["first"] < len(prefix):
            # A word the decoder continued past the prefix ("flour" + "-fatten"): only its new
            # part, and nothing if that is punctuation alone (a comma after a final word).
            text = tokenizer.decode(text_tokens[len(prefix):e["last"]])
            if not any(ch.isalnum() for ch in text):
                continue
        if "\ufffd" in text:
            continue  # incomplete bytes: half a character
        out.append(Word(text, e["start"], max(e["end"], e["start"]), e["probability"]))
    return tuple(out)


SHORTFALL_S = 0.4
"""Speech after a closing decode's last word beyond which the window is decoded again
(``DecodeOptions.speech_end_s``)."""


def _last_word_end_s(tokenizer: Any, prefix: list[int], tokens: list[int], alignment: Any) -> float:
    """Where a decode's last new word ends in its window (0 with none)."""
    if not tokens or alignment is None:
        return 0.0
    words = _timed_words(tokenizer, prefix, tokens, alignment)
    return words[-1].end_s if words else 0.0


def _stops_short(it: _Item) -> bool:
    """Whether a decode's words end ``SHORTFALL_S`` or more before the speech of its window does."""
    speech_end_s = it.request.options.speech_end_s
    if speech_end_s is None or not it.tokens or it.alignment is None:
        return False
    return _last_word_end_s(it.tokenizer, it.prefix, it.tokens, it.alignment) < speech_end_s - SHORTFALL_S


def _anomalous(words: Sequence[Word]) -> bool:
    """faster-whisper's hallucination test (``hallucination_silence_threshold``, after openai/whisper).

    Each word scores 1 for a probability under 0.15, up to 2 for lasting under 133 ms and its
    excess over 2 s; the first eight words with letters in them are anomalous at 3 in all, or
    when nearly every one of them is.
    """
    spoken = [w for w in words if any(ch.isalnum() for ch in w.text)][:8]
    if not spoken:
        return False
    score = 0.0
    for w in spoken:
        duration = w.end_s - w.start_s
        score += (w.probability < 0.15) + max(0.0, 0.133 - duration) * 15 + max(0.0, duration - 2.0)
    return score >= ANOMALY_SCORE or score + 0.01 >= len(spoken)


def _merge_punctuation(entries: list[dict[str, Any]]) -> None:
    """Attach opening punctuation to the next word and closing punctuation to the previous one."""
    for i in range(len(entries) - 2, -1, -1):
        previous, following = entries[i], entries[i + 1]
        if previous["word"].startswith(" ") and previous["word"].strip() in _PREPEND_PUNCTUATION \
                and previous["word"].strip():
            following["word"] = previous["word"] + following["word"].lstrip()
            following["first"] = previous["first"]
            following["start"] = min(previous["start"], following["start"])
            previous["word"] = ""
    last = None
    for e in entries:
        if not e["word"]:
            continue
        if last is not None and not last["word"].endswith(" ") and e["word"] in _APPEND_PUNCTUATION:
            last["word"] += e["word"]
            last["last"] = e["last"]
            e["word"] = ""
            continue
        last = e


def _truncate_long_words(entries: list[dict[str, Any]]) -> None:
    """Whisper's word-timing fix at sentence boundaries: no word there longer than twice the median."""
    durations = np.array([e["end"] - e["start"] for e in entries if e["word"]])
    durations = durations[durations.nonzero()]
    if not len(durations):
        return
    max_duration = 2 * min(0.7, float(np.median(durations)))
    for i in range(1, len(entries)):
        e, previous = entries[i], entries[i - 1]
        if e["word"] and e["end"] - e["start"] > max_duration and previous["word"].rstrip().endswith(
                tuple(_SENTENCE_MARKS)):
            e["start"] = e["end"] - max_duration
