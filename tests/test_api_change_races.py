"""Changes of one stream through the API are made one at a time (POST, PATCH and DELETE alike), and a
change is made only over the stream it was made from: a PATCH whose new source is being checked is
never applied to a stream removed and added again meanwhile."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Literal

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from server.config import StreamConfig, stream_options
from server.http.access.source_checks import SourceChecks
from server.http.keys import manager_key, stream_changes_key
from server.http.saving import SaveRefusal
from server.options import StreamOptions
from tests.support.polling import eventually

Start = Callable[..., Awaitable[TestClient]]

#: How long a held-up change may take to go on once released: a bound on a failure's cost, never waited for.
FINISH_TIMEOUT_S = 30.0
ZONE = {"name": "z", "points": [[0, 0], [0.5, 0], [0.5, 0.5]], "units": "fraction"}


class CheckHeld:
    """Holds up the API's check of a source whose URI holds ``marker`` (a camera's name the resolver is
    slow to answer for) until released, and tells when one has got there."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, marker: str) -> None:
        self.entered = asyncio.Event()
        self.released = asyncio.Event()
        check = SourceChecks.check

        async def held(checks: SourceChecks, uri: str) -> None:
            if marker in uri:
                self.entered.set()
                await self.released.wait()
            await check(checks, uri)

        monkeypatch.setattr(SourceChecks, "check", held)


class WatchedLock(asyncio.Lock):
    """A stream's change lock (`stream_changes_key`) that tells when a request waits for it."""

    def __init__(self) -> None:
        super().__init__()
        self.waited = asyncio.Event()

    async def acquire(self) -> Literal[True]:
        if self.locked():
            self.waited.set()
        return await super().acquire()


def watch_changes_of(app: web.Application, stream_id: str) -> WatchedLock:
    """The lock changes of ``stream_id`` take from now on; the caller keeps it (the app's map is weak)."""
    lock = WatchedLock()
    app[stream_changes_key][stream_id] = lock
    return lock


async def waits_or_ends(request: asyncio.Task[Any], lock: WatchedLock) -> None:
    """Until ``request`` either waits for ``lock`` or is answered without waiting for it."""

    async def either() -> bool:
        return request.done() or lock.waited.is_set()

    await eventually(either, what="the request to wait for the change under way, or to be answered")


async def test_a_removal_sent_while_a_change_checks_its_source_waits_for_the_change(
    start_server: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The removal went ahead; a stream added again under the id at once was then overwritten by the
    PATCH (its source, its options and zones lost), If-Match or not."""
    held = CheckHeld(monkeypatch, "seed=9")
    client = await start_server(StreamConfig("cam", "scene:?seed=1"))
    lock = watch_changes_of(client.server.app, "cam")
    etag = (await client.get("/api/streams/cam")).headers["ETag"]
    change = asyncio.create_task(
        client.patch("/api/streams/cam", json={"uri": "scene:?seed=9"}, headers={"If-Match": etag})
    )
    removal: asyncio.Task[Any] | None = None
    try:
        await held.entered.wait()
        removal = asyncio.create_task(client.delete("/api/streams/cam"))
        await waits_or_ends(removal, lock)
        assert not removal.done(), "the removal waits for the change under way"
    finally:
        held.released.set()
    changed = await change
    assert changed.status == 200, await changed.text()
    assert removal is not None and (await removal).status == 204
    added = await client.post("/api/streams", json={"id": "cam", "uri": "scene:?seed=5", "conf": 0.9, "zones": [ZONE]})
    assert added.status == 201, await added.text()
    now = await (await client.get("/api/streams/cam")).json()
    assert (now["source"], now["options"]["conf"], [zone["name"] for zone in now["options"]["zones"]]) == (
        "scene:?seed=5",
        0.9,
        ["z"],
    ), "the stream as it was added"


async def test_a_change_is_not_made_over_a_stream_removed_and_added_again_while_its_source_was_checked(
    start_server: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What does not go through the API (a WebRTC publisher's stream ended and another published under
    its id) may still replace a stream while a PATCH checks its new source: the PATCH is refused."""
    held = CheckHeld(monkeypatch, "seed=9")
    client = await start_server(StreamConfig("cam", "scene:?seed=1"))
    manager = client.server.app[manager_key]
    etag = (await client.get("/api/streams/cam")).headers["ETag"]
    change = asyncio.create_task(
        client.patch("/api/streams/cam", json={"uri": "scene:?seed=9"}, headers={"If-Match": etag})
    )
    options = stream_options({"conf": 0.9, "zones": [ZONE]}, StreamOptions(), "test")
    added_again = StreamConfig("cam", "scene:?seed=5", options=options)
    try:
        await held.entered.wait()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, manager.remove, "cam")
        await loop.run_in_executor(None, manager.add, added_again)
    finally:
        held.released.set()
    refused = await change
    assert refused.status == 412, await refused.text()
    assert "removed and added again" in (await refused.json())["error"]
    now = await (await client.get("/api/streams/cam")).json()
    assert (now["source"], now["options"]["conf"], [zone["name"] for zone in now["options"]["zones"]]) == (
        "scene:?seed=5",
        0.9,
        ["z"],
    ), "the stream as it was added again"


async def test_an_add_sent_while_its_id_is_being_removed_waits_for_the_removal(
    start_server: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It was refused (409, "being stopped") while the removal's reader stopped."""
    client = await start_server(StreamConfig("cam", "scene:?seed=1"))
    app = client.server.app
    manager = app[manager_key]
    lock = watch_changes_of(app, "cam")
    entered, released = threading.Event(), threading.Event()
    remove = manager.remove

    def held_remove(*args: Any, **kwargs: Any) -> StreamConfig:
        entered.set()
        assert released.wait(FINISH_TIMEOUT_S), "the test never released the removal"
        return remove(*args, **kwargs)

    monkeypatch.setattr(manager, "remove", held_remove)
    removal = asyncio.create_task(client.delete("/api/streams/cam"))
    addition: asyncio.Task[Any] | None = None
    try:

        async def removing() -> bool:
            return entered.is_set()

        await eventually(removing, what="the removal to begin")
        addition = asyncio.create_task(client.post("/api/streams", json={"id": "cam", "uri": "scene:?seed=5"}))
        await waits_or_ends(addition, lock)
        assert not addition.done(), "the addition waits for the removal under way"
    finally:
        released.set()
    assert (await removal).status == 204
    assert addition is not None
    added = await addition
    assert added.status == 201, await added.text()
    assert (await added.json())["source"] == "scene:?seed=5"


async def test_a_removal_sent_with_if_match_is_made_only_over_the_settings_it_was_read_with(
    start_server: Start,
) -> None:
    """RFC 9110 13.1.1: a DELETE with If-Match is made only while the ETag matches; it was ignored."""
    client = await start_server(StreamConfig("cam", "scene:?seed=1"))
    read = (await client.get("/api/streams/cam")).headers["ETag"]
    changed = await client.patch("/api/streams/cam", json={"conf": 0.5})
    assert changed.status == 200, await changed.text()
    stale = await client.delete("/api/streams/cam", headers={"If-Match": read})
    assert stale.status == 412, await stale.text()
    assert "changed since it was read" in (await stale.json())["error"]
    assert (await client.get("/api/streams/cam")).status == 200, "the stream is kept"
    weak = await client.delete("/api/streams/cam", headers={"If-Match": f"W/{changed.headers['ETag']}"})
    assert weak.status == 412, "compared strongly, as for a change"
    removed = await client.delete("/api/streams/cam", headers={"If-Match": changed.headers["ETag"]})
    assert removed.status == 204, await removed.text()
    assert (await client.get("/api/streams/cam")).status == 404


async def test_a_removal_with_if_match_is_not_made_of_a_stream_added_again_while_the_config_file_was_looked_at(
    start_server: Start, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A ``?persist=1`` removal waits for a look at the config file (on a slow share, up to 2 s): a stream
    published again under its id meanwhile, which the ETag was never compared with, was removed."""
    path = tmp_path / "segcast.toml"
    path.write_text('[[streams]]\nid = "cam"\nuri = "scene:?seed=1"\n')
    holding, looking, answering = False, asyncio.Event(), asyncio.Event()
    now = SaveRefusal.now

    async def held(writability: SaveRefusal) -> str | None:
        if holding:
            looking.set()
            await answering.wait()
        return await now(writability)

    monkeypatch.setattr(SaveRefusal, "now", held)
    client = await start_server(StreamConfig("cam", "scene:?seed=1"), config_path=path)
    manager = client.server.app[manager_key]
    etag = (await client.get("/api/streams/cam")).headers["ETag"]
    holding = True  # not the look at start
    removal = asyncio.create_task(client.delete("/api/streams/cam?persist=1", headers={"If-Match": etag}))
    added_again = StreamConfig("cam", "scene:?seed=5")
    try:
        await looking.wait()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, manager.remove, "cam")
        await loop.run_in_executor(None, manager.add, added_again)
    finally:
        answering.set()
    refused = await removal
    assert refused.status == 412, await refused.text()
    assert manager.config("cam") is added_again, "the stream published again is still there"
    assert 'uri = "scene:?seed=1"' in path.read_text(), "nor was the removal saved"
