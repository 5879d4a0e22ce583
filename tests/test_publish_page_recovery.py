"""A published camera whose connection was lost: what its page says and does, what a viewer of it says,
and what segcast answers a page that publishes the id again while the lost camera still holds it.

The outage is made on both sides of a real connection: every packet between segcast and the
publishing browser is dropped (`cut_publishers_network`, at segcast's ICE sockets), and the page's
WebSocket is refused while it lasts (`WebSocketOutage`); neither end closes anything. segcast waits
`IDLE_S` for video, as it waits 5 s by default. The page's own decisions (how often it publishes
again, when it waits for its id, when it gives up) are tested with its publishing played
(`PLAYED_PUBLISHING`) and its clock run forward.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
from collections.abc import Awaitable, Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from server.app import create_app
from server.config import Settings, StreamConfig
from server.inference.models import BUNDLED_MODEL
from server.scene import Scene
from server.webrtc import WebRTCConfig
from server.webrtc.routes import HOLDER_SILENT_S, ID_FREED_AFTER_IDLE_S, peers_key, webrtc_config_key
from tests import test_webrtc_browser
from tests.support.browser import WAIT_MS, open_page, wait_for_new_frame, wait_for_text
from tests.support.polling import eventually
from tests.test_webrtc import SceneTrack, lan_peer, offer_to
from tests.test_webrtc_browser import camera_browser
from tests.test_webrtc_publish_page import KEEP_CAMERA_STREAMS, LIVE_CAMERA_TRACKS, PUBLISHING

ClientFactory = Callable[..., Awaitable[TestClient]]

fake_camera = test_webrtc_browser.fake_camera  # the same generated camera file, a fixture here too

pytestmark = pytest.mark.timeout(120)

#: How long segcast waits for a published camera's video here (5 s by default).
IDLE_S = 2.0
#: The attempts web/publish.js makes to publish a lost camera again, and the longest wait between two.
REPUBLISH_ATTEMPTS = 6
REPUBLISH_MAX_MS = 16_000
#: What the page says as segcast stops (it closes the page's WebSocket with 1001, going away).
SERVER_STOPPING = "segcast is stopping or restarting"
CAMERA_OFF = "document.getElementById('publish-status').textContent === 'camera off'"
#: Every text the page's status badge and message take, in order (window.said).
RECORD_WHAT_IS_SAID = """
window.said = [];
addEventListener("DOMContentLoaded", () => {
  for (const id of ["publish-status", "publish-error"]) {
    const element = document.getElementById(id);
    const record = () => window.said.push(element.textContent);
    new MutationObserver(record).observe(element, { childList: true, characterData: true, subtree: true });
  }
});
"""
VIEWER_PANEL = "#stream-view .status-panel"
#: web/webrtc.js as the publish page imports it, with publishing played by the test: each publish takes
#: the next of `window.publishPlan`'s steps (the last one again once they run out), and is counted in
#: `window.publishes`. "held" is refused as segcast refuses an id its lost camera still holds, "expired"
#: as it refuses a token that expired; "lost" is answered, and its connection comes up and then fails;
#: any other step is answered, and its connection reaches that state soon after (on the page's clock,
#: which the test runs). What publishing asks of the network, a test of the page's decisions does without.
PLAYED_PUBLISHING = """
import { SignallingError, publishedHere } from "./webrtc.js?real";

export { SignallingError, publishedHere };
export const canPublish = () => true;
export async function playWithFallback() {
  return { mode: "webrtc", stop() {} };
}
export async function publishCamera({ streamId, onState }) {
  const step = window.publishPlan[window.publishes.length] ?? window.publishPlan.at(-1);
  window.publishes.push(streamId);
  if (step === "held") {
    const said = `stream '${streamId}' is a published camera that may have just lost its connection`;
    throw new SignallingError(said, { status: 409, retryAfterS: 2 });
  }
  if (step === "expired") {
    throw new SignallingError("the signed token expired at 2025-01-01 00:00:00 UTC", { status: 401 });
  }
  const states = step === "lost" ? ["connected", "failed"] : [step];
  states.forEach((state, at) => setTimeout(() => onState(state), 300 * (at + 1)));
  return { streamId, stream: null, pc: null, stop() {} };
}
"""
#: A browser that published its camera as "cam" before (webrtc.js publishedHere).
PUBLISHED_HERE = "localStorage.setItem('segcast.published', JSON.stringify(['cam']));"
#: The wait before publishing again and the attempt's number, as the page's message says them.
WAIT_AND_ATTEMPT = re.compile(rf"Trying again as “cam” in (\d+) s \(attempt (\d+) of {REPUBLISH_ATTEMPTS}\)")
#: A browser whose storage is blocked (a setting, some private modes): every use of it throws.
BLOCKED_STORAGE = """
Object.defineProperty(window, "localStorage", {
  get() {
    throw new DOMException("The operation is insecure.", "SecurityError");
  },
});
"""


async def start(aiohttp_client: ClientFactory, *streams: StreamConfig, idle_s: float = IDLE_S) -> TestClient:
    app = create_app(Settings(model=str(BUNDLED_MODEL), streams=streams))
    app[webrtc_config_key] = WebRTCConfig(publish_idle_timeout_s=idle_s)
    return await aiohttp_client(app)


def cut_publishers_network(client: TestClient) -> None:
    """Drop every packet between segcast and its publishers, both ways, as a network outage does: no
    video comes in, no ICE check is answered, and no close goes out when segcast ends the camera."""
    assert client.app is not None

    async def dropped(data: bytes, addr: tuple[str, int]) -> None:
        """What the outage does with the data segcast sends."""

    for peer in client.app[peers_key]._peers:
        if peer.role != "publish":
            continue
        ice = peer.pc.getTransceivers()[0].receiver.transport.transport
        for protocol in ice._connection._protocols:
            protocol.datagram_received = lambda data, addr: None
            protocol.send_stun = lambda message, addr: None
            protocol.send_data = dropped


async def stream_state(client: TestClient, stream_id: str) -> str | None:
    response = await client.get(f"/api/streams/{stream_id}")
    return str((await response.json())["state"]) if response.status == 200 else None


async def wait_for_state(client: TestClient, stream_id: str, state: str | None) -> None:
    async def reached() -> bool:
        return await stream_state(client, stream_id) == state

    await eventually(reached, WAIT_MS / 1000, f"stream {stream_id!r} to be {state or 'gone'}")


class WebSocketOutage:
    """The page's WebSockets, passed to segcast until `begin`, refused from then until `end`."""

    def __init__(self) -> None:
        self.down = False
        self.routes: list[Any] = []

    async def route(self, ws: Any) -> None:
        if self.down:
            await ws.close()
            return
        self.routes.append((ws, ws.connect_to_server()))

    async def begin(self) -> None:
        self.down = True
        for page_side, server_side in self.routes:
            await server_side.close()
            await page_side.close()
        self.routes.clear()

    def end(self) -> None:
        self.down = False


async def publish_played(
    page: Any, client: TestClient, plan: list[str], init_script: str = "", ended: str | None = None
) -> None:
    """Press "Use my camera" for "cam" on a publish page whose publishing is `PLAYED_PUBLISHING` by
    ``plan``. Its WebSocket is played too (segcast has no stream "cam" to list): each says hello with
    "cam" in it and, given ``ended``, that segcast ended "cam" for that reason."""
    await page.clock.install()  # time runs as usual until the test runs it forward
    await page.add_init_script(f"window.publishPlan = {plan!r}; window.publishes = [];" + init_script)

    async def played(route: Any) -> None:
        await route.fulfill(body=PLAYED_PUBLISHING, content_type="text/javascript")

    def segcast_says(ws: Any) -> None:
        ws.send(json.dumps({"type": "hello", "v": 1, "streams": [{"id": "cam"}]}))
        if ended is not None:
            ws.send(json.dumps({"type": "status", "v": 1, "stream": "cam", "state": "ended", "error": ended}))

    await page.route("**/static/*/webrtc.js", played)  # under the viewer's tag
    await page.route_web_socket("**/ws", segcast_says)
    await page.goto(str(client.make_url("/static/publish.html")))
    await page.fill("input[name=stream]", "cam")
    await page.click("#use-camera")


async def run_clock_until(page: Any, condition: str) -> bool:
    """Run the page's clock forward by the longest wait between attempts until ``condition`` holds, at
    most as often as every attempt the page could make takes; whether it holds."""
    for _ in range(4 * REPUBLISH_ATTEMPTS):
        if await page.evaluate(condition):
            return True
        await page.clock.run_for(REPUBLISH_MAX_MS)
    return bool(await page.evaluate(condition))


async def publish(page: Any, client: TestClient, stream_id: str) -> None:
    await page.goto(str(client.make_url("/static/publish.html")))
    await page.fill("input[name=stream]", stream_id)
    await page.click("#use-camera")
    await page.wait_for_function(PUBLISHING, timeout=WAIT_MS)
    await wait_for_state(client, stream_id, "live")


async def test_a_camera_whose_connection_was_lost_says_so_and_is_published_again_under_its_id(
    aiohttp_client: ClientFactory, fake_camera: Path
) -> None:
    """Given a page publishing "cam", when the network goes for longer than segcast waits for video
    (it ends the camera) and comes back, then the page said so in words (not ICE's "disconnected",
    nor "it no longer exists") and published "cam" again by itself, with the camera on once."""
    client = await start(aiohttp_client)
    outage = WebSocketOutage()
    async with camera_browser(fake_camera) as browser:
        page = await browser.new_page()
        await page.add_init_script(KEEP_CAMERA_STREAMS + RECORD_WHAT_IS_SAID)
        await page.route_web_socket("**/ws", outage.route)
        await publish(page, client, "cam")

        await outage.begin()
        cut_publishers_network(client)
        await wait_for_text(page, "#publish-status", "connection lost")
        assert "waiting for it to come back" in (await page.text_content("#publish-error") or "")
        await wait_for_state(client, "cam", None)  # segcast ended it: no video for IDLE_S
        outage.end()

        await wait_for_state(client, "cam", "live")
        await page.wait_for_function(PUBLISHING, timeout=WAIT_MS)
        said = await page.evaluate("window.said")
        assert any("the server ended this camera" in text and "Trying again as “cam”" in text for text in said), said
        assert not any("disconnected" in text or "no longer exists" in text for text in said), said
        assert await page.text_content("#publish-error") == "", "nothing wrong once it is back"
        assert await page.evaluate(LIVE_CAMERA_TRACKS) == 1, "the camera of before was turned off"


async def test_a_camera_whose_server_stops_says_so_at_once_and_is_published_again_once_it_is_back(
    fake_camera: Path, unused_tcp_port: int
) -> None:
    """It said "publishing" for ~8 s after segcast stopped, until its connection timed out, then "connection
    lost ... If no video reaches the server", which did not say why. segcast closes the page's WebSocket
    with 1001 (going away) as it stops: the page says so from that, before its connection times out."""

    def segcast() -> TestClient:
        app = create_app(Settings(model=str(BUNDLED_MODEL)))
        return TestClient(TestServer(app, host="127.0.0.1", port=unused_tcp_port))

    before = segcast()
    await before.start_server()
    async with camera_browser(fake_camera) as browser:
        page = await browser.new_page()
        await page.add_init_script(KEEP_CAMERA_STREAMS + RECORD_WHAT_IS_SAID)
        try:
            await publish(page, before, "cam")
        finally:
            await before.close()
        await page.wait_for_function(f"window.said.some((text) => text.includes({SERVER_STOPPING!r}))", timeout=WAIT_MS)
        said = await page.evaluate("window.said")
        told = next(text for text in said if SERVER_STOPPING in text)
        assert "Trying again as “cam”" in told, told
        before_told = said[: said.index(told)]
        assert not any(text == "connection lost" or "waiting for it to come back" in text for text in before_told), said
        assert "waiting to publish again" in said, said

        after = segcast()
        await after.start_server()
        try:
            await page.wait_for_function(PUBLISHING, timeout=WAIT_MS)
            await wait_for_state(after, "cam", "live")
            assert await page.evaluate(LIVE_CAMERA_TRACKS) == 1, "the camera of before was turned off"
        finally:
            await after.close()


async def test_stop_ends_the_attempts_to_publish_a_lost_camera_again(
    aiohttp_client: ClientFactory, fake_camera: Path
) -> None:
    """The attempts are counted on the page, and Stop ends them: no later timer publishes anything."""
    client = await start(aiohttp_client)
    async with camera_browser(fake_camera) as browser:
        page = await browser.new_page()
        await page.clock.install()  # time runs as usual until the test runs it forward
        await page.add_init_script(KEEP_CAMERA_STREAMS + RECORD_WHAT_IS_SAID)
        await publish(page, client, "cam")
        offers: list[str] = []

        async def no_answer(route: Any) -> None:
            offers.append(route.request.url)
            await route.abort("connectionrefused")

        await page.route("**/api/webrtc/publish", no_answer)
        cut_publishers_network(client)  # the page's WebSocket stays up: segcast says why it ended the camera
        said = await wait_for_text(page, "#publish-error", "(attempt 2 of 6)")
        assert "no answer from segcast" in said, said
        assert any(f"as no video reached it for {IDLE_S:g} s" in text for text in await page.evaluate("window.said"))
        await page.click("#stop-camera")
        await page.clock.run_for(5 * 60 * 1000)  # every attempt still due would be made now
        assert await page.text_content("#publish-status") == "camera off"
        assert await page.text_content("#publish-error") == ""
        assert len(offers) == 1, offers
        assert await page.evaluate(LIVE_CAMERA_TRACKS) == 0
        assert await stream_state(client, "cam") is None


async def last_frame_at(client: TestClient, stream_id: str) -> float | None:
    """When the stream's reader last took a frame (Unix seconds), as GET /api/streams/<id> says."""
    stream = await (await client.get(f"/api/streams/{stream_id}")).json()
    last: float | None = stream["last_frame_at"]
    return last


async def wait_for_silence(client: TestClient, stream_id: str) -> float:
    """Wait until no frame came from the stream for `HOLDER_SILENT_S`; when its last one came."""

    async def silent() -> float | None:
        last = await last_frame_at(client, stream_id)
        return last if last is not None and time.time() - last >= HOLDER_SILENT_S else None

    return await eventually(silent, WAIT_MS / 1000, f"no video from {stream_id!r} for {HOLDER_SILENT_S:g} s")


async def test_a_camera_whose_connection_never_comes_up_is_published_again_six_times_then_given_up(
    aiohttp_client: ClientFactory, browser: Any
) -> None:
    """Each publish answered, its connection never up (UDP blocked, no TURN) and ended by segcast: the
    answer reset the count, and the page published it again for ever, "attempt 1 of 6" each time."""
    client = await start(aiohttp_client)
    page = await browser.new_page()
    await publish_played(page, client, ["connecting"], ended=f"not connected within {IDLE_S:g} s")
    assert await run_clock_until(page, CAMERA_OFF), await page.text_content("#publish-error")
    said = await page.text_content("#publish-error") or ""
    assert f"did not come up within {IDLE_S:g} s" in said and "TURN server" in said, said
    assert f"Gave up after {REPUBLISH_ATTEMPTS} attempts to publish it again" in said, said
    assert await page.evaluate("window.publishes") == ["cam"] * (1 + REPUBLISH_ATTEMPTS)


async def test_a_page_without_storage_waits_for_its_own_lost_cameras_id_while_publishing_it_again(
    aiohttp_client: ClientFactory, browser: Any
) -> None:
    """Publishing "cam" again after its connection was lost, the page is refused: segcast still holds
    "cam" for the lost camera. The page waits for its own id, though the browser remembers nothing
    of what it published (its storage blocked): it gave up at the first refusal."""
    client = await start(aiohttp_client)
    page = await browser.new_page()
    await publish_played(page, client, ["failed", "held", "connected"], BLOCKED_STORAGE)
    assert await run_clock_until(page, f"{PUBLISHING} || {CAMERA_OFF}")
    assert await page.evaluate(PUBLISHING), await page.text_content("#publish-error")
    assert await page.evaluate("window.publishes") == ["cam"] * 3
    assert await page.text_content("#publish-error") == ""


async def test_a_lost_camera_is_published_again_after_waits_that_double_and_start_afresh_once_it_was_back(
    aiohttp_client: ClientFactory, browser: Any
) -> None:
    """Lost once it was up, published again and up, then lost again: each loss starts at attempt 1 after
    1 s, as the camera was back in between. Lost a third time, its connections never come up again: each
    attempt waits twice as long as the one before, up to `REPUBLISH_MAX_MS`, until the page gives up."""
    client = await start(aiohttp_client)
    page = await browser.new_page()
    await publish_played(page, client, ["lost", "lost", "failed"], RECORD_WHAT_IS_SAID)
    assert await run_clock_until(page, CAMERA_OFF), await page.text_content("#publish-error")
    said = [found.groups() for text in await page.evaluate("window.said") if (found := WAIT_AND_ATTEMPT.search(text))]
    waits = [(int(seconds), int(attempt)) for seconds, attempt in said]
    assert waits == [(1, 1), (1, 1), (2, 2), (4, 3), (8, 4), (16, 5), (16, 6)], waits
    assert await page.evaluate("window.publishes") == ["cam"] * (2 + REPUBLISH_ATTEMPTS)


async def test_an_id_still_held_at_a_press_of_use_my_camera_is_waited_for_once_only(
    aiohttp_client: ClientFactory, browser: Any
) -> None:
    """A press of "Use my camera" for an id this browser published before, refused as held: the page waits
    as long as segcast says and publishes again, once. Refused again, the camera that holds the id is not
    this page's own lost one, and the page stops there rather than publish every Retry-After for ever."""
    client = await start(aiohttp_client)
    page = await browser.new_page()
    await publish_played(page, client, ["held"], PUBLISHED_HERE)
    assert await run_clock_until(page, CAMERA_OFF), await page.text_content("#publish-error")
    assert await page.evaluate("window.publishes") == ["cam"] * 2
    said = await page.text_content("#publish-error") or ""
    assert "may have just lost its connection" in said and "Trying again" not in said, said


@pytest.mark.parametrize(
    ("plan", "ended"),
    [(["connecting"], "its access token expired"), (["failed", "expired"], None)],
    ids=["said by segcast", "found publishing again"],
)
async def test_a_camera_whose_access_token_expired_is_not_published_again_and_the_page_says_to_reload(
    aiohttp_client: ClientFactory, browser: Any, plan: list[str], ended: str | None
) -> None:
    """segcast ends a camera published with a signed token once it expires. Told why, the page published
    it again, "attempt 1 of 6", and then gave up at the refusal, saying only that. Not told (its
    WebSocket closed with the token), it learns why at its first attempt's refusal, and stops there."""
    client = await start(aiohttp_client)
    page = await browser.new_page()
    await publish_played(page, client, plan, ended=ended)
    assert await run_clock_until(page, CAMERA_OFF), await page.text_content("#publish-error")
    said = await page.text_content("#publish-error") or ""
    assert "token expired" in said and "Reload the page with a fresh access token" in said, said
    assert await page.evaluate("window.publishes") == ["cam"] * len(plan)


async def test_a_stream_id_held_by_a_live_published_camera_is_refused_as_taken_with_no_wait(
    aiohttp_client: ClientFactory,
) -> None:
    """Another page's camera, its video coming: it said "may have just lost its connection" with a
    Retry-After, and a page publishing that id waited for an id that was never going to be free."""
    client = await start(aiohttp_client, StreamConfig("file", "scene:?seed=1"))
    holder, again = lan_peer(), lan_peer()
    for pc in (holder, again):
        pc.addTrack(SceneTrack(Scene(seed=1)))
    try:
        await offer_to(client, "/api/webrtc/publish", holder, stream="dup")
        first = await eventually(lambda: last_frame_at(client, "dup"), WAIT_MS / 1000, "the holder's first frame")

        async def next_frame() -> bool:
            return (await last_frame_at(client, "dup") or 0.0) > first

        await eventually(next_frame, WAIT_MS / 1000, "a frame just in from the holder")
        await again.setLocalDescription(await again.createOffer())
        offer = {"type": "offer", "sdp": again.localDescription.sdp}
        for stream_id in ("dup", "file"):  # a stream of another kind holds its id for good too
            response = await client.post("/api/webrtc/publish", json={**offer, "stream": stream_id})
            assert response.status == 409
            said = (await response.json())["error"]
            assert said == f"stream {stream_id!r} already exists: pick another id or leave it out", said
            assert "Retry-After" not in response.headers
    finally:
        for pc in (holder, again):
            await pc.close()


async def test_a_stream_id_held_by_a_silent_published_camera_is_refused_saying_when_it_frees_itself(
    aiohttp_client: ClientFactory,
) -> None:
    """Its video stopped (its page crashed, its connection was lost): it is ended `idle_s` after its
    last frame, and the 409 says so, with the time left as Retry-After (not the whole wait again)."""
    idle_s = 10.0  # long enough for the id to be asked for well before the holder is ended
    client = await start(aiohttp_client, idle_s=idle_s)
    camera = SceneTrack(Scene(seed=1))
    holder, again = lan_peer(), lan_peer()
    holder.addTrack(camera)
    again.addTrack(SceneTrack(Scene(seed=1)))
    try:
        await offer_to(client, "/api/webrtc/publish", holder, stream="dup")
        await eventually(lambda: last_frame_at(client, "dup"), WAIT_MS / 1000, "the holder's first frame")
        camera.frames = camera.sent  # it sends nothing more, and says nothing either
        last = await wait_for_silence(client, "dup")
        await again.setLocalDescription(await again.createOffer())
        before = time.time()
        response = await client.post(
            "/api/webrtc/publish", json={"type": "offer", "sdp": again.localDescription.sdp, "stream": "dup"}
        )
        after = time.time()
        assert response.status == 409
        wait_s = int(response.headers["Retry-After"])
        ended_at = last + idle_s + ID_FREED_AFTER_IDLE_S  # at the latest (last_frame_at is rounded to 1 ms)
        assert math.ceil(ended_at - after - 0.001) <= wait_s <= math.ceil(ended_at - before + 0.001), wait_s
        assert wait_s < idle_s + ID_FREED_AFTER_IDLE_S, "the silence so far is counted"
        said = (await response.json())["error"]
        assert "may have just lost its connection" in said and f"frees itself within {wait_s} s" in said, said
    finally:
        for pc in (holder, again):
            await pc.close()


async def test_a_page_publishing_the_id_of_its_crashed_camera_waits_for_it_once(
    aiohttp_client: ClientFactory, fake_camera: Path
) -> None:
    """A browser whose page crashed publishes "dup" again at once: segcast still holds it for the
    crashed camera, says so, and the page tries again by itself when it said the id is free."""
    client = await start(aiohttp_client)
    async with camera_browser(fake_camera) as browser:
        context = await browser.new_context()
        crashed = await context.new_page()
        await publish(crashed, client, "dup")
        gone: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        crashed.once("crash", lambda _: gone.set_result(None))
        cdp = await context.new_cdp_session(crashed)
        crashing = asyncio.create_task(cdp.send("Page.crash"))  # answered by no one: the renderer is gone
        await asyncio.wait_for(gone, WAIT_MS / 1000)
        crashing.cancel()
        with suppress(asyncio.CancelledError):
            await crashing
        await wait_for_silence(client, "dup")  # as a person reloading does: a live camera's id is not waited for
        page = await context.new_page()
        await page.goto(str(client.make_url("/static/publish.html")))
        await page.fill("input[name=stream]", "dup")
        await page.click("#use-camera")
        said = await wait_for_text(page, "#publish-error", "Trying again")
        assert "may have just lost its connection" in said, said
        await page.wait_for_function(PUBLISHING, timeout=WAIT_MS)
        await wait_for_state(client, "dup", "live")
        assert await page.text_content("#publish-error") == ""


async def test_a_viewer_of_a_camera_that_lost_its_connection_says_it_ended_and_why_then_shows_it_again(
    aiohttp_client: ClientFactory, browser: Any
) -> None:
    """It said "No such stream ... add it there", which does not fit a browser's camera."""
    client = await start(aiohttp_client)
    camera = SceneTrack(Scene(seed=1))
    publisher = lan_peer()
    publisher.addTrack(camera)
    again = lan_peer()
    again.addTrack(SceneTrack(Scene(seed=1)))
    try:
        await offer_to(client, "/api/webrtc/publish", publisher, stream="cam")
        page, _ = await open_page(browser, client, "/#/stream/cam")
        await wait_for_new_frame(page, "#video")
        await wait_for_text(page, "[data-stat=source]", "webrtc:")
        camera.frames = camera.sent  # it sends nothing more, and says nothing either
        said = await wait_for_text(page, VIEWER_PANEL, "This camera ended")
        assert f"connection lost: no video for {IDLE_S:g} s" in said, said
        assert "No such stream" not in said and "again as “cam”" in said, said
        await offer_to(client, "/api/webrtc/publish", again, stream="cam")
        await wait_for_new_frame(page, "#video")
        assert await page.is_hidden(VIEWER_PANEL)
    finally:
        await publisher.close()
        await again.close()
