"""What every HTTP and WebSocket request goes through: hosts, origins, the API key, upload limits, errors.

:class:`Guard` is one ASGI middleware in front of the whole app, so its checks come before
FastAPI reads a request body: an unauthenticated 80 MiB upload is refused from its headers,
not parsed first; a request for a Host the server does not serve (DNS rebinding: a web page
whose domain now resolves to 127.0.0.1) is refused whatever its Origin says; a browser's
cross-site POST is refused unless it carries the key.
"""

from __future__ import annotations

import asyncio
import hmac
import io
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import IO, Any
from urllib.parse import parse_qs, urlsplit

import numpy as np
from fastapi import HTTPException, UploadFile

from ..errors import AudioFormatError
from ..sources.base import SourceError
from .config import ServerConfig

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Any]]
SendFn = Callable[[Any], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, SendFn], Awaitable[None]]

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]", "::1")
OPEN_PATHS = ("/", "/health", "/static/", "/docs", "/openapi.json", "/redoc", "/metrics")
"""Paths that need no key: the page and its script, health, metrics and the API description."""

ERROR_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 413: "too_large", 422: "invalid_request", 429: "busy",
               500: "internal", 503: "busy"}


def http_error_body(status: int, message: str, code: str | None = None) -> dict[str, Any]:
    """One error shape for every HTTP error: OpenAI's (``error.message``, read by its client)
    plus FastAPI's ``detail``, so both kinds of client show the sentence."""
    message = " ".join(message.split())
    return {"error": {"message": message, "type": "invalid_request_error" if status < 500 else "server_error",
                      "code": code or ERROR_CODES.get(status, "error")}, "detail": message}


def api_key_given(headers: Any, query_string: bytes = b"") -> str | None:
    """The key from ``Authorization: Bearer`` (or ``Token``, as Deepgram's clients send it),
    ``X-API-Key`` or (WebSocket only) ``?api_key=``."""
    given = headers.get("x-api-key")
    auth = headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() in ("bearer", "token") and value.strip():
        given = value.strip()
    if given is None and query_string:
        values = parse_qs(query_string.decode("latin-1")).get("api_key")
        given = values[0] if values else None
    return given


def key_ok(config: ServerConfig, given: str | None) -> bool:
    if config.api_key is None:
        return True
    return given is not None and hmac.compare_digest(given.encode(), config.api_key.encode())


def allowed_hosts(config: ServerConfig) -> tuple[str, ...] | None:
    """Host names this server answers to (``None``: any). Bound to loopback: the loopback names."""
    if config.allowed_hosts:
        return None if "*" in config.allowed_hosts else config.allowed_hosts
    if config.host in ("127.0.0.1", "localhost", "::1"):
        return LOOPBACK_HOSTS
    return None


def _host_name(host: str) -> str:
    if host.startswith("["):  # [::1]:8765
        return host[: host.find("]") + 1]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def host_ok(config: ServerConfig, host: str | None) -> bool:
    hosts = allowed_hosts(config)
    return hosts is None or (host is not None and _host_name(host).lower() in hosts)


def origin_ok(config: ServerConfig, origin: str | None, host: str | None) -> bool:
    """Browsers send Origin; other clients (Python, websocat, mobile) usually do not.

    Without a list, only the server's own pages may connect (the Host the browser used, which
    the Host check has already vetted), which stops any web site a user visits from using a
    server on their machine.
    """
    if origin is None or "*" in config.allowed_origins or origin in config.allowed_origins:
        return True
    return urlsplit(origin).netloc == host


class Guard:
    """ASGI middleware: Host allow-list, Origin, API key and upload size, before any body is read."""

    def __init__(self, app: ASGIApp, config: ServerConfig) -> None:
        self.app = app
        self.config = config

    async def __call__(self, scope: Scope, receive: Receive, send: SendFn) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers") or []}
        host, origin = headers.get("host"), headers.get("origin")
        path = scope.get("path", "/")
        websocket = scope["type"] == "websocket"
        if not host_ok(self.config, host):
            await self._refuse(scope, receive, send, 403, f"host {host!r} is not served here; this server answers "
                                                          f"to {', '.join(allowed_hosts(self.config) or ())} "
                                                          "(rtwhisper serve --allow-host NAME)", "forbidden_host")
            return
        if not origin_ok(self.config, origin, host):
            await self._refuse(scope, receive, send, 403, f"origin {origin!r} not allowed (rtwhisper serve "
                                                          "--allow-origin ORIGIN)", "forbidden_origin")
            return
        protected = websocket or not (path in OPEN_PATHS or path.startswith("/static/"))
        given = api_key_given(headers, scope.get("query_string", b"") if websocket else b"")
        if protected and not key_ok(self.config, given):
            await self._refuse(scope, receive, send, 401, "missing or wrong API key: send 'Authorization: Bearer "
                                                          "KEY' or 'X-API-Key: KEY'", "unauthorized")
            return
        if websocket:
            await self.app(scope, receive, send)
            return
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.config.max_upload_bytes:
            await self._refuse(scope, receive, send, 413, _too_large(int(length), self.config.max_upload_bytes),
                               "too_large")
            return
        await self._limited(scope, receive, send)

    async def _limited(self, scope: Scope, receive: Receive, send: SendFn) -> None:
        """Pass the request on, counting body bytes as they arrive (a chunked upload has no length)."""
        limit = self.config.max_upload_bytes
        received = 0
        responded = False

        body_done = False
        stall_s = self.config.idle_timeout_s

        async def limited_receive() -> Any:
            nonlocal received, body_done
            if body_done:  # after the body: waiting for a disconnect is not a stall
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), timeout=stall_s)
            except TimeoutError:
                raise BodyStalled(received, stall_s) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                body_done = not message.get("more_body", False)
                if received > limit:
                    raise _TooLarge(received, limit)
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
                await _respond(send, 413, _too_large(received, limit), "too_large")
        except BodyStalled as exc:
            if not responded:
                await _respond(send, 408, str(exc.detail), "body_stalled")

    async def _refuse(self, scope: Scope, receive: Receive, send: SendFn, status: int, message: str,
                      code: str) -> None:
        if scope["type"] == "websocket":
            await receive()  # websocket.connect
            if "websocket.http.response" in (scope.get("extensions") or {}):
                # Refused in the handshake, with the reason in the HTTP response's body.
                await send({"type": "websocket.http.response.start", "status": status,
                            "headers": [(b"content-type", b"application/json")]})
                await send({"type": "websocket.http.response.body",
                            "body": json.dumps(http_error_body(status, message, code)).encode()})
            else:  # a server without the extension answers a close before accept with 403
                await send({"type": "websocket.close", "code": 1008, "reason": code})
            return
        await _respond(send, status, message, code)


async def _respond(send: SendFn, status: int, message: str, code: str) -> None:
    body = json.dumps(http_error_body(status, message, code)).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


def _too_large(size: int, limit: int) -> str:
    return (f"the upload is {size} bytes or more, over the limit of {limit} bytes; "
            "send a shorter recording or raise --max-upload-mb")


class _TooLarge(HTTPException):
    """Raised from ``receive``; an HTTPException so that FastAPI's body parsing passes it through."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(413, _too_large(size, limit))


class BodyStalled(HTTPException):
    """A request body stopped arriving (shorter than its ``Content-Length``, or a client that went quiet)."""

    def __init__(self, received: int, stall_s: float) -> None:
        super().__init__(408, f"the request body stopped arriving after {received} bytes ({stall_s:g} s without "
                              "more; shorter than its Content-Length?); send the whole body")


class UploadTooLong(HTTPException):
    """The decoded audio of an upload runs past ``--max-upload-s``."""

    def __init__(self, limit_s: float) -> None:
        super().__init__(413, f"the upload holds more than {limit_s:g} s of audio, the limit of this server; "
                              "send a shorter recording or raise --max-upload-s")


async def read_upload(upload: UploadFile, *, max_seconds: float, slots: asyncio.Semaphore) -> np.ndarray:
    """Decode an uploaded media file (anything ffmpeg reads) to 16 kHz mono float32, in bounded memory.

    The upload stays where the form parser put it (Starlette spools all but its first megabyte to
    disk) until a decode slot is free: at most as many uploads decode, and hold their audio, at
    once as ``slots`` allows (ten concurrent 90 MB uploads, read whole while they waited, added
    440 MB). Decoding reads the file in blocks and stops as soon as the audio passes
    ``max_seconds`` (a 641 KB FLAC can hold an hour of silence: the limit on bytes does not bound
    the samples).
    """
    async with slots:
        return await asyncio.to_thread(_decode, upload.file, upload.filename or "upload", max_seconds)


def _decode(file: IO[bytes], name: str, max_seconds: float) -> np.ndarray:
    from ..sources import FileSource

    file.seek(0, io.SEEK_END)
    if not file.tell():
        raise AudioFormatError(f"the uploaded file {name!r} is empty")
    file.seek(0)
    limit = int(max_seconds * 16000)
    blocks: list[np.ndarray] = []
    total = 0
    try:
        for block in FileSource(file, name=name, block_s=1.0):
            total += len(block.samples)
            if total > limit:
                raise UploadTooLong(max_seconds)
            blocks.append(block.samples)
    except SourceError as exc:
        raise AudioFormatError(
            f"cannot decode the uploaded file {name!r} as audio ({exc}); "
            "send a media file ffmpeg reads, such as wav, mp3, flac, ogg, m4a or webm") from None
    return np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.float32)
