"""The viewer's folder is looked at off the event loop: a file system that is slow or stopped answering
(a network share) holds up the pages, never the rest of the server."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable

import pytest
from aiohttp.test_utils import TestClient

from server.http import pages
from tests.support.polling import eventually

StartServer = Callable[..., Awaitable[TestClient]]
#: How long a held look waits to be let go at most: a test that fails must not hang.
HELD_S = 30.0


class HeldLooks:
    """`pages.ViewerFolder.listing` held until `let_go`, as on a file system that stopped answering."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.looking = threading.Event()
        self.let_go = threading.Event()
        self.looked = threading.Event()
        listing = pages.ViewerFolder.listing

        def held(folder: pages.ViewerFolder) -> pages.ViewerListing | None:
            self.looking.set()
            self.let_go.wait(HELD_S)
            try:
                return listing(folder)
            finally:
                self.looked.set()

        monkeypatch.setattr(pages.ViewerFolder, "listing", held)

    async def begun(self) -> None:
        async def looking() -> bool:
            return self.looking.is_set()

        await eventually(looking, what="the look at the viewer's folder to begin")


async def test_a_slow_look_at_the_viewer_folder_holds_up_no_other_request(
    start_server: StartServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Listed on the loop, a folder on a share that stopped answering froze every viewer, the API and
    /healthz with it."""
    client = await start_server()
    looks = HeldLooks(monkeypatch)
    page = asyncio.create_task(client.get("/"))
    await looks.begun()
    health = await client.get("/healthz")
    assert health.status == 200
    assert not looks.looked.is_set(), "/healthz waited for the look at the viewer's folder"
    looks.let_go.set()
    assert (await page).status == 200


async def test_a_viewer_folder_that_does_not_answer_is_a_503_saying_so(
    start_server: StartServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = await start_server()
    looks = HeldLooks(monkeypatch)
    monkeypatch.setattr(pages, "LOOK_TIMEOUT_S", 0.2)
    try:
        for path in ("/", "/static/app.js"):  # the second waits for the look under way, which still hangs
            answer = await client.get(path)
            assert answer.status == 503, path
            assert "do not answer" in (await answer.json())["error"], path
        assert looks.looking.is_set() and not looks.looked.is_set()
    finally:
        looks.let_go.set()
    assert (await client.get("/")).status == 200, "once the folder answers again, so do the pages"
