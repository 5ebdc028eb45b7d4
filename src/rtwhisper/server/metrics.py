"""``GET /metrics``: the server's figures in Prometheus' text format (``prometheus-client``).

One registry per app, not the library's global one, so that two servers in one process (the
tests start several) never share or collide on counters. Latencies are on the audio clock:
a final's latency is how much audio the server had received when it sent the final, past the
end of the final's last word — what a real-time client feels, without trusting its clock.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS_S = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0)
"""Buckets around the latency targets (finals within 1–2 s of the speech)."""

CONTENT_TYPE = CONTENT_TYPE_LATEST


class ServerMetrics:
    """The counters, gauges and histograms one server exports."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.streams = Gauge("rtwhisper_streams", "Live WebSocket streams", registry=r)
        self.audio_s = Counter("rtwhisper_audio_seconds", "Seconds of audio received over WebSocket streams",
                               registry=r)
        self.compute_s = Counter("rtwhisper_compute_seconds", "Seconds the model spent on stream windows",
                                 registry=r)
        self.updates = Counter("rtwhisper_updates", "Stream windows decoded (updates, endpoints, flushes, ends)",
                               registry=r)
        self.final_latency_s = Histogram(
            "rtwhisper_final_latency_seconds", "Audio received past a final's last word when it was sent",
            buckets=LATENCY_BUCKETS_S, registry=r)
        self.lag_s = Histogram("rtwhisper_lag_seconds", "Audio received but not yet recognised, at each update",
                               buckets=LATENCY_BUCKETS_S, registry=r)
        self.refusals = Counter("rtwhisper_refusals", "Streams refused", ["reason"], registry=r)
        self.closes = Counter("rtwhisper_closes", "Streams ended, by WebSocket close code (client: the client left)",
                              ["code"], registry=r)
        self.uploads = Counter("rtwhisper_uploads", "File uploads, by endpoint and HTTP status",
                               ["endpoint", "status"], registry=r)
        self.upload_audio_s = Counter("rtwhisper_upload_audio_seconds", "Seconds of audio in uploads transcribed",
                                      registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
