"""The native HTTP routes: the browser page, health, and the guide's ``POST /transcribe``; error shapes."""

from __future__ import annotations

import asyncio
from importlib import resources
from typing import Annotated, Any

from fastapi import FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response

from .. import __version__
from ..engine import DecodeOptions, FileTranscript
from ..errors import AudioFormatError, RtWhisperError
from .http import http_error_body, read_upload
from .metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from .state import ServerState


def add_error_handlers(app: FastAPI) -> None:
    """Every HTTP error in one shape (:func:`~rtwhisper.server.http.http_error_body`)."""

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse(http_error_body(exc.status_code, str(exc.detail)), status_code=exc.status_code,
                            headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors())
        return JSONResponse(http_error_body(422, f"invalid request: {problems}"), status_code=422)

    @app.exception_handler(AudioFormatError)
    async def bad_audio(_: Request, exc: AudioFormatError) -> JSONResponse:
        return JSONResponse(http_error_body(400, str(exc), "bad_audio"), status_code=400)

    @app.exception_handler(RtWhisperError)
    async def bad_request(_: Request, exc: RtWhisperError) -> JSONResponse:
        return JSONResponse(http_error_body(400, str(exc)), status_code=400)


async def decode_upload(state: ServerState, upload: UploadFile, endpoint: str) -> Any:
    """An upload as 16 kHz float32, within the server's duration and concurrency limits."""
    try:
        return await read_upload(upload, max_seconds=state.config.max_upload_s, slots=state.upload_slots)
    except HTTPException as exc:
        state.metrics.uploads.labels(endpoint, str(exc.status_code)).inc()
        raise
    except AudioFormatError:
        state.metrics.uploads.labels(endpoint, "400").inc()
        raise


async def transcribe_upload(state: ServerState, audio: Any, options: DecodeOptions, endpoint: str) -> FileTranscript:
    """Whole-file recognition on the upload worker (an English-only model asked to translate is a 400)."""
    loop = asyncio.get_running_loop()
    try:
        result: FileTranscript = await loop.run_in_executor(state.file_pool, state.engine.transcribe_file, audio,
                                                            options)
    except RtWhisperError:
        state.metrics.uploads.labels(endpoint, "400").inc()
        raise
    state.uploads += 1
    state.metrics.uploads.labels(endpoint, "200").inc()
    state.metrics.upload_audio_s.inc(result.duration_s)
    return result


def add_routes(app: FastAPI, state: ServerState) -> None:
    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(_static("index.html"))

    @app.get("/static/capture-worklet.js", include_in_schema=False)
    async def worklet() -> Response:
        return Response(_static("capture-worklet.js"), media_type="text/javascript")

    @app.get("/health", summary="Liveness and what this server runs")
    async def health() -> dict[str, Any]:
        config = state.config
        stats = state.scheduler.stats()
        return {
            "status": "ok", "version": __version__, "model": config.resolved_model_name,
            "device": state.engine.device, "compute_type": state.engine.compute_type,
            "cuda_fallback": state.engine.fallback_reason, "workers": state.scheduler.workers,
            "decode_ahead": state.scheduler.decode_ahead, "stream_cpu": state.scheduler.stream_cpu,
            "cpu_threads": state.engine.cpu_threads,
            "cpu_layout": None if state.cpu_layout is None else {
                "source": state.cpu_layout.source,
                "probe_s": {k: round(v, 3) for k, v in state.cpu_layout.probe_s.items()},
                "update_s": None if state.cpu_layout.update_s is None else round(state.cpu_layout.update_s, 3),
                "real_time": state.cpu_layout.real_time},
            "multilingual": state.engine.multilingual, "preset": config.preset,
            "connections": state.connections, "max_connections": config.max_connections,
            "streams": stats.streams, "load": round(stats.load, 3), "delay_s": round(stats.delay_s, 3),
            "demand": round(stats.demand, 3),
            "api_key_required": config.api_key is not None,
        }

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def metrics() -> Response:
        return Response(state.metrics.render(), media_type=METRICS_CONTENT_TYPE)

    @app.post("/transcribe", summary="Transcribe an uploaded file (the guide's HTTP API)")
    async def transcribe(
        audio: Annotated[UploadFile, File(description="the recording: any format ffmpeg decodes")],
        language: Annotated[str | None, Form(description="language code such as en or ko; default: detect")] = None,
        task: Annotated[str, Form(description="transcribe or translate (to English)")] = "transcribe",
        initial_prompt: Annotated[str | None, Form()] = None,
        beam_size: Annotated[int, Form(ge=1, le=20)] = 5,
    ) -> dict[str, Any]:
        if task not in ("transcribe", "translate"):
            raise HTTPException(400, f"task must be transcribe or translate, got {task!r}")
        samples = await decode_upload(state, audio, "/transcribe")
        options = DecodeOptions(language=language or None, task=task,  # type: ignore[arg-type]
                                beam_size=beam_size, prompt=initial_prompt or None)
        result = await transcribe_upload(state, samples, options, "/transcribe")
        return {
            "text": result.text,
            "language": result.language,
            "duration_s": round(result.duration_s, 3),
            "segments": [{k: v for k, v in seg.to_dict().items() if k not in ("type", "is_final", "sequence")}
                         for seg in result.segments],
            "words": [w for seg in result.segments for w in seg.to_dict()["words"]],  # type: ignore[attr-defined]
        }


def _static(name: str) -> str:
    return resources.files("rtwhisper.server").joinpath("static", name).read_text(encoding="utf-8")
