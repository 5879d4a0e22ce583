"""Shapes tuned in place (`StreamAnalytics.reshaped`): a track hidden when its zone's or line's classes
narrow is judged by them as one seen then is, and the log tells a shape's problem once."""

from __future__ import annotations

import logging

import pytest

from server.analytics.engine import StreamAnalytics
from server.analytics.shapes import parse_lines, parse_zones
from tests.test_analytics import _analytics_events, _end, _frame, _track

WHOLE_FRAME = [[0, 0], [200, 0], [200, 200], [0, 200]]


@pytest.mark.parametrize(
    ("classes", "after"),
    [
        # Control: still counted, the pending crossing had held for half its confirm_s when last seen.
        (["disc", "square"], [("line_cross", "gate", "in", None, "disc")]),
        (["square"], []),
    ],
)
def test_a_line_narrowed_to_other_classes_drops_the_pending_crossing_of_a_track_hidden_then(
    classes: list[str], after: list[object]
) -> None:
    gate = parse_lines([{"name": "gate", "points": [[0, 100], [200, 100]], "classes": ["disc", "square"]}])[0]
    analytics = StreamAnalytics("cam", (), (gate,))
    for index, y in enumerate([60, 70, 80, 130, 135, 140, 145, 150]):  # down over the gate, 0.4 s across
        analytics.update((_track(None, (90.0, y - 20.0, 110.0, float(y))),), (), _frame(index))
    tuned = parse_lines([{"name": "gate", "points": [[0, 100], [200, 100]], "classes": classes}])[0]
    fresh, exits = analytics.reshaped((), (tuned,), _frame(8))
    assert exits == ()
    seen = []
    for index in (8, 9):  # hidden: the tracker keeps it while it is lost
        _, events = fresh.update((), (), _frame(index))
        seen += _analytics_events(events)
    _, events = fresh.update((), (_end(),), _frame(10))
    seen += _analytics_events(events)
    assert seen == after
    counted = {"in": len(after), "out": 0}
    assert fresh.counts.lines == {"gate": {"disc": counted, "square": {"in": 0, "out": 0}}}


@pytest.mark.parametrize("seen_then", [True, False])
def test_a_zone_narrowed_to_other_classes_ends_a_visit_on_the_next_frame_whether_its_track_is_seen_or_not(
    seen_then: bool,
) -> None:
    bay = parse_zones([{"name": "bay", "points": WHOLE_FRAME, "classes": ["disc", "square"]}])[0]
    analytics = StreamAnalytics("cam", (bay,), ())
    for index in range(5):
        analytics.update((_track(None, (10, 10, 50, 50)),), (), _frame(index))
    squares_only = parse_zones([{"name": "bay", "points": WHOLE_FRAME, "classes": ["square"]}])[0]
    fresh, exits = analytics.reshaped((squares_only,), (), _frame(5))
    assert exits == ()
    tracks = (_track(None, (10, 10, 50, 50)),) if seen_then else ()
    _, events = fresh.update(tracks, (), _frame(5))
    assert _analytics_events(events) == [("zone_exit", "bay", None, 0.4, "disc")]
    _, events = fresh.update((), (_end(),), _frame(55))
    assert _analytics_events(events) == [], "it left once; its end makes no second exit"
    assert fresh.counts.dwell["bay"].count == 1


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    records = caplog.records
    return [r.getMessage() for r in records if r.name == "server.analytics.engine" and r.levelno >= logging.WARNING]


def test_an_edit_of_a_shape_does_not_tell_the_others_problems_again(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="server.analytics.engine")
    far, near = parse_zones(
        [
            {"name": "far", "points": [[0, 0], [900, 0], [0, 100]]},  # beyond the 200x200 frame: left out
            {"name": "near", "points": [[0, 0], [100, 0], [100, 100], [0, 100]]},
        ]
    )
    (edge,) = parse_lines([{"name": "edge", "points": [[0, 198], [200, 198]]}])  # within its band: never counts
    analytics = StreamAnalytics("cam", (far, near), (edge,))
    analytics.update((), (), _frame(0))
    told = _warnings(caplog)
    assert len(told) == 2 and "zone 'far' is left out" in told[0] and "can never count" in told[1]
    caplog.clear()
    for index, min_share in enumerate((0.5, 0.3), start=1):  # the viewer tunes "near" twice
        (tuned,) = parse_zones([{"name": "near", "points": near.points, "min_share": min_share}])
        analytics, _ = analytics.reshaped((far, tuned), (edge,), _frame(index))
        analytics.update((), (), _frame(index))
        assert analytics.problems == tuple(m.removeprefix("[cam] ") for m in told), "still left out, and said so"
    assert _warnings(caplog) == []
    (wide,) = parse_lines([{"name": "wide", "points": [[0, 50], [700, 50]]}])
    analytics, _ = analytics.reshaped((far, near), (edge, wide), _frame(3))
    analytics.update((), (), _frame(3))
    assert _warnings(caplog) == [
        "[cam] lines[1].points: point (700, 50) is outside the 200x200 frame; line 'wide' is left out"
    ]
