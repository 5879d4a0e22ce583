"""Which outline belongs to which row of `Detections`, once rows are dropped or selected.

A frame's detections are filtered twice before anything is drawn: detections without a mask pixel
are dropped as the model's output is read, and each stream then keeps a subset (its own filter, the
tracker's choice). Each step renumbers the rows, and each row must still get its own detection's
outline, traced only once however many subsets ask for it.
"""

from __future__ import annotations

import numpy as np

from server.inference.detections import Detections
from server.inference.outlines import segment_detections

SHAPE = (64, 64)


def three_detections_the_first_without_a_mask() -> Detections:
    """Three boxes over a uniform prototype: a negative coefficient leaves the first box no mask pixel."""
    protos = np.ones((1, 16, 16), np.float32)
    pred = np.array(
        [
            [0, 0, 20, 20, 0.9, 0, -1.0],
            [30, 30, 60, 60, 0.8, 0, 1.0],
            [5, 40, 25, 60, 0.7, 0, 1.0],
        ],
        np.float32,
    )
    return segment_detections(pred, protos, SHAPE, SHAPE)


def assert_inside(outline: np.ndarray | None, box: np.ndarray) -> None:
    assert outline is not None and len(outline) > 0
    x1, y1, x2, y2 = box[:4]
    assert (outline[:, 0] >= x1).all() and (outline[:, 0] <= x2).all()
    assert (outline[:, 1] >= y1).all() and (outline[:, 1] <= y2).all()


def test_rows_after_a_detection_without_a_mask_keep_their_own_outlines() -> None:
    detections = three_detections_the_first_without_a_mask()

    assert len(detections) == 2
    for index in range(len(detections)):
        assert_inside(detections.outline(index), detections.boxes[index])


def test_a_subset_of_detections_left_after_a_drop_gets_the_outline_of_the_row_it_selected() -> None:
    detections = three_detections_the_first_without_a_mask()
    subset = detections.select([1])

    outline = subset.outline(0)

    assert_inside(outline, subset.boxes[0])
    np.testing.assert_array_equal(outline, detections.outline(1))


def test_each_rows_outline_is_traced_once_for_the_frame_and_every_subset() -> None:
    traced: list[int] = []

    def make_outline(row: int) -> np.ndarray:
        traced.append(row)
        return np.zeros((0, 2), np.float32)

    detections = Detections(np.zeros((3, 6), np.float32), make_outline)
    subset = detections.select([2, 0])
    for _ in range(3):
        detections.outline(2)
        subset.outline(0)
        subset.select([1]).outline(0)

    assert sorted(traced) == [0, 2]
