"""A node's config file as `segcast split` writes it: the user's document with the node's share of the
cameras and what must differ between nodes on one machine (`server.deploy.split` says what and why),
as TOML text that reads back as it was.
"""

from __future__ import annotations

import copy
import io
import re
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from server.delivery.viewer import ViewerLimits
from server.deploy.entrance import node_name
from server.events.config import DEFAULT_HISTORY_FILE, toml_string
from server.persist import toml_value

#: The nodes listen here: only the entrance, on the same machine, reaches them.
NODE_HOST = "127.0.0.1"
_BARE_KEY = re.compile(r"\A[A-Za-z0-9_-]+\Z")


def toml_document(data: Mapping[str, Any]) -> str:
    """``data`` (as `tomllib` reads a file) as TOML text: a table's values, then its tables in order."""
    lines: list[str] = []
    _write_table(lines, (), data)
    return "\n".join(lines).lstrip("\n") + "\n"


def _write_table(lines: list[str], where: tuple[str, ...], table: Mapping[str, Any]) -> None:
    for key, value in table.items():
        if not _is_table(value):
            lines.append(f"{_key(key)} = {toml_value(value)}")
    for key, value in table.items():
        name = ".".join(_key(k) for k in (*where, key))
        if isinstance(value, dict):
            if not value or any(not _is_table(v) for v in value.values()):  # `[events]` alone says nothing
                lines += ["", f"[{name}]"]  # but an empty table may (`[events.history]`: keep a history)
            _write_table(lines, (*where, key), value)
        elif _is_table_array(value):
            for item in value:
                lines += ["", f"[[{name}]]"]
                _write_table(lines, (*where, key), item)


def _is_table(value: object) -> bool:
    """Whether ``value`` is written under a header of its own (a table or an array of tables)."""
    return isinstance(value, dict) or _is_table_array(value)


def _is_table_array(value: object) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(item, dict) for item in value)


def _key(key: str) -> str:
    return key if _BARE_KEY.match(key) else toml_string(key)


def read_document(path: Path) -> dict[str, Any]:
    """The file as `load_config` reads it (a BOM allowed); it has just loaded, so it parses."""
    return tomllib.loads(io.TextIOWrapper(io.BytesIO(path.read_bytes()), encoding="utf-8-sig").read())


def node_document(
    data: Mapping[str, Any], streams: list[Any], index: int, port: int, tokens_required: bool
) -> dict[str, Any]:
    """The user's document with node ``index``'s ``streams`` and what must differ per node (`server.deploy.split`'s
    module doc);
    ``tokens_required``: the entrance is reached from beyond this machine (see `Settings.auth_required`)."""
    document = {key: copy.deepcopy(value) for key, value in data.items() if key != "streams"}
    if tokens_required:
        document.setdefault("auth", {})["required"] = True
    server = document.setdefault("server", {})
    server.pop("tls_cert", None)
    server.pop("tls_key", None)
    server["host"], server["port"] = NODE_HOST, port
    server["max_viewers_per_address"] = server.get("max_viewers", ViewerLimits().max_viewers)
    events = document.get("events", {})
    if isinstance(history := events.get("history"), dict):
        written = Path(history.get("path") or DEFAULT_HISTORY_FILE)
        if index > 1:  # node 1 goes on in the file's own history (`server.deploy.split`)
            written = written.with_name(f"{written.stem}.{node_name(index)}{written.suffix}")
        history["path"] = str(written)
    if isinstance(mqtt := events.get("mqtt"), dict):
        prefix, discovery_id = mqtt_ids(mqtt)
        mqtt["topic_prefix"] = f"{prefix}/{node_name(index)}"
        mqtt["discovery_id"] = discovery_id
        if mqtt.get("client_id"):
            mqtt["client_id"] = f"{mqtt['client_id']}-{node_name(index)}"
    document["streams"] = copy.deepcopy(streams)
    return document


def mqtt_ids(mqtt: Mapping[str, Any]) -> tuple[str, str]:
    """The topic prefix and Home Assistant ``discovery_id`` of the user's ``[events.mqtt]``: each node
    publishes under ``<prefix>/node-N``, and every node keeps the one ``discovery_id`` (`server.deploy.split`)."""
    prefix = str(mqtt.get("topic_prefix", "segcast"))
    return prefix, str(mqtt.get("discovery_id", prefix.replace("/", "_")))


def node_file_header(source: Path, index: int, nodes: int) -> str:
    """The comment a node file begins with: which node of which split it is, and its entrance."""
    return (
        f"# Node {index} of {nodes} split from {source.name} by `segcast split`; the entrance in front of the\n"
        f"# nodes is {source.stem}.nginx.conf. Changes saved through this node's API land here; a new split\n"
        f"# (--force) keeps this node's cameras on it, with their settings from {source.name}.\n\n"
    )


def saved_settings_text(path: Path, stream_id: str, names: Iterable[str]) -> str:
    """The settings ``names`` of camera ``stream_id`` as the node file at ``path`` has them, one ``key = value``
    line each (a table inline, as a node's own save writes it), to put in the camera's ``[[streams]]`` table of
    the source file in place of its keys of those names: lines that read the same anywhere among its keys,
    where a sub-table header would take the keys under it. Headed by a comment naming the file and camera;
    a camera's address is named, not shown (it may hold a password), and a setting the table leaves out
    (back to its default there) is said in a comment."""
    tables: list[dict[str, Any]] = read_document(path).get("streams", [])
    table = next((t for t in tables if t.get("id") == stream_id), {})
    lines = [f"# {path.name}, camera {stream_id!r}:"]
    for name in names:
        if name == "uri":
            lines.append(f"# uri: not shown (it may hold a password): see {path.name}")
        elif name not in table:
            lines.append(f"# {name}: the default there (take it out of the camera's table)")
        else:
            lines.append(f"{_key(name)} = {toml_value(table[name])}")
    return "\n".join(lines)
