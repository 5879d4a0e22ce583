"""The stream view's "not saved to the config file" note is about a stream's shapes as they run: a stream
removed takes them with it, so one added again under its id (from the file, or fresh) has nothing
unsaved and shows no note. In a real headless Chromium against the real server with a config file.

Every wait is on something the page, the API or the file shows, with a deadline; none is a fixed sleep.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from server.config import StreamConfig
from tests.support.browser import WAIT_MS, open_page, require_browser, wait_for_new_frame
from tests.support.polling import eventually
from tests.support.zone_page import STREAM_VIEW, click, shape_names

require_browser()

Start = Callable[..., Awaitable[TestClient]]

pytestmark = pytest.mark.timeout(120)

CAM = "scene:?seed=3"
DOOR = [(0.2, 0.2), (0.6, 0.2), (0.6, 0.7)]


async def _zones_of(client: TestClient, names: list[str]) -> None:
    async def same() -> bool:
        response = await client.get("/api/streams/cam")
        return response.status == 200 and shape_names((await response.json())["options"], "zones") == names

    await eventually(same, WAIT_MS / 1000, f"cam's zones to be {names}")


async def test_a_stream_removed_and_added_again_has_no_unsaved_note(
    start_server: Start, browser: Any, tmp_path: Path
) -> None:
    config_file = tmp_path / "segcast.toml"
    config_file.write_text(f'[[streams]]\nid = "cam"\nuri = "{CAM}"\n')
    client = await start_server(StreamConfig("cam", CAM), config_path=config_file)
    page, console = await open_page(browser, client, STREAM_VIEW)
    await wait_for_new_frame(page, "#video")
    unfiled = page.locator("#shape-unfiled")
    await page.locator("#shape-persist").wait_for(state="visible", timeout=WAIT_MS)

    # A zone drawn with the box unticked: in effect, not in the file, and the note says so.
    await page.click("#add-zone")
    for point in [*DOOR, DOOR[0]]:  # the first corner again closes it
        await click(page, point)
    await _zones_of(client, ["zone-1"])
    await unfiled.wait_for(state="visible", timeout=WAIT_MS)

    # Removed and added again, both saved: the file holds cam with no zones, as the server runs it.
    assert (await client.delete("/api/streams/cam?persist=1")).status == 204
    # The view heard it is gone: its Remove is off while the server has no such stream.
    await page.wait_for_function("() => document.querySelector('#remove-stream').disabled", timeout=WAIT_MS)
    added = await client.post("/api/streams?persist=1", json={"id": "cam", "uri": CAM})
    assert added.status == 201, await added.text()
    await _zones_of(client, [])
    assert "zone-1" not in await asyncio.to_thread(config_file.read_text)

    # Opened again: nothing of it is unsaved, so no note.
    await page.evaluate("() => { location.hash = '#/'; }")
    await page.locator("#grid-view").wait_for(state="visible", timeout=WAIT_MS)
    await page.evaluate("() => { location.hash = '#/stream/cam'; }")
    await wait_for_new_frame(page, "#video")
    await unfiled.wait_for(state="hidden", timeout=WAIT_MS)
    assert console.errors == []
