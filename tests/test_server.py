"""The server for real: `rtwhisper serve` in its own process on a loopback port, real clients.

Clients: the `websockets` library (as the guide's Python client), the official `openai`
client, httpx for the guide's multipart upload, and headless Chromium driven by Playwright
for the browser page. Two servers: one on base with default limits, one on tiny.en with
tight limits (connections, frames, uploads, idle time, API key) for the refusal tests.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from conftest import AUDIO_DIR, REPO, load_wav
from rtwhisper.metrics import cer, normalize_text, wer

websockets = pytest.importorskip("websockets", reason="the [server] extra is part of [test]")
from websockets.asyncio.client import connect  # noqa: E402
from websockets.exceptions import ConnectionClosed, InvalidStatus  # noqa: E402

pytestmark = pytest.mark.model

JFK = AUDIO_DIR / "en" / "jfk.wav"
JFK_TEXT = ("And so my fellow Americans, ask not what your country can do for you, "
            "ask what you can do for your country.")
ARTIFACTS = Path(os.environ.get("RTWHISPER_TEST_ARTIFACTS", REPO / "test-artifacts"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}/"
        self.log = ARTIFACTS / f"server-{self.port}.log"
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "rtwhisper.cli", "serve", "--port", str(self.port), "--device", "cpu", *args],
            stdout=self.log.open("w"), stderr=subprocess.STDOUT, env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"server exited: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code in (200, 401):
                    return
            except httpx.HTTPError:
                time.sleep(0.3)
        pytest.fail("server did not start within 120 s")

    def alive(self) -> bool:
        return self.proc.poll() is None and httpx.get(self.url + "/health", timeout=5).status_code == 200

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    s = Server("--model", "base")
    yield s
    s.stop()


@pytest.fixture(scope="module")
def strict_server() -> Iterator[Server]:
    s = Server("--model", "tiny.en", "--max-connections", "2", "--max-frame-kb", "64", "--max-upload-mb", "1",
               "--idle-timeout", "3", "--api-key", "s3cret")
    yield s
    s.stop()


def frames(audio: np.ndarray, fmt: str = "f32le", block: int = 1600) -> list[bytes]:
    out = []
    for i in range(0, len(audio), block):
        chunk = audio[i:i + block]
        out.append((np.round(chunk * 32767).astype("<i2") if fmt == "s16le" else chunk.astype("<f4")).tobytes())
    return out


async def stream_file(url: str, audio: np.ndarray, *, config: dict | None = None, pace_s: float = 0.0,
                      headers: dict | None = None) -> list[dict]:
    """Send 0.1 s frames (paced or as fast as possible), then end; collect every message."""
    messages: list[dict] = []
    async with connect(url, additional_headers=headers, open_timeout=30, max_size=None) as ws:
        if config is not None:
            await ws.send(json.dumps(config))
        for frame in frames(audio, (config or {}).get("format", "f32le")):
            await ws.send(frame)
            if pace_s:
                await asyncio.sleep(pace_s)
        await ws.send(json.dumps({"type": "end"}))
        async for raw in ws:
            messages.append(json.loads(raw))
        assert ws.close_code == 1000, (ws.close_code, ws.close_reason)
    return messages


def finals_text(messages: list[dict]) -> str:
    return " ".join(m["text"] for m in messages if m["type"] == "final" and m["text"])


# -- WebSocket ------------------------------------------------------------------------------


def test_guide_client_float32_frames_get_the_sentence(server):
    """The guide's client: 0.1 s float32 frames, no config, reads `text` from every message."""
    messages = asyncio.run(stream_file(server.ws_url, load_wav("en/jfk.wav"), pace_s=0.02))
    assert all("text" in m for m in messages)  # the guide's Android/iOS clients decode `text` from each
    assert {m["type"] for m in messages} <= {"final", "lag", "done"}  # no partials without a config
    assert wer(JFK_TEXT, finals_text(messages)) <= 0.05, finals_text(messages)
    assert messages[-1]["type"] == "done" and messages[-1]["audio_s"] == pytest.approx(11.0, abs=0.01)
    finals = [m for m in messages if m["type"] == "final"]
    assert finals[0]["start_s"] == 0.0 and finals[-1]["end_s"] == pytest.approx(11.0, abs=0.01)
    for a, b in itertools.pairwise(finals):  # finals tile the stream: every sample accounted for
        assert b["start_s"] == pytest.approx(a["end_s"], abs=1e-3)
    words = [w for m in finals for w in m["words"]]
    assert all(w["start_s"] <= w["end_s"] for w in words)
    assert [w["start_s"] for w in words] == sorted(w["start_s"] for w in words)


def test_int16_after_config_with_partials_and_ids(server):
    messages = asyncio.run(stream_file(server.ws_url, load_wav("en/jfk.wav"),
                                       config={"type": "config", "format": "s16le", "language": "en"},
                                       pace_s=0.05))
    assert messages[0]["type"] == "ready" and messages[0]["format"] == "s16le" and messages[0]["model"] == "base"
    assert wer(JFK_TEXT, finals_text(messages)) <= 0.05, finals_text(messages)
    transcript = [m for m in messages if m["type"] in ("partial", "final")]
    assert any(m["type"] == "partial" for m in transcript)
    sequences = [m["sequence"] for m in transcript]
    assert sequences == sorted(sequences) and len(set(sequences)) == len(sequences)
    # A partial's successor has the same segment_id until its final arrives.
    for m in transcript:
        assert m["language"] == "en"
    finals = [m["segment_id"] for m in transcript if m["type"] == "final"]
    assert finals == sorted(set(finals))


def test_48k_config_is_resampled(server):
    """The browser page sends its AudioContext rate; the server resamples."""
    from rtwhisper.audio import StreamResampler

    audio16 = load_wav("en/jfk.wav")
    audio48 = StreamResampler(16000, 48000).process(audio16, final=True)
    messages = asyncio.run(stream_file(server.ws_url, audio48, config={"type": "config", "sample_rate": 48000}))
    assert wer(JFK_TEXT, finals_text(messages)) <= 0.05, finals_text(messages)
    assert messages[-1]["audio_s"] == pytest.approx(11.0, abs=0.01)


def test_four_clients_at_once_on_one_model(server, manifest):
    """Four streams, two English and two Korean files, at once; each gets its own transcript."""
    clips = ["en/jfk.wav", "en/long_lj001_0001-0016.wav", "ko/test_ko.wav", "en/jfk.wav"]
    audio = {c: load_wav(c) for c in clips}
    audio["en/long_lj001_0001-0016.wav"] = audio["en/long_lj001_0001-0016.wav"][: 16000 * 20]

    async def all_at_once():
        configs = [None, {"type": "config", "language": "en"}, {"type": "config", "preset": "korean"},
                   {"type": "config", "language": "en", "chunk_duration": 3.0}]
        return await asyncio.gather(*(stream_file(server.ws_url, audio[c], config=cfg, pace_s=0.1)
                                      for c, cfg in zip(clips, configs, strict=True)))

    before = httpx.get(server.url + "/health").json()
    results = asyncio.run(all_at_once())
    texts = [finals_text(r) for r in results]
    assert wer(JFK_TEXT, texts[0]) <= 0.05, texts[0]
    assert wer(JFK_TEXT, texts[3]) <= 0.05, texts[3]
    lj = normalize_text(manifest["en/long_lj001_0001-0016.wav"]["text"]).split()
    heard = normalize_text(texts[1]).split()
    # the first 20 s only, cut mid-sentence, against the same number of reference words
    assert len(heard) >= 40 and wer(" ".join(lj[:len(heard)]), " ".join(heard)) <= 0.15, texts[1]
    assert cer(manifest["ko/test_ko.wav"]["text"], texts[2]) <= 0.35, texts[2]
    assert before["connections"] == 0 and httpx.get(server.url + "/health").json()["connections"] == 0


def test_fast_sender_gets_lag_reports_and_every_word(server):
    """A client sending 11 s of audio at once (ffmpeg | websocat does): lag reported, nothing dropped."""
    messages = asyncio.run(stream_file(server.ws_url, load_wav("en/jfk.wav"), config={"type": "config"}))
    lags = [m for m in messages if m["type"] == "lag"]
    assert lags and max(m["lag_s"] for m in lags) >= 4.0
    assert wer(JFK_TEXT, finals_text(messages)) <= 0.05


def test_bad_frames_get_errors_and_the_stream_goes_on(server):
    async def run():
        got = []
        async with connect(server.ws_url) as ws:
            await ws.send("hello")  # text that is not JSON
            got.append(json.loads(await ws.recv()))
            await ws.send(b"\x00\x01\x02")  # not a whole float32 sample
            got.append(json.loads(await ws.recv()))
            await ws.send(np.array([np.nan] * 1600, dtype="<f4").tobytes())
            got.append(json.loads(await ws.recv()))
            await ws.send(json.dumps({"type": "config", "format": "mp3"}))
            got.append(json.loads(await ws.recv()))
            await ws.send(json.dumps({"type": "config", "language": "klingon"}))
            got.append(json.loads(await ws.recv()))
            await ws.send(json.dumps({"type": "dance"}))
            got.append(json.loads(await ws.recv()))
            for frame in frames(load_wav("en/jfk.wav")):
                await ws.send(frame)
            await ws.send(json.dumps({"type": "config"}))  # too late: audio already started
            await ws.send(json.dumps({"type": "end"}))
            rest = [json.loads(m) async for m in ws]
            return got, rest, ws.close_code

    got, rest, code = asyncio.run(run())
    assert [m["code"] for m in got] == ["bad_message", "bad_audio", "bad_audio", "bad_config", "bad_config",
                                        "bad_message"]
    assert "unknown language code" in got[4]["message"]
    assert "whole number" in got[1]["message"] and "NaN" in got[2]["message"] and "f32le" in got[3]["message"]
    assert any(m["type"] == "error" and "first message" in m["message"] for m in rest)
    assert wer(JFK_TEXT, finals_text(rest)) <= 0.05 and code == 1000
    assert server.alive()


def test_client_that_vanishes_mid_stream_does_not_harm_others(server):
    async def vanish():
        ws = await connect(server.ws_url)
        for frame in frames(load_wav("en/jfk.wav"))[:50]:
            await ws.send(frame)
        ws.transport.abort()  # no close handshake: the network went away

    asyncio.run(vanish())
    messages = asyncio.run(stream_file(server.ws_url, load_wav("en/jfk.wav")))
    assert wer(JFK_TEXT, finals_text(messages)) <= 0.05
    deadline = time.monotonic() + 30
    while httpx.get(server.url + "/health").json()["connections"] and time.monotonic() < deadline:
        time.sleep(0.5)
    assert httpx.get(server.url + "/health").json()["connections"] == 0


# -- HTTP -------------------------------------------------------------------------------------


def test_guide_http_transcribe(server):
    with JFK.open("rb") as f:
        r = httpx.post(server.url + "/transcribe", files={"audio": ("jfk.wav", f, "audio/wav")}, timeout=120)
    assert r.status_code == 200, r.text
    body = r.json()
    assert wer(JFK_TEXT, body["text"]) <= 0.05, body["text"]
    assert body["language"] == "en" and body["duration_s"] == pytest.approx(11.0, abs=0.01)
    assert body["segments"][0]["start_s"] == pytest.approx(0.0, abs=0.5)
    assert [w["text"].strip() for w in body["words"]][:3] == ["And", "so", "my"]


def test_openai_client_json_srt_and_translation(server, tmp_path, manifest):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", timeout=120)
    with JFK.open("rb") as f:
        result = client.audio.transcriptions.create(model="whisper-1", file=f)
    assert wer(JFK_TEXT, result.text) <= 0.05, result.text
    with JFK.open("rb") as f:
        srt = client.audio.transcriptions.create(model="whisper-1", file=f, response_format="srt")
    assert srt.startswith("1\n00:00:00,000 --> ") and "ask not what your country" in srt
    with JFK.open("rb") as f:
        verbose = client.audio.transcriptions.create(model="whisper-1", file=f, response_format="verbose_json",
                                                     timestamp_granularities=["word"])
    assert verbose.language == "en" and verbose.duration == pytest.approx(11.0, abs=0.01)
    assert verbose.words[0].word == "And" and verbose.words[-1].end <= 11.0
    assert verbose.segments[0].avg_logprob < 0 and verbose.segments[0].tokens
    with (AUDIO_DIR / "ko" / "test_ko.wav").open("rb") as f:
        english = client.audio.translations.create(model="whisper-1", file=f)
    assert english.text.isascii() and len(english.text.split()) >= 4, english.text
    with pytest.raises(openai.BadRequestError, match="not served here"):
        with JFK.open("rb") as f:
            client.audio.transcriptions.create(model="gpt-4o-transcribe", file=f)


def test_bad_uploads_are_clear_400s(server, tmp_path):
    r = httpx.post(server.url + "/transcribe", files={"audio": ("notes.txt", b"not audio at all", "text/plain")})
    assert r.status_code == 400 and "cannot decode" in r.json()["error"]["message"]
    r = httpx.post(server.url + "/transcribe", files={"audio": ("empty.wav", b"", "audio/wav")})
    assert r.status_code == 400 and "empty" in r.json()["error"]["message"]
    r = httpx.post(server.url + "/transcribe", data={"language": "en"})
    assert r.status_code == 422 and "audio" in r.json()["error"]["message"]
    with JFK.open("rb") as f:
        r = httpx.post(server.url + "/transcribe", files={"audio": f}, data={"language": "klingon"})
    assert r.status_code == 400 and "unknown language code 'klingon'" in r.json()["error"]["message"]
    schema = httpx.get(server.url + "/openapi.json").json()
    assert {"/transcribe", "/v1/audio/transcriptions", "/v1/audio/translations", "/health"} <= set(schema["paths"])
    assert server.alive()


# -- limits and safety ------------------------------------------------------------------------


KEY = {"Authorization": "Bearer s3cret"}


def test_api_key_is_required(strict_server):
    assert httpx.get(strict_server.url + "/health").status_code == 200  # liveness stays open
    with JFK.open("rb") as f:
        r = httpx.post(strict_server.url + "/transcribe", files={"audio": f})
    assert r.status_code == 401 and "API key" in r.json()["error"]["message"]
    with pytest.raises(InvalidStatus) as refused:
        asyncio.run(stream_file(strict_server.ws_url, load_wav("en/jfk.wav")))
    assert refused.value.response.status_code == 403
    messages = asyncio.run(stream_file(strict_server.ws_url + "?api_key=s3cret", load_wav("en/jfk.wav")))
    assert wer(JFK_TEXT, finals_text(messages)) <= 0.1


def test_foreign_origin_is_refused(strict_server):
    with pytest.raises(InvalidStatus):
        asyncio.run(stream_file(strict_server.ws_url, load_wav("en/jfk.wav"),
                                headers={**KEY, "Origin": "https://evil.example"}))


def test_full_server_refuses_with_1013_and_admitted_streams_finish(strict_server):
    async def run():
        async def holder():
            return await stream_file(strict_server.ws_url, load_wav("en/jfk.wav"), headers=KEY, pace_s=0.1)

        held = [asyncio.create_task(holder()) for _ in range(2)]
        await asyncio.sleep(2.0)
        async with connect(strict_server.ws_url, additional_headers=KEY) as ws:
            refusal = json.loads(await ws.recv())
            with pytest.raises(ConnectionClosed):
                await ws.recv()
            code = ws.close_code
        return refusal, code, await asyncio.gather(*held)

    refusal, code, held = asyncio.run(run())
    assert code == 1013 and refusal["code"] == "server_full" and "limit of 2" in refusal["message"]
    for messages in held:
        assert wer(JFK_TEXT, finals_text(messages)) <= 0.1


def test_oversized_frame_and_upload_and_idle_client(strict_server, tmp_path):
    async def big_frame():
        async with connect(strict_server.ws_url, additional_headers=KEY) as ws:
            await ws.send(np.zeros(100 * 1024 // 4, dtype="<f4").tobytes())  # 100 KiB > 64 KiB
            message = json.loads(await ws.recv())
            with pytest.raises(ConnectionClosed):
                await ws.recv()
            return message, ws.close_code

    message, code = asyncio.run(big_frame())
    assert message["code"] == "frame_too_big" and code == 1009

    async def idle():
        async with connect(strict_server.ws_url, additional_headers=KEY) as ws:
            started = time.monotonic()
            message = json.loads(await ws.recv())
            with pytest.raises(ConnectionClosed):
                await ws.recv()
            return message, ws.close_code, time.monotonic() - started

    message, code, waited = asyncio.run(idle())
    assert message["code"] == "idle_timeout" and code == 1001 and 2.5 <= waited <= 10

    big = tmp_path / "big.wav"
    big.write_bytes(b"RIFF" + b"\x00" * (2 << 20))
    with big.open("rb") as f:
        r = httpx.post(strict_server.url + "/v1/audio/transcriptions", headers=KEY,
                       files={"file": f}, data={"model": "whisper-1"})
    assert r.status_code == 413 and "limit" in r.json()["error"]["message"]
    assert strict_server.alive()


def test_client_that_stops_without_end_still_gets_its_finals(strict_server):
    """`ffmpeg … | websocat -n --binary`: input ends, no end message; the idle timeout flushes."""
    async def run():
        async with connect(strict_server.ws_url, additional_headers=KEY) as ws:
            for frame in frames(load_wav("en/jfk.wav")):
                await ws.send(frame)
            messages = [json.loads(m) async for m in ws]
            return messages, ws.close_code

    messages, code = asyncio.run(run())
    assert code == 1000 and messages[-1]["type"] == "done"
    assert any(m["type"] == "error" and m["code"] == "idle_timeout" for m in messages)
    assert wer(JFK_TEXT, finals_text(messages)) <= 0.1, finals_text(messages)


def test_english_only_model_refuses_translation_clearly(strict_server):
    with (AUDIO_DIR / "ko" / "test_ko.wav").open("rb") as f:
        r = httpx.post(strict_server.url + "/v1/audio/translations", headers=KEY,
                       files={"file": f}, data={"model": "whisper-1"}, timeout=60)
    assert r.status_code == 400 and "English-only" in r.json()["error"]["message"]


# -- browser page -----------------------------------------------------------------------------


def chromium_path() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.fail("Chromium is needed for the browser test (apt install chromium); .ci/run installs it")


def test_browser_page_transcribes_a_fake_microphone(server):
    """The page at / with Chromium's fake microphone playing jfk.wav: the sentence appears."""
    playwright = pytest.importorskip("playwright.sync_api")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run",
            "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={JFK}",
        ])
        try:
            page = browser.new_page()
            page.goto(server.url + "/")
            page.click("#start")
            page.wait_for_function(
                "document.getElementById('final').textContent.toLowerCase()"
                ".includes('what you can do for your country')",
                timeout=90_000)
            page.click("#stop")
            page.wait_for_function("document.getElementById('status').textContent === 'done'", timeout=60_000)
            shot = ARTIFACTS / "browser-page.png"
            page.screenshot(path=str(shot), full_page=True)
            text = page.text_content("#final") or ""
        finally:
            browser.close()
    assert shot.stat().st_size > 10_000
    # Chromium loops the fake capture file, so the page may show the sentence more than once.
    heard = normalize_text(text)
    assert "my fellow americans" in heard and "not what your country can do for you" in heard, text
