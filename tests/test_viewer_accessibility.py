"""The viewer and the publish page for people on a keyboard or a screen reader, in a real headless
Chromium against the real server: what the browser's accessibility tree says (read over CDP, as a
screen reader would get it), where the focus goes when what had it goes away, colours that keep
WCAG AA contrast (4.5:1), computed from the page's own styles, pages that larger text on a phone does not
scroll sideways, and what forced colours (a high contrast theme) leave of them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from server.config import StreamConfig
from server.events.config import EventsSettings, HistorySettings
from tests import test_webrtc_browser
from tests.support.browser import (
    WAIT_MS,
    open_page,
    open_url,
    require_browser,
    wait_for_new_frame,
    wait_for_text,
)
from tests.support.ports import free_port
from tests.support.prefix_proxy import PrefixProxy
from tests.support.zone_page import STREAM_VIEW
from tests.test_viewer_event_paging import store, zone_enter
from tests.test_webrtc_browser import camera_browser
from tests.test_webrtc_publish_page import PUBLISHING

require_browser()

Start = Callable[..., Awaitable[TestClient]]

pytestmark = pytest.mark.timeout(120)

fake_camera = test_webrtc_browser.fake_camera  # the generated camera file, a fixture here too

AA_CONTRAST = 4.5
# A small, fast scene: objects cross it (and their tracks end) in a few seconds.
QUICK_SCENE = "scene:?seed=3&fps=30&width=320&height=192"
# As small and fast, three objects tracked at once ~5 s after it starts, for `PAUSE_ON_THREE_TRACKS`: seed 3's
# scene took 10 s to have three, and 20 at its default size and rate.
THREE_TRACKS_SCENE = "scene:?seed=11&fps=30&width=320&height=192"
VIEW_PANEL = "#stream-view .status-panel"
#: For `page.wait_for_function`: pause the stream view on the first frame drawn with three tracks or
#: more, in the same step as the check, so a frame with fewer cannot be drawn in between.
PAUSE_ON_THREE_TRACKS = """() => {
    if ((document.querySelector('#video').dataset.tracks || '').split(',').filter(Boolean).length < 3) return false;
    document.querySelector('#pause').click();
    return true;
}"""
#: The track of the row that has the keyboard focus ("table": the table itself), or None outside it.
FOCUSED_ROW = "document.activeElement.closest('#tracks') ? (document.activeElement.dataset.track ?? 'table') : null"
#: The tracks whose rows are in the page's tab order.
TAB_STOPS = """[...document.querySelectorAll('#tracks tbody tr')]
  .filter((row) => row.tabIndex >= 0).map((row) => row.dataset.track)"""
#: Shows the tracks `ids` in the table, as a frame with those tracks would (no frame comes while paused).
SHOW_TRACKS = """async (ids) => {
  const { StreamView } = await import("./static/stream.js");
  const view = { el: { trackCount: document.querySelector('#track-count'),
                       trackBody: document.querySelector('#tracks tbody') },
                 highlighted: () => null };
  const tracks = ids.map((id) => ({ id, class: "disc", conf: 0.9, age: 1 }));
  StreamView.prototype.showTracks.call(view, { tracks });
}"""

#: What says whether the button at a selector can be pressed, as the page computes its style.
BUTTON_LOOK = """(selector) => {
  const style = getComputedStyle(document.querySelector(selector));
  return { cursor: style.cursor, opacity: Number(style.opacity) };
}"""
#: WCAG's contrast ratio of an element's text colour (that of its `pseudo` element, such as its
#: "::placeholder", where given) to a background colour (the element's own, or that of the nearest
#: ancestor matching `against`), both as the page computes them.
CONTRAST = """([selector, against, pseudo]) => {
  const element = document.querySelector(selector);
  const back = against ? element.closest(against) : element;
  const channels = (colour) => colour.match(/[\\d.]+/g).slice(0, 3).map(Number);
  const luminance = (colour) => {
    const [r, g, b] = channels(colour).map((v) => {
      const c = v / 255;
      return c <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const text = luminance(getComputedStyle(element, pseudo).color);
  const fill = luminance(getComputedStyle(back).backgroundColor);
  return (Math.max(text, fill) + 0.05) / (Math.min(text, fill) + 0.05);
}"""

#: How politely a screen reader speaks a change to the element: the nearest live region's setting.
POLITENESS = """(selector) => {
  const implied = {status: "polite", log: "polite", alert: "assertive"};
  for (let node = document.querySelector(selector); node; node = node.parentElement) {
    if (node.hasAttribute("aria-live")) return node.getAttribute("aria-live");
    if (implied[node.getAttribute("role")]) return implied[node.getAttribute("role")];
  }
  return "off";
}"""

#: What has the keyboard's focus: ``TAG#id.classes``, or ``BODY`` where it fell to the page.
FOCUSED = """(() => {
  const e = document.activeElement;
  return e.tagName + (e.id ? '#' + e.id : '') + (e.className ? '.' + e.className : '');
})()"""
OLDER_BUTTON = "BUTTON.quiet event-older"
#: Zone entries in the history: the list shows 20, then 40, 60 and all 70 ("Show older events" three times).
STORED_EVENTS = 70
#: The phone that larger text (150 % of the browser's font size, as a setting or a zoom of text only) is read on.
PHONE = {"width": 375, "height": 667}
LARGER_TEXT = "document.documentElement.style.fontSize = '150%'"
#: How far the page scrolls sideways: how much wider its content is than its window, in CSS pixels.
SIDEWAYS = "document.documentElement.scrollWidth - document.documentElement.clientWidth"
#: Whether any part of the element at the selector is inside the window.
ON_SCREEN = """(selector) => {
  const { top, bottom, left, right } = document.querySelector(selector).getBoundingClientRect();
  return bottom > 0 && top < innerHeight && right > 0 && left < innerWidth;
}"""
#: A zone over the whole picture: every track is in it, and the track table's zones column lists it.
EVERYWHERE = {"name": "everywhere", "points": [[0, 0], [1, 0], [1, 1], [0, 1]], "units": "fraction"}
#: Whether each part of a tile's caption shows all of its text: its node, its id and its rate.
CAPTION_CLIPPED = """(card) => Object.fromEntries(['.card-node', '.stream-id', 'small'].map((selector) => {
  const part = document.querySelector(card).querySelector(`.card-caption ${selector}`);
  return [selector, { shown: part.clientWidth, whole: part.scrollWidth }];
}))"""
#: A track's swatch, its colour as the page computes it and as set, and the connection badge's border.
FORCED_LOOK = """() => {
  const swatch = document.querySelector('#tracks .swatch');
  const badge = getComputedStyle(document.querySelector('#connection'));
  return { swatch: getComputedStyle(swatch).backgroundColor, colour: swatch.style.backgroundColor,
           badge: badge.borderTopStyle + ' ' + badge.borderTopWidth };
}"""


async def ax_nodes(page: Any, role: str) -> list[dict[str, Any]]:
    """The page's accessibility nodes of ``role``, as Chromium hands them to a screen reader:
    ``{"name": ..., <property>: <value>, ...}``."""
    cdp = await page.context.new_cdp_session(page)
    tree = await cdp.send("Accessibility.getFullAXTree")
    await cdp.detach()
    return [
        {"name": node.get("name", {}).get("value", "")}
        | {prop["name"]: prop["value"].get("value") for prop in node.get("properties", [])}
        for node in tree["nodes"]
        if node.get("role", {}).get("value") == role and not node.get("ignored")
    ]


async def test_the_stream_view_names_its_stream_and_keeps_the_keyboard_where_it_was(
    start_server: Start, browser: Any
) -> None:
    client = await start_server(StreamConfig("cam", QUICK_SCENE))
    page, console = await open_page(browser, client, "/?transport=ws")
    await page.wait_for_selector(".card[data-stream='cam']", timeout=WAIT_MS)
    assert await page.title() == "segcast"
    assert await page.locator("#grid-view h1").count() == 1, "the grid view has a heading to start from"

    await page.evaluate("location.hash = '#/stream/cam'")
    await page.wait_for_function("document.title === 'cam · segcast'", timeout=WAIT_MS)
    await wait_for_new_frame(page, "#video")
    assert await page.get_attribute("#video", "role") == "img"
    assert await page.get_attribute("#video", "aria-label") == "live video of cam, tracks listed below"

    # A shape cancelled with Escape: said, and the focus back on the button that started it.
    await page.focus("#add-zone")
    await page.keyboard.press("Enter")
    await page.wait_for_function("document.activeElement?.id === 'video'", timeout=WAIT_MS)
    await page.keyboard.press("Enter")
    assert await page.text_content("#shape-status") == "Point 1 added at 50 %, 50 %."
    await page.keyboard.press("Escape")
    assert await page.text_content("#shape-status") == "Cancelled."
    assert await page.evaluate("document.activeElement.id") == "add-zone"

    # Enter on a track's row pins it, and a screen reader is told which row is pinned.
    await page.wait_for_function("(document.querySelector('#video').dataset.tracks || '') !== ''", timeout=WAIT_MS)
    oldest = await page.evaluate("document.querySelector('#tracks tbody tr').dataset.track")
    await page.focus(f"#tracks tbody tr[data-track='{oldest}']")
    await page.keyboard.press("Enter")
    assert await page.get_attribute(f"#tracks tbody tr[data-track='{oldest}']", "aria-selected") == "true"
    selected = [row["name"] for row in await ax_nodes(page, "row") if row.get("selected")]
    assert [name.split()[0] for name in selected] == [oldest], f"rows said to be selected: {selected}"
    grids = [grid["name"] for grid in await ax_nodes(page, "grid")]
    assert len(grids) == 1 and grids[0].lower().startswith("tracks"), f"the track table as a grid: {grids}"

    # Its track ends: the focus goes on to another row (or the table), not to the page's top.
    await page.wait_for_function(
        "(id) => !document.querySelector(`#tracks tbody tr[data-track='${id}']`)", arg=oldest, timeout=WAIT_MS
    )
    focused = await page.evaluate("document.activeElement.closest('#tracks') !== null")
    assert focused, "the focus stays in the track table"

    await page.evaluate("location.hash = '#/'")
    await page.wait_for_function("document.title === 'segcast'", timeout=WAIT_MS)
    assert console.errors == []


async def test_the_track_table_is_one_tab_stop_with_the_arrow_keys_between_its_rows(
    start_server: Start, browser: Any
) -> None:
    """Every row was a tab stop of its own, and no arrow key moved between them: a grid is one stop."""
    client = await start_server(StreamConfig("cam", THREE_TRACKS_SCENE))
    page, console = await open_page(browser, client, "/?transport=ws#/stream/cam")
    await page.wait_for_function(PAUSE_ON_THREE_TRACKS, timeout=WAIT_MS)  # its rows stay while it is paused
    rows = await page.evaluate("[...document.querySelectorAll('#tracks tbody tr')].map((row) => row.dataset.track)")

    # Tab leaves the table from its row; Tab and Shift+Tab each enter it at one row, the first.
    await page.focus(f"#tracks tbody tr[data-track='{rows[0]}']")
    for key, focused in (("Tab", None), ("Shift+Tab", rows[0]), ("Shift+Tab", None), ("Tab", rows[0])):
        await page.keyboard.press(key)
        assert await page.evaluate(FOCUSED_ROW) == focused, f"after {key}"

    # The arrow keys, Home and End move between its rows.
    for key, focused in (("ArrowDown", rows[1]), ("End", rows[-1]), ("ArrowUp", rows[-2]), ("Home", rows[0])):
        await page.keyboard.press(key)
        assert await page.evaluate(FOCUSED_ROW) == focused, f"after {key}"

    # The row the keyboard was on stays the table's one tab stop.
    await page.keyboard.press("ArrowDown")
    await page.keyboard.press("Enter")
    assert await page.get_attribute(f"#tracks tbody tr[data-track='{rows[1]}']", "aria-selected") == "true"
    await page.keyboard.press("Tab")
    assert await page.evaluate(FOCUSED_ROW) is None
    await page.keyboard.press("Shift+Tab")
    assert await page.evaluate(FOCUSED_ROW) == rows[1]
    assert await page.evaluate(TAB_STOPS) == [rows[1]]
    # The keyboard moves on from the pinned row: its row, not the pinned one, stays the stop as the rows'
    # marks change (the mouse over another row highlights that one).
    await page.keyboard.press("ArrowDown")
    await page.hover(f"#tracks tbody tr[data-track='{rows[0]}']")
    assert await page.locator(f"#tracks tbody tr.highlight[data-track='{rows[0]}']").count() == 1
    assert await page.evaluate(TAB_STOPS) == [rows[2]], "the keyboard's row, not the pinned one"

    # Its tracks all end: the table holds the focus; when rows come again the arrows reach them, and the
    # table, no longer holding it, leaves the tab order.
    await page.evaluate(SHOW_TRACKS, [])
    assert await page.evaluate(FOCUSED_ROW) == "table"
    await page.evaluate(SHOW_TRACKS, [7, 8, 9])
    await page.keyboard.press("ArrowDown")
    assert await page.evaluate(FOCUSED_ROW) == "7"
    assert await page.get_attribute("#tracks", "tabindex") is None
    # The last row's track ends while it has the focus: the focus goes to the row before it.
    await page.keyboard.press("End")
    await page.evaluate(SHOW_TRACKS, [7, 8])
    assert await page.evaluate(FOCUSED_ROW) == "8", "the row before the last one, not the first"
    assert console.errors == []


async def test_a_notice_speaks_its_state_not_every_tick_of_its_countdown_in_readable_colours(
    start_server: Start, browser: Any
) -> None:
    client = await start_server(
        StreamConfig("door", f"rtsp://127.0.0.1:{free_port()}/stream"), StreamConfig("cam", QUICK_SCENE)
    )
    page, console = await open_page(browser, client, "/?transport=ws#/stream/door")
    await wait_for_text(page, VIEW_PANEL, "next attempt in")
    assert await page.evaluate(POLITENESS, f"{VIEW_PANEL} strong") == "polite", "the state is said"
    assert await page.evaluate(POLITENESS, f"{VIEW_PANEL} .status-reason") == "polite", "and why"
    assert await page.evaluate(POLITENESS, f"{VIEW_PANEL} .status-countdown") == "off", "not each second"

    # Red text on a panel, and white text on a red badge, each at least 4.5:1.
    await page.evaluate(
        """() => { for (const state of ["failed", "unreachable", "unauthorized"]) {
             const badge = document.createElement("span");
             badge.className = `badge state-${state}`;
             badge.textContent = state;
             document.querySelector(".player-head").append(badge);
           } }"""
    )
    checks = [["#shape-error", ".panel"], ["#add-error", ".panel"]]
    checks += [[f".player-head .state-{state}", None] for state in ("failed", "unreachable", "unauthorized")]
    for selector, against in checks:
        ratio = await page.evaluate(CONTRAST, [selector, against])
        assert ratio >= AA_CONTRAST, f"{selector}: {ratio:.2f}:1"
    assert console.errors == []


async def test_the_token_dialog_is_named_and_gives_the_focus_back(start_server: Start, browser: Any) -> None:
    client = await start_server(viewer_tokens=("viewer-token-for-the-a11y-test",))
    page, _ = await open_page(browser, client, "/")
    dialog = page.locator("#token-dialog[open]")
    await dialog.wait_for(timeout=WAIT_MS)
    named = [node["name"] for node in await ax_nodes(page, "dialog")]
    assert named == ["This segcast server needs an access token"]
    await dialog.locator("button.quiet").click()  # Not now
    # Closed before the button is focused: while the modal dialog is open the rest of the page is inert,
    # so the focus and the Enter went nowhere (flaky in CI).
    await dialog.wait_for(state="detached", timeout=WAIT_MS)

    await page.focus("#give-token")
    await page.keyboard.press("Enter")
    await dialog.wait_for(timeout=WAIT_MS)
    await page.keyboard.press("Escape")
    await dialog.wait_for(state="detached", timeout=WAIT_MS)
    assert await page.evaluate("document.activeElement.id") == "give-token"


async def test_a_disabled_button_does_not_look_like_one_to_press(start_server: Start, browser: Any) -> None:
    """The publish page's "Use my camera", off on a page that is not secure, kept the pointer and the
    full colour of a button that works (style.css had a disabled look for a few buttons only)."""
    client = await start_server()
    page, console = await open_page(browser, client, "/static/publish.html")
    enabled = await page.evaluate(BUTTON_LOOK, "#use-camera")
    await page.evaluate("document.querySelector('#use-camera').disabled = true")
    disabled = await page.evaluate(BUTTON_LOOK, "#use-camera")
    assert enabled == {"cursor": "pointer", "opacity": 1}, enabled
    assert disabled["cursor"] != "pointer" and disabled["opacity"] < 1, disabled
    assert console.errors == []


async def test_the_publish_page_says_once_why_its_camera_is_off_and_leaves_nothing_of_it(
    start_server: Start, fake_camera: Path
) -> None:
    client = await start_server()
    async with camera_browser(fake_camera) as browser:
        # Over plain http:// from a name other than localhost (served here through the test server),
        # as a phone on the Wi-Fi would open it: no secure context, so no camera.
        insecure = await browser.new_page()
        real = str(client.make_url("/"))

        async def forward(route: Any) -> None:
            response = await route.fetch(url=route.request.url.replace("http://segcast.test/", real))
            await route.fulfill(response=response)

        await insecure.route("http://segcast.test/**", forward)
        await insecure.goto("http://segcast.test/static/publish.html")
        assert await insecure.evaluate("window.isSecureContext") is False
        said = await wait_for_text(insecure, "#publish-error", "secure page")
        assert said.startswith("The camera needs a secure page") and "“A phone on the same Wi-Fi”" in said
        assert await insecure.is_disabled("#use-camera"), "a button that can only fail is off"
        assert await insecure.evaluate(CONTRAST, ["#publish-error", ".panel"]) >= AA_CONTRAST

        # The server ends a camera that was playing back with tracks: none of them stays, nor its mode.
        page = await browser.new_page()
        await page.goto(str(client.make_url("/static/publish.html")))
        await page.fill("input[name=stream]", "browser")
        await page.click("#use-camera")
        await page.wait_for_function(
            "document.getElementById('play-mode').textContent !== ''"
            " && document.querySelectorAll('#tracks tbody tr').length > 0",
            timeout=WAIT_MS,
        )
        assert (await client.delete("/api/streams/browser")).status == 204
        await wait_for_text(page, "#publish-error", "The server ended this camera")
        assert await page.text_content("#publish-status") == "camera off"
        assert await page.locator("#tracks tbody tr").count() == 0
        assert await page.text_content("#play-mode") == ""
        assert await page.locator("main h1").count() == 1, "the page has a heading to start from"


async def test_show_older_events_keeps_the_keyboard_on_it_and_hands_it_on_when_it_goes(
    start_server: Start, browser: Any, tmp_path: Path
) -> None:
    """The button turned itself off while it loaded (`disabled`), which threw the focus to the page's
    top: a second Enter did nothing, and on the last page it went away with the focus."""
    client = await start_server(
        StreamConfig("cam", "scene:?seed=3"), events=EventsSettings(HistorySettings(tmp_path / "events.db"))
    )
    start = time.time() - 600
    await store(client, [[zone_enter(n, start + n)] for n in range(STORED_EVENTS)])
    page, console = await open_page(browser, client, STREAM_VIEW)
    listed = page.locator("#events li")
    await page.wait_for_function("document.querySelectorAll('#events li').length === 20", timeout=WAIT_MS)

    # While a page loads the button says it is busy, and keeps the focus.
    held: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    async def hold_the_first(route: Any) -> None:
        if held.done():
            await route.continue_()
        else:
            held.set_result(route)

    await page.route("**/api/events?*", hold_the_first)
    await page.focus(".event-older")
    await page.keyboard.press("Enter")
    route = await asyncio.wait_for(held, WAIT_MS / 1000)
    assert await page.get_attribute(".event-older", "aria-disabled") == "true"
    assert await page.evaluate(FOCUSED) == OLDER_BUTTON
    await route.continue_()  # the later reads go on unheld
    await page.wait_for_function("document.querySelectorAll('#events li').length === 40", timeout=WAIT_MS)
    assert await page.evaluate(FOCUSED) == OLDER_BUTTON
    assert await page.get_attribute(".event-older", "aria-disabled") != "true", "Enter again shows the next page"

    await page.keyboard.press("Enter")
    await page.wait_for_function("document.querySelectorAll('#events li').length === 60", timeout=WAIT_MS)
    # The last page: the button goes, and the focus to the first event it brought, where reading goes on.
    await page.keyboard.press("Enter")
    await page.locator(".event-older").wait_for(state="hidden", timeout=WAIT_MS)
    assert await listed.count() == STORED_EVENTS
    first_new = await listed.nth(60).text_content()
    assert await page.evaluate("document.activeElement.closest('#events li')?.textContent") == first_new
    assert await page.text_content("#events-summary") == "10 older events shown"
    assert console.errors == []


async def test_the_camera_buttons_hand_the_focus_to_each_other(start_server: Start, fake_camera: Path) -> None:
    """Use my camera turned itself off, and Stop hid itself, while it had the focus: it fell to the page."""
    client = await start_server()
    async with camera_browser(fake_camera) as browser:
        page = await browser.new_page()
        await page.goto(str(client.make_url("/static/publish.html")))
        await page.fill("input[name=stream]", "kbcam")
        await page.focus("#use-camera")
        await page.keyboard.press("Enter")
        await page.wait_for_function(PUBLISHING, timeout=WAIT_MS)
        assert await page.evaluate(FOCUSED) == "BUTTON#stop-camera"

        await page.keyboard.press("Enter")
        await wait_for_text(page, "#publish-status", "camera off")
        assert await page.evaluate(FOCUSED) == "BUTTON#use-camera"

        # The server ends it (the page gives up on it): the same.
        await page.keyboard.press("Enter")
        await page.wait_for_function(PUBLISHING, timeout=WAIT_MS)
        assert await page.evaluate(FOCUSED) == "BUTTON#stop-camera"
        assert (await client.delete("/api/streams/kbcam")).status == 204
        await wait_for_text(page, "#publish-error", "The server ended this camera")
        assert await page.evaluate(FOCUSED) == "BUTTON#use-camera"


async def test_pause_is_one_toggle_button_whose_name_stays(start_server: Start, browser: Any) -> None:
    """It was "Pause", then "Resume" and pressed: a screen reader heard a paused player as pressed Resume."""
    client = await start_server(StreamConfig("cam", QUICK_SCENE))
    page, console = await open_page(browser, client, "/?transport=ws#/stream/cam")
    await wait_for_new_frame(page, "#video")
    pause = {"name": "Pause", "exact": True}
    assert await page.get_by_role("button", pressed=False, **pause).count() == 1
    await page.click("#pause")
    assert await page.get_by_role("button", pressed=True, **pause).count() == 1, "paused: pressed, named the same"
    await page.click("#pause")
    assert await page.get_by_role("button", pressed=False, **pause).count() == 1
    assert console.errors == []


async def test_larger_text_on_a_phone_does_not_scroll_either_page_sideways(start_server: Start, browser: Any) -> None:
    """At 150 % text on a 375 px phone the publish page's panels (18rem at least) and the stream view's
    track table (its zones column) were wider than the window: each page scrolled sideways."""
    client = await start_server(StreamConfig("cam", THREE_TRACKS_SCENE))
    assert (await client.patch("/api/streams/cam", json={"zones": [EVERYWHERE]})).status == 200
    page, console = await open_page(browser, client, "/static/publish.html", PHONE)
    await page.evaluate(LARGER_TEXT)
    assert await page.evaluate(SIDEWAYS) <= 0, "the publish page"

    page, console = await open_page(browser, client, "/?transport=ws#/stream/cam", PHONE)
    await page.evaluate(LARGER_TEXT)
    await page.wait_for_function(PAUSE_ON_THREE_TRACKS, timeout=WAIT_MS)
    assert await page.locator("#tracks tbody td", has_text=EVERYWHERE["name"]).count() > 0, "zones listed"
    assert await page.evaluate(SIDEWAYS) <= 0, "the stream view"
    assert console.errors == []


async def test_larger_text_on_a_phone_keeps_a_fleet_tiles_node_and_rate_whole(
    start_server: Start, browser: Any
) -> None:
    """The node name shrank to a 4 px sliver, and the rate was cut ("0 fps · / watchin")."""
    node = await start_server(StreamConfig("cam", QUICK_SCENE))
    proxy = PrefixProxy(node.make_url("/"), "/node-1")
    entrance = await proxy.start()
    try:
        page, console = await open_url(browser, str(entrance / "static/fleet.html"), PHONE)
        await page.evaluate(LARGER_TEXT)
        card = '.card[data-node="node-1"][data-stream="cam"]'
        await page.wait_for_selector(f"{card} .badge.state-live", timeout=WAIT_MS)
        await page.wait_for_function(
            f"document.querySelector('{card} small').textContent.includes('watching')", timeout=WAIT_MS
        )
        parts = await page.evaluate(CAPTION_CLIPPED, card)
        for selector, width in parts.items():
            assert width["whole"] <= width["shown"], (selector, parts)
        assert await page.evaluate(SIDEWAYS) <= 0
        assert console.errors == []
    finally:
        await proxy.close()


async def test_placeholders_are_readable_and_an_optional_field_says_so_in_its_label(
    start_server: Start, browser: Any
) -> None:
    """Placeholders kept the browser's grey, 4.08:1 on the page's dark fields."""
    client = await start_server()
    page, console = await open_page(browser, client, "/static/publish.html")
    ratio = await page.evaluate(CONTRAST, ["input[name=stream]", None, "::placeholder"])
    assert ratio >= AA_CONTRAST, f"{ratio:.2f}:1"
    assert await page.get_by_role("textbox", name="Stream id (optional)").count() == 1
    page, _ = await open_page(browser, client, "/")
    ratio = await page.evaluate(CONTRAST, ["#add-form input[name=uri]", None, "::placeholder"])
    assert ratio >= AA_CONTRAST, f"{ratio:.2f}:1"
    assert console.errors == []


async def test_enter_on_the_selected_shape_in_the_list_takes_the_keyboard_to_the_picture(
    start_server: Start, browser: Any
) -> None:
    """From the list to the picture, to move a corner, took 14 Shift+Tab."""
    client = await start_server(StreamConfig("cam", QUICK_SCENE))
    assert (await client.patch("/api/streams/cam", json={"zones": [EVERYWHERE]})).status == 200
    page, console = await open_page(browser, client, "/?transport=ws#/stream/cam")
    await wait_for_new_frame(page, "#video")
    await page.focus('#shape-list li[data-shape="zone:everywhere"] button')
    await page.keyboard.press("Enter")  # selects it
    await page.wait_for_selector('#shape-list li.selected[data-shape="zone:everywhere"]', timeout=WAIT_MS)
    await page.keyboard.press("Enter")  # and again: to its corners
    assert await page.evaluate(FOCUSED) == "CANVAS#video.editing"
    assert "Enter on the selected shape" in await page.text_content("#shape-hint")
    await page.keyboard.press("ArrowRight")
    assert (await page.text_content("#shape-status") or "").startswith("Corner 1 at"), "its keys move a corner"
    assert console.errors == []


async def test_add_zone_on_a_small_screen_brings_a_picture_out_of_sight_into_view(
    start_server: Start, browser: Any
) -> None:
    """At 400 % zoom (320 x 256 CSS px) Add zone focused the picture, scrolled wholly out of sight, unscrolled."""
    client = await start_server(StreamConfig("cam", QUICK_SCENE))
    page, console = await open_page(browser, client, "/?transport=ws#/stream/cam", {"width": 320, "height": 256})
    await wait_for_new_frame(page, "#video")
    await page.focus("#add-zone")
    assert not await page.evaluate(ON_SCREEN, "#video"), "the test needs the picture out of sight"
    await page.keyboard.press("Enter")
    await page.wait_for_function("document.activeElement?.id === 'video'", timeout=WAIT_MS)
    assert await page.evaluate(ON_SCREEN, "#video")
    assert console.errors == []


async def test_forced_colours_keep_the_track_swatches_and_the_badges_outlines(
    start_server: Start, browser: Any
) -> None:
    """Windows' high contrast themes drop backgrounds: the swatches vanished and the badges lost their pill."""
    client = await start_server(StreamConfig("cam", THREE_TRACKS_SCENE))
    page, console = await open_page(browser, client, "/?transport=ws#/stream/cam")
    await page.emulate_media(forced_colors="active")
    await page.wait_for_function(PAUSE_ON_THREE_TRACKS, timeout=WAIT_MS)
    look = await page.evaluate(FORCED_LOOK)
    assert look["swatch"] == look["colour"], look
    assert look["badge"] == "solid 1px", look
    assert console.errors == []
