"""The scene generator: deterministic, with truth that matches the pixels."""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator
from functools import cache
from itertools import groupby
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from server.scene import CLASS_NAMES, Scene, TrueObject, write_h264, write_y4m
from server.sources import check_uri, open_source
from server.sources import scene as scene_source
from server.sources.base import SourceError
from server.sources.scene import SceneSettings, SceneSource

OCCLUSION_SEEDS = (21, 22)
OCCLUSION_FRAMES = 300


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


@cache
def occlusion_run(seed: int) -> list[tuple[list[TrueObject], dict[int, float]]]:
    """Each frame's truth and visibility for one period of an occlusion-family scene."""
    scene = Scene(seed=seed, family="occlusion", period_frames=OCCLUSION_FRAMES)
    return [scene._layout(i)[1:] for i in range(OCCLUSION_FRAMES)]  # render's truth and visibility, unpainted


def absences(seed: int) -> Iterator[tuple[int, list[bool]]]:
    """Per object and spell it is missing from the truth between two appearances: whether it was
    still in the frame at each missing frame."""
    run = occlusion_run(seed)
    ids = {t.object_id for truths, _ in run for t in truths}
    for object_id in ids:
        present = [any(t.object_id == object_id for t in truths) for truths, _ in run]
        first, last = present.index(True), len(present) - present[::-1].index(True)
        index = first
        for shown, spell in groupby(present[first:last]):
            length = len(list(spell))
            if not shown:
                yield object_id, [object_id in run[i][1] for i in range(index, index + length)]
            index += length


@pytest.mark.parametrize("seed", OCCLUSION_SEEDS)
def test_occlusion_family_hides_objects_behind_others_for_a_fifth_of_a_second_to_two(seed: int) -> None:
    fps = Scene(family="occlusion").fps
    hidden = [len(spell) / fps for _, spell in absences(seed) if all(spell)]
    assert any(0.2 <= s <= 2.0 for s in hidden), hidden


@pytest.mark.parametrize("seed", OCCLUSION_SEEDS)
def test_occlusion_family_has_an_object_leave_the_frame_and_come_back(seed: int) -> None:
    assert any(spell.count(False) >= 3 for _, spell in absences(seed))


@pytest.mark.parametrize("seed", OCCLUSION_SEEDS)
def test_occlusion_family_crosses_objects_of_one_class(seed: int) -> None:
    def crossing(truths: list[TrueObject]) -> bool:
        return any(
            a.class_id == b.class_id
            and a.object_id != b.object_id
            and b.occluded_fraction > 0.3
            and a.box[0] < b.box[2] + 2
            and b.box[0] < a.box[2] + 2
            and a.box[1] < b.box[3] + 2
            and b.box[1] < a.box[3] + 2
            for a in truths
            for b in truths
        )

    assert sum(crossing(truths) for truths, _ in occlusion_run(seed)) >= 3


@pytest.mark.parametrize("seed", OCCLUSION_SEEDS)
def test_occlusion_family_has_objects_that_stop_and_start_again(seed: int) -> None:
    boxes: dict[int, list[tuple[int, int, int, int] | None]] = {}
    run = occlusion_run(seed)
    for n, (truths, _) in enumerate(run):
        for t in truths:
            boxes.setdefault(t.object_id, [None] * len(run))[n] = t.box if t.occluded_fraction == 0 else None

    def still_then_moving(track: list[tuple[int, int, int, int] | None]) -> bool:
        for n in range(len(track) - 12):
            window = track[n : n + 8]
            if window[0] is not None and all(b == window[0] for b in window):
                return any(b is not None and b != window[0] for b in track[n + 8 :])
        return False

    assert any(still_then_moving(track) for track in boxes.values())


def test_visibility_lists_hidden_objects_that_the_truth_leaves_out() -> None:
    scene = Scene(seed=OCCLUSION_SEEDS[0], family="occlusion", period_frames=OCCLUSION_FRAMES)
    assert scene.visibility(100) == occlusion_run(OCCLUSION_SEEDS[0])[100][1]
    run = occlusion_run(OCCLUSION_SEEDS[0])
    hidden = [(truths, shares) for truths, shares in run if len(shares) > len(truths)]
    assert hidden
    for truths, shares in run:
        for t in truths:
            assert shares[t.object_id] == pytest.approx(t.visibility)


def test_unknown_scene_family_is_refused() -> None:
    with pytest.raises(ValueError, match="family: expected one of wander, occlusion"):
        Scene(family="chaos")


@pytest.mark.parametrize("side", ["width", "height"])
def test_a_scene_narrower_or_shorter_than_the_least_side_is_refused(side: str) -> None:
    """Either side too small is enough: the objects, a tenth of the shorter side, would vanish."""
    with pytest.raises(ValueError, match="at least 64x64 pixels"):
        Scene(**{side: 32})


def test_frames_of_an_earlier_period_render_after_later_ones() -> None:
    """A viewer seeking back: the period cache must keep what it has just drawn."""
    scene = Scene(seed=7, width=160, height=96)
    for index in (5 * 450, 3 * 450, 450):
        image, truths = scene.render(index)
        fresh_image, fresh_truths = Scene(seed=7, width=160, height=96).render(index)
        assert np.array_equal(image, fresh_image)
        assert [(t.object_id, t.box) for t in truths] == [(t.object_id, t.box) for t in fresh_truths]


def test_a_slow_object_of_a_tall_scene_stays_in_the_picture_to_the_end_of_its_path() -> None:
    """Speeds scale with the width, so in a tall scene a play can outlast two periods."""
    scene = Scene(seed=8, width=96, height=160)
    slow = [a for a in scene._period(0) if a.key_frames[-1] >= 2 * scene.period_frames]
    assert slow, "this scene has an object still in play in its third period"
    for actor in slow:
        for index in range(2 * scene.period_frames, int(actor.key_frames[-1]) + 1):
            centre = actor.position(index)  # period 0: its local time is the frame index
            if centre is not None and 0 <= centre[0] < scene.width and 0 <= centre[1] < scene.height:
                assert actor.object_id in scene.visibility(index), index


@pytest.mark.parametrize("family", ["wander", "occlusion"])
@pytest.mark.parametrize("size", [(640, 384), (96, 160), (64, 3840), (3840, 64)])
def test_no_object_plays_longer_than_a_frame_looks_back(family: str, size: tuple[int, int]) -> None:
    """`_longest_play_frames` bounds what `_make_actor` and the occlusion stager draw, at any shape."""
    for seed in range(25):
        scene = Scene(seed=seed, width=size[0], height=size[1], family=family)
        longest = scene._longest_play_frames()
        for period in range(3):
            assert all(a.key_frames[-1] <= longest for a in scene._period(period))


def test_a_large_scene_background_is_drawn_without_whole_picture_float_copies() -> None:
    tracemalloc.start()
    try:
        scene = Scene(seed=1, width=1920, height=1080)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 3 * scene._background.nbytes  # a float32 copy alone is 4 times the uint8 picture


def test_a_scene_larger_than_max_frame_side_is_refused_before_it_is_built(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scene_source, "Scene", lambda **_: pytest.fail("the scene was built"))
    with pytest.raises(SourceError, match=r"width=3840: must be from 64 to 1280 pixels \(\[server\] max_frame_side\)"):
        SceneSource("scene:?width=3840&height=3840", max_frame_side=1280)


@pytest.mark.parametrize(
    ("uri", "says"),
    [
        ("scene:?seed=-1", "scene seed=-1: must be 0 or more"),
        ("scene:?seed=", "scene option seed is empty"),
        ("scene:?family=", "scene option family is empty"),
        ("scene:foo", "a scene takes options after '?' and nothing else"),
        ("scene://host/x?seed=1", "a scene takes options after '?' and nothing else"),
        ("scene:?width=32", "scene width=32: must be from 64 to 3840 pixels"),
        ("scene:?width=64&height=3840", "scene 64x3840: at most 4 times as tall as it is wide"),
        (
            "scene:?sed=3",
            "unknown scene option(s) 'sed' in 'scene:?sed=3'; known: camera, family, fps, height, seed, width",
        ),
    ],
)
def test_a_bad_scene_uri_is_refused_naming_what_is_wrong(uri: str, says: str) -> None:
    with pytest.raises(SourceError) as refused:
        SceneSource(uri)
    assert says in str(refused.value)


@pytest.mark.parametrize(
    "uri",
    [
        "scene:?seed=-1",
        "scene:?fps=0",
        "scene:?family=",
        "scene:?camera=tripod",
        "scene:?colour=red",
        "scene:?seed=x",
        "SCENE:foo",
        "scene:?width=4000&height=2000",
        "scene:?width=64&height=3840",
    ],
)
def test_checking_a_scene_uri_refuses_it_as_opening_it_does(uri: str) -> None:
    with pytest.raises(SourceError) as opened:
        open_source(uri, max_frame_side=3000)
    with pytest.raises(SourceError) as checked:
        check_uri(uri, max_frame_side=3000)
    assert str(checked.value) == str(opened.value)


def test_checking_a_scene_uri_draws_no_scene(monkeypatch: pytest.MonkeyPatch) -> None:
    """The API checks a scene's URI before the manager builds it: building draws its whole background."""
    monkeypatch.setattr(scene_source, "Scene", lambda **_: pytest.fail("the scene was built"))
    check_uri("Scene:?seed=3&width=3840&height=2160&family=occlusion&camera=shaking")
    assert SceneSettings.of_uri("scene:?seed=3&width=3840&height=2160&camera=shaking") == SceneSettings(
        seed=3, fps=15, width=3840, height=2160, family="wander", camera="shaking"
    )


def test_a_long_scene_option_is_cut_short_in_the_error() -> None:
    with pytest.raises(SourceError) as refused:
        SceneSource("scene:?seed=" + "9" * 5000)
    assert "seed='9999" in str(refused.value) and "(5000 characters)" in str(refused.value)
    assert len(str(refused.value)) < 200


def test_a_scene_that_cannot_be_built_is_a_source_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """A setting only `Scene` refuses is a `SourceError`, which fails the stream with the reason, not an
    error the stream's reader would retry for ever."""

    def refuse(**settings: object) -> Scene:
        raise ValueError("a setting only the scene checks")

    monkeypatch.setattr(scene_source, "Scene", refuse)
    with pytest.raises(SourceError, match="a setting only the scene checks"):
        SceneSource("scene:?seed=1")
