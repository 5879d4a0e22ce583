"""The REST API: every endpoint, with good and bad input; errors are JSON with a message."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import tomllib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from aiohttp.test_utils import TestClient

from server.config import Settings, StreamConfig, load_config
from server.http.keys import hub_key
from server.http.saving import config_file_key
from server.scene import Scene
from tests.support.polling import eventually

Start = Callable[..., Awaitable[TestClient]]
JPEG_MAGIC = b"\xff\xd8"


async def first_frame(client: TestClient, stream_id: str) -> dict[str, Any]:
    async def ready() -> dict[str, Any] | None:
        body = await (await client.get(f"/api/streams/{stream_id}/tracks")).json()
        return body if body["seq"] is not None else None

    return await eventually(ready, what=f"a processed frame of {stream_id}")


async def failed(client: TestClient, stream_id: str) -> dict[str, Any]:
    """The stream once it has failed: a missing file is found missing by its reader, after it was added."""

    async def reached() -> dict[str, Any] | None:
        body: dict[str, Any] = await (await client.get(f"/api/streams/{stream_id}")).json()
        return body if body["state"] == "failed" else None

    return await eventually(reached, what=f"{stream_id} to fail")


async def assert_error(response: Any, status: int, *words: str, details: tuple[str, ...] = ()) -> None:
    """``response`` is the JSON error ``status`` with a message naming ``words``, and only ``details`` besides."""
    assert response.status == status, await response.text()
    body = await response.json()
    assert set(body) == {"error", *details}
    for word in words:
        assert word in body["error"]


async def test_stream_list_has_state_stats_and_links(start_server: Start) -> None:
    client = await start_server(StreamConfig("live", "scene:?seed=1"), StreamConfig("bad", "/no/such/file.mp4"))
    await first_frame(client, "live")
    await failed(client, "bad")
    body = await (await client.get("/api/streams")).json()
    assert body["v"] == 1
    streams = {s["id"]: s for s in body["streams"]}
    live, bad = streams["live"], streams["bad"]
    assert live["state"] == "live" and live["frames_processed"] >= 1
    for key in ("input_fps", "processed_fps", "latency_ms", "frames_dropped", "viewers"):
        assert key in live

    async def latency() -> float | None:  # None while nothing was published in the last 5 s (a slow machine)
        body = await (await client.get("/api/streams/live")).json()
        return body["latency_ms"]

    assert await eventually(latency, what="a latency figure") > 0
    assert live["links"]["snapshot"] == "/api/streams/live/snapshot.jpg"
    assert bad["state"] == "failed" and "no such file" in bad["error"]


async def test_one_stream_and_unknown_stream(start_server: Start) -> None:
    client = await start_server(StreamConfig("live", "scene:?seed=1"))
    assert (await (await client.get("/api/streams/live")).json())["id"] == "live"
    await assert_error(await client.get("/api/streams/nope"), 404, "nope")
    await assert_error(await client.get("/api/no-such-route"), 404, "/api/no-such-route")
    await assert_error(await client.put("/api/streams/live"), 405)


async def test_add_change_and_remove_a_stream(start_server: Start) -> None:
    client = await start_server()
    added = await client.post("/api/streams", json={"id": "cam", "uri": "scene:?seed=3", "conf": 0.4})
    assert added.status == 201, await added.text()
    assert added.headers["Location"] == "/api/streams/cam"
    assert (await added.json())["options"]["conf"] == 0.4
    await first_frame(client, "cam")

    changed = await client.patch("/api/streams/cam", json={"conf": 0.5, "options": {"classes": ["disc"]}})
    assert changed.status == 200, await changed.text()
    options = (await changed.json())["options"]
    assert options["conf"] == 0.5 and options["classes"] == ["disc"]
    await first_frame(client, "cam")

    assert (await client.delete("/api/streams/cam")).status == 204
    assert (await (await client.get("/api/streams")).json())["streams"] == []
    await assert_error(await client.delete("/api/streams/cam"), 404)


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ("not json", ["JSON object"]),
        ("[1]", ["JSON object"]),
        ({"uri": "scene:"}, ["id"]),
        ({"id": "has space", "uri": "scene:"}, ["id"]),
        ({"id": "x"}, ["uri"]),
        ({"id": "x", "uri": "scene:", "loop": "yes"}, ["loop"]),
        ({"id": "x", "uri": "scene:", "conf": 3}, ["conf"]),
        ({"id": "x", "uri": "scene:", "colour": "red"}, ["colour", "unknown"]),
        ({"id": "x", "uri": "scene:", "tracker": "nosuch"}, ["tracker"]),
        ({"id": "x", "uri": "scene:", "options": {"iou": 7}}, ["iou"]),
        ({"id": "x", "uri": "scene:", "options": 7}, ["options"]),
        ({"id": "x", "uri": "scene:", "classes": ["disc", "cat"]}, ["classes", "'cat'", "disc"]),
    ],
)
async def test_adding_a_bad_stream_names_the_problem(start_server: Start, body: Any, words: list[str]) -> None:
    client = await start_server()
    if isinstance(body, str):
        response = await client.post("/api/streams", data=body, headers={"Content-Type": "application/json"})
    else:
        response = await client.post("/api/streams", json=body)
    await assert_error(response, 400, *words)
    assert (await (await client.get("/api/streams")).json())["streams"] == []


async def test_an_oversized_body_is_refused(start_server: Start) -> None:
    client = await start_server()
    body = {"id": "x", "uri": "scene:", "pad": "x" * 70_000}
    await assert_error(await client.post("/api/streams", json=body), 413, "64")


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ('{"zones": [}', "the body is not valid JSON: expecting value at line 1, column 12; send a JSON object"),
        (
            '{\n  "conf": 0.5\n  "iou": 0.4\n}',
            "the body is not valid JSON: expecting ',' delimiter at line 3, column 3;",
        ),
        (b'{"id": "caf\xe9"}', "the body is not UTF-8 text (at byte 11)"),
        (b'\xef\xbb\xbf{"id": "caf\xe9"}', "the body is not UTF-8 text (at byte 14)"),
        ('{"conf": NaN}', "the body must be a JSON object of finite numbers: NaN is not a number segcast accepts"),
    ],
    ids=["json", "json-lines", "utf-8", "utf-8-after-a-byte-order-mark", "nan"],
)
async def test_a_body_that_is_no_json_object_says_what_is_wrong_and_where(
    start_server: Start, body: str | bytes, error: str
) -> None:
    """Every such body was "a JSON object of finite numbers, nested sensibly": a typo could not be found by it."""
    client = await start_server()
    response = await client.post("/api/streams", data=body, headers={"Content-Type": "application/json"})
    assert response.status == 400
    assert (await response.json())["error"].startswith(error)


async def test_a_body_starting_with_a_byte_order_mark_is_read(start_server: Start) -> None:
    """Windows PowerShell 5 writes one before UTF-8 text; it was "not valid JSON: unexpected UTF-8 BOM"."""
    client = await start_server()
    body = b"\xef\xbb\xbf" + json.dumps({"id": "bom", "uri": "scene:"}).encode()
    response = await client.post("/api/streams", data=body, headers={"Content-Type": "application/json"})
    assert response.status == 201, await response.text()
    assert [s["id"] for s in (await (await client.get("/api/streams")).json())["streams"]] == ["bom"]


async def test_a_source_with_frames_above_max_frame_side_fails_with_the_reason(start_server: Start) -> None:
    client = await start_server(StreamConfig("big", "scene:?width=640&height=384"), max_frame_side=512)

    async def failed() -> dict[str, Any] | None:
        body: dict[str, Any] = await (await client.get("/api/streams/big")).json()
        return body if body["state"] == "failed" else None

    body = await eventually(failed, what="the stream to fail")
    assert "width=640" in body["error"] and "max_frame_side" in body["error"], "refused before it was drawn"
    assert body["frames_processed"] == 0, "no frame of it reached the model"


async def test_a_scene_added_or_changed_through_the_api_is_drawn_once(
    start_server: Start, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The API checks a scene's URI without building it: a 4K scene's background takes a second or more
    to draw, and the manager draws it anyway when it makes the stream."""
    drawn: list[tuple[int, int]] = []
    draw = Scene._make_background

    def counted(scene: Scene) -> np.ndarray:
        drawn.append((scene.width, scene.height))
        return draw(scene)

    monkeypatch.setattr(Scene, "_make_background", counted)
    client = await start_server()
    added = await client.post("/api/streams", json={"id": "uhd", "uri": "scene:?width=3840&height=2160"})
    assert added.status == 201, await added.text()
    await first_frame(client, "uhd")
    assert drawn == [(3840, 2160)]

    with caplog.at_level(logging.INFO, logger="server.streams"):
        changed = await client.patch("/api/streams/uhd", json={"uri": "scene:?seed=2&width=1920&height=1080"})
    assert changed.status == 200, await changed.text()
    assert drawn == [(3840, 2160), (1920, 1080)]
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("[uhd] ")]
    assert lines[0] == "[uhd] restarting with new settings", lines
    assert lines[1].startswith("[uhd] restarted: "), "not 'added': it was there all along"

    refused = await client.patch("/api/streams/uhd", json={"uri": "scene:?width=3840&height=2160&fps=0"})
    await assert_error(refused, 400, "body.uri: scene fps must be between 1 and 120")
    refused = await client.post("/api/streams", json={"id": "tall", "uri": "scene:?width=64&height=3840"})
    await assert_error(refused, 400, "body.uri: scene 64x3840: at most 4 times as tall as it is wide")
    assert len(drawn) == 2, "a refused scene is not drawn"


async def test_adding_an_existing_id_is_a_conflict(start_server: Start) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=1"))
    await assert_error(await client.post("/api/streams", json={"id": "cam", "uri": "scene:"}), 409, "cam")


async def test_a_source_that_cannot_open_is_added_as_failed(start_server: Start, tmp_path: Path) -> None:
    client = await start_server(media_dirs=(tmp_path,))  # the policy resolves it
    response = await client.post("/api/streams", json={"id": "gone", "uri": str(tmp_path / "no-such.mp4")})
    assert response.status == 201
    assert (await response.json())["state"] in ("starting", "failed"), "the file is looked at by its reader"
    body = await failed(client, "gone")
    assert "no such file" in body["error"]


async def test_patching_a_failed_stream_with_its_own_settings_retries_it(
    start_server: Start, tmp_path: Path, scene_video: Path
) -> None:
    """README's way to retry a file stream once its file is there: the PATCH was taken for a change of
    zones in place (nothing differed), answered 200, and the stream stayed failed."""
    late = tmp_path / "late.mp4"
    client = await start_server(StreamConfig("late", str(late)), media_dirs=(tmp_path,))
    await failed(client, "late")
    shutil.copy(scene_video, late)
    assert (await client.patch("/api/streams/late", json={"uri": str(late)})).status == 200

    async def played(frames: int) -> bool:
        return (await (await client.get("/api/streams/late")).json())["frames_read"] >= frames

    await eventually(lambda: played(15), what="the retried stream to play its file")
    # The same settings again leave a stream that plays alone: its reader goes on (one opened anew
    # reads its file at 15 fps from the start, so its count starts again from 0).
    assert (await client.patch("/api/streams/late", json={"uri": str(late)})).status == 200
    assert await played(15)


async def test_bad_changes_are_refused_and_leave_the_stream_alone(start_server: Start) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=1"))
    await assert_error(await client.patch("/api/streams/cam", json={}), 400, "at least one")
    await assert_error(await client.patch("/api/streams/cam", json={"id": "other"}), 400, "renamed")
    await assert_error(await client.patch("/api/streams/cam", json={"iou": -1}), 400, "iou")
    await assert_error(await client.patch("/api/streams/cam", json={"loop": 1}), 400, "loop")
    await assert_error(await client.patch("/api/streams/cam", json={"classes": ["cat"]}), 400, "classes", "'cat'")
    await assert_error(await client.patch("/api/streams/nope", json={"conf": 0.5}), 404)
    body = await (await client.get("/api/streams/cam")).json()
    assert body["options"]["conf"] == 0.25 and body["options"]["classes"] == []
    assert body["state"] != "failed"


def _zone(name: str) -> dict[str, Any]:
    return {"name": name, "points": [[0, 0], [0.5, 0], [0.5, 0.5]], "units": "fraction"}


async def test_a_change_sent_with_if_match_is_made_only_over_the_settings_it_was_read_with(start_server: Start) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=1"))
    read = await client.get("/api/streams/cam")
    etag = read.headers["ETag"]
    assert (await read.json())["etag"] == etag
    assert (await (await client.get("/api/streams")).json())["streams"][0]["etag"] == etag

    made = await client.patch("/api/streams/cam", json={"zones": [_zone("first")]}, headers={"If-Match": etag})
    assert made.status == 200, await made.text()
    assert made.headers["ETag"] != etag and (await made.json())["etag"] == made.headers["ETag"]
    # A second editor that read the stream before that change would replace the zone unseen.
    stale = await client.patch("/api/streams/cam", json={"zones": [_zone("second")]}, headers={"If-Match": etag})
    await assert_error(stale, 412, "changed since it was read", "GET it again")
    options = (await (await client.get("/api/streams/cam")).json())["options"]
    assert [zone["name"] for zone in options["zones"]] == ["first"]

    current = made.headers["ETag"]
    also = await client.patch(
        "/api/streams/cam", json={"zones": [_zone("second")]}, headers={"If-Match": f'"other", {current}'}
    )
    assert also.status == 200, await also.text()
    anyway = await client.patch("/api/streams/cam", json={"zones": []}, headers={"If-Match": "*"})
    assert anyway.status == 200, await anyway.text()
    refused = await client.patch("/api/streams/cam", json={"zones": []}, headers={"If-Match": "not-quoted"})
    await assert_error(refused, 400, "If-Match")
    now = anyway.headers["ETag"]
    weak = await client.patch("/api/streams/cam", json={"zones": []}, headers={"If-Match": f"W/{now}"})
    await assert_error(weak, 412, "weak ETag")  # compared strongly: a weak tag matches nothing
    assert (await client.patch("/api/streams/cam", json={"zones": [_zone("plain")]})).status == 200


async def test_etags_are_keyed_with_a_secret_of_the_process(start_server: Start) -> None:
    """The settings an ETag stands for may hold a camera's password: two servers of equal settings give
    the stream different ETags, so one says nothing of what it was made from."""
    first = await start_server(StreamConfig("cam", "scene:?seed=1"))
    second = await start_server(StreamConfig("cam", "scene:?seed=1"))
    etags = [(await client.get("/api/streams/cam")).headers["ETag"] for client in (first, second)]
    assert etags[0] != etags[1]


async def test_an_etag_from_before_a_restart_is_refused(start_server: Start) -> None:
    """As README and docs/protocol.md say: an ETag holds until the server restarts."""
    before = await start_server(StreamConfig("cam", "scene:?seed=1"))
    etag = (await before.get("/api/streams/cam")).headers["ETag"]
    await before.close()
    after = await start_server(StreamConfig("cam", "scene:?seed=1"))
    stale = await after.patch("/api/streams/cam", json={"zones": [_zone("z")]}, headers={"If-Match": etag})
    await assert_error(stale, 412, "changed since it was read")
    assert (await (await after.get("/api/streams/cam")).json())["options"]["zones"] == []


async def test_snapshot_is_a_jpeg_of_the_newest_frame(start_server: Start) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=1"))
    await first_frame(client, "cam")
    for query, width in (("", 640), ("?image=clean", 640), ("?image=annotated&max_width=160", 160)):
        response = await client.get(f"/api/streams/cam/snapshot.jpg{query}")
        assert response.status == 200 and response.content_type == "image/jpeg"
        body = await response.read()
        assert body[:2] == JPEG_MAGIC
        image = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
        assert image.shape[1] == width and image.shape[0] == width * 384 // 640, (query, image.shape)
        assert int(response.headers["X-Segcast-Seq"]) >= 0
    await assert_error(await client.get("/api/streams/cam/snapshot.jpg?image=sepia"), 400, "image")
    await assert_error(await client.get("/api/streams/cam/snapshot.jpg?image=none"), 400, "image")
    await assert_error(await client.get("/api/streams/cam/snapshot.jpg?max_width=big"), 400, "max_width")
    await assert_error(await client.get("/api/streams/cam/snapshot.jpg?max_width=4"), 400, "max_width")
    await assert_error(await client.get("/api/streams/nope/snapshot.jpg"), 404)


async def test_snapshot_before_the_first_frame_says_retry(start_server: Start) -> None:
    client = await start_server(StreamConfig("bad", "/no/such/file.mp4"))
    response = await client.get("/api/streams/bad/snapshot.jpg")
    await assert_error(response, 503, "no frame yet")
    assert response.headers["Retry-After"] == "1"


async def test_mjpeg_streams_jpeg_parts_until_the_client_leaves(start_server: Start) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=1"))
    response = await client.get("/api/streams/cam/mjpeg?max_width=320&max_fps=10")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("multipart/x-mixed-replace; boundary=")
    boundary = response.headers["Content-Type"].split("boundary=")[1].encode()
    data = b""
    while data.count(b"--" + boundary) < 3:
        data += await asyncio.wait_for(response.content.readany(), timeout=30)
    part = data.split(b"--" + boundary)[1]
    head, _, body = part.partition(b"\r\n\r\n")
    assert b"Content-Type: image/jpeg" in head and body[:2] == JPEG_MAGIC
    assert client.app is not None and client.app[hub_key].viewer_count("cam") == 1
    response.close()
    await eventually(lambda: _no_viewers(client, "cam"), what="the MJPEG viewer to leave")
    await assert_error(await client.get("/api/streams/cam/mjpeg?max_fps=0"), 400, "max_fps")
    no_number = await client.get("/api/streams/cam/mjpeg?max_fps=abc")
    assert no_number.status == 400, no_number.headers  # not read as a rate: a never-ending feed has no text
    await assert_error(no_number, 400, "max_fps", "'abc'")
    await assert_error(await client.get("/api/streams/nope/mjpeg"), 404)


async def _no_viewers(client: TestClient, stream_id: str) -> bool:
    assert client.app is not None
    return client.app[hub_key].viewer_count(stream_id) == 0


async def test_mjpeg_ends_when_its_stream_is_removed(start_server: Start) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=1"))
    response = await client.get("/api/streams/cam/mjpeg")
    await response.content.readany()
    assert (await client.delete("/api/streams/cam")).status == 204
    await asyncio.wait_for(response.read(), timeout=10)


async def test_tracks_are_those_of_the_newest_frame(start_server: Start) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=1"))
    body = await eventually(lambda: _tracks_when_any(client), what="tracks on the scene")
    track = body["tracks"][0]
    for key in ("id", "class", "conf", "box", "polygon", "trail", "age"):
        assert key in track
    assert body["width"] == 640 and body["height"] == 384
    await assert_error(await client.get("/api/streams/nope/tracks"), 404)


async def _tracks_when_any(client: TestClient) -> dict[str, Any] | None:
    body = await (await client.get("/api/streams/cam/tracks")).json()
    return body if body["tracks"] else None


async def test_health_and_prometheus_metrics(start_server: Start) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=1"))
    await first_frame(client, "cam")
    health = await client.get("/healthz")
    assert health.status == 200 and (await health.json())["status"] == "ok"
    metrics = await client.get("/metrics")
    assert metrics.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = await metrics.text()
    assert "# TYPE segcast_frames_processed_total counter" in text
    assert 'segcast_stream_state{stream="cam",state="live"} 1.0' in text
    samples = [line for line in text.splitlines() if line and not line.startswith("#")]
    for line in samples:
        name_and_labels, value = line.rsplit(" ", 1)
        float(value)
        assert name_and_labels.startswith(("segcast_", "process_"))


async def test_changes_are_saved_to_the_config_file_when_asked(start_server: Start, tmp_path: Path) -> None:
    path = tmp_path / "segcast.toml"
    path.write_text('[server]\nport = 8080\n\n[[streams]]\nid = "a"\nuri = "scene:?seed=1"\n')
    path.chmod(0o600)  # it may hold tokens
    client = await start_server(StreamConfig("a", "scene:?seed=1"), config_path=path)
    response = await client.post("/api/streams", json={"id": "b", "uri": "scene:?seed=2", "conf": 0.5})
    assert response.status == 201
    assert "b" not in path.read_text(), "without persist the file is left alone"
    response = await client.post("/api/streams?persist=1", json={"id": "c", "uri": "scene:?seed=3"})
    assert response.status == 201
    saved = tomllib.loads(path.read_text())
    assert [(s["id"], s["uri"]) for s in saved["streams"]] == [("a", "scene:?seed=1"), ("c", "scene:?seed=3")]
    assert path.stat().st_mode & 0o777 == 0o600, "saving keeps the file's permissions"
    # Saved by a change of its own, "b" is written as it now is, after the file's streams.
    assert (await client.patch("/api/streams/b?persist=1", json={"iou": 0.6})).status == 200
    saved = tomllib.loads(path.read_text())
    assert [s["id"] for s in saved["streams"]] == ["a", "c", "b"]
    assert (saved["streams"][2]["conf"], saved["streams"][2]["iou"]) == (0.5, 0.6)
    assert (await client.delete("/api/streams/a?persist=1")).status == 204
    assert [s["id"] for s in tomllib.loads(path.read_text())["streams"]] == ["c", "b"]
    # Added again, "a" is a new stream: what the file's "a" set is not its (server.persist, `added`).
    assert (await client.post("/api/streams?persist=1", json={"id": "a", "uri": "scene:?seed=4"})).status == 201
    assert "a" in client.server.app[config_file_key].added
    await assert_error(await client.delete("/api/streams/b?persist=maybe"), 400, "persist")


async def test_a_save_writes_the_stream_it_changes_and_leaves_other_unsaved_changes_unsaved(
    start_server: Start, tmp_path: Path
) -> None:
    """A save wrote every stream as it then was: a camera removed "for now", or a zone tried on
    another stream, was saved too by the next change saved, and gone after a restart."""
    path = tmp_path / "segcast.toml"
    path.write_text('[[streams]]\nid = "a"\nuri = "scene:?seed=1"\n\n[[streams]]\nid = "b"\nuri = "scene:?seed=2"\n')
    streams = StreamConfig("a", "scene:?seed=1"), StreamConfig("b", "scene:?seed=2")
    client = await start_server(*streams, config_path=path)
    assert (await client.delete("/api/streams/b")).status == 204
    assert (await client.patch("/api/streams/a", json={"conf": 0.3})).status == 200
    assert (await client.patch("/api/streams/a?persist=1", json={"iou": 0.6})).status == 200

    saved = tomllib.loads(path.read_text())["streams"]
    assert [s["id"] for s in saved] == ["a", "b"], "b's removal was not saved"
    assert (saved[0]["conf"], saved[0]["iou"]) == (0.3, 0.6), "a is saved as it now is"
    # A stream never saved, removed with ?persist=1: the file holds nothing to change, and is not rewritten.
    assert (await client.post("/api/streams", json={"id": "c", "uri": "scene:?seed=3"})).status == 201
    written = path.stat().st_ino  # a save replaces the file: a new one
    assert (await client.delete("/api/streams/c?persist=1")).status == 204
    assert path.stat().st_ino == written
    assert (await client.delete("/api/streams/a?persist=1")).status == 204
    assert [s["id"] for s in tomllib.loads(path.read_text())["streams"]] == ["b"]


async def test_text_that_cannot_be_saved_is_refused_and_the_config_file_still_loads(
    start_server: Start, tmp_path: Path
) -> None:
    """JSON may escape a lone surrogate ("\\ud800"); it is no character, and TOML cannot hold it."""
    path = tmp_path / "segcast.toml"
    path.write_text('[[streams]]\nid = "a"\nuri = "scene:?seed=1"\n')
    client = await start_server(StreamConfig("a", "scene:?seed=1"), config_path=path)
    body = '{"id": "b", "uri": "rtsp://camera.local/\\ud800"}'
    response = await client.post("/api/streams?persist=1", data=body)
    await assert_error(response, 400, "surrogate")
    response = await client.patch("/api/streams/a?persist=1", data='{"tracker_settings": {"x": "\\udfff"}}')
    await assert_error(response, 400, "surrogate")
    assert [s["id"] for s in (await (await client.get("/api/streams")).json())["streams"]] == ["a"]
    assert [s.stream_id for s in load_config(path).streams] == ["a"]


async def test_a_config_file_that_cannot_be_written_is_a_json_error_that_says_so(
    start_server: Start, tmp_path: Path
) -> None:
    """Under ``save_config = true`` the change is made, and the answer says it was not saved (a ``?persist=1``
    that cannot be saved is refused before anything changes: tests/test_upgrade_from_root_image.py)."""
    folder = tmp_path / "gone"
    folder.mkdir()
    client = await start_server(StreamConfig("a", "scene:"), config_path=folder / "segcast.toml", save_config=True)
    folder.rmdir()
    response = await client.post("/api/streams", json={"id": "b", "uri": "scene:"})
    await assert_error(response, 500, "in effect", "segcast.toml", details=("stream",))
    assert (await response.json())["stream"]["id"] == "b"
    response = await client.delete("/api/streams/a")
    await assert_error(response, 500, "in effect", "segcast.toml")
    assert (await client.get("/api/streams/a")).status == 404


async def test_a_save_does_not_undo_edits_made_to_the_config_file_by_hand(start_server: Start, tmp_path: Path) -> None:
    """An admin rotates a leaked token in the file while segcast runs: a later save must not bring it back.
    Under ``save_config`` the change is made and not saved (a ``?persist=1`` is refused before it changes
    anything: tests/test_config_save_races.py)."""
    path = tmp_path / "segcast.toml"
    path.write_text('[server]\nsave_config = true\n\n[[streams]]\nid = "a"\nuri = "scene:?seed=1"\n')
    client = await start_server(StreamConfig("a", "scene:?seed=1"), config_path=path, save_config=True)
    assert (await client.patch("/api/streams/a", json={"zones": [_zone("first")]})).status == 200
    edited = path.read_text() + '\n[auth]\nadmin_tokens = ["rotated-token-0123456789"]\n'
    path.write_text(edited)
    response = await client.patch("/api/streams/a", json={"zones": [_zone("second")]})
    words = ("in effect, but not saved", "segcast.toml was edited", "restart segcast")
    await assert_error(response, 409, *words, details=("stream",))
    assert path.read_text() == edited
    now = await client.get("/api/streams/a")
    assert [z["name"] for z in (await now.json())["options"]["zones"]] == ["second"]
    made = (await response.json())["stream"]  # what a client goes on from: the change was made
    assert [z["name"] for z in made["options"]["zones"]] == ["second"]
    assert made["etag"] == response.headers["ETag"] == now.headers["ETag"]


async def test_persist_is_refused_for_a_stream_from_the_command_line(start_server: Start, tmp_path: Path) -> None:
    """The file never gets a --source stream, so "saved" zones of one were lost at the next start."""
    path = tmp_path / "segcast.toml"
    path.write_text('[[streams]]\nid = "yard"\nuri = "scene:?seed=2"\n')
    streams = StreamConfig("front", "scene:?seed=1"), StreamConfig("yard", "scene:?seed=2")
    client = await start_server(*streams, config_path=path, flag_streams=frozenset({"front"}))
    listed = (await (await client.get("/api/streams")).json())["streams"]
    assert {s["id"]: s["persistable"] for s in listed} == {"front": False, "yard": True}
    response = await client.patch("/api/streams/front?persist=1", json={"zones": [_zone("porch")]})
    await assert_error(response, 409, "nothing was changed", "--source", "[[streams]]")
    await assert_error(await client.delete("/api/streams/front?persist=1"), 409, "nothing was changed")
    assert (await (await client.get("/api/streams/front")).json())["options"]["zones"] == []
    # Removed and added again through the API, the id stays the command line's: in the file it would
    # clash with the --source that starts it at the next start.
    assert (await client.delete("/api/streams/front")).status == 204
    response = await client.post("/api/streams?persist=1", json={"id": "front", "uri": "scene:?seed=3"})
    await assert_error(response, 409, "nothing was changed", "--source")
    assert (await client.post("/api/streams", json={"id": "front", "uri": "scene:?seed=3"})).status == 201
    response = await client.patch("/api/streams/yard?persist=1", json={"zones": [_zone("gate")]})
    assert response.status == 200
    assert [(s.stream_id, s.uri) for s in load_config(path).streams] == [("yard", "scene:?seed=2")]
    assert not (await (await client.get("/api/streams/front")).json())["persistable"]


async def test_with_save_config_a_command_line_streams_changes_are_made_and_not_saved(
    start_server: Start, tmp_path: Path
) -> None:
    """Answered 409 though made, a zone drawn in the viewer looked refused, and the next one, sent
    with the old ETag, was refused as changed elsewhere."""
    path = tmp_path / "segcast.toml"
    path.write_text("[server]\nsave_config = true\n")
    client = await start_server(
        StreamConfig("front", "scene:?seed=1"), config_path=path, save_config=True, flag_streams=frozenset({"front"})
    )
    response = await client.patch("/api/streams/front", json={"zones": [_zone("porch")]})
    assert response.status == 200 and not (await response.json())["persistable"]
    assert [z["name"] for z in (await (await client.get("/api/streams/front")).json())["options"]["zones"]] == ["porch"]
    assert (await client.delete("/api/streams/front")).status == 204
    assert (await client.post("/api/streams", json={"id": "front", "uri": "scene:?seed=2"})).status == 201
    assert (await (await client.get("/api/streams")).json())["streams"][0]["id"] == "front"
    assert load_config(path).streams == ()


async def test_persist_without_a_config_file_is_refused(start_server: Start) -> None:
    client = await start_server()
    response = await client.post("/api/streams?persist=1", json={"id": "a", "uri": "scene:"})
    await assert_error(response, 400, "--config")
    assert (await (await client.get("/api/streams")).json())["streams"] == []


def test_settings_default_to_no_config_file() -> None:
    assert Settings().config_path is None and not Settings().save_config


async def test_with_tokens_the_api_needs_them_and_changes_need_an_admin(start_server: Start) -> None:
    admin, viewer = "admin-token-0123456789abcdef", "viewer-token-0123456789abcdef"
    client = await start_server(admin_tokens=(admin,), viewer_tokens=(viewer,))
    await assert_error(await client.get("/api/streams"), 401, "token")
    as_viewer = {"Authorization": f"Bearer {viewer}"}
    assert (await client.get("/api/streams", headers=as_viewer)).status == 200
    body = {"id": "cam", "uri": "scene:?seed=1"}
    await assert_error(await client.post("/api/streams", json=body, headers=as_viewer), 403, "admin")
    response = await client.post("/api/streams", json=body, headers={"Authorization": f"Bearer {admin}"})
    assert response.status == 201
    assert (await client.get("/")).status == 200 and (await client.get("/embed/cam")).status == 200
