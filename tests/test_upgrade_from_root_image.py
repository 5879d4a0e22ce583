"""Upgrading from an image that ran segcast as root to one that runs it as uid 10001: the volumes the
older image made stay root's, and each thing segcast writes there says whose they are and how to fix it.

Real, not simulated: the files are made here as root, then segcast's own code runs with the image
user's effective uid and gid (`as_segcast_user`), so the kernel decides what it may write. A process
of that user cannot read this interpreter's files (under /root, mode 0700): what the code under test
imports lazily is imported before (`warm_imports`).
"""

from __future__ import annotations

import codecs
import logging
import os
import shutil
import sqlite3
import stat
import subprocess
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from server.app import create_app
from server.config import Settings, StreamConfig
from server.events.config import EventsSettings, HistorySettings
from server.events.history.query import EventQuery
from server.events.history.writer import HistorySink
from server.events.outputs import EventOutputs
from server.events.sink import SinkState
from server.inference.export import ExportError, export_model
from server.inference.models import BUNDLED_MODEL
from server.options import StreamOptions
from tests.support.event_packets import track_start
from tests.support.polling import eventually
from tests.test_events_history import open_once

Start = Callable[..., Awaitable[TestClient]]

#: The user the image runs segcast as (Dockerfile: ``USER 10001``).
SEGCAST_UID = 10001
#: What each message adds after the uid of a root-owned file.
ROOTS = "(root: older segcast images ran as root)"
STREAM_A = '[[streams]]\nid = "a"\nuri = "scene:"\n'

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="only root may make files another user cannot write")


@pytest.fixture
def volume() -> Iterator[Path]:
    """A folder as the older image left its volume: root's, mode 0755. Not under ``tmp_path``, whose
    parents (root's, 0700) segcast's user could not even pass through."""
    folder = Path(tempfile.mkdtemp(prefix="segcast-volume-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder)


@contextmanager
def as_segcast_user() -> Iterator[None]:
    """Run what is inside as the image's user (effective uid and gid 10001, no supplementary groups), every
    thread of the process with it; root again after."""
    warm_imports()
    groups = os.getgroups()
    try:
        os.setgroups([])
        os.setegid(SEGCAST_UID)
        os.seteuid(SEGCAST_UID)
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)
        os.setgroups(groups)


def warm_imports() -> None:
    """Import what the code under test imports lazily, which segcast's user could not: the trackers' defaults
    (export's first checks), and the codec config files are read with (a codec not found is remembered as
    unknown for the rest of the process)."""
    StreamOptions.from_mapping({"imgsz": None})
    codecs.lookup("utf-8-sig")


async def failing(history: HistorySink) -> str:
    """The error ``history`` fails with once its writer has tried its file."""

    async def last_error() -> str | None:
        health = history.health()
        return health.last_error if health.state is SinkState.FAILING else None

    return await eventually(last_error, what="the history to fail to open its file")


async def history_error_as_segcast_user(path: Path, *, write: bool = False) -> str:
    """The error a history on ``path`` fails with, run as segcast's user (given an event to store if
    ``write``: a file that opens may still refuse writes)."""
    outputs = EventOutputs(EventsSettings(history=HistorySettings(path)))
    with as_segcast_user():
        await outputs.start()
        try:
            assert outputs.history is not None
            if write:
                outputs.on_packet(track_start(1))
            return await failing(outputs.history)
        finally:
            await outputs.stop()


def owned_by_root(listed: str, chown: str, them: str = "them") -> str:
    """What the history adds to SQLite's words for files of root's that segcast's user may not write."""
    return (
        f"{listed} to uid 0 {ROOTS}, and segcast runs as uid {SEGCAST_UID}: give {them} to segcast's user "
        f"(chown {SEGCAST_UID} {chown}); or set events.history.path to a file in a folder segcast's user may write"
    )


async def test_a_history_an_older_image_made_names_its_owner_and_the_chown(volume: Path) -> None:
    """The open was logged and reads answered (GET /api/events: 503) "attempt to write a readonly database",
    saying nothing of the file and its folder being root's nor how to fix it."""
    path = volume / "segcast-events.db"
    await made_by_an_older_image(path)
    why = owned_by_root(f"{volume} and {path} belong", f"{volume} {path}")
    outputs = EventOutputs(EventsSettings(history=HistorySettings(path)))
    with as_segcast_user():
        await outputs.start()
        try:
            assert outputs.history is not None
            error = await failing(outputs.history)
            with pytest.raises(sqlite3.OperationalError) as refused:
                await outputs.history.read_events(EventQuery())
        finally:
            await outputs.stop()
    assert error == f"cannot open {path}: attempt to write a readonly database: {why}"
    assert str(refused.value) == f"attempt to write a readonly database: {why}"


async def test_a_history_whose_folder_alone_was_given_to_segcast_names_the_file(volume: Path) -> None:
    """The folder given to segcast's user, the file still root's: it opens and is read, and each write fails."""
    path = volume / "segcast-events.db"
    await made_by_an_older_image(path)
    os.chown(volume, SEGCAST_UID, SEGCAST_UID)
    outputs = EventOutputs(EventsSettings(history=HistorySettings(path)))
    with as_segcast_user():
        await outputs.start()
        try:
            assert outputs.history is not None
            outputs.on_packet(track_start(1))
            error = await failing(outputs.history)
            assert await outputs.history.read_events(EventQuery()) == []
        finally:
            await outputs.stop()
    why = owned_by_root(f"{path} belongs", str(path), them="it")
    assert error == f"cannot write to {path}: attempt to write a readonly database: {why}"


async def test_a_history_read_only_for_segcasts_own_user_says_chmod(volume: Path) -> None:
    path = volume / "segcast-events.db"
    await open_once(path)
    os.chown(volume, SEGCAST_UID, SEGCAST_UID)
    os.chown(path, SEGCAST_UID, SEGCAST_UID)
    path.chmod(0o444)
    error = await history_error_as_segcast_user(path, write=True)
    files = [path, path.with_name(f"{path.name}-wal"), path.with_name(f"{path.name}-shm")]  # SQLite gives its mode
    assert error.endswith(
        f": {files[0]}, {files[1]} and {files[2]} are read-only (mode 0444): make them writable "
        f"(chmod u+w {' '.join(map(str, files))}); or set events.history.path to a file in a folder segcast's user "
        "may write"
    ), error


async def test_a_history_in_a_folder_not_made_yet_names_the_owner_of_the_folder_above(volume: Path) -> None:
    """Its folder to be made in a volume of root's, the history said only "Permission denied" (no path of
    it was there to name an owner)."""
    path = volume / "events" / "segcast-events.db"
    error = await history_error_as_segcast_user(path)
    assert error.startswith(f"cannot open {path}: "), error
    assert error.endswith(f": {owned_by_root(f'{volume} belongs', str(volume), them='it')}"), error


async def made_by_an_older_image(path: Path) -> None:
    """A history file as an older image made it, running as root: this version's tables, and mode 0644
    (that of SQLite's files under the usual umask, 022), which segcast's user may read but not write. This
    version makes its files 0600, which that user could not even open."""
    await open_once(path)
    os.chmod(path, 0o644)


def chattr(attributes: str, path: Path) -> bool:
    """Change ``path``'s file attributes (``+i``: immutable, which stops root too); whether that could be done
    here (not every file system has them, nor every container the capability)."""
    found = shutil.which("chattr")
    return found is not None and subprocess.run([found, attributes, path], capture_output=True).returncode == 0


async def test_an_immutable_history_file_is_not_said_to_need_a_chmod(volume: Path) -> None:
    """``chattr +i``: root too may not write it, though its mode lets its owner; the history said "read-only
    (mode 0644): make it writable (chmod u+w ...)", which changes nothing."""
    path = volume / "segcast-events.db"
    await open_once(path)
    if not chattr("+i", path):
        pytest.skip("no immutable files here (chattr +i)")
    try:
        outputs = EventOutputs(EventsSettings(history=HistorySettings(path)))
        await outputs.start()
        try:
            assert outputs.history is not None
            outputs.on_packet(track_start(1))
            error = await failing(outputs.history)
        finally:
            await outputs.stop()
    finally:
        assert chattr("-i", path), "the volume is removed after"
    mode = stat.S_IMODE(path.stat().st_mode)
    assert mode & 0o200, "its mode lets its owner write it"
    said = f"{path} is not writable, and no chmod would change that (mode {mode:04o}): immutable? (lsattr {path})"
    assert f": {said}; or set events.history.path" in error, error
    assert "chmod u+w" not in error, error


def test_an_export_into_an_out_an_older_image_made_is_refused_before_exporting_naming_its_owner(
    volume: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It exported for a minute, then said only "--out DIR: DIR/.segcast-scene-seg.new: Permission denied"."""
    monkeypatch.setattr("server.inference.export.missing_packages", lambda fmt: [])  # no runtime is reached

    def exported(path: Path, spec: str) -> None:
        raise AssertionError("refused before the export")

    monkeypatch.setattr("server.inference.export._load_pt", exported)
    fix = (
        f"{volume} belongs to uid 0 {ROOTS}, and segcast runs as uid {SEGCAST_UID}: give it to segcast's user "
        f"(chown {SEGCAST_UID} {volume}); or choose an --out segcast's user may write in"
    )
    new = volume / "triton"
    with as_segcast_user():
        with pytest.raises(ExportError) as into_it:
            export_model("bundled", "triton", volume)
        with pytest.raises(ExportError) as below_it:
            export_model("bundled", "triton", new)
    assert str(into_it.value) == f"--out {volume}: {fix}"
    assert str(below_it.value) == f"--out {new}: Permission denied: {fix}"
    assert os.listdir(volume) == []


def root_config(volume: Path, text: str = STREAM_A) -> Path:
    """A config file as the older image left it in its volume: root's, mode 0644."""
    path = volume / "segcast.toml"
    path.write_text(text)
    os.chmod(path, 0o644)
    return path


async def test_persist_1_on_a_config_file_of_another_user_is_refused_before_anything_changes(
    start_server: Start, volume: Path
) -> None:
    """The change was made, then answered 500 "the change is in effect, but not saved": a request that asked
    for a save got a change it may not have wanted without one."""
    path = root_config(volume)
    client = await start_server(StreamConfig("a", "scene:"), config_path=path)

    async def tracked() -> bool:  # what the model imports lazily at its first frames is imported as root
        stream = await (await client.get("/api/streams/a")).json()
        return bool(stream["frames_processed"] >= 2)

    await eventually(tracked, what="stream a's first frames through the model")
    with as_segcast_user():
        responses = [
            await client.patch("/api/streams/a?persist=1", json={"iou": 0.6}),
            await client.post("/api/streams?persist=1", json={"id": "b", "uri": "scene:?seed=2"}),
            await client.delete("/api/streams/a?persist=1"),
        ]
    for response in responses:
        message = (await response.json())["error"]
        assert response.status == 409, message
        assert message.startswith(
            "nothing was changed: ?persist=1 asked to save the change, and segcast.toml belongs to uid 0, "
        ), message
        assert message.endswith(
            "Make the change with ?persist=0 to leave the file as it is (the change then lasts until segcast restarts)"
        ), message
        assert "was not saved" not in message, "nothing was tried"
    streams = (await (await client.get("/api/streams")).json())["streams"]
    assert [(s["id"], s["options"]["iou"]) for s in streams] == [("a", StreamOptions().iou)]
    assert path.read_text() == STREAM_A


async def test_persist_1_on_a_config_file_given_to_segcast_in_a_folder_still_roots_is_refused_naming_it(
    start_server: Start, volume: Path
) -> None:
    """The file given to segcast's user, its folder not: a save writes its new file in the folder, which was
    asked of the real uid (root's), so the stream was added and then answered 500. (No stream runs here: a
    model run as segcast's user could not import what it imports lazily.)"""
    path = root_config(volume)
    os.chown(path, SEGCAST_UID, SEGCAST_UID)
    client = await start_server(config_path=path)
    with as_segcast_user():
        response = await client.post("/api/streams?persist=1", json={"id": "b", "uri": "scene:?seed=2"})
        viewer = await client.get("/api/viewer")
    message = (await response.json())["error"]
    assert response.status == 409, message
    assert f"and segcast.toml is in a folder segcast may not write in, {volume}, " in message, message
    assert (await viewer.json())["config_file"] is False, "no save offered"
    assert (await (await client.get("/api/streams")).json())["streams"] == []
    assert path.read_text() == STREAM_A


def test_save_config_with_a_config_file_segcast_may_not_write_is_warned_of_at_start(
    volume: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Nothing was said until the first change through the API, which was made and then not saved."""
    path = root_config(volume, "[server]\nsave_config = true\n\n" + STREAM_A)
    settings = Settings(model=str(BUNDLED_MODEL), config_path=path, save_config=True)
    with caplog.at_level(logging.WARNING, logger="server.app"):
        create_app(settings)  # as root: writable
        assert caplog.records == []
        with as_segcast_user():
            create_app(settings)
    (warning,) = caplog.records
    assert warning.levelno == logging.WARNING
    assert warning.getMessage().startswith(
        f"save_config = true, but changes made through the API cannot be saved to {path} now: "
        "segcast.toml belongs to uid 0, "
    ), warning.getMessage()
    assert "was not saved" not in warning.getMessage(), "nothing was tried yet"
