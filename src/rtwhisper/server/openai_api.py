"""OpenAI-compatible audio endpoints, so the official ``openai`` client works unchanged.

``POST /v1/audio/transcriptions`` and ``POST /v1/audio/translations`` take the same
multipart fields as OpenAI's API (``file``, ``model``, ``language``, ``prompt``,
``response_format``, ``temperature``, ``timestamp_granularities[]``) and answer in its
response formats: ``json``, ``text``, ``srt``, ``vtt`` and ``verbose_json``.

``model`` must be ``whisper-1`` (what OpenAI's examples send) or the name of the model
this server loaded; both mean that model. ``temperature`` is accepted and ignored:
rtwhisper decodes deterministically (see :mod:`rtwhisper.engine`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import FastAPI, File, Form, HTTPException, UploadFile
from fastapi.responses import PlainTextResponse, Response

from ..engine import DecodeOptions, FileTranscript
from ..subtitles import cues_from_words, to_srt, to_vtt
from .routes import decode_upload, transcribe_upload
from .state import ServerState

ResponseFormat = Literal["json", "text", "srt", "vtt", "verbose_json"]
MODEL_ALIASES = ("whisper-1",)


def add_openai_routes(app: FastAPI, state: ServerState) -> None:
    """Register both endpoints on ``app`` (the key, if any, was checked before the body was read)."""

    async def handle(task: str, file: UploadFile, model: str, language: str | None,
                     prompt: str | None, response_format: ResponseFormat,
                     granularities: list[str] | None) -> Response | dict[str, Any]:
        accepted = (*MODEL_ALIASES, state.config.resolved_model_name)
        if model not in accepted:
            raise HTTPException(400, f"model {model!r} is not served here; use one of: {', '.join(accepted)}")
        bad = sorted(set(granularities or ()) - {"word", "segment"})
        if bad:
            raise HTTPException(400, f"timestamp_granularities must be word and/or segment, got {', '.join(bad)}")
        endpoint = "/v1/audio/translations" if task == "translate" else "/v1/audio/transcriptions"
        samples = await decode_upload(state, file, endpoint)
        options = DecodeOptions(language=language or None, task=task, beam_size=5,  # type: ignore[arg-type]
                                prompt=prompt or None)
        result = await transcribe_upload(state, samples, options, endpoint)
        return render(result, task, response_format, words="word" in (granularities or ()))

    @app.post("/v1/audio/transcriptions", summary="OpenAI-compatible transcription", tags=["openai"])
    async def transcriptions(
        file: Annotated[UploadFile, File()],
        model: Annotated[str, Form()],
        language: Annotated[str | None, Form()] = None,
        prompt: Annotated[str | None, Form()] = None,
        response_format: Annotated[ResponseFormat, Form()] = "json",
        temperature: Annotated[float, Form(ge=0.0, le=1.0)] = 0.0,
        timestamp_granularities: Annotated[list[str] | None, Form(alias="timestamp_granularities[]")] = None,
    ) -> Any:
        del temperature
        return await handle("transcribe", file, model, language, prompt, response_format,
                            timestamp_granularities)

    @app.post("/v1/audio/translations", summary="OpenAI-compatible translation to English", tags=["openai"])
    async def translations(
        file: Annotated[UploadFile, File()],
        model: Annotated[str, Form()],
        prompt: Annotated[str | None, Form()] = None,
        response_format: Annotated[ResponseFormat, Form()] = "json",
        temperature: Annotated[float, Form(ge=0.0, le=1.0)] = 0.0,
    ) -> Any:
        del temperature
        return await handle("translate", file, model, None, prompt, response_format, None)


def render(result: FileTranscript, task: str, response_format: str, *, words: bool) -> Response | dict[str, Any]:
    """A transcript in one of OpenAI's response formats."""
    if response_format == "text":
        return PlainTextResponse(result.text + "\n")
    if response_format in ("srt", "vtt"):
        cues = cues_from_words(result.words)
        return PlainTextResponse(to_srt(cues) if response_format == "srt" else to_vtt(cues))
    if response_format == "json":
        return {"text": result.text}
    body: dict[str, Any] = {
        "task": task,
        "language": result.language,
        "duration": round(result.duration_s, 3),
        "text": result.text,
        "segments": [
            {"id": seg.segment_id, "seek": score.seek, "start": round(seg.start_s, 3), "end": round(seg.end_s, 3),
             "text": seg.text, "tokens": list(score.tokens), "temperature": score.temperature,
             "avg_logprob": round(score.avg_logprob, 4), "compression_ratio": round(score.compression_ratio, 4),
             "no_speech_prob": round(score.no_speech_prob, 4)}
            for seg, score in zip(result.segments, result.scores, strict=True)
        ],
    }
    if words:
        body["words"] = [{"word": w.text.strip(), "start": round(w.start_s, 3), "end": round(w.end_s, 3)}
                         for w in result.words]
    return body
