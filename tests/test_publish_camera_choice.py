"""The publish page's camera choice, in a real headless Chromium with fake cameras: the page lists
them, publishes the one chosen (asked for by its deviceId, exactly), keeps the choice for the next
visit, and switches the camera sent while publishing on the same stream. A kept camera since unplugged
stays chosen, said to be not found, rather than another being sent. A phone's cameras, which say the
way they face, are offered as its back and front camera too.

Chromium's fake cameras: fake_device_0 (I420, a plain webcam), fake_device_1 (a depth camera, Y16:
its picture is not sent) and fake_device_2 (MJPEG, as many USB webcams): the tests choose between the
first and the third. The page's getUserMedia and fetch are wrapped to record the constraints it asks
with, the streams it got and its publishes; its RTCPeerConnections are kept, to read the camera sent.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import CHROMIUM
from tests.support.browser import WAIT_MS, Console, require_browser
from tests.support.polling import eventually

playwright = require_browser()

Start = Callable[..., Awaitable[TestClient]]

pytestmark = pytest.mark.timeout(120)

FAKE_CAMERAS = 3
#: Records every getUserMedia's constraints in `window.cameraAsks` and its stream in `window.cameraStreams`,
#: counts the page's publishes in `window.publishes`, and keeps every RTCPeerConnection in `window.peers`.
RECORD_CAMERAS = """
window.cameraAsks = [];
window.cameraStreams = [];
window.peers = [];
window.publishes = 0;
const send = window.fetch;
window.fetch = (resource, options) => {
  if (String(resource).includes("api/webrtc/publish")) window.publishes += 1;
  return send(resource, options);
};
const getUserMedia = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
navigator.mediaDevices.getUserMedia = async (constraints) => {
  window.cameraAsks.push(structuredClone(constraints));
  const stream = await getUserMedia(constraints);
  window.cameraStreams.push(stream);
  return stream;
};
window.RTCPeerConnection = class extends RTCPeerConnection {
  constructor(...args) {
    super(...args);
    window.peers.push(this);
  }
};
"""
#: A phone's cameras: the first faces the person, the last away (Chromium's fake ones face no way).
#: Asked for by the way it faces, a camera is opened as a phone's would be: the one facing that way.
PHONE_FACING = """
const listDevices = navigator.mediaDevices.enumerateDevices.bind(navigator.mediaDevices);
const facing = async () => {
  const cameras = (await listDevices()).filter((d) => d.kind === "videoinput");
  const way = (at) => (at === 0 ? "user" : at === cameras.length - 1 ? "environment" : null);
  return new Map(cameras.map((camera, at) => [camera.deviceId, way(at)]));
};
InputDeviceInfo.prototype.getCapabilities = function () {
  return { deviceId: this.deviceId, facingMode: [window.faces?.get(this.deviceId)].filter(Boolean) };
};
navigator.mediaDevices.enumerateDevices = async () => {
  window.faces ??= await facing();
  return listDevices();
};
const openCamera = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
navigator.mediaDevices.getUserMedia = async (constraints) => {
  const way = constraints.video?.facingMode?.exact;
  if (way === undefined) return openCamera(constraints);
  const faces = await facing();
  const deviceId = [...faces].find(([, faced]) => faced === way)?.[0];
  const { facingMode, ...video } = constraints.video;
  return openCamera({ ...constraints, video: { ...video, deviceId: { exact: deviceId } } });
};
"""
CAMERA_IDS = """async () => (await navigator.mediaDevices.enumerateDevices())
  .filter((d) => d.kind === 'videoinput').map((d) => d.deviceId)"""
OFFERED = "() => [...document.querySelectorAll('#camera-choice option')].map((o) => [o.value, o.text])"
PUBLISHING = "document.getElementById('publish-status').dataset.state === 'connected'"
PUBLISHED_ID = "document.getElementById('publish-status').dataset.stream"
LAST_ASKED_ID = "window.cameraAsks.at(-1).video.deviceId?.exact"
#: The camera the page's publishing peer sends (a player's peer sends none).
SENT_DEVICE = "window.peers.flatMap((pc) => pc.getSenders()).find((s) => s.track)?.track.getSettings().deviceId"
LIVE_CAMERA_TRACKS = "window.cameraStreams.flatMap((s) => s.getTracks()).filter((t) => t.readyState === 'live').length"


@asynccontextmanager
async def fake_cameras_browser() -> AsyncIterator[Any]:
    """Chromium with FAKE_CAMERAS fake cameras (named fake_device_0...), allowed already."""
    async with playwright.async_playwright() as driver:
        browser = await driver.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                f"--use-fake-device-for-media-stream=device-count={FAKE_CAMERAS}",
                "--use-fake-ui-for-media-stream",
            ],
        )
        try:
            yield browser
        finally:
            await browser.close()


async def publish_page(context: Any, client: TestClient, *scripts: str) -> tuple[Any, Console]:
    page = await context.new_page()
    for script in (*scripts, RECORD_CAMERAS):  # recorded as the page asks
        await page.add_init_script(script)
    await page.goto(str(client.make_url("/static/publish.html")))
    return page, Console(page)


async def wait_for_cameras_offered(page: Any, count: int) -> list[list[str]]:
    await page.wait_for_function(
        f"() => document.querySelectorAll('#camera-choice option').length === {count}", timeout=WAIT_MS
    )
    return list(await page.evaluate(OFFERED))


async def wait_for_frames_read(client: TestClient, stream_id: str, more_than: int) -> int:
    """The frames the server has read of ``stream_id``, once more than ``more_than``, while it is live."""

    async def read() -> int | None:
        stream = await (await client.get(f"/api/streams/{stream_id}")).json()
        frames = int(stream.get("frames_read") or 0)
        return frames if stream.get("state") == "live" and frames > more_than else None

    return await eventually(read, WAIT_MS / 1000, f"frames of {stream_id} after {more_than}")


async def test_the_camera_chosen_is_published_and_kept_for_the_next_visit(start_server: Start) -> None:
    client = await start_server()
    async with fake_cameras_browser() as browser:
        context = await browser.new_context()
        page, console = await publish_page(context, client)
        cameras = await page.evaluate(CAMERA_IDS)
        chosen = cameras[2]

        # Given the page lists every camera by name, after the browser's own choice
        offered = await wait_for_cameras_offered(page, 1 + FAKE_CAMERAS)
        assert offered == [["", "Default camera"]] + [
            [f"device:{camera}", f"fake_device_{at}"] for at, camera in enumerate(cameras)
        ]

        # When the person chooses one other than the first (the list found by its label) and publishes
        await page.get_by_role("combobox", name="Camera").select_option(label="fake_device_2")
        await page.click("#use-camera")
        await page.wait_for_function(PUBLISHING, timeout=WAIT_MS)

        # Then the camera was asked for by its id, exactly, and the server's stream goes live
        asked = await page.evaluate("window.cameraAsks")
        assert len(asked) == 1 and asked[0]["video"]["deviceId"] == {"exact": chosen}
        assert await page.evaluate(SENT_DEVICE) == chosen
        await wait_for_frames_read(client, await page.evaluate(PUBLISHED_ID), 0)

        # And the next visit starts with it chosen
        await page.click("#stop-camera")
        again, _ = await publish_page(context, client)
        await wait_for_cameras_offered(again, 1 + FAKE_CAMERAS)
        assert await again.input_value("#camera-choice") == f"device:{chosen}"
        assert console.errors == []


async def test_a_camera_chosen_while_publishing_is_sent_on_the_same_stream(start_server: Start) -> None:
    client = await start_server()
    async with fake_cameras_browser() as browser:
        page, console = await publish_page(await browser.new_context(), client)
        first, _, second = await page.evaluate(CAMERA_IDS)
        await wait_for_cameras_offered(page, 1 + FAKE_CAMERAS)
        await page.select_option("#camera-choice", f"device:{first}")
        await page.click("#use-camera")
        await page.wait_for_function(PUBLISHING, timeout=WAIT_MS)
        stream_id = await page.evaluate(PUBLISHED_ID)
        await wait_for_frames_read(client, stream_id, 0)

        # When the person chooses the other camera while it publishes
        await page.select_option("#camera-choice", f"device:{second}")

        # Then the peer sends that camera, over the same connection, and the first is off
        await page.wait_for_function(f"() => {SENT_DEVICE} === {second!r}", timeout=WAIT_MS)
        assert await page.evaluate(LAST_ASKED_ID) == second
        assert await page.evaluate("window.publishes") == 1, "the camera was not published anew"
        assert await page.evaluate(LIVE_CAMERA_TRACKS) == 1, "the first camera was turned off"
        await page.wait_for_function(
            "() => document.getElementById('preview').srcObject === window.cameraStreams.at(-1)", timeout=WAIT_MS
        )
        # And the server's stream, the same one, goes on reading frames
        read = await wait_for_frames_read(client, stream_id, 0)
        await wait_for_frames_read(client, stream_id, read)
        assert await page.evaluate(PUBLISHING)
        assert await page.text_content("#publish-error") == ""
        assert console.errors == []


async def test_a_phone_offers_its_back_and_front_cameras_and_publishes_the_back_one(start_server: Start) -> None:
    client = await start_server()
    async with fake_cameras_browser() as browser:
        page, console = await publish_page(await browser.new_context(), client, PHONE_FACING)
        back = (await page.evaluate(CAMERA_IDS))[-1]

        offered = await wait_for_cameras_offered(page, 3 + FAKE_CAMERAS)
        assert offered[:3] == [
            ["", "Default camera"],
            ["facing:environment", "Back camera"],
            ["facing:user", "Front camera"],
        ]

        await page.select_option("#camera-choice", label="Back camera")
        await page.click("#use-camera")
        await page.wait_for_function(PUBLISHING, timeout=WAIT_MS)

        assert await page.evaluate("window.cameraAsks.at(-1).video.facingMode") == {"exact": "environment"}
        assert await page.evaluate(SENT_DEVICE) == back
        await wait_for_frames_read(client, await page.evaluate(PUBLISHED_ID), 0)
        assert console.errors == []


#: The camera kept from an earlier visit, since unplugged: the browser lists it no more.
GONE_CAMERA = {"value": "device:usb-cam-unplugged", "label": "USB door camera"}
KEEP_GONE_CAMERA = f"localStorage.setItem('segcast.camera', {json.dumps(json.dumps(GONE_CAMERA))})"
KEPT = "JSON.parse(localStorage.getItem('segcast.camera'))"


async def test_a_kept_camera_no_longer_there_is_said_not_found_not_swapped_for_another(start_server: Start) -> None:
    client = await start_server()
    async with fake_cameras_browser() as browser:
        page, console = await publish_page(await browser.new_context(), client, KEEP_GONE_CAMERA)
        cameras = await page.evaluate(CAMERA_IDS)

        # Given the camera kept from the last visit is gone, once the browser lists the cameras it has
        await page.wait_for_function(
            "() => [...document.querySelectorAll('#camera-choice option')].some((o) => o.text === 'fake_device_2')",
            timeout=WAIT_MS,
        )

        # Then it stays the choice, said to be not found, and the cameras there are offered too
        offered = await page.evaluate(OFFERED)
        assert [GONE_CAMERA["value"], "USB door camera (not found)"] in offered
        assert await page.input_value("#camera-choice") == GONE_CAMERA["value"]

        # When the person publishes
        await page.click("#use-camera")
        await page.wait_for_function("() => document.getElementById('publish-error').textContent", timeout=WAIT_MS)

        # Then that camera was asked for exactly, none other was published, and the page says so
        assert await page.evaluate(LAST_ASKED_ID) == "usb-cam-unplugged"
        assert await page.evaluate("window.publishes") == 0
        assert await page.evaluate(LIVE_CAMERA_TRACKS) == 0
        assert (await page.text_content("#publish-error") or "").startswith("The chosen camera was not found")
        assert await page.input_value("#camera-choice") == GONE_CAMERA["value"]

        # And chosen again (after another), it is kept under its own name, not the words said after it
        await page.select_option("#camera-choice", f"device:{cameras[0]}")
        await page.select_option("#camera-choice", GONE_CAMERA["value"])
        assert await page.evaluate(KEPT) == GONE_CAMERA

        # And a camera that is there, chosen instead, is published and kept
        await page.select_option("#camera-choice", label="fake_device_2")
        await page.click("#use-camera")
        await page.wait_for_function(PUBLISHING, timeout=WAIT_MS)
        assert await page.evaluate(SENT_DEVICE) == cameras[2]
        assert await page.evaluate(KEPT) == {"value": f"device:{cameras[2]}", "label": "fake_device_2"}
        assert console.errors == []
