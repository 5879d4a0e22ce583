"""The zone and line rules at their edges: a line's ends and dead band, a zone's thresholds, and what
survives a change of shapes, each on hand-made tracks whose every place and time is exact in floats."""

from __future__ import annotations

import numpy as np
import pytest

from server.analytics.engine import StreamAnalytics
from server.analytics.shapes import parse_lines, parse_zones
from server.frames import Frame
from tests.test_analytics import _analytics_events, _end, _frame, _track

WHOLE_FRAME = [[0, 0], [200, 0], [200, 200], [0, 200]]


def _walk(
    analytics: StreamAnalytics, paths: dict[int, tuple[float, list[float]]], first: int = 0
) -> list[tuple[int, str, str | None, str | None]]:
    """Walk each track of ``paths`` (track id -> its x and the y of its bottom edge, frame by frame) up or
    down on frames 0.1 s apart from frame ``first``: the frame index, kind, shape and direction of each
    analytics event."""
    made = []
    for index in range(max(len(ys) for _, ys in paths.values())):
        tracks = tuple(
            _track(None, (x - 10, ys[index] - 20, x + 10, ys[index]), track_id)
            for track_id, (x, ys) in paths.items()
            if index < len(ys)
        )
        _, events = analytics.update(tracks, (), _frame(first + index))
        made += [(first + index, kind, shape, way) for kind, shape, way, _, _ in _analytics_events(events)]
    return made


def test_a_track_that_walks_round_the_end_of_a_line_crosses_nothing() -> None:
    """docs/analytics.md: a crossing needs the point's path to go over the line, not round its end."""
    gate = parse_lines([{"name": "gate", "points": [[50, 100], [150, 100]]}])[0]
    analytics = StreamAnalytics("cam", (), (gate,))
    down = [40, 60, 80, 100, 120, 140, 160, 170, 180, 190, 190, 190, 190]
    # Track 1 walks down past the line's left end (x = 20, 30 px beyond it) and stays below; track 2
    # walks the same way through the line's middle, so the line does count what goes over it.
    made = _walk(analytics, {1: (20.0, down), 2: (100.0, down)})
    assert made == [(9, "line_cross", "gate", "in")], "only the track that went over the line counts"
    _, events = analytics.update((), (_end(1), _end(2)), _frame(20))
    assert _analytics_events(events) == [], "a track round the end has no crossing pending to settle either"
    assert analytics.counts.lines == {"gate": {"disc": {"in": 1, "out": 0}}}


def test_a_track_first_seen_in_the_dead_band_takes_no_side_from_it() -> None:
    """Its side there is not decided: walking away from the line is no crossing, though the same walk
    begun beyond the band is one."""
    gate = parse_lines([{"name": "gate", "points": [[0, 100], [200, 100]], "hysteresis": 0.05}])[0]  # band 10 px
    analytics = StreamAnalytics("cam", (), (gate,))
    up_from_the_band = [105, 103, 99, 95, 80, 70, 60, 60, 60, 60, 60, 60]
    up_from_beyond_it = [115, *up_from_the_band[1:]]
    made = _walk(analytics, {1: (100.0, up_from_the_band), 2: (100.0, up_from_beyond_it)})
    assert made == [(9, "line_cross", "gate", "out")], "only track 2 was seen below the line before it went up"
    _, events = analytics.update((), (_end(1),), _frame(20))
    assert _analytics_events(events) == []
    assert analytics.counts.lines == {"gate": {"disc": {"in": 0, "out": 1}}}


@pytest.mark.parametrize(
    "moved_or_removed",
    [
        pytest.param([], id="removed"),
        pytest.param([{"name": "b", "points": [[100, 100], [200, 100], [200, 200], [100, 200]]}], id="moved"),
    ],
)
def test_the_counts_for_new_shapes_leave_out_a_zone_removed_or_moved_before_the_next_frame(
    moved_or_removed: list[dict[str, object]],
) -> None:
    """A stream whose file has ended has no next frame to take its new shapes up on: until one comes, a
    reader asks for the counts of the shapes it has now (`StreamAnalytics.counts_for`)."""
    shapes = [{"name": "a", "points": WHOLE_FRAME}, {"name": "b", "points": [[0, 0], [100, 0], [100, 100], [0, 100]]}]
    a, b = parse_zones(shapes)
    gate = parse_lines([{"name": "gate", "points": [[0, 150], [200, 150]]}])[0]
    analytics = StreamAnalytics("cam", (a, b), (gate,))
    analytics.update((_track(None, (10, 10, 50, 50)),), (), _frame(0))
    assert set(analytics.counts_for((a, b), (gate,)).zones) == {"a", "b"}, "unchanged shapes keep all their counts"
    now = (a, *parse_zones(moved_or_removed))
    counts = analytics.counts_for(now, (gate,))
    assert dict(counts.zones) == {"a": {"disc": 1}}
    assert set(counts.dwell) == {"a"} and set(counts.lines) == {"gate"}


@pytest.mark.parametrize("tuning", [{"min_share": 0.5}, {"loiter_s": 2.0}], ids=["min_share", "loiter_s"])
def test_a_zone_tuned_in_place_keeps_its_finished_visits(tuning: dict[str, object]) -> None:
    """Its dwell histogram is a Prometheus counter: one that drops to 0 reads as a reset."""
    bay = {"name": "bay", "points": WHOLE_FRAME}
    analytics = StreamAnalytics("cam", parse_zones([bay]), ())
    for index in range(5):
        analytics.update((_track(None, (10, 10, 50, 50)),), (), _frame(index))
    analytics.update((), (_end(),), _frame(6))
    assert analytics.counts.dwell["bay"].count == 1
    tuned, exits = analytics.reshaped(parse_zones([{**bay, **tuning}]), (), _frame(7))
    tuned.update((), (), _frame(8))
    assert exits == (), "its one visit had already finished: none to end"
    assert tuned.counts.dwell["bay"].count == 1


def test_an_object_with_exactly_min_share_inside_enters() -> None:
    """docs/analytics.md: in a zone when *at least* ``min_share`` of its area lies inside."""
    corner = parse_zones([{"name": "corner", "points": [[0, 0], [49, 0], [49, 49], [0, 49]]}])[0]  # 50 x 50 px
    assert corner.min_share == 0.25
    quarter_in = _track(None, (0, 0, 99, 99))  # 100 x 100 px, a quarter of them in the corner
    (track,), events = StreamAnalytics("cam", (corner,), ()).update((quarter_in,), (), _frame(0))
    assert track.zones == ("corner",)
    assert _analytics_events(events) == [("zone_enter", "corner", None, None, "disc")]


def _frame_at(media_time: float) -> Frame:
    """A frame at ``media_time``, which a test picks exact in binary floats (unlike tenths of a second)."""
    return Frame("cam", round(media_time * 8), 1000.0 + media_time, media_time, np.zeros((200, 200, 3), np.uint8))


def test_a_visit_loiters_only_once_it_lasts_longer_than_loiter_s() -> None:
    """docs/analytics.md: a ``loiter`` event for a visit that lasts *longer* than ``loiter_s``."""
    bay = parse_zones([{"name": "bay", "points": WHOLE_FRAME, "loiter_s": 0.5}])[0]
    analytics = StreamAnalytics("cam", (bay,), ())
    made = []
    for media_time in (0.0, 0.25, 0.5, 0.75, 1.0):  # inside for exactly 0.5 s on the third frame
        _, events = analytics.update((_track(None, (10, 10, 50, 50)),), (), _frame_at(media_time))
        made += [(media_time, kind, dwell) for kind, _, _, dwell, _ in _analytics_events(events)]
    assert made == [(0.0, "zone_enter", None), (0.75, "loiter", 0.75)]


def test_a_point_exactly_its_dead_band_away_from_a_line_is_still_in_the_band() -> None:
    """docs/analytics.md: a crossing needs the point seen *beyond* the band on the other side."""
    gate = parse_lines([{"name": "gate", "points": [[0, 100], [200, 100]], "hysteresis": 0.125}])[0]  # band 25 px
    analytics = StreamAnalytics("cam", (), (gate,))
    at_the_band = [60, 80, *[125] * 10]
    assert _walk(analytics, {1: (100.0, at_the_band)}) == [], "on the band's edge for 1 s, never beyond it"
    # The same track a pixel further down: beyond the band from frame 12 (1.2 s) on.
    made = _walk(analytics, {1: (100.0, [126] * 6)}, first=12)
    assert made == [(17, "line_cross", "gate", "in")], "counted once it stayed beyond the band for confirm_s"
