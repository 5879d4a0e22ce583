"""The publish page's track table keeps a track's row while the track lives, as the viewer's does.

It was rebuilt from new rows at every frame's metadata (30 times a second): a row under a press, or
a screen reader's place in the table, was gone at the next frame. Chromium's fake camera plays a
generated scene the model tracks; every wait is on something the page shows, with a deadline.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from tests import test_webrtc_browser
from tests.support.browser import WAIT_MS, Console, require_browser
from tests.test_webrtc_browser import camera_browser

require_browser()

Start = Callable[..., Awaitable[TestClient]]

pytestmark = pytest.mark.timeout(120)

fake_camera = test_webrtc_browser.fake_camera  # the same generated camera file, a fixture here too

#: Watches the track table as the page updates it: `window.rowKept` turns true once a frame's update
#: leaves a row that was already there in place (the same element, for a track that lived on).
WATCH_ROWS = """() => {
  const body = document.querySelector("#tracks tbody");
  const seen = new WeakSet();
  window.rowKept = false;
  new MutationObserver(() => {
    const rows = [...body.rows];
    window.rowKept ||= rows.some((row) => seen.has(row));
    rows.forEach((row) => seen.add(row));
  }).observe(body, { childList: true, subtree: true, characterData: true });
}"""


async def test_the_publish_pages_track_rows_stay_while_their_tracks_live(
    start_server: Start, fake_camera: Path
) -> None:
    client = await start_server()
    async with camera_browser(fake_camera) as browser:
        page = await browser.new_page()
        console = Console(page)
        await page.goto(str(client.make_url("/static/publish.html")))
        await page.evaluate(WATCH_ROWS)
        await page.fill("input[name=stream]", "phone")
        await page.click("#use-camera")
        await page.wait_for_function("() => document.querySelectorAll('#tracks tbody tr').length > 0", timeout=WAIT_MS)
        await page.wait_for_function("() => window.rowKept", timeout=WAIT_MS)
        cells = await page.eval_on_selector_all("#tracks tbody tr:first-child td", "(cells) => cells.length")
        assert cells == 3, "id, class and conf, as its header says"
        await page.click("#stop-camera")
        assert console.errors == []
