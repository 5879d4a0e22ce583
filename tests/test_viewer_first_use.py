"""What a person new to the viewer meets first, in a real headless Chromium against the real server:
Remove saving to the config file as asked, a refused zone said where it is seen and in a person's words,
track labels readable on a phone, an embed snippet of the stream's own shape, a stream that does not
exist offering nothing to do to it, the add form explaining its Id field and dropping an old error, and
taking any confidence the server takes.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from server.config import StreamConfig
from tests.support.browser import PHONE, WAIT_MS, open_page, require_browser, wait_for_new_frame, wait_for_text
from tests.support.zone_page import click

require_browser()

Start = Callable[..., Awaitable[TestClient]]

pytestmark = pytest.mark.timeout(120)

#: A laptop's window: the shape panel starts near the bottom of it, under the picture.
LAPTOP = {"width": 1280, "height": 720}
#: 4:3, unlike the 640x384 the snippet used to say whatever the stream.
CAM = "scene:?seed=3&width=640&height=480"
BAD_REQUEST = "Failed to load resource: the server responded with a status of 400 (Bad Request)"
#: Notes, in the page, the font of every track label drawn ("12 disc 0.88"), the last one last.
RECORD_LABEL_FONTS = r"""
window.labelFonts = [];
const fillText = CanvasRenderingContext2D.prototype.fillText;
CanvasRenderingContext2D.prototype.fillText = function (text, ...rest) {
  if (/^\d+ \S+ \d\.\d\d$/.test(text)) window.labelFonts.push(this.font);
  return fillText.call(this, text, ...rest);
};
"""
#: The last track label's height on screen, in CSS pixels: its font's, scaled as the picture is shown.
LAST_LABEL_CSS_PX = """() => {
  const canvas = document.querySelector("#video");
  const framePx = parseFloat(window.labelFonts.at(-1));
  return framePx * canvas.getBoundingClientRect().width / canvas.width;
}"""


async def _remove(page: Any, stream: str, save: bool) -> str:
    """Remove ``stream`` from its view with Remove, its "Save to config file" ticked or not; the grid's note."""
    await page.evaluate("(stream) => { location.hash = `#/stream/${stream}`; }", stream)
    persist = page.locator("#remove-persist")
    await persist.wait_for(state="visible", timeout=WAIT_MS)
    await persist.set_checked(save)
    await page.click("#remove-stream")
    await page.click("#remove-stream")  # the second click removes
    return await wait_for_text(page, "#grid-note", f"Removed “{stream}”")


async def test_a_stream_view_on_a_laptop_and_a_phone_and_remove_saving_as_asked(
    start_server: Start, browser: Any, tmp_path: Path, screenshots: Path
) -> None:
    config = tmp_path / "segcast.toml"
    config.write_text(f'[[streams]]\nid = "cam"\nuri = "{CAM}"\n\n[[streams]]\nid = "yard"\nuri = "scene:?seed=4"\n')
    client = await start_server(StreamConfig("cam", CAM), StreamConfig("yard", "scene:?seed=4"), config_path=config)
    page, console = await open_page(browser, client, "/?transport=ws#/stream/cam", LAPTOP)
    await page.add_init_script(RECORD_LABEL_FONTS)
    await page.reload()
    await wait_for_new_frame(page, "#video")

    # The snippet's frame has the stream's shape (4:3), not a fixed 640x384.
    await page.wait_for_function(
        "() => document.querySelector('#embed-code').value.includes('width=\"640\" height=\"480\"')", timeout=WAIT_MS
    )

    # A bow tie is refused: the refusal is on screen, of the zone by its name, not of "body.zones[0]".
    await page.click("#add-zone")
    bow_tie = [(0.2, 0.2), (0.8, 0.8), (0.8, 0.2), (0.2, 0.8)]
    for point in [*bow_tie, bow_tie[0]]:
        await click(page, point)
    error = await wait_for_text(page, "#shape-error", "crosses itself")
    assert error.startswith("Zone “zone-1” was not saved: "), error
    assert "body." not in error and "zones[0]" not in error, error
    box = await page.locator("#shape-error").bounding_box()
    assert box is not None and box["y"] >= 0 and box["y"] + box["height"] <= LAPTOP["height"], (
        f"the refusal is off screen: {box}"
    )
    await page.screenshot(path=screenshots / "refused-zone.png")

    # On a phone a track's label is as readable as a zone's tag: at least 12 CSS px, not ~6.
    await page.set_viewport_size(PHONE)
    await page.evaluate("() => { window.labelFonts = []; }")
    await page.wait_for_function("() => window.labelFonts.length > 0", timeout=WAIT_MS)
    label_px = await page.evaluate(LAST_LABEL_CSS_PX)
    assert label_px >= 11.5, f"a track label {label_px:.1f} CSS px tall on a phone"
    await page.screenshot(path=screenshots / "phone-labels.png")

    # Remove saves to the config file when asked; when not, it says the file may bring the stream back.
    note = await _remove(page, "cam", save=True)
    assert "config file too" in note, note
    assert '"cam"' not in config.read_text() and '"yard"' in config.read_text()
    note = await _remove(page, "yard", save=False)
    assert "until segcast restarts" in note, note
    assert '"yard"' in config.read_text(), "not asked to save: the file keeps it"
    assert console.errors == [BAD_REQUEST]


async def test_a_missing_stream_offers_no_controls_and_the_add_form_explains_its_id(
    start_server: Start, browser: Any
) -> None:
    client = await start_server()
    page, console = await open_page(browser, client, "/?transport=ws#/stream/nosuch")
    await wait_for_text(page, "#stream-view .status-panel", "No such stream")
    for control in ("#pause", "#remove-stream", "#add-zone", "#add-line", "#copy-embed"):
        assert await page.is_disabled(control), f"{control} is offered for a stream that does not exist"

    await page.evaluate("() => { location.hash = '#/'; }")
    id_field = page.locator("#add-form input[name=id]")
    assert await id_field.get_attribute("title") == "1 to 64 ASCII letters (a-z, A-Z), digits, - or _", (
        "Chrome shows it when refused"
    )
    await id_field.fill("cam")
    await page.fill("#add-form input[name=uri]", "nope:x")
    await page.click("#add-form button[type=submit]")
    await page.wait_for_function("() => document.querySelector('#add-error').textContent !== ''", timeout=WAIT_MS)
    await id_field.press_sequentially("2")  # a new attempt begins: the old answer is not its own
    await page.wait_for_function("() => document.querySelector('#add-error').textContent === ''", timeout=WAIT_MS)
    assert all(re.search(r"status of 4\d\d", error) for error in console.errors), console.errors


async def test_the_add_form_takes_any_confidence_the_server_takes(start_server: Start, browser: Any) -> None:
    client = await start_server()
    page, console = await open_page(browser, client, "/?transport=ws#/")
    conf = page.locator("#add-form input[name=conf]")
    # Its placeholder, the server's floor and top, and values off any coarse step: the server takes them all.
    for typed in ("0.25", "0.5", "0.51", "0.01", "1", "0.333"):
        await conf.fill(typed)
        message = await conf.evaluate("(input) => input.validationMessage")
        assert message == "", f"Confidence {typed} refused by the browser: {message}"

    await page.fill("#add-form input[name=id]", "cam")
    await page.fill("#add-form input[name=uri]", "scene:?seed=5")
    await conf.fill("0.5")
    await page.click("#add-form button[type=submit]")
    await page.locator('#grid [data-stream="cam"]').wait_for(timeout=WAIT_MS)
    response = await client.get("/api/streams/cam")
    assert (await response.json())["options"]["conf"] == 0.5
    assert console.errors == []
