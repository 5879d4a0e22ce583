"""How often the pages ask the API while they wait: one question at a time, and seldom while no one answers.

The embed page asks for its stream every 2 s while the stream reconnects (the next attempt's time is
only in the API): it asked on a timer whether or not the last question was answered, so a slow server
had up to five on its way at once, and an old answer could overwrite a newer status message. The viewer
asks for its stream list once a second: it did so for the whole of an outage, though the server
answered nothing.

A real app serves the pages; their WebSocket is the test's (Playwright's stand-in) and the API's
answers are held or refused by the test where it says so. The pages run on Playwright's clock, moved on
by the test, so every count is of the page's own time.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.support.browser import WAIT_MS, Console, require_browser
from tests.support.polling import eventually
from tests.test_viewer_background import RECORD_STATS_REQUESTS, no_stats_unanswered, paused_page, stats_asked

require_browser()

Start = Callable[..., Awaitable[TestClient]]

pytestmark = pytest.mark.timeout(120)

POLL_MS = 2000  # web/embed.js
STATS_INTERVAL_MS = 1000  # web/app.js
STEP_MS = 500
WS = re.compile(r"/ws(\?|$)")
#: Records in ``window.asked`` each GET of stream r the page makes, and how many are unanswered in
#: ``window.unanswered`` (its peak in ``window.mostUnanswered``), as the page makes them.
RECORD_STREAM_REQUESTS = """{
  window.asked = 0;
  window.unanswered = 0;
  window.mostUnanswered = 0;
  const fetchOriginal = window.fetch;
  window.fetch = function (resource, options = {}) {
    if (!new URL(String(resource), location.href).pathname.endsWith("/api/streams/r")) {
      return fetchOriginal.call(this, resource, options);
    }
    window.asked += 1;
    window.unanswered += 1;
    window.mostUnanswered = Math.max(window.mostUnanswered, window.unanswered);
    return fetchOriginal.call(this, resource, options).finally(() => { window.unanswered -= 1; });
  };
}"""
#: Every reason the embed's panel has given, in ``window.reasons``, as it gave it.
RECORD_REASONS = """{
  window.reasons = [];
  new MutationObserver(() => {
    const reason = document.querySelector(".status-reason")?.textContent;
    if (reason && reason !== window.reasons.at(-1)) window.reasons.push(reason);
  }).observe(document, { subtree: true, childList: true, characterData: true });
}"""


def hello(state: str, error: str) -> str:
    stream = {"id": "r", "state": state, "error": error, "next_attempt_at": None}
    message = {"type": "hello", "v": 1, "keepalive_s": 5, "socket": "s1", "streams": [stream], "inference": None}
    return json.dumps(message)


def answer(error: str, next_attempt_at: float) -> str:
    return json.dumps({"id": "r", "state": "reconnecting", "error": error, "next_attempt_at": next_attempt_at})


class HeldAnswers:
    """Holds each GET of stream r the page makes, in ``held``, until the test answers it."""

    def __init__(self) -> None:
        self.held: list[Any] = []

    async def route(self, route: Any) -> None:
        self.held.append(route)

    async def nth(self, n: int) -> Any:
        """The ``n``-th request held (from 1), once the page made it."""
        return await eventually(lambda: self._held(n), WAIT_MS / 1000, f"request {n} of the stream")

    async def _held(self, n: int) -> Any:
        return self.held[n - 1] if len(self.held) >= n else None


async def embed_of_reconnecting_stream(start_server: Start, browser: Any, answers: HeldAnswers) -> tuple[Any, Any]:
    """The embed of stream r on a paused clock, its socket the test's, which said r reconnects; its
    questions to the API held by ``answers``. The page and the socket."""
    client = await start_server()
    page = await paused_page(browser, RECORD_STREAM_REQUESTS, RECORD_REASONS)
    opened: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    await page.route_web_socket(WS, lambda socket: opened.done() or opened.set_result(socket))
    await page.route("**/api/streams/r", answers.route)
    await page.goto(str(client.make_url("/embed/r")))
    socket = await asyncio.wait_for(opened, WAIT_MS / 1000)
    socket.send(hello("reconnecting", "the camera went away"))
    await page.wait_for_function("() => window.reasons.includes('the camera went away')", timeout=WAIT_MS)
    return page, socket


async def test_an_embed_asks_for_its_reconnecting_stream_one_question_at_a_time(
    start_server: Start, browser: Any
) -> None:
    answers = HeldAnswers()
    page, _socket = await embed_of_reconnecting_stream(start_server, browser, answers)
    console = Console(page)

    await page.clock.run_for(POLL_MS)
    first = await answers.nth(1)
    for _ in range(4):  # unanswered for four polls' time: none more is asked meanwhile
        await page.clock.run_for(POLL_MS)
    assert await page.evaluate("() => [window.asked, window.mostUnanswered]") == [1, 1]

    at = round(time.time()) + 30
    await first.fulfill(status=200, content_type="application/json", body=answer("the camera went away", at))
    await page.wait_for_selector(f".status-countdown[data-at='{at}']", state="attached", timeout=WAIT_MS)
    await page.clock.run_for(POLL_MS - 1)
    assert await page.evaluate("() => window.asked") == 1, "the next one is POLL_MS after the answer"
    await page.clock.run_for(1)
    assert await page.evaluate("() => window.asked") == 2
    await (await answers.nth(2)).fulfill(status=200, content_type="application/json", body=answer("gone", at))
    assert console.errors == []


async def test_an_answer_asked_before_the_latest_status_message_does_not_overwrite_it(
    start_server: Start, browser: Any
) -> None:
    answers = HeldAnswers()
    page, socket = await embed_of_reconnecting_stream(start_server, browser, answers)
    finished: list[str] = []
    page.on("requestfinished", lambda request: finished.append(request.url))

    await page.clock.run_for(POLL_MS)
    first = await answers.nth(1)
    # The socket tells of a newer state while the question is on its way.
    socket.send(json.dumps({"type": "status", "v": 1, "stream": "r", "state": "reconnecting", "error": "newer"}))
    await page.wait_for_function("() => window.reasons.at(-1) === 'newer'", timeout=WAIT_MS)
    await first.fulfill(status=200, content_type="application/json", body=answer("older", time.time() + 30))

    async def received() -> bool:
        return len(finished) >= 1

    await eventually(received, WAIT_MS / 1000, "the older answer received")

    # Asked again for the newer state's next attempt: that answer is shown.
    at = round(time.time()) + 60
    await (await answers.nth(2)).fulfill(status=200, content_type="application/json", body=answer("newer", at))
    await page.wait_for_selector(f".status-countdown[data-at='{at}']", state="attached", timeout=WAIT_MS)
    reasons = await page.evaluate("() => window.reasons")
    assert reasons == ["the camera went away", "newer"], "the older answer was never shown"


#: Notes the page's time (Playwright's clock) as each of its WebSockets is made.
RECORD_SOCKETS = """{
  window.socketTimes = [];
  window.WebSocket = class extends WebSocket {
    constructor(...args) {
      super(...args);
      window.socketTimes.push(performance.now());
    }
  };
}"""


async def test_the_viewer_asks_for_stats_only_as_often_as_it_tries_its_socket_while_segcast_does_not_answer(
    start_server: Start, browser: Any
) -> None:
    """While the socket is down and the API does not answer, the stats poll waits: each socket's loss
    asks the API why (at the connection's growing backoff), and that is all. Once the API answers while
    the socket is still refused (a proxy that drops the upgrade), the stats come once a second again."""
    client = await start_server()
    # Each socket's wait halfway between the shortest and the longest (web/connection.js): the same every run.
    page = await paused_page(browser, RECORD_STATS_REQUESTS, "Math.random = () => 0.5;")
    console = Console(page)

    async def refuse(socket: Any) -> None:
        await socket.close(code=1011, reason="refused for the test")

    await page.route_web_socket(WS, refuse)
    await page.add_init_script(RECORD_SOCKETS)  # after Playwright's own WebSocket, which it wraps
    api_answers = False

    async def streams(route: Any) -> None:
        await (route.continue_() if api_answers else route.abort("connectionrefused"))

    await page.route("**/api/streams", streams)
    await page.goto(str(client.make_url("/")))

    async def run_clock(ms: int) -> None:
        for _ in range(ms // STEP_MS):
            await page.clock.run_for(STEP_MS)
            await no_stats_unanswered(page)

    outage_ms = 30_000
    await run_clock(outage_ms)
    asked = len(await stats_asked(page))
    sockets = len(await page.evaluate("() => window.socketTimes"))
    # One poll before the first answer failed, and one question for each socket lost.
    assert asked <= sockets + 2, f"{asked} stream lists asked for over {sockets} sockets in {outage_ms / 1000} s"
    assert 4 <= sockets < outage_ms / STATS_INTERVAL_MS / 2, f"the sockets back off: {sockets}"

    api_answers = True
    await run_clock(5_000 + STEP_MS)  # the next socket's loss asks, and is answered
    before = len(await stats_asked(page))
    await run_clock(10 * STATS_INTERVAL_MS)
    assert len(await stats_asked(page)) - before >= 9, "the stats once a second while the API answers"
    assert [error for error in console.errors if "net::ERR_" not in error] == []
