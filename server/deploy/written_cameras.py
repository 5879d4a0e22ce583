"""What `segcast split` wrote of each camera into each node file, kept for the next split.

A node's API saves a camera's changed settings into its node file (``?persist=1``), and cams.toml, the
source of every camera's settings, is edited between splits: where a node file's camera differs from the
source's, the next split tells the two apart by what it wrote there last. A setting as it wrote it was
changed in the source since (the split says so, with its old and new value); one that is not was saved
through the node's API, or by hand, and the split replaces it with the source's (it says it is lost).
A node file's header note (`server.persist.SAVED_NOTE`) cannot tell that per camera: one save of one
camera marks the whole file.

Kept in the entrance's folder beside its logs (``cams.nginx/``), a digest of each setting of each
camera, not its value: a camera's URI may hold its password. Readable by its owner alone all the same.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import fields
from pathlib import Path

from server.config import StreamConfig, settings_from_mapping
from server.persist import SAVED_NOTE

#: The record's file, in the entrance's folder (`server.deploy.split.Split.entrance_state`).
WRITTEN_RECORD = "written-cameras.json"
#: Its permissions: its owner's alone, as the node files may hold tokens.
WRITTEN_RECORD_MODE = 0o600
#: The hex digits kept of each digest: enough that two values never meet by chance in one camera.
DIGEST_HEX_DIGITS = 16
_VERSION = 1

#: Digests of a node file's cameras' settings: by node file name, then camera id, then setting name.
Record = Mapping[str, Mapping[str, Mapping[str, str]]]


def setting_values(stream: StreamConfig) -> dict[str, object]:
    """A camera's settings by name (``uri``, ``loop``, then its options: ``conf``, ``zones``, ...), as
    segcast read them: the same camera compares the same however its file spells it. ``from_api`` is
    not one: it says who gave the camera, not how it runs."""
    return {
        "uri": stream.uri,
        "loop": stream.loop,
        **{field.name: getattr(stream.options, field.name) for field in fields(stream.options)},
    }


def digests(stream: StreamConfig) -> dict[str, str]:
    """A digest of each of the camera's settings (`setting_values`): of its ``repr``, which a frozen
    dataclass, a tuple of pairs or a number writes the same for equal values."""
    return {
        name: hashlib.sha256(repr(value).encode()).hexdigest()[:DIGEST_HEX_DIGITS]
        for name, value in setting_values(stream).items()
    }


def record_text(node_files: Iterable[tuple[Path, str]]) -> str:
    """The record of the node files a split writes, each its path and text (every one loads: the split
    checked it), as the file's JSON."""
    files = {
        path.name: {
            stream.stream_id: digests(stream) for stream in settings_from_mapping(tomllib.loads(text), path, {}).streams
        }
        for path, text in node_files
    }
    return json.dumps({"v": _VERSION, "files": files}, indent=1, sort_keys=True) + "\n"


def read_record(folder: Path) -> Record | None:
    """The record in ``folder`` (None: none there, or not one this segcast reads: a split of an older one)."""
    try:
        data = json.loads((folder / WRITTEN_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):  # UnicodeDecodeError is one
        return None
    files = data.get("files") if isinstance(data, dict) and data.get("v") == _VERSION else None
    return files if isinstance(files, dict) else None


def as_written(
    record: Record | None, node_file: Path, node_text: str | None, stream: StreamConfig
) -> Mapping[str, str] | None:
    """The digests of ``stream``'s settings as the split last wrote them into ``node_file`` (whose text is
    ``node_text``): the record's, none for a camera it did not write there (added through the node's API);
    without a record, of a file no node's API has saved, its own. None where that cannot be told: a file
    its node saved, and no record (an older split's)."""
    if record is not None:
        cameras = record.get(node_file.name)
        written = cameras.get(stream.stream_id) if isinstance(cameras, Mapping) else None
        return written if isinstance(written, Mapping) else {}
    if node_text is not None and SAVED_NOTE not in node_text.splitlines():
        return digests(stream)
    return None
