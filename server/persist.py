"""Saving API changes to the config file: `write_config` writes the streams back into the file segcast
started from, with ``?persist=1`` or ``[server] save_config = true``.

The file is written as TOML from the settings it gave (`server.config.Settings.file_settings`), never
from flags, and replaced atomically, only while it still holds what segcast read or last wrote there.
"""

from __future__ import annotations

import logging
import os
import re
import time
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from server.config import (
    FROM_API_KEY,
    MODEL_KEYS,
    VIEWER_LIMIT_KEYS,
    Settings,
    StreamConfig,
    content_digest,
)
from server.config_values import ConfigError
from server.delivery.viewer import ViewerLimits
from server.events.config import EventsSettings
from server.events.config_toml import events_toml
from server.events.toml_text import toml_key, toml_string
from server.file_saving import not_saved, remove_stale_partials, save_lock, unwritable_reason, write_whole
from server.inference.options import InferenceOptions
from server.options import EVERY_FRAME, MODEL_IMGSZ, StreamOptions, tracker_defaults
from server.sources.base import MAX_FRAME_SIDE_PX

log = logging.getLogger(__name__)


class ConfigEditedError(ConfigError):
    """The config file changed on disk since segcast read or wrote it (an edit, or another program's
    save, another segcast's too): saving would undo that."""


@dataclass(slots=True)
class ConfigFileState:
    """What a running segcast knows of its config file, for `write_config`; saves are made one at a time.

    ``digest`` is the SHA-256 of the bytes segcast read there or last wrote (None: no file was there),
    so that a save never rewrites the file over edits made by hand since: a token rotated in it, a
    stream added. ``flag_streams`` are the ids ``--source`` started, which the file must never get,
    whatever runs under one later: the same command starts them again, and a file holding one of
    them would clash with it. ``added`` are the ids streams were added under through the API: one of
    the file's that had such an id was removed first, so what its table set says nothing of the new one.
    ``saved`` are the streams as the file holds them, in its order: a save writes one stream's change
    over them (`with_stream`), so changes made without saving stay unsaved, whatever is saved after.
    """

    digest: str | None
    flag_streams: frozenset[str]
    saved: dict[str, StreamConfig]
    added: set[str] = field(default_factory=set)
    #: When segcast last read the file (its start) or wrote it (Unix seconds): a file modified later holds
    #: what this segcast does not run, and refuses its saves (`/healthz`, for `segcast split`).
    known_at: float = field(default_factory=time.time)
    #: The digest of what a save under way writes (None: none is): the file may hold it before ``digest`` does.
    writing: str | None = None
    #: The file's identity, size and times when `edited` last found it holding ``digest``.
    _seen: tuple[int, ...] | None = field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def of(cls, settings: Settings) -> ConfigFileState:
        """The state at start: what `load_config` read; settings made in code take the file as it is now."""
        digest = (settings.file_settings or settings).config_digest
        if digest is None and settings.config_path is not None:
            digest = _file_digest(settings.config_path)
        saved = {s.stream_id: s for s in settings.streams if s.stream_id not in settings.flag_streams}
        return cls(digest, settings.flag_streams, saved)

    def with_stream(self, stream_id: str, config: StreamConfig | None) -> list[StreamConfig]:
        """The saved streams with ``stream_id`` as ``config`` (in its place, or last if new; None: removed)."""
        streams = dict(self.saved)
        if config is None:
            streams.pop(stream_id, None)
        else:
            streams[stream_id] = config
        return list(streams.values())

    def changes(self, stream_id: str, config: StreamConfig | None) -> bool:
        """Whether saving ``stream_id`` as ``config`` (None: removed) would write anything to the file: not
        where the file says so already (a stream it never held, removed), so there is nothing to refuse either."""
        return self.with_stream(stream_id, config) != list(self.saved.values())

    def edited(self, path: Path) -> str | None:
        """Why a save to the file at ``path`` would be refused now (`ConfigEditedError`), or None: for saying so
        before a change is made, as a save finds it after (under its lock) only once the change is in effect.

        Blocks on the file system: call it off the event loop. Cheap to ask for each request: the file is
        read only where its identity, size or times changed since it was last found as segcast left it. A
        save under way in another thread is segcast's own: the file may hold it before ``digest`` says so.
        """
        before = {self.digest, self.writing}  # a save in another thread may finish while the file is read
        try:
            status = path.stat()
            seen: tuple[int, ...] | None = (
                status.st_dev,
                status.st_ino,
                status.st_size,
                status.st_mtime_ns,
                status.st_ctime_ns,
            )
        except FileNotFoundError:
            seen = None
        if seen is not None and seen == self._seen:
            return None
        current = _file_digest(path)
        if current == self.digest:
            self._seen = seen
            return None
        if current in {*before, self.digest, self.writing} - {None}:
            return None
        return f"{_changed_since(path.name, current is None)}, and a save would undo that: restart segcast to load it"


def _file_digest(path: Path) -> str | None:
    """The SHA-256 of a file's bytes (through a symlink), or None when there is no file."""
    try:
        return content_digest(path.read_bytes())
    except FileNotFoundError:
        return None


def write_config(running: Settings, streams: list[StreamConfig], state: ConfigFileState | None = None) -> None:
    """Save the file's settings with ``streams`` to `Settings.config_path`, replacing the file atomically.

    Comments and key order of a hand-written file are not kept, but for the comments at its top (a
    split's header says which node the file is, and of which split); a save that drops others keeps the
    file as it was in ``<name>.bak`` beside it (`_replace_file`). A stream's options are written where
    they are its own (`_file_options`): a stream of the file keeps the keys its table set, even those
    equal to ``[stream_defaults]``, and a change made through the API is written where it differs
    from what the stream would take from the defaults. What came from flags (``running``'s
    `Settings.file_settings`, the streams of ``state.flag_streams``, and the values ``--conf``,
    ``--imgsz`` or ``--tracker`` gave a stream) is not written: the file says what it said, with the
    streams the API has added or changed. Paths it gave relative to its folder are written as it gave them.
    A stream the API added or gave its source is written with ``from_api = true`` (`StreamConfig.from_api`).

    ``state`` (by default as segcast started) is what segcast knows of the file. A file that holds
    anything else now was edited, or saved by another program (another segcast on the same file), and
    the settings in memory would undo that: it is left as it is (`ConfigEditedError`). After a save,
    ``state`` knows the file written and its streams.
    """
    settings = running.file_settings or running
    if settings.config_path is None and running.config_path is not None:  # see `server.cli._file_only`
        raise ConfigError(
            f"{running.config_path.name} does not load without the flags segcast started with, and saving it "
            "would write their values into it: make it load by itself (the log at start says what is wrong), "
            "then restart segcast"
        )
    if settings.config_path is None:
        raise ConfigError("no config file to save to: start segcast with --config FILE")
    state = ConfigFileState.of(running) if state is None else state
    started = {stream.stream_id: stream for stream in running.streams if stream.stream_id not in state.added}
    saved = [
        (stream, _file_options(stream, started.get(stream.stream_id), running.stream_defaults, settings))
        for stream in streams
        if stream.stream_id not in state.flag_streams
    ]
    text = _config_text(settings, saved, _leading_comments(settings.config_path))
    state.writing = content_digest(text.encode("utf-8", errors="surrogatepass"))
    try:
        state.digest = _replace_file(settings.config_path, text, state.digest)
    finally:
        state.writing = None
    state.saved = {stream.stream_id: stream for stream, _ in saved}
    state.known_at = time.time()  # after the file is in place: its modification time is not later


#: `StreamOptions` fields that go together: a tracker's settings mean nothing to another tracker.
_OPTION_GROUPS = (("tracker", "tracker_settings"),)


def _file_options(
    stream: StreamConfig, start: StreamConfig | None, running_defaults: StreamOptions, settings: Settings
) -> dict[str, object]:
    """The options to write in ``stream``'s ``[[streams]]`` table, by key, as `StreamOptions.to_json` gives them.

    ``start`` is the stream as segcast started it (None: the API added it); ``running_defaults`` are the
    file's defaults with the flags over them, what a stream that does not set an option takes. Group by
    group (a tracker and its settings are one), the stream's value is *explicit*, written even where it
    equals the file's ``[stream_defaults]``, or *inherited*, left out:

    - a stream of the file whose value has not changed since the start holds as its own what its table
      set (the flags' values are never written; its own ``conf = 0.25`` stays against ``--conf 0.5``);
    - any other value (changed through the API, or on a stream the API added) is explicit where it
      differs from ``running_defaults``. One exactly equal to them cannot be told from one they gave:
      it is taken as inherited, and at a start without those flags it is the file's default again.

    Saved so, the file starts every stream with the options it ran with under the same flags, and
    says what it said without them.
    """
    keys = settings.stream_keys.get(stream.stream_id, frozenset()) if start is not None else frozenset()
    at_start = start.options if start is not None and stream.stream_id in settings.stream_keys else None
    grouped = {name for group in _OPTION_GROUPS for name in group}
    groups = [*_OPTION_GROUPS, *((f.name,) for f in fields(StreamOptions) if f.name not in grouped)]
    values = _file_values(stream.options)
    written: dict[str, object] = {}
    for group in groups:
        current = [getattr(stream.options, name) for name in group]
        as_filed = at_start is not None and current == [getattr(at_start, name) for name in group]
        if as_filed:
            names = [name for name in group if name in keys]
            if not names:
                continue
        elif current != [getattr(running_defaults, name) for name in group]:
            names = list(group)
        else:
            continue
        if group != ("tracker", "tracker_settings"):
            written.update({name: values[name] for name in names})
            if "class_filters" in names:  # those it holds apart from the defaults' (where any)
                written["class_filters"] = _own_class_filters(stream.options, settings.stream_defaults)
                if not written["class_filters"]:
                    del written["class_filters"]
            continue
        # A stream of the file as it started: the keys its table set (a table that set only
        # tracker_settings takes its tracker from the defaults, whichever --tracker makes them).
        # Any other: its tracker, with the settings it runs with.
        tracker_settings: dict[str, object]
        tracker = stream.options.tracker
        if as_filed:
            own = stream.options.tracker_settings
            tracker_settings = {key: value for key, value in own if f"tracker_settings.{key}" in keys}
            named = "tracker" in names
        else:
            # The tracker is its own where the table named it, where the defaults it runs under have
            # another, or where a setting of its own is not one of the file's defaults' tracker (read
            # back without --tracker): else it follows the defaults, whichever --tracker makes them.
            tracker_settings = _own_tracker_settings(stream.options, settings.stream_defaults)
            file_tracker = tracker_defaults(settings.stream_defaults.tracker)
            named = (
                "tracker" in keys
                or tracker != running_defaults.tracker
                or any(key not in file_tracker for key in tracker_settings)
            )
        if named:
            written["tracker"] = values["tracker"]
        if tracker_settings:
            written["tracker_settings"] = tracker_settings
    return {key: written[key] for key in values if key in written}  # in the order of the options


def _own_tracker_settings(options: StreamOptions, file_defaults: StreamOptions) -> dict[str, object]:
    """The tracker settings to write for a stream running with ``options``.

    A stream whose tracker is that of the file's defaults takes their tracker settings over again
    when read back (with or without ``--tracker``, see `server.config._file_stream`): those it holds alike are left
    out, and one it runs without is written as its tracker's own value, so it runs as it ran.
    """
    own: dict[str, object] = dict(options.tracker_settings)
    if options.tracker != file_defaults.tracker:
        return own
    given = dict(file_defaults.tracker_settings)
    written = {key: value for key, value in own.items() if key not in given or given[key] != value}
    kind = tracker_defaults(options.tracker)
    written.update({key: kind[key] for key in given if key not in own})
    return written


def _own_class_filters(options: StreamOptions, file_defaults: StreamOptions) -> dict[str, dict[str, float]]:
    """The class filters to write for a stream running with ``options``: the classes and keys it holds apart
    from the file's defaults', over which they are merged when read back (`StreamOptions.from_mapping`), so the
    stream follows later edits of the others. A class or a key of the defaults' it runs without (taken out
    through the API; TOML has no null) is written as the stream's own value of that key at the save.
    """
    defaults = {name: filtered.to_json() for name, filtered in file_defaults.class_filters}
    mine = {name: filtered.to_json() for name, filtered in options.class_filters}
    runs_at = {"conf": options.conf, "min_area": options.min_area, "max_area": options.max_area}
    own: dict[str, dict[str, float]] = {}
    for name in sorted(defaults.keys() | mine.keys()):
        given, held = defaults.get(name, {}), mine.get(name, {})
        differs = {key: value for key, value in held.items() if given.get(key) != value}
        differs.update({key: runs_at[key] for key in given if key not in held})
        if differs:
            own[name] = differs
    return own


#: The line a save writes at the top of the file, under the comments that were there.
SAVED_NOTE = "# Written by segcast after a change through its API."


def _leading_comments(path: Path) -> list[str]:
    """The comment lines at the top of the file at ``path``, up to its first setting, without the note
    of an earlier save (`SAVED_NOTE`); none where it cannot be read (the save then says why)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError):
        return []
    comments = [line.rstrip() for line in _split_top(text)[0] if line.rstrip() != SAVED_NOTE]
    while comments and not comments[-1]:
        comments.pop()
    while comments and not comments[0]:
        comments.pop(0)
    return comments


def _split_top(text: str) -> tuple[list[str], str]:
    """The lines of a config file's ``text`` before its first setting (comments and blank lines: what
    a save keeps of it), and the rest of it."""
    lines = text.splitlines(keepends=True)
    for index, line in enumerate(lines):
        if line.strip() and not line.lstrip().startswith("#"):
            return lines[:index], "".join(lines[index:])
    return lines, ""


#: A TOML string (multi-line or not, basic or literal), or the ``#`` that starts a comment outside one.
_STRING_OR_COMMENT = re.compile(
    r'"""(?:\\.|[^\\])*?"""(?!")' r"|'''.*?'''(?!')" r'|"(?:\\.|[^"\\\n])*"' r"|'[^'\n]*'" r"|#",
    re.DOTALL,
)


def _drops_comments(old: bytes) -> bool:
    """Whether the file's bytes ``old`` hold a comment that a save does not keep: one below the block at
    its top, on a line of its own or after a value (a ``#`` in a string, ``uri = "a.mp4#rate=max"``, is none)."""
    rest = _split_top(old.decode("utf-8-sig", errors="replace"))[1]
    return any(match.group() == "#" for match in _STRING_OR_COMMENT.finditer(rest))


def _config_text(
    settings: Settings,
    streams: list[tuple[StreamConfig, dict[str, object]]],
    comments: list[str],
) -> str:
    """The TOML of ``settings`` with ``streams``, each with the options to write in its table, under
    ``comments`` and `SAVED_NOTE`.

    Beyond what says what the file serves (``host``, ``port``, ``[model] name``), a setting is written
    only where it is not segcast's default: one spelled out would freeze today's default in the file.
    A ``[stream_defaults]`` key the file spelled out itself is kept whatever its value, as a stream's
    own keys are (`_file_options`): ``tracker = "segtrack"`` pinned there must outlive a release that
    changes the default (a save that dropped ``tracker = "bytetrack"`` moved streams to segtrack). So is
    an ``[events.*]`` key the file spelled out (`Settings.file_keys`): a save from the viewer emptied
    ``[events.history]`` copied from README, its values being the defaults.
    """
    top = [*comments, SAVED_NOTE, ""]
    lines = ["[server]"]
    lines += [
        f"host = {toml_value(settings.host)}",
        f"port = {settings.port}",
        *_server_lines(settings),
        "",
        "[model]",
        f"name = {toml_value(_as_written(settings, 'model.name', settings.model))}",
        *(f"{key} = {toml_value(value)}" for key, value in _model_settings(settings).items()),
        "",
    ]
    if settings.auth_off:
        lines[0:0] = ['auth = "off"', ""]
    elif settings.viewer_tokens or settings.admin_tokens or settings.auth_required:
        lines += [
            "[auth]",
            *(
                f"{key} = {toml_value(list(tokens))}"
                for key, tokens in (("viewer_tokens", settings.viewer_tokens), ("admin_tokens", settings.admin_tokens))
                if tokens
            ),
            *(["required = true"] if settings.auth_required else []),
            "",
        ]
    base = _file_values(StreamOptions())
    defaults = {
        key: value
        for key, value in _file_values(settings.stream_defaults).items()
        if value != base[key] or f"stream_defaults.{key}" in settings.file_keys
    }
    if defaults:
        lines += ["[stream_defaults]", *_option_lines(defaults), ""]
    for stream, options in streams:
        uri = _as_written(settings, f"streams.{stream.stream_id}.uri", stream.uri)
        lines += ["[[streams]]", f"id = {toml_value(stream.stream_id)}", f"uri = {toml_value(uri)}"]
        if stream.loop:
            lines.append("loop = true")
        if stream.from_api:  # its camera stays held to the API's source policy after a restart
            lines.append(f"{FROM_API_KEY} = true")
        lines += [*_option_lines(options), ""]
    spelled = frozenset(key.removeprefix("events.") for key in settings.file_keys if key.startswith("events."))
    lines += events_toml(_events_as_written(settings), spelled)
    return "\n".join(top + lines)


def settings_toml(settings: Settings) -> str:
    """The TOML segcast writes for ``settings``, without cameras: one spelling of a file's settings, so
    that two files can be compared setting by setting (`server.deploy.split_writing`)."""
    return _config_text(settings, [], [])


def _model_settings(settings: Settings) -> dict[str, object]:
    """The ``[model]`` keys other than ``name`` whose values are not the defaults, by key."""
    default = InferenceOptions()
    return {
        key: getattr(settings.inference, key)
        for key in MODEL_KEYS
        if key != "name" and getattr(settings.inference, key) != getattr(default, key)
    }


def _file_values(options: StreamOptions) -> dict[str, object]:
    """``options`` as `StreamOptions.to_json` gives them, with zones, lines and ignore zones in a config file's form."""
    return {
        **options.to_json(),
        "zones": [zone.file_table() for zone in options.zones],
        "lines": [line.file_table() for line in options.lines],
        "ignore_zones": [zone.file_table() for zone in options.ignore_zones],
    }


def _as_written(settings: Settings, where: str, value: str | Path) -> str:
    """``value`` of the setting at ``where`` as the config file wrote it, if the file gave it relative to its folder."""
    taken, text = settings.written_as.get(where, ("", ""))
    return text if taken == str(value) else str(value)


def _events_as_written(settings: Settings) -> EventsSettings:
    """``settings.events`` with its paths as the file wrote them (`events_toml` writes a path as it is)."""
    events = settings.events
    if events.history is not None:
        path = Path(_as_written(settings, "events.history.path", events.history.path))
        events = replace(events, history=replace(events.history, path=path))
    if events.mqtt is not None and events.mqtt.ca_file is not None:
        ca_file = Path(_as_written(settings, "events.mqtt.ca_file", events.mqtt.ca_file))
        events = replace(events, mqtt=replace(events.mqtt, ca_file=ca_file))
    return events


def config_file_unwritable(path: Path) -> str | None:
    """Why a save to the config file at ``path`` could not be made now, as far as permissions and mounts say
    (`server.file_saving.unwritable_reason`), with the fix; None where it could. It begins with the file's
    name and says what is, not what happened: it is said before any save is tried (a 409, a warning at start).
    """
    try:
        reason = unwritable_reason(path.resolve())
    except OSError as exc:  # its folder may not even be searched: nothing a save could do there either
        reason = f"cannot be looked at by segcast ({exc.strerror or exc})"
    return None if reason is None else f"{path.name} {reason}"


def _replace_file(path: Path, text: str, expected_digest: str | None) -> str:
    """Replace the file at ``path`` with ``text`` if it still holds what ``expected_digest`` says; the new digest.

    Through a symlink, the file it points to is replaced (the link stays a link to it), from a
    partial file beside that one: on its file system, where the replacement is atomic. A hard link
    to the file is not: it keeps the old file, as after any editor's atomic save. The new file has
    the old one's owner, group and permissions (`server.file_saving.write_whole`). A save that drops
    comments below the top of the file (`_drops_comments`) first keeps the file as it was in
    ``<name>.bak`` beside it, the .bak of an earlier such save replaced: the comments are the admin's
    notes, and are not lost unseen.

    From reading the file to check it through the rename, the save holds the lock every segcast saving
    the file takes (`server.file_saving.save_lock`): another's save between the check and the rename
    was overwritten, both answering that they saved. Blocks: call it off the event loop. Partial files
    a killed save left beside the file (copies of it) are removed meanwhile.
    """
    try:
        # What is written must start segcast again: a value TOML cannot hold (a lone surrogate, which
        # JSON can escape) is refused here, while the old file is still in place.
        tomllib.loads(text)
        data = text.encode("utf-8")
    except (tomllib.TOMLDecodeError, UnicodeEncodeError) as exc:
        raise ConfigError(f"{path.name} was not saved: the new content would not read back ({exc})") from None
    target = path.resolve()
    with save_lock(target, path.name):
        for saved in (target, target.with_name(f"{target.name}.bak")):
            for partial in remove_stale_partials(saved):
                log.info("removed %s, left by a save of %s that did not finish", partial.name, path)
        return _replace_locked(path, target, data, expected_digest)


def _replace_locked(path: Path, target: Path, data: bytes, expected_digest: str | None) -> str:
    """`_replace_file` once it holds the lock: the file's check, then its replacement."""
    try:
        old: bytes | None = target.read_bytes()
    except FileNotFoundError:
        old = None
    if (None if old is None else content_digest(old)) != expected_digest:
        # A file gone may be one an editor is writing again, or one its admin moved away: either way
        # not segcast's to put back. One changed may be another segcast's save, not a person's edit.
        raise ConfigEditedError(
            f"{_changed_since(path.name, old is None)}, and saving now would undo that; "
            "restart segcast to load the file as it is, then make the change again"
        )
    if (reason := unwritable_reason(target)) is not None:
        raise ConfigError(not_saved(path.name, reason))
    original = None if old is None else target.stat()
    backup = None
    if old is not None and _drops_comments(old):
        backup = target.with_name(f"{target.name}.bak")
        write_whole(backup, old, original, path.name)
    write_whole(target, data, original, path.name)
    folder = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(folder)  # the renames themselves
    finally:
        os.close(folder)
    if backup is not None:
        log.info("saved %s without its comments below the top of the file: the file as it was is in %s", path, backup)
    return content_digest(data)


def _changed_since(name: str, gone: bool) -> str:
    """That the config file called ``name`` changed (``gone``: is no longer there) since segcast read or saved it."""
    what = "removed or moved away" if gone else "edited, or saved by another program,"
    return f"{name} was {what} since this segcast read or last saved it"


def _server_lines(settings: Settings) -> list[str]:
    """The ``[server]`` keys besides ``host`` and ``port``, each where it differs from the default."""
    default = Settings()
    lines = [
        f"{key} = {toml_value(getattr(settings, key))}"
        for key in ("jpeg_quality", "embed_origins", "save_config", "allow_devices", "source_schemes", "deny_networks")
        if getattr(settings, key) != getattr(default, key)
    ]
    if settings.media_dirs:
        folders = [_as_written(settings, f"server.media_dirs[{i}]", path) for i, path in enumerate(settings.media_dirs)]
        lines.append(f"media_dirs = {toml_value(folders)}")
    for key in ("tls_cert", "tls_key"):
        value = getattr(settings, key)
        if value is not None:
            lines.append(f"{key} = {toml_value(_as_written(settings, f'server.{key}', value))}")
    if settings.max_frame_side != MAX_FRAME_SIDE_PX:
        lines.append(f"max_frame_side = {settings.max_frame_side}")
    for key in VIEWER_LIMIT_KEYS:
        value = getattr(settings.viewer_limits, key)
        if value != getattr(ViewerLimits(), key):
            lines.append(f"{key} = {value}")
    return lines


def _option_lines(values: Mapping[str, object]) -> list[str]:
    """Stream options (as `_file_values` gives them) as TOML lines, numbers that are whole written whole.

    Zones, lines and ignore zones go one to a line, as people write them. Tracker settings are written as they are:
    the tracker takes them as given, so a float written whole would read back as an integer.
    """
    lines = []
    for key, value in values.items():
        if key == "imgsz" and value is None:  # the model's own size over a default one: TOML has no null
            lines.append(f"{key} = {toml_value(MODEL_IMGSZ)}")
        elif key == "process_fps" and value is None:  # every frame, over a default cap
            lines.append(f"{key} = {toml_value(EVERY_FRAME)}")
        elif key == "tracker_settings" and isinstance(value, dict):
            # An inline table, as `_toml` writes one, in a stable order.
            lines.append(f"{key} = {toml_value(dict(sorted(value.items())))}")
        elif key in ("zones", "lines", "ignore_zones") and isinstance(value, list) and value:
            lines += [f"{key} = [", *(f"  {toml_value(_whole(shape))}," for shape in value), "]"]
        else:
            lines.append(f"{key} = {toml_value(_whole(value))}")
    return lines


def _whole(value: object) -> object:
    """``value`` with each float that is a whole number as an integer (``160``, not ``160.0``), in lists and tables.

    Only for values read back as floats whichever they are (a stream's ``conf``, a zone's points...).
    From 2**53 on they stay floats: TOML's integers end at 2**63, and no one writes a count that large.
    """
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, list | tuple):
        return [_whole(item) for item in value]
    if isinstance(value, dict):
        return {key: _whole(item) for key, item in value.items()}
    return value


def toml_value(value: object) -> str:
    """A TOML literal for the few value kinds segcast writes."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):  # an inline table: zones and lines are lists of them
        return "{ " + ", ".join(f"{toml_key(str(key))} = {toml_value(v)}" for key, v in value.items()) + " }"
    raise TypeError(f"cannot write {value!r} to TOML")
