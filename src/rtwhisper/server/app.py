"""The ASGI app: WebSocket streaming, the HTTP API and the browser page on one port (wiring only).

Built on FastAPI/Starlette and served by uvicorn (no hand-rolled HTTP or WebSocket framing).
One model is loaded per process; a :class:`~rtwhisper.scheduling.Scheduler` serves every
stream's windows from it in batches on its own thread, and uploads run on a worker thread, so
the event loop never waits for recognition.

* :mod:`.http` — the guard every request passes (Host, Origin, key, sizes) and upload decoding;
* :mod:`.routes` — the page, ``/health`` and ``POST /transcribe``; :mod:`.openai_api` — ``/v1/audio/*``;
* :mod:`.protocol` — the stream protocol (sans-I/O); :mod:`.deepgram` — Deepgram's live API on it
  (``/v1/listen``); :mod:`.flux` — Deepgram Flux's turn API (``/v2/listen``); :mod:`.openai_realtime`
  — OpenAI's Realtime transcription sessions (``/v1/realtime``); :mod:`.ws` — their WebSocket driver.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from fastapi import FastAPI, WebSocket
from fastapi.middleware.cors import CORSMiddleware

from .. import __version__
from ..engine import WhisperEngine, serving_engine
from ..engine.layout import REAL_TIME_UPDATE_S, default_workers
from ..models import resolve_model
from ..scheduling import Scheduler
from .config import ServerConfig
from .http import Guard
from .openai_api import add_openai_routes
from .routes import add_error_handlers, add_routes
from .state import ServerState
from .ws import serve_stream

log = logging.getLogger("rtwhisper.server")


def create_app(config: ServerConfig | None = None, *, engine: WhisperEngine | None = None) -> FastAPI:
    """Build the app and load the model (an unknown model fails here, before a port is bound)."""
    config = config or ServerConfig()
    layout = None
    if engine is None:
        # Neither workers nor threads given: how decodes share this CPU is measured (once per
        # machine and model).
        engine, layout = serving_engine(resolve_model(config.resolved_model_name), device=config.device,
                                        compute_type=config.compute_type, workers=config.workers,
                                        cpu_threads=config.cpu_threads)
        workers = engine.num_workers
    else:
        workers = config.workers or default_workers(config.device)
    if layout is not None and layout.real_time is False:
        log.warning("rtwhisper: one %s update takes %.2f s on this CPU (at most %.1f s keeps finals about "
                    "a second after the words): expect them more than a second late; a smaller model keeps up "
                    "(tiny.en for English)", config.resolved_model_name, layout.update_s, REAL_TIME_UPDATE_S)
    scheduler = Scheduler(engine, max_batch=config.max_batch, batch_wait_s=config.batch_wait_s,
                          max_delay_s=config.max_delay_s, max_streams=config.max_connections,
                          workers=workers, decode_ahead=config.decode_ahead, stream_cpu=config.stream_cpu)
    state = ServerState(config, engine, scheduler, upload_slots=asyncio.Semaphore(config.max_concurrent_uploads),
                        cpu_layout=layout)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> Any:
        yield
        state.close()

    app = FastAPI(
        title="rtwhisper", version=__version__, lifespan=lifespan,
        description="Real-time speech recognition with Whisper: WebSocket streaming at `/` (see the docs' "
                    "protocol page), the guide's `POST /transcribe` and an OpenAI-compatible audio API.",
    )
    app.state.rtw = state
    if config.allowed_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(config.allowed_origins),
                           allow_methods=["GET", "POST"], allow_headers=["Authorization", "X-API-Key"])
    add_error_handlers(app)
    add_routes(app, state)
    add_openai_routes(app, state)

    _add_stream_routes(app, state)
    app.add_middleware(Guard, config=config)
    return app


def _add_stream_routes(app: FastAPI, state: ServerState) -> None:
    """The WebSocket streams: native (``/``, ``/ws``), Deepgram (``/v1/listen``), Flux (``/v2/listen``)
    and OpenAI Realtime (``/v1/realtime``), one session driver for all."""

    @app.websocket("/")
    async def stream(websocket: WebSocket) -> None:
        await serve_stream(websocket, state)

    @app.websocket("/ws")
    async def stream_alias(websocket: WebSocket) -> None:
        await serve_stream(websocket, state)

    @app.websocket("/v1/listen")
    async def deepgram_listen(websocket: WebSocket) -> None:
        await serve_stream(websocket, state, "deepgram")

    @app.websocket("/v2/listen")
    async def deepgram_flux(websocket: WebSocket) -> None:
        await serve_stream(websocket, state, "deepgram-flux")

    @app.websocket("/v1/realtime")
    async def openai_realtime(websocket: WebSocket) -> None:
        await serve_stream(websocket, state, "openai-realtime")
