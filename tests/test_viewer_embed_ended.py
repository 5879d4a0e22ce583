"""The embed of a browser's published camera that ended: segcast removes such a camera as it ends, and
the embed's address stays right, so the embed says the camera ended, not that the id is wrong, and shows
it again by itself once it is published again under its id. Only a published camera: a file that ended
and was then removed is gone, and its embed says there is no such stream."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from server.config import StreamConfig
from server.scene import Scene, write_y4m
from tests.support.browser import WAIT_MS, open_page, require_browser, wait_for_new_frame, wait_for_text
from tests.test_webrtc import SceneTrack, lan_peer, offer_to

require_browser()

Start = Callable[..., Awaitable[TestClient]]

pytestmark = pytest.mark.timeout(90)

EMBED_PANEL = ".status-panel"
#: The embed's panel once it says anything of the stream's end: that it ended, or that there is none.
PANEL_SAYS_END = """() => {
  const panel = document.querySelector(".status-panel");
  return panel !== null && panel.checkVisibility() && /This camera ended|No such stream/.test(panel.innerText);
}"""


async def test_the_embed_of_a_published_camera_whose_browser_left_says_it_ended_then_shows_it_again(
    start_server: Start, browser: Any
) -> None:
    """It said "No such stream ... Check the id in the embed's address", though the address was right."""
    client = await start_server()
    publisher, again = lan_peer(), lan_peer()
    publisher.addTrack(SceneTrack(Scene(seed=1)))
    again.addTrack(SceneTrack(Scene(seed=2)))
    try:
        await offer_to(client, "/api/webrtc/publish", publisher, stream="cam")
        page, console = await open_page(browser, client, "/embed/cam")
        await wait_for_new_frame(page, "#video")
        await publisher.close()  # its tab closed
        await page.wait_for_function(PANEL_SAYS_END, timeout=WAIT_MS)
        said = await page.inner_text(EMBED_PANEL)
        assert "This camera ended" in said and "again as “cam”" in said, said
        assert "Check the id" not in said and "No such stream" not in said, said

        await offer_to(client, "/api/webrtc/publish", again, stream="cam")
        await page.wait_for_function(f"!document.querySelector('{EMBED_PANEL}').checkVisibility()", timeout=WAIT_MS)
        assert console.errors == []
    finally:
        await publisher.close()
        await again.close()


async def test_the_embed_of_a_file_that_ended_and_was_removed_says_there_is_no_such_stream(
    start_server: Start, browser: Any, tmp_path: Path
) -> None:
    """No browser can publish a file again: "This camera ended ... publish it again" would not fit it."""
    clip = write_y4m(Scene(seed=3), tmp_path / "clip.y4m", 15)
    client = await start_server(StreamConfig("clip", str(clip), loop=False))
    page, console = await open_page(browser, client, "/embed/clip")
    await wait_for_text(page, EMBED_PANEL, "the video reached its end")
    assert (await client.delete("/api/streams/clip")).status == 204
    await page.wait_for_function(PANEL_SAYS_END, timeout=WAIT_MS)
    said = await page.inner_text(EMBED_PANEL)
    assert "No such stream" in said and "This camera ended" not in said, said
    assert console.errors == []
