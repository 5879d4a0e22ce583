"""How often the viewer calls segcast back when its WebSockets keep closing, and what a closed
Connection leaves behind.

A server or a proxy that takes each socket and closes it at once (a client over a limit, one too slow,
a sender that fails) was called back every half second for ever: the waits started again from the
shortest as each socket opened. They do only once a socket has stayed up a while after its hello, and
a close that says "try again later" (1013) or "over a limit" (1008) waits a few seconds at least.
Each wait is drawn at random between the shortest and a longest that doubles ("full jitter"): pages
that lost the server together call back spread out, not all within ~100 ms (a wait shortened by a fifth
at most). The tests fix the page's Math.random, so each wait is known exactly.

A real app serves the page and its API; its WebSocket is Playwright's stand-in, which says hello and
closes as each test wants. The page runs on Playwright's clock, moved on in small steps: each socket's
time is the page's own, so the waits are measured, not guessed from a wall clock.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.support.browser import document_listeners, require_browser
from tests.support.polling import eventually
from tests.test_viewer_background import paused_page

require_browser()

Start = Callable[..., Awaitable[TestClient]]

pytestmark = pytest.mark.timeout(120)

# web/connection.js
RECONNECT_MIN_MS = 500
RECONNECT_FIRST_MAX_MS = 1000
RECONNECT_MAX_MS = 5000
HEALTHY_AFTER_HELLO_MS = 5000
TRY_LATER_MS = 5000
LONGEST_DRAW = 0.999  # what the page's Math.random gives where a test wants the longest waits
STEP_MS = 100  # how far the page's clock moves at a time: each measured wait is within a step of the true one
WINDOW_MS = 20_000
HELLO = {"type": "hello", "v": 1, "keepalive_s": 5, "socket": "s1", "streams": [], "inference": None}
#: Notes the page's time (Playwright's clock) as each WebSocket is made, and as each closes.
RECORD_SOCKETS = """{
  window.socketTimes = [];
  window.closeTimes = [];
  window.WebSocket = class extends WebSocket {
    constructor(...args) {
      super(...args);
      window.socketTimes.push(performance.now());
      this.addEventListener("close", () => window.closeTimes.push(performance.now()));
    }
  };
}"""


def fixed_random(draw: float) -> str:
    """An init script that makes the page's Math.random give ``draw``, every time."""
    return f"Math.random = () => {draw};"


#: Makes the page's Math.random give (k + 0.5) / n at its k-th call, round and round: n draws spread
#: evenly over [0, 1), whoever makes them.
SPREAD_RANDOM = """(n) => {
  let calls = 0;
  Math.random = () => ((calls++ % n) + 0.5) / n;
}"""


class ClosingServer:
    """Stands in for segcast's /ws: says hello on each socket, then closes it at once with ``code``,
    unless told to keep the next one open (``keep_next``); those kept are in ``kept``."""

    def __init__(self, code: int) -> None:
        self.code = code
        self.keep_next = False
        self.kept: list[Any] = []

    async def route(self, socket: Any) -> None:
        socket.send(json.dumps(HELLO))
        if self.keep_next:
            self.keep_next = False
            self.kept.append(socket)
            return
        await socket.close(code=self.code, reason="closed for the test")


async def viewer_behind(start_server: Start, browser: Any, server: ClosingServer, draw: float = LONGEST_DRAW) -> Any:
    """The viewer's grid on a paused clock, its WebSocket answered by ``server``, Math.random giving
    ``draw``; its first socket closed."""
    client = await start_server()
    page = await paused_page(browser, fixed_random(draw))
    await page.route_web_socket(re.compile(r"/ws(\?|$)"), server.route)
    await page.add_init_script(RECORD_SOCKETS)  # after Playwright's own WebSocket, which it wraps
    await page.goto(str(client.make_url("/")))
    await settled(page, server)
    return page


async def settled(page: Any, server: ClosingServer) -> int:
    """Wait until every socket made so far is closed, but those kept open; how many were made."""

    async def made_and_closed() -> int | None:
        made, closed = await page.evaluate("() => [window.socketTimes.length, window.closeTimes.length]")
        return made if made > 0 and closed + len(server.kept) >= made else None

    return await eventually(made_and_closed, what="the sockets made to be closed")


async def run_clock(page: Any, server: ClosingServer, ms: int) -> None:
    """Move the page's clock on by ``ms``, a step at a time, each socket closed before the next step."""
    for _ in range(ms // STEP_MS):
        await page.clock.run_for(STEP_MS)
        await settled(page, server)


async def waits_ms(page: Any) -> list[float]:
    """The page's time from each socket's close to the next socket it made."""
    made, closed = await page.evaluate("() => [window.socketTimes, window.closeTimes]")
    return [later - close for close, later in zip(closed, made[1:], strict=False)]


def longest_wait_ms(attempt: int) -> float:
    """The most the wait before the socket after ``attempt`` sockets lost in a row may be, none of them healthy."""
    return min(RECONNECT_FIRST_MAX_MS * 2**attempt, RECONNECT_MAX_MS)


def drawn_wait_ms(longest: float, draw: float) -> float:
    """The wait Math.random's ``draw`` makes of one that may be from the shortest to ``longest``."""
    return RECONNECT_MIN_MS + draw * (longest - RECONNECT_MIN_MS)


@pytest.mark.parametrize("draw", [0.0, LONGEST_DRAW], ids=["shortest", "longest"])
async def test_sockets_closed_after_their_hello_are_called_back_less_and_less_often(
    start_server: Start, browser: Any, draw: float
) -> None:
    """1011, as a server whose sender failed sends: each socket opened and said hello, which reset the
    wait, and the page called back every half second for ever (40 sockets in 20 s). Each wait is drawn
    between the shortest and a longest that doubles; the shortest stays 0.5 s."""
    server = ClosingServer(1011)
    page = await viewer_behind(start_server, browser, server, draw)
    await run_clock(page, server, WINDOW_MS)

    waits = await waits_ms(page)
    assert len(waits) >= 4, f"waits {waits}"
    for attempt, wait in enumerate(waits):
        assert abs(wait - drawn_wait_ms(longest_wait_ms(attempt), draw)) <= STEP_MS, f"waits {waits}"
    if draw == LONGEST_DRAW:
        assert waits[:4] == sorted(waits[:4]) and waits[3] > 4 * waits[0], f"the waits grow: {waits}"
        assert len(waits) + 1 <= 8, f"{len(waits) + 1} sockets in {WINDOW_MS / 1000} s"


async def test_the_sockets_of_pages_that_lost_the_server_together_are_made_again_spread_out(
    start_server: Start, browser: Any
) -> None:
    """Tabs of a dashboard lose their sockets at the same moment (a server restart): each wait was the
    longest shortened by a fifth at most, so they all called back within ~100 ms of each other. Given
    draws spread over [0, 1), their first waits spread over the whole of the first one's range."""
    tabs = 8
    client = await start_server()
    page = await paused_page(browser)
    server = ClosingServer(1011)
    await page.route_web_socket(re.compile(r"/ws(\?|$)"), server.route)
    await page.add_init_script(RECORD_SOCKETS)
    await page.goto(str(client.make_url("/static/publish.html")))  # a page that makes no Connection of its own
    await page.evaluate(SPREAD_RANDOM, tabs)
    await page.evaluate(
        """async (tabs) => {
          const { Connection } = await import("./connection.js");
          for (let i = 0; i < tabs; i += 1) new Connection({});
        }""",
        tabs,
    )
    assert await settled(page, server) == tabs  # all lost at the same moment of the paused clock
    await run_clock(page, server, RECONNECT_FIRST_MAX_MS + STEP_MS)

    made, closed = await page.evaluate("() => [window.socketTimes, window.closeTimes]")
    assert len(set(closed[:tabs])) == 1, f"closed together: {closed}"
    waits = sorted(later - closed[0] for later in made[tabs : 2 * tabs])
    assert len(waits) == tabs, f"each made its next socket: {made}"
    spread = (RECONNECT_FIRST_MAX_MS - RECONNECT_MIN_MS) / 2
    assert waits[-1] - waits[0] >= spread, f"the first waits spread over at least {spread} ms: {waits}"
    assert waits[0] >= RECONNECT_MIN_MS and waits[-1] <= RECONNECT_FIRST_MAX_MS, f"waits {waits}"


@pytest.mark.parametrize("code", [1008, 1013], ids=["over-a-limit", "try-again-later"])
async def test_a_close_that_says_try_again_later_waits_a_few_seconds(
    start_server: Start, browser: Any, code: int
) -> None:
    server = ClosingServer(code)
    page = await viewer_behind(start_server, browser, server)
    await run_clock(page, server, WINDOW_MS)

    waits = await waits_ms(page)
    assert waits, "the page called back"
    assert all(wait >= TRY_LATER_MS - STEP_MS for wait in waits), f"waits {waits}"
    assert len(waits) + 1 <= WINDOW_MS // TRY_LATER_MS + 1


async def test_only_a_socket_healthy_for_a_while_after_its_hello_has_the_next_one_made_soon(
    start_server: Start, browser: Any
) -> None:
    server = ClosingServer(1011)
    page = await viewer_behind(start_server, browser, server)
    await run_clock(page, server, 8_000)  # four sockets lost in a row: the wait is the longest

    # One kept open, but closed before it is healthy: the wait after it stays the longest.
    await keep_next_open_for(page, server, HEALTHY_AFTER_HELLO_MS - 2 * STEP_MS)
    before = len(await waits_ms(page))
    await run_clock(page, server, RECONNECT_MAX_MS + STEP_MS)
    waits = await waits_ms(page)
    longest = drawn_wait_ms(RECONNECT_MAX_MS, LONGEST_DRAW)
    assert len(waits) == before + 1 and waits[-1] >= longest - STEP_MS, f"waits {waits}"

    # One kept open until it is healthy: the next socket is made after the shortest wait.
    await keep_next_open_for(page, server, HEALTHY_AFTER_HELLO_MS + STEP_MS)
    before = len(await waits_ms(page))
    await run_clock(page, server, RECONNECT_FIRST_MAX_MS + STEP_MS)
    waits = await waits_ms(page)
    first = drawn_wait_ms(RECONNECT_FIRST_MAX_MS, LONGEST_DRAW)
    assert len(waits) == before + 1 and waits[-1] <= first + STEP_MS, f"waits {waits}"


async def keep_next_open_for(page: Any, server: ClosingServer, ms: int) -> None:
    """Keep the next socket the page makes open for ``ms`` of its clock, then close it."""
    server.keep_next = True
    made = len(await page.evaluate("() => window.socketTimes"))
    for _ in range(RECONNECT_MAX_MS // STEP_MS + 1):
        if server.kept:
            break
        await page.clock.run_for(STEP_MS)
        await settled(page, server)
    assert len(server.kept) == 1 and await settled(page, server) == made + 1, "the next socket was made"
    await run_clock(page, server, ms)
    await server.kept.pop().close(code=1011, reason="closed for the test")
    await settled(page, server)


async def test_a_closed_connection_leaves_no_listener_behind(start_server: Start, browser: Any) -> None:
    """The publish page makes a Connection for each camera it publishes: each left its visibilitychange
    listener on the document after close()."""
    client = await start_server()
    page = await browser.new_page()
    await page.goto(str(client.make_url("/static/publish.html")))
    before = await document_listeners(page)
    await page.evaluate(
        """async () => {
          const { Connection } = await import("./connection.js");
          for (let i = 0; i < 5; i += 1) new Connection({}).close();
        }"""
    )
    assert await document_listeners(page) == before
