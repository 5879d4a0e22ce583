"""Zone masks: each kept as a crop at the zone's bounding box, answering as a whole-frame mask would."""

from __future__ import annotations

import logging
import tracemalloc
from dataclasses import replace

import cv2
import numpy as np
import pytest

from server.analytics.engine import StreamAnalytics
from server.analytics.shapes import parse_zones
from server.analytics.zone_membership import ZoneMask, share_inside, track_area
from server.frames import Frame
from server.options import StreamOptions
from server.scene import Scene
from tests.support.detections import TruthModel
from tests.support.driver import Driver
from tests.support.tracks import disc_track

ZONE_PX = 200


def _share_in_whole_frame_mask(
    area: tuple[tuple[int, int], np.ndarray], polygon: np.ndarray, shape: tuple[int, int]
) -> float:
    """The share as it was measured against a mask of the whole frame."""
    mask = np.zeros(shape, np.uint8)
    cv2.fillPoly(mask, [polygon], 1)
    (left, top), crop = area
    total = int(crop.sum())
    if total == 0:
        return 0.0
    window = mask.astype(bool)[top : top + crop.shape[0], left : left + crop.shape[1]]
    return int((crop & window).sum()) / total


def test_zone_membership_is_the_same_as_with_whole_frame_masks() -> None:
    """Random zones (some reaching the frame's edges) and random tracks, with and without outlines."""
    rng = np.random.default_rng(3)
    height, width = 120, 160
    for _ in range(300):
        corners = rng.integers(3, 8)
        zone = np.column_stack([rng.integers(-5, width + 5, corners), rng.integers(-5, height + 5, corners)])
        zone = zone.astype(np.int32)
        x1, y1 = rng.uniform(-20, width), rng.uniform(-20, height)
        box = (x1, y1, x1 + rng.uniform(1, 80), y1 + rng.uniform(1, 80))
        polygon = None
        if rng.random() < 0.7:
            points = rng.integers(4, 10)
            polygon = np.column_stack(
                [rng.uniform(box[0], box[2], points), rng.uniform(box[1], box[3], points)]
            ).astype(np.int32)
        area = track_area(disc_track(box, polygon), (height, width, 3))
        assert share_inside(area, ZoneMask.filled(zone, width, height)) == _share_in_whole_frame_mask(
            area, zone, (height, width)
        )


def test_a_streams_zone_masks_take_about_the_zones_area_not_whole_frames() -> None:
    """32 small zones on a 4K stream: 265 MB as whole-frame masks, about a megabyte cropped."""
    height, width = 2160, 3840
    zones = parse_zones(
        [
            {
                "name": f"z{i}",
                "points": [[x, 100], [x + ZONE_PX, 100], [x + ZONE_PX, 100 + ZONE_PX], [x, 100 + ZONE_PX]],
            }
            for i, x in enumerate(range(0, 32 * (ZONE_PX // 2), ZONE_PX // 2))
        ]
    )
    analytics = StreamAnalytics("cam", zones, ())
    frame = Frame("cam", 0, 1_700_000_000.0, 0.0, np.zeros((height, width, 3), np.uint8))
    tracemalloc.start()
    try:
        analytics.update((), (), frame)
        kept, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    zones_area = len(zones) * (ZONE_PX + 1) ** 2
    assert kept < 2 * zones_area, f"{kept} bytes kept for {len(zones)} zones of {zones_area} pixels in all"


def test_a_process_fps_change_keeps_the_zones_resolved(caplog: pytest.LogCaptureFixture) -> None:
    """Nothing the analytics read changed: no masks filled again, no zone left out told again."""
    zones = [
        {"name": "fits", "points": [[0, 0], [1, 0], [1, 1], [0, 1]], "units": "fraction"},
        {"name": "too_far", "points": [[0, 0], [5000, 0], [5000, 5000]]},
    ]
    options = StreamOptions.from_mapping({"zones": zones})
    with caplog.at_level(logging.WARNING, logger="server.analytics.engine"), Driver(TruthModel()) as driver:
        driver.add("cam", Scene(seed=1), options)
        driver.step({"cam": 0})
        driver.worker.change_shapes("cam", replace(options, process_fps=5.0))
        result = driver.step({"cam": 1})["cam"]
        assert result.analytics is not None and [name for name, _ in result.analytics.zones] == ["fits"]
    told = [r.getMessage() for r in caplog.records if "is left out" in r.getMessage()]
    assert len(told) == 1, told
