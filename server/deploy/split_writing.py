"""Writing a split (`server.deploy.split`): the refusals before anything is written, what each file it
replaces loses or gains, and the write itself, all of it or none.

Splitting again over an earlier split's files (``--force``) is refused while a running node (segcast
answers at its address, or something gives no answer in time: `running_nodes`) would lose a camera (or
its port, or be removed): a node keeps its streams in memory, not in its file, so it would go on
running cameras the new split gives another node. A running node that only gains cameras may run on,
to be restarted to run them; one that runs what it ran keeps its file byte for byte (`kept_as_is`). A
split is refused too while segcast itself answers at the file's own address (the single box, still
running from it: its cameras would run twice), and while anything but such a node answers at a node's
port (`_refuse_taken_ports`). Before writing, it says what each file it replaces loses or gains
(cameras, settings changed in the source file, and settings saved there through a node's API, told
apart by what the last split wrote: `server.deploy.written_cameras`). What the running nodes run
beyond their files (a camera added through the API without ``?persist=1``, which a restart drops; one
camera on two nodes) only they can say: `running_nodes` asks them, for the split to warn, never to
refuse; a node file it cannot read it warns of too.

Its own module as it is the one part of ``segcast split`` that deals with what is there already: the files
it replaces and the nodes that answer at their addresses. `server.deploy.split` works out what to write
from the files alone, asking no node anything.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import tempfile
import tomllib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from server.config import StreamConfig, load_config, settings_from_mapping
from server.config_values import ConfigError
from server.deploy.entrance import listens_with_tls
from server.deploy.node_files import NODE_HOST, saved_settings_text
from server.deploy.running_nodes import Answer, Answered, answers_at, what_answers
from server.deploy.split import EarlierNode, Split, SplitError, reachable_host
from server.deploy.written_cameras import (
    WRITTEN_RECORD,
    WRITTEN_RECORD_MODE,
    Record,
    as_written,
    digests,
    read_record,
    record_text,
    setting_values,
)
from server.persist import SAVED_NOTE, settings_toml

#: Node files may hold the source's tokens: no more than its owner and group may read them; its owner
#: may always write them, as a node saves its API's changes there and a later split replaces them.
NODE_FILE_MODE_MASK = 0o660
NODE_FILE_OWNER_MODE = 0o600
#: The entrance's file holds addresses and certificate paths, no secret: as readable as nginx's own.
ENTRANCE_MODE = 0o644
#: Settings whose values the change list names but never shows: tokens, passwords, and a webhook's URL,
#: which holds its secret on many services (a Slack or Discord hook).
SECRET_SETTINGS = frozenset({"admin_tokens", "viewer_tokens", "password", "secret", "url"})
#: A setting a file does not set: its default, as segcast writes none of those but a few it spells out.
_NOT_SET = object()


@dataclass(frozen=True, slots=True)
class LostSave:
    """A camera's settings that its node's API saved in the node file at ``path`` and a split would replace."""

    path: Path
    stream_id: str
    names: tuple[str, ...]  # setting names, as its [[streams]] table spells them (``zones``, ``conf``)


def write_split(
    split: Split, overwrite: bool, report: Callable[[str], None] | None = None, discard_saves: bool = False
) -> tuple[EarlierNode, ...]:
    """Write every file of ``split`` once `check_split` lets it; what each replaced file loses or gains
    goes to ``report``, line by line, before anything is written. The nodes of the earlier split that
    answer (each keeps or gains cameras: `check_split`), for the caller to say which to restart.

    All or nothing, as far as a file system allows: each file is written in full beside its place and
    then put there whole (a node started meanwhile reads the old file or the new, never half of one),
    the stale node files are removed only once every node file is in place (a camera is never in no
    file), and the entrance goes last (it never routes to a node file not yet written). A file that
    cannot be written stops the split before any is replaced (a folder in the way: `check_split`).
    A running node's file whose settings this split leaves as they are is not written at all (`kept_as_is`).
    What it wrote of each camera is recorded in the entrance's folder (`server.deploy.written_cameras`), for
    the next split to tell a setting saved through a node's API from one changed in the source since."""
    running = check_split(split, overwrite, discard_saves)
    if report is not None:
        for line in replaced_changes(split):
            report(line)
    kept = kept_as_is(split, running)
    record = split.entrance_state / WRITTEN_RECORD
    record_of_cameras = record_text((node.path, node.text) for node in split.nodes)  # a kept file's: the same
    written: list[tuple[Path, Path]] = []  # (the new file beside its place, its place), entrance last
    try:
        split.entrance_state.mkdir(exist_ok=True)
        mode = (stat.S_IMODE(split.source.stat().st_mode) & NODE_FILE_MODE_MASK) | NODE_FILE_OWNER_MODE
        for node in split.nodes:  # they may hold the file's tokens: no more readable than the file
            if node.path not in kept:
                written.append((_written_beside(node.path, node.text, mode), node.path))
        written.append((_written_beside(record, record_of_cameras, WRITTEN_RECORD_MODE), record))
        written.append((_written_beside(split.entrance_path, split.entrance_text, ENTRANCE_MODE), split.entrance_path))
        for log in ("access.log", "error.log"):  # nginx keeps a file's mode: these hold addresses and URLs
            _write_private(split.entrance_state / log, "", 0o600, truncate=False)
        for new, place in written[:-1]:
            os.replace(new, place)
        for stale in split.stale:  # its cameras are another node's now: started, it would run them twice
            stale.unlink(missing_ok=True)
        os.replace(*written[-1])
    except OSError as exc:
        for new, _ in written:
            new.unlink(missing_ok=True)
        raise SplitError(f"cannot write {exc.filename or split.entrance_path.parent}: {exc.strerror or exc}") from None
    return running


def kept_as_is(split: Split, running: Iterable[EarlierNode]) -> frozenset[Path]:
    """The files of the ``running`` nodes that this split leaves byte for byte as they are, as nothing
    their nodes run would change (`runs_the_same`): the header's "Node 2 of 2" on a grow, say, or a
    camera saved through the node's API that the source file has too.

    A running node saves its API's changes (``?persist=1``) only to the file as it read or last saved
    it (`server.persist`, a digest of the whole file): rewritten for a comment, the file refuses its
    next save with a 409 after the node has made the change in memory, so a camera moved away through
    the API stays in its file and runs on two nodes once it restarts. Keeping the node count out of
    the header would not do: a file the node saved is laid out by `server.persist`, not as a split
    writes it, so its text differs from the split's whatever the header says. A stopped node's file is
    written as ever (its header kept current): it is read whole when the node starts."""
    new = {node.path: node for node in split.nodes}
    return frozenset(
        old.path for old in running if old.path in new and runs_the_same(new[old.path].text, old.text, old.path)
    )


def runs_the_same(new_text: str, old_text: str | None, path: Path) -> bool:
    """Whether a node started from ``old_text`` (its file at ``path``) runs what ``new_text`` says: the
    settings, however spelled (`_setting_changes`: a file its node's API saved spells out defaults), and
    each camera's by its id. Not the comments (a split's header names the node count, so every grow or
    shrink changes it), nor the cameras' order (the API appends the camera it saves, the split writes
    the source file's order), nor a camera's ``from_api`` (saved through the API: it runs as the source's
    does, held to the API's source policy as it is), so that no restart, and no camera downtime, is
    asked for where nothing it runs changed."""
    if old_text is None:
        return False
    try:
        old = tomllib.loads(old_text.removeprefix("\ufeff"))
    except tomllib.TOMLDecodeError:
        return False  # the split's own text is TOML: they differ
    if _setting_changes(old_text, new_text, path):
        return False
    return _cameras_by_id(old, path) == _cameras_by_id(tomllib.loads(new_text), path)


def _cameras_by_id(data: dict[str, object], path: Path) -> dict[str, StreamConfig] | None:
    """The cameras of the node file ``data`` (at ``path``) by id, as its node reads them, but for
    ``from_api`` (`runs_the_same`); None where the file does not load (no node runs from it as it is)."""
    try:
        streams = settings_from_mapping(data, path, {}).streams
    except (ConfigError, ValueError):
        return None
    return {stream.stream_id: replace(stream, from_api=False) for stream in streams}


def check_split(split: Split, overwrite: bool, discard_saves: bool = False) -> tuple[EarlierNode, ...]:
    """SplitError where ``split`` must not be written: a file there already, unless ``overwrite`` (a
    node's file holds what its API saved with ``?persist=1`` since the last split); settings saved so that it
    would replace, unless ``discard_saves`` (`_refuse_losing_saves`); a folder where a
    file goes (or one to remove is); segcast answering at the source file's own address; a node of the
    earlier split that answers and would lose a camera, its port, or its file. Else the earlier split's
    nodes that answer (each keeps or gains cameras)."""
    if split.existing and not overwrite:
        names = ", ".join(str(p) for p in split.existing)
        raise SplitError(
            f"{names} {'is' if len(split.existing) == 1 else 'are'} there already (changes saved by a node "
            "would be lost): --force replaces "
            + ("it" if len(split.existing) == 1 else "them")
            + (" and removes the files of nodes beyond the new number" if split.stale else "")
        )
    if not discard_saves:
        _refuse_unreadable_saves(split)
        _refuse_losing_saves(split)
    places = [*(node.path for node in split.nodes), split.entrance_path, *split.stale]
    if blocked := [path for path in places if path.exists() and not path.is_file()]:
        raise SplitError(
            f"cannot write {blocked[0]}: it is a folder, not a file; nothing was written: move it away, then "
            "split again"
        )
    _refuse_while_the_source_runs(split)
    earlier = [node.address for node in split.earlier if node.address is not None]
    answers = answers_at([*earlier, *((NODE_HOST, node.port) for node in split.nodes)])
    running = tuple(node for node in split.earlier if node.address is not None and answers[node.address].runs_a_node)
    _refuse_where_running_nodes_lose(split, running)
    _refuse_taken_ports(split, running, answers)
    return running


def _refuse_taken_ports(
    split: Split, running: Iterable[EarlierNode], answers: Mapping[tuple[str, int], Answered]
) -> None:
    """SplitError naming each node port of ``split`` where anything answers but a running node of the earlier
    split that keeps it (`_refuse_where_running_nodes_lose` refused those that do not): another program, or a
    segcast no node file of this split started. The node could not listen there, and the entrance would send
    its path to whatever is there; a first split's ports are checked too. Not overridden by ``--force``,
    which replaces files: what holds a port is no file."""
    ours = {node.address for node in running}
    taken = []
    for node in split.nodes:
        address = (NODE_HOST, node.port)
        answered = answers[address]
        if address in ours or answered.kind is Answer.NOTHING:
            continue
        what = (
            f"another segcast (not started from {node.path.name})" if answered.kind is Answer.SEGCAST else answered.said
        )
        taken.append((node.name, f"{NODE_HOST}:{node.port}, {node.name}'s port, is taken by {what}"))
    if len(taken) == 1:
        ((name, said),) = taken
        raise SplitError(
            f"{said}: {name} cannot listen there, and the entrance would send /{name}/ to it; nothing was written: "
            "stop it, or choose other ports for the nodes with --first-port"
        )
    if taken:
        raise SplitError(
            f"{'; '.join(said for _, said in taken)}: those nodes cannot listen there, and the entrance would send "
            "their paths to what is there; nothing was written: stop what is there, or choose other ports for the "
            "nodes with --first-port"
        )


def _refuse_while_the_source_runs(split: Split) -> None:
    """SplitError where anything but an earlier split's entrance answers at the source file's own
    address: most likely the single box, still running from it, which the nodes started as printed
    would run a second time (node 1 sharing its history file); and whatever it is, the entrance must
    listen there next."""
    host, port = reachable_host(split.entrance.host), split.entrance.port
    there = _what_answers_there(split, host, port)
    if there is None:
        return
    source = split.source.name
    if there == "segcast":
        raise SplitError(
            f"segcast is running at {source}'s own address ({host}:{port}), from {source} by the look of it: "
            "the nodes started as well would run its cameras a second time, and node-1 would share its event "
            "history file; stop it first, then split (the entrance takes its address)"
        )
    raise SplitError(
        f"{there} at {source}'s own address ({host}:{port}), and it is not the entrance of an earlier split: "
        "if it is segcast running from the file, its cameras would run twice; either way the entrance must "
        "listen there: stop it first, then split"
    )


def _what_answers_there(split: Split, host: str, port: int) -> str | None:
    """What answers at the source file's own address (`what_answers`), asked over the earlier split's
    entrance's scheme first and then the file's: a split that turns TLS on or off runs while the earlier
    entrance still speaks the other, which asked over the new one answers as a stranger."""
    speaks_tls = split.entrance.tls_cert is not None
    schemes = [speaks_tls] if split.entrance_before is None else [listens_with_tls(split.entrance_before), speaks_tls]
    answers = []
    for tls in dict.fromkeys(schemes):
        there = what_answers(host, port, tls=tls)
        if there is None or there == "segcast":
            return there
        answers.append(there)
    return answers[0]


def _refuse_where_running_nodes_lose(split: Split, running: tuple[EarlierNode, ...]) -> None:
    """SplitError naming each running node of the earlier split that this one takes a camera from,
    moves to another port, or removes: it would go on as it runs, its cameras running twice; one with
    no cameras would run on out of the new entrance's reach."""
    new = {node.path: node for node in split.nodes}
    refused: list[str] = []
    holding = False  # a refused node's file has cameras
    for old in running:
        assert old.address is not None  # it answered there
        at = f"{old.path.name} at {old.address[0]}:{old.address[1]}"
        if (node := new.get(old.path)) is None:
            refused.append(f"{at}, which is removed")
        elif lost := [stream_id for stream_id in old.stream_ids if stream_id not in node.stream_ids]:
            refused.append(f"{at}, which loses {', '.join(lost)}")
        elif node.port != old.address[1]:
            refused.append(f"{at}, which moves to port {node.port}")
        else:
            continue
        holding = holding or bool(old.stream_ids)
    if not refused:
        return
    if holding:
        raise SplitError(
            f"a node of the earlier split is running ({'; '.join(refused)}): a node keeps its streams in "
            "memory, not in its file, so it would go on running cameras this split gives another node, and "
            "they would run twice; stop the nodes first, then split again (a node that keeps its cameras and "
            "port may run on)"
        )
    raise SplitError(
        f"a node of the earlier split is running ({'; '.join(refused)}): its file gives it no cameras, but it would "
        "run on where the new entrance does not reach it, and a camera added through its API would run there "
        "unseen; stop it first, then split again (a node that keeps its port may run on)"
    )


def replaced_changes(split: Split) -> list[str]:
    """Per node file of the earlier split, and each new one: the cameras it loses (and to which node) or
    gains (and why there: `place_streams`), each setting beyond the cameras' that changes in it
    (`_setting_changes`: a running node keeping its cameras is told to restart for them), and the cameras
    whose settings there differ from the source file's (`_camera_changes`): changed in the source since
    the split last wrote the file (old and new value), or saved there through its node's API
    (``?persist=1``), which the split replaces with the source's (lost). Nothing for a first split."""
    source = split.source.name
    given = {stream_id: node.name for node in split.nodes for stream_id in node.stream_ids}
    wanted = {stream.stream_id: stream for stream in load_config(split.source, flag=None).streams}
    new_share = {node.path: node.stream_ids for node in split.nodes}
    new_text = {node.path: node.text for node in split.nodes}
    old_text = {node.path: node.text for node in split.earlier}
    there = split.node_files_there()
    if not there:
        return []
    record = read_record(split.entrance_state)
    lines = [
        f"replacing the earlier split's node files; what changes in each ({source} wins; a camera stays on "
        "the node that has it, any other goes to the node with the fewest):"
    ]
    for path in there:
        try:
            old = load_config(path, flag=None).streams
        except ConfigError as exc:
            lines.append(f"  {path.name}: cannot be read ({exc}): replaced as a whole")
            continue
        old_ids = [stream.stream_id for stream in old]
        share = new_share.get(path)
        changes = [f"loses {i} (to {given[i]})" for i in old_ids if i in given and i not in (share or ())]
        changes += [
            f"loses {i} (not in {source}: removed there, or added through this node's API)"
            for i in old_ids
            if i not in given
        ]
        changes += _gains(split, [i for i in share or () if i not in old_ids])
        if share is None:
            changes.append("is removed (more nodes than this split's)")
        settings = _setting_changes(old_text.get(path), new_text[path], path) if share is not None else []
        lines.append(f"  {path.name}: {'; '.join([*(changes or ['the same cameras']), *settings])}")
        for stream, changed, lost in _camera_differences(split, path, old, wanted, record, old_text.get(path)):
            source_stream = wanted[stream.stream_id]
            said = [", ".join(_camera_change(name, stream, source_stream) for name in changed)] if changed else []
            said += [f"its {', '.join(lost)} saved here differ from {source}'s: lost"] if lost else []
            if said:
                lines.append(f"    {stream.stream_id}: {'; '.join(said)}")
    for node in split.nodes:
        if node.path not in there:
            lines.append(f"  {node.path.name} (new): {'; '.join(_gains(split, node.stream_ids)) or 'no cameras'}")
    return lines


def _gains(split: Split, stream_ids: Iterable[str]) -> list[str]:
    """``gains <id> (why)`` for each camera a node gains: why it went there (`Split.placed`)."""
    return [f"gains {i} ({split.placed[i]})" if i in split.placed else f"gains {i}" for i in stream_ids]


def _setting_changes(old_text: str | None, new_text: str, path: Path) -> list[str]:
    """``[model] max_batch: 8 -> 4`` for each setting beyond the cameras' tables that differs between a node
    file at ``path`` (``old_text``) and the one the split writes in its place: a node keeping its cameras
    runs on the settings it read until it is restarted, and only this says which. Those the file cannot
    tell (it cannot be read: said where its cameras are) give none."""
    if old_text is None:
        return []
    try:
        old = tomllib.loads(old_text.removeprefix("\ufeff"))
    except tomllib.TOMLDecodeError:
        return []
    new = tomllib.loads(new_text)
    old.pop("streams", None)
    new.pop("streams", None)
    with contextlib.suppress(ConfigError):  # else compared as the files spell them
        old, new = _as_segcast_writes(old, path), _as_segcast_writes(new, path)
    return list(_changed(old, new))


def _as_segcast_writes(data: dict[str, object], path: Path) -> dict[str, object]:
    """A node file's settings (its cameras left out) with what segcast spells out when it writes them
    (`settings_toml`): a file its node's API saved (``?persist=1``) names what the split leaves to its
    default, such as ``[model] name``, and the same settings must compare the same however spelled."""
    return _overlaid(tomllib.loads(settings_toml(settings_from_mapping(data, path, {}))), data)


def _overlaid(base: Mapping[str, object], top: Mapping[str, object]) -> dict[str, object]:
    """``base`` with ``top``'s values over it, nested tables key by key."""
    merged = dict(base)
    for key, value in top.items():
        below = merged.get(key)
        merged[key] = _overlaid(below, value) if isinstance(below, Mapping) and isinstance(value, Mapping) else value
    return merged


def _changed(old: Mapping[str, object], new: Mapping[str, object], table: str = "") -> Iterator[str]:
    """A line per key of ``old`` or ``new`` (the tables named ``table``) whose value differs, nested tables
    key by key; a value that may hold a secret (`SECRET_SETTINGS`, or credentials before an ``@``) said
    to have changed, never shown. A list of tables (``[[events.webhooks]]``) is compared table by table,
    each named by its place (``[events.webhooks[0]]``), so that a secret in one is never shown either."""
    for key in dict.fromkeys([*old, *new]):
        before, after = _by_place(old.get(key, _NOT_SET)), _by_place(new.get(key, _NOT_SET))
        if before == after:
            continue
        name = f"{table}{key}" if key.startswith("[") else f"{table}.{key}" if table else key
        if isinstance(before, dict) and isinstance(after, dict):
            yield from _changed(before, after, name)
        elif isinstance(before, dict) or isinstance(after, dict):
            done = "added" if before is _NOT_SET else "removed" if after is _NOT_SET else "changed"
            yield f"[{name}]: {done}"
        elif key in SECRET_SETTINGS or any(isinstance(value, str) and "@" in value for value in (before, after)):
            yield f"{f'[{table}] ' if table else ''}{key}: changed (not shown: it may hold a secret)"
        else:
            yield f"{f'[{table}] ' if table else ''}{key}: {_shown(before)} -> {_shown(after)}"


def _by_place(value: object) -> object:
    """A list of tables as a table of them by their place (``[0]``, ``[1]``), which `_changed` walks key by
    key; any other value as it is."""
    if isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
        return {f"[{place}]": item for place, item in enumerate(value)}
    return value


def _shown(value: object) -> str:
    """A setting's value as the change list shows it: a string as it is, a number, boolean or list as TOML
    writes it (JSON agrees with TOML there)."""
    if value is _NOT_SET:
        return "the default"
    return value if isinstance(value, str) else json.dumps(value, default=str)


def _source_streams_under_defaults_of(source: Path, node_text: str | None) -> dict[str, StreamConfig]:
    """The source file's cameras, by id, as the ``[stream_defaults]`` of a node file (``node_text``) fill
    them: what the earlier split gave each camera under the defaults it wrote there, so that a default
    changed in the source since is told from a setting saved through the node's API. Empty where either
    file no longer reads so (a camera's tracker settings that the node's default tracker does not know)."""
    if node_text is None:
        return {}
    try:
        data = tomllib.loads(source.read_text(encoding="utf-8-sig"))
        data["stream_defaults"] = tomllib.loads(node_text.removeprefix("\ufeff")).get("stream_defaults", {})
        settings = settings_from_mapping(data, source, {})
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, ConfigError):
        return {}
    return {stream.stream_id: stream for stream in settings.streams}


def _camera_differences(
    split: Split,
    path: Path,
    old: Iterable[StreamConfig],
    wanted: Mapping[str, StreamConfig],
    record: Record | None,
    old_text: str | None,
) -> Iterator[tuple[StreamConfig, list[str], list[str]]]:
    """Each camera of the node file at ``path`` (its cameras ``old``, its text ``old_text``) that the source
    file still has (``wanted``), with the settings changed in the source since and those saved there
    through its node's API (`_camera_changes`)."""
    given_before = _source_streams_under_defaults_of(split.source, old_text)
    for stream in old:
        if stream.stream_id in wanted:
            before, written = given_before.get(stream.stream_id), as_written(record, path, old_text, stream)
            yield stream, *_camera_changes(stream, wanted[stream.stream_id], before, written)


def lost_saves(split: Split) -> list[LostSave]:
    """The settings of each camera that a node's API saved in its file (``?persist=1``: zones drawn in its
    viewer, a confidence changed) and that this split would replace with the source's, in node order."""
    there = split.node_files_there()
    if not there:
        return []
    record = read_record(split.entrance_state)
    wanted = {stream.stream_id: stream for stream in load_config(split.source, flag=None).streams}
    old_text = {node.path: node.text for node in split.earlier}
    lost: list[LostSave] = []
    for path in there:
        try:
            old = load_config(path, flag=None).streams
        except ConfigError:  # replaced as a whole, which replaced_changes says
            continue
        for stream, _, names in _camera_differences(split, path, old, wanted, record, old_text.get(path)):
            if names:
                lost.append(LostSave(path, stream.stream_id, tuple(names)))
    return lost


def _refuse_losing_saves(split: Split) -> None:
    """SplitError where this split would replace settings a node's API saved in its file (`lost_saves`):
    a person drew those zones in a node's viewer and ticked "Save to config file", and a routine split
    (a camera added to the source) would drop them with one line of its report. The error names each
    and shows them as the node file has them, to copy into the source; ``--discard-node-changes`` goes on."""
    lost = lost_saves(split)
    if not lost:
        return
    source = split.source.name
    named = "; ".join(f"{save.path.name}: {save.stream_id}'s {', '.join(save.names)}" for save in lost)
    shown = "\n\n".join(saved_settings_text(save.path, save.stream_id, save.names) for save in lost)
    unsure = (
        f" (this split cannot tell a setting saved there from one changed in {source} since: it has no record of "
        "what the last split wrote, one made by an older segcast; keep yours where they are)"
        if read_record(split.entrance_state) is None
        else ""
    )
    raise SplitError(
        f"settings saved through a node's API (?persist=1) differ from {source}'s, and this split would replace "
        f"them with {source}'s ({named}){unsure}; nothing was written: copy those you want to keep into each "
        f"camera's table in {source}, in place of its keys of those names (below, as each node file has them), "
        f"or split again with --discard-node-changes to drop them\n\n{shown}"
    )


def _refuse_unreadable_saves(split: Split) -> None:
    """SplitError where a node file its node's API has saved in (`SAVED_NOTE`) cannot be read: what was saved
    there cannot be told, let alone shown, and replacing it as a whole would drop it unsaid."""
    for path in split.node_files_there():
        saved = False
        try:
            load_config(path, flag=None)
        except ConfigError as exc:
            with contextlib.suppress(OSError):  # a file that cannot be opened is named by check_split's write
                saved = SAVED_NOTE.encode() in path.read_bytes().splitlines()
            if saved:
                raise SplitError(
                    f"{path.name} holds settings its node's API saved, and cannot be read ({exc}): this split "
                    f"cannot tell what it would replace; nothing was written: mend the file so that it loads, or "
                    "split again with --discard-node-changes to replace it as a whole"
                ) from None


def _camera_changes(
    saved: StreamConfig, source: StreamConfig, source_before: StreamConfig | None, written: Mapping[str, str] | None
) -> tuple[list[str], list[str]]:
    """The settings in which a node file's camera (``saved``) differs from the source file's (``source``),
    as two lists: those changed in the source since the split last wrote the file, and those saved there
    through its node's API (``?persist=1`` writes them into its ``[[streams]]`` table), which the split
    replaces with the source's: lost. ``written``: the digests of the camera's settings as the split last
    wrote them (`as_written`), which a saved one no longer matches; None: that cannot be told, and every
    difference counts as saved. Only the camera's own: a default changed in the source since (where it
    differs from ``source_before``, the source's camera under the node file's own defaults:
    `_source_streams_under_defaults_of`; None: they cannot tell) is no camera's, and `_setting_changes`
    names it; a value the split gives the camera all the same is no change."""
    own = _differences(saved, source)
    if source_before is not None:
        own = [name for name in own if name in _differences(saved, source_before)]
    if written is None:
        return [], own
    now = digests(saved)
    lost = [name for name in own if now[name] != written.get(name)]
    return [name for name in own if name not in lost], lost


def _camera_change(name: str, saved: StreamConfig, source: StreamConfig) -> str:
    """``conf 0.25 -> 0.5`` for a camera's setting ``name`` changed in the source, from ``saved`` (the node
    file's) to ``source``; ``zones changed`` where its value says nothing in one line (shapes, classes) or
    may hold a secret (a URI's password)."""
    before, after = setting_values(saved)[name], setting_values(source)[name]
    if name != "uri" and all(isinstance(value, str | int | float) for value in (before, after)):
        return f"{name} {_shown(before)} -> {_shown(after)}"
    return f"{name} changed"


def _differences(saved: StreamConfig, source: StreamConfig) -> list[str]:
    """The names of the settings in which two configs of one stream differ (``uri``, ``zones``, ...)."""
    theirs = setting_values(source)
    return [name for name, value in setting_values(saved).items() if value != theirs[name]]


def _written_beside(path: Path, text: str, mode: int) -> Path:
    """A new file beside ``path`` (hidden, and no node file by its name) holding ``text``, with
    permissions ``mode``: for `os.replace` to put it at ``path`` whole. An OSError names ``path``."""
    try:
        descriptor, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".new")
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    try:
        with open(descriptor, "w", encoding="utf-8") as file:
            file.write(text)
            os.fchmod(file.fileno(), mode)
    except BaseException:
        os.unlink(name)
        raise
    return Path(name)


def _write_private(path: Path, text: str, mode: int, truncate: bool = True) -> None:
    """``text`` into ``path`` with permissions ``mode`` (os.open's are cut by the umask, hence chmod);
    without ``truncate``, appended to what is there (a log)."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if truncate else os.O_APPEND)
    with open(os.open(path, flags, mode), "w", encoding="utf-8") as file:
        file.write(text)
    os.chmod(path, mode)
