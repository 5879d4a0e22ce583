"""An event without a time a date can be made of is skipped as it arrives, not thrown at every render.

The stream view's event list (web/events.js) dates each event it shows: one without a valid ``time``
threw RangeError in toISOString on every render, and the list froze until the event scrolled off.
The list is driven directly in a page the real app serves, as the stream view drives it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.support.browser import Console, require_browser

require_browser()

Start = Callable[..., Awaitable[TestClient]]

pytestmark = pytest.mark.timeout(60)

SKIPPED = "segcast: an event without a valid time was skipped:"
#: Adds to a new EventList of stream cam a zone_enter event with each of ``times`` in turn (id 1, 2, ...);
#: what each add threw, and the texts of the list's items.
ADD_EVENTS = """async (times) => {
  const { EventList } = await import("./events.js");
  const list = document.createElement("ol");
  const empty = document.createElement("p");
  document.body.append(list, empty);
  const events = new EventList(list, empty);
  events.open("cam");
  const thrown = [];
  times.forEach((time, i) => {
    const event = { type: "zone_enter", stream: "cam", id: i + 1, class: "person", zone: "door", time };
    if (time === "missing") delete event.time;
    try {
      events.add(event);
    } catch (error) {
      thrown.push(String(error));
    }
  });
  return { thrown, items: [...list.children].map((item) => item.textContent) };
}"""


async def test_events_without_a_valid_time_are_skipped_and_the_others_shown(start_server: Start, browser: Any) -> None:
    client = await start_server()
    page = await browser.new_page()
    console = Console(page)
    warnings: list[str] = []
    page.on("console", lambda message: message.type == "warning" and warnings.append(message.text))
    await page.goto(str(client.make_url("/static/publish.html")))  # a page of the viewer's modules

    result = await page.evaluate(ADD_EVENTS, ["missing", "noon", 1e300, None, 1_700_000_000.5])

    assert result["thrown"] == []
    assert len(result["items"]) == 1 and result["items"][0].endswith("#5 person entered door"), result["items"]
    assert len([text for text in warnings if text.startswith(SKIPPED)]) == 4
    assert console.errors == []
