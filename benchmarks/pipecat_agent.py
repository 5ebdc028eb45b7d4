"""Pipecat's own Deepgram services against a running ``rtwhisper serve`` (issue #42).

Run with a Python that has ``pipecat-ai[deepgram]`` (``scripts/setup.sh`` makes ``.venv-agents``
for it: Pipecat pins other versions of protobuf than the main environment's Ray does)::

    .venv-agents/bin/python benchmarks/pipecat_agent.py --port 8765 --service flux  jfk.wav
    .venv-agents/bin/python benchmarks/pipecat_agent.py --port 8765 --service listen jfk.wav

The WAV (16 kHz mono 16-bit) goes through a Pipecat pipeline as a voice agent's transport
would deliver it — 20 ms ``InputAudioRawFrame`` s at real-time pace, then ``--silence`` seconds
of silence — into

* ``flux``: ``DeepgramFluxSTTService`` (``url`` = ``ws://HOST:PORT/v2/listen``), Flux's turns;
* ``listen``: Pipecat's Silero ``VADProcessor`` (``stop_secs`` 0.2, its default) then
  ``DeepgramSTTService`` (``base_url`` = ``ws://HOST:PORT``; interim results, ``endpointing``
  300 ms), which sends ``Finalize`` when the VAD says the user stopped — the flow Pipecat's STT
  benchmark times.

It prints one JSON object: every transcription frame (final or interim) with its time from the
first audio frame, and the user-turn frames.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import wave

FRAME_S = 0.02
"""Pipecat transports deliver 20 ms frames."""


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wav")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--service", choices=("flux", "listen"), required=True)
    parser.add_argument("--silence", type=float, default=2.0)
    args = parser.parse_args()

    from pipecat.frames.frames import (
        InputAudioRawFrame,
        InterimTranscriptionFrame,
        ProposedUserStartedSpeakingFrame,
        ProposedUserStoppedSpeakingFrame,
        TranscriptionFrame,
        UserStartedSpeakingFrame,
        UserStoppedSpeakingFrame,
        VADUserStoppedSpeakingFrame,
    )
    from pipecat.pipeline.pipeline import Pipeline
    from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
    from pipecat.tests.utils import SleepFrame, run_test

    with wave.open(args.wav) as w:
        assert w.getframerate() == 16000 and w.getnchannels() == 1 and w.getsampwidth() == 2, "16 kHz mono 16-bit"
        pcm = w.readframes(w.getnframes())
    pcm += b"\0\0" * int(args.silence * 16000)
    step = int(FRAME_S * 16000) * 2

    seen: list[dict] = []
    t0: list[float] = []
    sent = [0]  # audio frames that entered the pipeline
    lag = [0.0]

    class Clock(FrameProcessor):
        """Stamps audio as it enters and every transcription or turn frame that comes out."""

        def __init__(self, first: bool) -> None:
            super().__init__()
            self.first = first

        async def process_frame(self, frame, direction: FrameDirection) -> None:
            await super().process_frame(frame, direction)
            if self.first and isinstance(frame, InputAudioRawFrame):
                if not t0:
                    t0.append(time.monotonic())
                lag[0] = time.monotonic() - t0[0] - sent[0] * FRAME_S
                sent[0] += 1
            if not self.first and t0:
                t = round(time.monotonic() - t0[0], 3)
                if isinstance(frame, (TranscriptionFrame, InterimTranscriptionFrame)):
                    seen.append({"t": t, "final": isinstance(frame, TranscriptionFrame), "text": frame.text})
                elif isinstance(frame, (UserStartedSpeakingFrame, UserStoppedSpeakingFrame,
                                        ProposedUserStartedSpeakingFrame, ProposedUserStoppedSpeakingFrame,
                                        VADUserStoppedSpeakingFrame)):
                    seen.append({"t": t, "frame": type(frame).__name__})
            await self.push_frame(frame, direction)

    if args.service == "flux":
        from pipecat.services.deepgram.flux.stt import DeepgramFluxSTTService

        stt = DeepgramFluxSTTService(api_key="unused", url=f"ws://127.0.0.1:{args.port}/v2/listen",
                                     sample_rate=16000)
        processors = [Clock(True), stt, Clock(False)]
    else:
        from pipecat.audio.vad.silero import SileroVADAnalyzer
        from pipecat.processors.audio.vad_processor import VADProcessor
        from pipecat.services.deepgram.stt import DeepgramSTTService

        stt = DeepgramSTTService(api_key="unused", base_url=f"ws://127.0.0.1:{args.port}", sample_rate=16000,
                                 settings=DeepgramSTTService.Settings(endpointing=300, interim_results=True))
        processors = [Clock(True), VADProcessor(vad_analyzer=SileroVADAnalyzer(sample_rate=16000)), stt,
                      Clock(False)]

    start: list[float] = []

    class PacedSleep(SleepFrame):  # type: ignore[misc]
        """Sleeps until the next frame's real-time instant: a fixed sleep per frame drifts (~5 %)."""

        def __init__(self, due_s: float) -> None:
            super().__init__(sleep=0.0)
            self.due_s = due_s

        def __getattribute__(self, name: str):  # type: ignore[no-untyped-def]
            if name != "sleep":
                return super().__getattribute__(name)
            due_s = super().__getattribute__("due_s")
            if not start:
                start.append(time.monotonic() - due_s + FRAME_S)
            return max(0.0, start[0] + due_s - time.monotonic())

    frames: list = []
    for k, i in enumerate(range(0, len(pcm), step)):
        frames += [InputAudioRawFrame(audio=pcm[i:i + step], sample_rate=16000, num_channels=1),
                   PacedSleep((k + 1) * FRAME_S)]
    frames.append(SleepFrame(sleep=1.0))
    await run_test(Pipeline(processors), frames_to_send=frames, start_timeout=30.0)
    print(json.dumps({"service": args.service, "frames": seen, "audio_lag_s": round(lag[0], 3)}))


if __name__ == "__main__":
    asyncio.run(main())
