"""All cameras (web/fleet.html): every node's streams on one page, through the scale-out entrance.

A real nginx on deploy/compose/nginx.conf (as test_deploy runs it) in front of two real segcast apps,
each with a generated scene, and a real headless Chromium opening the page the entrance's index links
to. Every wait is on something the page shows, with a deadline; none is a fixed sleep.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from server.app import create_app
from server.config import Settings, StreamConfig
from server.inference.models import BUNDLED_MODEL
from tests.support.browser import (
    WAIT_MS,
    open_url,
    require_browser,
    wait_for_changed_picture,
    wait_for_new_frame,
    wait_for_text,
)
from tests.support.prefix_proxy import PrefixProxy
from tests.test_deploy import COMPOSE_NGINX, nginx_routes, require_nginx, running_nginx
from tests.test_deploy_timeouts import HungNode

require_browser()

Start = Callable[..., Awaitable[TestClient]]

pytestmark = pytest.mark.timeout(240)

#: Both nodes have a camera of the same name, as nodes of one deployment may: tiles tell them apart.
STREAM = "cam"
SEEDS = {"node-1": 1, "node-2": 2}
#: A viewer token both nodes accept; with viewer tokens only, each node signs with a random key of its own.
VIEWER = "viewer-token-of-the-fleet"
#: What a tile's caption says of its stream's rate while its node is down.
RATE_UNKNOWN = "—"
#: For `page.wait_for_function`: whether the tile at the selector shows a rate above 0 fps.
SHOWS_A_RATE = """(card) => {
  const rate = /([\\d.]+) fps/.exec(document.querySelector(card + ' small')?.textContent ?? '');
  return rate !== null && Number(rate[1]) > 0;
}"""
#: Records every text the nodes' badges show, in the page's ``badgesShown``.
RECORD_BADGES = """{
  window.badgesShown = [];
  new MutationObserver(() => {
    for (const badge of document.querySelectorAll('#fleet-nodes .badge')) {
      window.badgesShown.push(`${badge.parentElement.dataset.node}: ${badge.textContent}`);
    }
  }).observe(document, { subtree: true, childList: true, characterData: true });
}"""
#: Counts the token dialogs the page opens.
COUNT_DIALOGS = """{
  window.dialogsShown = 0;
  const showModal = HTMLDialogElement.prototype.showModal;
  HTMLDialogElement.prototype.showModal = function () { window.dialogsShown += 1; return showModal.call(this); };
}"""


def tile(node: str) -> str:
    return f'.card[data-node="{node}"][data-stream="{STREAM}"]'


def node_stream(node: str) -> StreamConfig:
    return StreamConfig(STREAM, f"scene:?seed={SEEDS[node]}")


@dataclass(frozen=True)
class Fleet:
    entrance: str  # the entrance's own address, with a trailing slash
    nodes: dict[str, TestClient]  # by node name


@pytest.fixture
async def start_fleet(start_server: Start, tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[Fleet]]]:
    """Starts two segcast nodes (``overrides`` are their settings), each with a live scene, behind the
    Compose entrance."""
    require_nginx()
    async with AsyncExitStack() as stack:

        async def start(**overrides: object) -> Fleet:
            nodes, targets = {}, {}
            for prefix, target in nginx_routes(COMPOSE_NGINX).items():
                name = prefix.strip("/")
                nodes[name] = await start_server(node_stream(name), **overrides)
                targets[target] = f"127.0.0.1:{nodes[name].port}"
            assert set(nodes) == set(SEEDS), "the test expects the Compose entrance's two nodes"
            entrance = await stack.enter_async_context(running_nginx(COMPOSE_NGINX, tmp_path, targets))
            return Fleet(entrance, nodes)

        yield start


async def all_cameras_link(entrance: str) -> str:
    """Where the entrance's index sends a person for All cameras."""
    async with aiohttp.ClientSession() as session, session.get(entrance) as response:
        found = re.search(r'href="([^"]+)">All cameras<', await response.text())
    assert found, "the entrance's index links to All cameras"
    return entrance + found.group(1)


async def test_all_cameras_plays_every_nodes_streams_and_a_node_that_stops_is_unreachable_alone(
    start_fleet: Callable[..., Awaitable[Fleet]],
    browser: Any,
    screenshots: Path,
    aiohttp_server: Callable[..., Awaitable[TestServer]],
) -> None:
    fleet = await start_fleet()
    page, console = await open_url(browser, await all_cameras_link(fleet.entrance))

    # Given both nodes up: each one's camera plays in its own tile, named by node and stream.
    first = {node: await wait_for_new_frame(page, f"{tile(node)} canvas") for node in fleet.nodes}
    for node in fleet.nodes:
        assert first[node]["std"] > 10, f"{node}'s tile shows a picture"
        await wait_for_changed_picture(page, f"{tile(node)} canvas", first[node])
        caption = await page.inner_text(f"{tile(node)} .card-caption")
        assert node in caption and STREAM in caption
        # Each tile opens its own node's viewer of the stream, behind the same entrance.
        assert await page.get_attribute(tile(node), "href") == f"{fleet.entrance}{node}/#/stream/{STREAM}"
    assert first["node-1"]["hash"] != first["node-2"]["hash"], "two scenes, not one shown twice"
    await page.wait_for_selector('a[data-node="node-2"] .badge.state-live', timeout=WAIT_MS)
    assert not console.errors
    await page.screenshot(path=screenshots / "both-nodes.png")

    # When node-2 stops: its tile says it is unreachable, and node-1's goes on playing.
    port = fleet.nodes["node-2"].port
    await fleet.nodes["node-2"].close()
    await wait_for_text(page, f"{tile('node-2')} .status-panel", "node-2: unreachable")
    assert await page.inner_text(f"{tile('node-2')} .badge") == "unreachable"
    assert await page.inner_text(f"{tile('node-2')} small") == RATE_UNKNOWN, "no rate read as live"
    assert await page.inner_text('a[data-node="node-2"] .badge') == "unreachable"
    playing = await wait_for_new_frame(page, f"{tile('node-1')} canvas")
    await wait_for_changed_picture(page, f"{tile('node-1')} canvas", playing)
    assert await page.is_hidden(f"{tile('node-1')} .status-panel")
    await page.screenshot(path=screenshots / "node-2-stopped.png")

    # When node-2 is back at its address: its tile plays again by itself.
    stopped = await page.get_attribute(f"{tile('node-2')} canvas", "data-seq")
    settings = Settings(model=str(BUNDLED_MODEL), streams=(node_stream("node-2"),))
    await aiohttp_server(create_app(settings), port=port)
    await wait_for_new_frame(page, f"{tile('node-2')} canvas", stopped)
    assert await page.is_hidden(f"{tile('node-2')} .status-panel")
    await page.wait_for_selector('a[data-node="node-2"] .badge.state-live', timeout=WAIT_MS)
    await page.wait_for_function(SHOWS_A_RATE, arg=tile("node-2"), timeout=WAIT_MS)

    # And following node-1's tile opens node-1's own viewer on that stream.
    await page.click(tile("node-1"))
    await page.wait_for_url(f"{fleet.entrance}node-1/#/stream/{STREAM}", timeout=WAIT_MS)
    assert (await wait_for_new_frame(page, "#video"))["std"] > 10
    assert await page.inner_text("#stream-title") == STREAM


async def test_a_fleet_tile_whose_camera_saw_someone_enter_a_zone_is_marked_with_the_event(
    start_fleet: Callable[..., Awaitable[Fleet]], browser: Any
) -> None:
    """All cameras marks a tile whose camera had a zone or line event, as one node's grid does: its page
    dropped every event."""
    fleet = await start_fleet()
    page, console = await open_url(browser, await all_cameras_link(fleet.entrance))
    await wait_for_new_frame(page, f"{tile('node-2')} canvas")

    whole = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]
    zone = {"zones": [{"name": "yard", "points": whole, "units": "fraction"}]}
    assert (await fleet.nodes["node-2"].patch(f"/api/streams/{STREAM}", json=zone)).status == 200

    await page.wait_for_function(
        "(card) => document.querySelector(card)?.classList.contains('has-event') &&"
        " document.querySelector(card + ' .card-event').textContent.includes('entered yard')",
        arg=tile("node-2"),
        timeout=WAIT_MS,
    )
    assert not await page.eval_on_selector(tile("node-1"), "(card) => card.classList.contains('has-event')")
    assert not console.errors


async def test_all_cameras_shows_the_rate_each_node_measures_now_not_only_at_connecting(
    start_fleet: Callable[..., Awaitable[Fleet]], browser: Any
) -> None:
    """Each tile's rate came only from its node's hello: frozen from then on, and never shown for a
    stream added later, whose socket message says only that it was added."""
    fleet = await start_fleet()
    page, console = await open_url(browser, await all_cameras_link(fleet.entrance))
    await page.wait_for_selector('a[data-node="node-1"] .badge.state-live', timeout=WAIT_MS)

    # When node-1 is given another camera while the page is connected to it:
    added = await fleet.nodes["node-1"].post("/api/streams", json={"id": "yard", "uri": "scene:?seed=3"})
    assert added.status == 201, await added.text()
    yard = '.card[data-node="node-1"][data-stream="yard"]'
    await wait_for_new_frame(page, f"{yard} canvas")

    # Then its tile comes to show the rate node-1 measures for it, as node-1's API lists it.
    await page.wait_for_function(SHOWS_A_RATE, arg=yard, timeout=WAIT_MS)
    assert not console.errors


async def test_all_cameras_asks_for_a_token_once_and_plays_every_node_with_it(
    start_fleet: Callable[..., Awaitable[Fleet]], browser: Any
) -> None:
    fleet = await start_fleet(viewer_tokens=(VIEWER,))
    page = await browser.new_page()
    await page.add_init_script(COUNT_DIALOGS)
    await page.goto(await all_cameras_link(fleet.entrance))

    dialog = page.locator("#token-dialog[open]")
    await dialog.wait_for(timeout=WAIT_MS)
    await dialog.locator("input[name=token]").fill(VIEWER)
    await dialog.locator("button[type=submit]").click()

    for node in fleet.nodes:
        assert (await wait_for_new_frame(page, f"{tile(node)} canvas"))["std"] > 10, f"{node} plays with the token"
    assert await page.evaluate("window.dialogsShown") == 1, "one question for every node"


async def test_all_cameras_opens_and_plays_the_other_node_while_the_first_is_down(
    start_fleet: Callable[..., Awaitable[Fleet]], browser: Any
) -> None:
    # Given node-1 stopped before anyone opens All cameras (the page is served by a node that answers).
    fleet = await start_fleet()
    await fleet.nodes["node-1"].close()

    # When the page is opened from the entrance's index: node-2's camera plays, node-1 says it is down.
    page = await browser.new_page()
    response = await page.goto(await all_cameras_link(fleet.entrance))
    assert response is not None and response.status == 200
    playing = await wait_for_new_frame(page, f"{tile('node-2')} canvas")
    assert playing["std"] > 10
    await page.wait_for_selector('a[data-node="node-2"] .badge.state-live', timeout=WAIT_MS)
    await wait_for_text(page, 'a[data-node="node-1"] .badge', "unreachable")


async def test_a_node_that_accepts_and_never_answers_holds_back_no_other_nodes_live_connection(
    start_server: Start, browser: Any, tmp_path: Path
) -> None:
    """A browser opens one WebSocket at a time per host, and every node is behind the entrance's one:
    a handshake to a frozen node-1 (SIGSTOP: it accepts, never answers) held node-2's back until given
    up on, node-2's tile said its live connection was refused, and it played late."""
    require_nginx()
    (frozen, frozen_at), (healthy, healthy_at) = nginx_routes(COMPOSE_NGINX).items()
    assert (frozen, healthy) == ("/node-1/", "/node-2/"), "the frozen node is listed first"
    node_2 = await start_server(node_stream("node-2"))
    async with HungNode().serving() as hung_address:
        targets = {frozen_at: hung_address, healthy_at: f"127.0.0.1:{node_2.port}"}
        async with running_nginx(COMPOSE_NGINX, tmp_path, targets) as entrance:
            page = await browser.new_page()
            await page.add_init_script(RECORD_BADGES)
            sockets: list[str] = []
            page.on("websocket", lambda socket: sockets.append(socket.url))
            await page.goto(await all_cameras_link(entrance))

            # node-2 plays, and no live connection was tried where no answer came, to be held back behind.
            assert (await wait_for_new_frame(page, f"{tile('node-2')} canvas"))["std"] > 10
            assert [url for url in sockets if "/node-1/" in url] == []
            # node-1 says it is not answering.
            await wait_for_text(page, 'a[data-node="node-1"] .badge', "unreachable")
            await wait_for_text(page, '.fleet-placeholder[data-node="node-1"]', "not answering")
            playing = await wait_for_new_frame(page, f"{tile('node-2')} canvas")
            await wait_for_changed_picture(page, f"{tile('node-2')} canvas", playing)
            assert await page.inner_text('a[data-node="node-2"] .badge') == "connected"
            assert [url for url in sockets if "/node-1/" in url] == []
            assert "node-2: live connection refused" not in await page.evaluate("window.badgesShown")
            await page.close()


async def test_all_cameras_opened_without_its_node_list_says_how_to_give_one(
    start_fleet: Callable[..., Awaitable[Fleet]], browser: Any
) -> None:
    """The entrance's All cameras folder opened without ``?nodes=`` showed a node named "all", which
    no node is: its tile said it was unreachable, and nothing said what was missing."""
    fleet = await start_fleet()
    link = await all_cameras_link(fleet.entrance)
    page = await browser.new_page()
    await page.goto(link.split("?")[0])
    await wait_for_text(page, "#fleet-error", "?nodes=node-1,node-2")
    assert await page.locator('a[data-node="all"]').count() == 0


async def test_all_cameras_given_a_node_twice_shows_it_once(
    start_fleet: Callable[..., Awaitable[Fleet]], browser: Any
) -> None:
    """A node named twice in ``?nodes=`` (a link edited by hand) is one node: one link in the top bar, one
    group of tiles, each of its cameras once, not every picture twice."""
    fleet = await start_fleet()
    link = await all_cameras_link(fleet.entrance)
    page, console = await open_url(browser, link.split("?")[0] + "?nodes=node-1,node-1")
    await wait_for_new_frame(page, f"{tile('node-1')} canvas")
    assert await page.locator('#fleet-nodes a[data-node="node-1"]').count() == 1
    assert await page.locator('.fleet-node[data-node="node-1"]').count() == 1
    assert await page.locator(tile("node-1")).count() == 1
    assert not console.errors


#: A node and a camera named as a site names them: together longer than a phone's tile is wide.
LONG_NODE = "warehouse-north-building-2"
LONG_STREAM = "loading-dock-camera-east-entrance"
#: Where a tile's caption lays its parts out, in the page's CSS pixels: the card's box, the badge's,
#: the node name's and the id's (each with its full width: ``scroll``), and whether the caption overflows.
CAPTION_LAYOUT = """(card) => {
  const tile = document.querySelector(card);
  const box = (selector) => {
    const element = selector === null ? tile : tile.querySelector(selector);
    const { left, right, width } = element.getBoundingClientRect();
    return { left, right, width, scroll: element.scrollWidth, title: element.title };
  };
  const caption = tile.querySelector('.card-caption');
  return {
    card: box(null), badge: box('.card-caption .badge'), node: box('.card-node'), id: box('.stream-id'),
    overflow: caption.scrollWidth - caption.clientWidth,
  };
}"""


@pytest.mark.parametrize("width", [375, 600, 800])
async def test_a_tiles_state_badge_stays_inside_it_however_long_its_node_and_stream_names(
    start_server: Start, browser: Any, screenshots: Path, width: int
) -> None:
    """A long node name and stream id pushed the badge out of the tile, which cut it off: nothing said
    whether the camera was live. The names give way instead, cut to an ellipsis.

    The Compose entrance names its nodes node-1 and node-2: here one node is served at a folder of a
    long name by a prefix proxy, as an entrance would, and All cameras opened there shows that node."""
    # Given a node of a long name (its folder of the entrance) with a camera of a long id and one of a short id.
    node = await start_server(StreamConfig(LONG_STREAM, "scene:?seed=1"), StreamConfig(STREAM, "scene:?seed=2"))
    proxy = PrefixProxy(node.make_url("/"), f"/{LONG_NODE}")
    entrance = await proxy.start()
    try:
        # When All cameras shows it at a phone's, a tablet's and a small window's width:
        page, console = await open_url(browser, str(entrance / "static/fleet.html"), {"width": width, "height": 900})
        for stream in (LONG_STREAM, STREAM):
            card = f'.card[data-node="{LONG_NODE}"][data-stream="{stream}"]'
            await page.wait_for_selector(f"{card} .badge.state-live", timeout=WAIT_MS)
            layout = await page.evaluate(CAPTION_LAYOUT, card)

            # Then each tile's badge is wholly inside it, and its caption overflows nothing.
            tile, badge = layout["card"], layout["badge"]
            assert tile["left"] <= badge["left"] and badge["right"] <= tile["right"], (stream, layout)
            assert layout["overflow"] <= 0, (stream, layout)
        # And where both are too long, the node name gives way first: an id cut short is no narrower than it.
        layout = await page.evaluate(CAPTION_LAYOUT, f'.card[data-node="{LONG_NODE}"][data-stream="{LONG_STREAM}"]')
        # (less a pixel: a box 321.8 px wide holds a text whose rounded scrollWidth is 322)
        assert layout["id"]["width"] >= min(layout["node"]["width"], layout["id"]["scroll"]) - 1, layout
        assert layout["id"]["title"] == LONG_STREAM and layout["node"]["title"] == LONG_NODE, "cut short, said whole"
        await page.screenshot(path=screenshots / f"long-names-{width}.png")
        assert not console.errors
    finally:
        await proxy.close()
