"""What the viewer says to someone on a screen reader or a keyboard, in a real headless Chromium against
one real ``segcast serve`` for the module: a token the server refuses is said in the dialog and not kept,
the event list is summed up now and then rather than read out event by event, a form's error is tied to
the field it is about, and removing the stream on show says "Removed" without "No such stream" first.
"""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.browser import WAIT_MS, Console, open_url, require_browser, wait_for_new_frame, wait_for_text
from tests.support.segcast_process import REPO, SegcastProcess

require_browser()

pytestmark = pytest.mark.timeout(120)

ADMIN_TOKEN = "admin-token-for-the-announcements-test"
WRONG_TOKEN = "not-a-token-this-server-knows"
STREAM = "cam"
QUIET = "quiet"  # a stream without zones or lines: no event but those a test sends
ZONE = {"name": "porch", "points": [[0.1, 0.1], [0.5, 0.1], [0.5, 0.5], [0.1, 0.5]], "units": "fraction"}
#: Keeps the page's WebSockets, so a test can hand the newest a message as if the server had sent it.
KEEP_SOCKETS = """
window.sockets = [];
window.WebSocket = class extends WebSocket {
  constructor(...args) {
    super(...args);
    window.sockets.push(this);
  }
};
"""
#: Each text a live region at `selector` is given, in order (window.said).
HEAR = """(selector) => {
  window.said = [];
  const region = document.querySelector(selector);
  new MutationObserver(() => window.said.push(region.textContent))
    .observe(region, {childList: true, subtree: true, characterData: true});
}"""
#: The field's invalid mark, what describes it and whether it has the focus.
MARKS = """(selector) => { const field = document.querySelector(selector);
  const [invalid, describedBy] = ["aria-invalid", "aria-describedby"].map((name) => field.getAttribute(name));
  return [invalid, describedBy, document.activeElement === field]; }"""


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """``segcast serve`` on 127.0.0.1 with an admin token and two scenes, `STREAM` with the zone "porch"
    and `QUIET`: its URL."""
    sources = (f"{STREAM}=scene:?seed=3&fps=30&width=320&height=192", f"{QUIET}=scene:?seed=4&width=160&height=96")
    args = ["--host", "127.0.0.1", "--model", "bundled", *(arg for source in sources for arg in ("--source", source))]
    process = SegcastProcess(*args, env={**os.environ, "PYTHONPATH": str(REPO), "SEGCAST_ADMIN_TOKENS": ADMIN_TOKEN})
    process.start()
    try:
        process.wait_until_healthy()
        api(process.base_url, "PATCH", f"/api/streams/{STREAM}", {"zones": [ZONE]})
        yield process.base_url
    finally:
        process.terminate()


def api(base: str, method: str, path: str, body: dict[str, Any] | None = None) -> int:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{base}{path}", data=data, method=method)
    request.add_header("Authorization", f"Bearer {ADMIN_TOKEN}")
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=10) as response:
        return int(response.status)


async def open_signed_in(browser: Any, url: str, *, clock: bool = False) -> tuple[Any, Console]:
    """``url`` in a new page whose browser keeps the admin token, its WebSockets kept (`KEEP_SOCKETS`);
    ``clock``: with Playwright's clock, which a test can move on."""
    page = await browser.new_page()
    if clock:
        await page.clock.install()
    await page.add_init_script(f"localStorage.setItem('segcast.token', {json.dumps(ADMIN_TOKEN)}); {KEEP_SOCKETS}")
    console = Console(page)
    await page.goto(url)
    return page, console


def page_errors(console: Console) -> list[str]:
    """The page's errors but for Chromium's own line on each request and WebSocket refused, which these
    tests make."""
    refused = ("Failed to load resource", "WebSocket connection to")
    return [error for error in console.errors if not error.startswith(refused)]


async def test_a_refused_token_is_said_in_the_dialog_and_never_kept(server: str, browser: Any) -> None:
    page, console = await open_url(browser, f"{server}/")
    dialog = page.locator("#token-dialog[open]")
    await dialog.wait_for(timeout=WAIT_MS)
    await page.keyboard.type(WRONG_TOKEN)
    await page.keyboard.press("Enter")

    # Checked before it is taken: the dialog asks again, saying why, with the focus in its marked field.
    await wait_for_text(page, "#token-dialog[open] #token-title", "That access token was not accepted")
    assert await page.evaluate(MARKS, "#token-dialog input") == ["true", None, True]
    assert await page.evaluate("localStorage.getItem('segcast.token')") is None, "a refused token is not kept"
    await page.keyboard.type("x")
    assert await page.get_attribute("#token-dialog input", "aria-invalid") is None, "what is typed next is not"

    await page.fill("#token-dialog input", ADMIN_TOKEN)
    await page.keyboard.press("Enter")
    await dialog.wait_for(state="hidden", timeout=WAIT_MS)
    await wait_for_text(page, "#connection", "connected")
    assert await page.evaluate("localStorage.getItem('segcast.token')") == ADMIN_TOKEN

    # A token kept from before that the server no longer takes: the notice says so, not "None was given".
    later = await browser.new_page()
    await later.add_init_script(f"localStorage.setItem('segcast.token', {json.dumps(WRONG_TOKEN)})")
    await later.goto(f"{server}/#/stream/{STREAM}")
    await later.locator("#token-dialog[open]").wait_for(timeout=WAIT_MS)
    await later.keyboard.press("Escape")
    said = await wait_for_text(later, "#stream-view .status-panel", "was not accepted")
    assert "None was given" not in said, said
    assert page_errors(console) == []


async def test_events_are_summed_up_at_most_every_ten_seconds_not_read_out_each(server: str, browser: Any) -> None:
    page, console = await open_signed_in(browser, f"{server}/?transport=ws#/stream/{QUIET}", clock=True)
    await wait_for_text(page, "#connection", "connected")
    await wait_for_new_frame(page, "#video")

    assert await page.get_attribute("#events", "aria-live") is None, "the list itself is not read out"
    title = await page.get_attribute("#events", "aria-labelledby")
    assert await page.text_content(f"#{title}") == "Events"

    await page.evaluate(HEAR, "#events-summary")
    await send_crossings(page, [12])
    await page.wait_for_function("window.said.length === 1", timeout=WAIT_MS)
    await send_crossings(page, [13, 14, 15])
    assert await page.locator("#events li").count() == 4, "each is listed as it comes"
    await page.clock.fast_forward(10_000)
    await page.wait_for_function("window.said.length === 2", timeout=WAIT_MS)
    assert await page.evaluate("window.said") == [
        "1 new event: #12 person crossed mid (in)",
        "3 new events, latest: #15 person crossed mid (in)",
    ]
    assert await page.get_attribute("#events-summary", "role") == "status"

    # A crossing counted late (dated when its stay across began) is listed below newer ones: still new.
    await send_crossings(page, [16], ago_s=15)  # 10 s after #15, 5 s before it
    assert "#16" not in await page.text_content("#events li:first-child"), "listed below the newer #15"
    await page.clock.fast_forward(10_000)
    await page.wait_for_function("window.said.length === 3", timeout=WAIT_MS)
    assert (await page.evaluate("window.said"))[2] == "1 new event: #16 person crossed mid (in)"
    assert page_errors(console) == []


async def send_crossings(page: Any, ids: list[int], ago_s: float = 0) -> None:
    """Line crossings of ``ids`` on the open stream, as the server's WebSocket brings them, dated ``ago_s``
    before now."""
    await page.evaluate(
        """([stream, ids, ago]) => { for (const id of ids) {
             const message = {type: "line_cross", stream, id, class: "person", line: "mid", direction: "in",
                              media_time: id, time: Date.now() / 1000 - ago};
             window.sockets.at(-1).dispatchEvent(new MessageEvent("message", {data: JSON.stringify(message)}));
           } }""",
        [QUIET, ids, ago_s],
    )


async def test_a_form_error_marks_its_field_in_its_words_until_it_is_changed(server: str, browser: Any) -> None:
    page, console = await open_signed_in(browser, f"{server}/")
    await wait_for_text(page, "#connection", "connected")

    # A taken id: the id field's error.
    await page.fill("input[name=id]", STREAM)
    await page.fill("input[name=uri]", "scene:?seed=9")
    await page.click("#add-form button[type=submit]")
    await wait_for_text(page, "#add-error", "already exists")
    assert await page.evaluate(MARKS, "input[name=id]") == ["true", "add-error", True]
    await page.keyboard.type("2")
    assert await page.evaluate(MARKS, "input[name=id]") == [None, None, True]

    # A source the server cannot use: said with the field's label, not the request's "body.uri".
    await page.fill("input[name=uri]", "bogus://x")
    await page.click("#add-form button[type=submit]")
    said = await wait_for_text(page, "#add-error", "Source: ")
    assert said.startswith("Source: ") and "body." not in said, said
    assert await page.evaluate(MARKS, "input[name=uri]") == ["true", "add-error", True]
    assert await page.get_attribute("input[name=id]", "aria-invalid") is None

    # The zone editor: a name it cannot take, and a loiter time it cannot.
    await page.evaluate(f"location.hash = '#/stream/{STREAM}'")
    await wait_for_new_frame(page, "#video")
    await page.click("#shape-list li[data-shape] button")
    await page.fill("#shape-name", "bad name!")
    await page.keyboard.press("Tab")
    await page.wait_for_function("document.querySelector('#shape-error').textContent !== ''", timeout=WAIT_MS)
    assert await page.evaluate(MARKS, "#shape-name") == ["true", "shape-error", True]
    await page.keyboard.type("x")
    assert await page.evaluate(MARKS, "#shape-name") == [None, None, True]
    await page.keyboard.press("Tab")  # renamed "porchx": saved, and its answer shown before the next change
    await page.wait_for_function("document.querySelector('#shape-list').textContent.includes('porchx')")
    await page.wait_for_function("document.querySelector('#shape-error').textContent === ''")

    await page.fill("#shape-loiter", "-3")
    await page.keyboard.press("Tab")
    await wait_for_text(page, "#shape-error", "Loiter after")
    assert await page.evaluate(MARKS, "#shape-loiter") == ["true", "shape-loiter-hint shape-error", True]
    assert await page.get_attribute("#shape-name", "aria-invalid") is None
    await page.keyboard.type("5")
    assert await page.evaluate(MARKS, "#shape-loiter") == [None, "shape-loiter-hint", True]
    # Nor is 0 s: refused by the page as the field is left, with no save sent (one clears the marks as it
    # goes out).
    await page.fill("#shape-loiter", "0")
    await page.keyboard.press("Tab")
    assert await page.evaluate(MARKS, "#shape-loiter") == ["true", "shape-loiter-hint shape-error", True]
    assert (await page.text_content("#shape-error") or "").startswith("Loiter after")
    # The refused time gave way to the saved one, none: what the browser cannot read as a number typed
    # over it leaves the field's value "", so no change comes as it is left, yet it is refused then too,
    # not left looking set.
    assert await page.input_value("#shape-loiter") == ""
    await page.fill("#shape-loiter", "1e309")
    await page.keyboard.press("Tab")
    assert await page.evaluate(MARKS, "#shape-loiter") == ["true", "shape-loiter-hint shape-error", True]
    assert (await page.text_content("#shape-error") or "").startswith("Loiter after")
    assert page_errors(console) == []


async def test_removing_the_stream_on_show_says_removed_and_not_no_such_stream(server: str, browser: Any) -> None:
    assert api(server, "POST", "/api/streams", {"id": "gone", "uri": "scene:?seed=5&width=320&height=192"}) == 201
    page, console = await open_signed_in(browser, f"{server}/?transport=ws#/stream/gone")
    await wait_for_new_frame(page, "#video")
    await page.evaluate(
        """() => { window.said = [];
             for (const region of document.querySelectorAll('[role=status], [role=alert]')) {
               new MutationObserver(() => window.said.push(region.textContent.trim()))
                 .observe(region, {childList: true, subtree: true, characterData: true});
             } }"""
    )
    await page.focus("#remove-stream")
    await page.keyboard.press("Enter")
    assert await page.text_content("#remove-stream") == "Press again to remove"
    await page.wait_for_selector("#remove-stream:not([aria-disabled])", timeout=WAIT_MS)  # a second press counts
    await page.keyboard.press("Enter")
    await page.wait_for_function("document.title === 'segcast'", timeout=WAIT_MS)
    said = [text for text in await page.evaluate("window.said") if text]
    assert any(text.startswith("Removed “gone”") for text in said), said
    assert not any("No such stream" in text for text in said), said
    assert page_errors(console) == []
