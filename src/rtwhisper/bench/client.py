"""A real-time WebSocket client for the benchmark: sends a recording at its own pace, times every reply.

Run as its own process (``python -m rtwhisper.bench.client``), as ``../shared/MEASURING.md``
asks: frame *i* of 0.1 s leaves at ``t0 + i × 0.1 s`` on a monotonic clock (no drift from
sleeping after each send); t = 0 is when the first frame is sent. The client sends a config
message first (``language``, ``partials``, ``beam_size``), float32 frames, then
``{"type": "end"}`` — or, with ``--no-end``, simply stops sending, as the guide's clients do —
and waits for the last finals. It writes one JSON object per stream: every message with its
receive time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

import numpy as np

from ..audio import read_wav16

FRAME_S = 0.1


def read_wav(path: str) -> np.ndarray:
    audio = read_wav16(path)
    if audio is None:
        raise SystemExit(f"{path}: the benchmark client sends 16 kHz mono 16-bit WAV files")
    return audio


async def stream(url: str, audio: np.ndarray, config: dict[str, Any], *, send_end: bool, wait_s: float,
                 stop_after_final_s: float | None = None) -> dict[str, Any]:
    """Send ``audio`` in real time; return the messages with receive times (seconds from the first frame)."""
    import websockets

    frame = int(FRAME_S * 16000)
    messages: list[tuple[float, dict[str, Any]]] = []
    async with websockets.connect(url, max_size=None, open_timeout=30) as ws:
        if config:
            await ws.send(json.dumps({"type": "config", **config}))
        t0 = time.monotonic()
        last_frame_s = 0.0
        finished = asyncio.Event()

        async def receive() -> None:
            try:
                async for raw in ws:
                    message = json.loads(raw)
                    messages.append((time.monotonic() - t0, message))
                    if message.get("type") == "done":
                        break
            except websockets.ConnectionClosed:
                pass
            finished.set()

        receiver = asyncio.create_task(receive())
        for i in range(0, len(audio), frame):
            delay = t0 + (i // frame) * FRAME_S - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if finished.is_set():
                break
            await ws.send(audio[i:i + frame].astype("<f4").tobytes())
            last_frame_s = time.monotonic() - t0
        if send_end:
            await ws.send(json.dumps({"type": "end"}))
        try:
            await asyncio.wait_for(finished.wait(), timeout=wait_s if send_end else (stop_after_final_s or wait_s))
        except asyncio.TimeoutError:
            pass
        receiver.cancel()
        close = (ws.close_code, ws.close_reason) if ws.close_code is not None else None
    return {"last_frame_s": last_frame_s, "audio_s": len(audio) / 16000, "messages": messages, "close": close}


async def many(url: str, audio: np.ndarray, config: dict[str, Any], *, streams: int, stagger_s: float,
               send_end: bool, wait_s: float, stop_after_final_s: float | None) -> list[dict[str, Any]]:
    async def one(k: int) -> dict[str, Any]:
        await asyncio.sleep(k * stagger_s)
        try:
            return await stream(url, audio, config, send_end=send_end, wait_s=wait_s,
                                stop_after_final_s=stop_after_final_s)
        except Exception as exc:  # a refused or failed stream is a result too
            return {"error": f"{type(exc).__name__}: {exc}", "messages": [], "audio_s": len(audio) / 16000}

    return list(await asyncio.gather(*(one(k) for k in range(streams))))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--wav", required=True)
    parser.add_argument("--language")
    parser.add_argument("--beam-size", type=int, default=1)
    parser.add_argument("--preset")
    parser.add_argument("--config", default="{}", help="more config fields, as JSON (chunk_duration, ...)")
    parser.add_argument("--streams", type=int, default=1)
    parser.add_argument("--stagger", type=float, default=1.3, help="seconds between stream starts")
    parser.add_argument("--silence-after", type=float, default=0.0, help="seconds of silence sent after the file")
    parser.add_argument("--seconds", type=float, help="send only this much of the file")
    parser.add_argument("--no-end", action="store_true", help="stop sending without {\"type\": \"end\"}")
    parser.add_argument("--wait", type=float, default=30.0, help="seconds to wait for the last finals")
    parser.add_argument("--warmup", type=float, default=0.0, help="seconds of an unmeasured stream first")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    audio = read_wav(args.wav)
    if args.seconds:
        audio = audio[: int(args.seconds * 16000)]
    if args.silence_after:
        audio = np.concatenate([audio, np.zeros(int(args.silence_after * 16000), dtype=np.float32)])
    config: dict[str, Any] = {"partials": True, "beam_size": args.beam_size}
    if args.language:
        config["language"] = args.language
    if args.preset:
        config["preset"] = args.preset
    config.update(json.loads(args.config))
    if args.warmup:
        asyncio.run(stream(args.url, audio[: int(args.warmup * 16000)], config, send_end=True, wait_s=30.0))
    results = asyncio.run(many(args.url, audio, config, streams=args.streams, stagger_s=args.stagger,
                               send_end=not args.no_end, wait_s=args.wait,
                               stop_after_final_s=5.0 if args.no_end else None))
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(results, f, ensure_ascii=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
