"""The embed of a stream that is gone, or whose token is refused, leaves nothing of its picture on screen.

It kept the last picture of a removed camera (dimmed, under "No such stream") for as long as it stayed
open, and likewise after its token was refused; a server merely out of reach keeps its last picture,
which the notice over it calls the last one received (README, "Embedding in a dashboard").
Every wait is on something the page shows, with a deadline; none is a fixed sleep.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestClient, TestServer

from server.app import create_app
from server.config import Settings, StreamConfig
from server.inference.models import BUNDLED_MODEL
from tests.support.browser import WAIT_MS, open_page, open_url, require_browser, wait_for_new_frame, wait_for_text

require_browser()

Start = Callable[..., Awaitable[TestClient]]

pytestmark = pytest.mark.timeout(120)

EMBED_PANEL = ".status-panel"
ADMIN = "admin-token-0123456789abcdef"
VIEWER = "viewer-token-0123456789abcdef"
#: What the embed's canvas shows: how many pixels are neither black nor transparent, and its frame's seq.
LEFT_ON_SCREEN = """() => {
  const canvas = document.querySelector('#video');
  const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  let lit = 0;
  for (let i = 0; i < data.length; i += 4) if (data[i + 3] > 0 && data[i] + data[i + 1] + data[i + 2] > 0) lit++;
  return {lit, seq: canvas.dataset.seq ?? null};
}"""


async def test_the_embed_of_a_removed_stream_shows_nothing_of_its_last_picture(
    start_server: Start, browser: Any
) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=3"))
    page, console = await open_page(browser, client, "/embed/cam")
    await wait_for_new_frame(page, "#video")
    assert (await page.evaluate(LEFT_ON_SCREEN))["lit"] > 0, "a picture was shown, or this test proves nothing"
    assert (await client.delete("/api/streams/cam")).status in (200, 204)
    await wait_for_text(page, EMBED_PANEL, "No such stream")
    assert await page.evaluate(LEFT_ON_SCREEN) == {"lit": 0, "seq": None}
    assert console.errors == []


async def test_the_embed_keeps_its_picture_while_the_server_is_away_and_drops_it_once_its_token_is_refused(
    browser: Any, unused_tcp_port: int
) -> None:
    """The server comes back without the viewer token the embed's link was minted with, as its owner
    does to revoke a leaked one: the link is refused from then on."""

    def server(viewer_tokens: tuple[str, ...]) -> TestServer:
        settings = Settings(
            model=str(BUNDLED_MODEL),
            streams=(StreamConfig("cam", "scene:?seed=3"),),
            viewer_tokens=viewer_tokens,
            admin_tokens=(ADMIN,),
        )
        return TestServer(create_app(settings), host="127.0.0.1", port=unused_tcp_port)

    before = server((VIEWER,))
    await before.start_server()
    try:
        async with ClientSession() as session:
            minted = await session.post(
                before.make_url("/api/tokens"),
                json={"role": "viewer", "ttl_s": 3600},
                headers={"Authorization": f"Bearer {VIEWER}"},
            )
            assert minted.status == 200, await minted.text()
            link = (await minted.json())["token"]
        page, console = await open_url(browser, str(before.make_url(f"/embed/cam?token={link}")))
        await wait_for_new_frame(page, "#video")
    finally:
        await before.close()
    await wait_for_text(page, EMBED_PANEL, "No connection to segcast")
    kept = await page.evaluate(LEFT_ON_SCREEN)
    assert kept["lit"] > 0 and kept["seq"] is not None, "out of reach, the last picture stays, as its notice says"

    after = server(())
    await after.start_server()
    try:
        await wait_for_text(page, EMBED_PANEL, "token in this address was refused")
        assert await page.evaluate(LEFT_ON_SCREEN) == {"lit": 0, "seq": None}
    finally:
        await after.close()
    # The browser reports the refused requests and those the away server could not take; nothing else.
    expected = ("401", "WebSocket", "ERR_CONNECTION_REFUSED")
    assert [e for e in console.errors if not any(said in e for said in expected)] == []


async def test_the_embed_of_a_removed_stream_does_not_blame_its_address_and_shows_the_stream_once_added_again(
    start_server: Start, browser: Any
) -> None:
    """It said "Check the id in the embed's address" of a stream just removed, whose id was right."""
    client = await start_server(StreamConfig("front", "scene:?seed=3"))
    page, console = await open_page(browser, client, "/embed/front")
    await wait_for_new_frame(page, "#video")
    assert (await client.delete("/api/streams/front")).status in (200, 204)
    said = await wait_for_text(page, EMBED_PANEL, "No such stream")
    assert "“front”" in said and "removed, or a wrong id" in said and "once it is added" in said, said
    assert "Check the id" not in said, said

    added = await client.post("/api/streams", json={"id": "front", "uri": "scene:?seed=4"})
    assert added.status == 201, await added.text()
    await wait_for_new_frame(page, "#video")
    await page.wait_for_function(f"!document.querySelector('{EMBED_PANEL}').checkVisibility()", timeout=WAIT_MS)
    assert console.errors == []
