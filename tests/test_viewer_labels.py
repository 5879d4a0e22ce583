"""The stream view's track labels, drawn by the browser (web/overlay.js), in a real headless Chromium.

A label must read on any track's colour, stay whole on the picture by its edges, and be covered by
nothing drawn for another track or for a zone. The overlay module is the page's own (imported from the
address the page loaded it from), drawing onto a canvas of the page; every measurement is of pixels.
Every wait is on something the page shows, with a deadline; none is a fixed sleep.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from server.config import StreamConfig
from tests.support.browser import (
    DESKTOP,
    KEEP_FRAME_META,
    PAUSE_ON_TRACKS,
    PHONE,
    WAIT_MS,
    open_page,
    require_browser,
    wait_for_new_frame,
)

require_browser()

Start = Callable[..., Awaitable[TestClient]]

pytestmark = pytest.mark.timeout(120)

WCAG_AA_CONTRAST = 4.5  # normal text
#: The address the page loaded web/overlay.js from (static/<tag>/overlay.js), once it has.
OVERLAY_URL = """() => performance.getEntriesByType('resource').map((e) => e.name)
  .find((name) => name.endsWith('/overlay.js')) ?? false"""
#: A canvas of frame `width` x `height` shown `shownWidth` CSS pixels wide, for the page's overlay module.
CANVAS = """
  const canvas = document.createElement('canvas');
  canvas.width = width; canvas.height = height; canvas.style.width = `${shownWidth}px`;
  document.body.append(canvas);
  const context = canvas.getContext('2d', {willReadFrequently: true});
  const track = (id, box, extra = {}) => ({id, class: 'triangle', conf: 0.9, box, polygon: null, trail: [], zones: [],
                                           ...extra});
  const ONLY_LABELS = {masks: false, boxes: false, labels: true, trails: false, zones: false};
  const ALL = {masks: true, boxes: true, labels: true, trails: true, zones: true};
  // The bounds of what is drawn (alpha > 0) on the cleared canvas: [left, top, right, bottom), frame pixels.
  const drawnBounds = () => {
    const data = context.getImageData(0, 0, width, height).data;
    let left = width, top = height, right = 0, bottom = 0;
    for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) {
      if (data[(y * width + x) * 4 + 3] === 0) continue;
      [left, top] = [Math.min(left, x), Math.min(top, y)];
      [right, bottom] = [Math.max(right, x + 1), Math.max(bottom, y + 1)];
    }
    return [left, top, right, bottom];
  };
"""


async def _overlay_page(start_server: Start, browser: Any, viewport: dict[str, int] | None = None) -> tuple[Any, str]:
    """A viewer page and the address of its overlay module."""
    client = await start_server()
    page, _ = await open_page(browser, client, "/?transport=ws", viewport)
    url = await (await page.wait_for_function(OVERLAY_URL, timeout=WAIT_MS)).json_value()
    return page, str(url)


def _luminance(rgb: list[int]) -> float:
    """WCAG 2's relative luminance of an sRGB colour."""
    linear = [c / 255 / 12.92 if c / 255 <= 0.03928 else ((c / 255 + 0.055) / 1.055) ** 2.4 for c in rgb]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def _contrast(a: list[int], b: list[int]) -> float:
    light, dark = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


async def test_every_track_colours_label_reads_at_4_5_to_1(start_server: Start, browser: Any) -> None:
    """One dark ink on every colour left ~1 label in 6 under 4.5:1 (id 48: dark on #2626ff, 2.6:1)."""
    page, url = await _overlay_page(start_server, browser)
    # Shown small, so the label's text is big in frame pixels: its strokes have pixels of the ink alone.
    inks = await page.evaluate(
        """async ([url, width, height, shownWidth]) => {
          const {drawOverlay} = await import(url);"""
        + CANVAS
        + """
          const found = {};
          for (let id = 1; id <= 200; id++) {
            context.clearRect(0, 0, width, height);
            drawOverlay(context, {width, height, tracks: [track(id, [100, 300, 400, 380])]}, ONLY_LABELS, null);
            const [left, top, right, bottom] = drawnBounds();
            const data = context.getImageData(left, top, right - left, bottom - top).data;
            const at = (i) => [data[i], data[i + 1], data[i + 2]];
            const background = at(((right - left) + 1) * 4); // inside the padding, by the top-left corner
            let ink = background, farthest = -1;
            for (let i = 0; i < data.length; i += 4) {
              const far = Math.abs(data[i] - background[0]) + Math.abs(data[i + 1] - background[1])
                + Math.abs(data[i + 2] - background[2]);
              if (far > farthest) [farthest, ink] = [far, at(i)];
            }
            found[id] = {background, ink};
          }
          return found;
        }""",
        [url, 640, 384, 160],
    )
    low = {
        id_: round(_contrast(pair["background"], pair["ink"]), 2)
        for id_, pair in inks.items()
        if _contrast(pair["background"], pair["ink"]) < WCAG_AA_CONTRAST
    }
    assert low == {}, f"labels under {WCAG_AA_CONTRAST}:1, by track id: {low}"


async def test_a_label_by_the_pictures_edge_stays_whole_on_a_phone(start_server: Start, browser: Any) -> None:
    """On a phone a label is at least 12 CSS px tall, so wide in frame pixels: one by a box at x=560 of a
    640 px frame shown 343 px wide ran off the picture's right edge (and one of a box past the left off it)."""
    page, url = await _overlay_page(start_server, browser, PHONE)
    drawn = await page.evaluate(
        """async ([url, width, height, shownWidth]) => {
          const {drawOverlay} = await import(url);"""
        + CANVAS
        + """
          const bounds = (box) => {
            context.clearRect(0, 0, width, height);
            drawOverlay(context, {width, height, tracks: [track(48, box)]}, ONLY_LABELS, null);
            return drawnBounds();
          };
          return {middle: bounds([200, 150, 270, 220]), right: bounds([560, 150, 630, 220]),
                  left: bounds([-30, 150, 40, 220])};
        }""",
        [url, 640, 384, 343],
    )
    middle_width = drawn["middle"][2] - drawn["middle"][0]
    assert middle_width > 80, "the label is wider than the room right of x=560, or this test shows nothing"
    for edge in ("right", "left"):
        left, _, right, _ = drawn[edge]
        assert right - left == middle_width, f"the label by the {edge} edge is cut off: {drawn}"
        assert left >= 0 and right <= 640, drawn


async def test_no_other_tracks_mask_trail_or_box_covers_a_label(start_server: Start, browser: Any) -> None:
    """Each label was drawn with its own track, so the next track's mask, trail and box went over it."""
    page, url = await _overlay_page(start_server, browser)
    differing = await page.evaluate(
        """async ([url, width, height, shownWidth]) => {
          const {drawOverlay} = await import(url);"""
        + CANVAS
        + """
          const first = track(1, [100, 150, 300, 300]);
          // Its box's sides, its trail and its mask all cross the first track's label, just above y=150.
          const second = track(2, [150, 100, 250, 350], {
            polygon: [120, 110, 280, 110, 280, 340, 120, 340],
            trail: [[60, 140], [340, 140]],
          });
          drawOverlay(context, {width, height, tracks: [first]}, ONLY_LABELS, null);
          const [left, top, right, bottom] = drawnBounds();
          // Within its edges, whose partly covered pixels show what is under the label.
          const inside = () => context.getImageData(left + 1, top + 1, right - left - 2, bottom - top - 2).data;
          const alone = inside();
          context.clearRect(0, 0, width, height);
          drawOverlay(context, {width, height, tracks: [first, second]}, ALL, null);
          const together = inside();
          let differing = 0;
          for (let i = 0; i < alone.length; i++) if (alone[i] !== together[i]) differing++;
          return differing;
        }""",
        [url, 640, 384, 640],
    )
    assert differing == 0, f"{differing} channel values of the first track's label differ from the label alone"


async def test_a_zone_does_not_tint_the_labels_of_the_tracks_in_it(start_server: Start, browser: Any) -> None:
    """The stream view drew zones over the tracks: a zone's translucent fill tinted every label in it."""
    client = await start_server(StreamConfig("cam", "scene:?seed=3"))
    everywhere = [(0.001, 0.001), (0.999, 0.001), (0.999, 0.999), (0.001, 0.999)]
    body = {"zones": [{"name": "all", "points": everywhere, "units": "fraction"}]}
    assert (await client.patch("/api/streams/cam", json=body)).status == 200
    page, _ = await open_page(browser, client, "/?transport=ws#/stream/cam")
    await wait_for_new_frame(page, "#video")
    await page.wait_for_selector('#shape-list li[data-shape="zone:all"]', timeout=WAIT_MS)
    await page.wait_for_function(PAUSE_ON_TRACKS, timeout=WAIT_MS)
    await page.click("#overlays input[name=trails]")  # drawn again, paused, with the zone now known
    await page.click("#overlays input[name=trails]")
    url = await (await page.wait_for_function(OVERLAY_URL, timeout=WAIT_MS)).json_value()
    pure = await page.evaluate(
        """async (url) => {
          const {trackColor} = await import(url);
          const canvas = document.querySelector('#video');
          const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
          const swatch = document.createElement('canvas').getContext('2d', {willReadFrequently: true});
          const pure = {};
          for (const id of canvas.dataset.tracks.split(',')) {
            swatch.fillStyle = trackColor(Number(id));
            swatch.fillRect(0, 0, 1, 1);
            const [r, g, b] = swatch.getImageData(0, 0, 1, 1).data;
            let count = 0;
            for (let i = 0; i < data.length; i += 4) {
              if (data[i] === r && data[i + 1] === g && data[i + 2] === b) count++;
            }
            pure[id] = count;
          }
          return pure;
        }""",
        url,
    )
    assert pure and all(count > 0 for count in pure.values()), f"pixels of each track's own colour, by id: {pure}"


async def test_the_overlay_toggles_and_the_top_links_are_24_px_tall_on_a_phone(
    start_server: Start, browser: Any
) -> None:
    """Targets a finger can find (WCAG 2.2's minimum target size), with no sideways scrolling for it."""
    client = await start_server(StreamConfig("cam", "scene:?seed=3"))
    page, console = await open_page(browser, client, "/#/stream/cam", PHONE)
    await wait_for_new_frame(page, "#video")
    heights = await page.evaluate(
        """() => [...document.querySelectorAll('.toggles label, .topbar nav a')]
             .map((e) => [e.textContent.trim(), e.getBoundingClientRect().height])"""
    )
    assert len(heights) >= 5 and all(height >= 24 for _, height in heights), heights
    overflow = "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
    assert await page.evaluate(overflow) == 0
    assert console.errors == []


#: For a function of the stream view's page given the address of its overlay module (`url`): the picture
#: (`canvas`), frame pixels per CSS pixel (`scale`), and `disc`: the pixels [x, y] of a disc of the frame.
IN_THE_PICTURE = """
  const canvas = document.querySelector('#video');
  const {pictureRect} = await import(url);
  const rect = pictureRect(canvas);
  const scale = canvas.width / rect.width;
  const disc = ([x, y], radius) => {
    const pixels = [];
    for (let py = Math.floor(y - radius); py <= y + radius; py++) {
      for (let px = Math.floor(x - radius); px <= x + radius; px++) {
        if (Math.hypot(px + 0.5 - x, py + 0.5 - y) <= radius) pixels.push([px, py]);
      }
    }
    return pixels;
  };
  // How many of `pixels` are inside the mask FIND_A_MASK found.
  const inMask = (pixels) => pixels.filter(window.maskInside).length;
"""
#: A point of the paused picture (canvas pixels) with a disc of `reach` CSS px around it inside one track's
#: mask, at a whole CSS pixel of the screen (so a click there is at it exactly): {point, size (the
#: canvas's)}, or null.
FIND_A_MASK = (
    """async ([url, reach]) => {"""
    + IN_THE_PICTURE
    + """
  const meta = window.frameMeta.get(canvas.dataset.seq);
  // Masks and boxes are in frame pixels; the canvas may have more pixels than the frame (a small frame
  // shown large is drawn at the screen's resolution), so its pixels are mapped to the frame's to test them.
  const framePerCanvas = meta.width / canvas.width;
  const framePerCss = meta.width / rect.width;
  const probe = document.createElement('canvas').getContext('2d');
  for (const track of meta.tracks.filter((t) => t.polygon?.length >= 6)) {
    const path = new Path2D();
    for (let i = 0; i < track.polygon.length; i += 2) path.lineTo(track.polygon[i], track.polygon[i + 1]);
    path.closePath();
    const inside = ([px, py]) => probe.isPointInPath(path, (px + 0.5) * framePerCanvas, (py + 0.5) * framePerCanvas);
    const [x1, y1, x2, y2] = track.box;
    for (let sy = Math.ceil(rect.top + y1 / framePerCss); sy < rect.top + y2 / framePerCss; sy += 2) {
      for (let sx = Math.ceil(rect.left + x1 / framePerCss); sx < rect.left + x2 / framePerCss; sx += 2) {
        const point = [(sx - rect.left) * scale, (sy - rect.top) * scale];
        if (!disc(point, reach * scale).every(inside)) continue;
        window.maskInside = inside;
        return {point, size: [canvas.width, canvas.height]};
      }
    }
  }
  return null;
}"""
)

#: Keeps, in the page, the stream view's picture as it is now under a name (window.pictures).
KEEP_PICTURES = """() => {
  window.pictures = {};
  window.keepPicture = (name) => {
    const canvas = document.querySelector('#video');
    window.pictures[name] = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  };
}"""


#: The least width and height, in frame pixels, of the track a paused frame must have: the first frame with
#: tracks may hold only an object coming in at the edge, too small for a handle to lie on its mask.
WHOLE_TRACK_PX = 48
#: Pauses the stream view on a frame with a masked track at least ``least`` frame pixels wide and tall.
PAUSE_ON_A_WHOLE_TRACK = """(least) => {
  const canvas = document.querySelector('#video');
  const meta = window.frameMeta.get(canvas.dataset.seq);
  const whole = ({ box: [x1, y1, x2, y2], polygon }) => polygon?.length >= 6 && x2 - x1 >= least && y2 - y1 >= least;
  if (!meta || !meta.tracks.some(whole)) return false;
  document.querySelector('#pause').click();
  return true;
}"""


async def _paused_on_tracks(start_server: Start, browser: Any, viewport: dict[str, int]) -> tuple[TestClient, Any, str]:
    """The stream view of a scene, paused on a frame with tracks; the address of its overlay module."""
    client = await start_server(StreamConfig("cam", "scene:?seed=3"))
    page = await browser.new_page(viewport=viewport)
    await page.add_init_script(KEEP_FRAME_META)
    await page.goto(str(client.make_url("/?transport=ws#/stream/cam")))
    await wait_for_new_frame(page, "#video")
    await page.wait_for_function(PAUSE_ON_A_WHOLE_TRACK, arg=WHOLE_TRACK_PX, timeout=WAIT_MS)
    url = await (await page.wait_for_function(OVERLAY_URL, timeout=WAIT_MS)).json_value()
    return client, page, str(url)


async def test_a_point_put_down_on_a_tracks_mask_shows_its_handle_untinted(start_server: Start, browser: Any) -> None:
    """Zones were moved under the tracks, and with them the draft being drawn: a point put down on a
    track showed its handle tinted by the track's mask. On a phone, where a handle is big in frame pixels."""
    _, page, url = await _paused_on_tracks(start_server, browser, PHONE)
    target = await page.evaluate(FIND_A_MASK, [url, 7])  # the handle's ring is 7 CSS px from its middle
    assert target, "no track of the paused frame has a mask wide enough for a handle"
    await page.click("#add-zone")  # which may scroll the page
    where = "async ([url, [x, y]]) => {" + IN_THE_PICTURE + "return [rect.left + x / scale, rect.top + y / scale]; }"
    await page.mouse.click(*await page.evaluate(where, [url, target["point"]]))
    await page.wait_for_selector("#undo-point:not([disabled])", timeout=WAIT_MS)
    inside = await page.evaluate(
        """async ([url, point]) => {"""
        + IN_THE_PICTURE
        + """
          // Within the handle's ring (5 CSS px from its middle), but for its edge's anti-aliased pixels.
          const pixels = disc(point, 5 * scale - 1.5);
          const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
          const colours = {};
          for (const [x, y] of pixels) {
            const i = (y * canvas.width + x) * 4;
            const colour = `${data[i]},${data[i + 1]},${data[i + 2]}`;
            colours[colour] = (colours[colour] ?? 0) + 1;
          }
          return {pixels: pixels.length, inMask: inMask(pixels), colours};
        }""",
        [url, target["point"]],
    )
    assert inside["pixels"] > 50 and inside["inMask"] == inside["pixels"], inside
    assert inside["colours"] == {"11,13,16": inside["pixels"]}, "the handle's inside is not its ink (#0b0d10) alone"


async def test_a_zones_name_tag_over_a_tracks_mask_keeps_its_colours(start_server: Start, browser: Any) -> None:
    """Zones were moved under the tracks, and with them their name tags: a track's mask under a tag
    tinted it. The tag must look the same whether the masks are shown or not."""
    client, page, url = await _paused_on_tracks(start_server, browser, DESKTOP)
    # A zone whose first corner is just below a point deep in a mask: its tag, above that corner, is on it.
    found = await page.evaluate(FIND_A_MASK, [url, 4])
    assert found, "no track of the paused frame has a mask wide enough for the test"
    (x, y), (width, height) = (found["point"][0] - 3, found["point"][1] + 10), found["size"]
    dx, dy = (80 if x + 80 < width else -80), min(40, height - 1 - y)
    corners = [(x, y), (x + dx, y), (x + dx, y + dy), (x, y + dy)]
    body = {
        "zones": [{"name": "tagged", "points": [[cx / width, cy / height] for cx, cy in corners], "units": "fraction"}]
    }
    assert (await client.patch("/api/streams/cam", json=body)).status == 200
    await page.wait_for_selector('#shape-list li[data-shape="zone:tagged"]', timeout=WAIT_MS)
    await page.evaluate(KEEP_PICTURES)

    async def keep(name: str) -> None:
        await page.evaluate("(name) => window.keepPicture(name)", name)

    await page.uncheck("#overlays input[name=masks]")
    await keep("zone")
    await page.uncheck("#overlays input[name=zones]")
    await keep("bare")
    await page.check("#overlays input[name=zones]")
    await page.check("#overlays input[name=masks]")
    await keep("masked")
    tag = await page.evaluate(
        """async ([url, [x, y]]) => {"""
        + IN_THE_PICTURE
        + """
          // What the zone adds above its first corner (its outline and fill are below it): its tag.
          const {zone, bare, masked} = window.pictures;
          const tag = [];
          for (let py = Math.max(0, Math.round(y) - 60); py < Math.round(y) - 3; py++) {
            for (let px = Math.max(0, Math.round(x) - 60); px < Math.min(canvas.width, Math.round(x) + 200); px++) {
              const i = (py * canvas.width + px) * 4;
              if ([0, 1, 2].some((c) => zone[i + c] !== bare[i + c])) tag.push([px, py]);
            }
          }
          // Within its edges, whose partly covered pixels show what is under the tag.
          const inTag = new Set(tag.map(([px, py]) => `${px},${py}`));
          const around = [-1, 0, 1].flatMap((ox) => [-1, 0, 1].map((oy) => [ox, oy]));
          const whole = tag.filter(([px, py]) => around.every(([ox, oy]) => inTag.has(`${px + ox},${py + oy}`)));
          const tinted = whole.filter(([px, py]) => {
            const i = (py * canvas.width + px) * 4;
            return [0, 1, 2].some((c) => masked[i + c] !== zone[i + c]);
          });
          return {pixels: whole.length, inMask: inMask(whole), tinted: tinted.length};
        }""",
        [url, [x, y]],
    )
    assert tag["pixels"] > 100 and tag["inMask"] > 0, tag
    assert tag["tinted"] == 0, f"{tag['tinted']} of the tag's pixels change as the masks are shown: {tag}"
