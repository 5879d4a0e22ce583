"""The publish page and access tokens: a camera published with a signed token that expires ends at
once, saying so, and is not tried again; a page without the admin token publishing needs asks for one,
as the viewer does, before it asks for the camera.

Both in a real Chromium with a generated camera file as its webcam, against the real app with tokens on.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests import test_webrtc_browser
from tests.support.browser import WAIT_MS
from tests.test_publish_page_recovery import RECORD_WHAT_IS_SAID
from tests.test_webrtc_browser import camera_browser
from tests.test_webrtc_publish_page import KEEP_WEBSOCKETS, PUBLISHING

Start = Callable[..., Awaitable[TestClient]]

fake_camera = test_webrtc_browser.fake_camera  # the same generated camera file, a fixture here too

pytestmark = pytest.mark.timeout(90)

ADMIN = "publish-admin-token-0123456789"
#: How long the page's signed admin token holds: long enough to load the page and publish (~3 s on a
#: loaded machine, from the token's signing once the browser is up), short enough to wait for.
TOKEN_TTL_S = 12
#: How many times the page asked the browser for the camera, counted as it asks (not as it is given).
COUNT_CAMERA_ASKS = """
window.cameraAsks = 0;
const getUserMedia = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
navigator.mediaDevices.getUserMedia = (constraints) => {
  window.cameraAsks += 1;
  return getUserMedia(constraints);
};
"""
TOKEN_DIALOG_OPEN = "document.querySelector('#token-dialog[open]') !== null"
CAMERA_OFF = "document.getElementById('publish-status').textContent === 'camera off'"


async def count_publishes(page: Any) -> list[str]:
    """The publish offers ``page`` sends from now on, each passed on to segcast."""
    offers: list[str] = []

    async def counted(route: Any) -> None:
        offers.append(route.request.url)
        await route.continue_()

    await page.route("**/api/webrtc/publish*", counted)
    return offers


async def test_a_camera_whose_signed_token_expires_says_so_at_once_and_is_not_tried_again(
    start_server: Start, fake_camera: Path
) -> None:
    """segcast ends the camera and closes the page's WebSocket with 4401 as the page's token expires. The
    page said "publishing" on for ~7 s, then "connection lost ... publishes again by itself", reopened
    its socket with the dead token 8 times, and said the token expired only ~30 s later."""
    client = await start_server(admin_tokens=(ADMIN,))
    async with camera_browser(fake_camera) as browser:
        page = await browser.new_page()
        await page.clock.install()  # time runs as usual until the test runs it forward
        await page.add_init_script(KEEP_WEBSOCKETS + RECORD_WHAT_IS_SAID)
        offers = await count_publishes(page)
        # Signed once the browser is up: its start took up to 7 s of the token's life on a loaded machine.
        minted = await client.post(
            "/api/tokens", json={"role": "admin", "ttl_s": TOKEN_TTL_S}, headers={"Authorization": f"Bearer {ADMIN}"}
        )
        token = (await minted.json())["token"]
        await page.goto(str(client.make_url(f"/static/publish.html?token={token}")))
        await page.fill("input[name=stream]", "cam")
        await page.click("#use-camera")
        await page.wait_for_function(PUBLISHING, timeout=WAIT_MS)

        expired = "window.said.some((text) => text.includes('its access token expired'))"
        await page.wait_for_function(f"{expired} || window.webSockets.length > 1", timeout=WAIT_MS)
        assert await page.evaluate("window.webSockets.length") == 1, "the socket was opened again with the dead token"
        said = await page.text_content("#publish-error") or ""
        assert "its access token expired" in said and "Reload the page with a fresh access token" in said, said
        assert await page.evaluate(CAMERA_OFF)
        await page.clock.run_for(5 * 60 * 1000)  # every attempt still due would be made now
        assert await page.evaluate("window.webSockets.length") == 1
        assert len(offers) == 1, offers
        everything = await page.evaluate("window.said")
        assert not any("Connection to segcast lost" in text for text in everything), everything


async def press_use_camera_until_asked_for_a_token(page: Any, client: TestClient) -> None:
    """Open the publish page, press "Use my camera", and wait for the token prompt, which must come
    before the browser is asked for the camera (``COUNT_CAMERA_ASKS``)."""
    await page.goto(str(client.make_url("/static/publish.html")))
    await page.click("#use-camera")
    await page.wait_for_function(f"{TOKEN_DIALOG_OPEN} || window.cameraAsks > 0", timeout=WAIT_MS)
    assert await page.evaluate("window.cameraAsks") == 0, "the camera was asked for before a token"


async def test_a_page_without_a_token_asks_for_one_before_the_camera_and_publishes_with_it(
    start_server: Start, fake_camera: Path
) -> None:
    """It asked the browser for the camera, then said the API's "a valid token is needed: send
    Authorization: Bearer <token>, or ?token=<signed token>", where the viewer asks in a form."""
    client = await start_server(admin_tokens=(ADMIN,))
    async with camera_browser(fake_camera) as browser:
        page = await browser.new_page()
        await page.add_init_script(COUNT_CAMERA_ASKS)
        await press_use_camera_until_asked_for_a_token(page, client)
        assert await page.evaluate(TOKEN_DIALOG_OPEN)
        assert "needs an access token" in (await page.text_content("#token-title") or "")

        await page.fill("#token-dialog input[name=token]", ADMIN)
        await page.click("#token-dialog button[type=submit]")
        await page.wait_for_function(PUBLISHING, timeout=WAIT_MS)
        assert await page.evaluate("window.cameraAsks") == 1
        assert await page.text_content("#publish-error") == ""


async def test_a_page_whose_person_gives_no_token_says_publishing_needs_an_admin_one(
    start_server: Start, fake_camera: Path
) -> None:
    client = await start_server(admin_tokens=(ADMIN,))
    async with camera_browser(fake_camera) as browser:
        page = await browser.new_page()
        await page.add_init_script(COUNT_CAMERA_ASKS)
        await press_use_camera_until_asked_for_a_token(page, client)
        await page.click("#token-dialog button.quiet")
        await page.wait_for_function("document.getElementById('publish-error').textContent !== ''", timeout=WAIT_MS)
        said = await page.text_content("#publish-error") or ""
        assert "needs an admin token" in said and "?token=" in said, said
        assert "Authorization: Bearer" not in said, said
        assert await page.evaluate(CAMERA_OFF)
        assert await page.is_enabled("#use-camera"), "a token can be given at the next press"
        assert await page.evaluate("window.cameraAsks") == 0


async def test_a_page_with_a_viewers_token_asks_for_an_admins_before_the_camera(
    start_server: Start, fake_camera: Path
) -> None:
    """A viewer's token is refused for its role (403), not as missing: the page asks for an admin's as the
    viewer does, before the camera, and without one says publishing needs it."""
    viewer = "publish-viewer-token-0123456789"
    client = await start_server(admin_tokens=(ADMIN,), viewer_tokens=(viewer,))
    async with camera_browser(fake_camera) as browser:
        page = await browser.new_page()
        await page.add_init_script(COUNT_CAMERA_ASKS + f"localStorage.setItem('segcast.token', {viewer!r});")
        await press_use_camera_until_asked_for_a_token(page, client)
        await page.click("#token-dialog button.quiet")
        await page.wait_for_function("document.getElementById('publish-error').textContent !== ''", timeout=WAIT_MS)
        said = await page.text_content("#publish-error") or ""
        assert "needs an admin token" in said, said
        assert await page.evaluate("window.cameraAsks") == 0
