"""The `rtwhisper` command, run as a user runs it: real processes, real ffmpeg, a real audio server."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import AUDIO_DIR, load_wav
from rtwhisper.metrics import normalize_text, wer

pytestmark = pytest.mark.model

JFK = AUDIO_DIR / "en" / "jfk.wav"
JFK_TEXT = "And so my fellow Americans, ask not what your country can do for you, ask what you can do for your country."
RTWHISPER = [sys.executable, "-m", "rtwhisper.cli"]


def run(args: list[str], *, stdin: bytes | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*RTWHISPER, *args], input=stdin, capture_output=True, timeout=timeout,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})


def ffmpeg(*args: str) -> bytes:
    assert shutil.which("ffmpeg"), "ffmpeg is needed (apt install ffmpeg); .ci/run installs it"
    return subprocess.run(["ffmpeg", "-loglevel", "error", *args], check=True, capture_output=True).stdout


def test_transcribe_wav_prints_the_sentence():
    result = run(["transcribe", str(JFK)])
    assert result.returncode == 0, result.stderr
    assert wer(JFK_TEXT, result.stdout.decode()) == 0
    assert b"Traceback" not in result.stderr


@pytest.mark.parametrize(("fmt", "extra"), [("f32le", []), ("s16le", ["--input-format", "s16le"])])
def test_pipe_from_a_real_ffmpeg_process(fmt, extra):
    pcm = subprocess.Popen(["ffmpeg", "-loglevel", "error", "-i", str(JFK), "-f", fmt, "-ar", "16000", "-ac", "1", "-"],
                           stdout=subprocess.PIPE)
    result = subprocess.run([*RTWHISPER, "transcribe", "-", *extra], stdin=pcm.stdout, capture_output=True,
                            timeout=300)
    pcm.wait()
    assert result.returncode == 0, result.stderr
    assert wer(JFK_TEXT, result.stdout.decode()) == 0


def test_pipe_at_another_rate_and_stereo():
    pcm = ffmpeg("-i", str(JFK), "-f", "s16le", "-ar", "44100", "-ac", "2", "-")
    result = run(["transcribe", "-", "--input-format", "s16le", "--sample-rate", "44100", "--channels", "2"], stdin=pcm)
    assert result.returncode == 0, result.stderr
    assert wer(JFK_TEXT, result.stdout.decode()) <= 0.05


@pytest.mark.parametrize("suffix", [".mp3", ".ogg", ".m4a", ".mp4"])
def test_compressed_files_give_the_words_of_the_wav(tmp_path, suffix):
    path = tmp_path / f"jfk{suffix}"
    codec = {
        ".mp3": ["-b:a", "64k"],
        ".ogg": ["-c:a", "libopus", "-b:a", "48k"],
        ".m4a": ["-c:a", "aac", "-b:a", "64k"],
        # a video: a test pattern with the clip as its audio track
        ".mp4": ["-f", "lavfi", "-i", "testsrc=size=160x120:rate=10", "-shortest", "-c:v", "mpeg4", "-c:a", "aac"],
    }[suffix]
    ffmpeg("-i", str(JFK), *codec, str(path))
    wav = run(["transcribe", str(JFK)]).stdout.decode()
    result = run(["transcribe", str(path)])
    assert result.returncode == 0, result.stderr
    assert normalize_text(result.stdout.decode()) == normalize_text(wav)


def parse_cues(text: str, separator: str) -> list[tuple[float, float, str]]:
    stamp = r"(\d\d):(\d\d):(\d\d)" + re.escape(separator) + r"(\d\d\d)"
    cues = []
    for m in re.finditer(stamp + r" --> " + stamp + r"\n(.+?)(?:\n\n|\n?$)", text, re.S):
        g = list(map(int, m.groups()[:8]))
        start = g[0] * 3600 + g[1] * 60 + g[2] + g[3] / 1000
        end = g[4] * 3600 + g[5] * 60 + g[6] + g[7] / 1000
        cues.append((start, end, m.group(9).replace("\n", " ")))
    return cues


@pytest.mark.parametrize(("fmt", "separator"), [("srt", ","), ("vtt", ".")])
def test_subtitles_parse_and_their_times_match_the_words(tmp_path, fmt, separator):
    out = tmp_path / f"jfk.{fmt}"
    assert run(["transcribe", str(JFK), "--format", fmt, "--output", str(out)]).returncode == 0
    text = out.read_text()
    if fmt == "vtt":
        assert text.startswith("WEBVTT\n\n")
    else:
        assert text.startswith("1\n00:00:")
    cues = parse_cues(text, separator)
    assert cues and wer(JFK_TEXT, " ".join(c[2] for c in cues)) == 0
    assert all(a < b for a, b, _ in cues) and all(cues[i][1] <= cues[i + 1][0] for i in range(len(cues) - 1))
    events = [json.loads(line) for line in run(["transcribe", str(JFK), "--format", "jsonl"]).stdout.splitlines()]
    words = [w for e in events if e["is_final"] for w in e["words"]]
    assert abs(cues[0][0] - words[0]["start_s"]) < 0.01 and abs(cues[-1][1] - words[-1]["end_s"]) < 0.01
    for w in words:  # every word lies inside a cue
        assert any(a - 0.01 <= w["start_s"] and w["end_s"] <= b + 0.01 for a, b, _ in cues), w


def test_jsonl_events_are_the_processor_events():
    """Streaming (a pipe): partials and finals, and the finals tile every second that was fed."""
    result = run(["transcribe", "-", "--format", "jsonl"], stdin=ffmpeg("-i", str(JFK), "-f", "f32le", "-ar", "16000",
                                                                          "-ac", "1", "-"))
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert {e["type"] for e in events} == {"partial", "final"}
    assert [e["sequence"] for e in events] == list(range(len(events)))
    assert events[-1]["is_final"] and abs(events[-1]["end_s"] - 11.0) < 0.01
    assert wer(JFK_TEXT, " ".join(e["text"] for e in events if e["is_final"])) == 0


def test_a_whole_file_is_transcribed_as_faster_whisper_does(tmp_path):
    """A file without --realtime goes faster-whisper's file way: its words, its segments."""
    from faster_whisper import WhisperModel

    from rtwhisper import resolve_model

    long = tmp_path / "long.wav"  # 40 s of the long file: several of faster-whisper's segments
    ffmpeg("-i", str(AUDIO_DIR / "en" / "long_lj001_0001-0016.wav"), "-t", "40", str(long))
    result = run(["transcribe", str(long), "--format", "jsonl", "--language", "en"])
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert events and all(e["type"] == "final" for e in events)
    model = WhisperModel(resolve_model("base"), device="cpu", compute_type="int8")
    segments, _ = model.transcribe(str(long), language="en", beam_size=1, temperature=0.0, word_timestamps=True)
    plain = [(s.text.strip(), round(s.start, 2), round(s.end, 2)) for s in segments]
    assert len(plain) >= 3
    assert [(e["text"], round(e["start_s"], 2), round(e["end_s"], 2)) for e in events] == plain


def test_the_bundled_sample_works_anywhere(tmp_path):
    """`--sample` needs no file: the clip ships inside the package."""
    from rtwhisper.samples import SAMPLE_TEXT, sample_path

    assert sample_path().is_file() and sample_path().stat().st_size > 300_000
    result = subprocess.run([*RTWHISPER, "transcribe", "--sample"], capture_output=True, timeout=300, cwd=tmp_path,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr
    assert wer(SAMPLE_TEXT, result.stdout.decode()) == 0
    both = run(["transcribe", str(JFK), "--sample"])
    assert both.returncode == 2 and b"not both" in both.stderr


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["transcribe", "/no/such/file.wav"], None, "no such file"),
        (["transcribe", "CORRUPT"], None, "cannot decode"),
        (["transcribe", "-"], b"", "input was empty"),
        (["transcribe"], None, "give a media file"),
        (["transcribe", "-"], b"\x00" * 4001, "stray byte"),
        (["transcribe", "-", "--input-format", "f32le"], b"\xff\xff\xff\x7f" * 400, "NaN or infinite"),
        (["listen", "--input-device", "no-such-device", "--duration", "1"], None, "device"),
        (["transcribe", str(JFK), "--model", "large-v3"], None, "Installed offline models: base, tiny.en"),
        (["transcribe", str(JFK), "--chunk", "1", "--overlap", "2"], None, "overlap_duration must be"),
        (["transcribe", str(JFK), "--language", "english"], None, "unknown language code 'english'"),
        (["serve", "--model", "large-v3"], None, "Installed offline models: base, tiny.en"),
        (["serve", "--max-connections", "0"], None, "max_connections must be a positive integer"),
    ],
)
def test_bad_input_is_one_clear_line_and_a_nonzero_status(tmp_path, args, stdin, message):
    if "CORRUPT" in args:
        corrupt = tmp_path / "corrupt.mp3"
        corrupt.write_bytes(os.urandom(4000))
        args = [str(corrupt) if a == "CORRUPT" else a for a in args]
    result = run(args, stdin=stdin)
    err = result.stderr.decode()
    assert result.returncode == 2
    assert "Traceback" not in err
    assert err.startswith("rtwhisper: error: ") and err.count("\n") == 1 and message in err, err


def test_help_is_useful():
    result = run(["transcribe", "--help"])
    assert result.returncode == 0
    for option in ("--input-format", "--sample-rate", "--preset", "--format", "--chunk", "--overlap", "--beam-size",
                   "--compute-type", "--initial-prompt"):
        assert option in result.stdout.decode()


@pytest.fixture(scope="module")
def pulse_null_sink():
    """A PulseAudio server whose default capture device is the monitor of a null sink."""
    if not shutil.which("pulseaudio"):
        pytest.fail("pulseaudio is needed for the microphone test (apt install pulseaudio); .ci/run installs it")
    if subprocess.run(["pactl", "info"], capture_output=True).returncode != 0:
        subprocess.run(["pulseaudio", "-D", "--exit-idle-time=-1", "-n", "--load=module-native-protocol-unix"],
                       check=True)
        time.sleep(1)
    if "rtw_sink" not in subprocess.run(["pactl", "list", "short", "sinks"], capture_output=True, text=True).stdout:
        subprocess.run(["pactl", "load-module", "module-null-sink", "sink_name=rtw_sink"], check=True)
    subprocess.run(["pactl", "set-default-source", "rtw_sink.monitor"], check=True)
    return "rtw_sink"


def test_listen_hears_real_speech_through_portaudio(pulse_null_sink):
    devices = run(["devices"])
    assert devices.returncode == 0 and "pulse" in devices.stdout.decode()
    listener = subprocess.Popen([*RTWHISPER, "listen", "--input-device", "pulse", "--duration", "16"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(3)  # let the stream open before the clip plays
    subprocess.run(["paplay", f"--device={pulse_null_sink}", str(JFK)], check=True, timeout=60)
    out, err = listener.communicate(timeout=120)
    assert listener.returncode == 0, err
    assert wer(JFK_TEXT, out.decode()) <= 0.1, out


def test_realtime_pacing_replays_a_file_at_the_speed_of_its_audio(tmp_path):
    from rtwhisper.sources import FileSource

    clip = tmp_path / "two_seconds.wav"
    ffmpeg("-i", str(JFK), "-t", "2", str(clip))
    started = time.monotonic()
    blocks = list(FileSource(clip, realtime=True))
    elapsed = time.monotonic() - started
    assert abs(sum(b.duration_s for b in blocks) - 2.0) < 0.01
    assert 1.8 <= elapsed <= 3.0
    started = time.monotonic()
    list(FileSource(clip))
    assert time.monotonic() - started < 0.5


def test_sources_from_python(tmp_path):
    from rtwhisper import RealtimeWhisperProcessor
    from rtwhisper.runner import stream
    from rtwhisper.sources import ArraySource, FileSource

    flac = tmp_path / "jfk.flac"
    ffmpeg("-i", str(JFK), str(flac))
    blocks = list(FileSource(flac))
    assert abs(sum(b.duration_s for b in blocks) - 11.0) < 0.01
    assert all(abs(b.start_s - i * 0.1) < 1e-9 for i, b in enumerate(blocks))
    proc = RealtimeWhisperProcessor(model_name="base", language="en")
    text = " ".join(e.text for e in stream(ArraySource(load_wav("en/jfk.wav")), proc) if e.is_final)
    assert wer(JFK_TEXT, text) == 0
    assert Path(flac).exists()
