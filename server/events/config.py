"""The ``[events]`` table of the config file: which outputs to run and how, checked before start-up.

Every output is off unless its table is present. Errors are ValueError naming the key
(``events.mqtt.port: ...``); `server.config` adds the file name and turns them into its ConfigError.
Writing the table back, when the API saves the file, is `server.events.config_toml`'s.
"""

from __future__ import annotations

import ipaddress
import os
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from server.analytics.shapes import (
    MAX_NAME_CHARS,
    NAME_CHARS_RULE,
    NAME_PATTERN_CHARS,
    did_you_mean,
    echoed,
    refuse_unknown_keys,
    unquoted_number,
)
from server.events.history.query import EVENT_TYPES
from server.events.toml_text import toml_string

DEFAULT_QUEUE = 1000
MAX_QUEUE = 100_000
DEFAULT_HISTORY_FILE = "segcast-events.db"
DEFAULT_MAX_AGE_DAYS = 30.0
DEFAULT_MAX_MB = 1024.0
DEFAULT_WEBHOOK_TIMEOUT_S = 5.0
DEFAULT_WEBHOOK_RETRIES = 3
#: A webhook's event older than this when it could be sent (its receiver was down or slow) is dropped. Ten times
#: MQTT's: a flow often files or forwards what it gets, where an automation acts on it as on what happens now; a
#: receiver that wants every event however late sets 0, and refuses the ones too old for it by their ``time``.
DEFAULT_WEBHOOK_MAX_EVENT_AGE_S = 600.0
#: The event types a webhook's ``zones`` and ``lines`` filters let through: the events of a zone, of a line.
ZONE_EVENT_TYPES = ("zone_enter", "zone_exit", "loiter")
LINE_EVENT_TYPES = ("line_cross",)
#: An MQTT event older than this when it could be sent (its broker was down) is dropped: a Home Assistant
#: automation on it would act on what is long past.
DEFAULT_MAX_EVENT_AGE_S = 60.0
#: Bounds of the numbers a user sets, with their units; each is checked at start-up, naming the key.
MAX_AGE_DAYS_RANGE = (0.01, 36500.0)  # 14 minutes to a century
#: At least a megabyte: retention keeps the file and its write-ahead log within ``max_mb``, so one
#: smaller than a batch of events with their snapshots would delete each event right after storing it.
MAX_MB_RANGE = (1.0, 1e9)
WEBHOOK_TIMEOUT_S_RANGE = (0.1, 600.0)
MAX_EVENT_AGE_S_RANGE = (0.0, 86400.0)  # 0: no limit; at most a day
#: The largest JPEG of an event MQTT publishes (kB of 1024 bytes), with its topic within AWS IoT Core's 128 kB
#: message: a bigger picture is scaled down until it fits (`server.events.mqtt.snapshots`).
DEFAULT_MAX_SNAPSHOT_KB = 100.0
MAX_SNAPSHOT_KB_RANGE = (1.0, 100_000.0)  # a broker takes up to 256 MB (MQTT's limit); none wants a picture that big
TOPIC_PART = re.compile(r"^[A-Za-z0-9_/-]{1,128}\Z")
#: One topic level that is also the start of Home Assistant's ids: no '/', which would be a level more.
DISCOVERY_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}\Z")
#: A host name's labels: letters (any script), digits, '-' and '_' (some local names have one).
HOST_NAME = re.compile(r"^\w[\w-]*(\.[\w-]+)*\.?\Z")
MAX_HOST_NAME_BYTES = 253  # RFC 1035, without the root's dot

HISTORY_KEYS = ("path", "max_age_days", "max_mb", "snapshots", "queue")
WEBHOOK_KEYS = (
    "url",
    "name",
    "secret",
    "timeout_s",
    "retries",
    "queue",
    "max_event_age_s",
    "ca_file",
    "types",
    "streams",
    "zones",
    "lines",
)
MQTT_KEYS = (
    "host",
    "port",
    "username",
    "password",
    "tls",
    "ca_file",
    "client_id",
    "topic_prefix",
    "discovery",
    "discovery_prefix",
    "discovery_id",
    "queue",
    "max_event_age_s",
    "snapshots",
    "max_snapshot_kb",
)


@dataclass(frozen=True, slots=True)
class HistorySettings:
    path: Path
    max_age_days: float = DEFAULT_MAX_AGE_DAYS
    max_mb: float = DEFAULT_MAX_MB
    snapshots: bool = True
    queue: int = DEFAULT_QUEUE


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    url: str
    secret: str | None = field(default=None, repr=False)
    timeout_s: float = DEFAULT_WEBHOOK_TIMEOUT_S
    retries: int = DEFAULT_WEBHOOK_RETRIES
    queue: int = DEFAULT_QUEUE
    #: What logs, /metrics and the API call it (``webhook <name>``); None: its URL, as `shown_url` shows it.
    name: str | None = None
    #: Seconds after its frame an event is still sent; 0: however old.
    max_event_age_s: float = DEFAULT_WEBHOOK_MAX_EVENT_AGE_S
    #: The CAs to trust for an https ``url`` instead of the system's (a receiver's own CA, or its self-signed
    #: certificate).
    ca_file: Path | None = None
    #: Only events of these types, of these streams, of these zones or lines go to it; () lets every one through.
    #: With ``zones`` or ``lines``, an event passes when it is one of those zones' or lines' (a track event is
    #: neither): `server.events.webhook.wanted`.
    types: tuple[str, ...] = ()
    streams: tuple[str, ...] = ()
    zones: tuple[str, ...] = ()
    lines: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class MqttSettings:
    host: str
    port: int | None = None  # None: 8883 with TLS, 1883 without
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False
    ca_file: Path | None = None
    client_id: str | None = None
    topic_prefix: str = "segcast"
    discovery: bool = True
    discovery_prefix: str = "homeassistant"
    #: None: `effective_discovery_id`'s default, kept unwritten so the file saved follows ``topic_prefix``.
    discovery_id: str | None = None
    queue: int = DEFAULT_QUEUE
    #: Seconds after its frame an event is still sent; 0: however old (`server.events.mqtt.outbox`).
    max_event_age_s: float = DEFAULT_MAX_EVENT_AGE_S
    #: Whether zone and line events' pictures are published, retained (`server.events.mqtt.snapshots`). Off
    #: unless asked for: every account the broker lets subscribe could read them, where the history's file is
    #: its owner's alone, and a busy camera's pictures are most of what a metered broker would carry.
    snapshots: bool = False
    max_snapshot_kb: float = DEFAULT_MAX_SNAPSHOT_KB

    @property
    def effective_port(self) -> int:
        return self.port if self.port is not None else (8883 if self.tls else 1883)

    @property
    def effective_discovery_id(self) -> str:
        """What Home Assistant's device and sensor ids are made from (and its discovery topics).

        Not ``topic_prefix`` itself: that is each node's own, so a camera moved to another node, or a
        box split into nodes, would be a new device there. Nodes of one fleet share this instead
        (`segcast split` sets it); by default it is the prefix with ``/`` as ``_``, the ids of old.
        """
        return self.discovery_id or self.topic_prefix.replace("/", "_")


@dataclass(frozen=True, slots=True)
class EventsSettings:
    history: HistorySettings | None = None
    webhooks: tuple[WebhookSettings, ...] = ()
    mqtt: MqttSettings | None = None

    @property
    def any(self) -> bool:
        return self.history is not None or bool(self.webhooks) or self.mqtt is not None


def events_settings(table: object, folder: Path) -> EventsSettings:
    """The ``[events]`` table; relative paths are taken from ``folder`` (the config file's)."""
    if not isinstance(table, Mapping):
        raise ValueError(f"events: expected an [events] table, got {shown(table)}")
    refuse_unknown_keys(table, ("history", "webhooks", "mqtt"), "events")
    history = _history(_sub(table, "history"), folder) if "history" in table else None
    hooks = table.get("webhooks", [])
    if not isinstance(hooks, list) or not all(isinstance(h, Mapping) for h in hooks):
        raise ValueError("events.webhooks: expected [[events.webhooks]] tables")
    webhooks = tuple(_webhook(h, folder, f"events.webhooks[{i}]") for i, h in enumerate(hooks))
    _refuse_names_twice(webhooks)
    mqtt = _mqtt(_sub(table, "mqtt"), folder) if "mqtt" in table else None
    return EventsSettings(history, webhooks, mqtt)


def _history(table: Mapping[str, Any], folder: Path) -> HistorySettings:
    where = "events.history"
    refuse_unknown_keys(table, HISTORY_KEYS, where)
    path = _text(table, "path", where) or DEFAULT_HISTORY_FILE
    return HistorySettings(
        path=_history_file(path, folder, f"{where}.path"),
        max_age_days=_number(table, "max_age_days", DEFAULT_MAX_AGE_DAYS, MAX_AGE_DAYS_RANGE, where),
        max_mb=_number(table, "max_mb", DEFAULT_MAX_MB, MAX_MB_RANGE, where),
        snapshots=_bool(table, "snapshots", True, where),
        queue=_queue(table, where),
    )


def _history_file(value: str, folder: Path, where: str) -> Path:
    """The history's database file; a folder is refused here, where SQLite would only say "unable to open",
    as is a path under a file, which no start could ever make ("[Errno 17] File exists" at every write)."""
    path = resolved_path(value, folder, where)
    if path.is_dir() or value.endswith(("/", os.sep)):
        suggestion = Path(value) / DEFAULT_HISTORY_FILE
        raise ValueError(
            f"{where}: {value!r} is a folder: name the file in it, e.g. path = {toml_string(str(suggestion))}"
        )
    if (blocker := _nearest_existing(path.parent)) is not None and not blocker.is_dir():
        raise ValueError(f"{where}: {value!r} cannot be made: {blocker} is a file, not a folder")
    return path


def _nearest_existing(path: Path) -> Path | None:
    """``path`` or its nearest parent that exists; None where one cannot be looked at (the open says why)."""
    try:
        return next(p for p in (path, *path.parents) if p.exists())
    except OSError:  # a folder on the way that this user may not search
        return None


def resolved_path(value: str, folder: Path, where: str) -> Path:
    """``value`` as an absolute path, relative to ``folder``; ValueError naming ``where`` if it cannot be one."""
    try:
        return (folder / Path(value).expanduser()).resolve()
    except (ValueError, RuntimeError, OSError) as exc:  # a NUL, ~user of no such user
        raise ValueError(f"{where}: {value!r:.60} is not a usable path ({exc})") from None


def _webhook(table: Mapping[str, Any], folder: Path, where: str) -> WebhookSettings:
    refuse_unknown_keys(table, WEBHOOK_KEYS, where)
    url = _text(table, "url", where)
    try:
        parts = urlsplit(url or "")
    except ValueError as exc:  # an unclosed [IPv6 address
        raise ValueError(f"{where}.url: not a URL ({exc}), got {url!r:.80}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{where}.url: expected an http:// or https:// URL, got {url!r}")
    if _plain_host(parts.hostname) is None:
        raise ValueError(
            f"{where}.url: {parts.hostname!r} is not a host name or an IP address{_length_hint(parts.hostname)}, "
            f"in {url!r}"
        )
    try:
        port_ok = parts.port != 0  # urlsplit checks the port only when it is asked for it
    except ValueError:  # not a number, or over 65535
        port_ok = False
    if not port_ok:
        raise ValueError(f"{where}.url: expected a port from 1 to 65535 after the host, got {url!r}")
    retries = table.get("retries", DEFAULT_WEBHOOK_RETRIES)
    if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= 20:
        raise ValueError(f"{where}.retries: expected a whole number from 0 to 20, got {shown_as_number(retries)}")
    ca_file = _ca_file(table, folder, where)
    if ca_file is not None and parts.scheme != "https":
        raise ValueError(
            f"{where}.ca_file: checks the receiver's TLS certificate, but url is http://: use https://, or remove "
            "ca_file"
        )
    types = _event_types(table, where)
    zones, lines = _names(table, "zones", where), _names(table, "lines", where)
    _refuse_filters_nothing_passes(types, zones, lines, where)
    return WebhookSettings(
        url=parts.geturl(),
        name=_webhook_name(table, where),
        secret=_text(table, "secret", where),
        timeout_s=_number(table, "timeout_s", DEFAULT_WEBHOOK_TIMEOUT_S, WEBHOOK_TIMEOUT_S_RANGE, where),
        retries=retries,
        queue=_queue(table, where),
        max_event_age_s=_number(
            table, "max_event_age_s", DEFAULT_WEBHOOK_MAX_EVENT_AGE_S, MAX_EVENT_AGE_S_RANGE, where
        ),
        ca_file=ca_file,
        types=types,
        streams=_names(table, "streams", where),
        zones=zones,
        lines=lines,
    )


def _webhook_name(table: Mapping[str, Any], where: str) -> str | None:
    """``name``, as a stream id is spelled: it goes into log lines and /metrics labels as it is."""
    name = table.get("name")
    if name is None:
        return None
    if refused := unquoted_number(name, f"{where}.name"):
        raise ValueError(refused)
    if not _is_name(name):
        raise ValueError(
            f"{where}.name: expected 1 to {MAX_NAME_CHARS} {NAME_CHARS_RULE} (it names the webhook in the log and "
            f"/metrics), got {echoed(name)}"
        )
    return str(name)


def _refuse_names_twice(webhooks: tuple[WebhookSettings, ...]) -> None:
    """Each named webhook's name is its own: two of one name would be one series in /metrics."""
    first: dict[str, int] = {}
    for index, hook in enumerate(webhooks):
        if hook.name is not None and (taken := first.setdefault(hook.name, index)) != index:
            raise ValueError(
                f"events.webhooks[{index}].name: {hook.name!r} is events.webhooks[{taken}]'s name already: "
                "give each its own"
            )


def _is_name(value: object) -> bool:
    """Whether ``value`` is spelled as stream ids and zone and line names are."""
    return isinstance(value, str) and 0 < len(value) <= MAX_NAME_CHARS and set(value) <= NAME_PATTERN_CHARS


def _filter_list(table: Mapping[str, Any], key: str, where: str, expected: str) -> list[Any]:
    """The list a filter ``key`` gives, [] where it is not given; ``expected`` says what it lists."""
    value = table.get(key, [])
    if not isinstance(value, list):
        raise ValueError(f"{where}.{key}: expected a list of {expected}, got {echoed(value)}")
    if key in table and not value:
        raise ValueError(f"{where}.{key}: an empty list lets no event through: leave {key} out to let every one")
    return value


def _names(table: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
    """A ``streams``, ``zones`` or ``lines`` filter: names as their ids are spelled, not checked against the
    streams running now, since a camera, zone or line may be added after the webhook."""
    expected = f"names of 1 to {MAX_NAME_CHARS} {NAME_CHARS_RULE}"
    names = _filter_list(table, key, where, expected)
    for index, name in enumerate(names):
        if refused := unquoted_number(name, f"{where}.{key}[{index}]"):
            raise ValueError(refused)
        if not _is_name(name):
            raise ValueError(f"{where}.{key}: expected a list of {expected}, got {echoed(name)} in it")
    return tuple(names)


def _event_types(table: Mapping[str, Any], where: str) -> tuple[str, ...]:
    """A ``types`` filter: each one of `EVENT_TYPES`, where another is a typo that would let nothing through."""
    types = _filter_list(table, "types", where, f"event types ({', '.join(EVENT_TYPES)})")
    for kind in types:
        if kind not in EVENT_TYPES:
            hint = did_you_mean(kind, EVENT_TYPES) if isinstance(kind, str) else ""
            raise ValueError(f"{where}.types: unknown event type {echoed(kind)}; known: {', '.join(EVENT_TYPES)}{hint}")
    return tuple(types)


def _refuse_filters_nothing_passes(
    types: tuple[str, ...], zones: tuple[str, ...], lines: tuple[str, ...], where: str
) -> None:
    """``zones`` and ``lines`` let through only the events of a zone or a line: with ``types`` none of those,
    the webhook would never get an event, and nothing would say why."""
    passing = (ZONE_EVENT_TYPES if zones else ()) + (LINE_EVENT_TYPES if lines else ())
    if types and passing and not set(types) & set(passing):
        key, place = ("zones", "zone") if zones else ("lines", "line")
        listed = ", ".join(toml_string(kind) for kind in types)
        raise ValueError(
            f"{where}.{key}: no event of types = [{listed}] has a {place}, so none would pass (a zone's events are "
            f"{', '.join(ZONE_EVENT_TYPES)}; a line's {', '.join(LINE_EVENT_TYPES)})"
        )


def _ca_file(table: Mapping[str, Any], folder: Path, where: str) -> Path | None:
    """``ca_file``, relative to ``folder`` (the config file's): the PEM file of the CAs to trust instead of the
    system's. Loaded now, so that a file that holds none stops the start, naming the key, rather than failing
    every delivery with a TLS error."""
    value = _text(table, "ca_file", where)
    if value is None:
        return None
    path = resolved_path(value, folder, f"{where}.ca_file")
    if not path.is_file():
        raise ValueError(f"{where}.ca_file: {value!r} is not a file")
    try:
        ssl.create_default_context(cafile=str(path))
    except ssl.SSLError as exc:
        raise ValueError(f"{where}.ca_file: {value!r} holds no PEM certificate ({exc.reason or exc})") from None
    except OSError as exc:
        raise ValueError(f"{where}.ca_file: {value!r} cannot be read ({exc.strerror or exc})") from None
    return path


def _mqtt(table: Mapping[str, Any], folder: Path) -> MqttSettings:
    where = "events.mqtt"
    refuse_unknown_keys(table, MQTT_KEYS, where)
    host = _broker_host(table, where)
    port = table.get("port")
    if port is not None and (isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535):
        raise ValueError(f"{where}.port: expected a whole number from 1 to 65535, got {shown_as_number(port)}")
    ca_file = _text(table, "ca_file", where)
    ca_path = resolved_path(ca_file, folder, f"{where}.ca_file") if ca_file else None
    if ca_path is not None and not ca_path.is_file():
        raise ValueError(f"{where}.ca_file: {ca_file!r} is not a file")
    if ca_path is not None and table.get("tls") is False:
        raise ValueError(f"{where}.ca_file: checks the broker's TLS certificate, but tls = false: remove one of them")
    username, password = _text(table, "username", where), _text(table, "password", where)
    if password is not None and username is None:
        raise ValueError(f"{where}.password: set username too")
    prefixes = {
        key: _topic(table, key, default, where)
        for key, default in (("topic_prefix", "segcast"), ("discovery_prefix", "homeassistant"))
    }
    return MqttSettings(
        host=host,
        port=port,
        username=username,
        password=password,
        tls=_bool(table, "tls", ca_path is not None, where),
        ca_file=ca_path,
        client_id=_text(table, "client_id", where),
        topic_prefix=prefixes["topic_prefix"],
        discovery=_bool(table, "discovery", True, where),
        discovery_prefix=prefixes["discovery_prefix"],
        discovery_id=_discovery_id(table, where),
        queue=_queue(table, where),
        max_event_age_s=_number(table, "max_event_age_s", DEFAULT_MAX_EVENT_AGE_S, MAX_EVENT_AGE_S_RANGE, where),
        snapshots=_bool(table, "snapshots", False, where),
        max_snapshot_kb=_number(table, "max_snapshot_kb", DEFAULT_MAX_SNAPSHOT_KB, MAX_SNAPSHOT_KB_RANGE, where),
    )


def _broker_host(table: Mapping[str, Any], where: str) -> str:
    """``host``, a name or an address alone: a URL or ``name:port`` would only fail to connect, forever."""
    host = _text(table, "host", where)
    if not host:
        raise ValueError(f"{where}.host: expected the broker's host name or address")
    if _plain_host(host) is None:
        masked = host if "@" not in host else "***@" + host.rsplit("@", 1)[1]  # a password before the @ stays unsaid
        hint = _length_hint(host) or _host_hint(host)
        raise ValueError(f"{where}.host: expected the broker's host name or address alone, got {masked!r}{hint}")
    return host


def _host_hint(host: str) -> str:
    """What to write instead of ``host``, when it looks like a URL, ``name:port`` or ``[IPv6]``."""
    try:
        parts = urlsplit(host if "://" in host else f"//{host}")
        port = parts.port
    except ValueError:  # an unclosed [, a port that is no number
        return ""
    name = _plain_host(parts.hostname or "")
    if name is None:
        return ""
    hint = f": write host = {toml_string(name)}"
    if port is not None:
        hint += f" and port = {port}"
    if parts.scheme in ("mqtts", "ssl", "tls"):
        hint += " and tls = true"
    if parts.username is not None:
        hint += ", with the user name and password in username and password"
    return hint


def _plain_host(name: str) -> str | None:
    """``name`` if it is a host name or an IP address (IPv6 too, colons and all, as a socket takes it), else None.

    A name is one DNS can hold: no label over 63 bytes (as IDNA encodes it), 253 in all. A longer one would
    pass here and fail every connection (aiohttp raises a bare UnicodeError on each attempt).
    """
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        pass
    if not HOST_NAME.match(name):
        return None
    try:
        encoded = name.rstrip(".").encode("idna")
    except UnicodeError:  # a label empty or over 63 bytes
        return None
    return name if len(encoded) <= MAX_HOST_NAME_BYTES else None


def _length_hint(name: str) -> str:
    """Why a name written as a host name is none: its length (DNS's limits), or nothing to add."""
    if HOST_NAME.match(name) and _plain_host(name) is None:
        return f" (a name is at most {MAX_HOST_NAME_BYTES} characters, each part between dots at most 63)"
    return ""


def _sub(table: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = table[key]
    if not isinstance(value, Mapping):
        raise ValueError(f"events.{key}: expected an [events.{key}] table, got {shown(value)}")
    return value


def _text(table: Mapping[str, Any], key: str, where: str) -> str | None:
    value = table.get(key)
    if value is not None and (not isinstance(value, str) or not value):
        raise ValueError(f"{where}.{key}: expected a non-empty string")
    return value


def _topic(table: Mapping[str, Any], key: str, default: str, where: str) -> str:
    value = table.get(key, default)
    if not isinstance(value, str) or not TOPIC_PART.match(value) or value.startswith("/") or value.endswith("/"):
        raise ValueError(f"{where}.{key}: expected letters, digits, '_', '-' and inner '/', got {shown(value)}")
    return value


def _discovery_id(table: Mapping[str, Any], where: str) -> str | None:
    value = table.get("discovery_id")
    if value is not None and (not isinstance(value, str) or not DISCOVERY_ID.match(value)):
        raise ValueError(
            f"{where}.discovery_id: expected 1 to 128 letters, digits, '_' and '-' (no '/': it is one topic level"
            f" and the start of Home Assistant's ids), got {shown(value)}"
        )
    return value


def _number(table: Mapping[str, Any], key: str, default: float, bounds: tuple[float, float], where: str) -> float:
    value = table.get(key, default)
    low, high = bounds
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ValueError(
            f"{where}.{key}: expected a number from {low:.10g} to {high:.10g}, got {shown_as_number(value)}"
        )
    return float(value)


def _bool(table: Mapping[str, Any], key: str, default: bool, where: str) -> bool:
    value = table.get(key, default)
    if not isinstance(value, bool):
        raise ValueError(f"{where}.{key}: expected true or false, got {value!r}")
    return value


def _queue(table: Mapping[str, Any], where: str) -> int:
    value = table.get("queue", DEFAULT_QUEUE)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_QUEUE:
        raise ValueError(f"{where}.queue: expected a whole number from 1 to {MAX_QUEUE}, got {shown_as_number(value)}")
    return value


def shown(value: object) -> str:
    """``value``, read from a config file, as an error shows it: TOML's ``true``, not Python's ``True``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


def shown_as_number(value: object) -> str:
    """``value`` where a number was expected: true or false, numbers to Python, said plainly not to be one."""
    return f"{shown(value)}, which is not a number" if isinstance(value, bool) else shown(value)
