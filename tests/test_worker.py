"""The inference thread, with a stand-in model that detects the scene's truth (no weights needed)."""

from __future__ import annotations

import functools
import logging
import queue
import threading
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pytest
import torch
from ultralytics.engine.results import Results

from server import streams
from server.analytics.engine import StreamAnalytics
from server.analytics.events import AnalyticsEvent, AnalyticsEventKind
from server.analytics.shapes import parse_lines, parse_zones
from server.config import Settings, StreamConfig
from server.delivery.encode import FramePacket
from server.frames import Frame, FrameResult, Track, TrackEvent, TrackEventKind
from server.inference.analysis import analyse, restart_exits
from server.inference.models import ModelError
from server.inference.options import InferenceOptions
from server.inference.registration import StreamRegistration
from server.inference.worker import InferenceWorker
from server.options import StreamOptions
from server.scene import Scene
from server.sources import open_source
from server.sources.base import LatestFrame
from server.tracking.stream import StreamTracker
from tests.support.detections import NAMES, TruthModel
from tests.support.driver import EPOCH, PACE, RESULT_TIMEOUT_S, Driver
from tests.support.listeners import SilentListener

if TYPE_CHECKING:
    from ultralytics import YOLO

SEED = 7


class FixedModel:
    """Stands in for a detection model that sees the same ``rows`` (x1, y1, x2, y2, conf, class) in
    every image, and keeps at most ``max_det`` of them, the most confident first, as NMS does."""

    names = NAMES

    def __init__(self, rows: list[list[float]]) -> None:
        self.overrides: dict[str, Any] = {"imgsz": 320}
        self.rows = sorted(rows, key=lambda row: -row[4])

    def predict(self, images: list[np.ndarray], max_det: int = 300, **kwargs: Any) -> list[Results]:
        boxes = torch.tensor(self.rows[:max_det], dtype=torch.float32).reshape(-1, 6)
        return [Results(image, "", NAMES, boxes=boxes) for image in images]


class DroppingModel(TruthModel):
    """Leaves the last result out of its first answer, like a broken model or export might."""

    def __init__(self) -> None:
        super().__init__()
        self.dropped = False

    def predict(self, images: list[np.ndarray], **kwargs: Any) -> list[Results]:
        results = super().predict(images, **kwargs)
        if self.dropped:
            return results
        self.dropped = True
        return results[:-1]


def track_events(result: FrameResult) -> list[tuple[TrackEventKind, int]]:
    return [(e.kind, e.track_id) for e in result.events if isinstance(e, TrackEvent)]


def track_rows(result: FrameResult) -> list[tuple[object, ...]]:
    return [
        (t.track_id, t.class_id, t.box, None if t.polygon is None else t.polygon.tobytes(), t.trail)
        for t in result.tracks
    ]


def test_frames_of_all_streams_go_through_the_model_in_one_call() -> None:
    with Driver(TruthModel()) as driver:
        for n, seed in enumerate((1, 2, 3)):
            driver.add(f"s{n}", Scene(seed=seed))
        results = driver.together([driver.frame(f"s{n}", 40) for n in range(3)])
        assert sorted(results) == ["s0", "s1", "s2"]
        assert [size for size, _ in driver.model.calls[-1:]] == [3]


def test_max_batch_splits_a_cycle_and_no_stream_is_starved() -> None:
    with Driver(TruthModel(), max_batch=2) as driver:
        for n in range(3):
            driver.add(f"s{n}", Scene(seed=n))
        results = driver.together([driver.frame(f"s{n}", 40) for n in range(3)])
        assert sorted(results) == ["s0", "s1", "s2"]
        assert [size for size, _ in driver.model.calls[-2:]] == [2, 1]


def test_streams_that_need_another_image_size_get_their_own_call() -> None:
    with Driver(TruthModel()) as driver:
        driver.add("small", Scene(seed=1), StreamOptions(imgsz=320))
        driver.add("large", Scene(seed=2), StreamOptions(imgsz=640))
        driver.together([driver.frame("small", 40), driver.frame("large", 40)])
        assert sorted((size, kwargs["imgsz"]) for size, kwargs in driver.model.calls[-2:]) == [(1, 320), (1, 640)]


def test_the_batch_count_counts_model_calls_not_cycles() -> None:
    """``segcast_inference_cycles_total`` is "Model batches run.": a cycle that needs two calls (two
    image sizes) counts two, and one with only a played-out file's last frame (no call) counts none."""
    with Driver(TruthModel()) as driver:
        driver.add("small", Scene(seed=1), StreamOptions(imgsz=320))
        driver.add("large", Scene(seed=2), StreamOptions(imgsz=640))
        cycles, calls = driver.worker.cycles, len(driver.model.calls)
        driver.together([driver.frame("small", 40), driver.frame("large", 40)])
        assert len(driver.model.calls) - calls == 3, "the pacing frame's call, then one per image size"
        assert driver.worker.cycles - cycles == 3
        image, _ = driver.scenes["small"].render(40)
        driver.put(Frame("small", 41, EPOCH + 41 / 15, 41 / 15, image, ended=True))
        assert driver.wait(1)["small"].frame.ended
        assert len(driver.model.calls) - calls == 3 and driver.worker.cycles - cycles == 3


def test_streams_with_different_confidence_share_a_call_and_keep_their_own_threshold() -> None:
    with Driver(TruthModel()) as driver:  # the stand-in model reports every object at 0.9
        driver.add("lax", Scene(seed=SEED), StreamOptions(conf=0.3))
        driver.add("strict", Scene(seed=SEED), StreamOptions(conf=0.95))
        results = driver.together([driver.frame("lax", 60), driver.frame("strict", 60)])
        size, kwargs = driver.model.calls[-1]
        # One call, run as low as the trackers look (ByteTrack's track_low_thresh), not at either conf.
        assert (size, kwargs["conf"]) == (2, 0.1)
        assert results["lax"].tracks and not results["strict"].tracks


def test_a_stream_capped_at_one_detection_still_gets_its_class_behind_a_more_confident_other() -> None:
    """NMS caps its boxes before a stream's class filter: run at the stream's own max_det, a disc scoring
    0.9 would leave no room for the triangle (0.5) the stream asks for. The cap applies after the filter."""
    rows = [[20, 20, 80, 80, 0.9, 0], [200, 20, 260, 80, 0.5, 2]]
    with Driver(FixedModel(rows)) as driver:
        driver.add("triangles", Scene(seed=1), StreamOptions.from_mapping({"classes": ["triangle"], "max_det": 1}))
        driver.add("capped", Scene(seed=2), StreamOptions.from_mapping({"max_det": 1}))
        alone = driver.step({"triangles": 40})["triangles"]
        batched = driver.together([driver.frame("triangles", 41), driver.frame("capped", 41)])
    assert [t.class_name for t in alone.tracks] == ["triangle"]
    assert [t.class_name for t in batched["triangles"].tracks] == ["triangle"]
    assert [t.class_name for t in batched["capped"].tracks] == ["disc"]


def test_a_model_giving_fewer_results_than_images_fails_those_frames_not_the_thread() -> None:
    with Driver(DroppingModel()) as driver:
        driver.add("cam", Scene(seed=1))
        driver.put(driver.frame("cam", 40))
        driver.wait_taken("cam")
        assert driver.step({"cam": 41})["cam"].frame.seq == 41
        stats = driver.worker.stats("cam")
        assert stats is not None and (stats.errors, stats.processed) == (1, 1)
        assert stats.last_error is not None and stats.last_error.startswith("model failed")


def test_two_streams_batched_get_exactly_the_tracks_each_gets_alone() -> None:
    frames = range(0, 150)
    alone: dict[str, list[list[tuple[object, ...]]]] = {"a": [], "b": []}
    for stream_id, seed in (("a", 7), ("b", 11)):
        with Driver(TruthModel()) as driver:
            driver.add(stream_id, Scene(seed=seed))
            alone[stream_id] = [track_rows(driver.step({stream_id: i})[stream_id]) for i in frames]
    with Driver(TruthModel()) as driver:
        driver.add("a", Scene(seed=7))
        driver.add("b", Scene(seed=11))
        for i in frames:
            results = driver.together([driver.frame("a", i), driver.frame("b", i)])
            assert track_rows(results["a"]) == alone["a"][i], f"stream a, frame {i}"
            assert track_rows(results["b"]) == alone["b"][i], f"stream b, frame {i}"
    assert sum(map(len, alone["a"])) > 100 and sum(map(len, alone["b"])) > 100


def test_a_model_exception_on_one_frame_is_charged_to_its_stream_only() -> None:
    with Driver(TruthModel()) as driver:
        driver.add("good", Scene(seed=1))
        driver.add("bad", Scene(seed=2))
        results = driver.together([driver.frame("good", 40), driver.frame("bad", 40, fail=True)], expect=1)
        assert list(results) == ["good"]
        driver.step({"good": 41, "bad": 41})  # the worker is alive and the failed stream recovers
        stats = driver.worker.stats("bad")
        assert stats is not None and stats.errors == 1 and stats.processed == 1
        assert stats.last_error is not None and "model failed" in stats.last_error
        good = driver.worker.stats("good")
        assert good is not None and good.errors == 0 and good.processed == 2


@pytest.mark.parametrize(
    ("image", "reason"),
    [
        (np.zeros((48, 64), np.uint8), "bad frame: expected a BGR uint8 image"),
        (np.zeros((8, 640, 3), np.uint8), "bad frame: 640x8 is smaller than 16x16"),
    ],
    ids=["grey", "sliver"],
)
def test_a_bad_frame_is_counted_and_the_worker_carries_on(image: np.ndarray, reason: str) -> None:
    with Driver(TruthModel()) as driver:
        driver.add("cam", Scene(seed=1))
        driver.put(Frame("cam", 0, 0.0, 0.0, image))
        driver.wait_taken("cam")  # not replaced by the next frame before the worker saw it
        assert driver.step({"cam": 2})["cam"].frame.seq == 2
        stats = driver.worker.stats("cam")
        assert stats is not None and stats.errors >= 1
        assert stats.last_error is not None and stats.last_error.startswith(reason), stats.last_error


def test_a_failing_result_handler_does_not_stop_the_worker() -> None:
    seen: queue.Queue[int] = queue.Queue()

    def on_result(result: FrameResult) -> None:
        seen.put(result.frame.seq)
        if result.frame.seq == 40:
            raise RuntimeError("viewer went away")

    model = TruthModel()
    worker = InferenceWorker("m", on_result, InferenceOptions(), load=lambda _: model)  # type: ignore[arg-type,return-value]
    worker.start()
    try:
        scene = Scene(seed=1)
        slot = worker.add_stream("cam", 15.0)
        for index in (40, 41):
            image, truths = scene.render(index)
            slot.put(Frame("cam", index, 0.0, index / 15, model.register(image, truths)))
            assert seen.get(timeout=RESULT_TIMEOUT_S) == index
    finally:
        worker.stop()


def test_a_stream_removed_and_added_again_starts_fresh_and_the_other_is_untouched() -> None:
    with Driver(TruthModel()) as driver:
        driver.add("a", Scene(seed=SEED))
        driver.add("b", Scene(seed=11))
        for i in range(60, 80):
            driver.step({"a": i, "b": i})
        b_ids = {t.track_id for t in driver.step({"b": 80})["b"].tracks}
        driver.remove("a")
        driver.add("a", Scene(seed=SEED))
        fresh = driver.step({"a": 81, "b": 81})
        assert min(t.track_id for t in fresh["a"].tracks) == 1, "a re-added stream gets a fresh tracker"
        assert all(e.kind is TrackEventKind.START for e in fresh["a"].events)
        assert len(fresh["a"].events) == len(fresh["a"].tracks)
        assert {t.track_id for t in fresh["b"].tracks} == b_ids, "the other stream keeps its tracks"
        assert driver.results.empty()


def test_a_restarted_stream_ends_its_tracks_and_zone_visits_and_its_ids_go_on() -> None:
    """A stream restarted with new settings (a PATCH) gets a fresh tracker, but its open tracks end,
    leaving their zones, on its first frame after the restart, and no id of it is given twice."""
    with Driver(TruthModel()) as driver:
        driver.add("a", Scene(seed=SEED), _zone("door"))
        open_ids: set[int] = set()
        for index in range(60, 66):
            for kind, track_id in track_events(driver.step({"a": index})["a"]):
                if kind is TrackEventKind.START:
                    open_ids.add(track_id)
                else:
                    open_ids.discard(track_id)
        assert open_ids
        driver.worker.remove_stream("a", restarting=True)
        driver.add("a", Scene(seed=SEED), StreamOptions(conf=0.3))
        first = driver.step({"a": 66})["a"]
        later = driver.step({"a": 67})["a"]
    new_ids = {t.track_id for t in first.tracks}
    assert new_ids and min(new_ids) > max(open_ids), "ids go on after the old ones"
    events = [(type(e).__name__, e.kind.value, e.track_id) for e in first.events]
    exits = [("AnalyticsEvent", AnalyticsEventKind.ZONE_EXIT.value, i) for i in sorted(open_ids)]
    starts = [("TrackEvent", "start", i) for i in sorted(new_ids)]
    ends = [("TrackEvent", "end", i) for i in sorted(open_ids)]
    assert sorted(events[: len(exits)]) == exits and events[len(exits) :] == [*starts, *ends], events
    assert all(isinstance(e, AnalyticsEvent) and e.dwell_s is not None for e in first.events[: len(exits)])
    assert first.analytics is None, "the new settings have no zones"
    assert not any(kind is TrackEventKind.END for kind, _ in track_events(later))


def test_a_crossing_awaiting_confirmation_when_its_stream_restarts_is_counted() -> None:
    """A track seen over a line, its crossing waiting out ``confirm_s``, when the stream is restarted
    with new settings: its end (in the new tracker's first frame) counts the crossing, as it would on
    a looped file, in the analytics that saw it."""
    gate = parse_lines([{"name": "gate", "points": [[0, 100], [320, 100]], "confirm_s": 0.5}])
    image = np.zeros((240, 320, 3), np.uint8)
    analytics = StreamAnalytics("cam", (), gate)
    box = (0.0, 0.0, 0.0, 0.0)
    # Over the line from the 2nd frame, 0.3 s before the restart: pending, and held for more than half
    # of confirm_s (a crossing seen across for less is dropped at a track's end, docs/analytics.md).
    for index, bottom in enumerate([40, 140, 150, 155, 160]):
        box = (100.0, bottom - 30.0, 140.0, float(bottom))
        track = Track(1, 0, "person", 0.9, box, None, ())
        analytics.update((track,), (), Frame("cam", index, 1000 + index / 10, index / 10, image))
    frame = Frame("cam", 5, 1000.5, 0.5, image)
    end = TrackEvent(TrackEventKind.END, "cam", 1, 0, "person", frame.capture_time, 1000.0, 0.4, box)
    old = StreamRegistration("cam", 10.0, StreamOptions(), LatestFrame(threading.Event()), analytics=analytics)
    old.tracker = cast("Any", object())  # it had frames
    new = StreamRegistration("cam", 10.0, StreamOptions(), LatestFrame(threading.Event()), restarts=old)
    events = restart_exits(new, (end,), frame)
    assert [(e.kind, e.line) for e in events] == [(AnalyticsEventKind.LINE_CROSS, "gate")]


def test_a_restarted_stream_whose_new_shapes_fail_still_ends_its_old_visits() -> None:
    """A remote model is described only when its first frame comes: a zone limited to a class it lacks
    fails the new analytics there, which must not keep the old tracks' visits open for good."""
    image = np.zeros((240, 320, 3), np.uint8)
    whole = [[0, 0], [320, 0], [320, 240], [0, 240]]
    analytics = StreamAnalytics("cam", parse_zones([{"name": "bay", "points": whole}]), ())
    box = (100.0, 100.0, 140.0, 140.0)
    for index in range(3):
        track = Track(1, 0, "person", 0.9, box, None, ())
        analytics.update((track,), (), Frame("cam", index, 1000 + index / 10, index / 10, image))
    old = StreamRegistration("cam", 10.0, StreamOptions(), LatestFrame(threading.Event()), analytics=analytics)
    old.tracker = cast("Any", object())  # it had frames
    unknown = StreamOptions.from_mapping({"zones": [{"name": "bay", "points": whole, "classes": ["unicorn"]}]})
    new = StreamRegistration("cam", 10.0, unknown, LatestFrame(threading.Event()), restarts=old)
    frame = Frame("cam", 3, 1000.3, 0.3, image)
    end = TrackEvent(TrackEventKind.END, "cam", 1, 0, "person", frame.capture_time, 1000.0, 0.2, box)
    _, events, _ = analyse(new, (), (end,), frame, {0: "person"})
    assert [(e.kind, getattr(e, "zone", None)) for e in events] == [
        (AnalyticsEventKind.ZONE_EXIT, "bay"),
        (TrackEventKind.END, None),
    ]
    assert "unicorn" in str(new.analytics_error)
    assert new.restarted() is None, "the old analytics are let go"


@pytest.mark.parametrize("change", ["restarted", "removed", "restarted, then removed", "added again"])
def test_a_frame_tracked_while_its_stream_restarts_still_brings_its_starts(
    change: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The restarted stream's tracker ends the tracks this frame started, so their starts must go out
    with it (an ``end`` without its ``start`` otherwise); a stream removed or replaced meanwhile gives
    nothing more."""
    restarting = change == "restarted"
    with Driver(TruthModel()) as driver:
        driver.add("a", Scene(seed=SEED))
        update = StreamTracker.update

        def changed_while_tracking(tracker: StreamTracker, detections: Any, frame: Frame) -> Any:
            found = update(tracker, detections, frame)
            if frame.stream_id == "a" and frame.seq == 60:
                if change.startswith("restarted"):
                    driver.worker.remove_stream("a", restarting=True)
                if change == "restarted, then removed":
                    driver.worker.add_stream("a", 10.0)
                if change != "restarted":
                    driver.worker.add_stream("a", 10.0) if change == "added again" else driver.worker.remove_stream("a")
            return found

        monkeypatch.setattr(StreamTracker, "update", changed_while_tracking)
        driver.put(driver.frame("a", 60))
        driver.wait_taken("a")
        first = driver.step({PACE: 1})  # the result after a's: a's frame is tracked in an earlier cycle
    if restarting:
        assert list(first) == ["a"]
        assert any(kind is TrackEventKind.START for kind, _ in track_events(first["a"]))
    else:
        assert list(first) == [PACE], "nothing of a removed stream after its removal"


def test_ids_go_on_across_restarts_that_gave_no_frame_and_start_over_once_removed() -> None:
    with Driver(TruthModel()) as driver:
        driver.add("a", Scene(seed=SEED))
        before = {t.track_id for t in driver.step({"a": 60})["a"].tracks}
        driver.worker.remove_stream("a", restarting=True)
        driver.worker.remove_stream("a", restarting=True)  # its new source did not open; restarted again
        driver.add("a", Scene(seed=SEED))
        driver.worker.remove_stream("a", restarting=True)  # restarted again before its first frame
        driver.add("a", Scene(seed=SEED))
        after = driver.step({"a": 61})["a"]
        assert min(t.track_id for t in after.tracks) > max(before)
        assert sorted(i for kind, i in track_events(after) if kind is TrackEventKind.END) == sorted(before)
        driver.remove("a")
        driver.add("a", Scene(seed=SEED))
        assert min(t.track_id for t in driver.step({"a": 62})["a"].tracks) == 1, "removed, it starts over"


def test_a_streams_processing_rate_is_unknown_after_one_frame_and_measured_from_its_second() -> None:
    """One frame has no interval to measure: a rate shown then would only be the source's nominal one."""
    with Driver(TruthModel()) as driver:
        driver.add("cam", Scene(seed=SEED))
        driver.step({"cam": 0})
        first = driver.worker.stats("cam")
        driver.step({"cam": 1})
        second = driver.worker.stats("cam")
    assert first is not None and first.processing_fps is None
    assert second is not None and second.processing_fps == pytest.approx(Scene(seed=SEED).fps)


def _thinned_and_failed_once(driver: Driver, stream_id: str) -> None:
    """Under a cap of 1 fps on a 15 fps scene, frame 1 is left out and frame 15 fails in the model."""
    driver.step({stream_id: 0})
    driver.put(driver.frame(stream_id, 1))
    driver.wait_taken(stream_id)
    driver.put(driver.frame(stream_id, 15, fail=True))
    driver.wait_taken(stream_id)
    driver.step({stream_id: 30})  # after the failed frame in the worker's order


@pytest.mark.parametrize(("same_reader", "carried"), [(True, (1, 1)), (False, (0, 0))], ids=["same", "reopened"])
def test_a_restart_carries_the_thinned_and_failed_counts_only_where_it_keeps_reading_the_same_source(
    same_reader: bool, carried: tuple[int, int]
) -> None:
    """A restart that reopens the source starts every count from 0, as its new reader's counts do."""
    capped = StreamOptions(process_fps=1.0)
    with Driver(TruthModel()) as driver:
        driver.add("cam", Scene(seed=SEED), capped)
        _thinned_and_failed_once(driver, "cam")
        before = driver.worker.stats("cam")
        driver.worker.remove_stream("cam", restarting=True)
        driver.worker.add_stream("cam", 15.0, capped, same_reader=same_reader)
        after = driver.worker.stats("cam")
    assert before is not None and (before.thinned, before.errors) == (1, 1)
    assert after is not None and (after.thinned, after.errors) == carried


class Listener(SilentListener):
    """The viewers' side of a `streams.StreamManager`: every published result, in order."""

    def __init__(self) -> None:
        self.results: queue.Queue[FrameResult] = queue.Queue()

    def publish_threadsafe(self, packet: FramePacket) -> None:
        self.results.put(packet.result)

    def next_with_tracks(self, ending: int | None = None) -> tuple[FrameResult, list[tuple[TrackEventKind, int]]]:
        """The next result showing a track, and the track events of it and of the results before it; with
        ``ending``, from the result that ends that track on. A replaced source's frames go on until the
        replacement takes effect, and the first result of the new registration is the one that ends the
        old tracks: a time taken before the change cannot tell them apart (a frame the old source took
        after it still came before the change)."""
        events: list[tuple[TrackEventKind, int]] = []
        while True:
            result = self.results.get(timeout=RESULT_TIMEOUT_S)
            if ending is not None and not events and (TrackEventKind.END, ending) not in track_events(result):
                continue
            events += track_events(result)
            if result.tracks:
                return result, events


def test_a_stream_restarted_by_new_settings_ends_its_tracks_and_its_ids_go_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """Through `StreamManager.replace`, as a PATCH of ``conf`` does it, with a live (scene) source."""
    model = FixedModel([[100, 80, 160, 140, 0.9, 1]])
    monkeypatch.setattr(
        streams, "InferenceWorker", functools.partial(InferenceWorker, load=lambda _: cast("YOLO", model))
    )
    # A restart keeps the frame the encoder holds: its track starts must still go out (`Hub`).
    forgotten: list[str] = []
    forget = streams.Encoder.forget
    monkeypatch.setattr(streams.Encoder, "forget", lambda encoder, i: (forgotten.append(i), forget(encoder, i)))
    listener = Listener()
    manager = streams.StreamManager(Settings(model="fixed"), listener)
    manager.start()
    try:
        manager.add(StreamConfig("cam", "scene:?seed=1"))
        before, _ = listener.next_with_tracks()
        [old] = [t.track_id for t in before.tracks]
        manager.replace(StreamConfig("cam", "scene:?seed=1", options=StreamOptions(conf=0.3)))
        after, events = listener.next_with_tracks(ending=old)
        assert forgotten == []
        manager.remove("cam")
        assert forgotten == ["cam"]
    finally:
        manager.stop()
    [new] = [t.track_id for t in after.tracks]
    assert new > old
    assert (TrackEventKind.END, old) in events and events.count((TrackEventKind.START, new)) == 1


@pytest.mark.parametrize("change", ["remove", "restart"])
def test_an_id_being_stopped_is_not_free_for_a_published_stream_until_it_is_done(
    change: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A browser publishing again under the id of a stream being removed or restarted, in the moment
    between the id leaving the list and the old stream's worker registration going: it was let in,
    and the old stream's removal then took its registration (frames read, none processed)."""
    model = FixedModel([[100, 80, 160, 140, 0.9, 1]])
    monkeypatch.setattr(
        streams, "InferenceWorker", functools.partial(InferenceWorker, load=lambda _: cast("YOLO", model))
    )
    manager = streams.StreamManager(Settings(model="fixed"), Listener())
    refused: list[str] = []
    remove_stream = InferenceWorker.remove_stream

    def publish_meanwhile(worker: InferenceWorker, stream_id: str, restarting: bool = False) -> None:
        try:
            manager.add_source(StreamConfig("cam", "webrtc:127.0.0.1"), open_source("scene:?seed=2"))
        except streams.StreamExistsError as exc:
            refused.append(str(exc))
        remove_stream(worker, stream_id, restarting)

    manager.start()
    try:
        manager.add(StreamConfig("cam", "scene:?seed=1"))
        monkeypatch.setattr(InferenceWorker, "remove_stream", publish_meanwhile)
        if change == "remove":
            manager.remove("cam")
        else:  # a new source: a change of options only keeps the reader, stopping nothing
            manager.replace(StreamConfig("cam", "scene:?seed=3"))
        monkeypatch.setattr(InferenceWorker, "remove_stream", remove_stream)
        assert refused == ["stream 'cam' already exists (it is being stopped)"]
        if change == "remove":
            manager.add_source(StreamConfig("cam", "webrtc:127.0.0.1"), open_source("scene:?seed=2"))
        assert manager.worker.stats("cam") is not None, "the stream under the id has its registration"
    finally:
        manager.stop()


def test_a_frame_of_a_stream_removed_while_in_the_model_is_never_delivered() -> None:
    with Driver(TruthModel()) as driver:
        driver.add("gone", Scene(seed=1))
        driver.add("stays", Scene(seed=2))
        gate = driver.model.gate = threading.Event()
        driver.model.entered.clear()
        driver.put(driver.frame("gone", 40))
        assert driver.model.entered.wait(10)
        driver.model.gate = None
        driver.remove("gone")
        gate.set()
        assert list(driver.step({"stays": 40})) == ["stays"]
        assert driver.results.empty()
        assert driver.worker.stats("gone") is None


def test_a_model_that_cannot_load_stops_start_with_one_line() -> None:
    def load(spec: str) -> object:
        raise ModelError(f"--model {spec}: no such file or folder")

    worker = InferenceWorker("missing.pt", lambda _: None, InferenceOptions(), load=load)  # type: ignore[arg-type]
    with pytest.raises(ModelError, match=r"--model missing\.pt: no such file"):
        worker.start()
    worker.stop()


@pytest.mark.parametrize(
    ("device", "cuda_devices", "seen"),
    [
        ("cuda:0", 0, "no CUDA devices"),
        ("cuda", 0, "no CUDA devices"),
        ("1", 1, "1 CUDA device, cuda:0"),
        ("cuda:2", 2, "2 CUDA devices, cuda:0 to cuda:1"),
        ("mps", 0, "no Apple GPU"),
    ],
)
def test_a_device_this_machine_lacks_stops_start_with_one_line(
    device: str, cuda_devices: int, seen: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before, ``cuda:0`` on a machine without a GPU started, and every frame failed with a traceback."""
    monkeypatch.setattr(torch.cuda, "device_count", lambda: cuda_devices)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    loaded: list[str] = []

    def load(spec: str) -> TruthModel:
        loaded.append(spec)
        return TruthModel()

    worker = InferenceWorker("bundled", lambda _: None, InferenceOptions(device=device), load=load)  # type: ignore[arg-type]
    with pytest.raises(ModelError) as refused:
        worker.start()
    worker.stop()
    assert str(refused.value) == (
        f'model.device "{device}": not available on this machine (PyTorch sees {seen}); '
        'use device = "auto" (or "cpu") under [model], or --device auto'
    )
    assert loaded == [], "refused before loading (or downloading) the model"


def test_a_device_the_machine_has_and_a_triton_model_whatever_the_device_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Triton model runs on its server's devices: this machine's are not asked about."""
    for cuda_devices, spec, device in (
        (1, "bundled", "cuda:0"),
        (1, "bundled", "0"),
        (0, "bundled", "cpu"),
        (0, "grpc://127.0.0.1:8001/seg", "cuda:0"),
        (0, "http://127.0.0.1:8000/seg", "mps"),
    ):
        monkeypatch.setattr(torch.cuda, "device_count", lambda n=cuda_devices: n)
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
        options = InferenceOptions(device=device)
        worker = InferenceWorker(spec, lambda _: None, options, load=lambda _: TruthModel())  # type: ignore[arg-type,return-value]
        worker.start()  # raises if refused
        worker.stop()


@pytest.mark.parametrize(("gpu", "device"), [(True, "cuda:0"), (False, "cpu")], ids=["gpu", "no-gpu"])
def test_the_default_device_is_the_gpu_where_pytorch_sees_one_else_the_cpu(
    gpu: bool, device: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before, a first ``segcast serve`` on a GPU box ran on the CPU until a config file said ``cuda:0``."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpu)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: int(gpu))
    with Driver(TruthModel(), half=True) as driver:
        driver.add("cam", Scene(seed=1))
        driver.step({"cam": 0})
    assert driver.model.calls, "the model was never called"
    assert {kwargs["device"] for _, kwargs in driver.model.calls} == {device}
    half = 16 if gpu else None  # half precision on the GPU it found only
    assert {kwargs["quantize"] for _, kwargs in driver.model.calls} == {half}


def test_a_device_given_is_used_even_where_a_gpu_is_there(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with Driver(TruthModel(), device="cpu") as driver:
        driver.add("cam", Scene(seed=1))
        driver.step({"cam": 0})
    assert {kwargs["device"] for _, kwargs in driver.model.calls} == {"cpu"}


def test_a_model_failing_on_every_frame_logs_its_traceback_once_per_reason(caplog: pytest.LogCaptureFixture) -> None:
    """Before, each failed frame logged a whole traceback (a device the model cannot use: megabytes a minute);
    a failure that comes back after frames went through is told again (hours later, it is news)."""
    failing = [True, True, True, True, False, False, True]
    with caplog.at_level(logging.WARNING, logger="server.inference.worker"), Driver(TruthModel()) as driver:
        driver.add("cam", Scene(seed=1))
        for index, fail in enumerate(failing):
            if fail:
                driver.put(driver.frame("cam", index, fail=True))
                driver.wait_taken("cam")
            else:
                driver.step({"cam": index})
        driver.step({"cam": len(failing)})  # processed after the others: they are all counted by now
        stats = driver.worker.stats("cam")
        assert stats is not None and stats.errors == 5 and stats.processed == 3
    tracebacks = [r for r in caplog.records if r.exc_info and "model failed on frame" in r.getMessage()]
    assert [r.getMessage() for r in tracebacks] == ["[cam] model failed on frame 0", "[cam] model failed on frame 6"]
    assert len([r for r in caplog.records if "not processed: model failed" in r.getMessage()]) == 2


WHOLE = [[0, 0], [1, 0], [1, 1], [0, 1]]


def _zone(name: str) -> StreamOptions:
    return StreamOptions.from_mapping({"zones": [{"name": name, "points": WHOLE, "units": "fraction"}]})


def test_a_zone_changed_between_frames_is_pending_and_the_old_ones_counts_are_gone() -> None:
    """A file that has ended gets no next frame: its counts must not go on showing a zone it no longer has."""
    with Driver(TruthModel()) as driver:
        driver.add("cam", Scene(seed=SEED), _zone("old"))
        driver.step({"cam": 60})
        before = driver.worker.counts("cam")
        assert before is not None and sum(before.zones["old"].values()) > 0
        assert driver.worker.change_shapes("cam", _zone("new"))
        counts, stats = driver.worker.counts("cam"), driver.worker.stats("cam")
        assert counts is not None and dict(counts.zones) == {} and dict(counts.dwell) == {}
        assert stats is not None and stats.pending_shapes == ("new",)
        driver.step({"cam": 61})
        counts, stats = driver.worker.counts("cam"), driver.worker.stats("cam")
        assert counts is not None and list(counts.zones) == ["new"] and sum(counts.zones["new"].values()) > 0
        assert stats is not None and stats.pending_shapes == ()


def test_a_zone_tuned_between_frames_is_not_pending_and_keeps_its_counts() -> None:
    """Only a zone that moved counts from the next frame: a tuned one's counts carry on, so they show."""
    with Driver(TruthModel()) as driver:
        driver.add("cam", Scene(seed=SEED), _zone("old"))
        driver.step({"cam": 60})
        before = driver.worker.counts("cam")
        assert before is not None and sum(before.zones["old"].values()) > 0
        tuned = StreamOptions.from_mapping(
            {"zones": [{"name": "old", "points": WHOLE, "units": "fraction", "min_share": 0.5, "loiter_s": 1}]}
        )
        assert driver.worker.change_shapes("cam", tuned)
        counts, stats = driver.worker.counts("cam"), driver.worker.stats("cam")
        assert counts is not None and counts.zones == before.zones
        assert stats is not None and stats.pending_shapes == ()


def test_shapes_whose_first_frame_failed_are_applied_on_the_next_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """One failed update must not leave the stream counting with its old shapes for good."""
    from server.analytics.engine import StreamAnalytics

    with Driver(TruthModel()) as driver:
        driver.add("cam", Scene(seed=SEED), _zone("old"))
        driver.step({"cam": 60})
        update = StreamAnalytics.update
        failures = []

        def fail_once(self: StreamAnalytics, *args: object) -> object:
            if not failures:
                failures.append(self)
                raise RuntimeError("analytics failed once")
            return update(self, *args)  # type: ignore[arg-type]

        monkeypatch.setattr(StreamAnalytics, "update", fail_once)
        driver.worker.change_shapes("cam", _zone("new"))
        failed = driver.step({"cam": 61})["cam"]
        assert failures, "the first update after the change did not fail"
        assert failed.tracks, "its tracks still go out"
        shown = failed.analytics  # the counts as they stand, as GET .../counts gives them: not the old zone's
        assert shown is not None and dict(shown.counts.zones) == {} and shown.zones == ()
        pending = driver.worker.stats("cam")
        assert pending is not None and pending.pending_shapes == ("new",), "tried again on the next frame"
        result = driver.step({"cam": 62})["cam"]
        stats = driver.worker.stats("cam")
        assert stats is not None and stats.errors == 1 and "analytics failed once" in str(stats.last_error)
        assert result.analytics is not None and [name for name, _ in result.analytics.zones] == ["new"]
        assert stats.pending_shapes == ()


def test_a_frame_whose_analytics_fail_still_brings_its_track_starts_and_ends(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tracker has moved past the frame: a track that starts or ends on it would never get its
    ``start`` or ``end`` (nor, for an end, its ``zone_exit``) if the frame went out with nothing. The
    failure is the stream's analytics error and one of its errors, and the stream carries on."""
    update = StreamAnalytics.update

    def failing_on_track_events(
        analytics: StreamAnalytics, tracks: tuple[Track, ...], events: tuple[TrackEvent, ...], frame: Frame
    ) -> object:
        if events:
            raise RuntimeError("analytics failed on a start or an end")
        return update(analytics, tracks, events, frame)

    monkeypatch.setattr(StreamAnalytics, "update", failing_on_track_events)
    model = FixedModel([[100, 80, 160, 140, 0.9, 1]])
    zone = {"name": "yard", "points": WHOLE, "units": "fraction"}
    options = StreamOptions.from_mapping({"tracker": "bytetrack", "zones": [zone]})  # a lost track ends after 1 s
    with Driver(model) as driver:
        driver.add("cam", Scene(seed=1), options)
        started = driver.step({"cam": 0})["cam"]
        assert track_events(started) == [(TrackEventKind.START, 1)] and started.analytics is None
        stats = driver.worker.stats("cam")
        assert stats is not None and (stats.processed, stats.errors) == (1, 1)
        assert (
            stats.analytics_error
            == stats.last_error
            == "analytics failed: RuntimeError: analytics failed on a start or an end"
        )
        entered = driver.step({"cam": 1})["cam"]
        assert [(type(e).__name__, e.kind.value) for e in entered.events] == [("AnalyticsEvent", "zone_enter")]
        stats = driver.worker.stats("cam")
        assert stats is not None and stats.analytics_error is None, "cleared by a frame whose analytics succeed"
        model.rows = []  # the object is gone
        for index in range(2, 60):
            ended = driver.step({"cam": index})["cam"]
            if ended.events:
                break
        assert [(type(e).__name__, e.kind.value, e.track_id) for e in ended.events] == [
            ("AnalyticsEvent", "zone_exit", 1),
            ("TrackEvent", "end", 1),
        ]
        assert ended.analytics is not None, "a failed frame shows the counts as they stand: no zone blinks out"
        assert dict(ended.analytics.counts.zones["yard"]) == {"square": 0} and [
            n for n, _ in ended.analytics.zones
        ] == ["yard"]
        assert ended.analytics.counts.dwell["yard"].count == 1, "with the visit its track's end settled"
        after = driver.step({"cam": index + 1})["cam"]
        assert after.analytics is not None and dict(after.analytics.counts.zones["yard"]) == {"square": 0}
        assert after.analytics.counts.dwell["yard"].count == 1, "the visit ended, counted in the dwell times"
        stats = driver.worker.stats("cam")
        assert stats is not None and (stats.processed, stats.errors) == (index + 2, 2)


def test_analytics_that_fail_partway_through_a_frame_change_no_count_without_its_event(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A frame's analytics are all or nothing: one that fails after it counted a crossing or entered a
    visit, before the frame was done, must not keep the count while its ``line_cross`` or
    ``zone_enter`` is dropped, or /counts and /metrics disagree with the events for good."""
    failed: set[str] = set()
    cross, event = StreamAnalytics._cross, StreamAnalytics._event

    def cross_then_fail(self: StreamAnalytics, *args: Any) -> AnalyticsEvent:
        made = cross(self, *args)
        if "line" not in failed:  # the crossing is counted: a later step of the frame fails
            failed.add("line")
            raise RuntimeError("a later step of this frame's analytics failed")
        return made

    def enter_then_fail(self: StreamAnalytics, kind: AnalyticsEventKind, track: Track, frame: Frame, **kw: Any) -> Any:
        made = event(self, kind, track, frame, **kw)
        if kind is AnalyticsEventKind.ZONE_ENTER and frame.seq >= 3 and "zone" not in failed:
            failed.add("zone")
            raise RuntimeError("a later step of this frame's analytics failed")
        return made

    monkeypatch.setattr(StreamAnalytics, "_cross", cross_then_fail)
    monkeypatch.setattr(StreamAnalytics, "_event", enter_then_fail)
    gate = {"name": "gate", "points": [[0, 0.5], [1, 0.5]], "units": "fraction", "confirm_s": 0.2}
    yard = {"name": "yard", "points": WHOLE, "units": "fraction"}
    options = StreamOptions.from_mapping({"tracker": "bytetrack", "zones": [yard], "lines": [gate]})
    walker, stander = [100, 100, 140, 150, 0.9, 1], [300, 100, 360, 160, 0.9, 2]
    model = FixedModel([walker])
    delivered: list[str] = []
    with Driver(model) as driver:
        driver.add("cam", Scene(seed=1), options)
        for index in range(30):
            bottom = 150 + 6 * index  # walks down over the line at y = 192; the other stands from frame 3
            model.rows = [[100, bottom - 50, 140, bottom, 0.9, 1], *([stander] if index >= 3 else [])]
            result = driver.step({"cam": index})["cam"]
            delivered += [e.kind.value for e in result.events if isinstance(e, AnalyticsEvent)]
            counts = driver.worker.counts("cam")
            assert counts is not None
            crossings = sum(n for by_class in counts.lines["gate"].values() for n in by_class.values())
            inside = sum(counts.zones["yard"].values())
            assert (crossings, inside) == (
                delivered.count("line_cross"),
                delivered.count("zone_enter") - delivered.count("zone_exit"),
            ), f"frame {index}: counts disagree with the events delivered {delivered}"
    assert failed == {"line", "zone"}, "both failures happened partway through a frame"
    assert delivered.count("line_cross") == 1 and delivered.count("zone_enter") == 2, "counted on the next frames"


def test_a_nominal_rate_given_as_a_callable_is_read_when_the_stream_is_first_tracked() -> None:
    """A file's rate is known once its reader has opened it, after the stream was registered: the
    tracker started from the 25 fps first guess instead (its windows in frames 2.5 times a 10 fps file's)."""
    nominal = {"fps": 25.0}  # what a file source says before its reader opened the file
    with Driver(TruthModel()) as driver:
        scene = Scene(seed=SEED)  # 15 fps
        driver.add("cam", scene, fps=lambda: nominal["fps"])
        nominal["fps"] = 10.0  # the reader opened it
        driver.step({"cam": 0})
        driver.step({"cam": 1})
        stats = driver.worker.stats("cam")
        # From 10 fps, one 15 fps interval moves the measured rate to about 10.7; from 25, to about 22.
        assert stats is not None and stats.processing_fps is not None and stats.processing_fps < 12


def test_a_failed_frame_of_another_size_carries_the_counts_but_not_the_old_sizes_shapes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The last frame's outlines are in its own pixels: on a frame of another size they were drawn
    out of place (off the picture) while the analytics kept failing."""
    model = FixedModel([[100, 80, 160, 140, 0.9, 1]])
    zone = {"name": "yard", "points": WHOLE, "units": "fraction"}
    with Driver(model) as driver:
        driver.add("cam", Scene(seed=1), StreamOptions.from_mapping({"zones": [zone]}))
        good = driver.step({"cam": 0})["cam"]
        assert good.analytics is not None and [name for name, _ in good.analytics.zones] == ["yard"]

        def failing(*args: object) -> object:
            raise RuntimeError("analytics failed")

        monkeypatch.setattr(StreamAnalytics, "update", failing)
        same = driver.step({"cam": 1})["cam"]
        assert same.analytics is not None and [name for name, _ in same.analytics.zones] == ["yard"]
        frame = driver.frame("cam", 2)
        half = frame.image[::2, ::2].copy()
        driver.put(Frame(frame.stream_id, frame.seq, frame.capture_time, frame.media_time, half))
        other = driver.wait(1)["cam"]
        assert other.analytics is not None and other.analytics.zones == () and "yard" in other.analytics.counts.zones


def test_a_frame_in_a_local_model_when_the_worker_stops_is_still_delivered(monkeypatch: pytest.MonkeyPatch) -> None:
    """A stop drops only frames a remote model was closed under: a local model's batch finishes, and
    is tracked and delivered with its events, as the app's shutdown keeps the last frames' events."""
    from server.inference import local as local_module

    real_detect = local_module.detect
    in_model, release = threading.Event(), threading.Event()

    def held_detect(*args: Any, **kwargs: Any) -> Any:
        in_model.set()
        assert release.wait(RESULT_TIMEOUT_S), "the test never let the batch finish"
        return real_detect(*args, **kwargs)

    monkeypatch.setattr(local_module, "detect", held_detect)
    seen: queue.Queue[FrameResult] = queue.Queue()
    model = TruthModel()
    worker = InferenceWorker("m", seen.put, InferenceOptions(), load=lambda _: model)
    worker.start()
    stopping = threading.Thread(target=worker.stop)
    try:
        slot = worker.add_stream("cam", 15.0)
        image, truths = Scene(seed=1).render(40)
        slot.put(Frame("cam", 40, 0.0, 40 / 15, model.register(image, truths)))
        assert in_model.wait(RESULT_TIMEOUT_S)
        stopping.start()
        assert worker._stop.wait(RESULT_TIMEOUT_S), "the stop began while the batch was in the model"
    finally:
        release.set()
        if stopping.is_alive():
            stopping.join()
    delivered = [seen.get_nowait() for _ in range(seen.qsize())]
    assert [result.frame.seq for result in delivered] == [40]
    assert delivered[0].tracks, "tracked, not failed"
