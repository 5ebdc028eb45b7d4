"""What a client may choose for its stream: a preset, its audio's format, and the knobs of the options table."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..audio import ACCEPTED_SAMPLE_RATES, BYTES_FORMATS
from ..errors import ConfigError
from ..options import KNOBS, read_overrides
from ..presets import PRESETS

Message = dict[str, Any]

CLIENT_KNOBS = tuple(name for name, knob in KNOBS.items() if knob.group != "input")
"""The knobs a client's config message may set: all but the input group (``format``,
``sample_rate`` and the channels are the session's, which decodes the frames)."""

CONFIG_KEYS = ("preset", "format", "sample_rate", "partials", *CLIENT_KNOBS)


@dataclass
class StreamConfig:
    """What a client may choose in its first message: a preset, the audio's format, and any knob of
    :data:`~rtwhisper.options.KNOBS` but the input group (``CLIENT_KNOBS``), checked by the table."""

    preset: str | None = None
    format: str = "f32le"
    sample_rate: int = 16000
    channels: int = 1
    partials: bool = False
    """Send partials too. Off for clients that send no config (the guide's clients append
    every message's ``text``, so they get finals only); on by default in a config message."""
    knobs: dict[str, Any] = field(default_factory=dict)
    """Knob values the client set (``None`` or absent: the server's preset decides)."""

    @classmethod
    def from_message(cls, message: Message) -> StreamConfig:
        """Validate a config message; unknown keys and bad values raise :class:`ConfigError`."""
        unknown = sorted(set(message) - {"type", *CONFIG_KEYS})
        if unknown:
            raise ConfigError(f"unknown config field(s) {', '.join(unknown)}; accepted: {', '.join(CONFIG_KEYS)}")
        config = cls(knobs=read_overrides(message, CLIENT_KNOBS))
        preset = message.get("preset")
        if preset is not None:
            key = preset.replace("-", "_") if isinstance(preset, str) else preset
            if key not in PRESETS:
                raise ConfigError(f"unknown preset {preset!r}; presets are: {', '.join(PRESETS)}")
            config.preset = key
        fmt = message.get("format", "f32le")
        if fmt not in BYTES_FORMATS:
            raise ConfigError(f"format must be one of {', '.join(BYTES_FORMATS)}, got {fmt!r}")
        config.format = fmt
        rate = message.get("sample_rate", 16000)
        if isinstance(rate, bool) or rate not in ACCEPTED_SAMPLE_RATES:
            raise ConfigError(
                f"sample_rate must be one of {', '.join(map(str, ACCEPTED_SAMPLE_RATES))} Hz, got {rate!r}")
        config.sample_rate = int(rate)
        partials = message.get("partials", True)
        if not isinstance(partials, bool):
            raise ConfigError(f"partials must be true or false, got {partials!r}")
        config.partials = partials
        return config

    def overrides(self) -> dict[str, Any]:
        """Processor keyword arguments this config sets (absent: the server's default)."""
        options = {k: v for k, v in self.knobs.items() if v is not None}
        options["sample_rate"] = self.sample_rate  # frames are decoded here; the processor resamples
        return options
