"""Server settings: one frozen dataclass, validated once, shared by the app and the CLI."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError
from ..presets import get_preset
from ..scheduling import STREAM_CPU


@dataclass(frozen=True)
class ServerConfig:
    """How ``rtwhisper serve`` runs.

    Defaults are safe to leave on: bound to localhost and answering only to the loopback
    names (exposing it is a decision, as with Jupyter and Ollama), a connection cap and
    admission control, a frame cap of 1 MiB (16 s of float32 audio, far above the guide's
    0.1 s frames), a 100 MiB / one-hour upload cap and a 60 s idle timeout.
    """

    preset: str = "low_latency"
    model_name: str | None = None
    """Overrides the preset's model; every stream and upload uses this one loaded model."""
    device: str = "auto"
    compute_type: str = "auto"
    cpu_threads: int = 0
    host: str = "127.0.0.1"
    port: int = 8765
    max_connections: int = 16
    """Hard cap on live streams; below it, admission control refuses streams the engine has no room for."""
    max_frame_bytes: int = 16 << 20
    max_upload_bytes: int = 100 << 20
    max_upload_s: float = 3600.0
    """Longest decoded upload: bytes do not bound samples (an hour of silence is a 641 KB FLAC)."""
    max_concurrent_uploads: int = 2
    """Uploads decoded at once; more wait their turn (each holds up to ``max_upload_s`` of audio)."""
    max_backlog_s: float = 600.0
    """Audio a stream may have sent ahead of recognition before it is refused (memory bound)."""
    idle_timeout_s: float = 60.0
    stall_flush_s: float = 0.6
    """A stream that sends no audio for this long gets its last words final (it stays open).
    Live clients send every 20–100 ms; 0.6 s of nothing means the speaker's device stopped."""
    max_batch: int = 8
    """Windows of different streams decoded in one engine call, at most."""
    workers: int = 0
    """Engine calls that run at once (CTranslate2 replicas sharing the weights), each with
    ``cpu_threads`` (0: the cores divided among them); 0: 2 on a CPU, 1 on a GPU
    (:func:`~rtwhisper.engine.ctranslate2.default_workers` says why)."""
    decode_ahead: bool = True
    """A worker that no stream can need (fewer streams than workers) decodes a stream's next
    update while its previous one still runs (:class:`~rtwhisper.scheduling.Scheduler`)."""
    stream_cpu: float | None = STREAM_CPU
    """Cores one stream's updates may use on average on a CPU (``None``: no bound): a CPU
    where updates cost more gets longer update steps (:class:`~rtwhisper.scheduling.Scheduler`)."""
    batch_wait_s: float = 0.02
    """How long a due window may wait for others to share its batch."""
    max_delay_s: float = 1.0
    """Admission control: refuse new streams while due windows wait longer than this (p90)."""
    api_key: str | None = None
    allowed_origins: tuple[str, ...] = ()
    """Browser origins allowed besides the server's own; ``("*",)`` allows any."""
    allowed_hosts: tuple[str, ...] = ()
    """Host names the server answers to; empty: the loopback names when bound to loopback, else any."""

    def __post_init__(self) -> None:
        get_preset(self.preset)  # raises ConfigError for an unknown one
        if isinstance(self.cpu_threads, bool) or not isinstance(self.cpu_threads, int) or self.cpu_threads < 0:
            raise ConfigError(f"cpu_threads must be 0 (the cores available) or a positive integer, "
                              f"got {self.cpu_threads!r}")
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 0:
            raise ConfigError(f"workers must be 0 (2 on a CPU, 1 on a GPU) or a positive integer, got {self.workers!r}")
        if not isinstance(self.decode_ahead, bool):
            raise ConfigError(f"decode_ahead must be true or false, got {self.decode_ahead!r}")
        if self.stream_cpu is not None and (isinstance(self.stream_cpu, bool) or not isinstance(
                self.stream_cpu, (int, float)) or not 0.1 <= self.stream_cpu <= 64):
            raise ConfigError(f"stream_cpu must be cores from 0.1 to 64, or None (no bound), got {self.stream_cpu!r}")
        for name in ("max_connections", "max_frame_bytes", "max_upload_bytes", "max_concurrent_uploads",
                     "max_batch"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if not self.batch_wait_s >= 0:
            raise ConfigError(f"batch_wait_s must be >= 0 seconds, got {self.batch_wait_s!r}")
        for name in ("idle_timeout_s", "max_backlog_s", "max_upload_s", "stall_flush_s", "max_delay_s"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be a positive number of seconds, got {getattr(self, name)!r}")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be from 0 to 65535, got {self.port}")
        if self.api_key is not None and not self.api_key.strip():
            raise ConfigError("api_key must not be empty; leave it unset for no key")

    @property
    def resolved_model_name(self) -> str:
        return self.model_name or get_preset(self.preset).model_name
