"""A stream's object filter: detections too small, too large or in an ignore zone never reach its tracker.

Frigate's users know these as ``min_area``, ``max_area`` and object masks: the filters that keep a
statue, a poster or the road beyond the fence from ever being a person. They act before the tracker,
so an ignored detection never starts a track, never takes a real object's id, and is never drawn,
counted or sent; an object that walks into an ignore zone is, to the tracker, hidden there, and
segtrack finds it again as it comes out as it does behind a pillar. An ignore zone is judged by the
share of the detection's mask inside it (its box for a detection-only model), the rule zones count by.

The filter follows the stream's options as they change in place (`StreamTracker.follow`), and the
zones' pixels are worked out once per frame size.
"""

from __future__ import annotations

import numpy as np

from server.analytics.shapes import IgnoreZone, Units
from server.analytics.zone_membership import ZoneMask, object_area, share_inside
from server.inference.detections import Detections
from server.options import StreamOptions
from server.tracking.filters import class_ids


class ObjectFilter:
    """The area bounds and ignore zones of one stream's options, for frames of any size."""

    def __init__(self, options: StreamOptions, class_names: dict[int, str]) -> None:
        """Raises ValueError naming an ignore zone's class the model (``class_names``) does not know."""
        self.min_area, self.max_area = options.min_area, options.max_area
        self.ignore_zones = options.ignore_zones
        #: Per ignore zone, the class ids it ignores (None: every class).
        self._classes: list[frozenset[int] | None] = []
        for i, zone in enumerate(self.ignore_zones):
            try:
                self._classes.append(class_ids(class_names, zone.classes))
            except ValueError as exc:  # "classes: the model has no class ..."
                raise ValueError(f"ignore_zones[{i}].{exc}") from None
        self._masks: tuple[int, int, list[ZoneMask]] | None = None  # the zones' masks for one frame size

    @property
    def active(self) -> bool:
        """Whether it may drop anything: the defaults keep every detection at no cost."""
        return bool(self.ignore_zones) or self.min_area > 0.0 or self.max_area < 1.0

    def same_as(self, options: StreamOptions) -> bool:
        """Whether ``options`` filter as this does (a change in place that left the filter alone)."""
        return (options.min_area, options.max_area, options.ignore_zones) == (
            self.min_area,
            self.max_area,
            self.ignore_zones,
        )

    def keep(self, detections: Detections, shape: tuple[int, ...]) -> np.ndarray:
        """Which of ``detections``, in a frame of ``shape`` (height, width), the stream sees: a bool per row."""
        kept = np.ones(len(detections), dtype=bool)
        if not self.active or not len(detections):
            return kept
        height, width = shape[:2]
        boxes = detections.boxes[:, :4]
        share = _clipped_area(boxes, width, height) / float(width * height)
        kept &= (share >= self.min_area) & (share <= self.max_area)
        if not self.ignore_zones:
            return kept
        class_of = detections.class_ids
        masks = self._zone_masks(width, height)
        for zone, ignored_classes, mask in zip(self.ignore_zones, self._classes, masks, strict=True):
            for index in np.flatnonzero(kept & _overlapping(boxes, mask)):
                if ignored_classes is not None and int(class_of[index]) not in ignored_classes:
                    continue
                outline = detections.outline(int(index))
                polygon = None if outline is None else np.round(outline).astype(np.int32)
                x1, y1, x2, y2 = (float(v) for v in boxes[index])
                if share_inside(object_area((x1, y1, x2, y2), polygon, shape), mask) >= zone.min_share:
                    kept[index] = False
        return kept

    def _zone_masks(self, width: int, height: int) -> list[ZoneMask]:
        if self._masks is None or self._masks[:2] != (width, height):
            self._masks = (width, height, [_mask(zone, width, height) for zone in self.ignore_zones])
        return self._masks[2]


def _mask(zone: IgnoreZone, width: int, height: int) -> ZoneMask:
    """``zone`` filled in a ``width`` x ``height`` frame; pixel corners beyond it are kept (the part within counts)."""
    scale = (width, height) if zone.units is Units.FRACTION else (1.0, 1.0)
    corners = np.round(np.asarray(zone.points, np.float64) * scale).astype(np.int32)
    return ZoneMask.filled(corners, width, height)


def _clipped_area(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """Each box's area within the frame, in square pixels."""
    widths = np.clip(boxes[:, 2], 0, width) - np.clip(boxes[:, 0], 0, width)
    heights = np.clip(boxes[:, 3], 0, height) - np.clip(boxes[:, 1], 0, height)
    return np.maximum(widths, 0) * np.maximum(heights, 0)


def _overlapping(boxes: np.ndarray, mask: ZoneMask) -> np.ndarray:
    """Which boxes reach into the zone's bounding box: only those can lie in it (their masks are within them)."""
    right, bottom = mask.left + mask.mask.shape[1], mask.top + mask.mask.shape[0]
    return (boxes[:, 0] < right) & (boxes[:, 2] > mask.left) & (boxes[:, 1] < bottom) & (boxes[:, 3] > mask.top)
