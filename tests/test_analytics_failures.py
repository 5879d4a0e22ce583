"""A frame whose analytics fail is told in the log with its traceback, once per reason."""

from __future__ import annotations

import logging

import pytest

from server.analytics.engine import StreamAnalytics
from server.frames import Frame, Track, TrackEvent
from server.options import StreamOptions
from server.scene import Scene
from tests.support.detections import TruthModel
from tests.support.driver import Driver

WHOLE_FRAME = [[0, 0], [1, 0], [1, 1], [0, 1]]


def test_failing_analytics_log_their_traceback_once_per_reason(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A bug in the analytics is only found from its traceback, which was logged at DEBUG alone."""
    update = StreamAnalytics.update
    failing = [True, True, False, True]

    def failing_on(
        analytics: StreamAnalytics, tracks: tuple[Track, ...], events: tuple[TrackEvent, ...], frame: Frame
    ) -> object:
        if failing[frame.seq]:
            raise RuntimeError("analytics bug")
        return update(analytics, tracks, events, frame)

    monkeypatch.setattr(StreamAnalytics, "update", failing_on)
    zones = StreamOptions.from_mapping({"zones": [{"name": "all", "points": WHOLE_FRAME, "units": "fraction"}]})
    with caplog.at_level(logging.WARNING, logger="server.inference.analysis"), Driver(TruthModel()) as driver:
        driver.add("cam", Scene(seed=1), zones)
        for index in range(len(failing)):
            driver.step({"cam": index})  # sent all the same, without their analytics
    tracebacks = [r for r in caplog.records if r.exc_info is not None and r.exc_info[0] is RuntimeError]
    assert [r.getMessage() for r in tracebacks] == [
        "[cam] frame 0 sent with the counts as they stood: analytics failed: RuntimeError: analytics bug",
        "[cam] frame 3 sent with the counts as they stood: analytics failed: RuntimeError: analytics bug",
    ]
