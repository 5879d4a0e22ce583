"""The scene generator: deterministic, with truth that matches the pixels."""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np

from server.scene import CLASS_NAMES, Scene, write_h264, write_y4m


def test_same_seed_renders_identical_frames_and_truth() -> None:
    a, b = Scene(seed=3), Scene(seed=3)
    for index in (0, 77, 450, 901):
        image_a, truth_a = a.render(index)
        image_b, truth_b = b.render(index)
        assert np.array_equal(image_a, image_b)
        assert [(t.object_id, t.box) for t in truth_a] == [(t.object_id, t.box) for t in truth_b]


def test_different_seeds_differ() -> None:
    assert not np.array_equal(Scene(seed=1).render(200)[0], Scene(seed=2).render(200)[0])


def test_objects_enter_leave_and_occlude() -> None:
    scene = Scene(seed=7)
    seen_frames: dict[int, list[int]] = {}
    occluded = False
    for index in range(0, 300):
        for truth in scene.render(index)[1]:
            seen_frames.setdefault(truth.object_id, []).append(index)
            occluded |= 0.2 < truth.occluded_fraction < 0.9
    assert occluded, "the test scene must contain partial occlusions"
    spans = [frames[-1] - frames[0] for frames in seen_frames.values()]
    assert len(seen_frames) >= 4
    assert any(frames[0] > 0 for frames in seen_frames.values()), "objects must enter during the scene"
    assert any(frames[-1] < 299 for frames in seen_frames.values()), "objects must leave during the scene"
    assert min(spans) > 10


def test_truth_masks_cover_only_visible_object_pixels() -> None:
    scene = Scene(seed=7)
    background, nothing = scene.render(0)
    assert nothing == [], "frame 0 of this scene is empty, so it shows the bare background"
    image, truths = scene.render(150)
    union = np.zeros(image.shape[:2], dtype=bool)
    for truth in truths:
        assert not (union & truth.mask).any(), "visible masks of different objects never overlap"
        union |= truth.mask
        ys, xs = np.nonzero(truth.mask)
        assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == truth.box
        assert truth.class_name in CLASS_NAMES
    near_objects = cv2.dilate(union.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    changed_elsewhere = np.any(image != background, axis=2) & ~near_objects
    assert changed_elsewhere.mean() < 0.002  # only slivers of objects too small to count as visible


def test_h264_file_has_every_frame(tmp_path: Path) -> None:
    scene = Scene(seed=1, width=320, height=192)
    path = write_h264(scene, tmp_path / "s.mp4", 20)
    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]
        assert float(container.streams.video[0].average_rate) == scene.fps
    assert len(frames) == 20
    assert frames[0].shape == (192, 320, 3)
    error = np.abs(frames[10].astype(int) - scene.render(10)[0].astype(int)).mean()
    assert error < 8


def test_y4m_file_is_readable_by_ffmpeg(tmp_path: Path) -> None:
    scene = Scene(seed=1, width=320, height=192)
    path = write_y4m(scene, tmp_path / "s.y4m", 5)
    with av.open(str(path)) as container:
        frames = list(container.decode(video=0))
    assert len(frames) == 5
    assert (frames[0].width, frames[0].height) == (320, 192)
