"""Memory a closed WebRTC peer freed goes back to the OS: glibc kept it, and RSS grew ~150-170 KB with
each player session for good. Each close asks for a `malloc_trim(0)`, at most one per interval, off the
loop (`server.webrtc.memory`). How much is given back is measured in bench/, not here."""

from __future__ import annotations

import asyncio
import platform
import time
from collections.abc import Awaitable, Callable

import pytest
from aiohttp.test_utils import TestClient

from server.config import StreamConfig
from server.webrtc import memory
from server.webrtc.memory import Trimmer
from server.webrtc.routes import peers_key
from tests.test_webrtc import END_WITHIN_S, lan_peer, offer_to

Start = Callable[..., Awaitable[TestClient]]

#: Short enough for a test to wait out, long enough that three requests made at once fall in it.
SHORT_INTERVAL_S = 0.3
#: Waited out in full by a test that shows a trim does not come: kept small.
TINY_INTERVAL_S = 0.1
#: How often a test asks twice again where a loaded machine stalled a whole `TINY_INTERVAL_S` between two lines.
ATTEMPTS = 5

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def trims(monkeypatch: pytest.MonkeyPatch) -> asyncio.Queue[float]:
    """When (`time.monotonic`, the loop's clock) each trim ran, in place of glibc's, as it runs."""
    loop = asyncio.get_running_loop()
    ran: asyncio.Queue[float] = asyncio.Queue()

    def recorded() -> None:
        loop.call_soon_threadsafe(ran.put_nowait, time.monotonic())

    monkeypatch.setattr(memory, "trim", recorded)
    return ran


async def test_closing_a_player_gives_freed_memory_back(start_server: Start, trims: asyncio.Queue[float]) -> None:
    """Given a player answered for a stream, when it is closed, then the heap is trimmed."""
    client = await start_server(StreamConfig("live", "scene:?seed=1"))
    registry = client.app[peers_key]
    browser = lan_peer()
    browser.addTransceiver("video", direction="recvonly")
    try:
        await offer_to(client, "/api/webrtc/play/live", browser)
        (peer,) = registry._peers
        registry._close_soon(peer, "closed by the test")
        assert peer.closing is not None
        await peer.closing
        async with asyncio.timeout(END_WITHIN_S):
            await trims.get()
    finally:
        await browser.close()


async def test_closes_within_the_interval_trim_once_now_and_once_at_its_end(
    monkeypatch: pytest.MonkeyPatch, trims: asyncio.Queue[float]
) -> None:
    """Given three peers closing at once, then one trim runs at once and one when the interval is over:
    trimming each walks the whole heap, and dropping the later ones would keep their memory."""
    monkeypatch.setattr(memory, "TRIM_INTERVAL_S", SHORT_INTERVAL_S)
    trimmer = Trimmer()
    asked_at = asyncio.get_running_loop().time()
    for _ in range(3):
        trimmer.request()
    async with asyncio.timeout(END_WITHIN_S):
        await trims.get()
        second = await trims.get()
    await trimmer.close()
    assert second >= asked_at + SHORT_INTERVAL_S, "the second waited for the interval's end"
    assert trims.empty(), "three closes, two trims"


async def test_a_trim_still_to_come_when_the_trimmer_closes_never_runs(
    monkeypatch: pytest.MonkeyPatch, trims: asyncio.Queue[float]
) -> None:
    """Given a trim scheduled for the interval's end, when its registry closes the trimmer (at shutdown),
    then that trim never runs: nothing would be left to await it, and it would walk the heap of an app
    going away."""
    monkeypatch.setattr(memory, "TRIM_INTERVAL_S", TINY_INTERVAL_S)
    loop = asyncio.get_running_loop()
    for _ in range(ATTEMPTS):
        trimmer = Trimmer()
        asked_at = loop.time()
        trimmer.request()  # at once
        trimmer.request()  # within the interval: at its end
        if loop.time() - asked_at < TINY_INTERVAL_S:
            break
        # A machine so busy that the two lines were a whole interval apart: both trims ran at once. Again.
        await trimmer.close()  # its trims' records are queued before it returns (`trims`)
        while not trims.empty():
            trims.get_nowait()
    else:
        pytest.fail(f"two requests never fell within {TINY_INTERVAL_S} s of each other in {ATTEMPTS} attempts")
    due_by = loop.time() + TINY_INTERVAL_S
    await trimmer.close()
    # A trim that does not come can only be shown by waiting past the time it was due.
    past_due = asyncio.Event()
    loop.call_at(due_by, past_due.set)
    await past_due.wait()
    await trimmer.close()  # awaits a trim begun since, were there one
    assert trims.qsize() == 1, "the trim asked for first, and no other"


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's; elsewhere a no-op")
def test_glibcs_malloc_trim_is_found_and_runs() -> None:
    assert memory._MALLOC_TRIM is not None, "found at import on a glibc system"
    memory.trim()
