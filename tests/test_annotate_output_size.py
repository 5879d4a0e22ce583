"""The overlay of a scaled picture is drawn for the size people see, not drawn at full size and shrunk.

A 640x384 frame sent to a 320-px embed had its labels drawn at full size and then halved with the
picture: tags about 8 px high, text a few pixels tall, box lines faded to half their colour.
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

import server.delivery.encode as encode
from server.analytics.events import Counts, FrameAnalytics
from server.delivery.annotate import LINE_COLOR, NOTE_COLOR, ZONE_COLOR, annotated_picture, track_color
from server.delivery.encode import ImageKind, Variant, encode_variants, encodings
from server.frames import Frame, FrameResult, Track

FULL, SMALL = Variant(), Variant(max_width=320)
LINE_START = (40, 100)
BOX = (200.0, 200.0, 440.0, 360.0)
MASK = ((260, 240), (380, 320))  # a square inside the box, corners in the full-size frame
TRAIL_Y = 340
TRACK_ID = 2  # a bright colour, so its lines stand out from the black frame in grey levels


def gray(color: tuple[int, int, int]) -> float:
    b, g, r = color
    return 0.114 * b + 0.587 * g + 0.299 * r


def scene() -> FrameResult:
    """A black 640x384 frame with one line and one track (box, mask and trail) in it."""
    line = np.array([LINE_START, (600, 100)], np.int32)
    (mx1, my1), (mx2, my2) = MASK
    polygon = np.array([[mx1, my1], [mx2, my1], [mx2, my2], [mx1, my2]], np.int32)
    trail = tuple((x, TRAIL_Y) for x in range(220, 421, 20))
    track = Track(TRACK_ID, 0, "person", 0.91, BOX, polygon, trail)
    frame = Frame("cam", 1, 0.0, 0.0, np.zeros((384, 640, 3), np.uint8))
    return FrameResult(frame, (track,), 1.0, analytics=FrameAnalytics(Counts(), (), (("door", line),)))


def decoded(jpeg: bytes) -> np.ndarray:
    """The JPEG's grey levels (its colours are subsampled, its brightness is not)."""
    return cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_GRAYSCALE)


def tag_height(picture: np.ndarray, left: int, bottom: int, color: tuple[int, int, int]) -> int:
    """The height of the filled tag whose bottom-left corner is at (``left``, ``bottom``): the run of rows
    in its colour up from there, in the column just inside its left edge (its padding: no text there)."""
    column = picture[:bottom, left + 1] > gray(color) / 2
    rows = 0
    while rows < bottom and column[bottom - 1 - rows]:
        rows += 1
    return rows


def test_labels_of_a_320_px_picture_are_readable() -> None:
    """The line's tag and the track's label are drawn with text sized for the small picture: at least
    10 px tall, where shrinking the full-size overlay left them 8 px."""
    small = decoded(encode_variants(scene(), frozenset({SMALL}))[SMALL])
    assert small.shape == (192, 320)
    line_x, line_y = (v // 2 for v in LINE_START)
    assert tag_height(small, line_x, line_y, LINE_COLOR) >= 10
    box_x, box_y = (round(v / 2) for v in BOX[:2])
    assert tag_height(small, box_x, box_y, track_color(TRACK_ID)) >= 10


def edges(row: np.ndarray, color: tuple[int, int, int]) -> list[int]:
    """Where ``row`` crosses a line drawn at 3/4 of ``color``'s brightness or more: solid, not faded."""
    return np.flatnonzero(row >= 0.75 * gray(color)).tolist()


def test_the_box_of_a_320_px_picture_lies_where_the_full_size_box_scaled_lies_and_is_as_solid() -> None:
    jpegs = encode_variants(scene(), frozenset({SMALL, FULL}))
    full, small = decoded(jpegs[FULL]), decoded(jpegs[SMALL])
    y = 220  # below the box's top edge, above its mask
    color = track_color(TRACK_ID)
    full_left, full_right = edges(full[y], color)
    small_edges = edges(small[y // 2], color)
    assert len(small_edges) in (2, 3, 4), small_edges  # a left and a right edge, each 1 or 2 px wide
    assert abs(small_edges[0] - full_left / 2) <= 2 and abs(small_edges[-1] - full_right / 2) <= 2


def test_the_mask_and_trail_of_a_320_px_picture_are_drawn_where_they_are_scaled_to() -> None:
    small = decoded(encode_variants(scene(), frozenset({SMALL}))[SMALL])
    (mx1, my1), (mx2, my2) = ((x // 2, y // 2) for x, y in MASK)
    middle_y = (my1 + my2) // 2
    tinted = 0.45 * gray(track_color(TRACK_ID))
    assert small[middle_y, (mx1 + mx2) // 2] == pytest.approx(tinted, abs=12), "translucent inside"
    assert small[middle_y, mx1 - 4] < 20 and small[middle_y, mx2 + 4] < 20, "nothing just outside the mask"
    assert small[middle_y, mx1] > tinted + 40 and small[middle_y, mx2] > tinted + 40, "its outline on its edge"
    assert small[TRAIL_Y // 2, 200] >= 0.75 * gray(track_color(TRACK_ID)), "the trail, near its end"


def test_the_full_size_picture_is_the_annotated_picture_of_the_frame() -> None:
    result = scene()
    jpegs = encode_variants(result, frozenset({SMALL, FULL, Variant(max_width=3840)}))
    ok, expected = cv2.imencode(".jpg", annotated_picture(result), [cv2.IMWRITE_JPEG_QUALITY, encode.JPEG_QUALITY])
    assert ok and jpegs[FULL] == expected.tobytes()


def test_the_overlay_is_drawn_once_per_distinct_size(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[tuple[int, int], ...]] = []

    def counting(result: FrameResult, *size: tuple[int, int]) -> np.ndarray:
        calls.append(size)
        return annotated_picture(result, *size)

    monkeypatch.setattr(encode, "annotated_picture", counting)
    wanted = {FULL, Variant(max_width=640), Variant(max_width=3840), SMALL, Variant(ImageKind.CLEAN, 320)}
    jpegs = encode_variants(scene(), frozenset(wanted))
    assert sorted(calls) == [((320, 192),), ((640, 384),)]  # the picture at each size, drawn on once
    assert encodings(jpegs) == 3


ZONE = ((40, 60), (600, 340))  # corners of a rectangle in a 640x360 frame
TRACK_BOXES = {3: (200.0, 100.0, 300.0, 250.0), 6: (380.0, 120.0, 520.0, 260.0)}


def busy_scene(height: int = 360) -> FrameResult:
    """A black 640 x ``height`` frame with a zone and two tracks (boxes only) in it."""
    (zx1, zy1), (zx2, zy2) = ZONE
    zone = np.array([[zx1, zy1], [zx2, zy1], [zx2, zy2], [zx1, zy2]], np.int32)
    tracks = tuple(Track(i, 0, "person", 0.9, box, None, ()) for i, box in TRACK_BOXES.items())
    frame = Frame("cam", 1, 0.0, 0.0, np.zeros((height, 640, 3), np.uint8))
    return FrameResult(frame, tracks, 1.0, analytics=FrameAnalytics(Counts(), (("porch", zone),), ()))


def tag_share(picture: np.ndarray) -> float:
    """The share of ``picture`` (`busy_scene` scaled) drawn on away from its boxes' and zone's outlines: their tags."""
    outlines = np.zeros(picture.shape[:2], np.uint8)
    fx = picture.shape[1] / 640
    for x1, y1, x2, y2 in [*TRACK_BOXES.values(), (*ZONE[0], *ZONE[1])]:
        corners = [(round(x1 * fx), round(y1 * fx)), (round(x2 * fx), round(y2 * fx))]
        cv2.rectangle(outlines, *corners, 255, 5)  # 2 px either side of the line, for its anti-aliasing
    return float(((picture.max(axis=2) > 30) & (outlines == 0)).mean())


def test_a_160_px_picture_has_no_tags_covering_it() -> None:
    """At 160x90 a tag at the smallest readable font is a sixth of the picture's height: the labels and zone
    tag covered 14% of it (as much as the outlines), hiding the objects they named. The boxes and the zone's
    outline are still drawn."""
    picture = annotated_picture(busy_scene(), (160, 90))
    assert tag_share(picture) <= 0.01
    drawn = picture.max(axis=2) > 30
    x1, y1, x2, _ = (round(v / 4) for v in TRACK_BOXES[3])
    assert drawn[y1 + 5, x1] and drawn[y1 + 5, x2], "the box is drawn"
    assert drawn[ZONE[0][1] // 4 + 10, ZONE[0][0] // 4], "the zone's outline is drawn"


def test_the_labels_and_zone_tag_of_a_320_px_picture_are_drawn() -> None:
    picture = cv2.cvtColor(annotated_picture(busy_scene(384), (320, 192)), cv2.COLOR_BGR2GRAY)
    for track_id, box in TRACK_BOXES.items():
        x, y = (round(v / 2) for v in box[:2])
        assert tag_height(picture, x, y, track_color(track_id)) >= 10, track_id
    x, y = (v // 2 for v in ZONE[0])
    assert tag_height(picture, x, y, ZONE_COLOR) >= 10


@pytest.mark.parametrize("size", [(160, 90), (96, 54), (64, 36)])
def test_a_small_unanalysed_picture_says_so_within_its_width(size: tuple[int, int]) -> None:
    """The note is drawn however small the picture, shortened where the whole of it would be cut off."""
    unanalysed = FrameResult.unanalysed(busy_scene().frame)
    picture = annotated_picture(unanalysed, size)
    noted = np.flatnonzero((np.abs(picture.astype(int) - NOTE_COLOR).max(axis=2) < 30).any(axis=0))
    assert noted.size and noted.min() == 0
    assert noted.max() < size[0] - 1, "the note's tag ends inside the picture"


def test_an_unanalysed_320_px_picture_is_320_px_wide() -> None:
    unanalysed = dataclasses.replace(scene(), analysed=False)
    assert decoded(encode_variants(unanalysed, frozenset({SMALL}))[SMALL]).shape == (192, 320)


def test_the_zone_of_a_320_px_picture_lies_where_the_full_size_zone_scaled_lies() -> None:
    jpegs = encode_variants(busy_scene(384), frozenset({SMALL, FULL}))
    full, small = decoded(jpegs[FULL]), decoded(jpegs[SMALL])
    y = 300  # below both tracks' boxes, inside the zone
    full_left, *_, full_right = edges(full[y], ZONE_COLOR)
    small_edges = edges(small[y // 2], ZONE_COLOR)
    assert abs(small_edges[0] - full_left / 2) <= 2 and abs(small_edges[-1] - full_right / 2) <= 2, small_edges
    x = 160  # right of the zone's tag, left of both tracks' boxes
    full_top, *_, full_bottom = edges(full[:, x], ZONE_COLOR)
    small_rows = edges(small[:, x // 2], ZONE_COLOR)
    assert abs(small_rows[0] - full_top / 2) <= 2 and abs(small_rows[-1] - full_bottom / 2) <= 2, small_rows
