"""``segcast split``: one config file's cameras dealt out to N node config files, and their entrance.

Each node file is the user's file with a share of its ``[[streams]]`` and what must differ between
nodes on one machine. A first split deals the cameras out in the file's order (every Nth); a later
one keeps each camera on the node whose file has it (`place_streams`), so that inserting a camera in
the middle of the file, or one moved between nodes through the API, moves no other: its history,
MQTT topics and metrics stay where they are. What differs per node:

- ``[server]``: the node listens on 127.0.0.1 at its own port, and takes as many viewers from one
  address as from all (every viewer comes through the entrance, from its address). TLS, when the file
  sets it, moves to the entrance: nginx speaks plain HTTP to the nodes.
- ``[auth] required = true`` where the entrance listens beyond this machine: a node started without
  tokens (kept in the environment, and not exported for it) refuses to start, where it would have
  answered everyone the entrance lets in as if they were on this machine.
- ``[events.history]``: a database file per node, as two processes would each apply their retention to
  the other's events. Node 1 keeps the file's own, so its event ids go on where the single box's
  stopped (a client polling ``after=<last id>`` misses nothing) and the older events of every camera
  stay queryable there; the other nodes start files of their own.
- ``[events.mqtt]``: a topic prefix per node (one node stopping would otherwise mark every node's Home
  Assistant sensors unavailable, docs/protocol.md), and a client id per node where one is set (a broker
  drops the older of two connections with the same id). The Home Assistant ``discovery_id`` stays the
  file's (made from its own prefix), so a camera keeps its device across a split and a move.

Everything else is copied as the user wrote it. The files are written beside the original, so its
relative paths (models, videos, certificates) mean the same in them. Nothing is written unless every
node file loads as segcast would load it, and the entrance is held to the rule a single node is: it
listens beyond this machine only with access tokens (the nodes behind it, on 127.0.0.1, ask for none
of their own, so without tokens anyone reaching the entrance could change them).

Whether a split may be written over what is there (an earlier split's files, and nodes or a single box
running from them), and writing it, are `server.deploy.split_writing`'s.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from server.cli import ssl_context
from server.config import Settings, load_config, settings_from_mapping
from server.config_values import ConfigError
from server.deploy.entrance import Listen, nginx_config, node_name
from server.deploy.node_files import (
    NODE_HOST,
    mqtt_ids,
    node_document,
    node_file_header,
    read_document,
    toml_document,
)
from server.events.config import DEFAULT_HISTORY_FILE, resolved_path
from server.http.access.requests import is_loopback
from server.http.access.tokens import ADMIN_TOKENS_ENV, VIEWER_TOKENS_ENV, AccessPolicy, AuthConfigError

#: Ports under this only root may listen on: nodes go from `DEFAULT_FIRST_PORT` behind such an entrance.
PRIVILEGED_PORTS = 1024
DEFAULT_FIRST_PORT = 8081
#: More nodes than this on one machine is a typing error: four carried 64 cameras on an H200.
MAX_NODES = 64
#: Where Debian's nginx is (and nginx.org's packages put it): not on a normal user's PATH, which has no sbin.
NGINX_FALLBACK = "/usr/sbin/nginx"
_NODE_SUFFIX = re.compile(r"[./]node-[0-9]+\Z")


class SplitError(ValueError):
    """The config cannot be split as asked; the message says why and what to change."""


@dataclass(frozen=True, slots=True)
class NodeFile:
    name: str  # its path behind the entrance: node-1 ...
    path: Path
    text: str
    stream_ids: tuple[str, ...]
    port: int
    history: str | None = None  # its event history file, as the file names it (None: it keeps none)


@dataclass(frozen=True, slots=True)
class EarlierNode:
    """A node file of an earlier split, as it is before this split replaces or removes it."""

    path: Path
    index: int  # its node number: 3 for cams.node-3.toml
    stream_ids: tuple[str, ...]  # the cameras its file holds: those its node runs, started from it
    address: tuple[str, int] | None  # where its node listens (None: the file cannot say)
    text: str | None = None  # the file as it is (None: it cannot be read)
    unreadable: str | None = None  # why the file cannot be read (None: it can)
    tokens: tuple[str, ...] = field(default=(), repr=False)  # to ask its node what it runs: `_asking_tokens`


@dataclass(frozen=True, slots=True)
class MqttTopics:
    """The file's ``[events.mqtt]`` as a split changes it: each node publishes under ``prefix/node-N``
    where the single box published under ``prefix``; Home Assistant's ids stay made from
    ``discovery_id`` on every node (None: the file turns discovery off)."""

    prefix: str
    discovery_id: str | None


@dataclass(frozen=True, slots=True)
class RetiredHistory:
    """The event history file of a node this split removes, there when the split was made: the events
    of ``stream_ids`` (the cameras its file held) until it stopped, which no node reads any more."""

    node: str
    path: Path
    stream_ids: tuple[str, ...]


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
    existing: tuple[Path, ...] = ()  # the files it would replace (or remove), there when it was made
    warnings: tuple[str, ...] = ()  # what may not be what the user meant, though it can be written
    earlier: tuple[EarlierNode, ...] = ()  # the node files of an earlier split, in node order
    placed: Mapping[str, str] = field(default_factory=dict)  # why a camera no earlier node kept went where it did
    entrance_before: str | None = None  # the entrance's file as it was when the split was made (None: none)
    ports_kept_from: Path | None = None  # the earlier node-1 file whose port node 1 keeps (no --first-port)
    mqtt: MqttTopics | None = None  # None: the file publishes no MQTT
    retired: tuple[RetiredHistory, ...] = ()  # the history files of the nodes it removes

    def entrance_command(self) -> list[str]:
        """How to start the entrance: nginx as whoever runs it, root only for a port under 1024; by its
        full path, as a user's PATH on Debian lacks /usr/sbin, where its nginx is."""
        nginx = shutil.which("nginx") or NGINX_FALLBACK
        command = [nginx, "-e", str(self.entrance_state / "error.log"), "-c", str(self.entrance_path)]
        return ["sudo", *command] if self.entrance.port < 1024 else command

    def entrance_stop_command(self) -> list[str]:
        """How to stop the entrance: a bare ``nginx -s stop`` looks for nginx's own pid file, not the
        one in `entrance_state` the config names, and fails (``invalid PID number``)."""
        return [*self.entrance_command(), "-s", "stop"]

    def entrance_reload_command(self) -> list[str]:
        """How a running entrance takes a new config: starting a second nginx on its address fails
        (``bind() ... Address already in use``)."""
        return [*self.entrance_command(), "-s", "reload"]

    def entrance_changed(self) -> bool:
        """Whether the entrance's file says what it did not before: a running entrance must be reloaded."""
        return self.entrance_before != self.entrance_text

    def node_files_there(self) -> list[Path]:
        """The files of an earlier split this one replaces or removes, in node order."""
        ours = [node.path for node in self.nodes if node.path in self.existing]
        return ours + [path for path in self.stale if path not in ours]


def split_config(path: Path, nodes: int, first_port: int | None = None, rebalance: bool = False) -> Split:
    """The node files and entrance for ``path`` dealt out to ``nodes`` nodes (ports from ``first_port``,
    by default the one after the file's own; ``rebalance``: `place_streams`); SplitError or ConfigError says
    what stands in the way."""
    settings = load_config(path, flag=None)  # the file as segcast reads it: its own errors come first
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
    _check_tls(path, settings)
    earlier = earlier_nodes(path)
    ports_kept_from = None
    if first_port is None:
        first_port, ports_kept_from = _first_port(settings.port, nodes, earlier)
    first = first_port
    ports = list(range(first, first + nodes))
    if first < 1 or ports[-1] > 65535:
        raise SplitError(f"--first-port {first}: the nodes' ports {first}-{ports[-1]} must lie in 1-65535")
    if settings.port in ports:
        raise SplitError(f"--first-port {first}: node ports {first}-{ports[-1]} include the entrance's {settings.port}")

    data = read_document(path)
    tables = data.get("streams", [])
    shares, placed = place_streams(streams, nodes, earlier, rebalance)
    files = []
    for index, (port, share) in enumerate(zip(ports, shares, strict=True), start=1):
        node_path = path.with_name(f"{path.stem}.{node_name(index)}.toml")
        document = node_document(data, [tables[i] for i in share], index, port, tokens_required=beyond)
        text = node_file_header(path, index, nodes) + toml_document(document)
        try:
            settings_from_mapping(tomllib.loads(text), node_path, {})
        except (ConfigError, ValueError) as exc:  # a bug here, not the user's: say so rather than write it
            raise SplitError(f"the file for {node_name(index)} would not load ({exc}); please report it") from exc
        history = document.get("events", {}).get("history", {}).get("path")
        files.append(NodeFile(node_name(index), node_path, text, tuple(streams[i] for i in share), port, history))
    entrance = Listen(settings.host, settings.port, settings.tls_cert, settings.tls_key)
    folder = path.resolve().parent  # nginx takes relative paths from its own prefix
    state = folder / f"{path.stem}.nginx"
    for named in (state, settings.tls_cert, settings.tls_key):
        if named is not None and "$" in str(named):  # nginx would read the rest as a variable's name
            raise SplitError(f"{named}: nginx cannot take a path with '$' in it: move it where no folder has one")
    stale = [node.path for node in earlier if node.index > nodes]
    entrance_path = folder / f"{path.stem}.nginx.conf"
    existing = [p for p in (*(node.path for node in files), entrance_path) if p.exists()] + stale
    empty = [node.name for node in files if not node.stream_ids]
    mqtt = data.get("events", {}).get("mqtt")
    topics = None
    if isinstance(mqtt, dict):
        prefix, discovery_id = mqtt_ids(mqtt)
        topics = MqttTopics(prefix, discovery_id if mqtt.get("discovery", True) else None)
    return Split(
        tuple(files),
        entrance_path,
        nginx_config(entrance, ports, path.name, state, [node.stream_ids for node in files]),
        entrance,
        state,
        path,
        tuple(stale),
        tuple(existing),
        _nested_split_warnings(path, data) + _empty_node_warnings(empty) + _unreadable_warnings(earlier),
        earlier,
        placed,
        _text_of(entrance_path),
        ports_kept_from,
        topics,
        _retired_histories(path, earlier, nodes),
    )


def _retired_histories(source: Path, earlier: Iterable[EarlierNode], nodes: int) -> tuple[RetiredHistory, ...]:
    """The history file of each node of ``earlier`` beyond ``nodes`` whose file keeps one, where it exists."""
    found = []
    for node in earlier:
        if node.index <= nodes or node.text is None:
            continue
        try:
            events = tomllib.loads(node.text.removeprefix("\ufeff")).get("events")
            history = events.get("history") if isinstance(events, dict) else None
            if not isinstance(history, dict):
                continue
            path = resolved_path(str(history.get("path") or DEFAULT_HISTORY_FILE), source.parent, "events.history")
        except ValueError:  # not TOML (TOMLDecodeError is one), or no usable path: no node kept a history there
            continue
        if path.is_file():
            found.append(RetiredHistory(node_name(node.index), path, node.stream_ids))
    return tuple(found)


def _check_tls(path: Path, settings: Settings) -> None:
    """SplitError where the file's TLS would not serve the entrance as `segcast serve` would serve it:
    a certificate without its key (or a key alone: the entrance would speak plain HTTP where HTTPS was
    meant), or files that do not load as a certificate and its key."""
    if (settings.tls_cert is None) != (settings.tls_key is None):
        given, missing = ("tls_cert", "tls_key") if settings.tls_key is None else ("tls_key", "tls_cert")
        raise SplitError(
            f"{path.name} sets [server] {given} without {missing}: they go together (the entrance speaks HTTPS "
            "with both, plain HTTP with neither); give both, as segcast serve would need"
        )
    try:
        ssl_context(settings, ("[server] tls_cert", "[server] tls_key"))
    except ConfigError as exc:
        raise SplitError(f"{path.name}: {exc}") from None


def _first_port(entrance_port: int, nodes: int, earlier: Iterable[EarlierNode]) -> tuple[int, Path | None]:
    """Node 1's port where no ``--first-port`` chose it, and the earlier node-1 file it was kept from
    (None: the default). The earlier split's, where there is one that can be kept: a split without
    ``--first-port`` after one with it moved every node, each a restart and every viewer's link. Else
    the one after the entrance's, but never where only root may listen."""
    default = entrance_port + 1 if entrance_port >= PRIVILEGED_PORTS else DEFAULT_FIRST_PORT
    node_1 = next((node for node in earlier if node.index == 1), None)
    kept = node_1.address[1] if node_1 is not None and node_1.address is not None else default
    if node_1 is None or kept == default or not 1 <= kept <= 65536 - nodes or kept <= entrance_port < kept + nodes:
        return default, None  # none, the same, or no room for them all there beside the file's own port
    return kept, node_1.path


def earlier_nodes(source: Path) -> tuple[EarlierNode, ...]:
    """The node files of an earlier split of ``source`` beside it (``cams.node-2.toml`` ...), in node order;
    one that cannot be read holds no camera and has no address, and says why (`_unreadable_warnings`)."""
    found = []
    for path in source.parent.glob(f"{glob.escape(source.stem)}.node-*.toml"):
        if (index := _node_index(source, path)) < 1:
            continue  # cams.node-backup.toml: not a node's
        try:
            text = path.read_text(encoding="utf-8")
            data = tomllib.loads(text.removeprefix("\ufeff"))
        except IsADirectoryError:  # no node was started from it; writing its file fails, and says so
            found.append(EarlierNode(path, index, (), None))
            continue
        except OSError as exc:
            found.append(EarlierNode(path, index, (), None, unreadable=exc.strerror or str(exc)))
            continue
        except UnicodeDecodeError:
            found.append(EarlierNode(path, index, (), None, unreadable="it is not UTF-8 text"))
            continue
        except tomllib.TOMLDecodeError as exc:
            found.append(EarlierNode(path, index, (), None, unreadable=f"not TOML: {exc}"))
            continue
        tables = data.get("streams")
        ids = [t.get("id") for t in tables if isinstance(t, dict)] if isinstance(tables, list) else []
        stream_ids = tuple(i for i in ids if isinstance(i, str))
        found.append(EarlierNode(path, index, stream_ids, _address(data), text, tokens=_asking_tokens(data)))
    return tuple(sorted(found, key=lambda node: node.index))


def _asking_tokens(data: Mapping[str, Any]) -> tuple[str, ...]:
    """The tokens to ask a node started from the file ``data`` what it runs with: the file's own, then
    this environment's, which the nodes are started with where the file names none (module doc)."""
    auth = data.get("auth")
    named = [auth.get(key) for key in ("admin_tokens", "viewer_tokens")] if isinstance(auth, dict) else []
    tokens = [token for listed in named if isinstance(listed, list) for token in listed if isinstance(token, str)]
    for variable in (ADMIN_TOKENS_ENV, VIEWER_TOKENS_ENV):
        tokens += [token.strip() for token in os.environ.get(variable, "").split(",") if token.strip()]
    return tuple(dict.fromkeys(tokens))


def _address(data: Mapping[str, Any]) -> tuple[str, int] | None:
    """Where a node started from the file ``data`` listens, as reached from this machine (None: no port)."""
    server = data.get("server")
    if not isinstance(server, dict) or not isinstance(port := server.get("port"), int):
        return None
    return reachable_host(str(server.get("host", NODE_HOST))), port


def reachable_host(host: str) -> str:
    """Where to reach a server listening on ``host`` from this machine: a wildcard is reached at loopback
    (IPv6's for ``::``, where asyncio listens on IPv6 alone)."""
    if host == "::":
        return "::1"
    return NODE_HOST if host in ("0.0.0.0", "") else host.strip("[]")


def place_streams(
    stream_ids: list[str], nodes: int, earlier: tuple[EarlierNode, ...], rebalance: bool = False
) -> tuple[list[list[int]], dict[str, str]]:
    """Which cameras (positions in ``stream_ids``, the source file's order) each of ``nodes`` nodes gets,
    and why each camera that no earlier node keeps went where it did.

    A camera stays on the node of ``earlier`` whose file has it (the lowest, if two do) while that node
    is one of ``nodes``: moving it would split its history, MQTT topics and metrics, and undo a move
    made through the API. Every other camera (one new to the fleet, one of a node beyond ``nodes``)
    goes, in the file's order, to the node with the fewest cameras so far, the lowest of those tied:
    with no earlier split, that deals every Nth camera to each node. ``rebalance`` then evens the nodes
    out (`_even_out`): a split into more nodes otherwise gives the new ones nothing.
    """
    held: dict[str, int] = {}
    for node in earlier:  # in node order: a camera two files hold stays with the lower
        for stream_id in node.stream_ids:
            held.setdefault(stream_id, node.index)
    shares: list[list[int]] = [[] for _ in range(nodes)]
    for position, stream_id in enumerate(stream_ids):
        if 1 <= held.get(stream_id, 0) <= nodes:
            shares[held[stream_id] - 1].append(position)
    placed = {}
    for position, stream_id in enumerate(stream_ids):
        index = held.get(stream_id, 0)
        if 1 <= index <= nodes:
            continue
        fewest = min(range(nodes), key=lambda i: len(shares[i]))
        shares[fewest].append(position)
        placed[stream_id] = f"from {node_name(index)}, removed" if index else "in no node's file"
    if rebalance:
        _even_out(shares, stream_ids, placed)
    return [sorted(share) for share in shares], placed


def _even_out(shares: list[list[int]], stream_ids: list[str], placed: dict[str, str]) -> None:
    """Move cameras from the node with the most to the one with the fewest (the lowest of those tied)
    until no two differ by more than one: as few moves as that takes, as each splits the camera's history
    and moves its MQTT topics; the fullest node's last camera in the source file's order first."""
    while True:
        most = max(range(len(shares)), key=lambda i: (len(shares[i]), -i))
        fewest = min(range(len(shares)), key=lambda i: (len(shares[i]), i))
        if len(shares[most]) - len(shares[fewest]) <= 1:
            return
        position = max(shares[most])
        shares[most].remove(position)
        shares[fewest].append(position)
        placed.setdefault(stream_ids[position], f"from {node_name(most + 1)}, --rebalance")


def _empty_node_warnings(names: list[str]) -> tuple[str, ...]:
    """A warning where a node gets no camera: a split into more nodes keeps every camera where it was."""
    if not names:
        return ()
    return (
        f"{', '.join(names)} {'gets' if len(names) == 1 else 'get'} no cameras: a new split keeps each camera on "
        "the node whose file has it; with the nodes that would lose one stopped, split again with --rebalance to "
        'even the nodes out, or move some there through the API (docs/scaling.md, "Moving a camera")',
    )


def _unreadable_warnings(earlier: Iterable[EarlierNode]) -> tuple[str, ...]:
    """A warning per node file of an earlier split that cannot be read: whether a node started from it
    runs, and which cameras, this split cannot tell, and it deals the file's cameras out as if it had none."""
    return tuple(
        f"{node.path.name} cannot be read ({node.unreadable}): whether a node started from it is running, and "
        "which cameras it runs, this split cannot tell; it deals the cameras out as if the file held none, and "
        "one that node runs would run twice once its new node starts: if "
        f"{node_name(node.index)} is running, stop it before starting the nodes"
        for node in earlier
        if node.unreadable is not None
    )


def _nested_split_warnings(path: Path, data: Mapping[str, Any]) -> tuple[str, ...]:
    """A warning where ``path`` looks like a node file itself: its nodes' names would nest
    (``site/node-2/node-2``), and it holds only its own share of the cameras."""
    events = data.get("events", {})
    named = {
        "file name": path.stem,
        "MQTT topic prefix": (events.get("mqtt") or {}).get("topic_prefix", ""),
        "history file": Path((events.get("history") or {}).get("path") or DEFAULT_HISTORY_FILE).stem,
    }
    found = [f"{what} {value!r}" for what, value in named.items() if _NODE_SUFFIX.search(value)]
    if not found:
        return ()
    return (
        f"{path.name} looks like a node file of an earlier split (its {' and '.join(found)} end in node-N): "
        "its nodes get nested names (<prefix>/node-2/node-1) and only this node's cameras; "
        "split the original file instead",
    )


def _text_of(path: Path) -> str | None:
    """The text of the file at ``path`` (None: none there, or not text)."""
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def _node_index(source: Path, path: Path) -> int:
    """The node number of ``path`` if it is one of ``source``'s node files (``cams.node-3.toml``), else 0."""
    number = path.name.removeprefix(f"{source.stem}.node-").removesuffix(".toml")
    return int(number) if number.isascii() and number.isdigit() else 0
