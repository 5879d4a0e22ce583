"""The zone rule's hysteresis, the order of a frame's events and the dwell histogram's bounds, on
hand-made tracks whose every share and time is known."""

from __future__ import annotations

import numpy as np

from server.analytics.engine import StreamAnalytics
from server.analytics.events import DWELL_BUCKETS_S, AnalyticsEvent, AnalyticsEventKind, DwellHistogram
from server.analytics.shapes import Zone, parse_zones
from server.frames import Frame, TrackEvent, TrackEventKind
from tests.support.tracks import disc_track

IMAGE = np.zeros((200, 200, 3), np.uint8)
#: Pixel columns 0 to 100 of a 200 x 200 frame.
LEFT_ZONE = {"name": "left", "points": [[0, 0], [100, 0], [100, 199], [0, 199]], "min_share": 0.5}
#: Track boxes 100 px wide whose share in `LEFT_ZONE` is 51 % and 45 %: either side of its min_share,
#: both above the share a track leaves at.
MOSTLY_IN = (50.0, 50.0, 149.0, 99.0)
MOSTLY_OUT = (56.0, 50.0, 155.0, 99.0)


def _zone() -> Zone:
    return parse_zones([LEFT_ZONE])[0]


def _frame(media_time: float) -> Frame:
    return Frame("cam", round(media_time * 10), 1_700_000_000.0 + media_time, media_time, IMAGE)


def _track_event(kind: TrackEventKind, box: tuple[float, float, float, float]) -> TrackEvent:
    return TrackEvent(kind, "cam", 1, 0, "disc", 1_700_000_000.0, 1_700_000_000.0, 0.0, box)


def _kinds(events: tuple[object, ...]) -> list[str]:
    return [e.kind.value for e in events if isinstance(e, TrackEvent | AnalyticsEvent)]


def test_a_share_wobbling_around_min_share_makes_one_visit() -> None:
    analytics = StreamAnalytics("cam", (_zone(),), ())
    made: list[str] = []
    for step in range(10):
        box = MOSTLY_IN if step % 2 == 0 else MOSTLY_OUT
        events = (_track_event(TrackEventKind.START, box),) if step == 0 else ()
        tracks, out = analytics.update((disc_track(box),), events, _frame(step / 10))
        assert tracks[0].zones == ("left",), f"step {step}: still inside"
        made += _kinds(out)
    assert made == ["start", "zone_enter"]


def test_a_new_tracks_start_comes_before_its_zone_enter_and_its_end_after_its_zone_exit() -> None:
    """docs/protocol.md: a track's start, then the analytics events about it, then its end."""
    analytics = StreamAnalytics("cam", (_zone(),), ())
    _, entered = analytics.update(
        (disc_track(MOSTLY_IN),), (_track_event(TrackEventKind.START, MOSTLY_IN),), _frame(0.0)
    )
    assert _kinds(entered) == ["start", "zone_enter"]
    _, left = analytics.update((), (_track_event(TrackEventKind.END, MOSTLY_IN),), _frame(0.5))
    assert _kinds(left) == ["zone_exit", "end"]


def test_a_visit_of_exactly_a_bucket_bound_counts_in_that_bucket() -> None:
    """Prometheus' ``le``: less than or equal; a visit of exactly 1.0 s is in le="1.0"."""
    assert DWELL_BUCKETS_S[0] == 1.0
    analytics = StreamAnalytics("cam", (_zone(),), ())
    analytics.update((disc_track(MOSTLY_IN),), (_track_event(TrackEventKind.START, MOSTLY_IN),), _frame(0.0))
    analytics.update((disc_track(MOSTLY_IN),), (), _frame(1.0))
    _, left = analytics.update((), (_track_event(TrackEventKind.END, MOSTLY_IN),), _frame(1.5))
    exits = [e for e in left if isinstance(e, AnalyticsEvent) and e.kind is AnalyticsEventKind.ZONE_EXIT]
    assert [e.dwell_s for e in exits] == [1.0]
    histogram = analytics.counts.dwell["left"]
    assert histogram.count == 1 and histogram.buckets == (1,) * len(DWELL_BUCKETS_S)


def _quantile(q: float, histogram: DwellHistogram) -> float:
    """Prometheus' histogram_quantile: linear within the bucket the rank falls in, from 0 below the first."""
    rank = q * histogram.count
    lower_bound, below = 0.0, 0
    for bound, n in zip(DWELL_BUCKETS_S, histogram.buckets, strict=True):
        if n >= rank:
            return lower_bound + (bound - lower_bound) * (rank - below) / (n - below)
        lower_bound, below = bound, n
    raise AssertionError("every visit is in a bucket of at most an hour")


def test_the_dwell_histograms_quantiles_read_within_a_sixth_of_the_visits() -> None:
    """A dashboard's 95th percentile read 29 s for visits of 8 to 24 s (158 of them: one bucket ran
    from 10 to 30 s), longer than any; the same for a loiterer's few minutes."""
    for low_s, high_s in ((8.0, 24.0), (20.5, 22.5), (30.0, 90.0), (100.0, 400.0), (2.0, 12.0)):
        visits = np.linspace(low_s, high_s, 158)
        histogram = DwellHistogram()
        for dwell_s in visits:
            histogram = histogram.adding(float(dwell_s))
        for q in (0.5, 0.95):
            truth = np.quantile(visits, q)
            assert abs(_quantile(q, histogram) - truth) <= truth / 6, (low_s, q)
