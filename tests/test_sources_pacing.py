"""When `Pacing` says a file's frames are due, on a clock the test sets."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import pytest

from server.sources import pacing
from server.sources.pacing import Pacing

FPS = 15.0


def test_a_files_frame_after_a_timestamp_jump_is_due_one_frame_after_the_one_before(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two recordings joined into one file: the reader asks for the jumped frame as soon as it has published
    the frame before at its due time. Due "now" instead, it went out together with that frame, one frame's
    time lost to the picture and a zero step to the tracker."""
    clock = SimpleNamespace(now=100.0)
    monkeypatch.setattr(pacing, "time", SimpleNamespace(monotonic=lambda: clock.now))
    file_pacing = Pacing()
    dues: list[float] = []
    for media_time, jumped in [(0.0, False), (1 / FPS, False), (500.0, True), (500.0 + 1 / FPS, False)]:
        dues.append(file_pacing.due(media_time, jumped, 1 / FPS))
        clock.now = dues[-1]  # published at its due time, the next frame asked for at once

    assert dues[0] == 100.0, "the first frame is due as it comes"
    assert [later - earlier for earlier, later in itertools.pairwise(dues)] == pytest.approx([1 / FPS] * 3)
