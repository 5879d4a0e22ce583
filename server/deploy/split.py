"""``segcast split``: one config file's cameras dealt out to N node config files, and their entrance.

Each node file is the user's file with a share of its ``[[streams]]`` (every Nth, in the file's order)
and what must differ between nodes on one machine:

- ``[server]``: the node listens on 127.0.0.1 at its own port, and takes as many viewers from one
  address as from all (every viewer comes through the entrance, from its address). TLS, when the file
  sets it, moves to the entrance: nginx speaks plain HTTP to the nodes.
- ``[auth] required = true`` where the entrance listens beyond this machine: a node started without
  tokens (kept in the environment, and not exported for it) refuses to start, where it would have
  answered everyone the entrance lets in as if they were on this machine.
- ``[events.history]``: a database file per node, as two processes would each apply their retention to
  the other's events.
- ``[events.mqtt]``: a topic prefix per node (one node stopping would otherwise mark every node's Home
  Assistant sensors unavailable, docs/protocol.md), and a client id per node where one is set (a broker
  drops the older of two connections with the same id).

Everything else is copied as the user wrote it. The files are written beside the original, so its
relative paths (models, videos, certificates) mean the same in them. Nothing is written unless every
node file loads as segcast would load it, and the entrance is held to the rule a single node is: it
listens beyond this machine only with access tokens (the nodes behind it, on 127.0.0.1, ask for none
of their own, so without tokens anyone reaching the entrance could change them).
"""

from __future__ import annotations

import copy
import io
import os
import re
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from server.config import ConfigError, load_config, settings_from_mapping
from server.delivery.viewer import ViewerLimits
from server.deploy.entrance import Listen, nginx_config, node_name
from server.events.config import DEFAULT_HISTORY_FILE, toml_string
from server.http.auth import AccessPolicy, AuthConfigError, is_loopback
from server.persist import toml_value

#: The nodes listen here: only the entrance, on the same machine, reaches them.
NODE_HOST = "127.0.0.1"
#: Ports under this only root may listen on: nodes go from `DEFAULT_FIRST_PORT` behind such an entrance.
PRIVILEGED_PORTS = 1024
DEFAULT_FIRST_PORT = 8081
#: More nodes than this on one machine is a typing error: four carried 64 cameras on an H200.
MAX_NODES = 64
_BARE_KEY = re.compile(r"\A[A-Za-z0-9_-]+\Z")


class SplitError(ValueError):
    """The config cannot be split as asked; the message says why and what to change."""


@dataclass(frozen=True, slots=True)
class NodeFile:
    name: str  # its path behind the entrance: node-1 ...
    path: Path
    text: str
    stream_ids: tuple[str, ...]
    port: int


@dataclass(frozen=True, slots=True)
class Split:
    """What `split_config` would write: a file per node and the entrance's nginx.conf."""

    nodes: tuple[NodeFile, ...]
    entrance_path: Path
    entrance_text: str
    entrance: Listen
    entrance_state: Path  # the entrance's pid file, logs and temporary files
    source: Path  # the config file split
    stale: tuple[Path, ...]  # node files of an earlier split into more nodes: their cameras are dealt anew

    def entrance_command(self) -> list[str]:
        """How to start the entrance: nginx as whoever runs it, root only for a port under 1024."""
        command = ["nginx", "-e", str(self.entrance_state / "error.log"), "-c", str(self.entrance_path)]
        return ["sudo", *command] if self.entrance.port < 1024 else command

    def entrance_stop_command(self) -> list[str]:
        """How to stop the entrance: a bare ``nginx -s stop`` looks for nginx's own pid file, not the
        one in `entrance_state` the config names, and fails (``invalid PID number``)."""
        return [*self.entrance_command(), "-s", "stop"]


def split_config(path: Path, nodes: int, first_port: int | None = None) -> Split:
    """The node files and entrance for ``path`` dealt out to ``nodes`` nodes (ports from ``first_port``,
    by default the one after the file's own); SplitError or ConfigError says what stands in the way."""
    settings = load_config(path)  # the file as segcast reads it: its own errors come first
    if not 1 <= nodes <= MAX_NODES:
        raise SplitError(f"--nodes {nodes}: expected 1 to {MAX_NODES}")
    streams = [s.stream_id for s in settings.streams]
    if not streams:
        raise SplitError(f"{path.name} has no cameras to split: give each one a [[streams]] table")
    if nodes > len(streams):
        raise SplitError(f"--nodes {nodes}: more nodes than cameras ([[streams]]: {len(streams)} in {path.name})")
    try:  # the rule `segcast serve` holds a single node to, for the address everyone reaches
        AccessPolicy.configure(settings.host, settings.viewer_tokens, settings.admin_tokens, settings.auth_off)
    except AuthConfigError as exc:
        raise SplitError(f"the entrance listens where {path.name} says: {exc}") from None
    beyond = not is_loopback(settings.host)
    if beyond and settings.auth_off:
        raise SplitError(
            f'{path.name} says auth = "off" and listens on {settings.host}: behind an entrance the nodes see every '
            "request come from this machine, and an open node answers only to this machine's own names; "
            "set access tokens instead"
        )
    if first_port is None:  # after the entrance's, but never where only root may listen
        first_port = settings.port + 1 if settings.port >= PRIVILEGED_PORTS else DEFAULT_FIRST_PORT
    first = first_port
    ports = list(range(first, first + nodes))
    if first < 1 or ports[-1] > 65535:
        raise SplitError(f"--first-port {first}: the nodes' ports {first}-{ports[-1]} must lie in 1-65535")
    if settings.port in ports:
        raise SplitError(f"--first-port {first}: node ports {first}-{ports[-1]} include the entrance's {settings.port}")

    data = _read(path)
    tables = data.get("streams", [])
    files = []
    for index, port in enumerate(ports, start=1):
        share = tables[index - 1 :: nodes]
        node_path = path.with_name(f"{path.stem}.{node_name(index)}.toml")
        document = _node_document(data, share, index, port, tokens_required=beyond)
        text = _header(path, index, nodes) + toml_document(document)
        try:
            settings_from_mapping(tomllib.loads(text), node_path, {})
        except (ConfigError, ValueError) as exc:  # a bug here, not the user's: say so rather than write it
            raise SplitError(f"the file for {node_name(index)} would not load ({exc}); please report it") from exc
        files.append(NodeFile(node_name(index), node_path, text, tuple(streams[index - 1 :: nodes]), port))
    entrance = Listen(settings.host, settings.port, settings.tls_cert, settings.tls_key)
    folder = path.resolve().parent  # nginx takes relative paths from its own prefix
    state = folder / f"{path.stem}.nginx"
    for named in (state, settings.tls_cert, settings.tls_key):
        if named is not None and "$" in str(named):  # nginx would read the rest as a variable's name
            raise SplitError(f"{named}: nginx cannot take a path with '$' in it: move it where no folder has one")
    stale = sorted(p for p in path.parent.glob(f"{path.stem}.node-*.toml") if _node_index(path, p) > nodes)
    return Split(
        tuple(files),
        folder / f"{path.stem}.nginx.conf",
        nginx_config(entrance, ports, path.name, state),
        entrance,
        state,
        path,
        tuple(stale),
    )


def write_split(split: Split, overwrite: bool) -> None:
    """Write every file of ``split``; none, unless ``overwrite``, where one is there already (a node's
    file holds what its API saved with ``?persist=1`` since the last split)."""
    paths = [*(node.path for node in split.nodes), split.entrance_path, *split.stale]
    if not overwrite and (there := [p for p in paths if p.exists()]):
        raise SplitError(
            f"{there[0]} is there already (changes saved by its node would be lost): --force replaces it"
            + (" and removes the files of nodes beyond the new number" if split.stale else "")
        )
    try:
        for stale in split.stale:  # its cameras are another node's now: started, it would run them twice
            stale.unlink()
        for node in split.nodes:  # they may hold the file's tokens: as private as the file
            _write_private(node.path, node.text, stat.S_IMODE(split.source.stat().st_mode))
        split.entrance_path.write_text(split.entrance_text, encoding="utf-8")
        split.entrance_state.mkdir(exist_ok=True)
        for log in ("access.log", "error.log"):  # nginx keeps a file's mode: these hold addresses and URLs
            _write_private(split.entrance_state / log, "", 0o600, truncate=False)
    except OSError as exc:
        raise SplitError(f"cannot write {exc.filename or split.entrance_path.parent}: {exc.strerror or exc}") from None


def _node_index(source: Path, path: Path) -> int:
    """The node number of ``path`` if it is one of ``source``'s node files (``cams.node-3.toml``), else 0."""
    number = path.name.removeprefix(f"{source.stem}.node-").removesuffix(".toml")
    return int(number) if number.isascii() and number.isdigit() else 0


def _write_private(path: Path, text: str, mode: int, truncate: bool = True) -> None:
    """``text`` into ``path`` with permissions ``mode`` (os.open's are cut by the umask, hence chmod);
    without ``truncate``, appended to what is there (a log)."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if truncate else os.O_APPEND)
    with open(os.open(path, flags, mode), "w", encoding="utf-8") as file:
        file.write(text)
    os.chmod(path, mode)


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


def _read(path: Path) -> dict[str, Any]:
    """The file as `load_config` reads it (a BOM allowed); it has just loaded, so it parses."""
    return tomllib.loads(io.TextIOWrapper(io.BytesIO(path.read_bytes()), encoding="utf-8-sig").read())


def _node_document(
    data: Mapping[str, Any], streams: list[Any], index: int, port: int, tokens_required: bool
) -> dict[str, Any]:
    """The user's document with node ``index``'s ``streams`` and what must differ per node (module doc);
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
        history["path"] = str(written.with_name(f"{written.stem}.{node_name(index)}{written.suffix}"))
    if isinstance(mqtt := events.get("mqtt"), dict):
        mqtt["topic_prefix"] = f"{mqtt.get('topic_prefix', 'segcast')}/{node_name(index)}"
        if mqtt.get("client_id"):
            mqtt["client_id"] = f"{mqtt['client_id']}-{node_name(index)}"
    document["streams"] = copy.deepcopy(streams)
    return document


def _header(source: Path, index: int, nodes: int) -> str:
    return (
        f"# Node {index} of {nodes} split from {source.name} by `segcast split`; the entrance in front of the\n"
        f"# nodes is {source.stem}.nginx.conf. Changes saved through this node's API land here: split again\n"
        f"# (--force) only to start over from {source.name}.\n\n"
    )
