"""Settings: everything a run of segcast is told, as one frozen value built before anything starts."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from server.models import DEFAULT_MODEL
from server.worker import InferenceOptions

STREAM_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080


class ConfigError(ValueError):
    """A setting is wrong; the message names the flag or key and the fix."""


@dataclass(frozen=True, slots=True)
class StreamConfig:
    stream_id: str
    uri: str
    loop: bool = False
    tracker: str = "bytetrack"


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    model: str = DEFAULT_MODEL
    inference: InferenceOptions = field(default_factory=InferenceOptions)
    streams: tuple[StreamConfig, ...] = ()
    jpeg_quality: int = 80


def streams_from_flags(values: list[str], loop: bool = False, tracker: str = "bytetrack") -> tuple[StreamConfig, ...]:
    """Turn ``--source [ID=]URI`` values into stream configs with unique ids.

    Without an explicit ``ID=``, the id comes from the source: a file's stem, ``scene-<seed>``.
    """
    streams: list[StreamConfig] = []
    taken: set[str] = set()
    for value in values:
        stream_id, uri = _split_id(value)
        if stream_id is None:
            stream_id = _unique(_default_id(uri), taken)
        elif stream_id in taken:
            raise ConfigError(f"--source {value}: stream id {stream_id!r} is used twice")
        taken.add(stream_id)
        streams.append(StreamConfig(stream_id, uri, loop, tracker))
    return tuple(streams)


def _split_id(value: str) -> tuple[str | None, str]:
    head, sep, tail = value.partition("=")
    if sep and STREAM_ID_PATTERN.match(head) and tail:
        return head, tail
    return None, value


def _default_id(uri: str) -> str:
    parts = urlsplit(uri)
    if parts.scheme == "scene":
        return f"scene-{parse_qs(parts.query).get('seed', ['0'])[-1]}"
    if parts.scheme == "webcam":
        return f"webcam-{parts.path}"
    stem = re.sub(r"[^A-Za-z0-9_-]+", "-", Path(parts.path or uri).stem).strip("-")
    if parts.hostname:  # a camera is known by its address more than by its path ("live", "101")
        stem = "-".join(filter(None, (re.sub(r"[^A-Za-z0-9_-]+", "-", parts.hostname), stem)))
    return stem[:64] or "stream"


def _unique(base: str, taken: set[str]) -> str:
    if base not in taken:
        return base
    n = 2
    while f"{base}-{n}" in taken:
        n += 1
    return f"{base}-{n}"
