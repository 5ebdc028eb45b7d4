"""``rtwhisper serve``: WebSocket streaming, the HTTP API and a browser page (extra ``[server]``).

* :mod:`.protocol` — the WebSocket protocol as a sans-I/O session (frames in, messages out);
* :mod:`.app` — the ASGI app (FastAPI/Starlette) that drives sessions and serves HTTP;
* :mod:`.openai_api` — the OpenAI-compatible audio endpoints;
* :mod:`.config` — the server's settings.
"""

from .config import ServerConfig

__all__ = ["ServerConfig", "create_app", "serve"]


def create_app(*args, **kwargs):  # type: ignore[no-untyped-def]
    """Build the ASGI app (imports FastAPI only when called); see :func:`rtwhisper.server.app.create_app`."""
    from .app import create_app as _create_app

    return _create_app(*args, **kwargs)


def serve(config: ServerConfig) -> None:
    """Load the model, bind ``config.host:config.port`` and serve until interrupted."""
    import uvicorn

    from .app import create_app as _create_app

    _configure_logging()
    app = _create_app(config)
    uvicorn.run(app, host=config.host, port=config.port, ws_max_size=4 * config.max_frame_bytes,
                ws="websockets-sansio", log_level="info", timeout_graceful_shutdown=5)


def _configure_logging() -> None:
    """rtwhisper's own log lines (stream start/end, warnings) on stderr; ``RTWHISPER_LOG_LEVEL`` sets the level."""
    import logging
    import os

    logger = logging.getLogger("rtwhisper")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(os.environ.get("RTWHISPER_LOG_LEVEL", "INFO").upper())
    logger.propagate = False
