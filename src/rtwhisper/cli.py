"""The ``rtwhisper`` command: transcribe a file or a pipe, listen to a microphone, list devices, serve.

Exit status: 0 on success, 2 with a one-line ``rtwhisper: error: …`` for bad input or
options (unreadable file, wrong format, unknown option value), 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any

import numpy as np

from .audio import ACCEPTED_SAMPLE_RATES, BYTES_FORMATS
from .engine import COMPUTE_TYPES, DEVICES
from .engine.layout import default_cpu_threads
from .errors import ConfigError, RtWhisperError
from .events import TranscriptEvent
from .options import KNOBS, Knob
from .presets import PRESETS
from .scheduling import STREAM_CPU
from .subtitles import cues_from_words, to_srt, to_vtt
from .text import SENTENCE_ENDS

FORMATS = ("text", "jsonl", "srt", "vtt")


def _at_least(minimum: float, parse: Callable[[str], Any], noun: str) -> Callable[[str], Any]:
    """An argparse type: ``parse`` the value, and refuse one under ``minimum``."""

    def check(value: str) -> Any:
        try:
            number = parse(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {noun}: {value!r}") from None
        if number < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum:g}: {value!r}")
        return number

    return check


_positive_float = _at_least(0, float, "a number")
_count = _at_least(1, int, "a whole number")


_METAVARS = {"seconds": "S", "probability": "P", "integer": "N", "text": "TEXT", "language": "CODE", "choice": "NAME",
             "terms": "A,B"}


def _knob_value(knob: Knob) -> Callable[[str], Any]:
    """An argparse type for one knob: the text read as its kind (the processor checks the range, so that
    a bad value is the command's one-line error)."""

    def read(text: str) -> Any:
        if knob.optional and text.lower() == "none":
            return None
        try:
            return float(text) if knob.kind in ("seconds", "probability") \
                else int(text) if knob.kind == "integer" and not knob.choices else text
        except ValueError:
            raise argparse.ArgumentTypeError(f"{knob.name} must be {knob.accepts()}, got {text!r}") from None

    return read


def _add_recognition_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("recognition")
    group.add_argument("--preset", choices=sorted(PRESETS), default="low_latency",
                       help="named settings (default: low_latency); the options below override it")
    group.add_argument("--model", help="model size name (tiny.en, base, …) or CTranslate2 model folder")
    group.add_argument("--device", choices=DEVICES, help="auto (default), cuda or cpu")
    group.add_argument("--compute-type", choices=COMPUTE_TYPES, help="auto: float16 on CUDA, int8 on CPU")
    group.add_argument("--no-vad", action="store_true", help="do not skip non-speech with Silero VAD")
    for name, knob in KNOBS.items():  # the stream's knobs, made from the one table
        if knob.group != "input":
            group.add_argument(f"--{(knob.flag or name).replace('_', '-')}", dest=name, type=_knob_value(knob),
                               default=argparse.SUPPRESS, metavar=_METAVARS.get(knob.kind, "X"),
                               help=f"{knob.help}; {knob.accepts().replace(', or None', ', or none')}")
    out = parser.add_argument_group("output")
    out.add_argument("--format", choices=FORMATS, default="text",
                     help="text: live partials and finals (default); jsonl: one event a line; srt, vtt: subtitles")
    out.add_argument("--output", "-o", metavar="FILE", help="write here instead of standard output")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rtwhisper", description="Real-time speech recognition with Whisper.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    _add_transcribe(sub)
    _add_listen(sub)
    _add_serve(sub)
    _add_bench(sub)
    return parser


def _add_transcribe(sub: Any) -> None:
    """The transcribe command's arguments."""
    p = sub.add_parser("transcribe", help="transcribe a media file, or raw PCM from stdin ('-')",
                       description="Transcribe a media file (anything ffmpeg decodes) or raw PCM from stdin.",
                       epilog="example: ffmpeg -i talk.mp3 -f f32le -ar 16000 -ac 1 - | rtwhisper transcribe -")
    p.add_argument("input", nargs="?", help="a media file, or - for raw PCM on standard input")
    p.add_argument("--sample", action="store_true",
                   help="the bundled sample (jfk.wav, 11 s, public domain) instead of a file")
    p.add_argument("--input-format", choices=BYTES_FORMATS, default="f32le", help="raw PCM layout for '-'")
    p.add_argument("--sample-rate", type=int, default=16000, choices=ACCEPTED_SAMPLE_RATES, metavar="HZ",
                   help="sample rate of raw PCM on stdin (default 16000)")
    p.add_argument("--channels", type=int, default=1, metavar="N", help="channels of raw PCM on stdin (default 1)")
    p.add_argument("--realtime", action="store_true", help="replay a file at the speed of its audio, as if live")
    _add_recognition_options(p)



def _add_listen(sub: Any) -> None:
    """The listen and devices commands' arguments."""
    p = sub.add_parser("listen", help="transcribe a microphone live", description="Transcribe a microphone live.")
    p.add_argument("--input-device", metavar="NAME|INDEX", help="input device (see 'rtwhisper devices')")
    p.add_argument("--duration", type=_positive_float, metavar="S", help="stop after this many seconds")
    _add_recognition_options(p)

    sub.add_parser("devices", help="list audio input devices", description="List audio input devices.")



def _add_serve(sub: Any) -> None:
    """The serve command's arguments."""
    p = sub.add_parser("serve", help="WebSocket + HTTP server with a browser page (extra [server])",
                       description="Serve WebSocket streaming (ws://HOST:PORT/), POST /transcribe, the "
                                   "OpenAI-compatible /v1/audio/* API and a browser page, on one model.",
                       epilog="example: rtwhisper serve --model base --port 8765")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; 0.0.0.0 exposes it)")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765, as in the guide)")
    p.add_argument("--preset", choices=sorted(PRESETS), default="low_latency",
                   help="streams' default settings; a client's config message may choose another")
    p.add_argument("--model", help="the one model all streams and uploads use (default: the preset's)")
    p.add_argument("--device", choices=DEVICES, default="auto", help="auto (default), cuda or cpu")
    p.add_argument("--compute-type", choices=COMPUTE_TYPES, default="auto", help="auto: float16 on CUDA, int8 on CPU")
    p.add_argument("--max-connections", type=int, default=16, metavar="N", help="concurrent streams (default 16)")
    p.add_argument("--max-frame-kb", type=int, default=16384, metavar="KB",
                   help="largest WebSocket frame (16384: OpenAI's Realtime API takes 15 MiB appends)")
    p.add_argument("--max-upload-mb", type=int, default=100, metavar="MB", help="largest HTTP upload (100)")
    p.add_argument("--max-upload-s", type=_positive_float, default=3600.0, metavar="S",
                   help="longest decoded upload, in seconds of audio (3600)")
    p.add_argument("--stall-flush", type=_positive_float, default=0.6, metavar="S",
                   help="a stream that sends no audio for this long gets its last words final (0.6)")
    p.add_argument("--max-batch", type=int, default=8, metavar="N",
                   help="windows of different streams decoded together, at most (8)")
    p.add_argument("--cpu-threads", type=int, default=0, metavar="N",
                   help="CTranslate2 threads on the CPU per worker (0: the cores divided among the workers)")
    p.add_argument("--workers", type=int, default=0, metavar="N",
                   help="engine calls that run at once, each on its share of the cores (0: 2 on a CPU, 1 on a GPU)")
    p.add_argument("--no-decode-ahead", dest="decode_ahead", action="store_false",
                   help="decode each stream's updates one at a time, even with a worker to spare "
                        "(by default a lone stream's next update starts while the one before runs)")
    p.add_argument("--stream-cpu", type=_positive_float, default=STREAM_CPU, metavar="CORES",
                   help=f"cores one stream's updates may use on average on a CPU (default {STREAM_CPU:g}): "
                        "where updates cost more, they come less often")
    p.add_argument("--max-delay", type=_positive_float, default=1.0, metavar="S",
                   help="refuse new streams while due windows wait longer than this (1.0)")
    p.add_argument("--idle-timeout", type=_positive_float, default=60.0, metavar="S",
                   help="close a stream that sends nothing for this long (60)")
    p.add_argument("--max-backlog", type=_positive_float, default=600.0, metavar="S",
                   help="audio a stream may send ahead of recognition before it is closed (600)")
    p.add_argument("--api-key", metavar="KEY",
                   help="require this key (Authorization: Bearer, X-API-Key, or ?api_key= on WebSocket); "
                        "also read from RTWHISPER_API_KEY")
    p.add_argument("--allow-origin", action="append", default=[], metavar="ORIGIN",
                   help="a browser origin allowed besides the server's own (repeatable; * for any)")
    p.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                   help="a Host name the server answers to (repeatable; * for any; default: the loopback "
                        "names when bound to loopback)")
    _add_ray_options(p)



def _add_ray_options(p: argparse.ArgumentParser) -> None:
    """serve's replicas on Ray Serve."""
    ray = p.add_argument_group("replicas on Ray Serve (extra [ray])")
    ray.add_argument("--replicas", type=int, metavar="N",
                     help="serve from N replicas, each with its own model, behind Ray's proxy on --port")
    ray.add_argument("--min-replicas", type=int, metavar="N", help="autoscale from N replicas (with --max-replicas)")
    ray.add_argument("--max-replicas", type=int, metavar="N", help="autoscale up to N replicas")
    ray.add_argument("--target-streams", type=int, default=2, metavar="N",
                     help="live streams per replica that autoscaling aims at (default 2: 2 CPU cores, tiny.en)")
    ray.add_argument("--drain", type=_positive_float, default=60.0, metavar="S",
                     help="how long a replica that is going keeps serving its streams (60)")
    ray.add_argument("--cpus-per-replica", type=float, default=1.0, metavar="N", help="Ray CPUs per replica (1)")
    ray.add_argument("--gpus-per-replica", type=float, default=0.0, metavar="N",
                     help="Ray GPUs per replica (0; 0.5 puts two replicas on a GPU)")
    ray.add_argument("--ray-address", metavar="ADDR",
                     help="deploy on this Ray cluster (e.g. ray://head:10001 or auto) instead of a local one")


def _add_bench(sub: Any) -> None:
    """The bench command's arguments."""
    p = sub.add_parser("bench", help="measure accuracy, latency and cost on a manifest folder",
                       description="Run the benchmarks on any folder with a manifest.jsonl and write results.json, "
                                   "results.md and PNG plots.")
    p.add_argument("folder", help="folder with manifest.jsonl (path, lang, text, duration_s, long?, synthetic?)")
    p.add_argument("--out", default="benchmarks/results/latest", help="where to write the results")
    p.add_argument("--quick", action="store_true", help="main configurations only (no presets, no sweep)")
    p.add_argument("--long", choices=("main", "all", "none"), default="main",
                   help="long files for the first configuration only (default), for all, or none")
    p.add_argument("--grid-phases", type=_count, default=5, metavar="N",
                   help="the first configuration's accuracy as a mean over N unaware runs, the audio 0, 0.1, … s "
                        "late (default 5: every phase of a 0.5 s update; 1 for one run)")
    p.add_argument("--no-capacity", action="store_true",
                   help="skip the capacity search (real servers with 1, 2, 4… real-time clients)")
    p.add_argument("--no-realtime", action="store_true",
                   help="skip every real-time run (real server and clients); the virtual clock only")
    p.add_argument("--slow-cpu", action="store_true",
                   help="run the real-time section again at half speed (one busy process per core) and report both")
    p.add_argument("--model", help="measure only this model (main settings, 0.5 s / 0.2 s)")
    p.add_argument("--chunk", type=_positive_float, default=0.5, metavar="S")
    p.add_argument("--overlap", type=_positive_float, default=0.2, metavar="S")
    p.add_argument("--beam-size", type=int, default=1, metavar="N")
    p.add_argument("--device", choices=DEVICES, default="cpu")
    p.add_argument("--compute-type", choices=COMPUTE_TYPES, default="auto")


def _processor(args: argparse.Namespace, **overrides: Any) -> Any:
    from .processor import RealtimeWhisperProcessor

    for option, name in (("model", "model_name"), ("device", "device"), ("compute_type", "compute_type")):
        value = getattr(args, option)
        if value is not None:
            overrides[name] = value
    # (the input group is the source's: a pipe's --sample-rate is resampled before the processor)
    overrides.update({name: getattr(args, name) for name, knob in KNOBS.items()
                      if knob.group != "input" and hasattr(args, name)})
    if args.no_vad:
        overrides["vad"] = False
    return RealtimeWhisperProcessor.from_preset(args.preset, **overrides)


class _LiveText:
    """Text view. On a terminal the current line shows the final text of the sentence so far
    followed by the partial (dimmed), which each event rewrites; the line ends with the
    sentence. Piped, only final text is written, one sentence a line."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.tty = out.isatty()
        self.line = ""

    def write(self, event: TranscriptEvent) -> None:
        if event.is_final and event.text:
            self.line = f"{self.line} {event.text}".strip()
        ends = event.is_final and self.line.endswith(SENTENCE_ENDS)
        if self.tty:
            partial = "" if event.is_final or not event.text else f" \x1b[2m{event.text}\x1b[0m"
            self.out.write("\r\x1b[2K" + self.line + partial + ("\n" if ends else ""))
        elif ends:
            self.out.write(self.line + "\n")
        if ends:
            self.line = ""
        self.out.flush()

    def close(self) -> None:
        if self.line:
            self.out.write(("\r\x1b[2K" if self.tty else "") + self.line + "\n")
            self.out.flush()
            self.line = ""


class _Progress:
    """A progress bar on stderr for files processed faster than real time."""

    def __init__(self, total_s: float | None, *, screen_in_use: bool) -> None:
        self.total_s = total_s
        # Only when stderr is a terminal that live text is not already drawing on.
        self.enabled = bool(total_s) and sys.stderr.isatty() and not screen_in_use

    def update(self, done_s: float) -> None:
        if self.enabled and self.total_s:
            fraction = min(done_s / self.total_s, 1.0)
            bar = "#" * int(fraction * 30)
            sys.stderr.write(f"\r[{bar:<30}] {fraction:4.0%} {done_s:6.1f}/{self.total_s:.1f} s")
            sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\r\x1b[2K")
            sys.stderr.flush()


def _emit(events: Iterable[TranscriptEvent], args: argparse.Namespace, out: IO[str],
          progress: _Progress | None = None) -> None:
    finals: list[TranscriptEvent] = []
    live = _LiveText(out) if args.format == "text" else None
    for event in events:
        if args.format == "jsonl":
            out.write(json.dumps(event.to_dict(), ensure_ascii=False) + "\n")
            out.flush()
        elif live is not None:
            live.write(event)
        if event.is_final:
            finals.append(event)
            if progress is not None:
                progress.update(event.end_s)
    if live is not None:
        live.close()
    if progress is not None:
        progress.close()
    if args.format in ("srt", "vtt"):
        cues = cues_from_words(w for e in finals for w in e.words)
        out.write(to_srt(cues) if args.format == "srt" else to_vtt(cues))


def _input_path(args: argparse.Namespace) -> str:
    if args.sample:
        if args.input:
            raise ConfigError("give a file or --sample, not both")
        from .samples import sample_path

        return str(sample_path())
    if not args.input:
        raise ConfigError("give a media file, - for raw PCM on standard input, or --sample")
    return str(args.input)


def _whole_file(source: Any, proc: Any, args: argparse.Namespace) -> Iterator[TranscriptEvent]:
    """A file the caller has whole: faster-whisper's file pipeline instead of streaming windows.

    Same model, options and output formats as streaming; plain faster-whisper's speed and
    accuracy (``docs/cli.md`` has the measurement). Word times only when the format shows them.
    """
    from .engine import DecodeOptions

    audio = np.concatenate([np.zeros(0, dtype=np.float32), *(block.samples for block in source)])
    options = DecodeOptions(language=proc.options.language, task=proc.options.task,
                            beam_size=proc.options.beam_size, prompt=proc.options.initial_prompt, vad=proc.vad)
    segments, _, _ = proc.engine.iter_file(audio, options, word_timestamps=args.format != "text",
                                           condition_on_previous_text=True)
    for event, _scores in segments:
        yield event


def _events_with_progress(
    events: Iterator[TranscriptEvent], proc: Any, progress: _Progress
) -> Iterator[TranscriptEvent]:
    for event in events:
        progress.update(proc.heard_until_s)
        yield event


def _live(source: Any, args: argparse.Namespace) -> Iterator[TranscriptEvent]:
    """A live stream (microphone, pipe, ``--realtime``) as ``rtwhisper serve`` runs one: through
    a scheduler, on the engine layout measured for this machine (two one-thread workers on 2
    cores: the next update decodes while the one before it still runs)."""
    from .engine import serving_engine
    from .models import resolve_model
    from .presets import get_preset
    from .runner import ThreadedRunner
    from .sources import MicrophoneSource

    engine, _ = serving_engine(resolve_model(args.model or get_preset(args.preset).model_name),
                               device=args.device or "auto", compute_type=args.compute_type or "auto")

    def lag(report: Any) -> None:
        sys.stderr.write(f"rtwhisper: recognition is {report.lag_s:.1f} s behind"
                         + (f", {report.dropped_s:.1f} s of audio dropped" if report.dropped_s else "") + "\n")

    # A pipe's or a paced file's writer waits while recognition catches up; a microphone cannot.
    return iter(ThreadedRunner(source, _processor(args, engine=engine), on_lag=lag,
                               backpressure=not isinstance(source, MicrophoneSource)))


def _run(args: argparse.Namespace) -> int:
    from .runner import stream
    from .sources import FileSource, MicrophoneSource, PipeSource, list_input_devices

    if args.command == "bench":
        return _bench(args)
    if args.command == "serve":
        return _serve(args)
    if args.command == "devices":
        for device in list_input_devices():
            print(f"{device['index']:3d}  {device['name']}  ({device['channels']} ch, "
                  f"{device['default_samplerate']:.0f} Hz)")
        return 0

    out: IO[str] = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout
    try:
        if args.command == "transcribe":
            progress = None
            if args.input == "-":
                source: Any = PipeSource(sys.stdin.buffer, input_format=args.input_format,
                                         sample_rate=args.sample_rate, channels=args.channels)
            else:
                source = FileSource(_input_path(args), realtime=args.realtime)
                if not args.realtime:
                    progress = _Progress(source.duration_s, screen_in_use=args.format == "text" and out.isatty())
            events: Iterator[TranscriptEvent]
            if progress is not None:
                # A whole file decodes 30 s windows with every core.
                proc = _processor(args, cpu_threads=default_cpu_threads())
                events = _whole_file(source, proc, args) if hasattr(proc.engine, "iter_file") else stream(source, proc)
                events = _events_with_progress(events, proc, progress)
            else:
                events = _live(source, args)
            _emit(events, args, out, progress)
        else:
            _emit(_live(MicrophoneSource(args.input_device, duration_s=args.duration), args), args, out)
    finally:
        if out is not sys.stdout:
            out.close()
    return 0


def _bench(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .bench import BenchConfig, run_benchmark

    configs = None
    if args.model:
        configs = [BenchConfig.of(f"{args.model} {args.chunk:g}s/{args.overlap:g}s", args.model, args.chunk,
                                  args.overlap, beam_size=args.beam_size)]

    def progress(message: str) -> None:
        print(f"[bench] {message}", file=sys.stderr, flush=True)

    report = run_benchmark(Path(args.folder), Path(args.out), configs=configs, device=args.device,
                           compute_type=args.compute_type, quick=args.quick, include_long=args.long,
                           grid_phases=args.grid_phases,
                           capacity=not args.no_capacity, realtime=not args.no_realtime, slow_cpu=args.slow_cpu,
                           progress=progress)
    print(f"wrote {args.out}/results.json, results.md, latency_cdf.png, penalty_vs_latency.png "
          f"({report['wall_s']:.0f} s)")
    return 0


def _serve(args: argparse.Namespace) -> int:
    import os

    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401

        from .server import ServerConfig, serve
    except ImportError as exc:
        raise RtWhisperError(f"the server needs the [server] extra ({exc.name} is missing): "
                             "pip install 'rtwhisper[server]'") from None
    config = ServerConfig(
        preset=args.preset, model_name=args.model, device=args.device, compute_type=args.compute_type,
        host=args.host, port=args.port, max_connections=args.max_connections,
        max_frame_bytes=args.max_frame_kb * 1024, max_upload_bytes=args.max_upload_mb << 20,
        max_upload_s=args.max_upload_s, stall_flush_s=args.stall_flush, max_batch=args.max_batch,
        max_delay_s=args.max_delay, cpu_threads=args.cpu_threads, workers=args.workers,
        decode_ahead=args.decode_ahead, stream_cpu=args.stream_cpu,
        idle_timeout_s=args.idle_timeout,
        max_backlog_s=args.max_backlog,
        api_key=args.api_key or os.environ.get("RTWHISPER_API_KEY") or None,
        allowed_origins=tuple(args.allow_origin), allowed_hosts=tuple(args.allow_host),
    )
    if args.replicas is None and args.min_replicas is None and args.max_replicas is None and not args.ray_address:
        serve(config)
        return 0
    from .server.ray_serve import Scaling, run

    scaling = Scaling.from_options(replicas=args.replicas, min_replicas=args.min_replicas,
                                   max_replicas=args.max_replicas, target_streams=args.target_streams,
                                   drain_s=args.drain, cpus_per_replica=args.cpus_per_replica,
                                   gpus_per_replica=args.gpus_per_replica)
    run(config, scaling, address=args.ray_address)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return _run(args)
    except KeyboardInterrupt:
        return 130
    except (RtWhisperError, OSError, ValueError) as exc:
        message = " ".join(str(exc).split())
        print(f"rtwhisper: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
