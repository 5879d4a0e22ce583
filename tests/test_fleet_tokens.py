"""All cameras through a split's entrance whose nodes ask a token.

The entrance gives ``/fleet.json`` (which node runs which camera) only to a request a node would give
its streams, so the page sends its token with that question: the stored one as a bearer, or the signed
one of its own address. And where one node refuses the token the others take (a rotation half done),
the token dialog names that node. A real nginx on the split's entrance (`entrance`, as in
tests/test_fleet_map.py) in front of real nodes, and a real Chromium; every wait is on something the
page shows, with a deadline.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from server.app import create_app
from server.config import Settings, StreamConfig
from server.inference.models import BUNDLED_MODEL
from tests.support.browser import WAIT_MS, require_browser, wait_for_new_frame, wait_for_text
from tests.support.ports import free_port
from tests.test_entrance_redirects import entrance
from tests.test_fleet import all_cameras_link
from tests.test_fleet_map import PLACEMENT, placeholder

require_browser()

pytestmark = pytest.mark.timeout(240)

#: The viewer token of the fleet, and the one node 1 was given instead when its tokens were rotated.
FLEET_TOKEN = "viewer-token-of-the-fleet"
ROTATED_TOKEN = "rotated-viewer-token-of-node-1"
#: Gives the page the fleet's token, as a person who answered the token dialog before.
GIVE_TOKEN = f"localStorage.setItem('segcast.token', '{FLEET_TOKEN}');"
#: What node 1's placeholder says once the page has the entrance's map.
NAMES_ITS_CAMERAS = "node-1 does not answer: cam1, cam3 are not shown"
NODE_2_TILE = '.card[data-node="node-2"][data-stream="cam2"]'


@dataclass(frozen=True)
class Split:
    entrance: str  # the entrance's base URL, ``/`` after it
    node_1_port: int  # where nothing listens until a test starts node 1 there
    node_2: TestClient


@pytest.fixture
async def split_with_node_1_down(
    tmp_path: Path, start_server: Callable[..., Awaitable[TestClient]]
) -> AsyncIterator[Split]:
    """The split's entrance with node 2 running cam2 and asking `FLEET_TOKEN`, nothing at node 1's port."""
    node_2 = await start_server(StreamConfig("cam2", "scene:?seed=2"), viewer_tokens=(FLEET_TOKEN,))
    assert node_2.port is not None
    node_1_port = free_port()
    async with entrance(tmp_path, PLACEMENT, [node_1_port, node_2.port]) as base:
        yield Split(f"{base}/", node_1_port, node_2)


async def test_a_page_given_the_token_names_the_cameras_of_a_node_that_does_not_answer(
    split_with_node_1_down: Split, browser: Any
) -> None:
    """The map asked without the page's token got the entrance's 401: node 1's tile named no camera."""
    page = await browser.new_page()
    await page.add_init_script(GIVE_TOKEN)
    await page.goto(await all_cameras_link(split_with_node_1_down.entrance))

    assert (await wait_for_new_frame(page, f"{NODE_2_TILE} canvas"))["std"] > 10, "node 2 plays with the token"
    await wait_for_text(page, placeholder("node-1"), NAMES_ITS_CAMERAS)
    assert await page.locator("#token-dialog[open]").count() == 0, "the stored token served: nobody was asked"


async def test_a_page_opened_with_a_signed_token_in_its_address_gets_the_map(
    split_with_node_1_down: Split, browser: Any
) -> None:
    """A dashboard's link carries a signed token (``?token=s1...``) and the page stores none: the map is
    asked with the address's token."""
    minted = await split_with_node_1_down.node_2.post(
        "/api/tokens", json={"role": "viewer"}, headers={"Authorization": f"Bearer {FLEET_TOKEN}"}
    )
    assert minted.status == 200, await minted.text()
    signed = (await minted.json())["token"]

    page = await browser.new_page()
    await page.goto(f"{await all_cameras_link(split_with_node_1_down.entrance)}&token={signed}")

    assert (await wait_for_new_frame(page, f"{NODE_2_TILE} canvas"))["std"] > 10, "node 2 plays with the token"
    await wait_for_text(page, placeholder("node-1"), NAMES_ITS_CAMERAS)


async def test_the_token_dialog_names_the_node_that_refuses_the_token_the_others_took(
    split_with_node_1_down: Split, browser: Any, aiohttp_server: Callable[..., Awaitable[TestServer]]
) -> None:
    """Node 1 back with rotated tokens refused the page's token: the dialog said only "That access token was
    not accepted", with node 2 playing on that very token; nothing said which node asked."""
    # Given the page playing node 2 with the fleet's token, node 1 down:
    page = await browser.new_page()
    await page.add_init_script(GIVE_TOKEN)
    await page.goto(await all_cameras_link(split_with_node_1_down.entrance))
    await wait_for_new_frame(page, f"{NODE_2_TILE} canvas")
    await wait_for_text(page, 'a[data-node="node-1"] .badge', "unreachable")

    # When node 1 comes back at its port asking another token:
    settings = Settings(
        model=str(BUNDLED_MODEL), streams=(StreamConfig("cam1", "scene:?seed=1"),), viewer_tokens=(ROTATED_TOKEN,)
    )
    await aiohttp_server(create_app(settings), port=split_with_node_1_down.node_1_port)

    # Then the dialog names node 1, and says the others took the token the page has.
    title = page.locator("#token-dialog[open] #token-title")
    await title.wait_for(timeout=WAIT_MS)
    assert await title.inner_text() == "node-1 needs an access token (the others took the one given)"
    # And declined, node 1 says what it lacks, while node 2 plays on.
    await page.locator("#token-dialog[open] button.quiet").click()
    await wait_for_text(page, 'a[data-node="node-1"] .badge', "access token needed")
    playing = await page.get_attribute(f"{NODE_2_TILE} canvas", "data-seq")
    await wait_for_new_frame(page, f"{NODE_2_TILE} canvas", playing)
