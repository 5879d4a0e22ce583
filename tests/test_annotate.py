"""The overlay: one colour per track id, translucent masks, and sizes that follow the frame."""

from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest

from server.delivery.annotate import Layers, annotate, annotated_picture, track_color
from server.frames import Frame, FrameResult, Track


def square_track(track_id: int, height: int, width: int) -> Track:
    """A track covering the middle third of a ``width`` x ``height`` frame, with a trail to its centre."""
    x1, y1, x2, y2 = width // 3, height // 3, 2 * width // 3, 2 * height // 3
    polygon = np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]], np.int32)
    trail = tuple((x1 + i * (x2 - x1) // 20, (y1 + y2) // 2) for i in range(11))
    return Track(track_id, 0, "disc", 0.87, (x1, y1, x2, y2), polygon, trail)


def changed(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    return np.any(before != after, axis=2)


def test_each_track_id_keeps_one_colour_and_neighbouring_ids_differ() -> None:
    assert track_color(7) == track_color(7)
    colours = [track_color(i) for i in range(1, 13)]
    for a, b in itertools.pairwise(colours):
        assert sum(abs(p - q) for p, q in zip(a, b, strict=True)) > 120, (a, b)


def test_the_input_frame_is_left_untouched() -> None:
    image = np.full((240, 320, 3), 90, np.uint8)
    annotate(image, (square_track(1, 240, 320),))
    assert (image == 90).all()


def test_masks_are_translucent_so_the_object_still_shows() -> None:
    image = np.full((360, 640, 3), 100, np.uint8)
    out = annotate(image, (square_track(3, 360, 640),), Layers(boxes=False, labels=False, trails=False))
    inside = out[180, 320].astype(int)  # the mask's middle, away from its outline
    colour = np.array(track_color(3))
    assert not (inside == 100).all() and not (inside == colour).all()
    assert np.allclose(inside, 0.45 * colour + 0.55 * 100, atol=2)
    assert (out[10, 10] == 100).all(), "nothing is drawn outside the tracks"


@pytest.mark.parametrize(("height", "width"), [(320, 568), (1080, 1920)])
def test_lines_and_labels_scale_with_the_frame(height: int, width: int) -> None:
    """The box edge is ~2 px per 720 rows and the label about as tall, relative to the frame, at any size."""
    image = np.zeros((height, width, 3), np.uint8)
    track = square_track(5, height, width)
    boxes_only = annotate(image, (track,), Layers(masks=False, labels=False, trails=False))
    x1, y1, _, y2 = (int(v) for v in track.box)
    column = boxes_only[y1 + (y2 - y1) // 2, x1 - 10 : x1 + 10].max(axis=1)
    expected_px = max(1, round(2 * height / 720))
    assert expected_px <= (column > 128).sum() <= expected_px + 2  # anti-aliased edges are fainter

    labelled = annotate(image, (track,), Layers(masks=False, boxes=False, trails=False))
    rows = np.flatnonzero(changed(image, labelled).any(axis=1))
    label_height = rows.max() - rows.min() + 1
    assert 0.03 * height <= label_height <= 0.07 * height or (height < 480 and 10 <= label_height <= 24)
    assert rows.max() <= y1, "the label sits above the box"


def test_label_stays_inside_the_frame_at_the_edges() -> None:
    image = np.zeros((240, 320, 3), np.uint8)
    track = Track(9, 1, "square", 0.5, (290.0, 0.0, 320.0, 40.0), None, ())
    out = annotate(image, (track,), Layers(masks=False, boxes=False, trails=False))
    cols = np.flatnonzero(changed(image, out).any(axis=0))
    assert cols.size and cols.max() <= 319 and cols.min() < 290, "shifted left to fit, not cut off"
    ok, _ = cv2.imencode(".png", out)
    assert ok


def test_trails_are_drawn_in_the_tracks_colour() -> None:
    image = np.zeros((720, 1280, 3), np.uint8)
    track = square_track(4, 720, 1280)
    out = annotate(image, (track,), Layers(masks=False, boxes=False, labels=False))
    x, y = track.trail[5]
    assert tuple(int(v) for v in out[y, x]) == track_color(4)


@pytest.mark.parametrize(
    ("box", "trail"),
    [
        ((float("nan"), 10.0, 50.0, 50.0), ()),
        ((float("inf"), 10.0, 50.0, 50.0), ()),
        ((-1e10, 10.0, 1e10, 50.0), ()),  # beyond the 32 bits OpenCV takes
        ((10.0, 10.0, 50.0, 50.0), ((0, 0), (10**10, 10**10))),
    ],
    ids=["nan", "inf", "huge-box", "huge-trail"],
)
def test_a_track_that_cannot_be_drawn_is_left_out_and_the_others_are_drawn(
    box: tuple[float, float, float, float], trail: tuple[tuple[int, int], ...]
) -> None:
    """One such track raised out of `annotate`, and its frame was lost to every viewer."""
    image = np.zeros((240, 320, 3), np.uint8)
    good = square_track(1, 240, 320)
    broken = Track(2, 0, "disc", 0.9, box, None, trail)
    assert np.array_equal(annotate(image, (good, broken)), annotate(image, (good,)))


@pytest.mark.parametrize(
    ("name", "drawn_as"),
    [("人车", "class 3"), ("café", "cafe"), ("Straße 人", "Strae"), ("fork\nlift", "fork lift")],
)
def test_a_class_name_the_label_font_cannot_draw_is_shown_readably(name: str, drawn_as: str) -> None:
    """OpenCV's Hershey font draws each non-ASCII character as "?": "人车" showed as "??"."""
    image = np.zeros((240, 320, 3), np.uint8)

    def labelled(class_name: str) -> np.ndarray:
        track = Track(1, 3, class_name, 0.9, (100.0, 100.0, 200.0, 200.0), None, ())
        return annotate(image, (track,), Layers(masks=False, boxes=False, trails=False))

    assert np.array_equal(labelled(name), labelled(drawn_as))


def test_a_frame_shown_unanalysed_says_so_in_its_corner_and_an_analysed_one_is_annotated() -> None:
    """While inference is unavailable a frame's annotated picture is the frame with a note in its bottom
    left corner (the viewer's strip covers the top), not a bare picture that would pass for an empty
    scene; the frame itself is untouched."""
    image = np.full((360, 640, 3), 90, np.uint8)
    frame = Frame("cam", 1, 0.0, 0.0, image)
    marked = changed(image, annotated_picture(FrameResult.unanalysed(frame)))
    rows, columns = np.nonzero(marked)
    assert marked.sum() > 500  # a readable note, not a stray pixel
    assert rows.min() > 360 - 360 // 8 and columns.min() == 0  # a strip of text at the bottom left only
    assert (image == 90).all()
    track = square_track(1, 360, 640)
    analysed = annotated_picture(FrameResult(frame, (track,), 5.0))
    assert (analysed == annotate(image, (track,))).all()
