"""End of speech → final and → end of turn, as a voice agent sees them (issue #42).

Pipecat's public STT benchmark times, over real agent turns, how long after the user stops
speaking the final transcript arrives. This does the same against a real ``rtwhisper serve``
with real-time clients on loopback (``../shared/MEASURING.md``'s pacing: frame *k* of 0.1 s at
``t0 + k × 0.1 s``): the shared English clips, each followed by ``GAP_S`` of silence, as one
stream of turns, through each protocol an agent uses —

* ``/v1/listen`` with ``endpointing=300`` and interim results: the end of a turn is the
  ``speech_final`` result; and ``v1-finalize``, the same with a ``Finalize`` message 0.2 s after
  each clip's speech ends — what Pipecat's Deepgram service sends when its VAD (``stop_secs``
  0.2) says the user stopped, the flow its STT benchmark times;
* ``/v2/listen`` (Deepgram Flux's turn API, default thresholds, ``eager_eot_threshold=0.5``):
  the end of a turn is ``EndOfTurn``, and ``EagerEndOfTurn`` is timed too;
* the native WebSocket with a silence-only rule (``endpoint_silence_s`` =
  ``endpoint_max_silence_s`` = 0.3 s), for the false cut-ins it makes.

Each clip's speech end is its last word's end in an offline faster-whisper run. For each clip:
the time from that end to the first final holding its last word, and to the turn end after it.
A *false cut-in* is a turn end that comes while the clip's speech goes on (its words end more than
``CUT_MARGIN_S`` before the clip's last word); a *missed end* is a clip after which no turn ended
before the next one began.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .data import load_audio, load_manifest
from .realtime import offline_timeline, start_server

GAP_S = 1.5
"""Silence after each clip: a user waiting for the agent's answer."""
CUT_MARGIN_S = 0.3
"""How far before a clip's last word a turn end counts as cutting in."""
FRAME_S = 0.1
VAD_STOP_S = 0.2
"""Pipecat's VAD ``stop_secs``: its Deepgram service sends ``Finalize`` this long after the user
stops (``v1-finalize`` sends it then, timed from the offline word timeline, as a VAD would)."""


def _stats(values: list[float]) -> dict[str, float | int | None]:
    """p50 / p95 / max (Pipecat's benchmark reports p50 and p95) and how many."""
    if not values:
        return {"p50": None, "p95": None, "max": None, "n": 0}
    return {"p50": float(np.percentile(values, 50)), "p95": float(np.percentile(values, 95)),
            "max": float(max(values)), "n": len(values)}


@dataclass(frozen=True)
class Clip:
    path: str
    start_s: float  # where the clip starts in the stream
    first_word_s: float  # its first and last word, on the stream clock (offline timeline)
    speech_end_s: float


def conversation(folder: Path, model: str, *, limit: int | None = None) -> tuple[np.ndarray, list[Clip]]:
    """The shared English clips (not the long files), each followed by ``GAP_S`` of silence, and their times."""
    from ..models import resolve_model

    entries = [e for e in load_manifest(folder) if e["lang"] == "en" and "long" not in e["path"]]
    entries = entries[:limit] if limit else entries
    path = resolve_model(model)
    pieces, clips, offset = [], [], 0.0
    for entry in entries:
        audio = load_audio(folder / entry["path"])
        timeline = offline_timeline(path, audio, "en")
        if timeline:
            clips.append(Clip(entry["path"], offset, offset + timeline[0].start_s, offset + timeline[-1].end_s))
        pieces += [audio, np.zeros(int(GAP_S * 16000), np.float32)]
        offset += len(audio) / 16000 + GAP_S
    return np.concatenate(pieces), clips


async def _stream(url: str, audio: np.ndarray, *, first: dict[str, Any] | None, pcm16: bool,
                  end: dict[str, Any], cues: list[tuple[float, dict[str, Any]]] | None = None,
                  ) -> list[tuple[float, dict[str, Any]]]:
    """Send ``audio`` in real time, and each cue's message once the audio reaches its time; every
    message received with its receive time (seconds from the first frame)."""
    import websockets

    cues = list(cues or [])

    messages: list[tuple[float, dict[str, Any]]] = []
    step = int(FRAME_S * 16000)
    async with websockets.connect(url, max_size=None, open_timeout=30) as ws:
        if first is not None:
            await ws.send(json.dumps(first))
        t0 = time.monotonic()

        async def receive() -> None:
            try:
                async for raw in ws:
                    messages.append((time.monotonic() - t0, json.loads(raw)))
            except websockets.ConnectionClosed:
                pass

        receiver = asyncio.create_task(receive())
        for k, i in enumerate(range(0, len(audio), step)):
            delay = t0 + k * FRAME_S - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            chunk = audio[i:i + step]
            await ws.send((np.round(chunk * 32767).astype("<i2") if pcm16 else chunk.astype("<f4")).tobytes())
            while cues and cues[0][0] <= (k + 1) * FRAME_S + 1e-9:
                await ws.send(json.dumps(cues.pop(0)[1]))
        await ws.send(json.dumps(end))
        await asyncio.wait_for(receiver, timeout=120)
    return messages


def _turn_ends(protocol: str, messages: list[tuple[float, dict[str, Any]]]) -> list[tuple[float, float]]:
    """(receive time, end of the turn's last word) for each end of turn that holds words (an empty
    final over silence ends no turn)."""
    out = []
    for t, m in messages:
        if protocol == "v1" and m.get("type") == "Results" and m["channel"]["alternatives"][0]["words"] and (
                m.get("speech_final") or (m.get("is_final") and m.get("from_finalize"))):  # Pipecat's end
            out.append((t, m["channel"]["alternatives"][0]["words"][-1]["end"]))
        elif protocol == "v2" and m.get("type") == "TurnInfo" and m.get("event") == "EndOfTurn" and m["words"]:
            out.append((t, m["words"][-1]["end"]))
        elif protocol == "native" and m.get("type") == "final" and m.get("end_of_utterance") and m.get("words"):
            out.append((t, m["words"][-1]["end_s"]))
    return out


def _final_words(protocol: str, messages: list[tuple[float, dict[str, Any]]]) -> list[tuple[float, float]]:
    """(receive time, word end) of every final word (v2: the words of each EndOfTurn)."""
    out = []
    for t, m in messages:
        if protocol == "v1" and m.get("type") == "Results" and m.get("is_final"):
            out += [(t, w["end"]) for w in m["channel"]["alternatives"][0]["words"]]
        elif protocol == "v2" and m.get("type") == "TurnInfo" and m.get("event") == "EndOfTurn":
            out += [(t, w["end"]) for w in m["words"]]
        elif protocol == "native" and m.get("type") == "final":
            out += [(t, w["end_s"]) for w in m.get("words", [])]
    return out


def score_turns(protocol: str, messages: list[tuple[float, dict[str, Any]]], clips: list[Clip]) -> dict[str, Any]:
    """End of speech → final and → turn end per clip; false cut-ins and missed ends."""
    ends = _turn_ends(protocol, messages)
    finals = _final_words(protocol, messages)
    to_final, to_end, to_eager, cut_ins, missed = [], [], [], 0, 0
    for i, clip in enumerate(clips):
        following = clips[i + 1].first_word_s if i + 1 < len(clips) else float("inf")
        last = [t for t, end_s in finals if clip.speech_end_s - 0.5 <= end_s <= following - 0.1]
        if last:
            to_final.append(min(last) - clip.speech_end_s)
        closing = [t for t, end_s in ends if clip.speech_end_s - CUT_MARGIN_S <= end_s < following - 0.1]
        if closing:
            to_end.append(min(closing) - clip.speech_end_s)
        else:
            missed += 1
        cut_ins += sum(1 for _, end_s in ends if clip.first_word_s <= end_s < clip.speech_end_s - CUT_MARGIN_S)
        if protocol == "v2":
            eager = [t for t, m in messages if m.get("type") == "TurnInfo" and m.get("event") == "EagerEndOfTurn"
                     and m["words"] and clip.speech_end_s - CUT_MARGIN_S <= m["words"][-1]["end"] < following]
            if eager:
                to_eager.append(min(eager) - clip.speech_end_s)
    return {"protocol": protocol, "clips": len(clips), "speech_end_to_final_s": _stats(to_final),
            "speech_end_to_turn_end_s": _stats(to_end),
            "speech_end_to_eager_s": _stats(to_eager) if protocol == "v2" else None,
            "false_cut_ins": cut_ins, "missed_ends": missed, "turn_ends": len(ends)}


PROTOCOLS: dict[str, tuple[str, dict[str, Any] | None, bool, dict[str, Any]]] = {
    "v1": ("v1/listen?model=nova-3&encoding=linear16&sample_rate=16000&language=en&interim_results=true"
           "&endpointing=300&punctuate=true", None, True, {"type": "CloseStream"}),
    "v2": ("v2/listen?model=flux-general-en&encoding=linear16&sample_rate=16000&eager_eot_threshold=0.5",
           None, True, {"type": "CloseStream"}),
    "v1-finalize": ("v1/listen?model=nova-3&encoding=linear16&sample_rate=16000&language=en&interim_results=true"
                    "&endpointing=300&punctuate=true", None, True, {"type": "CloseStream"}),
    "native": ("", {"type": "config", "language": "en", "partials": True, "endpoint_silence_s": 0.3,
                    "endpoint_max_silence_s": 0.3}, False, {"type": "end"}),
}
"""Each protocol's path and query, first message, PCM16 or float32, and end message."""


def turns_run(folder: Path, model: str, protocols: tuple[str, ...] = ("v1", "v2", "native"), *,
              limit: int | None = None, server_args: list[str] | None = None) -> list[dict[str, Any]]:
    """One server, one real-time stream of turns per protocol; the scores."""
    audio, clips = conversation(folder, model, limit=limit)
    server = start_server(model, extra=server_args)
    out = []
    try:
        for protocol in protocols:
            path, first, pcm16, end = PROTOCOLS[protocol]
            cues = [(c.speech_end_s + VAD_STOP_S, {"type": "Finalize"}) for c in clips] \
                if protocol == "v1-finalize" else []
            messages = asyncio.run(_stream(server.url + path, audio, first=first, pcm16=pcm16, end=end, cues=cues))
            out.append({"model": model, **score_turns("v1" if protocol == "v1-finalize" else protocol, messages,
                                                      clips), "protocol": protocol})
    finally:
        server.stop()
    return out


def turn_lines(rows: list[dict[str, Any]]) -> list[str]:
    """A markdown table of :func:`turns_run` rows."""
    names = {"v1": "/v1/listen endpointing=300", "v1-finalize": "/v1/listen + Finalize at VAD stop (Pipecat)",
             "v2": "/v2/listen (Flux) defaults",
             "native": "native, silence-only 0.3 s"}

    def pair(p: dict[str, Any] | None) -> str:
        if not p or p.get("p50") is None:
            return "–"
        return f"{p['p50']:.2f} / {p['p95']:.2f}"

    lines = ["| model | protocol | end of speech → final p50 / p95 s | → end of turn p50 / p95 s | "
             "→ eager p50 / p95 s | false cut-ins | missed ends | clips |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {names.get(r['protocol'], r['protocol'])} | {pair(r['speech_end_to_final_s'])}"
                     f" | {pair(r['speech_end_to_turn_end_s'])} | {pair(r['speech_end_to_eager_s'])} | "
                     f"{r['false_cut_ins']} | {r['missed_ends']} | {r['clips']} |")
    return lines
