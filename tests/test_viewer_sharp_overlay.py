"""The stream view's overlay is as sharp as the screen, in a real headless Chromium with a HiDPI screen.

A camera's 320x240 substream shown large had its labels, outlines and handles drawn in the frame's own
pixels and scaled up by CSS, so blurred (and on a HiDPI screen at any frame size). They are drawn at the
picture's shown size times the device pixel ratio; labels keep their size, and clicks still land where
they are made. Every wait is on something the page shows, with a deadline; none is a fixed sleep.
"""

from __future__ import annotations

import io
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import pytest
from aiohttp.test_utils import TestClient
from PIL import Image

from server.config import StreamConfig
from tests.support.browser import PAUSE_ON_TRACKS, WAIT_MS, Console, require_browser, wait_for_new_frame
from tests.support.zone_page import STREAM_VIEW, assert_points, click, shape_names, stream_options

require_browser()

Start = Callable[..., Awaitable[TestClient]]

pytestmark = pytest.mark.timeout(120)

#: A camera's low-resolution substream.
SUBSTREAM = "scene:?seed=3&width=320&height=240"
DEVICE_PIXEL_RATIO = 2
#: Wide and tall enough that the stream view shows the 320x240 picture ~1280 CSS px wide, unletterboxed.
LARGE = {"width": 1660, "height": 1300}
SMALLER = {"width": 1100, "height": 900}
#: What the picture is shown at, in CSS px, and its canvas' backing store, in its own pixels.
SIZES = """() => {
  const canvas = document.querySelector('#video');
  const rect = canvas.getBoundingClientRect();
  return {shown: [rect.width, rect.height], backing: [canvas.width, canvas.height], ratio: devicePixelRatio};
}"""
#: The address the page loaded web/overlay.js from (static/<tag>/overlay.js), once it has.
OVERLAY_URL = """() => performance.getEntriesByType('resource').map((e) => e.name)
  .find((name) => name.endsWith('/overlay.js')) ?? false"""
#: A track's colour, as [r, g, b], drawn by the page's overlay module (its label's background).
TRACK_RGB = """async ([url, id]) => {
  const {trackColor} = await import(url);
  const swatch = document.createElement('canvas').getContext('2d', {willReadFrequently: true});
  swatch.fillStyle = trackColor(id);
  swatch.fillRect(0, 0, 1, 1);
  return [...swatch.getImageData(0, 0, 1, 1).data.slice(0, 3)];
}"""
#: How far, per channel, a screen pixel may be from a colour and still be that colour.
COLOUR_TOLERANCE = 12
#: A row or column of the screen with at least this many pixels of a track's colour crosses its label.
LABEL_RUN_PX = 10
#: A crisp edge goes from one colour to the other within this many device pixels (anti-aliasing's one,
#: and one more for a glyph's edge that is not on a pixel's edge); a frame pixel scaled up 8 times is 8.
SHARP_EDGE_PX = 2
#: Edges from a label's background to its text that are measured: a few glyphs' worth.
LEAST_EDGES = 20
#: A label's font, in CSS px, as web/overlay.js sizes it: 16 on a picture shown 720 px tall, never under 12.
LABEL_SHARE_OF_SHOWN_HEIGHT = 16 / 720
#: A label's box is its font's size and a fifth of it above and below.
LABEL_BOX_PER_FONT = 1.4


async def _open(browser: Any, client: TestClient) -> tuple[Any, Console]:
    """The stream view of stream ``cam`` on a HiDPI screen, showing its first frame."""
    page = await browser.new_page(viewport=LARGE, device_scale_factor=DEVICE_PIXEL_RATIO)
    console = Console(page)
    await page.goto(str(client.make_url(STREAM_VIEW)))
    await wait_for_new_frame(page, "#video")
    return page, console


def _backing_matches_shown(sizes: dict[str, Any]) -> bool:
    """Whether the canvas has a pixel of its own for each device pixel it is shown on (to a rounding)."""
    return all(
        abs(backing - shown * sizes["ratio"]) <= 1
        for backing, shown in zip(sizes["backing"], sizes["shown"], strict=True)
    )


def _of_colour(pixels: np.ndarray, colour: list[int]) -> np.ndarray:
    """Which of ``pixels`` (RGB) are ``colour``, to within `COLOUR_TOLERANCE`."""
    return np.all(np.abs(pixels.astype(int) - colour) <= COLOUR_TOLERANCE, axis=2)


def _edge_widths(box: np.ndarray, background: list[int], ink: list[int]) -> list[int]:
    """Along each row of ``box`` (pixels, RGB), how many pixels of neither colour lie between a pixel of
    ``background`` and the next of ``ink`` (or the other way): the width of each edge of the text."""
    kinds = np.where(_of_colour(box, background), 1, np.where(_of_colour(box, ink), 2, 0))
    widths = []
    for row in kinds:
        last, between = 0, 0
        for kind in row:
            if kind == 0:
                between += 1
                continue
            if last and kind != last:
                widths.append(between)
            last, between = kind, 0
    return widths


def _label_box(picture: np.ndarray, colour: list[int]) -> tuple[np.ndarray, int]:
    """The pixels inside the label filled with ``colour`` (less its anti-aliased rim), and its height:
    the rows and columns dense with that colour, so that a stray pixel of the scene's does not count."""
    filled = _of_colour(picture, colour)
    rows = np.flatnonzero(filled.sum(axis=1) >= LABEL_RUN_PX)
    columns = np.flatnonzero(filled.sum(axis=0) >= LABEL_RUN_PX)
    assert rows.size and columns.size, f"no label of the colour {colour} on the picture"
    inside = picture[rows[0] + 2 : rows[-1] - 1, columns[0] + 2 : columns[-1] - 1]
    return inside, int(rows[-1] - rows[0] + 1)


async def test_the_overlay_has_a_pixel_for_each_device_pixel_and_follows_a_resize_while_paused(
    start_server: Start, browser: Any
) -> None:
    """Drawn at the frame's 320x240 and scaled up by CSS, the overlay had a pixel for each 16 device pixels."""
    client = await start_server(StreamConfig("cam", SUBSTREAM))
    page, console = await _open(browser, client)
    await page.wait_for_function(PAUSE_ON_TRACKS, timeout=WAIT_MS)
    large = await page.evaluate(SIZES)
    assert large["ratio"] == DEVICE_PIXEL_RATIO and large["shown"][0] >= 1200, f"not shown large: {large}"
    assert _backing_matches_shown(large), f"the canvas is not at its shown size in device pixels: {large}"
    assert await page.get_attribute("#video", "data-frame") == "320x240", "the frame's size, said on the canvas"

    # Paused, no new frame comes: the resize alone draws the kept frame again at the new size.
    seq = await page.get_attribute("#video", "data-seq")
    await page.set_viewport_size(SMALLER)
    await page.wait_for_function(
        f"() => {{ const c = document.querySelector('#video'); return c.width < {large['backing'][0]}; }}",
        timeout=WAIT_MS,
    )
    smaller = await page.evaluate(SIZES)
    assert _backing_matches_shown(smaller), f"not at the new size: {smaller}"
    stats = await page.evaluate(
        """() => {
          const canvas = document.querySelector('#video');
          const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
          let opaque = 0;
          for (let i = 3; i < data.length; i += 4) if (data[i] === 255) opaque++;
          return {opaque, pixels: data.length / 4};
        }"""
    )
    assert stats["opaque"] == stats["pixels"], f"the kept frame is not drawn whole at the new size: {stats}"
    assert await page.get_attribute("#video", "data-seq") == seq, "paused: the same frame"
    assert console.errors == []


async def test_a_track_label_on_a_small_frame_shown_large_has_sharp_text_of_the_same_size(
    start_server: Start, browser: Any
) -> None:
    """A label's text of a 320x240 frame shown 1280 CSS px wide was 5 frame pixels tall, spread by CSS over
    40 device pixels: no edge of it went from the label's colour to its ink within a pixel or two."""
    client = await start_server(StreamConfig("cam", SUBSTREAM))
    page, console = await _open(browser, client)
    for overlay in ("masks", "boxes", "trails", "zones"):  # labels alone: only a label has the track's colour
        await page.uncheck(f"#overlays input[name={overlay}]")
    await page.wait_for_function(PAUSE_ON_TRACKS, timeout=WAIT_MS)
    url = await (await page.wait_for_function(OVERLAY_URL, timeout=WAIT_MS)).json_value()
    track = int((await page.get_attribute("#video", "data-tracks") or "").split(",")[0])
    colour = await page.evaluate(TRACK_RGB, [url, track])
    shown_height = (await page.evaluate(SIZES))["shown"][1]

    shot = await page.locator("#video").screenshot()
    picture = np.asarray(Image.open(io.BytesIO(shot)).convert("RGB"))
    box, height = _label_box(picture, colour)
    widths = [width for ink in ([0, 0, 0], [255, 255, 255]) for width in _edge_widths(box, colour, ink)]
    sharp = sum(width <= SHARP_EDGE_PX for width in widths)
    assert sharp >= LEAST_EDGES and sharp >= 0.8 * len(widths), (
        f"{sharp} of {len(widths)} edges of the label's text within {SHARP_EDGE_PX} device px: {sorted(widths)}"
    )

    font_css = max(12, LABEL_SHARE_OF_SHOWN_HEIGHT * shown_height)
    label_css = height / DEVICE_PIXEL_RATIO
    assert abs(label_css - LABEL_BOX_PER_FONT * font_css) <= 0.1 * LABEL_BOX_PER_FONT * font_css, (
        f"a label {label_css:.1f} CSS px tall for a {font_css:.1f} px font"
    )
    assert console.errors == []


async def test_a_zone_clicked_on_a_small_frame_shown_large_is_saved_where_clicked(
    start_server: Start, browser: Any
) -> None:
    client = await start_server(StreamConfig("cam", SUBSTREAM))
    page, console = await _open(browser, client)
    corners = [(0.1, 0.15), (0.8, 0.2), (0.7, 0.9), (0.15, 0.75)]
    await page.click("#add-zone")
    await page.fill("#shape-name", "yard")
    for point in [*corners, corners[0]]:  # the first corner again closes it
        await click(page, point)
    options = await stream_options(client, lambda o: shape_names(o, "zones") == ["yard"])
    assert_points(options["zones"][0], corners)
    assert console.errors == []
