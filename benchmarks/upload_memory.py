"""What concurrent uploads cost the server's memory: RSS before and at its peak while they arrive.

    python benchmarks/upload_memory.py --uploads 10 --mb 90

A real ``rtwhisper serve`` (``tiny.en``, ``--max-upload-s 30``) on loopback; ``--uploads`` clients at
once each POST a ``--mb`` MB WAV (silence) to ``/v1/audio/transcriptions``. The decoded audio passes
the 30 s cap, so each is refused with a 413 as soon as its first 30 s are decoded: what is measured
is what the server holds of the uploads themselves while they wait for a decode slot. The server's
RSS is sampled every 50 ms from ``/proc``.
"""

from __future__ import annotations

import argparse
import io
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import wave
from pathlib import Path


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> int:
    import httpx

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uploads", type=int, default=10)
    parser.add_argument("--mb", type=int, default=90)
    args = parser.parse_args()
    wav = Path(tempfile.mkdtemp()) / "silence.wav"
    with wave.open(str(wav), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(bytes(args.mb << 20))
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "rtwhisper.cli", "serve", "--model", "tiny.en", "--port",
                               str(port), "--max-upload-s", "30", "--max-upload-mb", str(args.mb + 10)],
                              env={**os.environ, "HF_HUB_OFFLINE": "1"}, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        time.sleep(1.0)
        before = _rss_mb(server.pid)
        peak = [before]
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], _rss_mb(server.pid))
                time.sleep(0.05)

        statuses: list[int] = []

        def upload() -> None:
            with wav.open("rb") as f:
                body = io.BytesIO(f.read())
            r = httpx.post(url + "/v1/audio/transcriptions", files={"file": ("silence.wav", body)},
                           data={"model": "whisper-1"}, timeout=600)
            statuses.append(r.status_code)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        started = time.monotonic()
        clients = [threading.Thread(target=upload) for _ in range(args.uploads)]
        for c in clients:
            c.start()
        for c in clients:
            c.join()
        done.set()
        sampler.join()
        print(f"{args.uploads} uploads of {args.mb} MB: server RSS {before:.0f} MB before, peak {peak[0]:.0f} MB "
              f"(+{peak[0] - before:.0f} MB); answers {sorted(statuses)}; {time.monotonic() - started:.1f} s")
    finally:
        server.terminate()
        server.wait(timeout=30)
        wav.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
