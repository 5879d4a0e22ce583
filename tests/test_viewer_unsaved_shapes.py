"""What the stream view says of what lasts only until a restart, in a real headless Chromium against the
real server (one for the module, with a config file segcast may write and tokens on):

- zones, lines and ignore zones changed with "Save to config file" unticked (its default) are in effect
  but not in the file: the announcement says they go at a restart, and a note stays beside the box until
  they are saved, which ticking the box does; a stream the file cannot keep (one --source started) announces
  nothing new, and a note beside its shapes says they last until segcast stops;
- the Embed panel's snippet plays only with a token in its frame's address: the panel mints a viewer
  token for it when asked, and says that anyone with the snippet can watch until it expires.

Every wait is on something the page, the API or the file shows, with a deadline; none is a fixed sleep.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient

from server.app import create_app
from server.config import Settings, StreamConfig
from server.inference.models import BUNDLED_MODEL
from tests.conftest import ServedAsInProduction, launched_chromium
from tests.support.browser import DESKTOP, WAIT_MS, Console, open_url, require_browser, wait_for_new_frame
from tests.support.polling import eventually
from tests.support.zone_page import STREAM_VIEW, click, shape_names

require_browser()

pytestmark = [pytest.mark.timeout(120), pytest.mark.asyncio(loop_scope="module")]

ADMIN = "unsaved-shapes-admin-token-0123456789"
CAM = "scene:?seed=3"
#: A stream the command line started (--source): the config file never keeps it.
FLAGGED = "scene:?seed=4"
DOOR = [(0.2, 0.2), (0.6, 0.2), (0.6, 0.7)]
NOT_IN_FILE = "not saved to the config file: gone at a restart (tick Save to config file to keep it)"
#: The longest a viewer token may hold (README, Security), which the snippet's is asked for.
YEAR_S = 366 * 24 * 3600
#: The page holds the admin token, as it keeps the one a person gave it.
GIVE_TOKEN = f"localStorage.setItem('segcast.token', '{ADMIN}');"
SAID = "() => document.querySelector('#shape-status').textContent"


@pytest.fixture(scope="module")
def config_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("unsaved-shapes") / "segcast.toml"
    path.write_text(f'[[streams]]\nid = "cam"\nuri = "{CAM}"\n')
    return path


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client(config_file: Path) -> AsyncIterator[TestClient]:
    """The app on 127.0.0.1 with its config file, tokens on; the client asks as the admin."""
    settings = Settings(
        model=str(BUNDLED_MODEL),
        streams=(StreamConfig("cam", CAM), StreamConfig("flagged", FLAGGED)),
        config_path=config_file,
        admin_tokens=(ADMIN,),
        flag_streams=frozenset({"flagged"}),
    )
    server = ServedAsInProduction(create_app(settings))
    async with TestClient(server, headers={"Authorization": f"Bearer {ADMIN}"}) as c:
        yield c


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def chromium() -> AsyncIterator[Any]:
    async with launched_chromium() as instance:  # one for the module's tests
        yield instance


async def _open_with_token(chromium: Any, client: TestClient, path: str) -> tuple[Any, Console]:
    """``path`` in a new page that holds the admin token, as after a person gave it."""
    page = await chromium.new_page(viewport=DESKTOP)
    console = Console(page)
    await page.add_init_script(GIVE_TOKEN)
    await page.goto(str(client.make_url(path)))
    return page, console


async def _draw_door(page: Any) -> None:
    await page.click("#add-zone")
    for point in [*DOOR, DOOR[0]]:  # the first corner again closes it
        await click(page, point)


async def _said(page: Any, text: str) -> None:
    """Wait until the shape panel's live region (visually hidden) says ``text``."""
    await page.wait_for_function(f"() => ({SAID})() === {text!r}", timeout=WAIT_MS)


async def _shapes_in_file(config_file: Path, name: str) -> None:
    """Wait until the config file names the shape ``name`` (segcast writes it off the page's request)."""

    async def named() -> bool:
        return name in await asyncio.to_thread(config_file.read_text)

    await eventually(named, WAIT_MS / 1000, f"{name!r} in {config_file.name}")


async def _zones_of(client: TestClient, stream: str, names: list[str]) -> None:
    async def same() -> bool:
        options = (await (await client.get(f"/api/streams/{stream}")).json())["options"]
        return shape_names(options, "zones") == names

    await eventually(same, WAIT_MS / 1000, f"{stream}'s zones to be {names}")


async def test_shapes_changed_but_not_saved_to_the_config_file_say_they_go_at_a_restart(
    client: TestClient, chromium: Any, config_file: Path
) -> None:
    page, console = await _open_with_token(chromium, client, STREAM_VIEW)
    await wait_for_new_frame(page, "#video")
    persist = page.locator("#shape-persist")
    unfiled = page.locator("#shape-unfiled")
    await persist.wait_for(state="visible", timeout=WAIT_MS)
    assert not await persist.is_checked(), "the box stays unticked by default: the file is rewritten only when asked"

    await _draw_door(page)
    await _zones_of(client, "cam", ["zone-1"])
    await _said(page, f"Zone “zone-1” added, {NOT_IN_FILE}.")
    await unfiled.wait_for(state="visible", timeout=WAIT_MS)
    assert "zone-1" not in await asyncio.to_thread(config_file.read_text)

    # Ticking the box, as the note asks, saves the shapes shown: the note goes.
    await persist.check()
    await _shapes_in_file(config_file, "zone-1")
    await unfiled.wait_for(state="hidden", timeout=WAIT_MS)

    # A rename and a delete with the box unticked again say so too, and the note comes back.
    await persist.uncheck()
    await page.click('#shape-list li[data-shape="zone:zone-1"]')
    await page.fill("#shape-name", "porch")
    await page.press("#shape-name", "Enter")
    await _zones_of(client, "cam", ["porch"])
    await _said(page, f"Zones, lines and ignore zones changed, {NOT_IN_FILE}.")
    await unfiled.wait_for(state="visible", timeout=WAIT_MS)
    await page.click("#delete-shape")
    await _zones_of(client, "cam", [])
    await _said(page, f"Zone “porch” deleted, {NOT_IN_FILE}.")
    kept = await asyncio.to_thread(config_file.read_text)
    assert "zone-1" in kept and "porch" not in kept, "not asked to save: the file keeps what it had"
    assert await unfiled.is_visible()

    # A stream the file cannot keep: nothing new is said, and no note of unsaved changes.
    await page.evaluate("() => { location.hash = '#/stream/flagged'; }")
    await page.wait_for_function("() => document.querySelector('#stream-title').textContent === 'flagged'")
    await wait_for_new_frame(page, "#video")
    await page.locator("label:has(#shape-persist)").wait_for(state="hidden", timeout=WAIT_MS)
    await _draw_door(page)
    await _said(page, "Zone “zone-1” added.")
    # A rename is sent only once the page has the answer to the zone's save: with it on the server, the
    # page has taken that answer (and said nothing of the rename).
    await page.fill("#shape-name", "porch")
    await page.press("#shape-name", "Enter")
    await _zones_of(client, "flagged", ["porch"])
    assert await page.evaluate(SAID) == "Zone “zone-1” added."
    assert not await unfiled.is_visible()
    # What it has is kept until segcast stops, which a note beside them says (and only that stream's).
    transient = page.locator("#shape-transient")
    await transient.wait_for(state="visible", timeout=WAIT_MS)
    assert "list the stream in a config file" in (await transient.get_attribute("title") or "")
    await page.evaluate("() => { location.hash = '#/stream/cam'; }")
    await page.wait_for_function("() => document.querySelector('#stream-title').textContent === 'cam'")
    await transient.wait_for(state="hidden", timeout=WAIT_MS)
    assert console.errors == []


async def test_the_embed_snippet_gets_a_viewer_token_its_frame_plays_with(client: TestClient, chromium: Any) -> None:
    page, console = await _open_with_token(chromium, client, STREAM_VIEW)
    minted: list[Any] = []
    page.on("request", lambda r: urlsplit(r.url).path == "/api/tokens" and minted.append(r.post_data_json))
    await wait_for_new_frame(page, "#video")
    button = page.locator("#embed-token")
    await button.wait_for(state="visible", timeout=WAIT_MS)
    assert await button.inner_text() == "Add a viewer token (valid 366 days)"
    assert "token=" not in await page.input_value("#embed-code"), "no token in the snippet until asked for"

    await button.click()
    await page.wait_for_function(
        "() => document.querySelector('#embed-code').value.includes('?token=')", timeout=WAIT_MS
    )
    note = await page.inner_text("#embed-token-state")
    assert "Anyone with this snippet can watch cam until it expires" in note, note
    assert "opens this stream alone" in note, note
    assert {"role": "viewer", "ttl_s": YEAR_S, "scope": {"streams": ["cam"]}} in minted
    match = re.search(r'src="([^"]+)"', await page.input_value("#embed-code"))
    assert match is not None
    src = match[1]
    [token] = parse_qs(urlsplit(src).query)["token"]
    assert token.startswith("s2.viewer."), "a viewer token, not the page's admin one"
    # Whoever sees the snippet can watch its camera, and nothing else of the server (asked as they would:
    # with the snippet's token alone, not the admin's this client sends).
    async with aiohttp.ClientSession() as stranger:
        for path, status in (("/api/streams/cam/snapshot.jpg", 200), ("/api/streams/flagged/snapshot.jpg", 403)):
            async with stranger.get(client.make_url(path), params={"token": token}) as answer:
                assert answer.status == status, (path, answer.status)

    # The snippet's address alone, in a browser that holds no token, plays.
    embed, embed_console = await open_url(chromium, src)
    frame = await wait_for_new_frame(embed, "#video")
    assert frame["std"] > 10, "a picture, not a notice on black"
    assert console.errors == [] and embed_console.errors == []
