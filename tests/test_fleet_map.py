"""All cameras says which cameras a node that does not answer leaves out, from the entrance's map.

A node down when the page opened had one tile, "node-1: unreachable ... stopped, starting or
overloaded", naming none of its cameras; a node a re-split removed, still in a saved ``?nodes=``
link, said "unreachable. 404 Not Found". The entrance `nginx_config` writes for a split (as in
tests/test_entrance_redirects.py) answers ``/fleet.json`` with each node's cameras; here it runs in a
real nginx in front of a real node 2, node 1 never started, and a real Chromium opens All cameras.
Every wait is on something the page shows, with a deadline; none is a fixed sleep.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from server.config import StreamConfig
from server.deploy.entrance import Listen, Nodes, entrance_config
from tests.support.browser import WAIT_MS, require_browser, wait_for_new_frame, wait_for_text
from tests.support.nginx import nginx_serving
from tests.support.ports import free_port
from tests.test_deploy import require_nginx
from tests.test_entrance_redirects import entrance
from tests.test_fleet import all_cameras_link

require_browser()

pytestmark = pytest.mark.timeout(240)

#: Node 1 (never started) runs cam1 and cam3, node 2 runs cam2: a box of three cameras split in two.
PLACEMENT = (("cam1", "cam3"), ("cam2",))
#: What the entrance's map says of them.
MAP = {"nodes": [{"name": "node-1", "streams": ["cam1", "cam3"]}, {"name": "node-2", "streams": ["cam2"]}]}


def placeholder(node: str) -> str:
    return f'.fleet-placeholder[data-node="{node}"]'


@pytest.fixture
async def split_with_node_1_down(
    tmp_path: Path, start_server: Callable[..., Awaitable[TestClient]]
) -> AsyncIterator[str]:
    """The split's entrance (its base URL, ``/`` after it) with node 2 running cam2 and nothing at node 1's port."""
    node_2 = await start_server(StreamConfig("cam2", "scene:?seed=2"))
    assert node_2.port is not None
    async with entrance(tmp_path, PLACEMENT, [free_port(), node_2.port]) as base:
        yield f"{base}/"


async def test_the_entrance_of_a_split_says_which_node_runs_which_camera(split_with_node_1_down: str) -> None:
    """The entrance asks a node whether the request may see the cameras (one that answers: node 1 is down)."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{split_with_node_1_down}fleet.json") as response,
    ):
        assert response.status == 200
        assert response.content_type == "application/json"
        assert await response.json() == MAP


async def test_an_entrance_that_knows_no_cameras_has_no_map(tmp_path: Path) -> None:
    """deploy/'s Compose and Kubernetes entrances know their nodes, not their cameras: the page does without."""
    require_nginx()
    port = free_port()
    nodes = Nodes(("node-1", "node-2"), (f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"))
    text = entrance_config(Listen("127.0.0.1", port), nodes, "# no cameras given\n", tmp_path)
    conf = tmp_path / "nginx.conf"
    conf.write_text(("user root;\n" if os.geteuid() == 0 else "") + text)
    async with (
        nginx_serving(conf, f"http://127.0.0.1:{port}/") as base,
        aiohttp.ClientSession() as session,
        session.get(f"{base}fleet.json") as response,
    ):
        assert response.status == 404


async def test_a_node_down_when_all_cameras_opens_names_the_cameras_it_leaves_out(
    split_with_node_1_down: str, browser: Any, screenshots: Path
) -> None:
    # When All cameras is opened from the entrance's index while node 1 has never started:
    page = await browser.new_page()
    await page.goto(await all_cameras_link(split_with_node_1_down))

    # Then node 2's camera plays, and node 1's tile names the cameras not shown.
    tile = '.card[data-node="node-2"][data-stream="cam2"]'
    assert (await wait_for_new_frame(page, f"{tile} canvas"))["std"] > 10
    said = await wait_for_text(page, placeholder("node-1"), "node-1 does not answer: cam1, cam3 are not shown")
    assert "not answering" in said, "and still why"
    assert await page.inner_text('a[data-node="node-1"] .badge') == "unreachable"
    # The node's name and its badge apart, as read: "node-1 unreachable", not "node-1unreachable".
    name_to_badge = await page.evaluate(
        """() => { const link = document.querySelector('a[data-node="node-1"]');
             const range = document.createRange(); range.selectNodeContents(link.firstChild);
             const badge = link.querySelector('.badge').getBoundingClientRect();
             return badge.left - range.getBoundingClientRect().right; }"""
    )
    assert name_to_badge >= 3, f"the badge touches the node's name ({name_to_badge} px apart)"
    await page.screenshot(path=screenshots / "node-1-down.png")


async def test_a_listed_node_the_entrance_no_longer_has_says_to_drop_it(
    split_with_node_1_down: str, browser: Any
) -> None:
    # When a link saved before a re-split of three nodes into two opens All cameras:
    link = await all_cameras_link(split_with_node_1_down)
    assert link.endswith("?nodes=node-1,node-2")
    page = await browser.new_page()
    await page.goto(f"{link},node-3")

    # Then node 3 says it is no longer one of the entrance's nodes, and how to stop asking for it.
    await wait_for_text(
        page,
        placeholder("node-3"),
        "node-3 is not part of this entrance (removed by a re-split?): drop it from the address",
    )
    await wait_for_text(page, 'a[data-node="node-3"] .badge', "not in this entrance")
    await wait_for_text(page, placeholder("node-1"), "cam1, cam3")
    await page.wait_for_selector('a[data-node="node-2"] .badge.state-live', timeout=WAIT_MS)
