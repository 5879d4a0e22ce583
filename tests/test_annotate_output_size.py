"""The overlay of a scaled picture is drawn for the size people see, not drawn at full size and shrunk.

A 640x384 frame sent to a 320-px embed had its labels drawn at full size and then halved with the
picture: tags about 8 px high, text a few pixels tall, box lines faded to half their colour.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

import server.delivery.encode as encode
from server.analytics.events import Counts, FrameAnalytics
from server.delivery.annotate import LINE_COLOR, annotated_picture, track_color
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
