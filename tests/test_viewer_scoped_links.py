"""The pages and scoped tokens, in a real headless Chromium: an embed opened with its camera's link plays it and
says why it cannot play another; the history page's pictures carry a token that opens stored event snapshots
and nothing else (an <img> address is the one a person copies out of a page, or a browser keeps).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from yarl import URL

from server.config import StreamConfig
from server.events.api import event_outputs_key
from server.events.config import EventsSettings, HistorySettings
from server.frames import PROTOCOL_VERSION
from tests.support.browser import WAIT_MS, open_page, require_browser, wait_for_new_frame, wait_for_text
from tests.support.event_packets import with_events
from tests.support.polling import eventually

require_browser()

Start = Callable[..., Awaitable[TestClient]]

pytestmark = pytest.mark.timeout(120)

ADMIN = "scoped-links-admin-token-0123456789"
VIEWER = "scoped-links-viewer-token-0123456789"
TOKENS = {"admin_tokens": (ADMIN,), "viewer_tokens": (VIEWER,)}
EMBED_PANEL = ".status-panel"
FRONT_TILE = "#grid .card[data-stream='front'] canvas"
FIRST_PICTURE = "document.querySelector('#history-table tbody tr img')?.naturalWidth > 0"


async def _stream_link(client: TestClient, stream: str) -> str:
    minted = await client.post(
        "/api/tokens",
        json={"role": "viewer", "ttl_s": 3600, "scope": {"streams": [stream]}},
        headers={"Authorization": f"Bearer {VIEWER}"},
    )
    assert minted.status == 200, await minted.text()
    token: str = (await minted.json())["token"]
    return token


async def _store_event(client: TestClient, stream: str) -> None:
    """A zone entry of ``stream``, stored in the history with its snapshot."""
    event = {
        **{"type": "zone_enter", "v": PROTOCOL_VERSION, "stream": stream, "id": 1, "class_id": 0},
        **{"class": "person", "time": time.time(), "media_time": 1.0, "zone": "yard"},
    }
    outputs = client.app[event_outputs_key]
    history = outputs.history
    assert history is not None
    outputs.on_packet(with_events(1, [event], stream))

    async def stored() -> bool:
        return history.health().delivered == 1

    await eventually(stored, what="the event stored")


async def test_an_embed_opened_with_its_cameras_link_plays_it(start_server: Start, browser: Any) -> None:
    client = await start_server(StreamConfig("front", "scene:?seed=1"), **TOKENS)
    link = await _stream_link(client, "front")

    page, console = await open_page(browser, client, f"/embed/front?token={link}")

    await wait_for_new_frame(page, "#video")
    assert console.errors == []


async def test_an_embed_of_another_camera_says_its_link_is_for_the_first(start_server: Start, browser: Any) -> None:
    client = await start_server(
        StreamConfig("front", "/no/such/front.mp4"), StreamConfig("back", "/no/such/back.mp4"), **TOKENS
    )
    link = await _stream_link(client, "front")

    page, _ = await open_page(browser, client, f"/embed/back?token={link}")

    said = await wait_for_text(page, EMBED_PANEL, "This link is for another camera")
    assert "this link opens camera front only, not back" in said
    assert "ask whoever gave it for a link to back" in said
    assert "subscribe:" not in said and "No such stream" not in said


async def test_a_wall_opened_with_a_cameras_link_plays_that_camera_alone(start_server: Start, browser: Any) -> None:
    """A kiosk's address: the grid's subscription to every stream is the link's camera, playing, and no
    tile of another (which the link may not see)."""
    client = await start_server(StreamConfig("front", "scene:?seed=1"), StreamConfig("back", "scene:?seed=2"), **TOKENS)
    link = await _stream_link(client, "front")

    page, console = await open_page(browser, client, f"/?wall=1&token={link}")

    picture = await wait_for_new_frame(page, FRONT_TILE)
    assert picture["std"] > 0, "the tile shows a picture, not a black square"
    assert await page.eval_on_selector_all("#grid .card", "cards => cards.map((c) => c.dataset.stream)") == ["front"]
    assert await page.is_hidden("#give-token")
    assert console.errors == []


async def test_the_history_pages_pictures_carry_a_token_for_event_snapshots_alone(
    start_server: Start, browser: Any, tmp_path: Path
) -> None:
    """Given a person who gave the viewer their token; then each snapshot's address carries a signed token
    that shows the picture and is refused the event list (and so every camera and every other route)."""
    events = EventsSettings(HistorySettings(tmp_path / "events.db", snapshots=True))
    client = await start_server(StreamConfig("cam", "/no/such/cam.mp4"), events=events, **TOKENS)
    await _store_event(client, "cam")
    page = await browser.new_page()
    await page.add_init_script(f"localStorage.setItem('segcast.token', {VIEWER!r})")
    await page.goto(str(client.make_url("/static/history.html")))
    await page.wait_for_function(f"() => {FIRST_PICTURE}", timeout=WAIT_MS)

    source = URL(await page.eval_on_selector("#history-table tbody tr img", "img => img.src"))
    token = source.query["token"]
    assert (await client.get(source.path_qs)).status == 200
    refused = await client.get("/api/events", params={"token": token})
    assert refused.status == 403
    assert "limited to event snapshots" in (await refused.json())["error"]
    link = URL(await page.eval_on_selector("#history-table tbody tr a:has(img)", "a => a.href"))
    assert link.query["token"] == token, "the full-size link carries the same token"
