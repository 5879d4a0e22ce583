"""A real browser publishes its (fake) webcam through the page, and closing the tab ends the stream.

Chromium's fake camera plays a generated scene from a .y4m file, so the server's model has
something it knows to find; the page then plays the annotated stream back over WebRTC.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from server.scene import Scene, write_y4m
from tests.support.at_once import WORKERS, run_at_once
from tests.support.browser import require_browser
from tests.support.cached_videos import cached_video
from tests.test_webrtc import feed, match_same_class, next_event, wait_removed, wait_state

Start = Callable[..., Awaitable[TestClient]]

CHROMIUM = "/usr/bin/chromium"
CAMERA_SEED = 7
CAMERA_START = 210  # three or four objects in view
CAMERA_FRAMES = 90  # Chromium loops the file
#: The page closes its peer on "pagehide"; if that message is lost, the idle time-out ends it.
END_WITHIN_S = 8.0
CHECKED_FRAMES = 10  # frames with tracks, compared with the objects in the camera's file
FRAMES_WITHIN_S = 120
MIN_MATCHED = 0.7

playwright = require_browser()

pytestmark = pytest.mark.timeout(180)


def write_fake_camera(cache: Path) -> Path:
    """The camera's file in ``cache``, made once per cache (`cached_video`): the cache is shared by the
    workers, which may all find it missing at once."""
    return cached_video(
        cache / f"camera-{CAMERA_SEED}-{CAMERA_START}-{CAMERA_FRAMES}.y4m",
        lambda partial: write_y4m(Scene(seed=CAMERA_SEED), partial, CAMERA_FRAMES, start=CAMERA_START),
    )


@pytest.fixture(scope="session")
def fake_camera(video_cache: Path) -> Path:
    return write_fake_camera(video_cache)


def write_fake_camera_after(start: Barrier, cache: Path) -> None:
    """`write_fake_camera` in a worker process, once every other worker is ready to."""
    start.wait()
    write_fake_camera(cache)


def test_workers_making_the_camera_file_at_once_all_get_it_whole(tmp_path: Path) -> None:
    """Two workers wrote one ``.partial`` file and renamed it into place: the later rename failed
    (FileNotFoundError), and the later write truncated the file the other worker was reading."""
    alone = write_y4m(Scene(seed=CAMERA_SEED), tmp_path / "alone.y4m", CAMERA_FRAMES, start=CAMERA_START)
    cache = tmp_path / "cache"
    cache.mkdir()
    workers = run_at_once(write_fake_camera_after, cache)
    assert [worker.exitcode for worker in workers] == [0] * WORKERS
    made = write_fake_camera(cache)
    assert list(cache.iterdir()) == [made], "one file, no partial one left"
    assert made.read_bytes() == alone.read_bytes()


@asynccontextmanager
async def camera_browser(camera: Path) -> AsyncIterator[Any]:
    """Chromium with ``camera`` as its webcam, and its permission already granted."""
    async with playwright.async_playwright() as driver:
        browser = await driver.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--use-fake-device-for-media-stream",
                "--use-fake-ui-for-media-stream",
                f"--use-file-for-fake-video-capture={camera}",
            ],
        )
        try:
            yield browser
        finally:
            await browser.close()


def matched_by_class(metas: list[dict[str, Any]]) -> float:
    """The share of tracks that match an object of their own class in the frame of the looped file each
    of their frames fits best (the browser's frames carry no index of the file)."""
    scene = Scene(seed=CAMERA_SEED)
    truths = [scene.render(CAMERA_START + index)[1] for index in range(CAMERA_FRAMES)]
    matched = tracks = 0
    for meta in metas:
        sx, sy = meta["width"] / scene.width, meta["height"] / scene.height  # the browser may scale the video
        scaled = [
            {**t, "box": [x / s for x, s in zip(t["box"], (sx, sy, sx, sy), strict=True)]} for t in meta["tracks"]
        ]
        matched += max(len(match_same_class(frame, scaled)) for frame in truths)
        tracks += len(scaled)
    return matched / tracks


async def test_browser_webcam_becomes_a_tracked_stream_until_the_tab_closes(
    start_server: Start, fake_camera: Path
) -> None:
    client = await start_server()
    async with camera_browser(fake_camera) as browser:
        page = await browser.new_page()
        async with feed(client, "browser") as ws:
            await page.goto(str(client.make_url("/")))
            await page.click("#nav-camera")
            await page.fill("input[name=stream]", "browser")
            await page.click("#use-camera")
            metas: list[dict[str, Any]] = []
            untracked = 0  # frames that came with no track: said if the wait runs out
            try:
                # A hang guard, not a speed bound: 13 s alone, over 45 s twice late in a loaded full run.
                async with asyncio.timeout(FRAMES_WITHIN_S):
                    while len(metas) < CHECKED_FRAMES:
                        if (meta := await next_event(ws, "frame"))["tracks"]:
                            metas.append(meta)
                        else:
                            untracked += 1
            except TimeoutError:
                pytest.fail(f"{len(metas)} frames with tracks and {untracked} without in {FRAMES_WITHIN_S} s")
            assert all(meta["stream"] == "browser" for meta in metas)
            # The model knows no other classes, so checking names against its list could not fail:
            # the tracks must be the camera's objects, each of its own class (a stray one may not).
            assert matched_by_class(metas) >= MIN_MATCHED, f"tracks unlike the camera's objects: {metas[-1]}"
            # The page plays its own stream back over WebRTC, with the track table from "meta".
            await page.wait_for_function("document.querySelector('#tracks tbody').children.length > 0", timeout=30_000)
            assert await page.text_content("#play-mode") == "(WebRTC)"
            await page.close()
            async with asyncio.timeout(END_WITHIN_S):
                await wait_state(ws, "browser", "ended")
                await wait_removed(ws, "browser")
    streams = (await (await client.get("/api/streams")).json())["streams"]
    assert "browser" not in [s["id"] for s in streams]


async def test_a_camera_too_large_for_the_server_is_refused_on_the_page_saying_why(
    start_server: Start, fake_camera: Path
) -> None:
    """The page gives the camera's size with its offer: a camera over ``max_frame_side`` is refused
    there with the setting named, not connected and then closed with no reason the user can see."""
    client = await start_server(max_frame_side=320)  # the camera is 640x384
    async with camera_browser(fake_camera) as browser:
        page = await browser.new_page()
        await page.goto(str(client.make_url("/static/publish.html")))
        await page.click("#use-camera")
        await page.wait_for_function("document.getElementById('publish-error').textContent !== ''")
        assert "max_frame_side" in (await page.text_content("#publish-error") or "")
        assert await page.text_content("#publish-status") == "camera off"
    streams = (await (await client.get("/api/streams")).json())["streams"]
    assert streams == []
