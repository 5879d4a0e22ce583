"""Fan-out: every viewer gets its own latest-only slot, so a stalled viewer never holds up the others."""
# The WebSocket sender of server/http/ws.py drives each viewer here through a stand-in socket.

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import queue
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from types import FrameType
from typing import Any

import cv2
import numpy as np
import pytest
from aiohttp import WSCloseCode, web

from server.config import Settings
from server.delivery import encode, late_encoding
from server.delivery import hub as hub_module
from server.delivery import viewer as viewer_module
from server.delivery.encode import (
    Encoder,
    FramePacket,
    ImageKind,
    Variant,
    encode_variants,
    encodings,
    make_packet,
    parse_variant,
)
from server.delivery.hub import Hub
from server.delivery.viewer import MAX_PENDING_EVENTS, Event, Subscription, Viewer, ViewerLimitError, ViewerLimits
from server.frames import Frame, FrameResult, Track, TrackEvent, TrackEventKind
from server.http.metrics import render_metrics
from server.http.viewers import VIEWER_RETRY_S, join_viewer
from server.http.ws import send_forever
from server.sources.base import StreamState
from server.streams import StreamManager
from tests.support.listeners import SilentListener

FULL = Variant()
SMALL = Variant(ImageKind.CLEAN, 320)  # never in `encoded`'s packets: the hub encodes it late
RELEASE_TIMEOUT_S = 10.0


class RecordingSocket:
    """Stands in for a WebSocket and its closer; ``stalled`` ones finish no send until `resume`, like a
    client that stopped reading (for good, unless a test resumes it)."""

    def __init__(self, stalled: bool = False) -> None:
        self.stalled = stalled
        self.frames: list[int] = []
        self.events: list[dict[str, Any]] = []
        self.close_code: int | None = None
        self._resumed = asyncio.Event()

    def resume(self) -> None:
        self._resumed.set()

    def close(self, code: int, reason: str) -> None:
        """As `server.http.viewers.WebSocketCloser.close`: the sender's close goes through the handler's closer."""
        self.close_code = code

    async def send_str(self, text: str) -> None:
        if self.stalled:
            await self._resumed.wait()
        data = json.loads(text)
        if data["type"] == "frame":
            self.frames.append(data["seq"])
        else:
            self.events.append(data)

    async def send_bytes(self, data: bytes) -> None:
        if self.stalled:
            await self._resumed.wait()


def encoded(seq: int, stream_id: str = "cam") -> FramePacket:
    """Frame ``seq`` as published with its full-size image; wider than `SMALL`, so that one is scaled."""
    frame = Frame(stream_id, seq, time.time(), seq / 15, np.zeros((4, 640, 3), np.uint8))
    return make_packet(FrameResult(frame, (), 1.0), {FULL: b"\xff\xd8jpeg"})


async def connect(hub: Hub, socket: RecordingSocket, streams: list[str]) -> tuple[Viewer, asyncio.Task[None]]:
    viewer = Viewer()
    hub.add_viewer(viewer)
    hub.subscribe(viewer, {stream_id: Subscription() for stream_id in streams})
    return viewer, asyncio.create_task(send_forever(viewer, socket, socket))  # type: ignore[arg-type]


async def snapshot_of(hub: Hub, asked: Variant) -> FramePacket | None:
    """The frame a snapshot of "cam" asking for ``asked`` is taken of, which has that image."""
    snapshot = await hub.snapshot("cam", asked)
    if snapshot is None:
        return None
    packet, image = snapshot
    assert image == asked and image in packet.jpegs
    return packet


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def tasks_done() -> None:
    """Wait for every other task on the loop: the hub's late offers (tests using it start no others)."""
    await asyncio.gather(*(asyncio.all_tasks() - {asyncio.current_task()}))


class HeldEncoder:
    """Stands in for the hub's `encode_variants` in its worker thread: counts the encodings it is
    asked for and holds each until `release`, so a test decides what happens meanwhile."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.calls = 0
        self.error: Exception | None = None
        self.started = asyncio.Event()
        self._loop = loop
        self._released = threading.Event()

    def __call__(self, result: FrameResult, variants: frozenset[Variant], jpeg_quality: int) -> dict[Variant, bytes]:
        self.calls += 1
        self._loop.call_soon_threadsafe(self.started.set)
        if not self._released.wait(RELEASE_TIMEOUT_S):
            raise TimeoutError("the test never released the encoding")
        if self.error is not None:
            raise self.error
        return encode_variants(result, variants, jpeg_quality)

    def release(self) -> None:
        self._released.set()


@pytest.fixture
async def held(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[HeldEncoder]:
    encoder = HeldEncoder(asyncio.get_running_loop())
    monkeypatch.setattr(late_encoding, "encode_variants", encoder)
    yield encoder
    encoder.release()  # a failed test must not leave a worker thread waiting


async def test_stalled_viewer_does_not_delay_others() -> None:
    hub = Hub(asyncio.get_running_loop())
    stalled_socket, live_socket = RecordingSocket(stalled=True), RecordingSocket()
    stalled, stalled_task = await connect(hub, stalled_socket, ["cam"])
    _, live_task = await connect(hub, live_socket, ["cam"])
    for seq in range(50):
        hub.publish_threadsafe(encoded(seq))
        await settle()
    assert live_socket.frames == list(range(50))
    assert stalled_socket.frames == []
    assert stalled.dropped_frames == 48  # one stuck in send, one waiting in its slot, the rest replaced
    for task in (stalled_task, live_task):
        task.cancel()


async def test_viewer_gets_only_the_streams_it_subscribed_to() -> None:
    hub = Hub(asyncio.get_running_loop())
    socket = RecordingSocket()
    _, task = await connect(hub, socket, ["a"])
    hub.publish_threadsafe(encoded(1, "a"))
    hub.publish_threadsafe(encoded(2, "b"))
    await settle()
    assert socket.frames == [1]
    task.cancel()


async def test_a_resubscription_drops_the_unsent_frames_of_streams_no_longer_watched() -> None:
    """A viewer on a slow link holds a frame of each stream it watched; once it watches only "b", a
    frame of "a" it still held must not be sent to a client that no longer expects it."""
    viewer = Viewer()
    viewer.resubscribe({"a": Subscription(), "b": Subscription()})
    viewer.offer_packet(encoded(1, "a"))
    viewer.offer_packet(encoded(1, "b"))
    viewer.resubscribe({"b": Subscription()})
    _, deliveries = await viewer.take()
    assert [delivery.packet.stream_id for delivery in deliveries] == ["b"]


async def test_new_subscriber_gets_the_newest_frame_at_once() -> None:
    hub = Hub(asyncio.get_running_loop())
    hub.publish_threadsafe(encoded(5))
    await settle()
    socket = RecordingSocket()
    _, task = await connect(hub, socket, ["*"])
    await settle()
    assert socket.frames == [5]
    task.cancel()


async def test_a_late_frame_of_a_removed_stream_does_not_bring_it_back() -> None:
    hub = Hub(asyncio.get_running_loop())
    socket = RecordingSocket()
    _, task = await connect(hub, socket, ["*"])
    hub.stream_added_threadsafe("cam")
    hub.publish_threadsafe(encoded(1))
    hub.stream_removed_threadsafe("cam")
    hub.publish_threadsafe(encoded(2))  # was inside the encoder while the stream was removed
    hub.state_threadsafe("cam", StreamState.ENDED, None)  # and a reader's last word, just as late
    await settle()
    assert "cam" not in hub.latest and "cam" not in hub.states and hub.published("cam") == 0
    assert socket.frames == []  # frame 1 was unsent at the removal: it would have followed "removed"
    assert [e["type"] for e in socket.events] == ["added", "removed"]

    hub.stream_added_threadsafe("cam")  # the same id added again at once is a new stream, and is served
    hub.publish_threadsafe(encoded(1))
    hub.state_threadsafe("cam", StreamState.LIVE, None)
    await settle()
    assert hub.latest["cam"].seq == 1 and socket.frames == [1]
    assert [e["type"] for e in socket.events] == ["added", "removed", "added", "status"]
    task.cancel()


@pytest.mark.parametrize("restarted", [True, False])
async def test_a_restarted_streams_late_frame_still_brings_its_track_events_but_not_its_picture(
    restarted: bool,
) -> None:
    """A restart (a PATCH) ends the old source's tracks on the new source's first frame and its ids go
    on, so the starts in a frame that was still in the encoder must go out (an ``end`` without its
    ``start`` otherwise); its picture must not. A stream removed and added again starts its ids over:
    nothing of the old one may follow."""
    hub = Hub(asyncio.get_running_loop())
    packets: list[FramePacket] = []
    hub.add_packet_listener(packets.append)
    socket = RecordingSocket()
    _, task = await connect(hub, socket, ["cam"])
    hub.stream_added_threadsafe("cam")
    start = TrackEvent(TrackEventKind.START, "cam", 7, 0, "person", time.time(), time.time(), 0.0, (1.0, 1.0, 3.0, 3.0))
    frame = Frame("cam", 9, time.time(), 0.6, np.zeros((4, 4, 3), np.uint8))
    late = make_packet(FrameResult(frame, (), 1.0, (start,)), {FULL: b"\xff\xd8jpeg"})
    if not restarted:
        hub.stream_removed_threadsafe("cam")
    hub.stream_added_threadsafe("cam")
    hub.publish_threadsafe(late)  # was in the encoder during the change
    await settle()
    tracks = [(e["event"], e["id"]) for e in socket.events if e["type"] == "track"]
    assert (tracks, packets) == (([("start", 7)], [late]) if restarted else ([], []))
    assert socket.frames == [] and "cam" not in hub.latest
    task.cancel()


async def test_a_stream_restarted_on_a_new_source_shows_nothing_of_the_old_one() -> None:
    """After a PATCH to a new URI the old camera's picture was still the snapshot, /tracks and the
    first frame of every new viewer, until the new camera's first frame (for ever, if it had none)."""
    hub = Hub(asyncio.get_running_loop())
    hub.stream_added_threadsafe("cam")
    old_camera = [encoded(seq) for seq in (1, 2)]  # 2 was in the encoder while the stream restarted
    hub.publish_threadsafe(old_camera[0])
    await settle()
    assert hub.latest["cam"] is old_camera[0]

    hub.stream_added_threadsafe("cam")  # what `StreamManager.replace` says, as it starts the new source
    hub.publish_threadsafe(old_camera[1])
    await settle()
    assert "cam" not in hub.latest

    socket = RecordingSocket()
    _, task = await connect(hub, socket, ["cam"])
    new_camera = encoded(1)
    hub.publish_threadsafe(new_camera)
    await settle()
    assert hub.latest["cam"] is new_camera and socket.frames == [1], "only the new camera's frame"
    task.cancel()


async def test_no_frame_of_a_stream_follows_its_removed_or_its_added_again() -> None:
    """A frame still in a viewer's slot went out after the ``removed`` queued behind it (events are sent
    first), and after a restart the old source's frame after the ``added``."""
    hub = Hub(asyncio.get_running_loop())
    viewer = Viewer()  # nothing sends for it yet: its slot keeps what it is offered
    hub.add_viewer(viewer)
    hub.subscribe(viewer, {"*": Subscription()})
    for change in (hub.stream_removed_threadsafe, hub.stream_added_threadsafe):
        hub.stream_added_threadsafe("cam")
        hub.publish_threadsafe(encoded(1))
        await settle()
        assert viewer.pending
        change("cam")
        await settle()
        events, frames = await viewer.take()
        assert frames == [] and events[-1].data["type"] == (
            "removed" if change == hub.stream_removed_threadsafe else "added"
        )


async def test_hello_comes_before_what_was_announced_while_the_connection_opened() -> None:
    hub = Hub(asyncio.get_running_loop())
    viewer = Viewer()
    hub.add_viewer(viewer)  # joined, its WebSocket not yet upgraded
    hub.state_threadsafe("cam", StreamState.LIVE, None)
    await settle()
    viewer.greet(Event.of({"type": "hello", "streams": [{"id": "cam", "state": "live"}]}))
    events, _ = await viewer.take()
    assert [event.data["type"] for event in events] == ["hello"]


async def test_viewers_are_counted_per_stream_as_they_subscribe_and_leave() -> None:
    hub = Hub(asyncio.get_running_loop())
    one, every, other = Viewer(), Viewer(), Viewer()
    for viewer, streams in ((one, ["cam"]), (every, ["*", "cam"]), (other, ["door"])):
        hub.add_viewer(viewer)
        hub.subscribe(viewer, {stream_id: Subscription() for stream_id in streams})
    assert (hub.viewer_count("cam"), hub.viewer_count("door"), hub.viewer_count("yard")) == (2, 2, 1)
    hub.subscribe(one, {"door": Subscription()})
    hub.remove_viewer(every)
    assert (hub.viewer_count("cam"), hub.viewer_count("door"), hub.viewer_count("yard")) == (0, 2, 0)


async def test_a_stream_taken_as_metadata_only_beside_every_streams_pictures_is_not_watched() -> None:
    hub = Hub(asyncio.get_running_loop())
    viewer, other = Viewer(), Viewer()
    for each, subscriptions in (
        (viewer, {"*": Subscription(), "cam": Subscription(None)}),
        (other, {"cam": Subscription(None), "door": Subscription()}),
    ):
        hub.add_viewer(each)
        hub.subscribe(each, subscriptions)
    assert (hub.viewer_count("cam"), hub.viewer_count("door"), hub.viewer_count("yard")) == (0, 2, 1)
    hub.remove_viewer(viewer)
    assert (hub.viewer_count("cam"), hub.viewer_count("door"), hub.viewer_count("yard")) == (0, 1, 0)


def delivery_lines_run(call: Callable[[], None]) -> int:
    """Lines of server/delivery/hub.py, late_encoding.py and viewer.py that ``call`` runs: its work, counted
    the same on any machine."""
    lines = 0

    def trace(frame: FrameType, event: str, arg: object) -> Any:
        nonlocal lines
        if frame.f_code.co_filename not in (hub_module.__file__, late_encoding.__file__, viewer_module.__file__):
            return None
        if event == "line":
            lines += 1
        return trace

    previous = sys.gettrace()
    sys.settrace(trace)
    try:
        call()
    finally:
        sys.settrace(previous)
    return lines


async def test_a_subscription_costs_the_same_however_many_other_viewers_watch() -> None:
    """Each WebSocket message resubscribes on the loop: were its work to grow with the audience, a few
    viewers resending long lists would freeze the loop for every viewer and the API."""

    def lines_to_resubscribe(others: int) -> int:
        hub = Hub(asyncio.get_running_loop())
        hub.set_wanted_listener(lambda wanted: None)
        for n in range(others):  # each with scaled images of ids of its own, as in the attack that froze it
            other = Viewer()
            hub.add_viewer(other)
            hub.subscribe(other, {f"other{n}-{k}": Subscription(Variant(max_width=320)) for k in range(16)})
        viewer = Viewer()
        hub.add_viewer(viewer)
        hub.subscribe(viewer, {f"a{k}": Subscription(Variant(max_width=320)) for k in range(16)})
        return delivery_lines_run(lambda: hub.subscribe(viewer, {f"b{k}": Subscription(SMALL) for k in range(16)}))

    assert lines_to_resubscribe(40) == lines_to_resubscribe(1)


async def test_removal_listeners_hear_of_each_removed_stream_even_when_one_fails() -> None:
    hub = Hub(asyncio.get_running_loop())
    heard: list[str] = []

    def broken(stream_id: str) -> None:
        raise RuntimeError("an output's bug")

    hub.add_removal_listener(broken)
    hub.add_removal_listener(heard.append)
    hub.stream_added_threadsafe("cam")
    hub.stream_removed_threadsafe("cam")
    await settle()
    assert heard == ["cam"]


async def test_state_changes_reach_every_viewer_in_order() -> None:
    hub = Hub(asyncio.get_running_loop())
    socket = RecordingSocket()
    _, task = await connect(hub, socket, [])
    hub.state_threadsafe("cam", StreamState.LIVE, None)
    hub.state_threadsafe("cam", StreamState.FAILED, "cannot decode")
    await settle()
    assert [(e["state"], e["error"]) for e in socket.events] == [("live", None), ("failed", "cannot decode")]
    task.cancel()


async def test_the_encoder_is_told_which_variants_viewers_want() -> None:
    hub = Hub(asyncio.get_running_loop())
    told: list[dict[str, frozenset[Variant]]] = []
    hub.set_wanted_listener(lambda wanted: told.append(dict(wanted)))
    small = Variant(ImageKind.CLEAN, 320)
    first, second = Viewer(), Viewer()
    for viewer in (first, second):
        hub.add_viewer(viewer)
    hub.subscribe(first, {"a": Subscription(FULL), "*": Subscription(small)})
    hub.subscribe(second, {"a": Subscription(FULL), "b": Subscription(None)})
    assert told[-1] == {"a": frozenset({FULL}), "*": frozenset({small})}, "metadata-only wants no image"
    hub.remove_viewer(first)
    assert told[-1] == {"a": frozenset({FULL})}
    hub.remove_viewer(second)
    assert told[-1] == {}


async def test_frame_rate_limit_skips_frames_between_due_times() -> None:
    viewer = Viewer()
    viewer.resubscribe({"cam": Subscription(FULL, max_fps=2.0)})
    taken = []
    for step in range(20):  # 10 fps for 2 s
        viewer.offer_packet(encoded(step), now=step * 0.1)
        _, deliveries = await viewer.take() if viewer.pending else ([], [])
        taken += [d.packet.seq for d in deliveries]
    assert taken == [0, 5, 10, 15]


async def test_a_frame_rate_limited_viewer_gets_no_burst_when_its_stream_comes_back_from_a_pause() -> None:
    """After a pause the next due time is at least half an interval after the frame taken: counted on from
    the due time before the pause, ten seconds behind, every frame for the next ten seconds would be due."""
    viewer = Viewer()
    viewer.resubscribe({"cam": Subscription(FULL, max_fps=1.0)})
    times = [0.0] + [10 + step * 0.1 for step in range(20)]  # one frame, 10 s of silence, then 10 fps for 2 s
    taken = []
    for seq, now in enumerate(times):
        viewer.offer_packet(encoded(seq), now=now)
        if viewer.pending:
            await viewer.take()
            taken.append(now)
    assert taken == pytest.approx([0.0, 10.0, 10.5, 11.5])


@pytest.mark.parametrize("max_fps", [2.0, 0.01])
async def test_a_frame_rate_limits_second_frame_comes_a_whole_interval_after_the_first(max_fps: float) -> None:
    """The first frame of a stream a viewer had not seen made the next due half an interval later on the
    real, monotonic clock (an MJPEG at ``max_fps=0.01`` sent its second frame after 50 s, not 100 s): a
    clock from 0, as the test above has, hid it."""
    viewer = Viewer()
    viewer.resubscribe({"cam": Subscription(FULL, max_fps=max_fps)})
    start, interval = 12345.0, 1 / max_fps
    taken = []
    for step in range(31):  # three intervals, ten frames each
        now = start + step * interval / 10
        viewer.offer_packet(encoded(step), now=now)
        if viewer.pending:
            await viewer.take()
            taken.append(now - start)
    assert taken == pytest.approx([0.0, interval, 2 * interval, 3 * interval])


async def test_metadata_only_viewer_gets_frames_without_images() -> None:
    viewer = Viewer()
    viewer.resubscribe({"cam": Subscription(None)})
    viewer.offer_packet(encoded(1))
    _, [delivery] = await viewer.take()
    assert delivery.jpeg is None
    assert json.loads(delivery.packet.message(None))["image"] is None


def test_variants_are_scaled_to_their_width_keeping_the_aspect() -> None:
    frame = Frame("cam", 0, time.time(), 0.0, np.full((384, 640, 3), 90, np.uint8))
    result = FrameResult(frame, (), 1.0)
    small, clean = Variant(ImageKind.ANNOTATED, 320), Variant(ImageKind.CLEAN)
    jpegs = encode_variants(result, frozenset({small, clean, Variant(max_width=4000)}))
    sizes = {v: cv2.imdecode(np.frombuffer(j, np.uint8), cv2.IMREAD_COLOR).shape[:2] for v, j in jpegs.items()}
    assert sizes == {small: (192, 320), clean: (384, 640), Variant(max_width=4000): (384, 640)}


async def test_a_viewer_that_lets_events_pile_up_is_closed_not_grown_without_bound() -> None:
    viewer = Viewer()
    for n in range(MAX_PENDING_EVENTS):
        viewer.offer_event(Event.of({"type": "status", "n": n}))
    assert not viewer.closed
    viewer.offer_event(Event.of({"type": "status", "n": MAX_PENDING_EVENTS}))
    assert viewer.closed and viewer.too_slow
    events, _ = await viewer.take()
    assert len(events) == MAX_PENDING_EVENTS, "what was queued is still handed over, nothing more"
    viewer.offer_event(Event.of({"type": "status", "n": MAX_PENDING_EVENTS + 1}))
    viewer.resubscribe({"cam": Subscription()})
    viewer.offer_packet(encoded(1))
    assert await viewer.take() == ([], []), "a closed viewer takes nothing more: its sender's last round ends"


def status_of_gone_stream(n: int) -> dict[str, Any]:
    return {"type": "status", "v": 1, "stream": f"gone{n}", "state": "failed", "error": "gone"}


async def test_a_viewer_closed_for_events_piling_up_is_sent_all_it_held_then_1013() -> None:
    """They piled up while its sender was stuck on the client: they go out when it reads again, in
    order, before it is told it was too slow (none of them was sent before this fix)."""
    hub = Hub(asyncio.get_running_loop())
    socket = RecordingSocket(stalled=True)
    viewer, task = await connect(hub, socket, ["cam"])
    hub.publish_threadsafe(encoded(1))
    await settle()  # the sender is stuck sending frame 1
    for n in range(MAX_PENDING_EVENTS + 1):
        hub.announce(status_of_gone_stream(n))
    assert viewer.closed and viewer.too_slow
    socket.resume()
    await asyncio.wait_for(task, RELEASE_TIMEOUT_S)
    assert [event["stream"] for event in socket.events] == [f"gone{n}" for n in range(MAX_PENDING_EVENTS)]
    assert socket.close_code == WSCloseCode.TRY_AGAIN_LATER


async def test_a_pictures_only_viewer_keeps_no_events_and_ends_with_its_stream() -> None:
    """An MJPEG viewer carries no events: other streams' announcements and its own stream's track
    events must not pile up and close it as too slow, and its stream's removal closes it."""
    hub = Hub(asyncio.get_running_loop())
    viewer = Viewer("mjpeg-cam", pictures_only=True)
    hub.add_viewer(viewer)
    hub.subscribe(viewer, {"cam": Subscription()})
    start = TrackEvent(TrackEventKind.START, "cam", 7, 0, "person", time.time(), time.time(), 0.0, (1.0, 1.0, 3.0, 3.0))
    frame = Frame("cam", 1, time.time(), 0.0, np.zeros((4, 4, 3), np.uint8))
    hub.publish_threadsafe(make_packet(FrameResult(frame, (), 1.0, (start,)), {FULL: b"\xff\xd8jpeg"}))
    await settle()
    for n in range(2 * MAX_PENDING_EVENTS):
        hub.announce(status_of_gone_stream(n))
        viewer.offer_event(Event.of({"type": "track", "v": 1, "event": "start", "stream": "cam", "id": n}))
    hub.stream_removed_threadsafe("other")
    await settle()
    assert not viewer.closed
    events, [delivery] = await viewer.take()
    assert events == [] and delivery.packet.seq == 1
    hub.stream_removed_threadsafe("cam")
    await asyncio.wait_for(viewer.wait_closed(), RELEASE_TIMEOUT_S)
    assert not viewer.too_slow


async def test_frames_skipped_and_closes_as_too_slow_are_counted_for_clients_that_left_too() -> None:
    """What /metrics reports of slow clients (``segcast_viewer_frames_skipped_total``,
    ``segcast_viewers_closed_too_slow_total``): a viewer's own count went with it."""
    hub = Hub(asyncio.get_running_loop())
    slow, relay = Viewer(), Viewer("webrtc-cam")
    hub.add_viewer(slow)
    hub.add_viewer(relay, audience=lambda: 1)  # its players' frames are counted by the WebRTC peers
    for viewer in (slow, relay):
        hub.subscribe(viewer, {"cam": Subscription()})
    for seq in range(1, 6):
        hub.publish_threadsafe(encoded(seq))
    await settle()
    for n in range(MAX_PENDING_EVENTS + 1):
        hub.announce(status_of_gone_stream(n))
    assert (hub.frames_skipped, hub.closed_too_slow) == (4, 1)
    hub.remove_viewer(slow)
    hub.remove_viewer(relay)
    assert (hub.frames_skipped, hub.closed_too_slow) == (4, 1)


async def test_an_event_is_serialised_once_for_every_viewer() -> None:
    hub = Hub(asyncio.get_running_loop())
    viewers = [Viewer(), Viewer()]
    for viewer in viewers:
        hub.add_viewer(viewer)
    hub.announce({"type": "status", "v": 1, "stream": "cam", "state": "live", "error": None})
    [first], _ = await viewers[0].take()
    [second], _ = await viewers[1].take()
    assert first is second and json.loads(first.text)["state"] == "live"


def test_a_width_at_or_above_the_frames_is_the_full_size_image_encoded_once() -> None:
    frame = Frame("cam", 0, time.time(), 0.0, np.full((384, 640, 3), 90, np.uint8))
    wide, wider, small = Variant(max_width=640), Variant(max_width=3840), Variant(max_width=320)
    jpegs = encode_variants(FrameResult(frame, (), 1.0), frozenset({FULL, wide, wider, small}))
    assert jpegs[FULL] is jpegs[wide] is jpegs[wider]
    assert encodings(jpegs) == 2


@pytest.mark.parametrize(("asked", "given"), [(32, 32), (33, 32), (321, 320), (500, 480), (7000, 3840), (7680, 7680)])
def test_asked_widths_are_rounded_down_to_a_few_steps(asked: int, given: int) -> None:
    assert parse_variant("clean", asked) == Variant(ImageKind.CLEAN, given)


async def test_a_stream_has_at_most_max_scaled_images_sizes_and_more_get_the_full_size() -> None:
    hub = Hub(asyncio.get_running_loop(), ViewerLimits(max_scaled_images=2))
    viewers = []
    for width in (160, 320, 480, 160, 640):
        viewer = Viewer()
        hub.add_viewer(viewer)
        hub.subscribe(viewer, {"cam": Subscription(Variant(max_width=width))})
        viewers.append(viewer)
    given = [viewer.subscriptions["cam"].image for viewer in viewers]
    assert given == [Variant(max_width=160), Variant(max_width=320), FULL, Variant(max_width=160), FULL]
    assert hub.variants_wanted("cam") == 3 and hub.scaled_images_refused == 2
    hub.remove_viewer(viewers[1])
    hub.subscribe(viewers[2], {"cam": Subscription(Variant(max_width=480))})
    assert viewers[2].subscriptions["cam"].image == Variant(max_width=480), "a size given up is free again"


async def test_snapshots_at_many_widths_share_the_streams_scaled_sizes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Snapshots polled at 28 widths made 27 encodings of each frame more, however few sizes its viewers
    may share: beyond `MAX_SCALED_IMAGES` sizes a snapshot gets the size in use nearest its width."""
    encoded_for_snapshots: list[Variant] = []

    def counting(result: FrameResult, variants: frozenset[Variant], jpeg_quality: int) -> dict[Variant, bytes]:
        encoded_for_snapshots.extend(variants)
        return encode_variants(result, variants, jpeg_quality)

    monkeypatch.setattr(late_encoding, "encode_variants", counting)  # the hub's own encodings: not the frame's
    hub = Hub(asyncio.get_running_loop())
    viewer, watched = Viewer(), Variant(max_width=320)
    hub.add_viewer(viewer)
    hub.subscribe(viewer, {"cam": Subscription(watched)})
    result = FrameResult(Frame("cam", 1, time.time(), 0.0, np.full((384, 640, 3), 90, np.uint8)), (), 1.0)
    hub.publish_threadsafe(make_packet(result, encode_variants(result, frozenset({FULL, watched}))))
    await settle()
    given = {}
    for width in (32, 48, 64, 96, 128, 240, 320, 384, 480):
        snapshot = await hub.snapshot("cam", Variant(max_width=width))
        assert snapshot is not None
        packet, image = snapshot
        assert packet.seq == 1 and image in packet.jpegs
        given[width] = image.max_width
    assert given == {32: 32, 48: 48, 64: 64, 96: 64, 128: 64, 240: 64, 320: 320, 384: 320, 480: 320}
    assert sorted(variant.max_width or 0 for variant in encoded_for_snapshots) == [32, 48, 64]
    assert hub.scaled_images_refused == 5
    snapshot = await hub.snapshot("cam", Variant(ImageKind.CLEAN, 200))
    assert snapshot is not None and snapshot[1] == Variant(ImageKind.CLEAN), "no clean size in use: the full size"
    assert hub.scaled_images_refused == 6


async def published_640_wide(hub: Hub) -> None:
    """Publish frame 1 of "cam", 640x384, with its full-size annotated image (a viewer of the full size)."""
    result = FrameResult(Frame("cam", 1, time.time(), 0.0, np.full((384, 640, 3), 90, np.uint8)), (), 1.0)
    hub.publish_threadsafe(make_packet(result, encode_variants(result, frozenset({FULL}))))
    await settle()


async def snapshot_size(hub: Hub, max_width: int) -> tuple[int, int]:
    """The pixel size of the JPEG a snapshot of "cam" asking for ``max_width`` is sent."""
    snapshot = await hub.snapshot("cam", Variant(max_width=max_width))
    assert snapshot is not None
    packet, image = snapshot
    height, width = cv2.imdecode(np.frombuffer(packet.jpegs[image], np.uint8), cv2.IMREAD_UNCHANGED).shape[:2]
    return width, height


async def test_snapshots_wider_than_the_frame_do_not_use_up_its_scaled_sizes() -> None:
    """Four snapshots at widths at or above a 640-wide frame's took the stream's four scaled sizes,
    though each was its full size: a snapshot at 320 was then sent 640 wide, wider than it asked."""
    hub = Hub(asyncio.get_running_loop())
    await published_640_wide(hub)
    assert [await snapshot_size(hub, width) for width in (7680, 1280, 960, 800)] == [(640, 384)] * 4
    assert await snapshot_size(hub, 320) == (320, 192)
    assert hub.scaled_images_refused == 0


async def test_a_snapshot_at_or_above_the_frames_width_gets_the_full_size_when_the_scaled_sizes_are_taken() -> None:
    """With the stream's four scaled sizes taken by thumbnails, a snapshot asking for 7680 or 1000 pixels
    of a 640-wide frame was sent the 96-wide thumbnail, not the full size it asked for and had already."""
    hub = Hub(asyncio.get_running_loop())
    await published_640_wide(hub)
    for width in (32, 48, 64, 96):
        assert (await snapshot_size(hub, width))[0] == width
    assert await snapshot_size(hub, 7680) == (640, 384)
    assert await snapshot_size(hub, 960) == (640, 384)  # 1000, rounded down to a width step
    assert await snapshot_size(hub, 640) == (640, 384)
    assert await snapshot_size(hub, 320) == (96, 58), "the widest size in use not wider than asked"
    assert hub.scaled_images_refused == 1


def viewers_at(hub: Hub, widths: tuple[int, ...]) -> list[Viewer]:
    """One MJPEG viewer of "cam" per ``max_width`` of ``widths``, subscribed in that order."""
    viewers = []
    for width in widths:
        viewer = Viewer(pictures_only=True)
        hub.add_viewer(viewer)
        hub.subscribe(viewer, {"cam": Subscription(Variant(max_width=width))})
        viewers.append(viewer)
    return viewers


async def test_viewers_wider_than_the_frame_do_not_use_up_its_scaled_sizes() -> None:
    """Four MJPEG viewers at widths at or above a 640-wide frame's took the stream's four scaled sizes:
    a viewer asking for 320 was then given the full size, 640 wide."""
    hub = Hub(asyncio.get_running_loop())
    await published_640_wide(hub)
    widths = (7680, 1280, 960, 800, 320)
    viewers = viewers_at(hub, widths)
    assert [viewer.subscriptions["cam"].image for viewer in viewers] == [Variant(max_width=w) for w in widths]
    assert hub.scaled_images_refused == 0
    assert hub.variants_wanted("cam") == 2, "the full size, encoded once for the four, and 320"


async def test_a_viewer_at_the_frames_width_or_above_joins_while_the_scaled_sizes_are_taken() -> None:
    hub = Hub(asyncio.get_running_loop())
    await published_640_wide(hub)
    wide = viewers_at(hub, (320, 400, 480, 560, 1920))[-1]
    assert wide.subscriptions["cam"].image == Variant(max_width=1920)  # its full size, as asked
    assert hub.scaled_images_refused == 0


async def test_viewers_admitted_as_full_size_are_judged_again_when_the_frames_get_wider() -> None:
    """Widths at or above a 640-wide frame's took no scaled size; once the camera sent 3840-wide frames
    they were four scaled sizes beside four others, and every frame was encoded at eight."""
    hub = Hub(asyncio.get_running_loop())
    await published_640_wide(hub)
    viewers_at(hub, (1920, 1280, 960, 800, 320, 400, 480, 560))
    assert hub.variants_wanted("cam") == 5  # the full size and four scaled
    wider = FrameResult(Frame("cam", 2, time.time(), 0.1, np.full((2160, 3840, 3), 90, np.uint8)), (), 1.0)
    hub.publish_threadsafe(make_packet(wider, {}))
    await settle()
    assert hub.variants_wanted("cam") == 5, "the wide viewers now scale: none beyond max_scaled_images"
    assert hub.scaled_images_refused == 4
    kept = [viewer.subscriptions["cam"].image for viewer in hub.viewers]
    assert sorted(image.max_width or 0 for image in kept) == [0, 0, 0, 0, 320, 400, 480, 560]


async def test_viewers_are_limited_in_all_and_per_address_but_loopback_is_not_counted_per_address() -> None:
    hub = Hub(asyncio.get_running_loop(), ViewerLimits(max_viewers=4, max_viewers_per_address=2))
    hub.join(Viewer(address="10.0.0.5"))
    hub.join(Viewer(address="10.0.0.5"))
    with pytest.raises(ViewerLimitError, match="max_viewers_per_address") as refused:
        hub.join(Viewer(address="10.0.0.5"))
    assert refused.value.setting == "max_viewers_per_address"
    hub.join(Viewer(address="127.0.0.1"))
    hub.join(Viewer(address="127.0.0.1"))  # a reverse proxy: every viewer comes from it
    with pytest.raises(ViewerLimitError, match=r"\[server\] max_viewers\)"):
        hub.join(Viewer(address="10.0.0.6"))
    assert hub.refused == {"max_viewers_per_address": 1, "max_viewers": 1}
    assert len(hub.viewers) == 4


def refused_http(hub: Hub, address: str) -> web.HTTPException:
    """The HTTP error `join_viewer` answers a viewer from ``address`` with; it fails the test if the viewer joins."""
    with pytest.raises(web.HTTPException) as refused:
        join_viewer(hub, Viewer(address=address))
    return refused.value


async def test_a_viewer_over_the_per_address_limit_is_a_429_and_over_max_viewers_a_503_both_with_retry_after() -> None:
    """429: that client is asking too much, others may still join; 503: the server is full for everyone."""
    hub = Hub(asyncio.get_running_loop(), ViewerLimits(max_viewers=2, max_viewers_per_address=1))
    join_viewer(hub, Viewer(address="10.0.0.5"))
    over_address = refused_http(hub, "10.0.0.5")
    join_viewer(hub, Viewer(address="10.0.0.6"))
    over_server = refused_http(hub, "10.0.0.7")
    assert (over_address.status, over_server.status) == (429, 503)
    assert "[server] max_viewers_per_address)" in str(over_address.text)
    assert "[server] max_viewers)" in str(over_server.text)
    for refused in (over_address, over_server):
        assert refused.headers["Retry-After"] == str(VIEWER_RETRY_S)
        assert refused.content_type == "application/json"


async def test_metrics_count_the_viewers_refused_under_the_limit_that_refused_each() -> None:
    hub = Hub(asyncio.get_running_loop(), ViewerLimits(max_viewers=2, max_viewers_per_address=1))
    for address in ("10.0.0.5", "10.0.0.5", "10.0.0.5", "10.0.0.6", "10.0.0.7"):
        with contextlib.suppress(ViewerLimitError):
            hub.join(Viewer(address=address))
    manager = StreamManager(Settings(model="none"), SilentListener())
    text = render_metrics(manager, hub, event_loop_tasks=1)
    refused = [line for line in text.splitlines() if line.startswith("segcast_viewers_refused_total{")]
    assert refused == [
        'segcast_viewers_refused_total{limit="max_viewers"} 1',
        'segcast_viewers_refused_total{limit="max_viewers_per_address"} 2',
    ]


def scaled(seq: int) -> FramePacket:
    """Frame ``seq`` as the encoder makes it once it knows that a viewer wants `SMALL`."""
    return encoded(seq).with_jpeg(SMALL, b"\xff\xd8small")


def late_viewer(hub: Hub) -> Viewer:
    """A viewer subscribing to `SMALL`, which the newest frame lacks: the hub encodes it late, for it."""
    viewer = Viewer()
    hub.add_viewer(viewer)
    hub.subscribe(viewer, {"cam": Subscription(SMALL)})
    return viewer


@pytest.mark.parametrize("change", ["removed", "restarted"])
async def test_a_late_encoding_is_not_offered_once_its_stream_was_removed_or_restarted(
    held: HeldEncoder, change: str
) -> None:
    """A frame encoded late for a new viewer reached it after ``removed``, or after ``added`` as a frame
    of the old camera, which also replaced the new camera's frame of the same seq as the newest."""
    hub = Hub(asyncio.get_running_loop())
    hub.stream_added_threadsafe("cam")
    hub.publish_threadsafe(encoded(7))
    await settle()
    viewer = late_viewer(hub)
    await held.started.wait()
    if change == "removed":
        hub.stream_removed_threadsafe("cam")
    else:
        hub.stream_added_threadsafe("cam")
        new_camera = encoded(7)  # encoded before the encoder heard of `SMALL`
        hub.publish_threadsafe(new_camera)
    await settle()
    snapshot = asyncio.create_task(snapshot_of(hub, SMALL))  # of the new camera's frame 7, if any

    held.release()
    await tasks_done()
    events, frames = await viewer.take()
    assert [event.data["type"] for event in events] == ["removed" if change == "removed" else "added"]
    if change == "restarted":  # the new camera's frame, as the viewer still watches the stream
        assert [(d.packet.result is new_camera.result, SMALL in d.packet.jpegs) for d in frames] == [(True, True)]
    else:
        assert frames == []
    if change == "restarted":
        assert held.calls == 2, "the new camera's frame 7 is encoded, not given the old one's picture"
        assert hub.latest["cam"].result is new_camera.result and SMALL in hub.latest["cam"].jpegs
        assert snapshot.result() is hub.latest["cam"]
    else:
        assert snapshot.result() is None


@pytest.mark.parametrize("sent_first", [True, False], ids=["newer-sent", "newer-unsent"])
async def test_a_late_encoding_of_an_older_frame_never_follows_or_replaces_a_newer_one(
    held: HeldEncoder, sent_first: bool
) -> None:
    hub = Hub(asyncio.get_running_loop())
    hub.publish_threadsafe(encoded(1))
    await settle()
    viewer = late_viewer(hub)
    await held.started.wait()
    hub.publish_threadsafe(scaled(2))  # the encoder, told of the new variant, made it for frame 2
    await settle()
    if sent_first:
        _, frames = await viewer.take()
        assert [delivery.packet.seq for delivery in frames] == [2]

    held.release()
    await tasks_done()
    if sent_first:
        assert not viewer.pending
    else:
        _, frames = await viewer.take()
        assert [delivery.packet.seq for delivery in frames] == [2] and viewer.dropped_frames == 0


async def test_a_newer_frame_made_before_the_encoder_heard_of_the_subscription_is_encoded_in_turn(
    held: HeldEncoder,
) -> None:
    """The frame after the one subscribed on was made without the viewer's image, and the stream then
    goes quiet (a file at its end): the viewer still gets a picture, of that newest frame."""
    hub = Hub(asyncio.get_running_loop())
    hub.publish_threadsafe(encoded(1))
    await settle()
    viewer = late_viewer(hub)
    await held.started.wait()
    hub.publish_threadsafe(encoded(2))  # encoded before the encoder heard of the subscription
    await settle()
    held.release()
    await tasks_done()
    _, frames = await asyncio.wait_for(viewer.take(), RELEASE_TIMEOUT_S)
    assert [(delivery.packet.seq, SMALL in delivery.packet.jpegs) for delivery in frames] == [(2, True)]


async def test_a_newer_frame_given_the_viewers_image_by_a_snapshot_is_offered_to_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The newer frame got the image the new viewer wants from a snapshot's encoding, not from its
    publication: it was never offered to the viewer, which must still get it."""
    loop = asyncio.get_running_loop()
    first_held, release = asyncio.Event(), threading.Event()

    def hold_frame_1(result: FrameResult, variants: frozenset[Variant], jpeg_quality: int) -> dict[Variant, bytes]:
        if result.frame.seq == 1:
            loop.call_soon_threadsafe(first_held.set)
            release.wait(RELEASE_TIMEOUT_S)
        return encode_variants(result, variants, jpeg_quality)

    monkeypatch.setattr(late_encoding, "encode_variants", hold_frame_1)
    hub = Hub(loop)
    hub.publish_threadsafe(encoded(1))
    await settle()
    viewer = late_viewer(hub)
    await first_held.wait()
    hub.publish_threadsafe(encoded(2))  # made before the encoder heard of the viewer's image
    await settle()
    snapshot = await snapshot_of(hub, SMALL)
    release.set()
    await tasks_done()
    assert viewer.pending, "the viewer never gets a picture of the (now quiet) stream"
    _, frames = await viewer.take()
    assert snapshot is not None and snapshot.seq == 2 and [d.packet.seq for d in frames] == [2]


async def test_a_viewer_takes_a_frame_once_however_often_it_is_offered() -> None:
    hub = Hub(asyncio.get_running_loop())
    viewer = Viewer()
    hub.add_viewer(viewer)
    hub.subscribe(viewer, {"cam": Subscription()})
    packet = encoded(1)
    viewer.offer_packet(packet)
    _, frames = await viewer.take()
    viewer.offer_packet(packet)  # again, by a late encoding that found it newest
    assert [d.packet.seq for d in frames] == [1] and not viewer.pending and viewer.dropped_frames == 0
    viewer.offer_packet(encoded(2))
    assert viewer.pending


async def test_concurrent_requests_for_one_frames_image_share_one_encoding(held: HeldEncoder) -> None:
    """20 snapshots and 20 new viewers of one size at once cost one encoding of the frame, not 40."""
    hub = Hub(asyncio.get_running_loop())
    hub.publish_threadsafe(encoded(1))
    await settle()
    snapshots = [asyncio.create_task(snapshot_of(hub, SMALL)) for _ in range(20)]
    viewers = [late_viewer(hub) for _ in range(20)]
    await held.started.wait()

    held.release()
    packets = await asyncio.gather(*snapshots)
    await tasks_done()
    assert held.calls == 1
    newest = hub.latest["cam"]
    assert SMALL in newest.jpegs and all(packet is newest for packet in packets)
    for viewer in viewers:
        _, [delivery] = await viewer.take()
        assert delivery.packet is newest and delivery.jpeg == newest.jpegs[SMALL]


async def test_a_failed_shared_encoding_fails_every_caller_once_and_the_next_request_tries_again(
    held: HeldEncoder, caplog: pytest.LogCaptureFixture
) -> None:
    hub = Hub(asyncio.get_running_loop())
    hub.publish_threadsafe(encoded(1))
    await settle()
    held.error = RuntimeError("cannot encode")
    requests = [asyncio.create_task(snapshot_of(hub, SMALL)) for _ in range(3)]
    viewer = late_viewer(hub)
    await held.started.wait()

    with caplog.at_level(logging.ERROR, logger=late_encoding.__name__):
        held.release()
        outcomes = await asyncio.gather(*requests, return_exceptions=True)
        await tasks_done()
    assert [str(outcome) for outcome in outcomes] == ["cannot encode"] * 3 and held.calls == 1
    assert len([r for r in caplog.records if r.name == late_encoding.__name__]) == 1, "logged once, not per caller"
    assert not viewer.pending

    held.error = None
    packet = await snapshot_of(hub, SMALL)
    assert packet is not None and SMALL in packet.jpegs
    assert held.calls == 2, "the failure is not kept for later requests"


async def test_a_caller_that_goes_away_leaves_the_shared_encoding_to_the_others(held: HeldEncoder) -> None:
    hub = Hub(asyncio.get_running_loop())
    hub.publish_threadsafe(encoded(1))
    await settle()
    leaving = asyncio.create_task(snapshot_of(hub, SMALL))
    staying = asyncio.create_task(snapshot_of(hub, SMALL))
    await held.started.wait()
    leaving.cancel()  # a snapshot's client hung up
    await asyncio.gather(leaving, return_exceptions=True)

    held.release()
    [packet] = await asyncio.gather(staying, return_exceptions=True)
    assert leaving.cancelled()
    assert isinstance(packet, FramePacket) and SMALL in packet.jpegs and held.calls == 1


def test_a_frame_whose_images_cannot_be_made_still_delivers_its_metadata_and_events(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """An overlay or JPEG that failed cost the frame's metadata and track events too, with a traceback
    at every frame; now the frame goes out without images, and the failure is logged once."""
    failing = True

    def encode_unless_fixed(
        result: FrameResult, variants: frozenset[Variant], jpeg_quality: int
    ) -> dict[Variant, bytes]:
        if failing:
            raise ValueError("cannot convert float NaN to integer")
        return encode_variants(result, variants, jpeg_quality)

    monkeypatch.setattr(encode, "encode_variants", encode_unless_fixed)
    published: queue.Queue[FramePacket] = queue.Queue()
    encoder = Encoder(published.put)
    encoder.set_wanted({"cam": frozenset({FULL})})
    image = np.zeros((48, 64, 3), np.uint8)
    track = Track(1, 0, "person", 0.9, (4.0, 4.0, 20.0, 20.0), None, ())
    start = TrackEvent(TrackEventKind.START, "cam", 1, 0, "person", time.time(), time.time(), 0.0, track.box)

    def deliver(seq: int, events: tuple[TrackEvent, ...] = ()) -> FramePacket:
        encoder.submit(FrameResult(Frame("cam", seq, time.time(), seq / 15, image), (track,), 1.0, events))
        return published.get(timeout=RELEASE_TIMEOUT_S)

    encoder.start()
    try:
        with caplog.at_level(logging.INFO, logger="server.delivery.encode"):
            first, second = deliver(1, (start,)), deliver(2)
            failing = False
            third = deliver(3)
            failing = True
            deliver(4)
            encoder.forget("cam")  # removed, and added again under its id: a failure of its own
            deliver(1)
    finally:
        encoder.stop()
    assert (first.jpegs, second.jpegs) == ({}, {}) and FULL in third.jpegs
    assert first.result.events == (start,) and first.metadata["tracks"]
    logged = [record.levelno for record in caplog.records if record.name == "server.delivery.encode"]
    assert logged == [logging.ERROR, logging.INFO, logging.ERROR, logging.ERROR], "each failure once, the recovery"


def test_what_the_worker_handed_over_last_is_published_when_the_encoder_stops() -> None:
    """The worker stops first; its last result, handed over while the encoder was still publishing
    the one before, carries the track's end, which the event outputs (stopped later) must still get."""
    publishing = threading.Event()
    published: list[FramePacket] = []

    def publish(packet: FramePacket) -> None:
        publishing.set()
        encoder._stop.wait(RELEASE_TIMEOUT_S)  # still publishing the first frame when stop is asked
        published.append(packet)

    encoder = Encoder(publish)
    image = np.zeros((48, 64, 3), np.uint8)

    def result(seq: int, kind: TrackEventKind) -> FrameResult:
        event = TrackEvent(kind, "cam", 1, 0, "person", time.time(), time.time(), 0.0, (4.0, 4.0, 20.0, 20.0))
        return FrameResult(Frame("cam", seq, time.time(), seq / 15, image), (), 1.0, (event,))

    encoder.start()
    encoder.submit(result(1, TrackEventKind.START))
    assert publishing.wait(RELEASE_TIMEOUT_S)
    encoder.submit(result(2, TrackEventKind.END))
    encoder.stop()
    assert [[event.kind for event in packet.result.events] for packet in published] == [
        [TrackEventKind.START],
        [TrackEventKind.END],
    ]
