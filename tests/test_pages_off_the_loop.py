"""The viewer's folder is looked at off the event loop: a file system that is slow or stopped answering
(a network share) holds up the pages, never the rest of the server."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import ParamSpec, TypeVar

import pytest
from aiohttp.test_utils import TestClient

from server.http import pages
from tests.support.polling import eventually

StartServer = Callable[..., Awaitable[TestClient]]
#: How long a held look waits to be let go at most: a test that fails must not hang.
HELD_S = 30.0
#: The limit on a look in the test of a slow folder, and how long each of its looks takes: under the
#: limit by a margin no loaded machine eats (2 s), but two of them (the look under way, then the one
#: after it) are over it by as much.
SLOW_LOOK_LIMIT_S = 6.0
SLOW_LOOK_S = 4.0
#: Requests at once in the tests of shared looks: a page and its scripts.
REQUESTS = 6
#: The module's own, before a test shortens it.
DEFAULT_LOOK_TIMEOUT_S = pages.LOOK_TIMEOUT_S

P = ParamSpec("P")
T = TypeVar("T")


class HeldLooks:
    """`pages.ViewerFolder.listing` held until `let_go`, as on a file system that stopped answering, or
    for ``held_s`` each, as on one that answers slowly."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, held_s: float = HELD_S) -> None:
        self.looking = threading.Event()
        self.let_go = threading.Event()
        self.looked = threading.Event()
        self.begun = 0
        listing = pages.ViewerFolder.listing

        def held(folder: pages.ViewerFolder) -> pages.ViewerListing | None:
            self.begun += 1
            self.looking.set()
            self.let_go.wait(held_s)
            try:
                return listing(folder)
            finally:
                self.looked.set()

        monkeypatch.setattr(pages.ViewerFolder, "listing", held)

    async def under_way(self) -> None:
        async def looking() -> bool:
            return self.looking.is_set()

        await eventually(looking, what="the look at the viewer's folder to begin")


async def answers_again(client: TestClient, looks: HeldLooks, monkeypatch: pytest.MonkeyPatch) -> None:
    """Once the hung look is over, a page is answered again: asked with the usual time for its look, as the
    tests' 0.2 s is a hiccup on a loaded machine (ci's one failure was that next look taking longer)."""

    async def hung_look_over() -> bool:
        return looks.looked.is_set()

    await eventually(hung_look_over, what="the hung look to end")
    monkeypatch.setattr(pages, "LOOK_TIMEOUT_S", DEFAULT_LOOK_TIMEOUT_S)
    assert (await client.get("/")).status == 200, "once the folder answers again, so do the pages"


def looks_submitted(monkeypatch: pytest.MonkeyPatch) -> list[Callable[..., object]]:
    """What the viewer folders made from now on hand their looking thread, each look as it is handed over:
    a look handed over while another hangs waits behind it, one more for each request."""
    submitted: list[Callable[..., object]] = []

    class Counted(ThreadPoolExecutor):
        def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
            submitted.append(fn)
            return super().submit(fn, *args, **kwargs)

    monkeypatch.setattr(pages, "ThreadPoolExecutor", Counted)
    return submitted


async def test_a_slow_look_at_the_viewer_folder_holds_up_no_other_request(
    start_server: StartServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Listed on the loop, a folder on a share that stopped answering froze every viewer, the API and
    /healthz with it."""
    client = await start_server()
    looks = HeldLooks(monkeypatch)
    page = asyncio.create_task(client.get("/"))
    await looks.under_way()
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
    await answers_again(client, looks, monkeypatch)


async def test_a_folder_answering_within_the_limit_serves_every_file_of_a_page_load(
    start_server: StartServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A page's scripts, asked for while the page's own look is under way, wait for it and then for a look
    of their own: with one limit for both, a folder whose every look took 3 s (of 5) answered the page
    and 503 to its scripts, logged as a folder that had not answered within 5 s."""
    monkeypatch.setattr(pages, "LOOK_TIMEOUT_S", SLOW_LOOK_LIMIT_S)
    client = await start_server()
    looks = HeldLooks(monkeypatch, held_s=SLOW_LOOK_S)
    page = asyncio.create_task(client.get("/"))
    await looks.under_way()
    answers = await asyncio.gather(page, client.get("/static/app.js"), client.get("/static/api.js"))
    assert [answer.status for answer in answers] == [200, 200, 200]
    assert looks.begun == 2, "the scripts shared the look after the page's"


async def test_requests_while_the_folder_hangs_hand_its_thread_no_more_looks(
    start_server: StartServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One look at a time hangs on a folder that stopped answering: requests meanwhile, at once or one
    after another, are answered 503 without handing its thread another look (which would wait behind the
    hung one, one more per request), and a request that gives up does not end the look the others share."""
    submitted = looks_submitted(monkeypatch)
    monkeypatch.setattr(pages, "LOOK_TIMEOUT_S", 0.2)
    client = await start_server()
    looks = HeldLooks(monkeypatch)
    try:
        at_once = await asyncio.gather(*(client.get("/static/app.js") for _ in range(REQUESTS)))
        one_after_another = [await client.get("/static/api.js") for _ in range(REQUESTS)]
        assert [answer.status for answer in at_once + one_after_another] == [503] * (2 * REQUESTS)
        assert len(submitted) == 1, f"{len(submitted)} looks handed to the thread of one that hangs"
        assert not looks.looked.is_set()
    finally:
        looks.let_go.set()
    await answers_again(client, looks, monkeypatch)


async def test_requests_during_a_look_share_the_one_after_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """A page load asks for a dozen files at once: they cost two looks (the one under way, then one they
    share), not a look each."""
    looks = HeldLooks(monkeypatch)
    folder = pages.ViewerFolder(pages.web_root())
    try:
        requests = [asyncio.create_task(folder.look()) for _ in range(REQUESTS)]
        await looks.under_way()
        looks.let_go.set()
        listings = await asyncio.gather(*requests)
    finally:
        looks.let_go.set()
        folder.close()
    assert looks.begun == 2
    assert all(listing is not None and "app.js" in listing.files for listing in listings)
