"""What the Chromium tests of the viewer share: opening a page, waiting for frames, reading the canvas.

Every wait is on something the page shows, with a deadline; none is a fixed sleep.
"""

from __future__ import annotations

import asyncio
import shutil
from types import ModuleType
from typing import Any

from tests.conftest import CHROMIUM
from tests.support.components import require_component, require_module

WAIT_MS = 30_000
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}  # an iPhone 12 to 15 in portrait, in CSS pixels

#: Mean and spread of the canvas' pixels, and a cheap fingerprint of them, computed in the page.
CANVAS_STATS = """(selector) => {
  const canvas = document.querySelector(selector);
  const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  let sum = 0, squares = 0, hash = 0;
  for (let i = 0; i < data.length; i += 4) {
    const v = data[i] + data[i + 1] + data[i + 2];
    sum += v; squares += v * v; hash = (hash * 31 + v) | 0;
  }
  const n = data.length / 4, mean = sum / n;
  return {mean, std: Math.sqrt(squares / n - mean * mean), hash, seq: canvas.dataset.seq ?? null};
}"""


#: Keeps, in the page, the metadata of the last frames the WebSocket brought, by seq (the
#: tracks' boxes and masks, for a test to find one on the screen).
KEEP_FRAME_META = """
window.frameMeta = new Map();
window.WebSocket = class extends WebSocket {
  constructor(...args) {
    super(...args);
    this.addEventListener("message", ({ data }) => {
      if (typeof data !== "string") return;
      const message = JSON.parse(data);
      if (message.type !== "frame") return;
      window.frameMeta.set(String(message.seq), message);
      if (window.frameMeta.size > 100) window.frameMeta.delete(window.frameMeta.keys().next().value);
    });
  }
};
"""


def require_browser() -> ModuleType:
    """Playwright's async API, with Debian's Chromium there for it to drive: without either, the calling
    test, fixture or module (at import) is skipped, and fails in CI (`require_component`)."""
    playwright = require_module("playwright.async_api", "needs Playwright: pip install -e '.[test]'")
    require_component(shutil.which(CHROMIUM) is not None, f"needs Debian's chromium at {CHROMIUM}")
    return playwright


class Console:
    """Every console error and uncaught exception of a page; a clean page has none."""

    def __init__(self, page: Any) -> None:
        self.errors: list[str] = []
        page.on("console", lambda message: message.type == "error" and self.errors.append(message.text))
        page.on("pageerror", lambda error: self.errors.append(str(error)))


async def open_url(browser: Any, url: str, viewport: dict[str, int] | None = None) -> tuple[Any, Console]:
    page = await browser.new_page(viewport=viewport or DESKTOP)
    console = Console(page)
    await page.goto(url)
    return page, console


async def open_page(
    browser: Any, client: Any, path: str, viewport: dict[str, int] | None = None
) -> tuple[Any, Console]:
    """``path`` of the test server behind ``client`` (an aiohttp TestClient) in a new page."""
    return await open_url(browser, str(client.make_url(path)), viewport)


CHANGE_WITHIN_FRAMES = 30


async def wait_for_new_frame(page: Any, selector: str, after: str | None = None) -> dict[str, Any]:
    """Wait until the canvas at ``selector`` shows a frame other than ``after``; its pixel statistics."""
    await page.wait_for_function(
        "([selector, after]) => { const s = document.querySelector(selector)?.dataset.seq;"
        " return s !== undefined && s !== after; }",
        arg=[selector, after],
        timeout=WAIT_MS,
    )
    return await page.evaluate(CANVAS_STATS, selector)


async def wait_for_changed_picture(page: Any, selector: str, first: dict[str, Any]) -> dict[str, Any]:
    """A later frame whose picture differs from ``first`` (a scene may hold still, empty, for a few frames)."""
    frame = first
    for _ in range(CHANGE_WITHIN_FRAMES):
        frame = await wait_for_new_frame(page, selector, frame["seq"])
        if frame["hash"] != first["hash"]:
            return frame
    raise AssertionError(f"the picture at {selector} did not change in {CHANGE_WITHIN_FRAMES} frames")


#: For `page.wait_for_function`: pause the stream view on the first frame drawn with tracks, in the
#: same step as the check, so a frame without any cannot be drawn in between.
PAUSE_ON_TRACKS = """() => {
    if ((document.querySelector('#video').dataset.tracks || '') === '') return false;
    document.querySelector('#pause').click();
    return true;
}"""


async def wait_for_text(page: Any, selector: str, text: str) -> str:
    """Wait until the element at ``selector`` is shown and its text contains ``text``; its whole text."""
    await page.wait_for_function(
        """([selector, text]) => { const e = document.querySelector(selector);
             return e !== null && e.checkVisibility() && e.innerText.includes(text); }""",
        arg=[selector, text],
        timeout=WAIT_MS,
    )
    return await page.inner_text(selector)


async def document_listeners(page: Any) -> dict[str, int]:
    """How many event listeners ``page``'s document has, by event type, as Chromium's developer tools
    count them (every listener a module added, an anonymous function's too)."""
    cdp = await page.context.new_cdp_session(page)
    try:
        document = await cdp.send("Runtime.evaluate", {"expression": "document"})
        found = await cdp.send("DOMDebugger.getEventListeners", {"objectId": document["result"]["objectId"]})
    finally:
        await cdp.detach()
    counts: dict[str, int] = {}
    for listener in found["listeners"]:
        counts[listener["type"]] = counts.get(listener["type"], 0) + 1
    return counts


async def hold_first_save(page: Any, stream: str = "cam") -> asyncio.Future[Any]:
    """Hold the page's first save (PATCH) of ``stream`` on its way to the server: the future gives its
    route, to be let through with ``continue_()``; later requests go straight through."""
    held: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    async def hold(route: Any) -> None:
        if route.request.method == "PATCH" and not held.done():
            held.set_result(route)
        else:
            await route.continue_()

    await page.route(f"**/api/streams/{stream}", hold)
    return held
