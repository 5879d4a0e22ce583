"""A stream restarted with new settings: what its old tracks end with is counted where it is sent.

The old tracks end on the restarted stream's first frame, in the analytics that followed them: their
zone exits and the crossings they were making go out as that frame's events (MQTT, webhooks,
history), so its counts (/api/streams/<id>/counts, /metrics) must hold them too, or Prometheus'
``increase()`` misses what the events report.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from server.analytics.events import AnalyticsEvent, AnalyticsEventKind
from server.frames import Frame, FrameResult
from server.options import StreamOptions
from server.scene import CLASS_NAMES, Scene, TrueObject
from tests.support.detections import TruthModel
from tests.support.driver import EPOCH, Driver

SIZE_PX = 320
UNUSED_SCENE = Scene(seed=1)  # frames here are drawn by `step`, not rendered from a scene
BAY = {"name": "bay", "points": [[0, 0], [160, 0], [160, 320], [0, 320]]}
GATE = {"name": "gate", "points": [[0, 160], [320, 160]]}  # "in" is from above (left, walking first to last)
#: The bottom edge of one object walking down over the gate inside the bay, a frame each 0.1 s: across
#: from 180 on, 0.3 s by the last, more than half the gate's default confirm_s (0.5 s), which a track
#: that ends then counts (docs/analytics.md).
WALK_PX = (60, 80, 100, 120, 140, 180, 185, 190, 195)


@pytest.fixture
def driver() -> Iterator[Driver]:
    with Driver(TruthModel()) as driver:
        yield driver


def step(driver: Driver, index: int, bottom: int) -> FrameResult:
    """The result of one frame of stream ``cam`` with one object, 30 px wide and tall, its bottom at ``bottom``."""
    mask = np.zeros((SIZE_PX, SIZE_PX), dtype=bool)
    mask[bottom - 30 : bottom, 45:75] = True
    disc = TrueObject(1, 0, (45.0, bottom - 30.0, 75.0, float(bottom)), mask, 0.0)
    image = np.zeros((SIZE_PX, SIZE_PX, 3), np.uint8)
    assert isinstance(driver.model.model, TruthModel)
    driver.model.model.register(image, [disc])
    driver.put(Frame("cam", index, EPOCH + index / 10, index / 10, image))
    return driver.wait(1)["cam"]


def restart_mid_crossing(driver: Driver, zones: list[object], lines: list[object]) -> FrameResult:
    """Walk the object over the gate, restart the stream (a new ``conf``) with ``zones`` and ``lines`` while
    its crossing awaits confirmation, and return the restarted stream's first frame."""
    driver.add("cam", UNUSED_SCENE, StreamOptions.from_mapping({"zones": [BAY], "lines": [GATE]}), fps=10.0)
    for index, bottom in enumerate(WALK_PX):
        assert not [e for e in step(driver, index, bottom).events if isinstance(e, AnalyticsEvent) and e.line]
    driver.worker.remove_stream("cam", restarting=True)
    options = StreamOptions.from_mapping({"zones": zones, "lines": lines, "conf": 0.3})
    driver.add("cam", UNUSED_SCENE, options, fps=10.0)
    return step(driver, len(WALK_PX), WALK_PX[-1])


def settled(result: FrameResult) -> list[tuple[str, str | None, str | None]]:
    return [
        (e.kind.value, e.zone or e.line, e.direction)
        for e in result.events
        if isinstance(e, AnalyticsEvent) and e.kind in (AnalyticsEventKind.ZONE_EXIT, AnalyticsEventKind.LINE_CROSS)
    ]


def test_the_crossing_and_exit_an_old_track_ends_with_count_once_in_the_restarted_streams_counts(
    driver: Driver,
) -> None:
    first = restart_mid_crossing(driver, [BAY], [GATE])
    assert settled(first) == [("zone_exit", "bay", None), ("line_cross", "gate", "in")]
    (exit_event,) = [e for e in first.events if isinstance(e, AnalyticsEvent) and e.zone == "bay" and e.dwell_s]
    for result in (first, step(driver, len(WALK_PX) + 1, WALK_PX[-1])):  # once, not again on the next frame
        counts = driver.worker.counts("cam")
        assert counts is not None
        assert counts.lines["gate"] == {CLASS_NAMES[0]: {"in": 1, "out": 0}}, result.frame.seq
        assert (counts.dwell["bay"].count, counts.dwell["bay"].total_s) == (1, exit_event.dwell_s)
        assert result.analytics is not None and result.analytics.counts.lines == counts.lines


def test_a_zone_or_line_moved_by_the_restart_does_not_count_what_the_old_one_settled(driver: Driver) -> None:
    """As for a change of shapes alone (`StreamAnalytics.reshaped`): a moved zone or line counts from zero."""
    moved_bay = {**BAY, "points": [[0, 0], [170, 0], [170, 320], [0, 320]]}
    moved_gate = {**GATE, "points": [[0, 150], [320, 150]]}
    first = restart_mid_crossing(driver, [moved_bay], [moved_gate])
    assert settled(first) == [("zone_exit", "bay", None), ("line_cross", "gate", "in")], "still sent"
    counts = driver.worker.counts("cam")
    assert counts is not None
    assert counts.lines["gate"] == {} and counts.dwell["bay"].count == 0
