"""What is in the picture, while a remote model's server is down: unknown, not the last frame's counts.

A model on Triton that goes away leaves the streams live (their cameras are fine) with no frame
inferred. Given a disc standing in a zone, when the server goes down, then `/metrics` has no zone
occupancy (its crossings stay), ``/counts`` says it is not current, and MQTT says the stream offline;
when it comes back, each is current again, MQTT only after counts of a frame inferred since. A model
in the server's process is always available: its counts are current throughout. A camera that
reconnects likewise leaves its last frame's occupancy out of `/metrics` until it is live again.
"""

from __future__ import annotations

import asyncio
import functools
import json
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, cast

import numpy as np
import pytest
import torch
from aiohttp.test_utils import TestClient
from ultralytics.engine.results import Results

from server import streams
from server.app import create_app
from server.config import Settings, StreamConfig
from server.events.config import EventsSettings, MqttSettings
from server.http.keys import hub_key
from server.inference.detections import Detections
from server.inference.models import InferenceStatus, InferenceUnavailable
from server.inference.worker import InferenceWorker
from server.options import StreamOptions
from server.triton.model import PendingDetections, RequestTiming, TritonModel
from server.triton.served_model import ServedModel
from server.triton.transport import TritonEndpoint
from tests.support.detections import NAMES
from tests.support.mjpeg_server import MjpegServer
from tests.support.mosquitto import Broker
from tests.support.polling import eventually

DOWN = "Triton at 127.0.0.1:1 unreachable: failed to connect to all addresses"
#: A disc in the middle of every frame, as a fraction of its width and height; a box: detection only.
DISC = (0.4, 0.4, 0.6, 0.6)
OPTIONS = StreamOptions.from_mapping(
    {
        "zones": [{"name": "door", "points": [[0, 0], [1, 0], [1, 1], [0, 1]], "units": "fraction"}],
        "lines": [{"name": "gate", "points": [[0, 0.9], [1, 0.9]], "units": "fraction", "classes": ["disc"]}],
    }
)
IN_ZONE = 'segcast_zone_objects{stream="cam",zone="door",class="disc"}'
CROSSED = 'segcast_line_crossings_total{stream="cam",line="gate",direction="in",class="disc"}'
Client = Callable[..., Any]


def _disc_in(image: np.ndarray) -> np.ndarray:
    height, width = image.shape[:2]
    x1, y1, x2, y2 = DISC
    return np.array([[x1 * width, y1 * height, x2 * width, y2 * height, 0.9, 0]], np.float32)


class _TritonThatGoesDown(TritonModel):
    """A model on a Triton server that the test takes down (`down`) and brings back: while up, every
    request is answered at once with a disc in mid-frame; while down, requests fail as unreachable."""

    def __init__(self) -> None:
        super().__init__(TritonEndpoint("grpc", "127.0.0.1:1", "m"), "grpc://test/m")
        self._served = ServedModel(NAMES, "detect", 320, 32, "images", np.dtype(np.uint8), None, ("o0",), 8, False)
        self._described = True
        self.down = threading.Event()

    @property
    def status(self) -> InferenceStatus:
        return InferenceStatus(available=False, error=DOWN) if self.down.is_set() else InferenceStatus(available=True)

    def submit(self, images: list[np.ndarray], **options: Any) -> PendingDetections:
        if self.down.is_set():
            raise InferenceUnavailable(DOWN)
        answer: Future[list[Any]] = Future()
        answer.set_result([])
        options["on_answer"]()
        return PendingDetections(self, answer, lambda _: [Detections(_disc_in(i)) for i in images], RequestTiming())

    def probe(self, on_answer: Callable[[], None]) -> None:
        """Never asked: the scene's frames keep it busy."""


class _LocalDisc:
    """A model in the server's own process that finds the same disc in every frame."""

    names = NAMES

    def __init__(self) -> None:
        self.overrides: dict[str, Any] = {"imgsz": 320}

    def predict(self, images: list[np.ndarray], **kwargs: Any) -> list[Results]:
        return [Results(image, "", NAMES, boxes=torch.from_numpy(_disc_in(image))) for image in images]


@pytest.fixture
def triton(monkeypatch: pytest.MonkeyPatch) -> _TritonThatGoesDown:
    model = _TritonThatGoesDown()
    monkeypatch.setattr(streams, "InferenceWorker", functools.partial(InferenceWorker, load=lambda _: model))
    return model


@pytest.fixture
def local_disc(monkeypatch: pytest.MonkeyPatch) -> None:
    """Servers started in the test run `_LocalDisc`."""
    model = _LocalDisc()
    monkeypatch.setattr(
        streams, "InferenceWorker", functools.partial(InferenceWorker, load=lambda _: cast("Any", model))
    )


async def _start(aiohttp_client: Client, model: str, events: EventsSettings | None = None) -> TestClient:
    settings = Settings(
        model=model, streams=(StreamConfig("cam", "scene:?seed=3", options=OPTIONS),), events=events or EventsSettings()
    )
    client: TestClient = await aiohttp_client(create_app(settings))
    return client


async def _metrics(client: TestClient) -> str:
    return await (await client.get("/metrics")).text()


def _value(metrics: str, sample: str) -> float | None:
    """The value of ``sample`` (its name and labels) in the exposition text ``metrics``; None if absent."""
    found = [line.rpartition(" ")[2] for line in metrics.splitlines() if line.rpartition(" ")[0] == sample]
    return float(found[0]) if found else None


async def _counts(client: TestClient) -> dict[str, Any]:
    response = await client.get("/api/streams/cam/counts")
    assert response.status == 200, await response.text()
    body: dict[str, Any] = await response.json()
    return body


async def _disc_counted(client: TestClient) -> bool:
    """Whether the disc is in the zone in /metrics and /counts, and the counts say they are current,
    and ``/tracks`` (the newest frame delivered to viewers, which may lag the counts on a busy
    machine: the picture is encoded first) shows it too."""
    counts = await _counts(client)
    in_zone = _value(await _metrics(client), IN_ZONE)
    tracks = await (await client.get("/api/streams/cam/tracks")).json()
    counted = in_zone == 1 and counts["current"] and counts["zones"]["door"]["objects"] == 1
    return bool(counted and len(tracks["tracks"]) == 1)


async def _unanalysed_snapshot(client: TestClient, after: int = -1) -> int | None:
    """The seq of the stream's snapshot if it is one of a frame shown unanalysed (its seq past
    ``after``); None while there is none (503) or it is of an analysed frame or an older one."""
    response = await client.get("/api/streams/cam/snapshot.jpg")
    if response.status != 200:
        return None
    seq = int(response.headers["X-Segcast-Seq"])
    hub = client.app[hub_key]
    latest = hub.latest.get("cam")
    shown_unanalysed = latest is not None and latest.seq == seq and not latest.result.analysed
    return seq if shown_unanalysed and seq > after else None


async def test_while_triton_is_down_zone_occupancy_is_unknown_and_crossings_stay(
    aiohttp_client: Client, triton: _TritonThatGoesDown
) -> None:
    client = await _start(aiohttp_client, "grpc://test/m")
    await eventually(lambda: _disc_counted(client), what="the disc counted in the zone")

    triton.down.set()

    async def unavailable() -> str | None:
        metrics = await _metrics(client)
        return metrics if "segcast_inference_available 0.0" in metrics else None

    metrics = await eventually(unavailable, what="inference unavailable in /metrics")
    assert not [line for line in metrics.splitlines() if line.startswith("segcast_zone_objects{")]
    assert _value(metrics, CROSSED) == 0  # a total so far stays true
    counts = await _counts(client)
    assert counts["current"] is False
    assert counts["zones"]["door"]["objects"] == 1  # the last frame's, said not to be current
    tracks = await (await client.get("/api/streams/cam/tracks")).json()
    assert tracks["current"] is False and len(tracks["tracks"]) == 1  # likewise
    stream = await (await client.get("/api/streams/cam")).json()
    assert stream["state"] == "live"

    # The camera is fine: its frames are still shown, unanalysed, and a snapshot is of the scene now,
    # its annotated picture saying it is not analysed (the disc is not drawn: no box, just the note).
    first = await eventually(lambda: _unanalysed_snapshot(client), what="a snapshot shown unanalysed")
    later = await eventually(lambda: _unanalysed_snapshot(client, after=first), what="a newer unanalysed snapshot")
    assert later > first
    clean = await client.get("/api/streams/cam/snapshot.jpg?image=clean")
    annotated = await client.get("/api/streams/cam/snapshot.jpg")
    assert clean.status == annotated.status == 200
    assert await clean.read() != await annotated.read()
    tracks = await (await client.get("/api/streams/cam/tracks")).json()
    assert tracks["current"] is False and len(tracks["tracks"]) == 1  # still the last analysed frame's

    async def nothing_processed() -> bool:  # frames shown unanalysed are not processed ones
        return (await (await client.get("/api/streams/cam")).json())["processed_fps"] == 0

    await eventually(nothing_processed, what="a processed rate of 0 while frames are shown unanalysed")

    triton.down.clear()
    await eventually(lambda: _disc_counted(client), what="the disc counted again once Triton is back")
    assert (await (await client.get("/api/streams/cam/tracks")).json())["current"] is True


async def test_a_local_models_counts_are_current_throughout(aiohttp_client: Client, local_disc: None) -> None:
    client = await _start(aiohttp_client, "local-disc")
    await eventually(lambda: _disc_counted(client), what="the disc counted in the zone")
    assert "segcast_inference_available 1.0" in await _metrics(client)


async def test_while_a_camera_reconnects_its_zone_occupancy_is_unknown(
    aiohttp_client: Client, local_disc: None
) -> None:
    """Before, the disc of the last frame read stayed in the zone for as long as the camera was away."""
    with MjpegServer(fps=10, width=160) as camera:
        settings = Settings(
            model="local-disc", streams=(StreamConfig("cam", camera.url() + "#timeout=1", options=OPTIONS),)
        )
        client: TestClient = await aiohttp_client(create_app(settings))
        await eventually(lambda: _disc_counted(client), what="the disc counted in the zone")

        camera.stall.set()  # the connection stays open and nothing more arrives

        async def reconnecting() -> str | None:
            metrics = await _metrics(client)
            return metrics if 'segcast_stream_state{stream="cam",state="reconnecting"} 1.0' in metrics else None

        metrics = await eventually(reconnecting, what="the camera reconnecting in /metrics")
        assert not [line for line in metrics.splitlines() if line.startswith("segcast_zone_objects{")]
        assert _value(metrics, CROSSED) == 0  # a total so far stays true
        assert "segcast_inference_available 1.0" in metrics  # the model is fine: the camera is not
        assert (await _counts(client))["current"] is False

        camera.stall.clear()
        await eventually(lambda: _disc_counted(client), what="the disc counted again once the camera is back")


async def test_mqtt_says_a_stream_offline_while_triton_is_down_and_online_after_fresh_counts(
    aiohttp_client: Client, triton: _TritonThatGoesDown, broker: Broker
) -> None:
    """The counts after the outage are the same as before it (the disc has not moved): they go out all
    the same, before ``online``, so a subscriber knows they are of a frame inferred since."""
    import aiomqtt

    received: list[tuple[str, bytes]] = []
    async with aiomqtt.Client("127.0.0.1", broker.port) as subscriber:
        await subscriber.subscribe("segcast/cam/#", qos=1)

        async def collect() -> None:
            async for message in subscriber.messages:
                payload = message.payload if isinstance(message.payload, bytes) else str(message.payload).encode()
                received.append((str(message.topic), payload))

        async def said(payload: bytes, after: int = 0) -> int | None:
            """The index of the first availability message ``payload`` from ``after`` on."""
            found = [i for i, m in enumerate(received) if i >= after and m == ("segcast/cam/availability", payload)]
            return found[0] if found else None

        collecting = asyncio.create_task(collect())
        try:
            events = EventsSettings(mqtt=MqttSettings("127.0.0.1", broker.port))
            client = await _start(aiohttp_client, "grpc://test/m", events)
            online = await eventually(lambda: said(b"online"), what="the stream online")
            before = [json.loads(p) for t, p in received[:online] if t == "segcast/cam/counts"][-1]
            assert before["zones_door_objects"] == 1

            triton.down.set()
            offline = await eventually(lambda: said(b"offline", online), what="the stream offline while Triton is down")
            # Frames shown unanalysed meanwhile: their empty tracks must not go out as the zone's counts.
            await eventually(lambda: _unanalysed_snapshot(client), what="a frame shown unanalysed")
            triton.down.clear()
            back = await eventually(lambda: said(b"online", offline), what="the stream online again")
        finally:
            collecting.cancel()
    fresh = [json.loads(p) for t, p in received[offline:back] if t == "segcast/cam/counts"]
    # The same counts, sent again as the scene now; none of a frame shown unanalysed during the outage,
    # whose empty tracks would read as an empty zone.
    assert fresh and all(counts == before for counts in fresh)
