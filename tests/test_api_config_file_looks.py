"""Whether the config file may be written (each stream's ``persistable``, the refusal of ``?persist=1``) is
asked of its file system off the event loop, within a time limit, and saves are written in the stream
change threads: a config file on a network share that stopped answering holds up no request."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

import server.http.saving
import server.persist
from server.config import Settings, StreamConfig
from server.http.pages import viewer_settings
from tests.support.polling import eventually

Start = Callable[..., Awaitable[TestClient]]

#: How long a file system call held up by a test may wait to be released: a bound on a failure's cost.
FINISH_TIMEOUT_S = 30.0
STREAM_A = '[[streams]]\nid = "a"\nuri = "scene:?seed=1"\n'


def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "segcast.toml"
    path.write_text(STREAM_A)
    return path


def on_config_file(path: Path, asked: os.PathLike[str] | str | int) -> bool:
    """Whether a file system call is asked of the config file at ``path`` or its folder."""
    return not isinstance(asked, int) and Path(asked).resolve() in (path.resolve(), path.resolve().parent)


@pytest.fixture
def statvfs_threads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The threads ``os.statvfs`` of the config file is called on, from now on."""
    path, threads, statvfs = tmp_path / "segcast.toml", [], os.statvfs

    def recorded(asked: Any) -> os.statvfs_result:
        if on_config_file(path, asked):
            threads.append(threading.get_ident())
        return statvfs(asked)

    monkeypatch.setattr(os, "statvfs", recorded)
    return threads


@pytest.fixture
def share_stopped_answering(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[], None]]:
    """Call the result to make ``os.statvfs`` of the config file wait as a hard-mounted share that stopped
    answering does (until the test ends)."""
    path, answering, statvfs = tmp_path / "segcast.toml", threading.Event(), os.statvfs
    hung = threading.Event()

    def stalled(asked: Any) -> os.statvfs_result:
        if hung.is_set() and on_config_file(path, asked):
            answering.wait(FINISH_TIMEOUT_S)
        return statvfs(asked)

    monkeypatch.setattr(os, "statvfs", stalled)
    yield hung.set
    answering.set()


async def persistable(client: TestClient) -> bool:
    listed = (await (await client.get("/api/streams")).json())["streams"]
    return bool(listed[0]["persistable"])


async def test_listing_streams_and_changing_them_never_look_at_the_config_file_on_the_event_loop(
    start_server: Start, tmp_path: Path, statvfs_threads: list[int]
) -> None:
    """Each stream's ``persistable`` statted the config file and its mount on the loop, for every stream
    of every list, answer and WebSocket hello."""
    client = await start_server(StreamConfig("a", "scene:?seed=1"), config_path=config_file(tmp_path))
    statvfs_threads.clear()  # the look at start: what follows is asked by requests
    loop_thread = threading.get_ident()

    async def looked_at() -> bool:
        assert await persistable(client)
        return bool(statvfs_threads)

    await eventually(looked_at, what="the config file to be looked at again")
    changed = await client.patch("/api/streams/a?persist=1", json={"conf": 0.5})
    assert changed.status == 200, await changed.text()
    viewer = await client.get("/api/viewer")  # what the viewer's forms offer: saving to the file among it
    assert viewer.status == 200 and (await viewer.json())["config_file"] is True
    assert statvfs_threads and loop_thread not in statvfs_threads


async def test_a_config_file_whose_share_stopped_answering_is_not_persistable_and_nothing_waits_for_it(
    start_server: Start, tmp_path: Path, share_stopped_answering: Callable[[], None]
) -> None:
    """A dead NFS share froze the whole server at the next list of streams."""
    client = await start_server(StreamConfig("a", "scene:?seed=1"), config_path=config_file(tmp_path))
    assert await persistable(client)
    share_stopped_answering()

    async def not_persistable() -> bool:
        return not await persistable(client)

    await eventually(not_persistable, what="the config file to count as one that cannot be written")
    refused = await client.patch("/api/streams/a?persist=1", json={"conf": 0.5})
    assert refused.status == 409, await refused.text()
    assert "has not answered" in (await refused.json())["error"]
    made = await client.patch("/api/streams/a?persist=0", json={"conf": 0.5})
    assert made.status == 200, await made.text()
    assert (await client.get("/healthz")).status == 200


async def test_a_save_is_written_in_a_stream_change_thread(
    start_server: Start, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Saves ran in the loop's default executor, which encodes snapshots and stops the pipeline."""
    path = config_file(tmp_path)
    client = await start_server(StreamConfig("a", "scene:?seed=1"), config_path=path)
    threads: list[str] = []
    replace_file = server.persist._replace_file

    def recorded(*args: Any) -> str:
        threads.append(threading.current_thread().name)
        return replace_file(*args)

    monkeypatch.setattr(server.persist, "_replace_file", recorded)
    changed = await client.patch("/api/streams/a?persist=1", json={"conf": 0.5})
    assert changed.status == 200, await changed.text()
    assert "conf = 0.5" in path.read_text()
    assert len(threads) == 1 and threads[0].startswith("stream-change"), threads


async def test_a_save_that_never_returns_holds_up_neither_the_streams_next_change_nor_other_streams_saves(
    start_server: Start, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under ``save_config``, a save to a share that stopped answering held the stream's lock and the config
    file's: a removal of that stream without saving never answered, nor did any other stream's change."""
    path = tmp_path / "segcast.toml"
    path.write_text(f'[server]\nsave_config = true\n\n{STREAM_A}\n[[streams]]\nid = "b"\nuri = "scene:?seed=2"\n')
    writing, share_answering = threading.Event(), threading.Event()
    share_answering.set()
    statvfs, write_config = os.statvfs, server.http.saving.write_config

    def stalled_statvfs(asked: Any) -> os.statvfs_result:
        if on_config_file(path, asked):
            share_answering.wait(FINISH_TIMEOUT_S)
        return statvfs(asked)

    def stalled_write(*args: Any) -> None:
        writing.set()
        share_answering.wait(FINISH_TIMEOUT_S)
        write_config(*args)

    monkeypatch.setattr(os, "statvfs", stalled_statvfs)
    monkeypatch.setattr(server.http.saving, "write_config", stalled_write)
    client = await start_server(
        StreamConfig("a", "scene:?seed=1"), StreamConfig("b", "scene:?seed=2"), config_path=path, save_config=True
    )
    share_answering.clear()
    first = asyncio.ensure_future(client.patch("/api/streams/a", json={"conf": 0.5}))
    try:

        async def save_waiting() -> bool:
            return writing.is_set()

        await eventually(save_waiting, what="the save to wait for the share")
        removed = await client.delete("/api/streams/a?persist=0")
        assert removed.status == 204, await removed.text()
        changed = await client.patch("/api/streams/b", json={"conf": 0.4})
        assert changed.status == 500, await changed.text()
        answer = await changed.json()
        assert "in effect, but not saved" in answer["error"] and "has not answered" in answer["error"]
        assert answer["stream"]["options"]["conf"] == 0.4
    finally:
        share_answering.set()
    saved = await first
    assert saved.status == 200, await saved.text()
    assert "conf = 0.5" in path.read_text() and "conf = 0.4" not in path.read_text()


@pytest.mark.parametrize("writable", [True, False])
def test_the_viewer_offers_saving_only_to_a_config_file_it_may_write(tmp_path: Path, writable: bool) -> None:
    """Under ``save_config``, a viewer told so says every change is saved (its box ticked and off): with a
    file that cannot be written none is, so neither the file nor saving each change is offered then."""
    settings = Settings(config_path=config_file(tmp_path), save_config=True)
    offered = viewer_settings(settings, {}, config_writable=writable)
    assert (offered["config_file"], offered["save_config"]) == (writable, writable)
