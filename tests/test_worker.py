"""The inference thread, with a stand-in model that detects the scene's truth (no weights needed)."""

from __future__ import annotations

import queue
import threading

import numpy as np
import pytest

from server.frames import Frame, FrameResult, TrackEventKind
from server.inference.models import ModelError
from server.inference.worker import InferenceOptions, InferenceWorker
from server.options import StreamOptions
from server.scene import Scene
from tests.support.detections import TruthModel
from tests.support.driver import RESULT_TIMEOUT_S, Driver

SEED = 7


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


def test_streams_with_different_confidence_share_a_call_and_keep_their_own_threshold() -> None:
    with Driver(TruthModel()) as driver:  # the stand-in model reports every object at 0.9
        driver.add("lax", Scene(seed=SEED), StreamOptions(conf=0.3))
        driver.add("strict", Scene(seed=SEED), StreamOptions(conf=0.95))
        results = driver.together([driver.frame("lax", 60), driver.frame("strict", 60)])
        size, kwargs = driver.model.calls[-1]
        # One call, run as low as the trackers look (ByteTrack's track_low_thresh), not at either conf.
        assert (size, kwargs["conf"]) == (2, 0.1)
        assert results["lax"].tracks and not results["strict"].tracks


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


def test_a_bad_frame_is_counted_and_the_worker_carries_on() -> None:
    with Driver(TruthModel()) as driver:
        driver.add("cam", Scene(seed=1))
        driver.put(Frame("cam", 0, 0.0, 0.0, np.zeros((48, 64), np.uint8)))  # grey, not BGR
        driver.wait_taken("cam")  # not replaced by the next frame before the worker saw it
        assert driver.step({"cam": 2})["cam"].frame.seq == 2
        stats = driver.worker.stats("cam")
        assert stats is not None and stats.errors >= 1
        assert stats.last_error is not None and stats.last_error.startswith("bad frame")


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
        driver.put(driver.frame("cam", 61))
        driver.wait_taken("cam")
        result = driver.step({"cam": 62})["cam"]
        assert failures, "the first update after the change did not fail"
        stats = driver.worker.stats("cam")
        assert stats is not None and stats.errors == 1 and "analytics failed once" in str(stats.last_error)
        assert result.analytics is not None and [name for name, _ in result.analytics.zones] == ["new"]
        assert stats.pending_shapes == ()
