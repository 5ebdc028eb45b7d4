"""rtwhisper on Ray Serve: the same app on many replicas behind Ray's proxy (extra ``[ray]``).

Each replica is the whole server of :func:`~rtwhisper.server.app.create_app` — WebSocket
streaming, Deepgram and OpenAI Realtime sessions, ``POST /transcribe``, the OpenAI audio API,
the page — with its own model, loaded once when the replica starts. Ray's proxy holds the
client's connection and routes each request, a WebSocket for its whole life, to one replica.

Why Ray Serve and not a load balancer of our own: it starts, restarts and scales replicas by
their ongoing requests (a live stream is one), drains a replica before it goes, and runs on a
laptop, a cluster, or Kubernetes through KubeRay with the same code.

Two things are ours:

* **A close that says "reconnect"** when a replica dies mid-stream. Ray's proxy then ends the
  client's WebSocket without a close frame (the client sees 1006, "abnormal"): nothing says
  whether to retry. :class:`ReconnectOnReplicaLoss`, installed in the proxy through Ray's
  ``RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH`` hook, closes such a socket with 1012
  ("service restart", RFC 6455's registry) and a reason that says to reconnect; new streams go
  to the healthy replicas (and the one that died is restarted by Ray).
* **Scaling on live streams**: ``target_streams`` per replica (from the capacity figure of
  ``rtwhisper bench``) is Serve's ``target_ongoing_requests``; a replica admits at most
  ``max_connections`` streams (``max_ongoing_requests``), and its own admission control still
  refuses what it cannot serve in time.

``rtwhisper serve --replicas N`` (or ``--min-replicas``/``--max-replicas``) calls :func:`run`;
``serve run rtwhisper.server.ray_serve:app_builder model=tiny.en`` and the config file in
``deploy/ray-serve.yaml`` are the Ray-native ways to the same deployment.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import asdict, dataclass
from typing import Any

from ..errors import ConfigError
from .config import ServerConfig

log = logging.getLogger("rtwhisper.ray")

CLOSE_REPLICA_LOST = 1012
"""RFC 6455 "Service Restart": the server is restarting; the client should reconnect."""
REPLICA_LOST_REASON = "rtwhisper: the replica serving this stream stopped; reconnect"
PROXY_CALLBACK = "rtwhisper.server.ray_serve.proxy_middlewares"
"""Import path for Ray's ``RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH`` (read when the proxy starts)."""
DEPLOYMENT = "rtwhisper"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class ReconnectOnReplicaLoss:
    """ASGI middleware for Ray's proxy: a WebSocket that a replica stopped serving without a close gets one.

    A replica that closes a socket itself (the stream ended, the server refused it) sends its
    own close frame, and a client that leaves sends its own; only a socket that was accepted
    and then left with neither — its replica died — is closed here, with
    :data:`CLOSE_REPLICA_LOST` and :data:`REPLICA_LOST_REASON`.
    """

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "websocket":
            await self.app(scope, receive, send)
            return
        accepted = ended = False

        async def watched_send(message: Message) -> None:
            nonlocal accepted, ended
            if message.get("type") == "websocket.accept":
                accepted = True
            elif message.get("type") == "websocket.close":
                ended = True
            await send(message)

        async def watched_receive() -> Message:
            nonlocal ended
            message = await receive()
            if message.get("type") == "websocket.disconnect":
                ended = True
            return message

        try:
            await self.app(scope, watched_receive, watched_send)
        finally:
            if accepted and not ended:
                log.warning("a replica stopped serving a WebSocket; closing it with %d so the client reconnects",
                            CLOSE_REPLICA_LOST)
                try:
                    await send({"type": "websocket.close", "code": CLOSE_REPLICA_LOST,
                                "reason": REPLICA_LOST_REASON})
                except Exception:  # the client went at the same moment
                    pass


def proxy_middlewares() -> list[Any]:
    """Ray's proxy callback: the middlewares its ASGI app is wrapped in."""
    from starlette.middleware import Middleware

    return [Middleware(ReconnectOnReplicaLoss)]


@dataclass(frozen=True)
class Scaling:
    """How many replicas: a fixed number, or autoscaled between two bounds on live streams.

    ``target_streams`` is the live streams per replica that autoscaling aims at: set it to the
    streams one replica serves within the latency bound (the capacity figure of
    ``rtwhisper bench`` or ``benchmarks/gpu_check.py`` on that hardware). ``drain_s`` is how
    long a replica being scaled down or replaced may keep serving its streams before it goes
    (Serve's ``graceful_shutdown_timeout_s``); a stream still open then gets the reconnect
    close (what was not yet final in it is lost to that connection).
    """

    replicas: int | None = 1
    min_replicas: int = 1
    max_replicas: int = 1
    target_streams: int = 2
    drain_s: float = 60.0
    cpus_per_replica: float = 1.0
    gpus_per_replica: float = 0.0

    def __post_init__(self) -> None:
        if self.replicas is not None and self.replicas < 1:
            raise ConfigError(f"replicas must be at least 1, got {self.replicas}")
        if not 1 <= self.min_replicas <= self.max_replicas:
            raise ConfigError(f"need 1 <= min_replicas <= max_replicas, got {self.min_replicas} and "
                              f"{self.max_replicas}")
        if self.target_streams < 1:
            raise ConfigError(f"target_streams must be at least 1, got {self.target_streams}")
        if not self.drain_s > 0:
            raise ConfigError(f"drain_s must be a positive number of seconds, got {self.drain_s}")
        if self.cpus_per_replica < 0 or self.gpus_per_replica < 0:
            raise ConfigError("cpus_per_replica and gpus_per_replica must not be negative")

    @classmethod
    def from_options(cls, *, replicas: int | None = None, min_replicas: int | None = None,
                     max_replicas: int | None = None, target_streams: int | None = None,
                     drain_s: float | None = None, cpus_per_replica: float | None = None,
                     gpus_per_replica: float | None = None) -> Scaling:
        """The scaling that a command line or ``serve run`` arguments ask for (``None``: not given).

        Either bound asks for autoscaling (the other defaults to 1, or to the lower bound);
        otherwise ``replicas`` is a fixed count (1 if not given). Asking for both is an error.
        """
        autoscale = min_replicas is not None or max_replicas is not None
        if autoscale and replicas is not None:
            raise ConfigError("give replicas, or min_replicas/max_replicas for autoscaling, not both")
        low = 1 if min_replicas is None else min_replicas
        given: dict[str, Any] = {"target_streams": target_streams, "drain_s": drain_s,
                                 "cpus_per_replica": cpus_per_replica, "gpus_per_replica": gpus_per_replica}
        return cls(replicas=None if autoscale else (1 if replicas is None else replicas), min_replicas=low,
                   max_replicas=low if max_replicas is None else max_replicas,
                   **{k: v for k, v in given.items() if v is not None})

    def deployment_options(self, config: ServerConfig) -> dict[str, Any]:
        """Serve's options for the deployment (``Deployment.options``)."""
        options: dict[str, Any] = {
            "name": DEPLOYMENT,
            "max_ongoing_requests": config.max_connections,
            "graceful_shutdown_timeout_s": self.drain_s,
            "ray_actor_options": {"num_cpus": self.cpus_per_replica, "num_gpus": self.gpus_per_replica},
        }
        if self.replicas is not None:
            options["num_replicas"] = self.replicas
        else:
            options["autoscaling_config"] = {
                "min_replicas": self.min_replicas, "max_replicas": self.max_replicas,
                "target_ongoing_requests": self.target_streams,
                # a stream is long: scale up after a few seconds of load, down only after a minute
                "upscale_delay_s": 5.0, "downscale_delay_s": 60.0,
            }
        return options


def _replica_class() -> Any:
    from ray import serve

    @serve.ingress()
    class RtWhisperReplica:
        """One replica: the whole rtwhisper app and its model."""

        def __init__(self, config: dict[str, Any]) -> None:
            self.config = ServerConfig(**{**config, "allowed_origins": tuple(config["allowed_origins"]),
                                          "allowed_hosts": tuple(config["allowed_hosts"])})
            self.state: Any = None

        def __serve_build_asgi_app__(self) -> Any:
            from .app import create_app

            app = create_app(self.config)
            self.state = app.state.rtw
            context = serve.get_replica_context()
            self.state.replica = {"id": context.replica_id.unique_id, "pid": os.getpid()}
            return app

        def check_health(self) -> None:
            if self.state is not None and not self.state.scheduler.alive:
                raise RuntimeError("the recognition scheduler stopped")

    return RtWhisperReplica


def build(config: ServerConfig, scaling: Scaling) -> Any:
    """The Serve application: one deployment of :class:`RtWhisperReplica` with ``scaling``'s options."""
    from ray import serve

    deployment = serve.deployment(**scaling.deployment_options(config))(_replica_class())
    return deployment.bind(asdict(config))


def app_builder(args: dict[str, str]) -> Any:
    """For ``serve run rtwhisper.server.ray_serve:app_builder key=value …`` and Serve config files.

    Keys: ``model``, ``preset``, ``device``, ``compute_type``, ``max_connections``, ``replicas``
    (or ``min_replicas``/``max_replicas``/``target_streams``), ``drain_s``, ``cpus_per_replica``,
    ``gpus_per_replica``. Set ``RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH`` to :data:`PROXY_CALLBACK`
    on the cluster for the reconnect close.
    """
    known = {"model", "preset", "device", "compute_type", "max_connections", "replicas", "min_replicas",
             "max_replicas", "target_streams", "drain_s", "cpus_per_replica", "gpus_per_replica", "api_key"}
    unknown = sorted(set(args) - known)
    if unknown:
        raise ConfigError(f"unknown argument(s) {', '.join(unknown)}; accepted: {', '.join(sorted(known))}")
    config = ServerConfig(model_name=args.get("model"), preset=args.get("preset", "low_latency"),
                          device=args.get("device", "auto"), compute_type=args.get("compute_type", "auto"),
                          max_connections=int(args.get("max_connections", 16)), api_key=args.get("api_key"),
                          allowed_hosts=("*",))
    def given(key: str, kind: Callable[[str], Any]) -> Any:
        return kind(args[key]) if key in args else None

    scaling = Scaling.from_options(
        replicas=given("replicas", int), min_replicas=given("min_replicas", int),
        max_replicas=given("max_replicas", int), target_streams=given("target_streams", int),
        drain_s=given("drain_s", float), cpus_per_replica=given("cpus_per_replica", float),
        gpus_per_replica=given("gpus_per_replica", float))
    return build(config, scaling)


def run(config: ServerConfig, scaling: Scaling, *, address: str | None = None,
        ready: Callable[[], None] | None = None, stop: threading.Event | None = None) -> None:
    """Serve on ``config.host:config.port`` through Ray until SIGINT/SIGTERM (or ``stop``), then clean up.

    Without ``address`` a local Ray cluster is started and, at the end, stopped with every process
    it started; with one, the application is deployed on that cluster and deleted at the end.
    """
    try:
        import ray
        from ray import serve
    except ImportError:
        raise ConfigError("replicas need the [ray] extra: pip install 'rtwhisper[ray]'") from None
    # Ray's proxy reads this when it starts; local clusters inherit it from this process.
    os.environ.setdefault("RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH", PROXY_CALLBACK)
    stop = stop or threading.Event()
    started = time.monotonic()
    ray.init(address=address, num_cpus=None if address else (os.cpu_count() or 1), include_dashboard=False,
             configure_logging=False, log_to_driver=False, logging_level=logging.WARNING)
    # after ray.init, which installs its own SIGTERM handler (it would exit without our clean-up)
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        serve.start(http_options={"host": config.host, "port": config.port})
        serve.run(build(config, scaling), name=DEPLOYMENT, route_prefix="/", blocking=False)
        log.warning("rtwhisper on Ray Serve: %s replica(s) of %s on http://%s:%d (ready in %.1f s)",
                    scaling.replicas if scaling.replicas is not None
                    else f"{scaling.min_replicas}-{scaling.max_replicas}",
                    config.resolved_model_name, config.host, config.port, time.monotonic() - started)
        if ready is not None:
            ready()
        while not stop.wait(0.5):
            pass
    finally:
        log.warning("rtwhisper on Ray Serve: stopping")
        try:
            if address:
                serve.delete(DEPLOYMENT)
            else:
                serve.shutdown()
        finally:
            ray.shutdown()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

