"""Settings: everything a run of segcast is told, as one frozen value built before anything starts.

Settings come from a TOML file (``segcast serve --config FILE``) with command-line flags over it.
Every key is checked when the file is read: an unknown key or a bad value stops the start with one
line naming it (``segcast.toml: streams[1] (id 'yard').conf: expected a number from 0.01 to 1``), never a surprise
later. `server.persist.write_config` saves the streams back when the API is asked to persist a change.
"""

from __future__ import annotations

import codecs
import hashlib
import io
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from server.analytics.shapes import NAME_CHARS_RULE, did_you_mean, unquoted_number
from server.config_values import (
    ConfigError,
    file_relative_uri,
    local_model,
    path_from_config,
    read_bool,
    read_embed_origins,
    read_int,
    read_optional_path,
    read_strings,
    read_table,
    read_text,
    read_tokens,
)
from server.delivery.viewer import ViewerLimits
from server.events.config import (
    DEFAULT_HISTORY_FILE,
    HISTORY_KEYS,
    MQTT_KEYS,
    WEBHOOK_KEYS,
    EventsSettings,
    events_settings,
    shown,
)
from server.events.config_toml import spelled_keys
from server.events.toml_text import toml_string
from server.http.access.policy import (
    DEFAULT_DENY_NETWORKS,
    DEFAULT_SOURCE_SCHEMES,
    KNOWN_SOURCE_SCHEMES,
    SourcePolicy,
    parse_networks,
)
from server.http.network.listen import DEFAULT_HOST, DEFAULT_PORT
from server.inference.models import DEFAULT_MODEL
from server.inference.options import InferenceOptions
from server.options import FRIGATE_KEYS, StreamOptions
from server.sources.base import MAX_FRAME_SIDE_PX

#: ``\Z``, not ``$``: "$" also matches before a final newline, and "cam\n" broke headers and log lines.
STREAM_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}\Z")
DEFAULT_JPEG_QUALITY = 80
MAX_BATCH_LIMIT = 64
#: Bounds of ``[server] max_frame_side``: the model needs 16 pixels; FFmpeg decodes at most 16384.
FRAME_SIDE_LIMITS_PX = (16, 16384)

#: Keys of a ``[[streams]]`` table besides the stream options of `StreamOptions`.
STREAM_KEYS = ("id", "uri", "loop")
#: The key of a ``[[streams]]`` table that a save writes for a stream the API added or pointed at its
#: source (`StreamConfig.from_api`); the file alone has it: a request that gave it is refused.
FROM_API_KEY = "from_api"
SERVER_KEYS = (
    "host",
    "port",
    "jpeg_quality",
    "embed_origins",
    "save_config",
    "media_dirs",
    "allow_devices",
    "source_schemes",
    "tls_cert",
    "tls_key",
    "max_frame_side",
    "max_viewers",
    "max_viewers_per_address",
    "max_scaled_images",
    "deny_networks",
)
#: ``[server]`` keys of `ViewerLimits`, with the most each may be set to.
VIEWER_LIMIT_KEYS = {"max_viewers": 100_000, "max_viewers_per_address": 100_000, "max_scaled_images": 64}
MODEL_KEYS = ("name", "device", "max_batch", "half", "fast_masks")
AUTH_KEYS = ("viewer_tokens", "admin_tokens", "required")
TOP_LEVEL_KEYS = ("server", "model", "stream_defaults", "streams", "auth", "events")
_OPTION_KEYS = tuple(sorted(f.name for f in fields(StreamOptions)))
#: Every key of a ``[[streams]]`` table (and of a stream given to the API): its own, then its options.
_STREAM_TABLE_KEYS = (*STREAM_KEYS, "options", *_OPTION_KEYS)
#: The keys of each table of the file by its header: what an unknown key's error lists, and where it
#: says a key written under another table's header may belong.
_TABLE_KEYS: dict[str, tuple[str, ...]] = {
    "[server]": SERVER_KEYS,
    "[model]": MODEL_KEYS,
    "[auth]": AUTH_KEYS,
    "[stream_defaults]": _OPTION_KEYS,
    "[[streams]]": (*_STREAM_TABLE_KEYS, FROM_API_KEY),
    "[events.history]": HISTORY_KEYS,
    "[[events.webhooks]]": WEBHOOK_KEYS,
    "[events.mqtt]": MQTT_KEYS,
}

#: tomllib's words for a value it cannot read, and where that value starts.
_INVALID_VALUE = re.compile(r"Invalid value \(at line (\d+), column (\d+)\)")
#: The key a value is given to, just before it: ``name =``, dotted or quoted, in a table or an inline one.
_KEY_BEFORE_VALUE = re.compile(r"""([\w.-]+|"[^"]*"|'[^']*')\s*=\s*\Z""")
#: A value that reads as a word, up to a comment or the end of the inline table or array it is in.
_BARE_WORD = re.compile(r"[A-Za-z][^#,\]}]*")


@dataclass(frozen=True, slots=True)
class StreamConfig:
    """One stream, from the config file, a flag or the API: the three are treated alike, but for
    ``from_api``.

    ``from_api``: the API added the stream or gave it its source, so its camera is held to the API's
    source policy (`server.streams.StreamManager.add`: ``[server] deny_networks`` at every connection),
    whatever its name resolves to later. A save writes it to the stream's table (`FROM_API_KEY`), so
    the stream stays held to it after a restart: an admin token must not reach, through a name its
    holder resolves, the addresses the policy keeps from it. Not part of `to_json`: nothing a client
    sends or reads.
    """

    stream_id: str
    uri: str
    loop: bool = False
    options: StreamOptions = field(default_factory=StreamOptions)
    from_api: bool = False

    def to_json(self) -> dict[str, object]:
        return {"id": self.stream_id, "uri": self.uri, "loop": self.loop, "options": self.options.to_json()}


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    model: str = DEFAULT_MODEL
    inference: InferenceOptions = field(default_factory=InferenceOptions)
    stream_defaults: StreamOptions = field(default_factory=StreamOptions)
    streams: tuple[StreamConfig, ...] = ()
    jpeg_quality: int = DEFAULT_JPEG_QUALITY
    #: Origins allowed to show the viewer and /embed pages in a frame (CSP frame-ancestors); "*": any.
    embed_origins: tuple[str, ...] = ()
    #: The file the settings came from; API changes are written back to it when asked.
    config_path: Path | None = None
    #: SHA-256 of the bytes `load_config` read from `config_path`, so that a save can tell whether the
    #: file was edited since (see `server.persist.ConfigFileState`); None for settings made in code.
    config_digest: str | None = None
    #: Write every API change of the streams back to `config_path`, not only those with ?persist=1.
    save_config: bool = False
    viewer_tokens: tuple[str, ...] = ()
    admin_tokens: tuple[str, ...] = ()
    auth_off: bool = False
    #: ``[auth] required = true``: tokens are needed wherever it listens, loopback too (a node behind
    #: an entrance others reach, which `segcast split` writes: the entrance reaches it from 127.0.0.1).
    auth_required: bool = False
    #: What the API may open (see `server.http.access.policy`); the config file and flags are not held to it,
    #: but for the cameras of the streams the API saved there (`StreamConfig.from_api`).
    source_schemes: tuple[str, ...] = DEFAULT_SOURCE_SCHEMES
    media_dirs: tuple[Path, ...] = ()
    allow_devices: bool = False
    #: Addresses the API may not point a camera at (see `server.http.access.policy`).
    deny_networks: tuple[str, ...] = DEFAULT_DENY_NETWORKS
    #: PEM certificate chain and private key: with both, the server speaks HTTPS (and WSS) only.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    #: Event outputs (history, webhooks, MQTT): the ``[events]`` table.
    events: EventsSettings = field(default_factory=EventsSettings)
    #: Sources whose frames are larger than this on a side fail instead of entering the pipeline.
    max_frame_side: int = MAX_FRAME_SIDE_PX
    viewer_limits: ViewerLimits = field(default_factory=ViewerLimits)
    #: What the config file itself says, where flags (``--port``, ``--conf``...) changed some of it: what
    #: `server.persist.write_config` writes, so that a change made through the API does not make them permanent.
    file_settings: Settings | None = None
    #: Streams added by ``--source`` (or ``demo``): never written to the config file, where the same
    #: command would meet them again beside its own and refuse to start ("used twice").
    flag_streams: frozenset[str] = frozenset()
    #: Paths and source URIs the config file gave relative to its folder, by where the file gave them
    #: (``server.media_dirs[0]``, ``model.name``, ``streams.<id>.uri``...): each as it is taken (absolute)
    #: with the text the file wrote, which a save writes again while the setting still holds that value.
    written_as: dict[str, tuple[str, str]] = field(default_factory=dict, hash=False)
    #: The stream options each ``[[streams]]`` table of the file set itself, by stream id (``conf``...,
    #: and ``tracker_settings.<key>`` for each tracker setting): what a save writes again for a stream
    #: as it started, where the defaults and flags gave it the others (see `server.persist`).
    stream_keys: dict[str, frozenset[str]] = field(default_factory=dict, hash=False)
    #: The keys the file's tables set themselves, as ``table.key`` (``model.name``,
    #: ``stream_defaults.tracker``...), and those of its ``[events.*]`` tables (``events.history.max_mb``,
    #: ``events.webhooks[0].url``): a key set to its default value still says something, that a save
    #: writes again and an error names as the line to change.
    file_keys: frozenset[str] = field(default=frozenset(), compare=False)

    def source_policy(self) -> SourcePolicy:
        return SourcePolicy.of(self.source_schemes, self.media_dirs, self.allow_devices, self.deny_networks)


def flatten_options(values: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Stream options may also come nested under ``options``, as the API shows them, but each only once:
    given both ways, neither value can be taken for the one meant."""
    nested = values.get("options", {})
    if not isinstance(nested, Mapping):
        raise ConfigError(f"{where}.options: expected a table of stream options, got {shown(nested)}")
    if "options" in nested:
        raise ConfigError(f"{where}.options.options: unknown stream option; options are nested once, under options")
    if stream_keys := sorted(set(nested) & set(STREAM_KEYS)):  # the stream itself, not how it is inferred
        key = stream_keys[0]
        raise ConfigError(f"{where}.options.{key}: not a stream option; give {key} beside options, not in it")
    if twice := sorted(set(nested) & set(values)):
        raise ConfigError(f"{where}.{twice[0]}: given twice, at the top level and under options; give it once")
    return {**nested, **{k: v for k, v in values.items() if k != "options"}}


def check_stream_id(value: object, where: str, hint: str = "") -> str:
    """``value`` if it could be a stream's id, else a ConfigError (a ValueError) naming ``where``.

    Every way an id comes in (the config file, the API, a WebRTC publisher, a WebSocket subscription,
    ``--source``) states the rule in these same words after its own prefix, so an id refused at one is
    refused, and told, alike at the others; ``hint`` is that entry point's own way out, in brackets.
    """
    if refused := unquoted_number(value, where):
        raise ConfigError(refused)
    if not isinstance(value, str) or not STREAM_ID_PATTERN.match(value):
        after = f" ({hint})" if hint else ""
        raise ConfigError(
            f"{where}: expected 1 to 64 {NAME_CHARS_RULE} (ids go into URLs and MQTT topics), got {shown(value)}{after}"
        )
    return value


def stream_config(values: Mapping[str, Any], defaults: StreamOptions, where: str) -> StreamConfig:
    """A stream from a TOML table or a JSON object; ConfigError names ``where`` and the bad key."""
    if unknown := [key for key in values if key not in _STREAM_TABLE_KEYS]:
        raise _unknown_key(where, unknown[0], _STREAM_TABLE_KEYS)
    values = flatten_options(values, where)
    if "id" not in values:
        raise ConfigError(f"{where}.id: missing: give the stream an id of 1 to 64 {NAME_CHARS_RULE}")
    stream_id = check_stream_id(values["id"], f"{where}.id")
    uri = values.get("uri")
    if not isinstance(uri, str) or not uri.strip():
        raise ConfigError(f"{where}.uri: expected the source, e.g. rtsp://..., a file path or scene:?seed=1")
    loop = values.get("loop", False)
    if not isinstance(loop, bool):
        raise ConfigError(f"{where}.loop: expected true or false, got {loop!r}")
    options = {k: v for k, v in values.items() if k not in STREAM_KEYS}
    return StreamConfig(stream_id, uri.strip(), loop, stream_options(options, defaults, where))


def stream_options(values: Mapping[str, Any], base: StreamOptions, where: str) -> StreamOptions:
    try:
        return StreamOptions.from_mapping(values, base)
    except ValueError as exc:
        raise ConfigError(f"{where}.{exc}") from None


def load_config(
    path: Path, default_overrides: Mapping[str, Any] | None = None, flag: str | None = "--config"
) -> Settings:
    """Settings from a TOML file. ``default_overrides`` (stream options from flags, already checked) are
    laid over its ``[stream_defaults]``, so they reach every stream that does not set its own.

    ``flag``: the option that gave the file, which a file that cannot be read is named with (None: by its path).

    Relative paths in the file are taken from the file's folder: ``media_dirs``, ``tls_cert`` and the
    others, a stream's ``uri`` that is a file path (or a ``file:`` URI without a leading ``/``), and
    ``[model] name`` when such a file or folder is there (else it is a name, such as one ultralytics
    publishes, or a path from the folder segcast was started in, as ``--model`` takes it).
    """
    try:
        raw = path.read_bytes()
        # Read as `Path.read_text` would (line ends made "\n"); -sig: Notepad starts a file with a BOM.
        text = io.TextIOWrapper(io.BytesIO(raw), encoding="utf-8-sig").read()
        data = tomllib.loads(text)
    except OSError as exc:
        given = f"{flag} {path}" if flag else str(path)
        raise ConfigError(f"{given}: cannot read it ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise ConfigError(_not_utf8(raw, path.name)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path.name}: not valid TOML ({exc}){_bare_word_hint(str(exc), text)}") from None
    return replace(settings_from_mapping(data, path, default_overrides or {}), config_digest=content_digest(raw))


def _bare_word_hint(error: str, text: str) -> str:
    """``: text values need quotes: name = "bundled"`` where tomllib could not read a value that reads as a
    word (``name = bundled``, as an INI file or a shell takes text): its "Invalid value (at line 7, column 8)"
    said where, not that TOML's text is always quoted. ``True`` is told its case instead. Nothing for any
    other error, or where no ``key =`` comes before the value."""
    place = _INVALID_VALUE.fullmatch(error)
    if place is None:
        return ""
    line, column = int(place[1]), int(place[2])
    row = text.split("\n")[line - 1]  # tomllib counts lines and columns in this same text
    key, word = _KEY_BEFORE_VALUE.search(row[: column - 1]), _BARE_WORD.match(row, column - 1)
    if key is None or word is None:
        return ""
    value = word[0].rstrip()
    if value.lower() in ("true", "false"):
        return f": TOML writes {value.lower()} in lower case: {key[1]} = {value.lower()}"
    return f": text values need quotes: {key[1]} = {toml_string(value)}"


def _not_utf8(raw: bytes, name: str) -> str:
    """Why a config file's bytes are not UTF-8 text, in the words of the other TOML errors: the decoder's
    own ("can't decode byte 0xff in position 0") named neither UTF-16, which Windows PowerShell 5's ``>``
    and ``Out-File`` write, nor the line of a Latin-1 byte."""
    if raw.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):  # before UTF-16's: UTF-32 LE's starts with it
        return f"{name} is UTF-32: save it as UTF-8"
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return f"{name} is UTF-16: save it as UTF-8"
    body = raw.removeprefix(codecs.BOM_UTF8)
    try:
        body.decode()
    except UnicodeDecodeError as exc:
        # Lines and columns as tomllib counts them: in characters, after line ends are made "\n".
        before = body[: exc.start].decode().replace("\r\n", "\n").replace("\r", "\n")
        line, column = before.count("\n") + 1, len(before) - before.rfind("\n")
        where = f"at line {line}, column {column}"
        return f"{name}: not valid TOML (byte 0x{body[exc.start]:02x} is not UTF-8 ({where})): save it as UTF-8"
    return f"{name}: not valid TOML (not UTF-8 text): save it as UTF-8"


def settings_from_mapping(data: Mapping[str, Any], path: Path, default_overrides: Mapping[str, Any]) -> Settings:
    name = path.name
    _refuse_unknown_keys(data, name)
    server = read_table(data, "server", name)
    host = listen_host(read_text(server, "host", DEFAULT_HOST, f"{name}: server"), f"{name}: server.host")
    port = read_int(server, "port", DEFAULT_PORT, 1, 65535, f"{name}: server")
    quality = read_int(server, "jpeg_quality", DEFAULT_JPEG_QUALITY, 1, 100, f"{name}: server")
    origins = read_embed_origins(server, f"{name}: server")
    save = read_bool(server, "save_config", False, f"{name}: server")
    allow_devices = read_bool(server, "allow_devices", False, f"{name}: server")
    schemes = read_strings(server, "source_schemes", f"{name}: server") if "source_schemes" in server else None
    for scheme in schemes or ():
        if scheme.lower() not in KNOWN_SOURCE_SCHEMES:
            known = ", ".join(sorted(KNOWN_SOURCE_SCHEMES))
            raise ConfigError(f"{name}: server.source_schemes: unknown scheme {scheme!r}; known: {known}")
    written_as: dict[str, tuple[str, str]] = {}
    media_dirs = []
    for index, folder in enumerate(read_strings(server, "media_dirs", f"{name}: server")):
        resolved = path_from_config(folder, path, f"{name}: server.media_dirs")
        if not resolved.is_dir():
            raise ConfigError(f"{name}: server.media_dirs: {folder!r} is not a folder")
        media_dirs.append(resolved)
        written_as[f"server.media_dirs[{index}]"] = (str(resolved), folder)
    tls = {key: read_optional_path(server, key, path, f"{name}: server") for key in ("tls_cert", "tls_key")}
    for key, value in tls.items():
        if value is not None:
            written_as[f"server.{key}"] = (str(value), server[key])
    deny_networks: tuple[str, ...] = DEFAULT_DENY_NETWORKS
    if "deny_networks" in server:
        deny_networks = tuple(read_strings(server, "deny_networks", f"{name}: server"))
        try:
            parse_networks(deny_networks)
        except ValueError as exc:
            raise ConfigError(f"{name}: server.deny_networks: {exc}") from None
    max_frame_side = read_int(server, "max_frame_side", MAX_FRAME_SIDE_PX, *FRAME_SIDE_LIMITS_PX, f"{name}: server")
    viewer_limits = ViewerLimits(
        **{
            key: read_int(server, key, getattr(ViewerLimits(), key), 1, most, f"{name}: server")
            for key, most in VIEWER_LIMIT_KEYS.items()
        }
    )

    model = read_table(data, "model", name)
    model_name = read_text(model, "name", DEFAULT_MODEL, f"{name}: model")
    if (local := local_model(model_name, path)) != model_name:
        written_as["model.name"] = (local, model_name)
        model_name = local
    device = read_text(model, "device", "auto", f"{name}: model")
    max_batch = read_int(model, "max_batch", InferenceOptions().max_batch, 1, MAX_BATCH_LIMIT, f"{name}: model")
    half = read_bool(model, "half", False, f"{name}: model")
    fast_masks = read_bool(model, "fast_masks", True, f"{name}: model")

    file_defaults = stream_options(
        read_table(data, "stream_defaults", name), StreamOptions(), f"{name}: stream_defaults"
    )
    # Flags are a layer over the file's defaults, as a stream's own keys are: a tracker of their own
    # drops the settings the file gave its tracker, which another tracker would not know.
    defaults = stream_options(default_overrides, file_defaults, "flags")
    raw_streams = data.get("streams", [])
    if not isinstance(raw_streams, list) or not all(isinstance(s, dict) for s in raw_streams):
        raise ConfigError(f"{name}: streams: expected [[streams]] tables")
    streams: list[StreamConfig] = []
    stream_keys: dict[str, frozenset[str]] = {}
    for index, table in enumerate(raw_streams):
        where = f"{name}: {stream_place(index, table.get('id'))}"
        config = _file_stream(table, defaults, file_defaults, where)
        if any(s.stream_id == config.stream_id for s in streams):
            raise ConfigError(f"{where}.id: {config.stream_id!r} is used twice")
        stream_keys[config.stream_id] = _keys_set(flatten_options(table, where))
        if (uri := file_relative_uri(config.uri, path, f"{where}.uri")) != config.uri:
            written_as[f"streams.{config.stream_id}.uri"] = (uri, config.uri)
            config = replace(config, uri=uri)
        streams.append(config)

    auth = data.get("auth", {})
    auth_off = auth == "off"
    if auth_off:
        auth = {}
    if not isinstance(auth, dict):
        raise ConfigError(f'{name}: auth: expected a table of tokens, or "off"')
    try:
        events = events_settings(data.get("events", {}), path.parent)
    except ValueError as exc:
        raise ConfigError(f"{name}: {exc}") from None
    if events.history is not None:
        given = data["events"]["history"].get("path") or DEFAULT_HISTORY_FILE
        written_as["events.history.path"] = (str(events.history.path), given)
    if events.mqtt is not None and events.mqtt.ca_file is not None:
        written_as["events.mqtt.ca_file"] = (str(events.mqtt.ca_file), data["events"]["mqtt"]["ca_file"])
    try:
        inference = InferenceOptions(defaults.imgsz, defaults.conf, defaults.iou, max_batch, device, half, fast_masks)
    except ValueError as exc:
        raise ConfigError(f"{name}: model.{exc}") from None
    return Settings(
        host=host,
        port=port,
        model=model_name,
        inference=inference,
        stream_defaults=defaults,
        streams=tuple(streams),
        jpeg_quality=quality,
        embed_origins=tuple(origins),
        config_path=path,
        save_config=save,
        viewer_tokens=read_tokens(auth, "viewer_tokens", f"{name}: auth"),
        admin_tokens=read_tokens(auth, "admin_tokens", f"{name}: auth"),
        auth_off=auth_off,
        auth_required=read_bool(auth, "required", False, f"{name}: auth"),
        source_schemes=tuple(s.lower() for s in schemes) if schemes is not None else DEFAULT_SOURCE_SCHEMES,
        media_dirs=tuple(media_dirs),
        allow_devices=allow_devices,
        tls_cert=tls["tls_cert"],
        tls_key=tls["tls_key"],
        events=events,
        max_frame_side=max_frame_side,
        viewer_limits=viewer_limits,
        deny_networks=deny_networks,
        written_as=written_as,
        stream_keys=stream_keys,
        file_keys=frozenset(f"{table}.{key}" for table, keys in data.items() if isinstance(keys, dict) for key in keys)
        | {f"events.{key}" for key in spelled_keys(data.get("events"))},
    )


def _file_stream(
    table: Mapping[str, Any], defaults: StreamOptions, file_defaults: StreamOptions, where: str
) -> StreamConfig:
    """A ``[[streams]]`` table over ``defaults`` (the file's ``file_defaults`` with the flags over them).

    A stream that names the tracker of the file's defaults keeps the settings they give it, even where
    ``--tracker`` made another tracker everyone else's default. ``from_api = true`` (a stream the API
    saved) keeps it held to the API's source policy (`StreamConfig.from_api`).
    """
    from_api = read_bool(table, FROM_API_KEY, False, where)
    table = {key: value for key, value in table.items() if key != FROM_API_KEY}
    base = defaults
    named = flatten_options(table, where).get("tracker")
    if named == file_defaults.tracker != defaults.tracker:
        base = replace(defaults, tracker=file_defaults.tracker, tracker_settings=file_defaults.tracker_settings)
    try:
        return replace(stream_config(table, base, where), from_api=from_api)
    except ConfigError as exc:
        if named is None and defaults.tracker != file_defaults.tracker and ".tracker_settings." in str(exc):
            raise ConfigError(
                f"{exc} (its tracker is {defaults.tracker}, from --tracker; to keep {file_defaults.tracker} for "
                f'this stream, give it tracker = "{file_defaults.tracker}")'
            ) from None
        raise


def _keys_set(table: Mapping[str, Any]) -> frozenset[str]:
    """The stream options a ``[[streams]]`` table sets, with ``tracker_settings.<key>`` for each tracker setting."""
    tracker_settings = table.get("tracker_settings", {})
    own = {f"tracker_settings.{key}" for key in tracker_settings} if isinstance(tracker_settings, Mapping) else set()
    return frozenset(set(table) - {*STREAM_KEYS, FROM_API_KEY} | own)


def content_digest(data: bytes) -> str:
    """The SHA-256 of a config file's bytes, as `Settings.config_digest` holds it."""
    return hashlib.sha256(data).hexdigest()


def _refuse_unknown_keys(data: Mapping[str, Any], name: str) -> None:
    """Every key of the file checked against the table it is in, before any value is read.

    A key written below a table's header is that table's in TOML: one appended at the end of the file
    (``port = 8081``, ``auth = "off"``) lands in its last table, often a ``[[streams]]``. Yet a slip of
    the table's own key (``url`` for ``uri``) is as likely, so its "unknown key" comes first, and
    another table that has the key is only offered as a possibility (`_unknown_key`).
    """
    for where, header, table in _file_tables(data, name):
        if header and "auth" in table:
            raise ConfigError(
                f"{_at(where, 'auth')}: auth is a top-level key; write it before the first [table] "
                f"(a key after a [table] header belongs to that table)"
            )
        keys = _TABLE_KEYS[header] if header else TOP_LEVEL_KEYS
        if unknown := [key for key in table if key not in keys]:
            raise _unknown_key(where, unknown[0], keys, header)


def _file_tables(data: Mapping[str, Any], name: str) -> list[tuple[str, str, Mapping[str, Any]]]:
    """The file's tables (where errors name them, header: ``""`` for the top level) that are tables."""
    tables: list[tuple[str, str, object]] = [(f"{name}:", "", data)]
    tables += [(f"{name}: {key}", f"[{key}]", data.get(key)) for key in ("server", "model", "auth", "stream_defaults")]
    streams, events = data.get("streams"), data.get("events")
    if isinstance(streams, list):
        tables += [
            (f"{name}: {stream_place(i, t.get('id'))}", "[[streams]]", t)
            for i, t in enumerate(streams)
            if isinstance(t, dict)
        ]
    if isinstance(events, dict):
        tables += [(f"{name}: events.{key}", f"[events.{key}]", events.get(key)) for key in ("history", "mqtt")]
        hooks = events.get("webhooks")
        if isinstance(hooks, list):
            tables += [(f"{name}: events.webhooks[{i}]", "[[events.webhooks]]", h) for i, h in enumerate(hooks)]
    return [(where, header, table) for where, header, table in tables if isinstance(table, dict)]


def _unknown_key(where: str, key: str, keys: tuple[str, ...], header: str | None = None) -> ConfigError:
    """``key`` refused where the table has ``keys``: with the one meant where it is close to one of them,
    and, in the file's table ``header``, the tables that have it, where it may have been meant to go
    (``max_batch`` appended after a ``[[streams]]`` table is close to its ``max_det``, and [model]'s)."""
    meant = (FRIGATE_KEYS.get(key) if "conf" in keys else None) or did_you_mean(key, keys)
    message = f"{_at(where, key)}: unknown key; known keys are {', '.join(keys)}{meant}"
    homes = [home for home, known in _TABLE_KEYS.items() if key in known]
    if header is None or not homes:
        return ConfigError(message)
    after = ": a key after a [table] header belongs to that table" if header else ""
    lead = " If" if meant else "; if"
    return ConfigError(f"{message}{lead} it is meant for {' or '.join(homes)}, write it there{after}")


def listen_host(host: str, where: str) -> str:
    """A host to listen on (``--host``, ``[server] host``) as `bind` takes it: an IPv6 address written as
    in a URL (``[::1]``) without its brackets.

    An empty one is refused: it listened on every interface, and every message about it (a port in use,
    tokens needed beyond this machine) showed a blank where the address goes.
    """
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host.strip():
        raise ConfigError(
            f"{where}: no address given; give 127.0.0.1 for this machine only, or 0.0.0.0 (IPv4) or :: (IPv6) "
            "for every interface"
        )
    return host


def stream_place(index: int, stream_id: object) -> str:
    """How errors name the config file's ``index``-th ``[[streams]]`` table: with its id where it has a
    valid one (``streams[3] (id 'gate')``), as a file of many cameras is read by id, not by count."""
    if isinstance(stream_id, str) and STREAM_ID_PATTERN.match(stream_id):
        return f"streams[{index}] (id {stream_id!r})"
    return f"streams[{index}]"


def _at(where: str, key: str) -> str:
    """``file.toml: server.port`` below a table, ``file.toml: server`` at the top level."""
    return f"{where} {key}" if where.endswith(":") else f"{where}.{key}"
