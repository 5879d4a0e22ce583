"""Sources cannot be turned against the host, and camera credentials never come back out.

The API is held to `server.policy.SourcePolicy`: no local files outside ``media_dirs``, no devices
unless allowed, only the allowed schemes. A password or token in a camera URI is masked everywhere a
client or an operator can read it: API answers, the WebSocket, metrics and logs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient

from server.config import ConfigError, StreamConfig, load_config
from server.policy import MAX_URI_CHARS, SourcePolicy, SourceRefused
from tests.support.polling import eventually

Start = Callable[..., Awaitable[TestClient]]
PASSWORD = "hunter2-camera-secret"
QUERY_TOKEN = "tok-9f8e7d6c5b4a"


def closed_port() -> int:
    """A port on 127.0.0.1 nobody listens on: connecting is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def media(tmp_path: Path) -> Path:
    folder = tmp_path / "media"
    folder.mkdir()
    (folder / "clip.mp4").write_bytes(b"not really a video")
    (tmp_path / "secret.txt").write_text("private")
    (folder / "escape.mp4").symlink_to(tmp_path / "secret.txt")
    return folder


def test_the_default_policy_allows_cameras_and_scenes_only() -> None:
    policy = SourcePolicy()
    for uri in ("rtsp://u:p@10.0.0.7/s1", "https://cam.local/video.mjpg", "rtmp://m/live", "scene:?seed=1"):
        policy.check(uri)
    refused = {
        "/etc/passwd": "media_dirs",
        "file:///etc/passwd": "media_dirs",
        "/dev/video0": "allow_devices",
        "webcam:0": "allow_devices",
        "gopher://host/x": "scheme",
        "concat:/etc/passwd|/etc/hosts": "scheme",
        "subfile:,start,0,end,0,:/etc/passwd": "scheme",
        "data:text/plain,hello": "scheme",
        "rtsp://cam/s1#format=concat": "format",
        "http://cam/x#format=hls": "format",
        "rtsp://cam/s1\r\nX-Evil: 1": "control characters",
        "rtsp://cam/" + "a" * MAX_URI_CHARS: "at most",
    }
    for uri, reason in refused.items():
        with pytest.raises(SourceRefused, match=reason):
            policy.check(uri)


def test_files_only_inside_media_dirs_after_resolving_links_and_dots(media: Path) -> None:
    policy = SourcePolicy.of(SourcePolicy().schemes, [media], allow_devices=False)
    policy.check(str(media / "clip.mp4"))
    policy.check(f"file://{media}/clip.mp4#rate=max")
    for uri in (
        str(media / ".." / "secret.txt"),
        f"file://{media}/%2e%2e/secret.txt",
        str(media / "escape.mp4"),
        "/etc/passwd",
        "relative/clip.mp4",
        f"{media}/x#/../../secret.txt",
    ):
        with pytest.raises(SourceRefused):
            policy.check(uri)


def test_devices_and_schemes_are_the_config_files_choice(tmp_path: Path) -> None:
    path = tmp_path / "segcast.toml"
    (tmp_path / "videos").mkdir()
    path.write_text('[server]\nmedia_dirs = ["videos"]\nallow_devices = true\nsource_schemes = ["rtsp"]\n')
    settings = load_config(path)
    assert settings.media_dirs == ((tmp_path / "videos").resolve(),)
    policy = settings.source_policy()
    policy.check("/dev/video0")
    policy.check(str(tmp_path / "videos" / "a.mp4"))
    with pytest.raises(SourceRefused, match="scheme"):
        policy.check("http://cam/video.mjpg")
    for bad, named in (
        ('media_dirs = ["missing"]', "media_dirs"),
        ('source_schemes = ["ftp"]', "source_schemes"),
        ('allow_devices = "yes"', "allow_devices"),
        ("tls_cert = 5", "tls_cert"),
    ):
        path.write_text(f"[server]\n{bad}\n")
        with pytest.raises(ConfigError, match=named):
            load_config(path)


async def test_the_api_refuses_local_files_and_changes_nothing(start_server: Start, media: Path) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=1"))
    before = await (await client.get("/api/streams")).json()
    for uri in ("/etc/passwd", "/no/such/file.mp4", "/dev/video0", "file:///etc/shadow"):
        response = await client.post("/api/streams", json={"id": "evil", "uri": uri})
        assert response.status == 403, await response.text()
        message = (await response.json())["error"]
        assert "no such file" not in message and "cannot open" not in message  # nothing about the file itself
    response = await client.patch("/api/streams/cam", json={"uri": "/etc/passwd"})
    assert response.status == 403
    after = await (await client.get("/api/streams")).json()
    assert [(s["id"], s["source"]) for s in after["streams"]] == [(s["id"], s["source"]) for s in before["streams"]]
    # A change that keeps the URI the owner configured is not a new source: it is allowed.
    assert (await client.patch("/api/streams/cam", json={"conf": 0.3})).status == 200


async def test_the_api_plays_files_inside_media_dirs(start_server: Start, media: Path, scene_video: Path) -> None:
    (media / "scene.mp4").symlink_to(scene_video)  # a link inside the folder to a file outside: refused
    client = await start_server(media_dirs=(await asyncio.to_thread(media.resolve),))
    response = await client.post("/api/streams", json={"id": "linked", "uri": str(media / "scene.mp4")})
    assert response.status == 403
    await asyncio.to_thread(_replace_link_with_copy, media / "scene.mp4", scene_video)
    response = await client.post("/api/streams", json={"id": "clip", "uri": str(media / "scene.mp4")})
    assert response.status == 201, await response.text()


def _replace_link_with_copy(link: Path, target: Path) -> None:
    link.unlink()
    link.write_bytes(target.read_bytes())


@pytest.mark.parametrize(
    ("template", "secrets"),
    [
        ("rtsp://admin:{password}@127.0.0.1:{port}/stream1?token={token}", (PASSWORD, QUERY_TOKEN)),
        # FFmpeg takes the user info to the last '@', so this camera works, and its password must hide too.
        ("rtsp://admin:hunter2@cam-pw@127.0.0.1:{port}/stream1;password={token}&pw={token}", ("hunter2", "cam-pw")),
    ],
)
async def test_camera_credentials_never_come_back_out(
    start_server: Start, caplog: pytest.LogCaptureFixture, template: str, secrets: tuple[str, ...]
) -> None:
    uri = template.format(password=PASSWORD, port=closed_port(), token=QUERY_TOKEN)
    caplog.set_level(logging.DEBUG)
    client = await start_server()
    seen: list[str] = []
    async with client.ws_connect("/ws") as ws:
        await ws.send_str(json.dumps({"type": "subscribe", "streams": ["*"], "image": "none"}))
        response = await client.post("/api/streams", json={"id": "door", "uri": uri})
        assert response.status == 201
        seen.append(await response.text())
        while True:  # until the refused connection is reported, with its reason
            message = await ws.receive(timeout=20)
            assert message.type is WSMsgType.TEXT
            seen.append(message.data)
            event = json.loads(message.data)
            if event.get("type") == "status" and event.get("state") == "reconnecting" and event.get("error"):
                break
        failed = await client.post("/api/streams", json={"id": "typo", "uri": uri + "#bogus=1"})
        seen.append(await failed.text())

    async def reconnected() -> dict[str, Any] | None:
        body: dict[str, Any] = await (await client.get("/api/streams/door")).json()
        return body if body["reconnects"] >= 1 else None

    seen.append(json.dumps(await eventually(reconnected, what="a reconnect attempt")))
    for path in ("/api/streams", "/api/streams/typo", "/metrics"):
        seen.append(await (await client.get(path)).text())
    async with client.ws_connect("/ws") as ws:  # a viewer arriving later gets the streams in its hello
        hello = await ws.receive(timeout=20)
        assert "door" in hello.data
        seen.append(hello.data)
    seen += [record.getMessage() for record in caplog.records]
    text = "\n".join(seen)
    assert "admin:***@127.0.0.1" in text  # the stream is still recognisable
    for secret in (*secrets, QUERY_TOKEN):
        assert secret not in text


async def test_a_scene_too_large_for_memory_is_refused(start_server: Start) -> None:
    client = await start_server()
    response = await client.post("/api/streams", json={"id": "huge", "uri": "scene:?width=99999&height=99999"})
    body = await response.json()
    assert body["state"] == "failed" and "width=99999: must be from 16 to 3840" in body["error"]
    response = await client.post("/api/streams", json={"id": "none", "uri": "scene:?width=0"})
    body = await response.json()
    assert body["state"] == "failed" and "width=0: must be from 16 to 3840" in body["error"], "names the limit crossed"
