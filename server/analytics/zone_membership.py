"""The zone rule's membership test, and what it remembers of each track's visit to each zone.

A track is in a zone by the share of its area inside it: its mask where it has one, else its box
(`track_area`). Membership has hysteresis: a track enters at ``min_share`` of its area inside and
leaves below `EXIT_SHARE_RATIO` of that, so a mask whose share wobbles around the threshold makes one
visit. `StreamAnalytics` in `server.analytics.engine` applies the rule and counts the visits; this
module measures the share and holds the per-track `Visit`.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from server.frames import Track

EXIT_SHARE_RATIO = 0.8


@dataclass(slots=True)
class Visit:
    """A track's visit to a zone, from its first frame inside until it leaves or the tracker ends it."""

    entered: float  # media time of the first frame inside
    last_inside: float
    #: The track's class when last seen inside: its exit is counted under it, whatever the class is then.
    class_id: int
    class_name: str
    loitered: bool = False

    def copy(self) -> Visit:
        """A copy to change (the engine's draft state, `server.analytics.engine._State.visit`)."""
        return Visit(self.entered, self.last_inside, self.class_id, self.class_name, self.loitered)


def track_area(track: Track, shape: tuple[int, ...]) -> tuple[tuple[int, int], np.ndarray]:
    """The track's mask (or, without one, its box) as an offset and a boolean crop of the frame (empty outside it)."""
    return object_area(track.box, track.polygon, shape)


def object_area(
    box: tuple[float, float, float, float], polygon: np.ndarray | None, shape: tuple[int, ...]
) -> tuple[tuple[int, int], np.ndarray]:
    """An object's mask outline ``polygon`` (int32 pixel corners; None or under 3 of them: its ``box``) as
    `track_area` gives a track's: a detection's is judged against an ignore zone as a track's is against a zone."""
    height, width = shape[:2]
    x1, y1, x2, y2 = box
    left, top = max(0, int(np.floor(x1))), max(0, int(np.floor(y1)))
    right, bottom = min(width, int(np.ceil(x2)) + 1), min(height, int(np.ceil(y2)) + 1)
    if polygon is not None and len(polygon) >= 3:
        polygon = polygon.astype(np.int32)
        left, top = max(0, min(left, int(polygon[:, 0].min()))), max(0, min(top, int(polygon[:, 1].min())))
        right = min(width, max(right, int(polygon[:, 0].max()) + 1))
        bottom = min(height, max(bottom, int(polygon[:, 1].max()) + 1))
        crop = np.zeros((max(0, bottom - top), max(0, right - left)), dtype=np.uint8)
        if crop.size:  # an outline wholly outside the frame has no area in it, and cv2 refuses an empty image
            cv2.fillPoly(crop, [polygon - np.array([left, top], dtype=np.int32)], 1)
        return (left, top), crop.astype(bool)
    return (left, top), np.ones((max(0, bottom - top), max(0, right - left)), dtype=bool)


@dataclass(frozen=True, slots=True)
class ZoneMask:
    """A zone's filled area, kept as a crop of the frame at the zone's bounding box (empty outside it).

    A full-frame mask per zone cost 2 MB each at 1080p and 8 MB at 4K, for 32 zones a stream; the
    crop holds the same pixels, so a track's share inside is the same to the pixel.
    """

    left: int
    top: int
    mask: np.ndarray  # bool, height x width of the zone's bounding box within the frame

    @classmethod
    def filled(cls, polygon: np.ndarray, width: int, height: int) -> ZoneMask:
        """The mask of ``polygon`` (int32 pixel corners) in a ``width`` x ``height`` frame."""
        left, top = max(0, int(polygon[:, 0].min())), max(0, int(polygon[:, 1].min()))
        right, bottom = min(width, int(polygon[:, 0].max()) + 1), min(height, int(polygon[:, 1].max()) + 1)
        crop = np.zeros((max(0, bottom - top), max(0, right - left)), dtype=np.uint8)
        if crop.size:  # cv2 refuses an empty image
            cv2.fillPoly(crop, [polygon], 1, offset=(-left, -top))
        return cls(left, top, crop.astype(bool))


def share_inside(area: tuple[tuple[int, int], np.ndarray], zone: ZoneMask) -> float:
    """The share of the track's area (`track_area`) that lies in the zone (0 for an empty area)."""
    (left, top), crop = area
    total = int(crop.sum())
    if total == 0:
        return 0.0
    x0, y0 = max(left, zone.left), max(top, zone.top)
    x1 = min(left + crop.shape[1], zone.left + zone.mask.shape[1])
    y1 = min(top + crop.shape[0], zone.top + zone.mask.shape[0])
    if x1 <= x0 or y1 <= y0:
        return 0.0
    track_part = crop[y0 - top : y1 - top, x0 - left : x1 - left]
    zone_part = zone.mask[y0 - zone.top : y1 - zone.top, x0 - zone.left : x1 - zone.left]
    return int((track_part & zone_part).sum()) / total
