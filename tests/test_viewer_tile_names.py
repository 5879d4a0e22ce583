"""What a screen reader hears of the grid's tiles, a stream view's notice and an embed, in a real headless
Chromium against the real server (one for the module): a tile's link named by its caption, not by every
tick of its countdown; a stream going down said once on the grid; a notice that says the same not written
again each second; an embed named for its stream.

What Chromium hands a screen reader is read over CDP. Every wait is on something the page shows or does,
with a deadline; none is a fixed sleep.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient

from server.app import create_app
from server.config import Settings, StreamConfig
from server.inference.models import BUNDLED_MODEL
from tests.conftest import ServedAsInProduction, launched_chromium
from tests.support.browser import WAIT_MS, open_page, require_browser, wait_for_text

require_browser()

pytestmark = [pytest.mark.timeout(120), pytest.mark.asyncio(loop_scope="module")]

#: A camera nothing answers for: reconnecting, with a countdown to its next attempt, all along.
DEAD_URI = "rtsp://127.0.0.1:1/x"
CARD = '.card[data-stream="{}"]'
VIEW_PANEL = "#stream-view .status-panel"
#: The page's live regions other than the viewer's note (app.js) that say ``text``.
REGION_SAYS = """(text) => [...document.querySelectorAll('[role=status]')]
  .some((region) => region.id !== 'grid-note' && region.textContent === text)"""
#: Counts, in the page, the mutations of the stream view's notice (its state and reason), the changes of
#: its countdown's words and the calls of StatusPanel.show, in the same module instance as the page's.
WATCH_NOTICE = """async () => {
  const app = document.querySelector('script[type=module]').src;
  const { StatusPanel } = await import(new URL('status.js', app).href);
  const panel = document.querySelector('#stream-view .status-panel');
  window.watched = { says: 0, ticks: 0, shown: 0 };
  new MutationObserver((records) => { window.watched.says += records.length; })
    .observe(panel.querySelector('.status-says'), { subtree: true, childList: true, characterData: true,
                                                   attributes: true });
  const countdown = panel.querySelector('.status-countdown');
  let said = countdown.textContent;
  new MutationObserver(() => {
    if (countdown.textContent !== said) window.watched.ticks += 1;
    said = countdown.textContent;
  }).observe(countdown, { subtree: true, childList: true, characterData: true });
  const show = StatusPanel.prototype.show;
  StatusPanel.prototype.show = function (notice) {
    if (this.element === panel) window.watched.shown += 1;
    return show.call(this, notice);
  };
}"""


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client() -> AsyncIterator[TestClient]:
    """The app on 127.0.0.1: a live camera for the embed, one nothing answers for, and one to take down."""
    streams = (
        StreamConfig("cam", "scene:?seed=3&fps=10&width=320&height=192"),
        StreamConfig("door", DEAD_URI),
        StreamConfig("yard", "scene:?seed=4&fps=10&width=320&height=192"),
    )
    async with TestClient(ServedAsInProduction(create_app(Settings(model=str(BUNDLED_MODEL), streams=streams)))) as c:
        yield c


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def chromium() -> AsyncIterator[Any]:
    async with launched_chromium() as instance:  # one for the module's tests
        yield instance


async def spoken(page: Any, selector: str) -> dict[str, str]:
    """The role, name and description Chromium gives a screen reader for the element at ``selector``."""
    cdp = await page.context.new_cdp_session(page)
    try:
        document = await cdp.send("DOM.getDocument")
        node = await cdp.send("DOM.querySelector", {"nodeId": document["root"]["nodeId"], "selector": selector})
        tree = await cdp.send("Accessibility.getPartialAXTree", {"nodeId": node["nodeId"], "fetchRelatives": False})
    finally:
        await cdp.detach()
    ax = tree["nodes"][0]
    return {part: ax.get(part, {}).get("value", "") for part in ("role", "name", "description")}


async def test_a_reconnecting_tile_is_named_by_its_caption_and_described_by_its_notice(
    client: TestClient, chromium: Any
) -> None:
    page, console = await open_page(chromium, client, "/")
    await wait_for_text(page, CARD.format("door") + " .status-panel", "next attempt in")
    await wait_for_text(page, CARD.format("door") + " small", "fps")  # the whole caption is there

    tile = await spoken(page, CARD.format("door"))
    assert tile["role"] == "link"
    assert tile["name"].startswith("door reconnecting"), tile
    assert "next attempt" not in tile["name"] + tile["description"], f"the countdown's second is said: {tile}"
    assert tile["description"].startswith("Reconnecting"), f"what is wrong is its description: {tile}"
    live = await spoken(page, CARD.format("cam"))
    assert live["name"].startswith("cam live"), live
    assert live["description"] == "", f"a live camera has nothing to describe: {live}"
    await page.close()
    assert console.errors == []


async def test_a_notice_that_says_the_same_is_not_written_again_as_its_countdown_ticks(
    client: TestClient, chromium: Any
) -> None:
    page, console = await open_page(chromium, client, "/#/stream/door")
    await wait_for_text(page, VIEW_PANEL, "next attempt in")
    await page.evaluate(WATCH_NOTICE)

    # The page shows the notice again at each poll (every second), and the countdown ticks meanwhile.
    await page.wait_for_function("window.watched.ticks >= 2 && window.watched.shown >= 3", timeout=WAIT_MS)
    watched = await page.evaluate("window.watched")
    assert watched["says"] == 0, f"the live region was written again with the same words: {watched}"
    assert (await page.inner_text(f"{VIEW_PANEL} .status-says")).startswith("Reconnecting")
    await page.close()
    assert console.errors == []


async def test_a_stream_going_down_is_said_on_the_grid_and_its_view_says_when_it_is_back(
    client: TestClient, chromium: Any
) -> None:
    page, console = await open_page(chromium, client, "/")
    await page.wait_for_selector(CARD.format("yard") + " .badge.state-live", timeout=WAIT_MS)

    answer = await client.patch("/api/streams/yard", json={"uri": DEAD_URI})
    assert answer.status == 200, await answer.text()
    await page.wait_for_function(REGION_SAYS, arg="yard: reconnecting", timeout=WAIT_MS)

    # Its view, once it plays again, says so once: its notice's live region is hidden with the notice.
    await page.evaluate("location.hash = '#/stream/yard'")
    await wait_for_text(page, VIEW_PANEL, "Reconnecting")
    answer = await client.patch("/api/streams/yard", json={"uri": "scene:?seed=4&fps=10&width=320&height=192"})
    assert answer.status == 200, await answer.text()
    await page.wait_for_function(
        "document.querySelector('#stream-view .status-cleared')?.textContent === 'Live'", timeout=WAIT_MS
    )
    assert await page.get_attribute("#stream-view .status-cleared", "role") == "status"
    await page.close()
    assert console.errors == []


async def test_an_embed_is_titled_and_its_video_named_for_its_stream(client: TestClient, chromium: Any) -> None:
    page, console = await open_page(chromium, client, "/embed/cam")
    await page.wait_for_function("document.querySelector('#video').dataset.seq !== undefined", timeout=WAIT_MS)
    assert await page.title() == "cam · segcast"
    video = await spoken(page, "#video")
    assert (video["role"], video["name"]) == ("image", "live video of cam"), video
    await page.close()
    assert console.errors == []
