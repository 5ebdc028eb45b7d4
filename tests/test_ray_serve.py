"""rtwhisper on Ray Serve for real: `rtwhisper serve --replicas 2` starts a local Ray cluster on loopback.

Real WebSocket clients stream real speech at real-time pace through Ray's proxy; one replica's
process is killed mid-stream (SIGKILL, as a crashed or evicted worker); the server is stopped
and no process it started may remain.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from conftest import load_wav
from rtwhisper.metrics import wer
from test_server import ARTIFACTS, JFK_TEXT, finals_text, frames, free_port

pytest.importorskip("ray.serve", reason="the [ray] extra is part of [test]")
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

pytestmark = pytest.mark.model


def session_processes(sid: int) -> list[tuple[int, str]]:
    """Live processes of the session ``sid`` (the server and everything it started)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            state, session = fields[0], int(fields[3])
            if session == sid and state != "Z":
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    out.append((int(entry), f.read().replace(b"\0", b" ").decode(errors="replace")[:100]))
        except (OSError, IndexError, ValueError):
            continue
    return out


class RayServer:
    def __init__(self, *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}/"
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.log = ARTIFACTS / f"ray-server-{self.port}.log"
        self.started = time.monotonic()
        # its own session, as a terminal gives it: the Ray processes it starts are found by it
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "rtwhisper.cli", "serve", "--port", str(self.port), "--device", "cpu", *args],
            stdout=self.log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "HF_HUB_OFFLINE": "1", "RAY_USAGE_STATS_ENABLED": "0"},
        )
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"server exited: {self.log.read_text()[-3000:]}")
            if "ready in" in self.log.read_text():
                self.ready_s = time.monotonic() - self.started
                return
            time.sleep(0.3)
        self.stop()
        pytest.fail(f"Ray server not ready within 180 s: {self.log.read_text()[-3000:]}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            return -9


@pytest.fixture(scope="module")
def ray_server() -> Iterator[RayServer]:
    s = RayServer("--replicas", "2", "--model", "tiny.en", "--cpus-per-replica", "0.5", "--drain", "5")
    yield s
    s.stop()


async def live(url: str, audio, *, kill: int | None = None, kill_after_s: float = 3.0) -> dict:
    """Stream at real-time pace; with ``kill``, SIGKILL the process serving this stream after ``kill_after_s``."""
    messages: list[dict] = []
    async with connect(url, open_timeout=60, max_size=None) as ws:
        await ws.send(json.dumps({"type": "config", "language": "en"}))
        t0 = time.monotonic()
        try:
            for i, frame in enumerate(frames(audio)):
                await asyncio.sleep(max(0.0, t0 + 0.1 * i - time.monotonic()))
                await ws.send(frame)
                while True:  # what arrived so far, without waiting
                    try:
                        messages.append(json.loads(await asyncio.wait_for(ws.recv(), 0.001)))
                    except TimeoutError:
                        break
                if kill is not None and i * 0.1 >= kill_after_s:
                    ready = next(m for m in messages if m["type"] == "ready")
                    os.kill(ready["replica"]["pid"], kill)
                    kill = None
            await ws.send(json.dumps({"type": "end"}))
            async for raw in ws:
                messages.append(json.loads(raw))
        except ConnectionClosed:
            pass
        # wait for the close frame (a killed replica's stream gets it from the proxy)
        await asyncio.wait_for(ws.wait_closed(), 30)
        return {"messages": messages, "close": (ws.close_code, ws.close_reason)}


def test_two_replicas_four_clients_failover_and_a_clean_stop(ray_server):
    jfk = load_wav("en/jfk.wav")

    async def four() -> list[dict]:
        async def one(k: int) -> dict:
            await asyncio.sleep(0.3 * k)
            return await live(ray_server.ws_url, jfk)
        return await asyncio.gather(*(one(k) for k in range(4)))

    results = asyncio.run(four())
    replicas = set()
    for r in results:
        text = finals_text(r["messages"])
        assert r["close"][0] == 1000 and wer(JFK_TEXT, text) <= 0.15, (r["close"], text)
        replicas.add(next(m for m in r["messages"] if m["type"] == "ready")["replica"]["id"])
    assert 1 <= len(replicas) <= 2
    assert httpx.get(ray_server.url + "/health", timeout=10).json()["model"] == "tiny.en"

    # One replica dies mid-stream: its client is told to reconnect, and a new client is served.
    lost = asyncio.run(live(ray_server.ws_url, jfk, kill=signal.SIGKILL, kill_after_s=3.0))
    assert lost["close"][0] == 1012 and "reconnect" in lost["close"][1], lost["close"]
    again = asyncio.run(live(ray_server.ws_url, jfk))
    assert again["close"][0] == 1000 and wer(JFK_TEXT, finals_text(again["messages"])) <= 0.15, again

    # Stopping the server stops every Ray process it started.
    sid = ray_server.proc.pid  # its own session: the session id is its pid
    assert len(session_processes(sid)) >= 4  # the server, Ray's GCS and raylet, the replicas…
    assert ray_server.stop() == 0, ray_server.log.read_text()[-3000:]
    deadline = time.monotonic() + 30
    while session_processes(sid) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert session_processes(sid) == [], session_processes(sid)
    print(f"Ray server ready in {ray_server.ready_s:.1f} s")


# -- fast: the proxy middleware and the deployment options, without a cluster --------------------


def run_middleware(app, incoming: list[dict]) -> list[dict]:
    from rtwhisper.server.ray_serve import ReconnectOnReplicaLoss

    sent: list[dict] = []
    queue = list(incoming)

    async def receive() -> dict:
        return queue.pop(0) if queue else {"type": "websocket.receive", "text": "{}"}

    async def send(message: dict) -> None:
        sent.append(dict(message))

    async def main() -> None:
        try:
            await ReconnectOnReplicaLoss(app)({"type": "websocket", "path": "/"}, receive, send)
        except RuntimeError:
            pass

    asyncio.run(main())
    return sent


def test_a_socket_left_without_a_close_gets_the_reconnect_close():
    async def dies(scope, receive, send):  # what Ray's proxy does when the replica's process dies
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": '{"type": "ready"}'})
        raise RuntimeError("ActorDiedError")

    async def ends(scope, receive, send):
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 1000, "reason": "end of stream"})

    async def client_leaves(scope, receive, send):
        await send({"type": "websocket.accept"})
        assert (await receive())["type"] == "websocket.disconnect"

    async def refused(scope, receive, send):  # closed before accepting (a bad key, a full server)
        await send({"type": "websocket.close", "code": 1008, "reason": "bad key"})

    assert run_middleware(dies, [])[-1] == {"type": "websocket.close", "code": 1012,
                                            "reason": "rtwhisper: the replica serving this stream stopped; reconnect"}
    assert [m.get("code") for m in run_middleware(ends, []) if m["type"] == "websocket.close"] == [1000]
    assert not [m for m in run_middleware(client_leaves, [{"type": "websocket.disconnect", "code": 1001}])
                if m["type"] == "websocket.close"]
    assert [m.get("code") for m in run_middleware(refused, []) if m["type"] == "websocket.close"] == [1008]


def test_scaling_options_and_the_serve_run_builder():
    from rtwhisper.errors import ConfigError
    from rtwhisper.server import ServerConfig
    from rtwhisper.server.ray_serve import Scaling, app_builder

    config = ServerConfig(max_connections=6)
    fixed = Scaling(replicas=3).deployment_options(config)
    assert fixed["num_replicas"] == 3 and fixed["max_ongoing_requests"] == 6 and "autoscaling_config" not in fixed
    auto = Scaling(replicas=None, min_replicas=1, max_replicas=4, target_streams=2).deployment_options(config)
    assert auto["autoscaling_config"]["target_ongoing_requests"] == 2
    assert (auto["autoscaling_config"]["min_replicas"], auto["autoscaling_config"]["max_replicas"]) == (1, 4)
    with pytest.raises(ConfigError, match="min_replicas <= max_replicas"):
        Scaling(replicas=None, min_replicas=3, max_replicas=2)
    # one reading of the options for the command line and for serve run
    assert Scaling.from_options() == Scaling(replicas=1)
    assert Scaling.from_options(replicas=3, drain_s=5.0) == Scaling(replicas=3, drain_s=5.0)
    assert Scaling.from_options(max_replicas=4) == Scaling(replicas=None, min_replicas=1, max_replicas=4)
    assert Scaling.from_options(min_replicas=2) == Scaling(replicas=None, min_replicas=2, max_replicas=2)
    with pytest.raises(ConfigError, match="not both"):
        Scaling.from_options(replicas=2, max_replicas=4)
    with pytest.raises(ConfigError, match=r"unknown argument.*modle.*accepted: .*model"):
        app_builder({"modle": "tiny.en"})
    application = app_builder({"model": "tiny.en", "min_replicas": "1", "max_replicas": "3"})
    assert type(application).__name__ == "Application"
