"""The stream view's zone editor as the browser tests drive it: points in fractions of the picture,
clicked where the page shows them, and the shapes the server saved."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from aiohttp.test_utils import TestClient

from tests.support.browser import WAIT_MS

Point = tuple[float, float]

STREAM_VIEW = "/?transport=ws#/stream/cam"
#: Fractions differ from where the test clicked by less than this (the canvas is ~900 CSS px wide).
CLICK_TOLERANCE = 0.01
PRECONDITION_FAILED = "Failed to load resource: the server responded with a status of 412 (Precondition Failed)"


async def screen_point(page: Any, point: Point) -> tuple[float, float]:
    """Where on the screen a point of the frame (in fractions) is shown, the picture scrolled into view
    first where part of it is not (a click outside the window lands nowhere): the stream view is taller
    than a laptop's window, and a page scrolled down for a button below the picture hides its top."""
    video = page.locator("#video")
    await video.scroll_into_view_if_needed()
    box = await video.bounding_box()
    return box["x"] + point[0] * box["width"], box["y"] + point[1] * box["height"]


async def click(page: Any, point: Point) -> None:
    await page.mouse.click(*await screen_point(page, point))


async def stream_options(client: TestClient, check: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """Stream ``cam``'s options once ``check`` holds for them (the page saves in the background)."""
    deadline = asyncio.get_running_loop().time() + WAIT_MS / 1000
    while True:
        response = await client.get("/api/streams/cam")
        options: dict[str, Any] = (await response.json()).get("options", {})
        if response.status == 200 and check(options):
            return options
        assert asyncio.get_running_loop().time() < deadline, f"the stream's options stayed {options}"
        await asyncio.sleep(0.1)


def shape_names(options: dict[str, Any], kind: str) -> list[str]:
    return [shape["name"] for shape in options.get(kind, [])]


def assert_points(saved: dict[str, Any], expected: list[Point]) -> None:
    """``saved`` is in fractions, at the points clicked."""
    assert saved["units"] == "fraction"
    assert len(saved["points"]) == len(expected), saved["points"]
    for (x, y), (ex, ey) in zip(saved["points"], expected, strict=True):
        assert abs(x - ex) < CLICK_TOLERANCE and abs(y - ey) < CLICK_TOLERANCE, (saved["points"], expected)


async def click_polygon(page: Any, points: list[Point]) -> None:
    """Corners clicked at ``points`` while a zone is drawn, closed by clicking the first again."""
    for point in [*points, points[0]]:
        await click(page, point)
