"""The ASGI app: WebSocket streaming, the HTTP API and the browser page on one port.

Built on FastAPI/Starlette and served by uvicorn (no hand-rolled HTTP or WebSocket
framing). One model is loaded per process and shared by every connection; all engine
work runs in worker threads, never on the event loop, so a long recognition never stalls
another client's frames. Each WebSocket is a :class:`~rtwhisper.server.protocol.StreamSession`
(sans-I/O) driven by two coroutines: one reads frames, one feeds the processor and runs
recognition whenever new audio has arrived and the previous run has finished (so a fast
sender never queues more than one recognition per stream: its audio waits, and the lag
is reported).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import io
import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import resources
from typing import Annotated, Any
from urllib.parse import urlsplit

import numpy as np
from fastapi import FastAPI, File, Form, HTTPException, Request, UploadFile, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.websockets import WebSocketDisconnect, WebSocketState

from .. import __version__
from ..engine import DecodeOptions, FasterWhisperEngine, FileTranscript, shared_engine
from ..errors import AudioFormatError, RtWhisperError
from ..models import resolve_model
from ..processor import RealtimeWhisperProcessor
from .config import ServerConfig
from .protocol import StreamSession, error_message

log = logging.getLogger("rtwhisper.server")

# WebSocket close codes (RFC 6455 §7.4.1).
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001  # idle timeout
CLOSE_POLICY = 1008  # too far behind (backlog)
CLOSE_TOO_BIG = 1009  # frame over max_frame_bytes
CLOSE_INTERNAL = 1011
CLOSE_TRY_AGAIN = 1013  # server full

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]]


@dataclass
class ServerState:
    """What the app holds for its lifetime: the model, the worker threads, the counters."""

    config: ServerConfig
    engine: FasterWhisperEngine
    stream_pool: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(1, "rtw-stream"))
    file_pool: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(1, "rtw-file"))
    connections: int = 0

    def make_processor(self, preset: str | None, **overrides: Any) -> RealtimeWhisperProcessor:
        """A processor for one stream on the shared engine (the client's preset, the server's model)."""
        return RealtimeWhisperProcessor.from_preset(preset or self.config.preset, engine=self.engine,
                                                    model_name=self.config.resolved_model_name, **overrides)


def create_app(config: ServerConfig | None = None, *, engine: FasterWhisperEngine | None = None) -> FastAPI:
    """Build the app and load the model (an unknown model fails here, before a port is bound)."""
    config = config or ServerConfig()
    if engine is None:
        engine = shared_engine(resolve_model(config.resolved_model_name), device=config.device,
                               compute_type=config.compute_type, cpu_threads=config.cpu_threads)
    state = ServerState(config, engine)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> Any:
        yield
        state.stream_pool.shutdown(wait=False, cancel_futures=True)
        state.file_pool.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(
        title="rtwhisper", version=__version__, lifespan=lifespan,
        description="Real-time speech recognition with Whisper: WebSocket streaming at `/` (see the docs' "
                    "protocol page), the guide's `POST /transcribe` and an OpenAI-compatible audio API.",
    )
    app.state.rtw = state
    if config.allowed_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(config.allowed_origins),
                           allow_methods=["GET", "POST"], allow_headers=["Authorization", "X-API-Key"])

    _add_http_routes(app, state)
    from .openai_api import add_openai_routes

    add_openai_routes(app, state)

    @app.websocket("/")
    async def stream(websocket: WebSocket) -> None:
        await _serve_stream(websocket, state)

    @app.websocket("/ws")
    async def stream_alias(websocket: WebSocket) -> None:
        await _serve_stream(websocket, state)

    app.add_middleware(UploadLimit, max_bytes=config.max_upload_bytes)
    return app


# -- HTTP --------------------------------------------------------------------------------


def check_api_key(config: ServerConfig, headers: Any, query: Any = None) -> bool:
    """The key from ``Authorization: Bearer``, ``X-API-Key`` or (WebSocket only) ``?api_key=``."""
    if config.api_key is None:
        return True
    given = headers.get("x-api-key")
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        given = auth[7:].strip()
    if given is None and query is not None:
        given = query.get("api_key")
    return given is not None and hmac.compare_digest(given.encode(), config.api_key.encode())


def require_key(state: ServerState, request: Request) -> None:
    if not check_api_key(state.config, request.headers):
        raise HTTPException(401, "missing or wrong API key: send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'")


async def read_upload(upload: UploadFile) -> np.ndarray:
    """Decode an uploaded media file (anything ffmpeg reads) to 16 kHz mono float32."""
    from faster_whisper import decode_audio

    data = await upload.read()
    if not data:
        raise AudioFormatError(f"the uploaded file {upload.filename!r} is empty")
    try:
        audio = await asyncio.to_thread(decode_audio, io.BytesIO(data))
    except Exception as exc:  # PyAV raises many types for undecodable input
        raise AudioFormatError(
            f"cannot decode the uploaded file {upload.filename!r} as audio ({type(exc).__name__}: {exc}); "
            "send a media file ffmpeg reads, such as wav, mp3, flac, ogg, m4a or webm"
        ) from None
    return np.asarray(audio, dtype=np.float32)


async def transcribe_upload(state: ServerState, audio: np.ndarray, options: DecodeOptions) -> FileTranscript:
    # A ConfigError (an English-only model asked to translate) reaches the RtWhisperError handler: 400.
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(state.file_pool, state.engine.transcribe_file, audio, options)


ERROR_CODES = {400: "bad_request", 401: "unauthorized", 404: "not_found", 405: "method_not_allowed",
               413: "too_large", 422: "invalid_request", 500: "internal"}


def http_error_body(status: int, message: str, code: str | None = None) -> dict[str, Any]:
    """One error shape for every HTTP error: OpenAI's (``error.message``, read by its client)
    plus FastAPI's ``detail``, so both kinds of client show the sentence."""
    message = " ".join(message.split())
    return {"error": {"message": message, "type": "invalid_request_error" if status < 500 else "server_error",
                      "code": code or ERROR_CODES.get(status, "error")}, "detail": message}


def _add_http_routes(app: FastAPI, state: ServerState) -> None:
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

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(_static("index.html"))

    @app.get("/static/capture-worklet.js", include_in_schema=False)
    async def worklet() -> Response:
        return Response(_static("capture-worklet.js"), media_type="text/javascript")

    @app.get("/health", summary="Liveness and what this server runs")
    async def health() -> dict[str, Any]:
        config = state.config
        return {
            "status": "ok", "version": __version__, "model": config.resolved_model_name,
            "device": state.engine.device, "compute_type": state.engine.compute_type,
            "multilingual": state.engine.multilingual, "preset": config.preset,
            "connections": state.connections, "max_connections": config.max_connections,
            "api_key_required": config.api_key is not None,
        }

    @app.post("/transcribe", summary="Transcribe an uploaded file (the guide's HTTP API)")
    async def transcribe(
        request: Request,
        audio: Annotated[UploadFile, File(description="the recording: any format ffmpeg decodes")],
        language: Annotated[str | None, Form(description="language code such as en or ko; default: detect")] = None,
        task: Annotated[str, Form(description="transcribe or translate (to English)")] = "transcribe",
        initial_prompt: Annotated[str | None, Form()] = None,
        beam_size: Annotated[int, Form(ge=1, le=20)] = 5,
    ) -> dict[str, Any]:
        require_key(state, request)
        if task not in ("transcribe", "translate"):
            raise HTTPException(400, f"task must be transcribe or translate, got {task!r}")
        samples = await read_upload(audio)
        options = DecodeOptions(language=language or None, task=task,  # type: ignore[arg-type]
                                beam_size=beam_size, prompt=initial_prompt or None)
        result = await transcribe_upload(state, samples, options)
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


# -- WebSocket ---------------------------------------------------------------------------


def origin_allowed(config: ServerConfig, headers: Any) -> bool:
    """Browsers send Origin; other clients (Python, websocat, mobile) usually do not.

    Without a list, only the server's own pages may connect (the Host the browser used),
    which stops any web site a user visits from using a server on their localhost.
    """
    origin = headers.get("origin")
    if origin is None or "*" in config.allowed_origins or origin in config.allowed_origins:
        return True
    return urlsplit(origin).netloc == headers.get("host")


async def _serve_stream(websocket: WebSocket, state: ServerState) -> None:
    config = state.config
    if not check_api_key(config, websocket.headers, websocket.query_params):
        await websocket.close(code=CLOSE_POLICY, reason="missing or wrong API key")  # before accept: HTTP 403
        return
    if not origin_allowed(config, websocket.headers):
        await websocket.close(code=CLOSE_POLICY, reason="origin not allowed")
        return
    await websocket.accept()
    if state.connections >= config.max_connections:
        await _send(websocket, error_message(
            "server_full", f"the server is at its limit of {config.max_connections} streams; try again later"))
        await websocket.close(code=CLOSE_TRY_AGAIN, reason="server full")
        return
    state.connections += 1
    try:
        await _StreamDriver(websocket, state).run()
    finally:
        state.connections -= 1


async def _send(websocket: WebSocket, message: dict[str, Any]) -> None:
    await websocket.send_text(json.dumps(message, ensure_ascii=False))


class _StreamDriver:
    """The I/O around one :class:`StreamSession`: a reader coroutine and a recognition coroutine."""

    def __init__(self, websocket: WebSocket, state: ServerState) -> None:
        self.ws = websocket
        self.state = state
        self.session = StreamSession(state.make_processor)
        self.wake = asyncio.Event()
        self.send_lock = asyncio.Lock()
        self.closed = False

    async def send(self, messages: list[dict[str, Any]]) -> None:
        async with self.send_lock:
            for message in messages:
                if self.closed or self.ws.application_state != WebSocketState.CONNECTED:
                    return
                await _send(self.ws, message)

    async def close(self, code: int, reason: str) -> None:
        async with self.send_lock:
            if not self.closed:
                self.closed = True
                with contextlib.suppress(RuntimeError, WebSocketDisconnect):
                    await self.ws.close(code=code, reason=reason)

    async def run(self) -> None:
        recogniser = asyncio.create_task(self.recognise_loop())
        try:
            await self.read_loop()
        finally:
            if not self.session.ended:
                recogniser.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await recogniser

    async def read_loop(self) -> None:
        config = self.state.config
        while not self.session.ended:
            try:
                message = await asyncio.wait_for(self.ws.receive(), timeout=config.idle_timeout_s)
            except asyncio.TimeoutError:  # an alias of TimeoutError from 3.11; distinct on 3.10
                if self.session.received_bytes:
                    # A client that stopped sending without {"type": "end"} (websocat -n at the
                    # end of its input): its audio is still transcribed to the end, then closed.
                    await self.send([error_message(
                        "idle_timeout", f"no frame for {config.idle_timeout_s:g} s; finishing the stream")])
                    self.session.ended = True
                    self.wake.set()
                    return
                await self.send([error_message("idle_timeout",
                                               f"no frame for {config.idle_timeout_s:g} s; closing")])
                await self.close(CLOSE_GOING_AWAY, "idle timeout")
                return
            except (WebSocketDisconnect, RuntimeError):
                return
            if message["type"] == "websocket.disconnect":
                return
            if message.get("bytes") is not None:
                data: bytes = message["bytes"]
                if len(data) > config.max_frame_bytes:
                    await self.send([error_message(
                        "frame_too_big", f"a frame of {len(data)} bytes is over the limit of "
                        f"{config.max_frame_bytes}; send audio in smaller frames (0.1 s is 6400 bytes)")])
                    await self.close(CLOSE_TOO_BIG, "frame too big")
                    return
                replies = self.session.receive_bytes(data)
            else:
                replies = self.session.receive_text(message.get("text") or "")
            await self.send(replies)
            lag = self.session.lag_message()
            if lag is not None:
                await self.send([lag])
                if lag["lag_s"] > config.max_backlog_s:
                    await self.send([error_message(
                        "backlog", f"{lag['lag_s']:.0f} s of audio waiting, over the limit of "
                        f"{config.max_backlog_s:g} s; send audio no faster than real time")])
                    await self.close(CLOSE_POLICY, "too far behind")
                    return
            self.wake.set()
        # {"type": "end"}: the recogniser flushes and closes; keep the socket until it has.

    async def recognise_loop(self) -> None:
        loop = asyncio.get_running_loop()
        session = self.session
        try:
            while True:
                await self.wake.wait()
                self.wake.clear()
                if session.ended:
                    blocks = session.take_pending()
                    messages = await loop.run_in_executor(self.state.stream_pool, session.finish, blocks)
                    await self.send(messages)
                    await self.close(CLOSE_NORMAL, "end of stream")
                    return
                if not session.has_pending_audio:
                    continue
                blocks = session.take_pending()
                messages = await loop.run_in_executor(self.state.stream_pool, session.recognise, blocks)
                await self.send(messages)
                if session.has_pending_audio or session.ended:
                    self.wake.set()
        except asyncio.CancelledError:
            raise
        except (WebSocketDisconnect, RuntimeError) as exc:
            log.info("stream closed while sending: %s", exc)
        except Exception as exc:  # a bug in recognition must not take the server down
            log.exception("recognition failed")
            await self.send([error_message("internal", f"recognition failed: {type(exc).__name__}: {exc}")])
            await self.close(CLOSE_INTERNAL, "internal error")


# -- upload size limit -------------------------------------------------------------------


class UploadLimit:
    """ASGI middleware: refuse request bodies over ``max_bytes`` with 413, by header or as read."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Any]],
                       send: Callable[[Any], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await self._refuse(send, int(length))
            return
        received = 0
        responded = False

        async def limited_receive() -> Any:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _TooLarge(received, self.max_bytes)
            return message

        async def guarded_send(message: Any) -> None:
            nonlocal responded
            if message["type"] == "http.response.start":
                responded = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except _TooLarge:
            if not responded:
                await self._refuse(send, received)

    async def _refuse(self, send: Callable[[Any], Awaitable[None]], size: int) -> None:
        body = json.dumps(http_error_body(413, str(_TooLarge(size, self.max_bytes).detail))).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


class _TooLarge(HTTPException):
    """Raised from ``receive``; an HTTPException so that FastAPI's body parsing passes it through."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(413, f"the upload is {size} bytes or more, over the limit of {limit} bytes; "
                              "send a shorter recording or raise --max-upload-mb")
