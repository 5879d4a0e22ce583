"""Streams from ``--source [ID=]URI`` flags: each with a unique id, taken from its source where none is given.

An id is what logs, the API, metrics and MQTT topics know a stream by, so one made from a source is
readable (a file's stem, a camera's address, ``scene-<seed>``) and never carries a password from it.
"""

from __future__ import annotations

import os
import re
import unicodedata
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from server.config import StreamConfig, check_stream_id
from server.config_values import ConfigError
from server.options import StreamOptions
from server.sources.file import file_path
from server.sources.uri import MASK, mask_uri

#: Characters of an id derived from a source, leaving room for `_unique`'s ``-<n>`` within the 64.
_ID_ROOM = 56
#: A URI's scheme (RFC 3986) of two characters or more: one letter is a Windows drive (``C:/v/a.mp4``).
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]+:")


def streams_from_flags(
    values: list[str], loop: bool = False, options: StreamOptions | None = None, taken: set[str] | None = None
) -> tuple[StreamConfig, ...]:
    """Turn ``--source [ID=]URI`` values into stream configs with unique ids, in the order given.

    Without an explicit ``ID=``, the id comes from the source: a file's stem, ``scene-<seed>``, made
    unique after every id given explicitly is taken, wherever in the list it stands: a source named
    ``front`` after an unnamed ``/v/front.mp4`` was "front used twice", though typed once.
    ``taken`` holds ids already used (by the config file's streams). An empty URI, or text before
    the first ``=`` that reads as an id but is not a valid one (``Front.Door=...``), is refused.
    Spaces around the id and the URI are dropped (``front = rtsp://...`` as a config file is
    written): a path pasted with a trailing space was "no such file", the space unseen in the message.
    The file and the API take an id as quoted, and refuse one with spaces in it.
    """
    taken = set() if taken is None else set(taken)
    given: list[tuple[str | None, str]] = []
    for value in values:
        stream_id, uri = _split_id(value)
        uri = uri.strip()
        if not uri:
            raise ConfigError(
                f"--source {value!r}: no source after the id: expected [ID=]URI, e.g. front=/videos/front.mp4"
                if stream_id is not None
                else f"--source {value!r}: empty: expected [ID=]URI, e.g. front=/videos/front.mp4 or scene:?seed=1"
            )
        if stream_id is not None:
            if stream_id in taken:
                raise ConfigError(f"--source {value}: stream id {stream_id!r} is used twice")
            taken.add(stream_id)
        given.append((stream_id, uri))
    streams: list[StreamConfig] = []
    for stream_id, uri in given:
        if stream_id is None:
            stream_id = _unique(_default_id(uri), taken)
            taken.add(stream_id)
        streams.append(StreamConfig(stream_id, uri, loop, options or StreamOptions()))
    return tuple(streams)


def _split_id(value: str) -> tuple[str | None, str]:
    """``ID=URI`` split, or no id: text before the first '=' with a ':', '/', '?' or '#' in it is part
    of the URI (``rtsp://user:pass=x@host``, ``scene:?seed=3``), unless `_meant_as_id`; any other is
    meant as an id, and a `ConfigError` if it is not a valid one."""
    head, sep, tail = value.partition("=")
    if not sep or (any(char in head for char in ":/?#") and not _meant_as_id(head, tail, value)):
        return None, value
    head = head.strip()
    where = f"--source: {head!r} before the '=' is not a valid stream id"
    return check_stream_id(head, where, hint="a file whose name holds '=' can be given as ./NAME"), tail


def _meant_as_id(head: str, tail: str, value: str) -> bool:
    """Whether text before the first '=' with a ':' or '/' in it was meant as an id all the same: what
    follows the '=' is a source of its own (a URI with a scheme, or a path that exists), and the whole
    value names no file. ``cam:1=scene:?seed=2`` was "unsupported source", ``entrée/porte=...`` a
    stream ``porte-scene-seed-1`` that found no such file, neither naming the id as the fault.

    A '=' after a query or fragment began (``?``, ``#``) or in a URI with an authority (``://``) is the
    URI's own (``http://proxy/play?src=rtsp://cam/1``, ``rtsp://user:pa=ss@host``).
    """
    if "://" in head or any(char in head for char in "?#"):
        return False
    source = tail.strip()
    if not _SCHEME.match(source) and not os.path.exists(source):
        return False
    return not os.path.exists(value.strip())


def _default_id(uri: str) -> str:
    """An id for a stream named after its source, that matches `STREAM_ID_PATTERN`.

    Made from the masked URI: ids go into logs, the API, metrics and MQTT topics, where a password
    in a camera's path (``/user=admin_password=...``, ``;password=...``) must not follow them.
    """
    masked = mask_uri(uri)
    try:
        parts = urlsplit(masked)
    except ValueError:  # not a URI at all: its stream fails, and says why, under a plain name
        return "stream"
    if parts.scheme == "scene":
        return _id_from("scene", parse_qs(parts.query).get("seed", ["0"])[-1])
    if parts.scheme == "webcam":
        return _id_from("webcam", parts.path)
    path = Path(parts.path)
    if parts.scheme in ("", "file") or len(parts.scheme) == 1:  # a file (a Windows drive's letter reads as a scheme)
        # Its file as the source reads it: ``take#2.mp4`` is take-2, where a URI's path ends at the '#'.
        path = file_path(masked, is_url=parts.scheme == "file")
    # A camera is known by its address more than by its path ("live", "101").
    return _id_from(parts.hostname or "", path.stem.replace(MASK, ""))


def _id_from(*words: str) -> str:
    """``words`` joined by '-' as a stream id: other characters become '-', cut to `_ID_ROOM`.

    Letters are folded to ASCII first where they have a fold (``cámara`` is camara, not c-mara);
    a script with none (``カメラ``) leaves nothing of the word, and an id of nothing is ``stream``.
    """
    folded = ("".join(c for c in unicodedata.normalize("NFKD", word) if not unicodedata.combining(c)) for word in words)
    cleaned = (re.sub(r"[^A-Za-z0-9_-]+", "-", word).strip("-") for word in folded)
    return "-".join(filter(None, cleaned))[:_ID_ROOM].strip("-") or "stream"


def _unique(base: str, taken: set[str]) -> str:
    if base not in taken:
        return base
    n = 2
    while f"{base}-{n}" in taken:
        n += 1
    return f"{base}-{n}"
