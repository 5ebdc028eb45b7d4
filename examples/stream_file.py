"""Stream a WAV file through RealtimeWhisperProcessor as if it were live, printing partials and finals.

    python examples/stream_file.py [FILE.wav] [--preset low_latency] [--model base]

Defaults to ../shared/audio/en/jfk.wav (or $RTWHISPER_AUDIO_DIR/en/jfk.wav).
"""

from __future__ import annotations

import argparse
import os
import sys
import wave
from pathlib import Path

import numpy as np

from rtwhisper import RealtimeWhisperProcessor, RtWhisperError

DEFAULT_AUDIO = Path(os.environ.get("RTWHISPER_AUDIO_DIR", Path(__file__).resolve().parents[2] / "shared" / "audio"))


def read_wav(path: Path) -> tuple[np.ndarray, int, int]:
    with wave.open(str(path)) as w:
        if w.getsampwidth() != 2:
            raise SystemExit(f"{path}: only 16-bit PCM WAV is read by this example")
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        return data.reshape(-1, w.getnchannels()) if w.getnchannels() > 1 else data, w.getframerate(), w.getnchannels()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file", nargs="?", type=Path, default=DEFAULT_AUDIO / "en" / "jfk.wav")
    parser.add_argument("--preset", default="low_latency")
    parser.add_argument("--model", default=None, help="model size name or folder (overrides the preset's)")
    parser.add_argument("--language", default=None)
    args = parser.parse_args()
    audio, rate, channels = read_wav(args.file)
    overrides: dict[str, object] = {"sample_rate": rate, "channels": channels}
    if args.model:
        overrides["model_name"] = args.model
    if args.language:
        overrides["language"] = args.language
    try:
        proc = RealtimeWhisperProcessor.from_preset(args.preset, **overrides)
    except RtWhisperError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    block = rate // 10  # 0.1 s blocks, as a microphone callback would deliver them
    for i in range(0, len(audio), block):
        proc.feed(audio[i:i + block])
        for event in proc.results():
            show(event)
    for event in proc.finish():
        show(event)
    print(f"[{proc.fed_duration_s:.1f} s of audio, {proc.compute_s:.1f} s of compute, "
          f"real-time factor {proc.compute_s / max(proc.fed_duration_s, 1e-9):.2f}]", file=sys.stderr)
    return 0


def show(event) -> None:
    kind = "FINAL  " if event.is_final else "partial"
    if event.text or event.is_final:
        print(f"{kind} #{event.segment_id} [{event.start_s:6.2f}-{event.end_s:6.2f}] {event.text}", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
