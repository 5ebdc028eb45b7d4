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
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

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
from .layout import default_cpu_threads, prime_cpu_threads
from .window import (
    CLOSING_MIN_S,
    CLOSING_SILENCE_S,
    COMPRESSION_RATIO_THRESHOLD,
    FALLBACK_BEAM_SIZE,
    FORCED_PREFIX_WORDS,
    FRAME_BUCKET,
    FRAMES_PER_SECOND,
    FULL_INPUT_FRAMES,
    LOG_PROB_THRESHOLD,
    MAX_PROMPT_TOKENS,
    NO_SPEECH_THRESHOLD,
    _bucketed,
    _compression_ratio,
    _Conditioning,
    _even,
    _hotwords,
    _Item,
    _Language,
    _rank,
    _stops_short,
    silence_level,
)
from .words import (
    _anomalous,
    _forced_start,
    _last_word_end_s,
    _loops_back,
    _timed_words,
)

log = logging.getLogger("rtwhisper.engine")

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
        model = self._load_on_gpu(model_path, device, compute_type, num_workers) if wanted == "cuda" else None
        if model is None:
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

    def _load_on_gpu(self, model_path: str, device: str, compute_type: str, num_workers: int) -> Any:
        """The model on the GPU, or ``None`` where ``device="auto"`` falls back to the CPU (why, in
        ``fallback_reason``); ``device="cuda"`` that cannot run is a :class:`CudaUnavailableError`."""
        from faster_whisper import WhisperModel

        preload_cuda_libraries()
        try:
            model = WhisperModel(model_path, device="cuda", compute_type=resolve_compute_type(compute_type, "cuda"),
                                 num_workers=num_workers)
            probe_cuda(model.model, model.feature_extractor.mel_filters.shape[0])
        except Exception as exc:
            hint = cuda_error_hint(exc)
            if device == "cuda":
                raise CudaUnavailableError(f"CUDA cannot run {model_path!r}: {hint}") from exc
            self.fallback_reason = hint
            log.warning("rtwhisper: the GPU cannot run the model (%s); running on the CPU", hint)
            return None
        self.device = "cuda"
        return model

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
            initial_prompt=options.prompt or None, hotwords=options.hotwords or None, vad_filter=options.vad)

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
            hot = _hotwords(tokenizer, options.hotwords)
            items.append(_Item(i, request, features[i], tokenizer, hot + _bucketed(prompt), prefix,
                               hot + _bucketed(prompt + prefix[:cut]), prefix[cut:], language, probability, detected,
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
