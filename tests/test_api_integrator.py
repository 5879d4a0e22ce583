"""What an integrator driving the API with a script runs into: GET's answer sent back, keys named as GET
names them, and errors that say how to get on.

A read-modify-write (GET a stream, change its ``source``'s ``#timeout``, PATCH it back) sent the masked
``***`` to the camera as its password; a POST in GET's shape was refused for an "unknown key" with no word
of ``uri``; an empty PATCH did not say how to retry a failed stream; and ``/api/tokens`` did not name the
key it refused.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from server.config import StreamConfig
from server.http.keys import manager_key
from server.sources.uri import has_masked_secret, mask_uri, unmask_uri
from tests.support.mjpeg_server import MjpegServer
from tests.support.polling import eventually
from tests.test_api import assert_error

Start = Callable[..., Awaitable[TestClient]]


@pytest.mark.parametrize(
    ("sent", "current", "restored"),
    [
        (  # the password, the fragment changed
            "http://admin:***@127.0.0.1:18499/video.mjpg#timeout=7",
            "http://admin:secret@127.0.0.1:18499/video.mjpg",
            "http://admin:secret@127.0.0.1:18499/video.mjpg#timeout=7",
        ),
        (  # a user name alone, which may be a token
            "rtsp://***@cam.local/live#transport=tcp",
            "rtsp://t0k3n@cam.local/live",
            "rtsp://t0k3n@cam.local/live#transport=tcp",
        ),
        (  # a secret in the query; a parameter after it changed
            "http://cam.local/video.cgi?token=***&channel=2",
            "http://cam.local/video.cgi?token=abc123&channel=1",
            "http://cam.local/video.cgi?token=abc123&channel=2",
        ),
        (  # the certificate checked as before, or checked where it was not
            "rtsps://admin:***@cam.example/live#tls_verify=1&timeout=5",
            "rtsps://admin:pw@cam.example/live#tls_verify=1",
            "rtsps://admin:pw@cam.example/live#tls_verify=1&timeout=5",
        ),
        (
            "rtsps://admin:***@cam.example/live#tls_verify=1",
            "rtsps://admin:pw@cam.example/live",
            "rtsps://admin:pw@cam.example/live#tls_verify=1",
        ),
        (  # several secrets, each its own back
            "rtsp://admin:***@10.0.0.7/s1?user=admin&password=***#timeout=5",
            "rtsp://admin:pw-one@10.0.0.7/s1?user=admin&password=pw-two",
            "rtsp://admin:pw-one@10.0.0.7/s1?user=admin&password=pw-two#timeout=5",
        ),
    ],
)
def test_a_masked_secret_sent_back_gets_the_current_one(sent: str, current: str, restored: str) -> None:
    assert has_masked_secret(sent)
    assert unmask_uri(sent, current) == restored


@pytest.mark.parametrize(
    ("sent", "current"),
    [
        ("http://admin:***@10.0.0.8/video.mjpg", "http://admin:secret@10.0.0.7/video.mjpg"),  # another host
        ("http://admin:***@10.0.0.7:8080/video.mjpg", "http://admin:secret@10.0.0.7/video.mjpg"),  # another port
        ("http://admin:***@10.0.0.7.evil.example/v", "http://admin:secret@10.0.0.7/v"),  # the host run on
        ("http://root:***@10.0.0.7/video.mjpg", "http://admin:secret@10.0.0.7/video.mjpg"),  # another user
        ("http://admin:***@10.0.0.7/video.mjpg", "http://10.0.0.7/video.mjpg"),  # no password now
        ("http://cam.local/v?token=***", "http://cam.local/v?key=abc"),  # another parameter's secret
        ("http://cam.local/v?token=***", "scene:?seed=1"),
        # the camera's certificate checked less: the secret could go to whoever answers for its name
        ("rtsps://admin:***@cam.example/live", "rtsps://admin:pw@cam.example/live#tls_verify=1"),
        ("rtsps://admin:***@cam.example/live#tls_verify=0", "rtsps://admin:pw@cam.example/live#tls_verify=1"),
        ("https://admin:***@cam.example/live#tls_verify=1", "https://admin:pw@cam.example/live#ca_file=/etc/ca.pem"),
        ("rtsps://admin:***@cam.example/live", "rtsps://admin:pw@cam.example/live#ca_file=/etc/ca.pem"),
    ],
)
def test_a_masked_secret_that_is_not_the_current_ones_is_not_restored(sent: str, current: str) -> None:
    assert unmask_uri(sent, current) is None


@pytest.mark.parametrize(
    "uri",
    [
        "rtsp://admin:S3cret@192.168.1.10:554/stream1",
        "admin:S3cret@192.168.1.10/stream1",  # a camera's address typed without its scheme
        "rtsp://adm:p@ss?Zq7@cam/live",  # a password typed with a raw '@' and '?'
        "rtsp://u:pw@cam/live?mail=a@b.com",
        "http://cam/videostream.cgi?loginuse=admin&loginpas=pw&res=hd",
        "rtsp://cam/cam/realmonitor?channel=1&subtype=0;user=admin_password=pw",
        "rtsp://admin:p1@cam/s?token=t1&pw=t2#transport=tcp",
    ],
)
def test_every_masked_uri_sent_back_as_it_was_is_the_uri_again(uri: str) -> None:
    assert unmask_uri(mask_uri(uri), uri) == uri


@pytest.mark.parametrize("uri", ["http://cam.local/clips/***.mp4", "rtsp://admin:pw@cam/live", "scene:?seed=1"])
def test_a_uri_with_no_masked_secret_is_left_as_it_is(uri: str) -> None:
    assert not has_masked_secret(uri)
    assert unmask_uri(uri, "rtsp://admin:other@cam/live") == uri


async def _settled(client: TestClient, stream_id: str) -> dict[str, Any]:
    """The stream once it is live or reconnecting: its camera let it in, or refused it."""

    async def reached() -> dict[str, Any] | None:
        body: dict[str, Any] = await (await client.get(f"/api/streams/{stream_id}")).json()
        return body if body["state"] in ("live", "reconnecting") else None

    return await eventually(reached, what=f"{stream_id} to be let in or refused by its camera")


async def test_a_patch_that_sends_back_the_masked_source_keeps_the_cameras_password(start_server: Start) -> None:
    """The integrator's read-modify-write: the camera was tried with the password '***'."""
    with MjpegServer(user="admin", password="secret") as camera:
        client = await start_server()
        added = await client.post("/api/streams", json={"id": "cam", "uri": camera.url(credentials="admin:secret")})
        assert added.status == 201, await added.text()
        shown = (await (await client.get("/api/streams/cam")).json())["source"]
        assert shown == camera.url(credentials="admin:***")

        changed = await client.patch("/api/streams/cam", json={"uri": f"{shown}#timeout=7"})

        assert changed.status == 200, await changed.text()
        assert (await changed.json())["source"] == f"{shown}#timeout=7"
        assert client.app[manager_key].config("cam").uri == camera.url(credentials="admin:secret") + "#timeout=7"
        assert (await _settled(client, "cam"))["state"] == "live"


async def test_a_masked_password_that_cannot_be_restored_is_refused_saying_what_to_send(start_server: Start) -> None:
    client = await start_server(StreamConfig("cam", "http://admin:secret@192.0.2.7/video.mjpg"))
    masked = "http://admin:***@192.0.2.8/video.mjpg"  # another camera: the password is not its

    await assert_error(await client.post("/api/streams", json={"id": "new", "uri": masked}), 400, "body.uri", "***")
    refused = await client.patch("/api/streams/cam", json={"uri": masked})

    await assert_error(refused, 400, "body.uri", "***", "leave uri out")
    assert client.app[manager_key].config("cam").uri == "http://admin:secret@192.0.2.7/video.mjpg"
    assert "new" not in [info.stream_id for info in client.app[manager_key].streams()]


async def test_a_source_key_is_refused_naming_uri_in_a_post_and_a_patch(start_server: Start) -> None:
    """GET shows the URI as ``source``: sent back, it was an "unknown key" (POST) or "stream option" (PATCH)."""
    client = await start_server(StreamConfig("cam", "scene:?seed=1"))

    posted = await client.post("/api/streams", json={"id": "new", "source": "scene:?seed=2"})
    patched = await client.patch("/api/streams/cam", json={"source": "scene:?seed=2"})

    for response in (posted, patched):
        await assert_error(response, 400, "body.source: ", "'uri'")
        assert "option" not in (await response.json())["error"]


async def test_an_empty_patch_says_how_to_open_a_failed_or_ended_stream_again(start_server: Start) -> None:
    """The same settings sent again reopen a stream that failed or ended (`StreamManager.replace`)."""
    client = await start_server(StreamConfig("cam", "/no/such/file.mp4", loop=True))

    await assert_error(await client.patch("/api/streams/cam", json={}), 400, "failed or ended", '{"loop": true}')


async def test_an_unknown_key_of_a_token_request_is_named(start_server: Start) -> None:
    client = await start_server()

    response = await client.post("/api/tokens", json={"role": "viewer", "ttl": 60})

    await assert_error(response, 400, "body.ttl: unknown key", "ttl_s")
