"""A moving camera: the generated scenes' shaking and panning cameras, the picture's step between
frames (`server.tracking.camera`), and segtrack following it (its ``camera_motion`` setting)."""

from __future__ import annotations

import threading

import cv2
import numpy as np
import pytest

from server.frames import Frame
from server.inference.detections import Detections
from server.options import StreamOptions
from server.scene import Scene
from server.sources import SourceError, open_source
from server.tracking.camera import PictureShift
from server.tracking.stream import StreamTracker
from tests.support.detections import NAMES

MOVING_CAMERAS = ("shaking", "panning")


def true_step(scene: Scene, index: int) -> np.ndarray:
    """How far the picture's content moved from frame ``index - 1`` to ``index``: against the camera."""
    return -(np.array(scene.camera_offset(index)) - np.array(scene.camera_offset(index - 1)))


def measured_steps(scene: Scene, frames: int) -> tuple[np.ndarray, np.ndarray]:
    """`PictureShift`'s step and the true one for frames 1 to ``frames - 1``, given the true boxes."""
    picture, measured, truth = PictureShift(), [], []
    for index in range(frames):
        image, objects = scene.render(index)
        step = picture.step(image, np.array([o.box for o in objects], np.float64).reshape(-1, 4))
        if index:
            measured.append(step)
            truth.append(true_step(scene, index))
    return np.array(measured), np.array(truth)


@pytest.mark.parametrize("camera", MOVING_CAMERAS)
def test_a_moving_camera_films_the_objects_of_the_still_scene_moved_against_it(camera: str) -> None:
    still, moving = Scene(seed=7), Scene(seed=7, camera=camera)
    compared = 0
    for index in range(20, 300, 10):
        x, y = moving.camera_offset(index)
        seen = {o.object_id: o.box for o in moving.render(index)[1]}
        for whole in (o for o in still.render(index)[1] if o.visibility == 1.0):
            x1, y1, x2, y2 = whole.box
            # Whole in both pictures, so that neither box is cut by the frame's edge:
            if min(x1, x1 - x, y1, y1 - y) > 0 and max(x2, x2 - x) < still.width and max(y2, y2 - y) < still.height:
                assert seen[whole.object_id] == (x1 - x, y1 - y, x2 - x, y2 - y), (index, whole.object_id)
                compared += (x, y) != (0, 0)
    assert compared >= 10


@pytest.mark.parametrize("camera", MOVING_CAMERAS)
def test_the_background_moves_by_the_cameras_step(camera: str) -> None:
    scene = Scene(seed=7, camera=camera)
    assert not scene.render(0)[1] and not scene.render(1)[1], "frames 0 and 1 of seed 7 show no object"
    dx, dy = true_step(scene, 1)
    assert (dx, dy) != (0, 0)
    before, after = scene.render(0)[0], scene.render(1)[0]
    height, width = before.shape[:2]
    inner = (slice(40, height - 40), slice(40, width - 40))  # far enough in for a step of up to 40 px
    moved = after[40 + dy : height - 40 + dy, 40 + dx : width - 40 + dx]
    assert np.array_equal(moved, before[inner])
    assert not np.array_equal(after[inner], before[inner])


def test_a_scene_uri_plays_a_family_from_a_moving_camera_and_names_a_camera_it_does_not_know() -> None:
    source = open_source("scene:?seed=21&family=occlusion&camera=shaking")
    stop = threading.Event()
    frames = source.open(stop)
    expected = Scene(seed=21, family="occlusion", camera="shaking")
    for index in range(2):
        assert np.array_equal(next(frames).image, expected.render(index)[0])
    stop.set()
    with pytest.raises(SourceError, match="camera: expected one of still, shaking, panning, got 'tripod'"):
        open_source("scene:?camera=tripod")


def test_a_still_scene_has_a_still_camera_and_an_unknown_camera_is_refused() -> None:
    assert Scene(seed=7).camera_offset(123) == (0, 0)
    with pytest.raises(ValueError, match="camera: expected one of still, shaking, panning"):
        Scene(camera="tripod")


@pytest.mark.parametrize("camera", MOVING_CAMERAS)
def test_the_pictures_step_is_measured_within_a_few_pixels(camera: str) -> None:
    measured, truth = measured_steps(Scene(seed=21, family="occlusion", camera=camera), 120)
    error = np.hypot(*(measured - truth).T)
    moving = np.hypot(*truth.T)
    print(camera, f"step {np.median(moving):.1f}, error {np.median(error):.2f}, p90 {np.quantile(error, 0.9):.2f} px")
    # Measured: median steps of 5.0 (shaking) and 4.0 px (panning); errors 0.72 and 0.70 px (median),
    # 1.27 and 1.36 px (p90).
    assert np.median(moving) >= 3.0
    assert np.median(error) <= 1.2
    assert np.quantile(error, 0.9) <= 2.5


def test_a_still_cameras_picture_barely_steps_while_objects_cross_it() -> None:
    measured, truth = measured_steps(Scene(seed=21, family="occlusion"), 120)
    assert not truth.any()
    size = np.hypot(*measured.T)
    # Measured: median 0.5 px, largest 1.3 px; the objects move 2 to 6 px a frame.
    assert np.median(size) <= 1.0
    assert size.max() <= 2.0


def test_the_first_frame_and_the_first_of_a_new_size_have_no_step() -> None:
    scene = Scene(seed=7, camera="panning")
    picture, nothing = PictureShift(), np.zeros((0, 4))
    assert picture.step(scene.render(0)[0], nothing) == (0.0, 0.0)
    assert picture.step(scene.render(1)[0], nothing) != (0.0, 0.0)
    smaller = cv2.resize(scene.render(2)[0], (320, 192))
    assert picture.step(smaller, nothing) == (0.0, 0.0)


@pytest.mark.parametrize(("width", "height"), [(1920, 16), (4096, 24), (16, 1920)])
def test_a_very_wide_or_tall_picture_has_true_steps(width: int, height: int) -> None:
    """Shrunk to 160 px wide, a 1920x16 strip was 1 px high: its first frame failed in OpenCV and
    every later one, still, stepped 6 px. It is compared at least 8 px high instead."""
    long_side = max(width, height)
    strip = textured_wall(long_side + 40, 32)
    picture, nothing = PictureShift(), np.zeros((0, 4))

    def shot(x: int) -> np.ndarray:
        image = np.ascontiguousarray(strip[: min(width, height), x : x + long_side])
        return image if width > height else np.ascontiguousarray(image.transpose(1, 0, 2))

    assert picture.step(shot(20), nothing) == (0.0, 0.0)
    assert picture.step(shot(20), nothing) == pytest.approx((0.0, 0.0), abs=0.5)
    moved = picture.step(shot(8), nothing)  # the camera turned 12 px: the picture moved 12 px along it
    assert moved == pytest.approx((12.0, 0.0) if width > height else (0.0, 12.0), abs=1.5)


def test_a_cut_to_a_picture_that_shares_nothing_has_no_step() -> None:
    """Phase correlation always has a highest peak; where the two frames share nothing it is noise
    (here it said the picture jumped 165 px), so a weak peak is no step."""
    picture, nothing = PictureShift(), np.zeros((0, 4))
    picture.step(Scene(seed=7).render(0)[0], nothing)
    noise = np.random.default_rng(1).integers(0, 255, (384, 640, 3), dtype=np.uint8)
    assert picture.step(noise, nothing) == (0.0, 0.0)


def textured_wall(width: int, height: int) -> np.ndarray:
    """A wall with texture at every scale, for a camera to pan along."""
    rng = np.random.default_rng(5)
    noise = rng.uniform(0, 255, (height, width, 3)).astype(np.float32)
    wall = 0.5 * cv2.GaussianBlur(noise, (0, 0), 2.0) + 0.5 * cv2.GaussianBlur(noise, (0, 0), 8.0)
    return cv2.normalize(wall, None, 30, 220, cv2.NORM_MINMAX).astype(np.uint8)


@pytest.mark.parametrize("follow", [True, False])
def test_a_lost_object_is_looked_for_where_the_camera_has_turned_it(follow: bool) -> None:
    """A red square stands still on a wall before a still camera, is hidden for 2 s while the camera
    turns 200 px to the right, and is seen again. Following the camera, segtrack looks for it 200 px
    to the left of where it was lost and it keeps its id; without, it looks where it was (up to three
    sizes around: 120 px) and the square gets a new id."""
    wall = textured_wall(900, 240)
    options = StreamOptions.from_mapping({"tracker": "segtrack", "tracker_settings": {"camera_motion": follow}})
    tracker = StreamTracker("cam", NAMES, options, 15.0)
    ids: dict[bool, list[int]] = {False: [], True: []}  # before it is hidden, after
    for index in range(70):
        pan = min(max(index - 20, 0), 20) * 10  # still, then 10 px a frame for 20 frames, then still
        image = np.ascontiguousarray(wall[:, 100 + pan : 100 + pan + 480])
        x, y = 400 - pan, 100  # where the square's wall position is in this picture
        hidden = 15 <= index < 45
        rows = []
        if not hidden:
            cv2.rectangle(image, (x, y), (x + 39, y + 39), (40, 40, 220), -1)
            rows.append([x, y, x + 40, y + 40, 0.9, 1])
        outline = np.array([[x, y], [x + 39, y], [x + 39, y + 39], [x, y + 39]], np.float32)
        detections = Detections(np.array(rows, np.float32).reshape(-1, 6), lambda _, outline=outline: outline)
        tracks, _ = tracker.update(detections, Frame("cam", index, 1.7e9 + index / 15, index / 15, image))
        ids[index >= 45] += [t.track_id for t in tracks]
    assert len(set(ids[False])) == 1 and len(set(ids[True])) == 1, ids
    assert len(ids[True]) >= 24, ids  # seen again at once, or from its second detection as a new track
    assert (ids[True][0] == ids[False][0]) is follow, ids


def test_an_object_that_moved_while_hidden_is_found_again_by_its_colours_where_the_camera_turned_it() -> None:
    """As above, following the camera, but the square walks 60 px left along the wall while hidden: its
    box no longer meets where the step-moved track expects it, so it is found by its colours, within
    three sizes (120 px) of where it was lost *moved by the camera's 200 px*. Looked for where it was lost
    in the picture, it is 260 px away and gets a new id."""
    wall = textured_wall(900, 240)
    options = StreamOptions.from_mapping({"tracker": "segtrack", "tracker_settings": {"camera_motion": True}})
    tracker = StreamTracker("cam", NAMES, options, 15.0)
    ids: dict[bool, list[int]] = {False: [], True: []}  # before it is hidden, after
    for index in range(70):
        pan = min(max(index - 20, 0), 20) * 10  # still, then 10 px a frame for 20 frames, then still
        image = np.ascontiguousarray(wall[:, 100 + pan : 100 + pan + 480])
        seen_again = index >= 45
        x, y = 400 - pan - (60 if seen_again else 0), 100
        rows = []
        if not 15 <= index < 45:
            cv2.rectangle(image, (x, y), (x + 39, y + 39), (40, 40, 220), -1)
            rows.append([x, y, x + 40, y + 40, 0.9, 1])
        outline = np.array([[x, y], [x + 39, y], [x + 39, y + 39], [x, y + 39]], np.float32)
        detections = Detections(np.array(rows, np.float32).reshape(-1, 6), lambda _, outline=outline: outline)
        tracks, _ = tracker.update(detections, Frame("cam", index, 1.7e9 + index / 15, index / 15, image))
        ids[seen_again] += [t.track_id for t in tracks]
    assert len(set(ids[False])) == 1 and ids[True] == ids[False][:1] * 25, ids
