"""Hand-made tracks for the analytics tests, where all that varies is where the object is."""

from __future__ import annotations

import numpy as np

from server.frames import Track


def disc_track(box: tuple[float, float, float, float], polygon: np.ndarray | None = None) -> Track:
    """Track 1, a "disc" seen with confidence 0.9 at ``box`` (and ``polygon``, its mask's outline), standing
    still and new: the zone rules read only its place."""
    return Track(track_id=1, class_id=0, class_name="disc", confidence=0.9, box=box, polygon=polygon, trail=())
