"""What a server holds for its lifetime: settings, the one model, the scheduler and its counters."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ..engine import CpuLayout, WhisperEngine
from ..processor import RealtimeWhisperProcessor
from ..scheduling import Scheduler
from .config import ServerConfig
from .metrics import ServerMetrics


@dataclass
class ServerState:
    """The model, the stream scheduler, a worker for uploads, and the live connection count."""

    config: ServerConfig
    engine: WhisperEngine
    scheduler: Scheduler
    file_pool: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(1, "rtw-file"))
    upload_slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(2))
    metrics: ServerMetrics = field(default_factory=ServerMetrics)
    connections: int = 0
    uploads: int = 0
    refused: int = 0
    cpu_layout: CpuLayout | None = None
    """How decodes share the CPU, when the server measured it (neither workers nor threads given)."""
    replica: dict[str, Any] | None = None
    """Which replica this is, under Ray Serve (id and process); told to each stream in its ready message."""

    def make_processor(self, preset: str | None, **overrides: Any) -> RealtimeWhisperProcessor:
        """A processor for one stream on the shared engine (the client's preset, the server's model)."""
        return RealtimeWhisperProcessor.from_preset(preset or self.config.preset, engine=self.engine,
                                                    model_name=self.config.resolved_model_name, **overrides)

    def close(self) -> None:
        self.scheduler.shutdown()
        self.file_pool.shutdown(wait=False, cancel_futures=True)
