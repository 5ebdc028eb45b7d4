"""``rtwhisper serve``: WebSocket streaming, the HTTP API and a browser page (extra ``[server]``).

* :mod:`.protocol` — the WebSocket protocol as a sans-I/O session (frames in, messages out);
* :mod:`.app` — the ASGI app (FastAPI/Starlette) that drives sessions and serves HTTP;
* :mod:`.openai_api` — the OpenAI-compatible audio endpoints;
* :mod:`.config` — the server's settings.
"""

import copy
import logging
import re
from typing import Any

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
    uvicorn.run(app, host=config.host, port=config.port, ws_max_size=config.max_frame_bytes + WS_HEADROOM_BYTES,
                ws="websockets-sansio", log_level="info", timeout_graceful_shutdown=5, log_config=_log_config())


WS_HEADROOM_BYTES = 1 << 20
"""How far past ``max_frame_bytes`` a WebSocket frame is still read, so that the stream's own
``frame_too_big`` error (in the client's protocol's shape) says what the limit is; a larger frame
is refused by the WebSocket layer itself (close 1009, "message too big") before it is read whole."""


class RedactKeys:
    """A logging filter: ``api_key=…`` in a logged URL (uvicorn's access and WebSocket lines) becomes
    ``api_key=***``. Browsers and Deepgram's clients may pass the key in the query string; a key
    in a log file is a leaked key."""

    PATTERN = re.compile(r"(api_key=)[^&\s\"']+", re.IGNORECASE)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            args = record.args if isinstance(record.args, tuple) else (record.args,)
            record.args = tuple(self.PATTERN.sub(r"\1***", a) if isinstance(a, str) else a for a in args)
        if isinstance(record.msg, str) and "api_key=" in record.msg.lower():
            record.msg = self.PATTERN.sub(r"\1***", record.msg)
        return True


def _log_config() -> dict[str, Any]:
    """uvicorn's own logging setup, every handler through :class:`RedactKeys`."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["redact_keys"] = {"()": RedactKeys}
    for handler in config.get("handlers", {}).values():
        handler.setdefault("filters", []).append("redact_keys")
    return config


def _configure_logging() -> None:
    """rtwhisper's own log lines (stream start/end, warnings) on stderr; ``RTWHISPER_LOG_LEVEL`` sets the level."""
    import os

    logger = logging.getLogger("rtwhisper")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(os.environ.get("RTWHISPER_LOG_LEVEL", "INFO").upper())
    logger.propagate = False
