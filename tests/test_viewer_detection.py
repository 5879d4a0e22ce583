"""The stream view's Detection panel, in a real headless Chromium against the real server.

The panel shows a stream's detection settings as the server has them (its ``conf``, ``classes`` and
``class_filters``, with its tracker, processing rate and area bounds read only), and changes its
confidence, its tracked classes and a class's own confidence through ``PATCH /api/streams/<id>``,
sending only what differs, over the settings it showed (``If-Match``). A refusal is shown in the server's
words with the server's values back; a change made elsewhere shows up in the panel, and one made while
the person was editing is not overwritten by theirs; ticked, "Save to config file" writes the change there.
The stream view stays on the WebSocket (``?transport=ws``); every wait is on something the page, the API
or the file shows, with a deadline.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from server.config import StreamConfig
from server.options import StreamOptions
from tests.support.browser import WAIT_MS, open_page, require_browser
from tests.support.polling import eventually
from tests.support.zone_page import PRECONDITION_FAILED, STREAM_VIEW, stream_options
from tests.test_viewer_phone import CHECKBOX_PX, CHECKBOXES, TARGET_PX, on_phone, small_targets

require_browser()

Start = Callable[..., Awaitable[TestClient]]

pytestmark = pytest.mark.timeout(120)

CAM = "scene:?seed=3"
BAD_REQUEST = "Failed to load resource: the server responded with a status of 400 (Bad Request)"
#: A stream as a config file gives it: its own conf, two of the bundled model's classes, and class filters.
CONFIGURED = {
    "conf": 0.4,
    "classes": ["disc", "square"],
    "class_filters": {"disc": {"conf": 0.6, "min_area": 0.0005}, "triangle": {"max_area": 0.5}},
    "process_fps": 5,
    "min_area": 0.001,
}
PANEL = "#detection"
APPLY = "#detection-apply"
STATUS = "#detection-status"
ERROR = "#detection-error"
#: Whether the panel shows the stream's settings (its fields are on once the stream list came).
SHOWN = "() => !document.querySelector('#detection-fields').disabled"
LARGER_TEXT = "document.documentElement.style.fontSize = '150%'"
#: How far the page scrolls sideways: how much wider its content is than its window, in CSS pixels.
SIDEWAYS = "document.documentElement.scrollWidth - document.documentElement.clientWidth"
RESTARTED = "Tracking restarted: its tracks ended, new ids follow theirs and its counts start from zero."
IN_PLACE = "Made in place: its tracks, ids and counts go on."


async def _open(client: TestClient, browser: Any) -> tuple[Any, Any]:
    """The stream view of ``cam``, once its Detection panel shows the stream's settings, its form opened."""
    page, console = await open_page(browser, client, STREAM_VIEW)
    await page.wait_for_function(SHOWN, timeout=WAIT_MS)
    await page.click("#detection-more > summary")
    return page, console


def _class_row(page: Any, name: str) -> Any:
    return page.locator(f'#detection-classes li[data-class="{name}"]')


async def _wait_for_value(page: Any, selector: str, value: str) -> None:
    await page.wait_for_function(
        "([selector, value]) => document.querySelector(selector).value === value",
        arg=[selector, value],
        timeout=WAIT_MS,
    )


async def _apply(page: Any) -> dict[str, Any]:
    """Press Apply; the PATCH it sent: {"body", "if_match", "url"}."""
    async with page.expect_request(lambda request: request.method == "PATCH", timeout=WAIT_MS) as sent:
        await page.click(APPLY)
    request = await sent.value
    return {"body": request.post_data_json, "if_match": request.headers.get("if-match"), "url": request.url}


async def _said(page: Any, selector: str, start: str) -> str:
    """The text of ``selector`` once it starts with ``start``."""
    await page.wait_for_function(
        "([selector, start]) => document.querySelector(selector).textContent.startsWith(start)",
        arg=[selector, start],
        timeout=WAIT_MS,
    )
    return str(await page.text_content(selector))


async def test_the_panel_shows_the_streams_conf_classes_and_class_filters_as_configured(
    start_server: Start, browser: Any, screenshots: Path
) -> None:
    options = StreamOptions.from_mapping(CONFIGURED)
    client = await start_server(StreamConfig("cam", CAM, options=options))
    page, console = await _open(client, browser)
    panel = page.get_by_role("region", name="Detection")
    summary = "confidence 0.4 · tracking disc, square · own filters: disc, triangle"
    assert await page.text_content("#detection-summary") == summary, "said without opening the form"

    assert await panel.get_by_label("Confidence", exact=True).input_value() == "0.4"
    classes = panel.get_by_role("group", name="Classes tracked")
    for name, tracked in [("disc", True), ("square", True), ("triangle", False)]:
        assert await classes.get_by_role("checkbox", name=name, exact=True).is_checked() is tracked, name
    disc, square = panel.get_by_label("disc confidence"), panel.get_by_label("square confidence")
    assert await disc.input_value() == "0.6", "disc's own confidence"
    assert await square.input_value() == "", "square's is the stream's"
    assert await square.get_attribute("placeholder") == "stream's", "as its field says"
    assert await _class_row(page, "disc").locator(".detection-area").text_content() == (
        "area at least 0.05 % of the frame"
    )
    assert await _class_row(page, "triangle").locator(".detection-area").text_content() == (
        "area at most 50 % of the frame"
    )
    assert await _class_row(page, "square").locator(".detection-area").is_hidden(), "square has no bounds of its own"
    fixed = " ".join((await page.inner_text("#detection-fixed")).split())
    assert fixed == "tracker segtrack processing at most 5 fps objects area at least 0.1 % of the frame"
    assert await page.get_attribute(APPLY, "aria-disabled") == "true", "nothing to apply"
    assert await page.is_hidden("#detection-persist"), "no config file to save to"
    await panel.screenshot(path=screenshots / "detection.png")

    # On a phone's touch screen, its controls are a finger's size; at 150 % text its rows wrap, not the page.
    phone, phone_console = await on_phone(browser, client, STREAM_VIEW)
    await phone.wait_for_function(SHOWN, timeout=WAIT_MS)
    opener = phone.locator("#detection-more > summary")
    assert (await opener.bounding_box())["height"] >= TARGET_PX
    await opener.tap()
    await phone.locator(APPLY).wait_for(timeout=WAIT_MS)
    assert await small_targets(phone) == []
    assert [box for box in await phone.evaluate(CHECKBOXES) if min(box[1:]) < CHECKBOX_PX] == []
    await phone.evaluate(LARGER_TEXT)
    assert await phone.evaluate(SIDEWAYS) <= 0
    await phone.locator(PANEL).screenshot(path=screenshots / "detection-phone.png")
    assert console.errors == [] and phone_console.errors == []


async def test_conf_classes_and_a_class_conf_set_in_the_panel_are_applied_as_one_patch_of_what_changed(
    start_server: Start, browser: Any
) -> None:
    client = await start_server(StreamConfig("cam", CAM))
    page, console = await _open(client, browser)
    etag = (await (await client.get("/api/streams/cam")).json())["etag"]
    panel = page.get_by_role("region", name="Detection")

    await panel.get_by_label("Confidence", exact=True).fill("0.3")
    assert await page.get_attribute(APPLY, "aria-disabled") == "false", "something to apply"
    await panel.get_by_role("checkbox", name="square", exact=True).check()
    await panel.get_by_label("disc confidence").fill("0.5")
    sent = await _apply(page)
    assert sent["body"] == {"conf": 0.3, "classes": ["square"], "class_filters": {"disc": {"conf": 0.5}}}
    assert sent["if_match"] == etag, "made over the settings the panel showed"
    assert "persist" not in sent["url"]
    options = await stream_options(client, lambda o: o["conf"] == 0.3)
    assert options["classes"] == ["square"] and options["class_filters"] == {"disc": {"conf": 0.5}}
    status = await _said(page, STATUS, "Applied:")
    said = "Applied: confidence 0.25 → 0.3; classes tracked: square; disc confidence 0.5."
    assert status == f"{said} {RESTARTED}", "a new conf restarts the stream's tracking"
    assert await page.get_attribute(APPLY, "aria-disabled") == "true"

    # Cleared, a class's confidence is taken out ({"conf": null}), and with it its filter: the stream's holds.
    # Disc is not tracked, so the stream's least confidence stays: made in place. Applied with Enter.
    disc = panel.get_by_label("disc confidence")
    await disc.fill("")
    async with page.expect_request(lambda request: request.method == "PATCH", timeout=WAIT_MS) as cleared:
        await disc.press("Enter")
    assert (await cleared.value).post_data_json == {"class_filters": {"disc": {"conf": None}}}
    await stream_options(client, lambda o: o["class_filters"] == {})
    assert await _said(page, STATUS, "Applied: disc") == f"Applied: disc: the stream's confidence. {IN_PLACE}"
    assert await disc.input_value() == ""
    assert console.errors == []


async def test_escape_keeps_the_view_while_an_edit_is_not_applied_and_leaves_it_after(
    start_server: Start, browser: Any
) -> None:
    """Escape leaves the stream view, but for a field's own: pressed on Apply with a confidence typed and
    not applied, it left the view and the edit with it."""
    client = await start_server(StreamConfig("cam", CAM))
    page, console = await _open(client, browser)
    panel = page.get_by_role("region", name="Detection")
    await panel.get_by_label("Confidence", exact=True).fill("0.3")
    await page.focus(APPLY)
    await page.keyboard.press("Escape")
    await page.keyboard.press("Escape")
    assert await page.evaluate("location.hash") == "#/stream/cam"
    assert await panel.get_by_label("Confidence", exact=True).input_value() == "0.3"

    await page.click("#detection-discard")
    await page.focus(APPLY)
    await page.keyboard.press("Escape")
    await page.wait_for_function("location.hash === '#/'", timeout=WAIT_MS)
    assert console.errors == []


async def test_the_summary_line_follows_the_server_during_an_edit_and_says_the_edit_is_not_applied(
    start_server: Start, browser: Any
) -> None:
    """With a confidence typed and the form folded away, a change made through the API left the summary line
    on the old settings, and nothing said an edit held the view (Escape did nothing)."""
    client = await start_server(StreamConfig("cam", CAM))
    page, console = await _open(client, browser)
    panel = page.get_by_role("region", name="Detection")
    await panel.get_by_label("Confidence", exact=True).fill("0.3")
    await page.click("#detection-more > summary")  # folded
    response = await client.patch("/api/streams/cam", json={"conf": 0.8})
    assert response.status == 200
    said = await _said(page, "#detection-summary", "confidence 0.8")
    assert said == "confidence 0.8 · tracking every class · edited below, not applied"
    await page.click("#detection-more > summary")
    await page.click("#detection-discard")
    assert await _said(page, "#detection-summary", "confidence 0.8") == "confidence 0.8 · tracking every class"
    assert await panel.get_by_label("Confidence", exact=True).input_value() == "0.8"
    assert console.errors == []


async def test_a_value_the_server_refuses_is_said_in_its_words_and_its_values_come_back(
    start_server: Start, browser: Any
) -> None:
    client = await start_server(StreamConfig("cam", CAM))
    page, console = await _open(client, browser)
    panel = page.get_by_role("region", name="Detection")
    conf = panel.get_by_label("Confidence", exact=True)

    await conf.fill("0")
    await panel.get_by_role("checkbox", name="disc", exact=True).check()
    sent = await _apply(page)
    assert sent["body"] == {"conf": 0, "classes": ["disc"]}
    error = await _said(page, ERROR, "Confidence:")
    assert error == (
        "Confidence: expected a number from 0.01 to 1, got 0 "
        "(below 0.01 the model's every faint guess is a detection, and starts a track)"
    )
    assert await page.get_attribute(ERROR, "role") == "alert"
    assert await conf.input_value() == "0.25", "the server's value back"
    assert not await panel.get_by_role("checkbox", name="disc", exact=True).is_checked(), "and its classes"
    assert await conf.get_attribute("aria-invalid") == "true"
    assert await page.evaluate("() => document.activeElement.id") == "detection-conf", "the field refused"
    assert await page.text_content(STATUS) == ""

    # A class's own confidence out of range: said of that class.
    await panel.get_by_label("square confidence").fill("1.5")
    await _apply(page)
    error = await _said(page, ERROR, "square")
    assert error == "square confidence: expected a number from 0.01 to 1, got 1.5"
    assert await panel.get_by_label("square confidence").input_value() == ""
    options = await stream_options(client, lambda o: True)
    assert (options["conf"], options["classes"], options["class_filters"]) == (0.25, [], {}), "nothing changed"
    assert console.errors == [BAD_REQUEST, BAD_REQUEST]


async def test_a_change_made_through_the_api_shows_up_in_the_panel_but_not_over_an_edit(
    start_server: Start, browser: Any
) -> None:
    client = await start_server(StreamConfig("cam", CAM))
    page, console = await _open(client, browser)
    panel = page.get_by_role("region", name="Detection")

    changed = {"conf": 0.55, "classes": ["triangle"], "class_filters": {"square": {"conf": 0.7}}}
    assert (await client.patch("/api/streams/cam", json=changed)).status == 200
    await _wait_for_value(page, "#detection-conf", "0.55")
    await _wait_for_value(page, '#detection-classes li[data-class="square"] input[type=number]', "0.7")
    assert await panel.get_by_role("checkbox", name="triangle", exact=True).is_checked()
    assert await page.text_content("#detection-summary") == "confidence 0.55 · tracking triangle · own filters: square"

    # Mid-edit, a change of another setting (a zone) is not shown over the edit, and the edit is made over it.
    await panel.get_by_label("Confidence", exact=True).fill("0.35")
    zone = {"name": "bay", "points": [[0.2, 0.2], [0.6, 0.2], [0.6, 0.7]], "units": "fraction"}
    assert (await client.patch("/api/streams/cam", json={"zones": [zone]})).status == 200
    await _apply(page)
    options = await stream_options(client, lambda o: o["conf"] == 0.35)
    assert [z["name"] for z in options["zones"]] == ["bay"], "the zone kept"
    await _said(page, STATUS, "Applied: confidence 0.55 → 0.35")

    # Mid-edit, a change of these settings elsewhere wins: the panel shows it and says so.
    await panel.get_by_label("Confidence", exact=True).fill("0.45")
    assert (await client.patch("/api/streams/cam", json={"conf": 0.65})).status == 200
    await _apply(page)
    error = await _said(page, ERROR, "Not applied")
    assert "changed elsewhere meanwhile" in error
    assert await panel.get_by_label("Confidence", exact=True).input_value() == "0.65"
    assert (await stream_options(client, lambda o: True))["conf"] == 0.65
    assert console.errors == [PRECONDITION_FAILED, PRECONDITION_FAILED], "one made again, one not"


async def test_with_save_to_config_file_ticked_the_change_is_written_there(
    start_server: Start, browser: Any, tmp_path: Path
) -> None:
    config_file = tmp_path / "segcast.toml"
    config_file.write_text(f'[[streams]]\nid = "cam"\nuri = "{CAM}"\n')
    client = await start_server(StreamConfig("cam", CAM), config_path=config_file)
    page, console = await _open(client, browser)
    panel = page.get_by_role("region", name="Detection")
    persist = panel.get_by_role("checkbox", name="Save to config file")
    await persist.wait_for(state="visible", timeout=WAIT_MS)
    assert not await persist.is_checked(), "unticked by default, as the shape panel's"

    # Unticked: applied, not saved, and said so.
    await panel.get_by_label("Confidence", exact=True).fill("0.3")
    sent = await _apply(page)
    assert "persist" not in sent["url"]
    status = await _said(page, STATUS, "Applied: confidence")
    assert status.endswith("Not saved to the config file: gone at a restart (tick Save to config file to keep it).")
    assert "conf" not in await asyncio.to_thread(config_file.read_text)

    await persist.check()
    await panel.get_by_label("square confidence").fill("0.6")
    sent = await _apply(page)
    assert sent["url"].endswith("?persist=1")

    async def written() -> bool:
        text = await asyncio.to_thread(config_file.read_text)
        return "conf = 0.3" in text and "square" in text and "0.6" in text

    await eventually(written, WAIT_MS / 1000, "the change in the config file")
    assert await _said(page, STATUS, "Applied: square") == f"Applied: square confidence 0.6. {IN_PLACE}"
    assert console.errors == []
