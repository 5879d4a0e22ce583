"""The viewer works with access control on: it asks once for a token, keeps it, and streams with it.

A real headless Chromium against the real app with tokens configured: the page is refused until the
person gives a token, then the grid fills with live thumbnails (the WebSocket uses a signed URL token
minted with it), a reload does not ask again, and a viewer token cannot add a stream. The page asks
in a dialog of its own that says why in plain words, never with the browser's bare prompt().
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from server.config import StreamConfig
from server.http.pages import CACHED_FOR_GOOD
from tests.support.browser import require_browser

require_browser()

Start = Callable[..., Awaitable[TestClient]]

WAIT_MS = 30_000
ADMIN = "admin-token-for-the-viewer-test"
VIEWER = "viewer-token-for-the-viewer-test"
THUMBNAIL_DRAWN = "document.querySelector('.card canvas')?.dataset.seq !== undefined"

pytestmark = pytest.mark.timeout(120)


async def answer_token_dialog(page: Any, token: str) -> str:
    """Wait for the page's token dialog, give it ``token``; what the dialog said."""
    dialog = page.locator("#token-dialog[open]")
    await dialog.wait_for(timeout=WAIT_MS)
    said = str(await dialog.inner_text())
    await dialog.locator("input[name=token]").fill(token)
    await dialog.locator("button[type=submit]").click()
    return said


def no_browser_prompts(page: Any) -> list[str]:
    """The browser's own prompt(), alert() and confirm() boxes the page opens (dismissed): there should be none."""
    opened: list[str] = []

    async def dismiss(dialog: Any) -> None:
        opened.append(dialog.message)
        await dialog.dismiss()

    page.on("dialog", dismiss)
    return opened


async def test_the_viewer_asks_for_a_token_once_and_then_streams(start_server: Start, browser: Any) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=1"), admin_tokens=(ADMIN,), viewer_tokens=(VIEWER,))
    assert (await client.get("/api/streams")).status == 401
    page = await browser.new_page()
    prompts = no_browser_prompts(page)
    await page.goto(str(client.make_url("/")))
    said = await answer_token_dialog(page, VIEWER)
    assert "needs an access token" in said and "viewer token lets you watch" in said
    await page.wait_for_function(THUMBNAIL_DRAWN, timeout=WAIT_MS)
    assert await page.evaluate("localStorage.getItem('segcast.token')") == VIEWER
    assert await page.get_attribute("#token-dialog input", "type") == "password", "what is typed is not shown"

    await page.reload()
    await page.wait_for_function(THUMBNAIL_DRAWN, timeout=WAIT_MS)
    assert await page.locator("#token-dialog").count() == 0, "a stored token is not asked for again"

    # A viewer may not add a stream: the page asks for a stronger token, and with it the change is made.
    await page.fill("#add-form input[name=id]", "second")
    await page.fill("#add-form input[name=uri]", "scene:?seed=2")
    await page.click("#add-form button[type=submit]")
    said = await answer_token_dialog(page, ADMIN)
    assert "needs an admin token" in said and "lets you watch only" in said
    await page.wait_for_selector(".card[data-stream=second]", timeout=WAIT_MS)
    assert prompts == []
    await page.close()


async def test_a_wrong_token_is_refused_and_the_page_says_why(start_server: Start, browser: Any) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=1"), admin_tokens=(ADMIN,))
    page = await browser.new_page()
    prompts = no_browser_prompts(page)
    await page.goto(str(client.make_url("/")))
    await answer_token_dialog(page, "not-the-right-token-at-all")
    said = await answer_token_dialog(page, "still-not-the-right-token")  # checked before the dialog lets go
    assert "was not accepted" in said
    await page.locator("#token-dialog[open] button.quiet").click()  # "Not now"
    assert await page.evaluate("localStorage.getItem('segcast.token')") is None, "a refused token was kept"
    await page.fill("#add-form input[name=id]", "second")
    await page.fill("#add-form input[name=uri]", "scene:?seed=2")
    await page.click("#add-form button[type=submit]")
    await answer_token_dialog(page, "not-the-right-one-either")
    said = await answer_token_dialog(page, "nor-this-one")
    assert "was not accepted" in said
    await page.locator("#token-dialog[open] button.quiet").click()
    await page.wait_for_function("document.querySelector('#add-error').textContent.includes('token')", timeout=WAIT_MS)
    assert await page.locator(".card[data-stream=cam] canvas[data-seq]").count() == 0
    assert prompts == []
    await page.close()


async def test_api_answers_are_never_stored_and_no_answer_is_sniffed(start_server: Start) -> None:
    """The API's JSON had no ``Cache-Control``: asked with ``?token=``, a shared cache could keep a node's
    streams and hand them to whoever asked for that URL next. The viewer's files keep their own caching;
    every answer, a streamed one too, says its type is to be taken as it is (``nosniff``)."""
    client = await start_server(StreamConfig("cam", "scene:?seed=1"), admin_tokens=(ADMIN,), viewer_tokens=(VIEWER,))
    minted = await client.post("/api/tokens", json={"role": "viewer"}, headers={"Authorization": f"Bearer {VIEWER}"})
    assert minted.status == 200, await minted.text()
    token = (await minted.json())["token"]
    page = await client.get("/")
    script = re.search(r'src="(static/[^/"]+/[^"]+\.js)"', await page.text())
    assert script is not None, "the page loads its scripts under a tag"
    answers = {
        "a minted token": minted,
        "the viewer's page": page,
        "its script": await client.get(f"/{script[1]}"),
        "the streams": await client.get(f"/api/streams?token={token}"),
        "a refusal": await client.get("/api/streams"),
        "no such route": await client.get(f"/api/nowhere?token={token}"),
        "no such stream": await client.get(f"/api/streams/none?token={token}"),
    }
    async with client.get(f"/api/streams/cam/mjpeg?token={token}") as mjpeg:  # sent from inside its handler
        answers["MJPEG"] = mjpeg
    statuses = {name: answer.status for name, answer in answers.items()}
    assert statuses == {**dict.fromkeys(answers, 200), "a refusal": 401, "no such route": 404, "no such stream": 404}
    sniffing = {name: answer.headers.get("X-Content-Type-Options") for name, answer in answers.items()}
    assert sniffing == dict.fromkeys(answers, "nosniff")
    cached = {name: answer.headers.get("Cache-Control") for name, answer in answers.items()}
    assert cached == {
        **dict.fromkeys(answers, "no-store"),
        "the viewer's page": "no-cache",
        "its script": CACHED_FOR_GOOD,
    }
