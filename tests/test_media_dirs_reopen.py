"""A file the API gave is held to ``[server] media_dirs`` each time it is opened, not only when it is added.

The API judges a file on its real path when a stream is added. The reader opens it again at every pass
of a loop, at every retry and after every restart: a link inside the folders pointed outside since, or
folders narrowed in the config file since the stream was saved there, reached files the API refuses.
As a camera the API gave is held to ``deny_networks`` at each connection, the file is refused when it is
opened, and the stream fails saying why. Files from the config file's own streams open anywhere.
"""

from __future__ import annotations

import asyncio
import re
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from server.app import create_app
from server.config import load_config
from server.inference.models import BUNDLED_MODEL
from tests.support.cached_videos import cached_video
from tests.support.numbered import write_numbered_video
from tests.support.polling import eventually

ClientFactory = Callable[..., Awaitable[TestClient]]
Start = Callable[..., Awaitable[TestClient]]
#: Frames in the short clip the API plays: a loop's pass is this many frames (at 15 fps, under a second).
CLIP_FRAMES = 10


@pytest.fixture
def media(tmp_path: Path, video_cache: Path) -> Path:
    """A folder the API may play from, holding ``clip.mp4`` (`CLIP_FRAMES` numbered pictures, 320x192)."""
    folder = tmp_path / "media"
    folder.mkdir()
    clip = cached_video(video_cache / f"numbered-{CLIP_FRAMES}.mp4", lambda p: write_numbered_video(p, CLIP_FRAMES))
    shutil.copyfile(clip, folder / "clip.mp4")
    return folder


async def stream(client: TestClient, stream_id: str) -> dict[str, Any]:
    body: dict[str, Any] = await (await client.get(f"/api/streams/{stream_id}")).json()
    return body


def _point_outside(link: Path, target: Path) -> None:
    link.unlink()
    link.symlink_to(target)


async def test_a_looping_file_pointed_outside_media_dirs_fails_at_its_next_pass(
    start_server: Start, media: Path, scene_video: Path
) -> None:
    client = await start_server(media_dirs=(await asyncio.to_thread(media.resolve),))
    clip = media / "clip.mp4"
    response = await client.post("/api/streams", json={"id": "clip", "uri": str(clip), "loop": True})
    assert response.status == 201, await response.text()

    async def playing() -> dict[str, Any] | None:
        body = await stream(client, "clip")
        return body if body["state"] == "live" and body["frames_read"] > 0 else None

    read_before = (await eventually(playing, what="the clip to play"))["frames_read"]
    # The clip becomes a link to a file outside the folders: the 20 s scene, 300 frames of 640x384.
    await asyncio.to_thread(_point_outside, clip, scene_video)
    # The pass under way, and one opened before the link was made, still read the clip: at most two passes.
    most_of_the_clip = read_before + 2 * CLIP_FRAMES

    async def refused_or_read_on() -> dict[str, Any] | None:
        body = await stream(client, "clip")
        return body if body["state"] == "failed" or body["frames_read"] > most_of_the_clip else None

    body = await eventually(refused_or_read_on, what="the clip's next pass")
    assert body["frames_read"] <= most_of_the_clip, f"the file outside was read: {body}"
    assert body["state"] == "failed", body
    folder = await asyncio.to_thread(media.resolve)
    assert f"only files inside {folder} may be played ([server] media_dirs)" in body["error"], body
    assert "body.uri" not in body["error"], "a stream's error names no request's field"


def _config(path: Path, media_dirs: str, own_file: Path) -> None:
    path.write_text(
        f'[server]\n{media_dirs}\n\n[model]\nname = "{BUNDLED_MODEL}"\n\n'
        '[[streams]]\nid = "yard"\nuri = "scene:?seed=1"\n\n'
        f'[[streams]]\nid = "own"\nuri = "{own_file}"\nloop = true\n'
    )


@pytest.mark.parametrize("change", ["narrowed", "removed"])
async def test_a_file_the_api_saved_is_refused_after_a_restart_with_media_dirs_changed(
    aiohttp_client: ClientFactory, tmp_path: Path, media: Path, scene_video: Path, change: str
) -> None:
    """README: streams the API saved are checked as the API's are, after every restart. The config file's own
    stream of a file outside the folders (``own``) plays as before, and so does its scene."""
    path = tmp_path / "segcast.toml"
    (media / "sub").mkdir()
    _config(path, f'media_dirs = ["{media}"]', scene_video)
    client = await aiohttp_client(create_app(load_config(path)))
    clip = media / "clip.mp4"
    response = await client.post("/api/streams?persist=1", json={"id": "clip", "uri": str(clip), "loop": True})
    assert response.status == 201, await response.text()
    await client.close()

    text = path.read_text()
    assert 'id = "clip"' in text and "from_api = true" in text, text
    narrower = f'media_dirs = ["{media / "sub"}"]' if change == "narrowed" else ""
    text, count = re.subn(r"(?m)^media_dirs = \[.*\]$", lambda _: narrower, text)
    assert count == 1, text
    path.write_text(text)
    client = await aiohttp_client(create_app(load_config(path)))

    async def tried() -> dict[str, Any] | None:
        body = await stream(client, "clip")
        return body if body["state"] != "starting" else None

    body = await eventually(tried, what="the saved clip to try its file")
    assert body["state"] == "failed", body
    if change == "narrowed":
        folder = await asyncio.to_thread((media / "sub").resolve)
        told = f"only files inside {folder} may be played ([server] media_dirs)"
    else:
        told = "local files cannot be opened through the API; put the folders that may be played in [server] media_dirs"
    assert told in body["error"], body

    async def running() -> list[str] | None:
        states = [(await stream(client, stream_id))["state"] for stream_id in ("yard", "own")]
        return states if states == ["live", "live"] else None

    await eventually(running, what="the config file's own streams to play")


async def test_a_scene_the_api_saved_is_refused_after_a_restart_without_its_scheme(
    aiohttp_client: ClientFactory, tmp_path: Path, scene_video: Path
) -> None:
    """As files and hosts are: a scheme taken out of ``source_schemes`` since the API saved a stream of it
    fails that stream at the restart, naming the setting; the config file's own scene plays on."""
    path = tmp_path / "segcast.toml"
    _config(path, "", scene_video)
    client = await aiohttp_client(create_app(load_config(path)))
    response = await client.post("/api/streams?persist=1", json={"id": "saved", "uri": "scene:?seed=2"})
    assert response.status == 201, await response.text()
    await client.close()

    text = path.read_text()
    assert 'id = "saved"' in text and "from_api = true" in text, text
    text, count = re.subn(r"(?m)^\[server\]$", '[server]\nsource_schemes = ["rtsp"]', text)
    assert count == 1, text
    path.write_text(text)
    client = await aiohttp_client(create_app(load_config(path)))

    body = await stream(client, "saved")
    assert body["state"] == "failed", body
    refusal = "the scheme 'scene' is not allowed through the API (allowed: rtsp; see [server] source_schemes)"
    assert refusal in body["error"], body
    assert body["error"].endswith("take that line out to make it the config file's)"), (
        "it says why the API's rules hold"
    )
    assert not body["error"].startswith("body.uri"), body

    async def running() -> str | None:
        state: str = (await stream(client, "yard"))["state"]
        return state if state == "live" else None

    await eventually(running, what="the config file's own scene to play")
