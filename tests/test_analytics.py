"""Zones and lines: options in, events and counts out, judged against the scene's exact ground truth.

The accuracy tests run the real worker and tracker on generated scenes the bundled model was not
trained on (tools/train_model.py keeps every seed below 100 out of training and validation); the
fast ones feed it the truth as detections, the slow one the bundled model.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from server.analytics.engine import StreamAnalytics
from server.analytics.events import AnalyticsEvent, AnalyticsEventKind
from server.analytics.geometry import side_of
from server.analytics.shapes import Zone, parse_lines, parse_zones
from server.delivery.annotate import LINE_COLOR, ZONE_COLOR, annotate
from server.frames import Frame, FrameResult, Track, TrackEvent, TrackEventKind
from server.options import StreamOptions
from server.scene import CLASS_NAMES, Scene, TrueObject
from tests.support.detections import TruthModel
from tools.analytics_report import (
    DWELL_TOLERANCE_S,
    FRAMES,
    SEEDS,
    Run,
    TrueCrossing,
    TrueVisit,
    Truth,
    layout,
    run_scene,
    score,
    track_objects,
)

MODEL_RUN_TIMEOUT_S = 480  # 450 frames of the bundled model on a loaded 2-core machine


def run(model: object, seed: int, frames: int = FRAMES) -> Run:
    """``frames`` frames of the scene of ``seed`` through the real worker and tracker, with its truth."""
    before = model.register if isinstance(model, TruthModel) else None
    return run_scene(model, Scene(seed=seed), frames, layout(), before)


@pytest.fixture(scope="module")
def truth_runs() -> dict[int, Run]:
    """One run per seed with the truth as detections, shared by the tests that judge it."""
    return {seed: run(TruthModel(), seed) for seed in SEEDS}


# -- options -------------------------------------------------------------------------------------


def test_zones_and_lines_are_read_from_options_and_shown_back() -> None:
    opts = layout()
    assert [z.name for z in opts.zones] == ["bay", "corner", "strip", "left", "floor", "wedge"]
    assert opts.zones[0].loiter_s == 2 and opts.zones[0].min_share == 0.25
    assert opts.lines[-1].anchor.value == "centre" and opts.lines[0].anchor.value == "bottom"
    again = StreamOptions.from_mapping(opts.to_json())
    assert again == opts


@pytest.mark.parametrize(
    ("zones", "lines", "words"),
    [
        ([{"name": "x", "points": [[0, 0], [10, 10], [10, 0], [0, 10]]}], [], ("zones[0].points", "crosses itself")),
        ([{"name": "x", "points": [[0, 0], [5, 5], [10, 10]]}], [], ("zones[0].points", "degenerate")),
        # Under a square pixel (or a millionth of the frame) a zone can never hold a quarter of any mask.
        (
            [{"name": "x", "points": [[10, 10], [10.5, 10], [10, 10.5]]}],
            [],
            ("zones[0].points", "too small", "0.125 square"),
        ),
        (
            [{"name": "x", "points": [[0, 0], [1e-3, 0], [0, 1e-3]], "units": "fraction"}],
            [],
            ("zones[0].points", "too small", "5e-07 of the frame"),
        ),
        ([{"name": "x", "points": [[0, 0], [1.5, 0], [0, 1]], "units": "fraction"}], [], ("outside the frame",)),
        ([{"name": "x", "points": [[-1, 0], [5, 0], [0, 5]]}], [], ("zones[0].points", "outside the frame")),
        (
            [{"name": "x", "points": [[0, 0], [5, 0], [0, 5]]}, {"name": "x", "points": [[0, 0], [5, 0], [0, 5]]}],
            [],
            ("zones[1].name", "twice"),
        ),
        ([], [{"name": "l", "points": [[0, 0]]}], ("lines[0].points",)),
        ([], [{"name": "l", "points": [[0, 0], [0, 0]]}], ("lines[0].points", "same")),
        # Not the same, but no direction to tell a side by: it divided by zero on the first track.
        ([], [{"name": "l", "points": [[0, 0], [1e-200, 0]]}], ("lines[0].points", "less than a pixel")),
        ([], [{"name": "l", "points": [[0, 0], [1e-4, 0]], "units": "fraction"}], ("lines[0].points", "thousandth")),
        # Infinity is not JSON: accepted, it broke every client's list of streams.
        ([{"name": "x", "points": [[0, 0], [5, 0], [0, 5]], "loiter_s": float("inf")}], [], ("zones[0].loiter_s",)),
        ([{"name": "x", "points": [[0, 0], [5, 0], [0, 5]], "loiter_s": 10**400}], [], ("too large",)),
        ([{"name": "x", "points": [[0, 0], [10**400, 0], [0, 5]]}], [], ("zones[0].points", "too large")),
        ([], [{"name": "l", "points": [[0, 0], [9, 9]], "units": ["px"]}], ("lines[0].units",)),
        ([], [{"name": "l", "points": [[0, 0], [9, 9]], "anchor": "top"}], ("lines[0].anchor",)),
        ([], [{"name": "l", "points": [[0, 0], [9, 9]], "colour": "red"}], ("lines[0].colour", "unknown key")),
        ([{"name": "bad name!", "points": [[0, 0], [5, 0], [0, 5]]}], [], ("zones[0].name",)),
        ([{"name": "x", "points": [[0, 0], [5, 0], [0, 5]], "min_share": 0}], [], ("zones[0].min_share",)),
        ("door", [], ("zones: expected a list", '"door"')),
        ([], [["l", [[0, 0], [9, 9]]]], ("lines: expected a list", "name and points")),
    ],
)
def test_bad_zones_and_lines_name_the_key(zones: object, lines: object, words: tuple[str, ...]) -> None:
    with pytest.raises(ValueError) as caught:
        StreamOptions.from_mapping({"zones": zones, "lines": lines})
    for word in words:
        assert word in str(caught.value)


TRIANGLE = [[0, 0], [5, 0], [0, 5]]


@pytest.mark.parametrize(
    ("zones", "lines", "key", "meant"),
    [
        ([{"name": "x", "points": TRIANGLE, "unit": "fraction"}], [], "zones[0].unit", "units"),
        ([{"name": "x", "points": TRIANGLE, "loiter": 30}], [], "zones[0].loiter", "loiter_s"),
        ([], [{"name": "l", "points": [[0, 0], [9, 9]], "confirm": 1}], "lines[0].confirm", "confirm_s"),
    ],
)
def test_a_slip_of_a_zone_or_line_key_names_the_key_meant(zones: object, lines: object, key: str, meant: str) -> None:
    """The README promises "did you mean" for a close key: a zone's or line's said only "unknown key"."""
    with pytest.raises(ValueError) as caught:
        StreamOptions.from_mapping({"zones": zones, "lines": lines})
    said = str(caught.value)
    assert said.startswith(f"{key}: unknown key; known keys are name, points, units, classes, "), said
    assert said.endswith(f"; did you mean {meant!r}?"), said


def test_a_shape_watching_a_class_the_stream_leaves_out_is_refused() -> None:
    zone = {"name": "bay", "points": [[0, 0], [5, 0], [0, 5]], "classes": ["square"]}
    with pytest.raises(ValueError, match=r"zones\[0\].classes: the stream only detects disc, not 'square'"):
        StreamOptions.from_mapping({"classes": ["disc"], "zones": [zone]})
    watched = StreamOptions.from_mapping({"classes": ["disc", "square"], "zones": [zone]})
    with pytest.raises(ValueError, match=r"zones\[0\].classes"):  # narrowing the stream later, too
        StreamOptions.from_mapping({"classes": ["disc"]}, watched)


def test_a_polygon_closed_with_its_first_corner_again_is_that_polygon() -> None:
    square = [[0, 0], [10, 0], [10, 10], [0, 10]]
    [closed] = parse_zones([{"name": "x", "points": [*square, [0, 0]]}])
    assert closed == parse_zones([{"name": "x", "points": square}])[0]


@pytest.mark.parametrize("doubled", [0, 1, 2, 3])
def test_a_corner_given_twice_in_a_row_is_one_corner(doubled: int) -> None:
    square = [[0, 0], [100, 0], [100, 100], [0, 100]]
    [zone] = parse_zones([{"name": "x", "points": [*square[: doubled + 1], *square[doubled:]]}])
    assert zone.points == ((0, 0), (100, 0), (100, 100), (0, 100))


def test_a_polygon_with_fewer_than_three_distinct_corners_in_a_row_is_refused() -> None:
    with pytest.raises(ValueError, match=r"zones\[0\].points: the polygon is degenerate"):
        parse_zones([{"name": "x", "points": [[0, 0], [0, 0], [100, 0], [100, 0]]}])


def test_a_bad_value_is_quoted_short_in_the_error() -> None:
    with pytest.raises(ValueError) as caught:
        parse_lines([{"name": "l", "points": [[0, 0]] * 10_000}])
    assert len(str(caught.value)) < 200


def test_a_shape_beyond_the_frame_is_left_out_with_a_reason_and_the_rest_still_count() -> None:
    zones = parse_zones(
        [
            {"name": "far", "points": [[0, 0], [900, 0], [0, 100]]},
            {"name": "near", "points": [[0, 0], [100, 0], [100, 100], [0, 100]]},
        ]
    )
    lines = parse_lines([{"name": "wide", "points": [[0, 50], [700, 50]]}])
    analytics = StreamAnalytics("cam", zones, lines)
    frame = Frame("cam", 0, 0.0, 0.0, np.zeros((384, 640, 3), np.uint8))
    tracks, events = analytics.update((_track(None, (10, 10, 50, 50)),), (), frame)
    assert analytics.problems == (
        "zones[0].points: point (900, 0) is outside the 640x384 frame; zone 'far' is left out",
        "lines[0].points: point (700, 50) is outside the 640x384 frame; line 'wide' is left out",
    )
    assert tracks[0].zones == ("near",)
    assert [(e.kind, e.zone) for e in events] == [(AnalyticsEventKind.ZONE_ENTER, "near")]
    assert dict(analytics.counts.zones) == {"near": {"disc": 1}}
    assert dict(analytics.counts.lines) == {}, "a line left out counts nothing, not zero"
    assert analytics.frame_analytics is not None and [name for name, _ in analytics.frame_analytics.zones] == ["near"]
    # The same shapes fit a larger frame (the camera's resolution went up): nothing is left out then.
    analytics.update((), (), Frame("cam", 1, 0.1, 0.1, np.zeros((720, 1280, 3), np.uint8)))
    assert analytics.problems == ()


# -- rules on hand-made tracks -------------------------------------------------------------------


def _track(
    polygon: list[tuple[int, int]] | None,
    box: tuple[float, float, float, float],
    track_id: int = 1,
    class_name: str = "disc",
) -> Track:
    outline = None if polygon is None else np.array(polygon, dtype=np.int32)
    return Track(track_id, CLASS_NAMES.index(class_name), class_name, 0.9, box, outline, ())


def _end(track_id: int = 1, class_name: str = "disc") -> TrackEvent:
    return TrackEvent(
        TrackEventKind.END, "cam", track_id, CLASS_NAMES.index(class_name), class_name, 0.0, 0.0, 0.0, (0, 0, 1, 1)
    )


def _analytics_events(events: tuple[object, ...]) -> list[tuple[str, str | None, str | None, float | None, str]]:
    """Kind, shape, direction, dwell (rounded) and class of each analytics event among ``events``."""
    return [
        (e.kind.value, e.zone or e.line, e.direction, None if e.dwell_s is None else round(e.dwell_s, 3), e.class_name)
        for e in events
        if isinstance(e, AnalyticsEvent)
    ]


def _frame(index: int) -> Frame:
    return Frame("cam", index, 1000.0 + index / 10, index / 10, np.zeros((200, 200, 3), np.uint8))


def test_a_mask_partly_in_a_zone_is_judged_by_its_area_not_its_box_centre() -> None:
    """An L-shaped object: its box centre is in the zone, only a sliver of its mask is (and the reverse)."""
    zone = Zone("bay", ((80.0, 80.0), (200.0, 80.0), (200.0, 200.0), (80.0, 200.0)))
    analytics = StreamAnalytics("cam", (zone,), ())
    # Box 0..120 square, centre (60, 60) outside the zone; the mask is mostly in its lower right.
    mostly_in = [(0, 110), (0, 120), (120, 120), (120, 0), (110, 0), (110, 110)]
    # Box 40..200, centre (120, 120) inside the zone; the mask is an L along the top and left edges.
    sliver = [(40, 40), (200, 40), (200, 60), (60, 60), (60, 200), (40, 200)]
    (in_track,), _ = analytics.update((_track(mostly_in, (0, 0, 120, 120), 1),), (), _frame(0))
    (out_track,), _ = analytics.update((_track(sliver, (40, 40, 200, 200), 2),), (), _frame(1))
    assert in_track.zones == ("bay",), "more than a quarter of the mask is inside, the box centre is not"
    assert out_track.zones == (), "the box centre is inside, a sliver of the mask is"
    (box_only,), _ = StreamAnalytics("cam", (zone,), ()).update((_track(None, (40, 40, 200, 200)),), (), _frame(0))
    assert box_only.zones == ("bay",), "a detection-only model falls back to the box's area"


def test_jitter_on_a_line_counts_one_crossing() -> None:
    line = parse_lines([{"name": "gate", "points": [[0, 100], [200, 100]], "hysteresis": 0.05}])[0]
    analytics = StreamAnalytics("cam", (), (line,))
    # The bottom edge wobbles across y=100, dips back over it for 0.3 s (a nearer object hiding it), goes on.
    ys = [60, 80, 95, 103, 97, 104, 96, 102, 98, 105, 130, 150, 160, 70, 70, 70, 160, 170, 180, 190, 190, 190, 190]
    crossings = []
    for index, y in enumerate(ys):
        box = (90.0, y - 20.0, 110.0, float(y))
        _, events = analytics.update((_track(None, box),), (), _frame(index))
        crossings += [e for e in events if isinstance(e, AnalyticsEvent)]
    assert [(e.kind, e.line, e.direction) for e in crossings] == [(AnalyticsEventKind.LINE_CROSS, "gate", "in")]
    assert crossings[0].media_time == pytest.approx(1.6), "dated when first seen across for good"
    assert analytics.counts.lines == {"gate": {"disc": {"in": 1, "out": 0}}}


def test_the_classes_a_shape_watches_are_counted_from_zero_before_any_is_seen() -> None:
    """So that Prometheus sees each counter start at 0: one first exported at 1 loses that crossing
    to rate() and increase(). A shape that watches every class lists each once it has been seen."""
    line, every_class = parse_lines(
        [
            {"name": "gate", "points": [[0, 100], [200, 100]], "classes": ["disc", "square"]},
            {"name": "any", "points": [[0, 150], [200, 150]]},
        ]
    )
    zone, open_zone = parse_zones(
        [
            {"name": "bay", "points": [[0, 0], [200, 0], [200, 200], [0, 200]], "classes": ["square"]},
            {"name": "yard", "points": [[0, 0], [200, 0], [200, 200], [0, 200]]},
        ]
    )
    analytics = StreamAnalytics("cam", (zone, open_zone), (line, every_class))
    analytics.update((), (), _frame(0))
    assert analytics.counts.lines == {
        "gate": {"disc": {"in": 0, "out": 0}, "square": {"in": 0, "out": 0}},
        "any": {},
    }
    assert analytics.counts.zones == {"bay": {"square": 0}, "yard": {}}


def test_a_stay_across_the_line_interrupted_by_the_dead_band_starts_again() -> None:
    """seed 23's early count: a nearer object hides a track's lower part for a moment, its bottom edge
    pops over the line, then sits in the dead band until the object really crosses much later."""
    line = parse_lines([{"name": "gate", "points": [[0, 100], [200, 100]], "hysteresis": 0.05}])[0]
    analytics = StreamAnalytics("cam", (), (line,))
    ys = [60, 80, 120, 105, 104, 106, 105, 104, 106, 105, 130, 140, 150, 160, 170, 180, 190]
    crossings = []
    for index, y in enumerate(ys):
        _, events = analytics.update((_track(None, (90.0, y - 20.0, 110.0, float(y))),), (), _frame(index))
        crossings += [(index, e) for e in events if isinstance(e, AnalyticsEvent)]
    [(reported_at, crossing)] = crossings
    assert crossing.media_time == pytest.approx(1.0), "dated from the stay that lasted, not the moment at 0.2 s"
    assert reported_at == 15, "counted once it had stayed across confirm_s (0.5 s) without a break"


def test_dwell_loiter_and_exit_on_track_end_use_media_time() -> None:
    zone = parse_zones([{"name": "bay", "points": [[0, 0], [200, 0], [200, 200], [0, 200]], "loiter_s": 0.25}])[0]
    analytics = StreamAnalytics("cam", (zone,), ())
    kinds = []
    for index in range(5):
        _, events = analytics.update((_track(None, (10, 10, 50, 50)),), (), _frame(index))
        kinds += [(e.kind, round(e.dwell_s or 0, 3)) for e in events if isinstance(e, AnalyticsEvent)]
    end = TrackEvent(TrackEventKind.END, "cam", 1, 0, "disc", 0.0, 0.0, 0.4, (10, 10, 50, 50))
    _, events = analytics.update((), (end,), _frame(20))
    assert isinstance(events[0], AnalyticsEvent) and events[-1] is end, "the exit comes before the track's end"
    kinds += [(events[0].kind, round(events[0].dwell_s or 0, 3))]
    assert kinds == [
        (AnalyticsEventKind.ZONE_ENTER, 0.0),
        (AnalyticsEventKind.LOITER, 0.3),
        (AnalyticsEventKind.ZONE_EXIT, 0.4),  # last seen inside at frame 4, not when the tracker gave up
    ]
    assert analytics.counts.dwell["bay"].count == 1 and analytics.counts.zones == {"bay": {"disc": 0}}


def test_new_shapes_keep_the_state_of_those_that_did_not_change() -> None:
    square = [[0, 0], [200, 0], [200, 200], [0, 200]]
    kept, moved = parse_zones([{"name": "kept", "points": square}, {"name": "moved", "points": square}])
    gate, gone = parse_lines(
        [{"name": "gate", "points": [[0, 100], [200, 100]]}, {"name": "gone", "points": [[100, 0], [100, 200]]}]
    )
    analytics = StreamAnalytics("cam", (kept, moved), (gate, gone))
    for index, y in enumerate([60, 80, 130, 150, 160, 170, 180, 190, 190]):  # into both zones, down over the gate
        analytics.update((_track(None, (90.0, y - 20.0, 110.0, float(y))),), (), _frame(index))
    assert analytics.counts.lines["gate"] == {"disc": {"in": 1, "out": 0}}
    moved_away = parse_zones([{"name": "moved", "points": [[150, 0], [200, 0], [200, 40], [150, 40]]}])[0]
    fresh, exits = analytics.reshaped((kept, moved_away), (gate,), _frame(9))
    assert [(e.kind, e.zone, e.dwell_s) for e in exits] == [(AnalyticsEventKind.ZONE_EXIT, "moved", pytest.approx(0.8))]
    # The next frame: no second entry into the unchanged zone, whose visit and gate count go on.
    _, events = fresh.update((_track(None, (90.0, 170.0, 110.0, 190.0)),), (), _frame(10))
    assert [e for e in events if isinstance(e, AnalyticsEvent)] == []
    assert fresh.counts.zones == {"kept": {"disc": 1}, "moved": {}}
    assert dict(fresh.counts.lines) == {"gate": {"disc": {"in": 1, "out": 0}}}
    end = TrackEvent(TrackEventKind.END, "cam", 1, 0, "disc", 0.0, 0.0, 1.0, (90, 170, 110, 190))
    _, events = fresh.update((), (end,), _frame(11))
    exit_ = events[0]
    assert isinstance(exit_, AnalyticsEvent) and exit_.zone == "kept"
    assert exit_.dwell_s == pytest.approx(1.0), "the visit from before the change, not from it"


SQUARE = [[0, 0], [200, 0], [200, 200], [0, 200]]


def test_a_zone_tuned_in_place_keeps_its_visit_and_judges_the_next_frame_by_its_new_settings() -> None:
    """Lowering a zone's loiter_s in the viewer must not end and restart the visits it is meant to judge."""
    bay = parse_zones([{"name": "bay", "points": SQUARE, "loiter_s": 5}])[0]
    analytics = StreamAnalytics("cam", (bay,), ())
    seen = []
    for index in range(5):
        _, events = analytics.update((_track(None, (10, 10, 50, 50)),), (), _frame(index))
        seen += _analytics_events(events)
    tuned = parse_zones(
        [{"name": "bay", "points": SQUARE, "loiter_s": 0.2, "min_share": 0.5, "classes": ["disc", "square"]}]
    )[0]
    assert analytics.counts_for((tuned,), ()) is analytics.counts, "its counts are not an old shape's"
    fresh, exits = analytics.reshaped((tuned,), (), _frame(5))
    assert exits == ()
    for index in (5, 6):
        _, events = fresh.update((_track(None, (10, 10, 50, 50)),), (), _frame(index))
        seen += _analytics_events(events)
    assert fresh.counts.zones == {"bay": {"disc": 1, "square": 0}}, "a class it now counts is listed at 0"
    _, events = fresh.update((), (_end(),), _frame(7))
    seen += _analytics_events(events)
    assert seen == [
        ("zone_enter", "bay", None, None, "disc"),
        ("loiter", "bay", None, 0.5, "disc"),  # one loiter, on the first frame judged by the new loiter_s
        ("zone_exit", "bay", None, 0.6, "disc"),  # the whole visit, from before the change
    ]
    assert fresh.counts.dwell["bay"].count == 1


def test_a_zone_tuned_to_other_classes_ends_the_visits_it_no_longer_counts_on_the_next_frame() -> None:
    bay = parse_zones([{"name": "bay", "points": SQUARE}])[0]
    analytics = StreamAnalytics("cam", (bay,), ())
    for index in range(5):
        analytics.update((_track(None, (10, 10, 50, 50)),), (), _frame(index))
    squares_only = parse_zones([{"name": "bay", "points": SQUARE, "classes": ["square"]}])[0]
    fresh, exits = analytics.reshaped((squares_only,), (), _frame(5))
    assert exits == ()
    _, events = fresh.update((_track(None, (10, 10, 50, 50)),), (), _frame(5))
    assert _analytics_events(events) == [("zone_exit", "bay", None, 0.4, "disc")]
    assert fresh.counts.zones == {"bay": {"disc": 0, "square": 0}}


@pytest.mark.parametrize(
    ("tuning", "after"),
    [
        # Counted under the new confirm_s (0.3 s across), not the old 0.5 s (frame 14); a new class listed at 0.
        (
            {"confirm_s": 0.25, "hysteresis": 0.03, "classes": ["disc", "square"]},
            [("line_cross", "gate", "out", None, "disc")],
        ),
        # Another point of the track: its side starts afresh, the crossing in progress is not counted.
        ({"anchor": "centre"}, []),
    ],
)
def test_a_line_tuned_in_place_keeps_its_counts(tuning: dict[str, object], after: list[object]) -> None:
    gate = parse_lines([{"name": "gate", "points": [[0, 100], [200, 100]]}])[0]
    analytics = StreamAnalytics("cam", (), (gate,))
    # Down over the gate, then back up: 0.1 s across when the line is tuned.
    for index, y in enumerate([60, 80, 130, 150, 160, 170, 180, 190, 190, 80, 70]):
        analytics.update((_track(None, (90.0, y - 20.0, 110.0, float(y))),), (), _frame(index))
    tuned = parse_lines([{"name": "gate", "points": [[0, 100], [200, 100]], **tuning}])[0]
    fresh, _ = analytics.reshaped((), (tuned,), _frame(11))
    seen = []
    for index in range(11, 20):
        _, events = fresh.update((_track(None, (90.0, 50.0, 110.0, 70.0)),), (), _frame(index))
        seen += [(index, *event) for event in _analytics_events(events)]
    assert seen == [(12, *event) for event in after]
    counted = {"in": 1, "out": len(after)}
    expected = {"disc": counted} | ({"square": {"in": 0, "out": 0}} if "classes" in tuning else {})
    assert dict(fresh.counts.lines) == {"gate": expected}


def test_a_track_whose_class_changes_to_one_a_zone_does_not_count_leaves_it_then() -> None:
    """The tracker's class vote can change a track's class: a gauge that drops needs its zone_exit."""
    whole = [[0, 0], [200, 0], [200, 200], [0, 200]]
    zone = parse_zones([{"name": "bay", "points": whole, "classes": ["disc"]}])[0]
    analytics = StreamAnalytics("cam", (zone,), ())
    seen = []
    for index in range(5):
        _, events = analytics.update((_track(None, (10, 10, 50, 50)),), (), _frame(index))
        seen += _analytics_events(events)
    _, events = analytics.update((_track(None, (10, 10, 50, 50), class_name="square"),), (), _frame(5))
    seen += _analytics_events(events)
    assert seen == [
        ("zone_enter", "bay", None, None, "disc"),
        ("zone_exit", "bay", None, 0.4, "disc"),  # dwell up to the last frame it was a disc inside
    ]
    assert analytics.counts.zones == {"bay": {"disc": 0}}
    _, events = analytics.update((), (_end(class_name="square"),), _frame(6))
    assert _analytics_events(events) == [], "it left once; its end makes no second exit"


def test_a_line_drops_a_pending_crossing_of_a_track_whose_class_it_no_longer_counts() -> None:
    gate = parse_lines([{"name": "gate", "points": [[0, 100], [200, 100]], "classes": ["disc"]}])[0]
    analytics = StreamAnalytics("cam", (), (gate,))
    # Down over the gate, 0.3 s across: over half its confirm_s, so kept it would count when the track ends.
    for index, y in enumerate([60, 70, 80, 130, 135, 140, 140]):
        analytics.update((_track(None, (90.0, y - 20.0, 110.0, float(y))),), (), _frame(index))
    _, events = analytics.update((_track(None, (90.0, 125.0, 110.0, 145.0), class_name="square"),), (), _frame(7))
    assert _analytics_events(events) == []
    _, events = analytics.update((), (_end(class_name="square"),), _frame(60))
    assert _analytics_events(events) == []
    assert analytics.counts.lines == {"gate": {"disc": {"in": 0, "out": 0}}}, "no square counted on a disc line"


def test_what_a_track_ends_in_is_counted_under_the_class_it_was_last_seen_as() -> None:
    """The end event carries the tracker's final class, which may have changed while the track was lost."""
    zone = parse_zones([{"name": "bay", "points": [[0, 0], [200, 0], [200, 200], [0, 200]]}])[0]
    gate = parse_lines([{"name": "gate", "points": [[0, 100], [200, 100]]}])[0]
    analytics = StreamAnalytics("cam", (zone,), (gate,))
    for index, y in enumerate([60, 70, 80, 130, 135, 140, 145]):  # down over the gate, 0.3 s across
        analytics.update((_track(None, (90.0, y - 20.0, 110.0, float(y))),), (), _frame(index))
    _, events = analytics.update((), (_end(class_name="square"),), _frame(60))
    assert _analytics_events(events) == [
        ("zone_exit", "bay", None, 0.6, "disc"),
        ("line_cross", "gate", "in", None, "disc"),
    ]
    assert analytics.counts.lines == {"gate": {"disc": {"in": 1, "out": 0}}}


STANDING = [(90, 110, 110, 150)] * 20  # below the line for 2 s, feet at y = 150
GATE = {"name": "gate", "points": [[0, 100], [200, 100]]}  # its dead band is 4 px on a 200 x 200 frame
NEAR_THE_TOP = {**GATE, "points": [[0, 20], [200, 20]]}
NO_BAND = {**GATE, "hysteresis": 0}


@pytest.mark.parametrize(
    ("line", "boxes", "counted"),
    [
        # One frame over the line (a nearer object hid its lower part), then hidden.
        (GATE, [*STANDING, (90, 60, 110, 90)], False),
        # Across from 2.0 s to 2.3 s: over half of confirm_s (0.5 s).
        (GATE, STANDING + [(90, 60, 110, 90)] * 4, True),
        # The same one-frame dip, of a tall object whose head the frame's top edge cuts off, on a line
        # without a dead band: its point did not move towards the edge it touches, nor could it in one frame.
        (NO_BAND, [(90, 0, 110, 150)] * 20 + [(90, 0, 110, 90)], False),
        # Across for 0.1 s and last seen reaching the top edge, moving up to it by far more than the
        # band: it left the picture across the line.
        (GATE, [*STANDING, (90, 40, 110, 90), (90, 0, 110, 50)], True),
        # A tall person whose head the top edge cuts off all along walks up and out of the picture
        # across a line near the top, seen across for 0.1 s: it left, though it touched that edge before.
        (NEAR_THE_TOP, [(90, 0, 110, y) for y in (50, 40, 30, 20, 10, 3)], True),
        # Last seen reaching both side edges (merged with its neighbours, say), its point moving towards
        # neither, or 0.5 px towards one: jitter, no way out of the picture.
        (GATE, [*STANDING, (90, 60, 110, 90), (0, 60, 200, 90)], False),
        (GATE, [*STANDING, (90, 60, 110, 90), (0, 60, 201, 90)], False),
        # Hidden below for two frames, its head 3 px from the top edge and then touching it, its point
        # 0.5 px nearer: jitter again.
        (GATE, [(90, 3, 110, 150)] * 20 + [(90, 3, 110, 90), (90, 2, 110, 89.5)], False),
        # The same on a line without a dead band, its point not moving at all: still no way out.
        (NO_BAND, [(90, 0, 110, 150)] * 20 + [(90, 0, 110, 90)] * 2, False),
        # Hidden below for two frames, its head cut off by the top edge, its visible bottom 10 px
        # nearer it: boxes alone cannot tell that from walking out (docs/analytics.md), so it counts.
        (GATE, [(90, 0, 110, 150)] * 20 + [(90, 0, 110, 90), (90, 0, 110, 80)], True),
    ],
)
def test_a_track_that_ends_while_across_counts_only_a_crossing_that_held_or_left_the_picture(
    line: dict[str, object], boxes: list[tuple[float, float, float, float]], counted: bool
) -> None:
    gate = parse_lines([line])[0]
    analytics = StreamAnalytics("cam", (), (gate,))
    for index, box in enumerate(boxes):
        analytics.update((_track(None, box),), (), _frame(index))
    _, events = analytics.update((), (_end(),), _frame(70))
    assert _analytics_events(events) == ([("line_cross", "gate", "out", None, "disc")] if counted else [])
    assert analytics.counts.lines == {"gate": {"disc": {"in": 0, "out": 1}} if counted else {}}


def test_beyond_the_tip_of_a_sharp_bend_a_point_is_outside_the_wedge() -> None:
    """At a corner both segments share, the side is the corner's bisector's: either segment's own is
    wrong beyond the tip of a bend under 90 degrees, and a crossing out of the wedge went uncounted."""
    points = ((20.0, 100.0), (180.0, 100.0), (20.0, 180.0))  # a '<' with its tip at (180, 100)
    assert side_of((100, 107), points)[0] == 1, "inside the wedge: right of the way first -> last point"
    for beyond in [(185, 107), (195, 107), (185, 93), (200, 100)]:
        assert side_of(beyond, points)[0] == -1, beyond
    line = parse_lines([{"name": "gate", "points": [list(p) for p in points], "hysteresis": 0.01}])[0]
    analytics = StreamAnalytics("cam", (), (line,))
    crossings = []
    xs = [*range(100, 200, 8), *[200] * 10]  # along y = 107 out of the wedge, past its tip, and stays
    for index, x in enumerate(xs):
        _, events = analytics.update((_track(None, (x - 5.0, 80.0, x + 5.0, 107.0)),), (), _frame(index))
        crossings += _analytics_events(events)
    assert crossings == [("line_cross", "gate", "out", None, "disc")]


def test_a_track_wholly_outside_the_frame_is_in_no_zone() -> None:
    zone = parse_zones([{"name": "bay", "points": [[0, 0], [200, 0], [200, 200], [0, 200]]}])[0]
    analytics = StreamAnalytics("cam", (zone,), ())
    below = [(10, 300), (50, 300), (50, 340), (10, 340)]  # an empty crop of the frame's width, which cv2 refuses
    (track,), events = analytics.update((_track(below, (10, 300, 50, 340)),), (), _frame(0))
    assert track.zones == () and _analytics_events(events) == []


def _vga(index: int) -> Frame:
    return Frame("cam", index, 1000.0 + index / 10, index / 10, np.zeros((480, 640, 3), np.uint8))


def _walk_down(analytics: StreamAnalytics, frames: int = 30) -> list[tuple[str, str | None, str | None]]:
    """A track walking down a 640x480 frame and off its bottom edge: its analytics events."""
    events: list[AnalyticsEvent] = []
    for index in range(frames):
        bottom = min(480.0, 300.0 + 12 * index)
        _, made = analytics.update((_track(None, (300.0, bottom - 100, 340.0, bottom)),), (), _vga(index))
        events += [e for e in made if isinstance(e, AnalyticsEvent)]
    return [(e.kind.value, e.line, e.direction) for e in events]


def test_a_line_within_its_dead_band_of_the_frames_edge_is_said_to_never_count_and_stays_listed() -> None:
    """A line drawn along the bottom to count people leaving: their bottom centre can never get more
    than 5 px below it, inside its 9.6 px dead band, so it counts nothing, in or out."""
    exit_line, door = parse_lines(
        [{"name": "exit", "points": [[0, 475], [640, 475]]}, {"name": "door", "points": [[0, 400], [640, 400]]}]
    )
    analytics = StreamAnalytics("cam", (), (exit_line, door))
    assert _walk_down(analytics) == [("line_cross", "door", "in")]
    assert analytics.problems == (
        "lines[0]: line 'exit' lies within its dead band (9.6 px) of the 640x480 frame's bottom edge: nothing gets"
        " beyond the band on that side, so it can never count a crossing, in or out (each needs both sides);"
        " move it further in or lower its hysteresis",
    )
    assert analytics.counts.lines == {"exit": {}, "door": {"disc": {"in": 1, "out": 0}}}, "listed, not left out"
    # With a band of a pixel it has room: lowered, its hysteresis lets it count, and the warning goes.
    tuned = StreamAnalytics("cam", (), (replace(exit_line, hysteresis=0.002),))
    assert _walk_down(tuned) == [("line_cross", "exit", "in")] and tuned.problems == ()


@pytest.mark.parametrize(("y", "warned"), [(470.3, False), (470.5, True)])
def test_a_line_is_said_to_never_count_exactly_when_no_point_of_the_frame_is_beyond_its_band(
    y: float, warned: bool
) -> None:
    """9.6 px above the edge is the last place a line along the bottom of a 640x480 frame counts."""
    line = parse_lines([{"name": "exit", "points": [[0, y], [640, y]]}])[0]
    analytics = StreamAnalytics("cam", (), (line,))
    crossings = _walk_down(analytics)
    assert bool(analytics.problems) is warned
    assert crossings == ([] if warned else [("line_cross", "exit", "in")])


@pytest.mark.parametrize(
    "points",
    [
        [[0, 240], [640, 240]],  # across the middle
        [[320, 480], [320, 200]],  # from the bottom edge inwards
        [[0, 0], [640, 480]],  # corner to corner
        [[100, 300], [320, 478], [540, 300]],  # bent down to the edge
        [[0, 200], [200, 300], [400, 200], [640, 300]],  # a zigzag
    ],
)
def test_an_ordinary_line_is_not_said_to_never_count(points: list[list[int]]) -> None:
    line = parse_lines([{"name": "l", "points": points}])[0]
    analytics = StreamAnalytics("cam", (), (line,))
    analytics.update((), (), _vga(0))
    assert analytics.problems == ()


@pytest.mark.parametrize(
    ("points", "edges"),
    [
        ([[640, 3], [0, 3]], "top edge"),
        ([[630, 480], [640, 470]], "right and bottom edges"),  # across the corner
        ([[0, 475], [320, 472], [640, 476]], "bottom edge"),  # bent
        # Along part of the edge: room round its ends, where a track crosses nothing, is no room.
        ([[0, 479], [300, 479]], "bottom edge"),
    ],
)
def test_a_line_that_never_counts_is_said_to_lie_along_the_edges_it_faces(points: list[list[int]], edges: str) -> None:
    line = parse_lines([{"name": "l", "points": points}])[0]
    analytics = StreamAnalytics("cam", (), (line,))
    analytics.update((), (), _vga(0))
    [problem] = analytics.problems
    assert f"of the 640x480 frame's {edges}: " in problem


def test_a_zone_in_fractions_that_covers_under_a_pixel_of_the_frame_is_left_out() -> None:
    """2e-6 of the frame passes the option's check (a millionth), but is 0.6 px of a 640x480 frame."""
    speck = parse_zones([{"name": "speck", "points": [[0, 0], [0.002, 0], [0, 0.002]], "units": "fraction"}])[0]
    analytics = StreamAnalytics("cam", (speck,), ())
    analytics.update((_track(None, (0, 0, 2, 2)),), (), _vga(0))
    assert analytics.problems == (
        "zones[0].points: the polygon covers 0.614 square pixels of the 640x480 frame, under 1;"
        " zone 'speck' is left out",
    )
    assert dict(analytics.counts.zones) == {}
    analytics.update((), (), Frame("cam", 1, 0.1, 0.1, np.zeros((1080, 1920, 3), np.uint8)))
    assert analytics.problems == () and dict(analytics.counts.zones) == {"speck": {}}, "4 px of a 1920x1080 frame"


def test_a_zone_of_one_square_pixel_is_accepted() -> None:
    [zone] = parse_zones([{"name": "x", "points": [[10, 10], [11, 10], [11, 11], [10, 11]]}])
    assert zone.points == ((10, 10), (11, 10), (11, 11), (10, 11))


# -- ground truth ------------------------------------------------------------------------------


def totals(name: str, runs: list[Run]) -> tuple[int, int, int, int, int]:
    """True crossings, found, extra; scored visits, within tolerance; over ``runs``, each printed."""
    scores = [r.score() for r in runs]
    for r, result in zip(runs, scores, strict=True):
        print(f"{name}, seed {r.scene.seed}: {result.line()}")
    true = sum(s.true_crossings for s in scores)
    visits = sum(s.scored_visits for s in scores)
    assert true >= 30 * len(runs) and visits >= 15 * len(runs), "the scenes must exercise the rules"
    found = sum(s.found_crossings for s in scores)
    extra = sum(s.extra_crossings for s in scores)
    return true, found, extra, visits, sum(s.visits_within for s in scores)


def test_truth_detections_meet_the_accuracy_bar(truth_runs: dict[int, Run]) -> None:
    """The issue's bar: >= 98 % of true crossings in the right direction, no double counts; dwell within
    0.5 s for >= 95 % of visits. With a perfect detector, whatever misses it is the tracker's or ours."""
    true, found, extra, visits, within = totals("truth detections", list(truth_runs.values()))
    assert extra == 0
    assert found >= 0.98 * true
    assert within >= 0.95 * visits


@pytest.mark.slow
@pytest.mark.timeout(MODEL_RUN_TIMEOUT_S)
def test_bundled_model_on_an_unseen_scene_stays_at_its_measured_accuracy() -> None:
    """One 30 s scene through the bundled model; docs/analytics.md quotes all three seeds.

    The model does not meet the issue's whole bar here (docs/analytics.md: one wrong count, on the
    edge of the rule); this guards what it reaches, so a change for the worse shows. Measured: 32 of
    32 crossings, 1 wrong, 20 of 20 dwell times (34 of 34 while the scoring still counted two true
    crossings too near the run's end to be confirmed); 2 fewer found while tracks on detections
    under the stream's conf went unreported (two crossings of a half-hidden object, at frame 395).
    """
    from server.inference.models import load_model

    true, found, extra, visits, within = totals("bundled model", [run(load_model("bundled"), SEEDS[0])])
    assert found >= 0.95 * true
    assert extra <= 2
    assert within >= 0.9 * visits


@pytest.mark.slow
@pytest.mark.timeout(MODEL_RUN_TIMEOUT_S)
def test_bundled_model_counts_right_where_one_object_passes_behind_another() -> None:
    """Seed 11 (never seen in training): an object passes behind another, and meanwhile the model
    gives one box over both besides the nearer one's own. A track started on that box took the
    hidden object's id when it came out, cutting its visits in two and counting a crossing on the
    wrong track (50 of 51 crossings, 1 wrong, 22 of 26 dwell times); segtrack starts none on such a
    box, and the scene meets the issue's bar for crossings (measured: 50 of 50, none wrong, 24 of 26;
    51 of 51 while the scoring counted one true crossing too near the run's end to be confirmed).
    """
    from server.inference.models import load_model

    true, found, extra, visits, within = totals("bundled model", [run(load_model("bundled"), 11)])
    assert found >= 0.98 * true
    assert extra == 0
    assert within >= 0.9 * visits


def test_the_scenes_hold_objects_the_box_centre_rule_gets_wrong_and_the_mask_rule_right(
    truth_runs: dict[int, Run],
) -> None:
    """Object-frames where the box centre and the mask share disagree about a zone: segcast must follow the mask."""
    disagreements = right = 0
    for seed_run in truth_runs.values():
        disagreements, right = _against_box_centre(seed_run, disagreements, right)
    print(f"box centre wrong on {disagreements} object-frames; segcast right on {right}")
    assert disagreements >= 50
    assert right >= 0.95 * disagreements


def _against_box_centre(seed_run: Run, disagreements: int, right: int) -> tuple[int, int]:
    owners = track_objects(seed_run.objects, seed_run.results)
    truth, results = seed_run.truth, seed_run.results
    for result in results:
        for track in result.tracks:
            owner = owners.get((result.frame.seq, track.track_id))
            if owner is None:
                continue
            by_mask, by_centre = truth.inside[(result.frame.seq, owner)]
            if by_mask != by_centre:
                disagreements += 1
                right += frozenset(track.zones) == by_mask
    return disagreements, right


@pytest.mark.parametrize(("followed", "credited"), [(1, True), (2, False)])
def test_a_visit_is_credited_to_the_object_its_track_followed_most(followed: int, credited: bool) -> None:
    """The report's scoring: a visit whose entry frame has a box matching no object (merged with a
    neighbour's) still counts for the object its track followed after; one that followed another
    object does not."""
    scene = Scene(seed=7)  # only its frame rate is read
    here, there = (10, 10, 50, 50), (100, 10, 140, 50)
    mask = np.zeros((1, 1), bool)
    objects = [[TrueObject(1, 0, here, mask, 0.0), TrueObject(2, 0, there, mask, 0.0)] for _ in range(12)]
    truth = Truth(visits=[TrueVisit(1, "bay", 0, 9)])
    results = []
    for index in range(12):
        frame = Frame("scene", index, 1000.0 + index / scene.fps, index / scene.fps, np.zeros((1, 1, 3), np.uint8))
        box = (10.0, 10.0, 140.0, 50.0) if index == 0 else (here if followed == 1 else there)
        tracks = (Track(5, 0, "disc", 0.9, tuple(map(float, box)), None, (), zones=("bay",)),) if index < 10 else ()
        kind = {0: AnalyticsEventKind.ZONE_ENTER, 10: AnalyticsEventKind.ZONE_EXIT}.get(index)
        dwell = 9 / scene.fps if index == 10 else None
        events = (
            (AnalyticsEvent(kind, "scene", 5, 0, "disc", 0.0, frame.media_time, "bay", dwell_s=dwell),) if kind else ()
        )
        results.append(FrameResult(frame, tracks, 0.0, events))
    result = score(scene, objects, results, truth, DWELL_TOLERANCE_S)
    assert result.scored_visits == 1
    assert result.visits_within == int(credited)


@pytest.mark.parametrize(("followed", "credited"), [(1, True), (2, False)])
def test_a_crossing_dated_on_a_merged_box_is_credited_to_the_object_its_track_followed(
    followed: int, credited: bool
) -> None:
    """The report's scoring: a crossing dated in a frame where its track's box matches no object (merged
    with a neighbour's) counts for the object the track followed around it; one whose track followed
    another object there is an extra count and the true crossing a miss."""
    scene = Scene(seed=7)  # only its frame rate is read
    here, there, merged = (10, 10, 50, 50), (100, 10, 140, 50), (10.0, 10.0, 140.0, 50.0)
    mask = np.zeros((1, 1), bool)
    objects = [[TrueObject(1, 0, here, mask, 0.0), TrueObject(2, 0, there, mask, 0.0)] for _ in range(24)]
    truth = Truth(crossings=[TrueCrossing(1, "gate", "in", 6, 14)])
    boxes = [merged if index == 6 else (here if followed == 1 else there) for index in range(24)]
    result = score(scene, objects, _one_track_crossing(scene, boxes, 6), truth, DWELL_TOLERANCE_S)
    assert result.true_crossings == 1
    assert (result.found_crossings, result.extra_crossings) == ((1, 0) if credited else (0, 1))


@pytest.mark.parametrize(("unseen", "credited"), [(True, True), (False, False)])
def test_a_crossing_made_while_its_track_was_unseen_matches_when_it_is_seen_across(
    unseen: bool, credited: bool
) -> None:
    """The report's scoring: an object that crossed at frame 5 while its track was unseen (frames 3 to
    19) is counted, and dated, when it is seen across at frame 20; that count is the crossing. A track
    seen all along that counts at frame 20 counted something else."""
    scene = Scene(seed=7)  # only its frame rate is read
    here = (10, 10, 50, 50)
    mask = np.zeros((1, 1), bool)
    objects = [[TrueObject(1, 0, here, mask, 0.0)] for _ in range(40)]
    truth = Truth(crossings=[TrueCrossing(1, "gate", "in", 5, 13)])
    boxes = [None if unseen and 3 <= index < 20 else here for index in range(40)]
    result = score(scene, objects, _one_track_crossing(scene, boxes, 20), truth, DWELL_TOLERANCE_S)
    assert result.true_crossings == 1
    assert (result.found_crossings, result.extra_crossings) == ((1, 0) if credited else (0, 1))


@pytest.mark.parametrize(("counted", "scored"), [(11, True), (12, False)])
def test_a_crossing_too_late_to_be_confirmed_in_the_run_is_not_scored(counted: int, scored: bool) -> None:
    """The report's scoring: a true crossing is scored only if a count dated as late as the slack
    allows (8 frames after it) would have been confirmed before the run's last frame (19), taking as
    long to confirm as the truth's did. Begun at frame 10 and counted at 12, a count dated 18 would
    come at frame 20, which the run never reaches, so the crossing is left out of the score."""
    scene = Scene(seed=7)  # only its frame rate is read
    here = (10, 10, 50, 50)
    mask = np.zeros((1, 1), bool)
    objects = [[TrueObject(1, 0, here, mask, 0.0)] for _ in range(20)]
    truth = Truth(crossings=[TrueCrossing(1, "gate", "in", 10, counted)])
    result = score(scene, objects, _one_track_crossing(scene, [here] * 20, 10), truth, DWELL_TOLERANCE_S)
    assert result.true_crossings == int(scored)
    assert result.found_crossings == int(scored)


@pytest.mark.parametrize(("reported", "extra"), [(11, 1), (12, 0)])
def test_a_count_too_late_for_its_true_crossing_to_be_confirmed_in_the_run_is_not_extra(
    reported: int, extra: int
) -> None:
    """The report's scoring, the same rule the other way: a count matching no true crossing is extra
    only if a true one dated as late as the slack allows (8 frames after it), taking as long to confirm
    as the count did, would have been counted before the run's last frame (19). One made at frame 12
    could be of a crossing the truth would count at frame 20, which the run never reaches, so it is
    left out rather than called wrong."""
    scene = Scene(seed=7)  # only its frame rate is read
    here = (10, 10, 50, 50)
    mask = np.zeros((1, 1), bool)
    objects = [[TrueObject(1, 0, here, mask, 0.0)] for _ in range(20)]
    result = score(scene, objects, _one_track_crossing(scene, [here] * 20, reported), Truth(), DWELL_TOLERANCE_S)
    assert (result.true_crossings, result.extra_crossings) == (0, extra)


def _one_track_crossing(
    scene: Scene, boxes: list[tuple[float, float, float, float] | None], dated: int
) -> list[FrameResult]:
    """Frames with one track (id 5) at ``boxes`` (None: unseen there) that counts crossing "gate" at ``dated``."""
    results = []
    for index, box in enumerate(boxes):
        frame = Frame("scene", index, 1000.0 + index / scene.fps, index / scene.fps, np.zeros((1, 1, 3), np.uint8))
        tracks = (Track(5, 0, "disc", 0.9, tuple(map(float, box)), None, ()),) if box is not None else ()
        crossing = AnalyticsEvent(
            AnalyticsEventKind.LINE_CROSS, "scene", 5, 0, "disc", 0.0, frame.media_time, line="gate", direction="in"
        )
        results.append(FrameResult(frame, tracks, 0.0, (crossing,) if index == dated else ()))
    return results


# -- drawing -------------------------------------------------------------------------------------


def test_the_annotated_image_draws_zones_lines_and_their_counts() -> None:
    zone = parse_zones([{"name": "bay", "points": [[40, 40], [160, 40], [160, 160], [40, 160]]}])[0]
    line = parse_lines([{"name": "gate", "points": [[0, 180], [200, 180]], "hysteresis": 0.01, "confirm_s": 0}])[0]
    analytics = StreamAnalytics("cam", (zone,), (line,))
    blank = np.zeros((200, 200, 3), np.uint8)
    analytics.update((), (), _frame(0))
    assert analytics.frame_analytics is not None
    empty = annotate(blank, (), analytics=analytics.frame_analytics)
    assert _near(empty, (100, 40), ZONE_COLOR) and _near(empty, (180, 100), LINE_COLOR)
    assert not annotate(blank, ()).any(), "no analytics, nothing drawn"
    for index, y in enumerate((60, 150, 195)):  # into the zone, then over the line
        analytics.update((_track(None, (80, y - 20, 120, y)),), (), _frame(index + 1))
    assert analytics.counts.lines["gate"] == {"disc": {"in": 1, "out": 0}}
    counted = annotate(blank, (), analytics=analytics.frame_analytics)
    changed = np.flatnonzero((counted != empty).any(axis=2).any(axis=0))
    assert len(changed) > 0, "the labels show the new counts"


def _near(image: np.ndarray, where: tuple[int, int], color: tuple[int, int, int]) -> bool:
    """Whether a pixel within 2 px of ``where`` (row, column) has about ``color`` (lines are antialiased)."""
    y, x = where
    patch = image[y - 2 : y + 3, x - 2 : x + 3].astype(int)
    return bool((np.abs(patch - np.array(color)).max(axis=2) <= 40).any())


def test_a_frame_whose_analytics_fail_partway_changes_nothing_here_or_in_those_it_was_reshaped_from(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`update` is all or nothing: a crossing counted before a later step of the frame failed is not
    kept without its event, neither by the analytics that failed nor by those they were `reshaped`
    from (which share their state until then), where the worker tries the new shapes again."""
    gate = parse_lines([{"name": "gate", "points": [[0, 100], [200, 100]]}])[0]
    analytics = StreamAnalytics("cam", (), (gate,))
    boxes = [(90.0, float(y - 40), 110.0, float(y)) for y in [60, 70, 80, 130, 135, 140, 145]]  # 0.3 s across
    for index, box in enumerate(boxes):
        analytics.update((_track(None, box),), (), _frame(index))
    cross = StreamAnalytics._cross

    def cross_then_fail(self: StreamAnalytics, *args: object) -> AnalyticsEvent:
        cross(self, *args)  # type: ignore[arg-type]
        raise RuntimeError("a later step of this frame's analytics failed")

    monkeypatch.setattr(StreamAnalytics, "_cross", cross_then_fail)
    zone = parse_zones([{"name": "bay", "points": [[0, 0], [50, 0], [50, 50], [0, 50]]}])[0]
    reshaped, _ = analytics.reshaped((zone,), (gate,), _frame(7))
    at_confirm = (_track(None, (90.0, 110.0, 110.0, 150.0)),)
    for failing in (reshaped, analytics):
        with pytest.raises(RuntimeError):
            failing.update(at_confirm, (), _frame(8))
        assert failing.counts.lines.get("gate", {}) == {}, "no crossing counted without its event"
    monkeypatch.setattr(StreamAnalytics, "_cross", cross)
    again, _ = analytics.reshaped((zone,), (gate,), _frame(8))
    _, events = again.update(at_confirm, (), _frame(8))
    assert _analytics_events(events) == [("line_cross", "gate", "in", None, "disc")]
    assert again.counts.lines == {"gate": {"disc": {"in": 1, "out": 0}}}


def test_a_frame_whose_analytics_fail_after_its_crossing_and_loiter_makes_both_when_tried_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A failed frame leaves no visit or line state changed, here or in the analytics these were
    `reshaped` from, which share them (`update` changes them on its own copies): judged again, the
    frame makes the same loiter and crossing."""
    zone = parse_zones([{"name": "bay", "points": [[0, 0], [200, 0], [200, 200], [0, 200]], "loiter_s": 0.75}])[0]
    gate = parse_lines([{"name": "gate", "points": [[0, 100], [200, 100]]}])[0]
    analytics = StreamAnalytics("cam", (zone,), (gate,))
    boxes = [(90.0, float(y - 40), 110.0, float(y)) for y in [60, 70, 80, 130, 135, 140, 145, 150]]  # 0.4 s across
    for index, box in enumerate(boxes):
        analytics.update((_track(None, box),), (), _frame(index))
    at_confirm = (_track(None, (90.0, 110.0, 110.0, 150.0)),)  # 0.8 s in the zone, 0.5 s across
    expected = [("loiter", "bay", None, 0.8, "disc"), ("line_cross", "gate", "in", None, "disc")]

    def fail(*args: object) -> list[AnalyticsEvent]:
        raise RuntimeError("a later step of this frame's analytics failed")

    reshaped, _ = analytics.reshaped((zone,), (gate,), _frame(8))
    with monkeypatch.context() as patch:
        patch.setattr(StreamAnalytics, "_forget", fail)
        for failing in (reshaped, analytics):
            with pytest.raises(RuntimeError):
                failing.update(at_confirm, (_end(track_id=2),), _frame(8))
    for judged in (reshaped, analytics):
        _, events = judged.update(at_confirm, (), _frame(8))
        assert _analytics_events(events) == expected
