"""The viewer and the embed page, in a real headless Chromium, for streams and servers that are not well.

What keeps a picture from showing is said over the picture itself (the state, the reason, and while
segcast retries, the countdown to the next attempt), so a phone, which has no hover, shows it too.
Every wait is on something the page shows, with a deadline; none is a fixed sleep.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from server.app import create_app
from server.config import Settings, StreamConfig
from server.inference.models import BUNDLED_MODEL
from server.scene import Scene, write_y4m
from server.sources.backoff import RECONNECT_MAX_S
from tests.support.browser import (
    DESKTOP,
    PHONE,
    WAIT_MS,
    Console,
    open_page,
    open_url,
    require_browser,
    wait_for_new_frame,
    wait_for_text,
)
from tests.support.ports import free_port

require_browser()

Start = Callable[..., Awaitable[TestClient]]

pytestmark = pytest.mark.timeout(120)

MISSING_FILE = "/no/such/file.mp4"
TILE_PANEL = '.card[data-stream="{}"] .status-panel'
VIEW_PANEL = "#stream-view .status-panel"
EMBED_PANEL = ".status-panel"
COUNTDOWN = re.compile(r"next attempt in (\d+) s")
TILE_RATE = '.card[data-stream="{}"] .card-caption small'
HOUR_S = 3600
#: The ids of the rows of the track table, in order.
TABLE_IDS = "() => [...document.querySelectorAll('#tracks tbody tr')].map((row) => Number(row.dataset.track))"
#: Whether the page is wider than the screen (a phone would scroll sideways), and by how much.
OVERFLOW = "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
#: How many lines the text of the element at the selector takes.
TEXT_LINES = """(selector) => {
  const range = document.createRange();
  range.selectNodeContents(document.querySelector(selector));
  return new Set([...range.getClientRects()].map((rect) => Math.round(rect.top))).size;
}"""
#: Watches the countdown of the panel at the selector until it is next drawn with an attempt to count down
#: to (each tick of the page's clock draws it): its words, that attempt and the page's server time it
#: counted from, read in the task that drew it, before any answer can move that time (window.countdownSeen).
#: The page's own api.js, from beside its app.js (under the viewer's tag): another URL is another module.
WATCH_NEXT_COUNTDOWN = """async (selector) => {
  const app = document.querySelector("script[type=module]").src;
  const { serverNow } = await import(new URL("api.js", app));
  const countdown = document.querySelector(selector).querySelector(".status-countdown");
  window.countdownSeen = null;
  const observer = new MutationObserver(() => {
    if (countdown.dataset.at === "") return;
    observer.disconnect();
    window.countdownSeen = { text: countdown.textContent, at: Number(countdown.dataset.at), now: serverNow() };
  });
  observer.observe(countdown, { childList: true });
}"""


def closed_port_camera() -> str:
    """An RTSP address where nothing listens: every attempt is refused, and segcast keeps retrying."""
    return f"rtsp://127.0.0.1:{free_port()}/stream"


async def test_a_failed_stream_says_why_on_its_tile_and_in_its_view(
    start_server: Start, browser: Any, screenshots: Path
) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=3"), StreamConfig("lobby", MISSING_FILE))
    page, console = await open_page(browser, client, "/")
    tile = await wait_for_text(page, TILE_PANEL.format("lobby"), "Failed")
    assert f"no such file: {MISSING_FILE}" in tile, "the reason is on the tile, not in a tooltip"
    assert not await page.is_visible(TILE_PANEL.format("cam")), "a live stream's picture is not covered"
    await page.screenshot(path=screenshots / "grid.png")

    await page.click('.card[data-stream="lobby"]')
    view = await wait_for_text(page, VIEW_PANEL, "Failed")
    assert f"no such file: {MISSING_FILE}" in view
    assert await page.inner_text("#stream-state") == "failed"
    await page.screenshot(path=screenshots / "stream.png")
    assert console.errors == []


async def test_a_file_that_ended_says_how_to_play_it_again_and_that_way_plays_it(
    start_server: Start, browser: Any, tmp_path: Path, screenshots: Path
) -> None:
    """The hint said only to loop it, which plays it over and over with its counts adding up: playing it
    again once, its counts from zero, is a PATCH of its settings as they are. Three seconds of video: long
    enough to be seen playing between its two ends."""
    clip = write_y4m(Scene(seed=3), tmp_path / "clip.y4m", 45)
    client = await start_server(StreamConfig("clip", str(clip), loop=False))
    page, console = await open_page(browser, client, "/")
    tile = await wait_for_text(page, TILE_PANEL.format("clip"), "the video reached its end")
    assert 'PATCH {"loop": false}' in tile and '{"loop": true}' in tile and "loop = true" in tile, tile
    await page.screenshot(path=screenshots / "grid.png")

    await page.click('.card[data-stream="clip"]')
    view = await wait_for_text(page, VIEW_PANEL, "the video reached its end")
    assert 'PATCH {"loop": false}' in view and '{"loop": true}' in view, view
    await page.screenshot(path=screenshots / "stream.png")
    # What the hint says does what it says: the video plays again, once, and the notice goes until it ends.
    assert (await client.patch("/api/streams/clip", json={"loop": False})).status == 200
    await page.locator(VIEW_PANEL).wait_for(state="hidden", timeout=WAIT_MS)
    await wait_for_new_frame(page, "#video")
    await wait_for_text(page, VIEW_PANEL, "the video reached its end")
    assert console.errors == []


async def test_the_embed_of_a_file_that_ended_leaves_the_operators_hint_out(
    start_server: Start, browser: Any, tmp_path: Path
) -> None:
    """A dashboard's visitor cannot change the stream: the API and the config file are not theirs to see."""
    clip = write_y4m(Scene(seed=3), tmp_path / "clip.y4m", 15)
    client = await start_server(StreamConfig("clip", str(clip), loop=False))
    page, console = await open_page(browser, client, "/embed/clip")
    text = await wait_for_text(page, EMBED_PANEL, "the video reached its end")
    assert "loop" not in text, text
    assert console.errors == []


async def test_a_reconnecting_tiles_rate_and_viewers_stay_whole_on_one_line(
    start_server: Start, browser: Any, screenshots: Path
) -> None:
    """Its long badge leaves the rate no room beside the id: "0 fps · 1" over "watching" split the phrase."""
    client = await start_server(StreamConfig("blackhole", closed_port_camera()))
    page, console = await open_page(browser, client, "/", DESKTOP)
    await page.wait_for_selector('.card[data-stream="blackhole"] .badge.state-reconnecting', timeout=WAIT_MS)
    await wait_for_text(page, TILE_RATE.format("blackhole"), "0 fps · 1 watching")
    await page.screenshot(path=screenshots / "grid.png")
    assert await page.evaluate(TEXT_LINES, TILE_RATE.format("blackhole")) == 1
    assert await page.evaluate(OVERFLOW) == 0
    assert console.errors == []


async def test_a_reconnecting_camera_counts_down_to_its_next_attempt(
    start_server: Start, browser: Any, screenshots: Path
) -> None:
    """In a browser whose clock is an hour behind the server's (a phone set by hand): the countdown is to
    the server's ``next_attempt_at``, on the server's clock, as the answers' Date header has it, and says
    the seconds left until it."""
    client = await start_server(StreamConfig("door", closed_port_camera()))
    page = await browser.new_page(viewport=DESKTOP)
    console = Console(page)
    await page.clock.install(time=time.time() - HOUR_S)
    await page.goto(str(client.make_url("/")))
    panel = TILE_PANEL.format("door")
    for where in ("tile", "view"):
        # The retries back off (0.5 s, 1, 2, 4 ...): soon one is far enough away to watch it count down.
        # Text and attempt read in the same step: the attempt may come a moment later and start a new countdown.
        shown = await page.wait_for_function(
            """(selector) => { const panel = document.querySelector(selector);
                 const text = panel?.innerText ?? "";
                 const seconds = Number(/next attempt in (\\d+) s/.exec(text)?.[1]);
                 if (!/Reconnecting/.test(text) || !(seconds >= 3)) return null;
                 return {text, attempt: panel.querySelector('.status-countdown').dataset.at}; }""",
            arg=panel,
            timeout=WAIT_MS,
        )
        seen = await shown.json_value()
        text, attempt = seen["text"], seen["attempt"]
        assert "connection refused" in text, "the reason is shown with the state"
        first = int(COUNTDOWN.search(text)[1])  # type: ignore[index]
        assert first <= RECONNECT_MAX_S + 1, f"{first} s: counted on the browser's clock, not the server's"
        await page.wait_for_function(
            """([selector, first, attempt]) => { const panel = document.querySelector(selector);
                 const shown = Number(/next attempt in (\\d+) s/.exec(panel.innerText)?.[1]);
                 const same = panel.querySelector('.status-countdown').dataset.at === attempt;
                 return same && shown >= 1 && shown < first; }""",
            arg=[panel, first, attempt],
            timeout=WAIT_MS,
            polling=100,
        )
        assert await _shown_attempt_is_the_apis(page, client, panel), "it counts down to the attempt the API reports"
        await page.screenshot(path=screenshots / f"{where}.png")
        if where == "tile":
            await page.click('.card[data-stream="door"]')
            panel = VIEW_PANEL

    # The seconds said are those left until the attempt, not one more. The page's Date is held still so
    # that the server time it counted from is the one read beside its words; its timers keep ticking.
    await page.wait_for_function(
        "(selector) => Number(/next attempt in (\\d+) s/.exec(document.querySelector(selector).innerText)?.[1]) >= 2",
        arg=panel,
        timeout=WAIT_MS,
    )  # far enough from the attempt that the next tick still counts down, with a number to check
    await page.clock.set_fixed_time(await page.evaluate("Date.now() / 1000"))
    await page.evaluate(WATCH_NEXT_COUNTDOWN, panel)
    drawn = await (await page.wait_for_function("window.countdownSeen", timeout=WAIT_MS)).json_value()
    assert drawn["text"] == countdown_words(drawn["at"] - drawn["now"]), drawn
    assert console.errors == []


def countdown_words(remaining_s: float) -> str:
    """What a countdown says ``remaining_s`` before its attempt: the seconds, rounded half up as the page's
    Math.round does, or, within half a second of it, that the attempt is being made."""
    return f"next attempt in {math.floor(remaining_s + 0.5)} s" if remaining_s >= 0.5 else "trying again now…"


async def _shown_attempt(page: Any, panel: str) -> str:
    """The server's time of the attempt the panel counts down to, as the panel has it."""
    return str(
        await page.evaluate(
            "(selector) => document.querySelector(selector).querySelector('.status-countdown').dataset.at", panel
        )
    )


async def _shown_attempt_is_the_apis(page: Any, client: TestClient, panel: str) -> bool:
    """Whether the panel counts down to the API's ``next_attempt_at``, both read while that attempt is due."""
    for _ in range(10):  # a new attempt may be scheduled between the two readings: read both again
        shown = await _shown_attempt(page, panel)
        stream = await (await client.get("/api/streams/door")).json()
        if shown and float(shown) == stream["next_attempt_at"]:
            return True
        await page.wait_for_function(
            "([selector, shown]) => document.querySelector(selector)"
            ".querySelector('.status-countdown').dataset.at !== shown",
            arg=[panel, shown],
            timeout=WAIT_MS,
        )
    return False


async def test_when_the_server_goes_away_no_stream_still_says_live(
    browser: Any, unused_tcp_port: int, screenshots: Path
) -> None:
    settings = Settings(model=str(BUNDLED_MODEL), streams=(StreamConfig("cam", "scene:?seed=3"),))
    server = TestServer(create_app(settings), host="127.0.0.1", port=unused_tcp_port)
    await server.start_server()
    try:
        page, _ = await open_url(browser, str(server.make_url("/")))
        await wait_for_new_frame(page, '.card[data-stream="cam"] canvas')
        await page.wait_for_selector('.card[data-stream="cam"] .badge.state-live', timeout=WAIT_MS)
        await wait_for_text(page, TILE_RATE.format("cam"), "fps")
    finally:
        await server.close()
    await wait_for_text(page, TILE_PANEL.format("cam"), "No connection to segcast")
    assert await page.inner_text('.card[data-stream="cam"] .badge') == "offline"
    assert await page.inner_text(TILE_RATE.format("cam")) == "—", "no rate is known of a server out of reach"
    await page.screenshot(path=screenshots / "grid.png")
    await page.evaluate("() => { location.hash = '#/stream/cam'; }")  # the page stays: the server is away
    await wait_for_text(page, VIEW_PANEL, "No connection to segcast")
    assert await page.inner_text("#stream-state") == "offline"


async def test_a_node_whose_triton_is_down_says_so_over_its_live_streams(
    aiohttp_client: Any, browser: Any, screenshots: Path
) -> None:
    """Frames come in, none is inferred: the tile, the stream view and the embed say why and when segcast
    tries again, while the camera's own state stays live and its pictures keep coming, shown as they
    are under a strip along the top (not dimmed under a panel over the whole picture)."""
    model = f"grpc://127.0.0.1:{free_port()}/segcast-scene-seg"  # nobody listens there
    client = await aiohttp_client(create_app(Settings(model=model, streams=(StreamConfig("cam", "scene:?seed=3"),))))
    page, console = await open_page(browser, client, "/")
    tile = await wait_for_text(page, TILE_PANEL.format("cam"), "Inference unavailable")
    assert "unreachable" in tile and "without analysis" in tile
    assert COUNTDOWN.search(tile) or "trying again now" in tile
    assert await page.inner_text('.card[data-stream="cam"] .badge') == "live"
    canvas = '.card[data-stream="cam"] canvas'
    first = await wait_for_new_frame(page, canvas)
    await wait_for_new_frame(page, canvas, first["seq"])  # the camera's pictures go on
    assert await page.evaluate(f"() => getComputedStyle(document.querySelector('{canvas}')).opacity") == "1"
    panel_height = await page.evaluate(f"() => document.querySelector('{TILE_PANEL.format('cam')}').offsetHeight")
    canvas_height = await page.evaluate(f"() => document.querySelector('{canvas}').offsetHeight")
    assert panel_height < canvas_height / 2  # a strip, most of the picture in view
    caption = '.card[data-stream="cam"] .card-caption .muted'
    await page.wait_for_function(f"() => document.querySelector('{caption}').textContent.startsWith('not analysed')")
    await page.screenshot(path=screenshots / "grid.png")
    await page.click('.card[data-stream="cam"]')
    assert "unreachable" in await wait_for_text(page, VIEW_PANEL, "Inference unavailable")
    # No tracks are counted of a frame nobody analysed: not "(0)", which reads as an empty scene.
    await page.wait_for_function("() => document.querySelector('#track-count').textContent === '(\\u2013)'")
    await page.click("#add-zone")  # drawing a zone over the live picture leaves it as bright as it is
    assert await page.evaluate("() => getComputedStyle(document.querySelector('#video')).opacity") == "1"
    embed, _ = await open_page(browser, client, "/embed/cam")
    assert "unreachable" in await wait_for_text(embed, EMBED_PANEL, "Inference unavailable")
    assert console.errors == []


async def test_the_embed_of_an_unknown_stream_says_so_in_the_frame(
    start_server: Start, browser: Any, screenshots: Path
) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=3"))
    page, console = await open_page(browser, client, "/embed/nope", {"width": 640, "height": 384})
    text = await wait_for_text(page, EMBED_PANEL, "No such stream")
    assert "nope" in text
    await page.screenshot(path=screenshots / "embed.png")
    assert console.errors == []


async def test_the_embed_of_a_failed_stream_says_why(start_server: Start, browser: Any) -> None:
    client = await start_server(StreamConfig("lobby", MISSING_FILE))
    page, console = await open_page(browser, client, "/embed/lobby")
    text = await wait_for_text(page, EMBED_PANEL, "Failed")
    assert f"no such file: {MISSING_FILE}" in text
    assert console.errors == []


async def test_the_embed_without_a_valid_token_says_what_is_missing(
    start_server: Start, browser: Any, screenshots: Path
) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=3"), viewer_tokens=("a-viewer-token-of-some-length",))
    page, console = await open_page(browser, client, "/embed/cam")
    await wait_for_text(page, EMBED_PANEL, "needs an access token")
    await page.screenshot(path=screenshots / "no-token.png")
    await page.goto(str(client.make_url("/embed/cam?token=s1.expired.or.forged")))
    await wait_for_text(page, EMBED_PANEL, "token in this address was refused")
    # The browser reports the refused requests themselves; nothing else went wrong.
    assert [e for e in console.errors if "401" not in e and "WebSocket" not in e] == []


async def test_the_embed_shows_the_picture_at_any_width_its_address_asks_for(start_server: Start, browser: Any) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=3"))  # 640 pixels wide
    # Widths beyond what a subscription takes (docs/protocol.md) are brought within it, rather than refused.
    for asked, shown in (("10", 32), ("100000", 640), ("480.5", 480)):
        page, console = await open_page(browser, client, f"/embed/cam?max_width={asked}")
        await wait_for_new_frame(page, "#video")
        assert await page.evaluate("() => document.querySelector('#video').width") == shown, asked
        assert not await page.is_visible(EMBED_PANEL)
        assert console.errors == []
        await page.close()


async def test_the_embed_says_what_segcast_refused_of_its_subscription(start_server: Start, browser: Any) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=3"))
    page = await browser.new_page()
    console = Console(page)

    def asking_too_much(socket: Any) -> None:
        """The page's subscription, with an option this server refuses (as a server with other limits would)."""
        server = socket.connect_to_server()

        def to_server(message: str | bytes) -> None:
            if isinstance(message, str) and json.loads(message).get("type") == "subscribe":
                message = json.dumps({**json.loads(message), "max_fps": 0})
            server.send(message)

        socket.on_message(to_server)

    await page.route_web_socket(re.compile(r"/ws(\?|$)"), asking_too_much)
    await page.goto(str(client.make_url("/embed/cam")))
    text = await wait_for_text(page, EMBED_PANEL, "cannot show this embed")
    assert "max_fps" in text, "the server's own words, naming the option"
    assert console.errors == []


async def test_on_a_phone_nothing_is_wider_than_the_screen_and_ids_stay_whole(
    start_server: Start, browser: Any, screenshots: Path
) -> None:
    long_id = "front-door-camera-2"
    client = await start_server(StreamConfig(long_id, "scene:?seed=3"), StreamConfig("lobby", MISSING_FILE))
    page, console = await open_page(browser, client, "/", PHONE)
    await wait_for_new_frame(page, f'.card[data-stream="{long_id}"] canvas')
    await page.wait_for_selector('.card[data-stream="lobby"] .badge.state-failed', timeout=WAIT_MS)
    assert await page.evaluate(OVERFLOW) == 0, "the grid fits the screen"
    assert await page.evaluate(TEXT_LINES, f'.card[data-stream="{long_id}"] .card-caption strong') == 1
    await page.screenshot(path=screenshots / "grid.png", full_page=True)

    await page.click(f'.card[data-stream="{long_id}"]')
    await wait_for_new_frame(page, "#video")
    assert await page.evaluate(OVERFLOW) == 0, "the stream view fits the screen"
    assert await page.evaluate(TEXT_LINES, "#stream-title") == 1, "the id is not broken at its hyphens"
    remove = await page.locator("#remove-stream").bounding_box()
    assert remove is not None and remove["x"] >= 0 and remove["x"] + remove["width"] <= PHONE["width"]
    await page.screenshot(path=screenshots / "stream.png", full_page=True)
    assert console.errors == []


async def test_switching_streams_leaves_nothing_of_the_previous_one(start_server: Start, browser: Any) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=3"), StreamConfig("lobby", MISSING_FILE))
    page, console = await open_page(browser, client, "/#/stream/cam")
    await page.wait_for_function("() => document.querySelectorAll('#tracks tbody tr').length > 0", timeout=WAIT_MS)
    assert await page.inner_text("#track-count") != ""
    await page.goto(str(client.make_url("/#/stream/lobby")))
    await page.wait_for_selector("#stream-state.state-failed", timeout=WAIT_MS)
    assert await page.evaluate(TABLE_IDS) == []
    assert await page.inner_text("#track-count") == "", "no count of the previous stream's tracks"
    assert await page.evaluate("() => document.querySelector('#video').dataset.seq") is None
    assert console.errors == []


async def test_the_start_of_a_view_the_page_focuses_shows_no_ring(start_server: Start, browser: Any) -> None:
    """The page focuses a view's start as it opens (a place for the keyboard to carry on from, not a
    control): a ring round the stream's title looked like a stray box on every stream opened."""
    client = await start_server(StreamConfig("cam", "scene:?seed=3"))
    page, console = await open_page(browser, client, "/")
    await page.keyboard.press("Tab")  # a keyboard user: focus rings are shown from now on
    for view, focused in (("#/stream/cam", "stream-title"), ("#/", "grid")):
        await page.evaluate("(hash) => { location.hash = hash; }", view)
        await page.wait_for_function("(id) => document.activeElement?.id === id", arg=focused, timeout=WAIT_MS)
        outline = await page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
        assert outline == "none", f"{focused}, focused as its view opened, has a {outline} outline"
    assert console.errors == []


async def test_the_track_table_lists_tracks_by_id(start_server: Start, browser: Any) -> None:
    client = await start_server()
    page, console = await open_page(browser, client, "/")
    # The table of a frame whose tracks came in another order, as a tracker may report them.
    await page.evaluate(
        """async () => {
             const { StreamView } = await import("./static/stream.js");
             const view = { el: { trackCount: document.querySelector('#track-count'),
                                  trackBody: document.querySelector('#tracks tbody') },
                            highlighted: () => null };
             const track = (id) => ({ id, class: "disc", conf: 0.9, age: 1 });
             StreamView.prototype.showTracks.call(view, { tracks: [track(9), track(2), track(5)] });
           }"""
    )
    assert await page.evaluate(TABLE_IDS) == [2, 5, 9]
    assert console.errors == []


async def test_the_add_form_offers_only_what_the_server_accepts(
    start_server: Start, browser: Any, tmp_path: Path
) -> None:
    client = await start_server()
    page, console = await open_page(browser, client, "/")
    help_text = await wait_for_text(page, "#add-help", "rtsp:")
    assert "media_dirs" in help_text, "the form says what it takes to add a video file"
    assert "--config FILE" in help_text and "--source" in help_text, "started without a file: how to have one"
    placeholder = await page.get_attribute("#add-form input[name=uri]", "placeholder")
    assert placeholder is not None and "/videos/" not in placeholder, "no example the API would refuse"
    assert not await page.is_visible("#add-form input[name=persist]"), "no config file: nothing to save to"

    config = tmp_path / "segcast.toml"
    config.write_text("")
    saving = await start_server(
        StreamConfig("filed", "scene:?seed=3"),
        StreamConfig("flagged", "scene:?seed=4"),
        config_path=config,
        save_config=True,
        media_dirs=(tmp_path,),
        flag_streams=frozenset({"flagged"}),
    )
    page, console = await open_page(browser, saving, "/?transport=ws")
    help_text = await wait_for_text(page, "#add-help", "video files inside")
    assert "media_dirs" not in help_text
    persist = page.locator("#add-form input[name=persist]")
    await persist.wait_for(state="visible", timeout=WAIT_MS)
    assert await persist.is_checked() and await persist.is_disabled(), "save_config: every change is saved"

    # Zones are saved with the stream, unless --source started it: the file cannot keep those.
    shape_persist = page.locator("label:has(#shape-persist)")
    await page.evaluate("() => { location.hash = '#/stream/filed'; }")
    await shape_persist.wait_for(state="visible", timeout=WAIT_MS)
    await page.evaluate("() => { location.hash = '#/stream/flagged'; }")
    await shape_persist.wait_for(state="hidden", timeout=WAIT_MS)
    assert console.errors == []


async def test_the_embed_snippet_is_shown_whole_and_copies(start_server: Start, browser: Any) -> None:
    client = await start_server(StreamConfig("front-door-camera-2", "scene:?seed=3"))
    context = await browser.new_context(viewport=PHONE)
    await context.grant_permissions(["clipboard-read", "clipboard-write"], origin=str(client.make_url("/"))[:-1])
    page = await context.new_page()
    await page.goto(str(client.make_url("/#/stream/front-door-camera-2")))
    await wait_for_new_frame(page, "#video")  # the snippet's height follows the first frame's size
    snippet = await page.input_value("#embed-code")
    assert f'src="{client.make_url("/embed/front-door-camera-2")}" title="segcast: front-door-camera-2"' in snippet
    fits = await page.evaluate(
        "() => { const e = document.querySelector('#embed-code'); "
        "return e.scrollHeight <= e.clientHeight && e.scrollWidth <= e.clientWidth; }"
    )
    assert fits, "the whole snippet is in view, none of it cut off"
    await page.click("#copy-embed")
    await wait_for_text(page, "#copy-state", "Copied")
    assert await page.evaluate("() => navigator.clipboard.readText()") == snippet
    await context.close()
