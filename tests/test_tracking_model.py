"""Tracking with the bundled model on a generated scene: ids you can trust and masks that fit.

The whole 300-frame scene runs once through the real worker (module fixture) and each test judges
one property of that run against the scene's exact ground truth; the workers that skip frames are
given the model's answers on that run's frames (`RememberingModel`), not the model again. The occlusion
family is scored on the model's own detections, fed to each tracker in turn.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from ultralytics import YOLO

from server.frames import Frame, FrameResult, Track, TrackEventKind
from server.inference.detections import Detections, detect
from server.inference.models import load_model
from server.options import StreamOptions
from server.scene import Scene, TrueObject
from server.tracking.filters import detection_conf
from server.tracking.stream import StreamTracker
from tests.conftest import SCENE_FRAMES, SCENE_SEED
from tests.support.driver import Driver
from tests.support.remembering_model import RememberingModel
from tests.support.truth import mask_iou, polygon_mask
from tools.track_report import match_boxes, score

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def model() -> YOLO:
    return load_model("bundled")


@pytest.fixture(scope="module")
def remembering_model(model: YOLO) -> RememberingModel:
    """The model, keeping its answers: the frames a worker skipping frames takes are all `scene_run`'s."""
    return RememberingModel(model)


@pytest.fixture(scope="module")
def scene_run(remembering_model: RememberingModel) -> list[FrameResult]:
    with Driver(remembering_model) as driver:
        driver.add("cam", Scene(seed=SCENE_SEED))
        return [driver.step({"cam": index})["cam"] for index in range(SCENE_FRAMES)]


def with_truth(results: list[FrameResult]) -> Iterator[tuple[FrameResult, list[TrueObject]]]:
    scene = Scene(seed=SCENE_SEED)
    for result in results:
        yield result, scene.render(result.frame.seq)[1]


def test_no_id_switch_while_objects_are_apart(scene_run: list[FrameResult]) -> None:
    report = score(Scene(seed=SCENE_SEED), [(r.frame.seq, r.tracks) for r in scene_run])
    print(report.line())
    assert report.switches_apart == 0, report.line()
    # Measured with segtrack, the default: 1 switch (ByteTrack: 2), where an object is boxed twice,
    # both confidently, as it enters.
    assert report.switches <= 3, report.line()


def test_idf1_over_a_scene_with_crossings_and_occlusions(scene_run: list[FrameResult]) -> None:
    report = score(Scene(seed=SCENE_SEED), [(r.frame.seq, r.tracks) for r in scene_run])
    assert report.idf1 >= 0.9, report.line()


def test_masks_fit_the_visible_objects(scene_run: list[FrameResult]) -> None:
    ious = []
    for result, truths in with_truth(scene_run):
        shape = result.frame.image.shape[:2]
        for i, j in match_boxes(truths, [t.box for t in result.tracks]):
            truth, track = truths[i], result.tracks[j]
            if truth.occluded_fraction == 0 and track.polygon is not None:
                ious.append(mask_iou(polygon_mask(track.polygon, shape), truth.mask))
    mean, low = np.mean(ious), np.percentile(ious, 5)
    print(f"mask IoU on {len(ious)} visible objects: mean {mean:.3f}, 5th percentile {low:.3f}")
    assert len(ious) >= 300
    assert mean >= 0.85
    assert low >= 0.8


def test_every_track_starts_once_and_ends_once(scene_run: list[FrameResult]) -> None:
    started: set[int] = set()
    ended: set[int] = set()
    for result in scene_run:
        for event in result.events:
            if event.kind is TrackEventKind.START:
                assert event.track_id not in started, f"track {event.track_id} started twice"
                started.add(event.track_id)
            else:
                assert event.track_id in started and event.track_id not in ended
                ended.add(event.track_id)
        for track in result.tracks:
            assert track.track_id in started and track.track_id not in ended
    assert started and ended, "the scene has objects that come and go"


def test_velocity_follows_the_objects_motion(scene_run: list[FrameResult]) -> None:
    scene = Scene(seed=SCENE_SEED)
    fps = scene.fps
    checked = 0
    for result, truths in with_truth(scene_run[10:]):
        before = {t.object_id: t for t in scene.render(result.frame.seq - 2)[1]}
        for i, j in match_boxes(truths, [t.box for t in result.tracks]):
            truth, track = truths[i], result.tracks[j]
            old = before.get(truth.object_id)
            if old is None or truth.occluded_fraction > 0 or old.occluded_fraction > 0 or len(track.trail) < 8:
                continue
            moved = np.subtract(truth.box, old.box).reshape(2, 2).mean(axis=0) * fps / 2  # px/s of the centre
            if np.hypot(*moved) > 30:
                assert np.dot(moved, track.velocity) > 0, (result.frame.seq, moved, track.velocity)
                checked += 1
    assert checked >= 50


#: Frame steps of a busy worker: every second, third and fourth frame processed.
SKIPPING_STEPS = (2, 3, 4)


def test_a_worker_that_skips_frames_tracks_about_as_well(
    remembering_model: RememberingModel, scene_run: list[FrameResult]
) -> None:
    scene = Scene(seed=SCENE_SEED)
    every = score(scene, [(r.frame.seq, r.tracks) for r in scene_run])
    sparse_idf1 = []
    for step in SKIPPING_STEPS:
        with Driver(remembering_model) as driver:
            driver.add("cam", scene)
            sparse = [driver.step({"cam": index})["cam"] for index in range(0, SCENE_FRAMES, step)]
            stats = driver.worker.stats("cam")
        assert stats is not None and stats.processing_fps == pytest.approx(scene.fps / step, rel=0.05)
        report = score(scene, [(r.frame.seq, r.tracks) for r in sparse])
        print(f"every frame: {every.line()}\nevery {step}: {report.line()}")
        assert report.switches_apart == 0, (step, report.line())
        sparse_idf1.append(report.idf1)
    # Fewer frames leave the tracker less evidence at each crossing, and one unlucky decision at one
    # step can cost an object its id for the rest of the scene (IDF1 at every 2nd, 3rd and 4th frame,
    # measured: segtrack 0.935, 0.794, 0.922 from 0.944 at every frame; ByteTrack 0.779, 0.887, 0.756
    # from 0.919). A broken buffer or processing rate would cost at every step, so the median must hold.
    assert float(np.median(sparse_idf1)) >= every.idf1 - 0.05, (every.line(), sparse_idf1)


#: Occlusion-family seeds the bundled model never saw (tools/train_model.py keeps every seed below 100
#: out of training and validation); the first two of those docs/benchmarks.md reports.
UNSEEN_OCCLUSION_SEEDS = (11, 12)
#: segcast's own tracker, the default, and ultralytics' it must do better than.
TRACKERS = ("segtrack", "bytetrack")


@pytest.fixture(scope="module", params=UNSEEN_OCCLUSION_SEEDS)
def occlusion_detections(request: pytest.FixtureRequest, model: YOLO) -> tuple[Scene, list[Detections]]:
    """The model's detections on 300 frames of an occlusion scene, down to the trackers' low threshold."""
    scene = Scene(seed=request.param, family="occlusion")
    conf = detection_conf(StreamOptions())
    imgsz = int(model.overrides["imgsz"])
    frames = [detect(model, [scene.render(i)[0]], imgsz=imgsz, conf=conf, agnostic_nms=True)[0] for i in range(300)]
    return scene, frames


def test_segtrack_holds_ids_through_occlusion_better_than_the_default(
    model: YOLO, occlusion_detections: tuple[Scene, list[Detections]]
) -> None:
    scene, detections = occlusion_detections
    names = dict(enumerate(("disc", "square", "triangle")))
    trackers = {kind: StreamTracker("cam", names, StreamOptions(tracker=kind), 15.0) for kind in TRACKERS}
    observed: dict[str, list[tuple[int, tuple[Track, ...]]]] = {kind: [] for kind in trackers}
    for index, found in enumerate(detections):  # each frame drawn once for both trackers
        frame = Frame("cam", index, 0.0, index / scene.fps, scene.render(index)[0])
        for kind, tracker in trackers.items():
            observed[kind].append((index, tracker.update(found, frame)[0]))
    reports = {kind: score(scene, seen) for kind, seen in observed.items()}
    print("segtrack:", reports["segtrack"].line(), "\nbytetrack:", reports["bytetrack"].line())
    # Measured on seeds 11 and 12: IDF1 0.791 and 0.930 against 0.687 and 0.702 (docs/benchmarks.md);
    # issue 13's bar for the lead over ultralytics' trackers is 0.08.
    assert reports["segtrack"].idf1 >= reports["bytetrack"].idf1 + 0.08
    assert reports["segtrack"].switches <= reports["bytetrack"].switches
