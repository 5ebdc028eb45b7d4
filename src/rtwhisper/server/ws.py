"""The WebSocket driver: the socket and the scheduler on one side, a :class:`StreamSession` on the other.

Thin by design: every decision is the session's. The driver feeds it frames, the time and the
recogniser's events, and performs the actions it returns. Recognition runs on the scheduler's
thread; its events come back through ``call_soon_threadsafe`` into a queue that a second
coroutine pumps into the session, so the session is only ever touched on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from typing import Any

from fastapi import WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketState

from ..errors import RtWhisperError
from ..events import TranscriptEvent
from ..scheduling import Overloaded, StreamHandle, StreamStopped
from .deepgram import DeepgramSession
from .flux import FluxSession
from .openai_realtime import RealtimeSession
from .protocol import (
    Action,
    Close,
    CloseReason,
    Feed,
    Finish,
    Flush,
    Open,
    Retune,
    Send,
    SessionLimits,
    SessionState,
    StreamSession,
)
from .state import ServerState

log = logging.getLogger("rtwhisper.server")

SESSIONS: dict[str, type[DeepgramSession] | type[FluxSession] | type[RealtimeSession]] = {
    "deepgram": DeepgramSession, "deepgram-flux": FluxSession, "openai-realtime": RealtimeSession}
"""The other protocols, by name: the same session in another API's shape, set up from the query string."""
_ids = itertools.count(1)


def session_limits(state: ServerState) -> SessionLimits:
    config = state.config
    return SessionLimits(max_frame_bytes=config.max_frame_bytes, idle_timeout_s=config.idle_timeout_s,
                         stall_flush_s=config.stall_flush_s, max_backlog_s=config.max_backlog_s)


async def serve_stream(websocket: WebSocket, state: ServerState, protocol: str = "native") -> None:
    """Accept one WebSocket stream (the key, Host and Origin were checked before the handshake).

    ``protocol``: ``"native"`` (rtwhisper's, the guide's clients), ``"deepgram"`` (``/v1/listen``,
    settings from the query string), ``"deepgram-flux"`` (``/v2/listen``, turns) or
    ``"openai-realtime"`` (``/v1/realtime?intent=transcription``).
    """
    await websocket.accept()
    config = state.config
    session: StreamSession
    kind = SESSIONS.get(protocol)
    if kind is None:
        session = StreamSession(session_limits(state))
    else:
        try:
            session = kind.from_query(websocket.scope.get("query_string", b"").decode("latin-1"),
                                      limits=session_limits(state), model_name=config.resolved_model_name)
        except RtWhisperError as exc:  # parameters it cannot honour: said in its own shape, then closed
            await _refused(websocket, kind(session_limits(state)).refuse(CloseReason.BAD_PARAMETERS, str(exc)))
            return
    if state.connections >= config.max_connections:
        state.refused += 1
        state.metrics.refusals.labels("server_full").inc()
        await _refused(websocket, session.refuse(
            CloseReason.SERVER_FULL, f"the server is at its limit of {config.max_connections} streams; "
                                     "try again later"))
        return
    state.connections += 1
    state.metrics.streams.inc()
    try:
        await StreamDriver(websocket, state, protocol, session).run()
    finally:
        state.connections -= 1
        state.metrics.streams.dec()


async def _refused(websocket: WebSocket, actions: list[Action]) -> None:
    """Carry out a session's refusal (its error in the client's API's shape, then the close)."""
    for action in actions:
        if isinstance(action, Send):
            await websocket.send_text(json.dumps(action.message))
        elif isinstance(action, Close):
            await websocket.close(code=action.code, reason=action.reason)


class StreamDriver:
    """Runs one :class:`StreamSession` over one socket."""

    def __init__(self, websocket: WebSocket, state: ServerState, protocol: str, session: StreamSession) -> None:
        self.ws = websocket
        self.state = state
        self.protocol = protocol
        self.id = next(_ids)
        self.session = session
        self.handle: StreamHandle | None = None
        self.inbox: asyncio.Queue[tuple[str, Any, Any]] = asyncio.Queue()
        self.send_lock = asyncio.Lock()
        self.closed = asyncio.Event()
        self.close_code: int | None = None
        self.loop = asyncio.get_running_loop()
        self.metrics = state.metrics
        self.compute_counted_s = 0.0
        self.updates_counted = 0

    async def run(self) -> None:
        log.info("stream %d start protocol=%s client=%s", self.id, self.protocol,
                 getattr(self.ws.client, "host", None))
        await self.perform(self.session.start(self.loop.time()))
        pump = asyncio.create_task(self.pump())
        try:
            await self.read()
            if self.session.state is SessionState.ENDING:
                # The last finals are on their way; the pump closes when they are sent.
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.closed.wait(), timeout=max(60.0, self.state.config.idle_timeout_s))
        finally:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump
            if self.handle is not None:
                self.handle.close()  # a no-op after finish; drops the stream if the client left
            handle = self.handle
            self._count_work()
            self.metrics.closes.labels(str(self.close_code) if self.close_code is not None else "client").inc()
            log.info("stream %d end protocol=%s audio_s=%.1f compute_s=%.2f close=%s", self.id, self.protocol,
                     self.session.received_s, handle.compute_s if handle else 0.0,
                     self.close_code if self.close_code is not None else "client")

    async def read(self) -> None:
        session = self.session
        while session.state in (SessionState.AWAITING_CONFIG, SessionState.STREAMING):
            deadline = session.next_deadline()
            timeout = None if deadline is None else max(0.0, deadline - self.loop.time())
            try:
                message = await asyncio.wait_for(self.ws.receive(), timeout=timeout)
            except asyncio.TimeoutError:  # an alias of TimeoutError from 3.11; distinct on 3.10
                await self.perform(session.tick(self.loop.time()))
                continue
            except (WebSocketDisconnect, RuntimeError):
                session.disconnected()
                return
            if message["type"] == "websocket.disconnect":
                session.disconnected()
                return
            now = self.loop.time()
            if message.get("bytes") is not None:
                actions = session.receive_bytes(message["bytes"], now)
            else:
                actions = session.receive_text(message.get("text") or "", now)
            await self.perform(actions)

    async def pump(self) -> None:
        """Events from the scheduler thread into the session, on the loop."""
        while True:
            kind, payload, progress = await self.inbox.get()
            if kind == "events":
                seconds, flushes_done, pause_s = progress
                self._count_work()
                self.metrics.lag_s.observe(max(0.0, self.session.received_s - seconds))
                self._observe(payload)
                await self.perform(self.session.recognised(payload, seconds, flushes_done, pause_s))
            else:
                await self.perform(self.session.recogniser_closed(payload, progress))
                return

    async def perform(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Send):
                await self.send(action.message)
            elif isinstance(action, Feed):
                if self.handle is not None:
                    self.metrics.audio_s.inc(len(action.samples) / self.session.config.sample_rate)
                    self.handle.feed(action.samples)
            elif isinstance(action, Flush):
                if self.handle is not None:
                    self.handle.flush()
            elif isinstance(action, Finish):
                if self.handle is not None:
                    self.handle.finish()
            elif isinstance(action, Retune):
                if self.handle is not None:  # applied on the scheduler's thread, before the next request
                    self.handle.update_options(**action.changes)
            elif isinstance(action, Open):
                await self.perform(self.open(action))
            elif isinstance(action, Close):
                await self.close(action.code, action.reason)

    def open(self, action: Open) -> list[Action]:
        try:
            processor = self.state.make_processor(action.preset, **action.overrides)
        except RtWhisperError as exc:
            return self.session.open_failed("bad_config", str(exc))
        try:
            self.handle = self.state.scheduler.open(processor, self._on_events, self._on_close)
        except Overloaded as exc:
            self.state.refused += 1
            self.metrics.refusals.labels("overloaded").inc()
            return self.session.refuse(CloseReason.OVERLOADED,
                                       f"no room for another stream now: {exc}; try again later")
        return self.session.opened({
            "model": processor.model_name,
            **processor.options.to_dict(("decode", "window", "commit", "endpoint")),
            **({"replica": self.state.replica} if self.state.replica else {}),
        })

    def _observe(self, events: list[TranscriptEvent]) -> None:
        """A final's latency on the audio clock: audio received past its last word's end, when it is sent."""
        for event in events:
            if event.is_final and event.words:
                self.metrics.final_latency_s.observe(max(0.0, self.session.received_s - event.words[-1].end_s))

    def _count_work(self) -> None:
        if self.handle is not None:
            total = self.handle.compute_s
            self.metrics.compute_s.inc(max(0.0, total - self.compute_counted_s))
            self.compute_counted_s = total
            updates = self.handle.processor.updates
            self.metrics.updates.inc(max(0, updates - self.updates_counted))
            self.updates_counted = updates

    # -- called on the scheduler's thread ---------------------------------------------------------

    def _on_events(self, events: list[TranscriptEvent]) -> None:
        handle = self.handle
        progress = ((handle.processor.heard_until_s, handle.flushes_done, handle.processor.pause_s)
                    if handle is not None else (0.0, 0, None))
        self.loop.call_soon_threadsafe(self.inbox.put_nowait, ("events", events, progress))

    def _on_close(self, reason: StreamStopped | None) -> None:
        fed = self.handle.processor.fed_duration_s if self.handle is not None else 0.0
        self.loop.call_soon_threadsafe(self.inbox.put_nowait, ("closed", reason, fed))

    # -- the socket -------------------------------------------------------------------------------

    async def send(self, message: dict[str, Any]) -> None:
        async with self.send_lock:
            if self.closed.is_set() or self.ws.application_state != WebSocketState.CONNECTED:
                return
            try:
                await self.ws.send_text(json.dumps(message, ensure_ascii=False))
            except (WebSocketDisconnect, RuntimeError, OSError) as exc:
                log.info("stream %d: client gone while sending (%s)", self.id, type(exc).__name__)
                self.session.disconnected()

    async def close(self, code: int, reason: str) -> None:
        async with self.send_lock:
            if self.closed.is_set():
                return
            self.closed.set()
            self.close_code = code
            with contextlib.suppress(RuntimeError, WebSocketDisconnect, OSError):
                await self.ws.close(code=code, reason=reason)
