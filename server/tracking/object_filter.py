"""A stream's object filter: detections too small, too large or in an ignore zone never reach its tracker.

Frigate's users know these as ``min_area``, ``max_area`` (the stream's, or a class filter's own) and object
masks: the filters that keep a statue, a poster or the road beyond the fence from ever being a person. They
act before the tracker, so an ignored detection never starts a track, never takes a real object's id, and is
never drawn, counted or sent; an object that walks into an ignore zone is, to the tracker, hidden there, and
segtrack finds it again as it comes out as it does behind a pillar. An ignore zone is judged by the share of
the detection's mask inside it (its box for a detection-only model), the rule zones count by.

The filter follows the stream's options as they change in place (`StreamTracker.follow`). The zones'
pixels are worked out once per frame size, as a zone's are: one in pixels beyond the frame (drawn for
another resolution) is left out and said in `problems`, rather than hiding the wrong part of the picture.
"""

from __future__ import annotations

import logging

import numpy as np

from server.analytics.shapes import IgnoreZone, resolve_zone
from server.analytics.zone_membership import ZoneMask, object_area, share_inside
from server.inference.detections import Detections
from server.options import StreamOptions
from server.tracking.filters import class_filters_by_id, class_ids

log = logging.getLogger(__name__)

#: An ignore zone as a frame of one size holds it: the zone, the class ids it ignores (None: all), its mask.
_Placed = tuple[IgnoreZone, frozenset[int] | None, ZoneMask]


class ObjectFilter:
    """The area bounds and ignore zones of one stream's options, for frames of any size."""

    def __init__(
        self, stream_id: str, options: StreamOptions, class_names: dict[int, str], told: tuple[str, ...] = ()
    ) -> None:
        """Raises ValueError naming an ignore zone's or a class filter's class the model (``class_names``) does
        not know. ``told``: the problems the log has told already (those of the filter this one replaces)."""
        self.stream_id = stream_id
        self.min_area, self.max_area = options.min_area, options.max_area
        self.ignore_zones = options.ignore_zones
        self.class_filters = options.class_filters
        #: The classes whose area bounds are their own: class id -> (least, most) share of the frame.
        self._class_bounds = {
            class_id: (
                self.min_area if own.min_area is None else own.min_area,
                self.max_area if own.max_area is None else own.max_area,
            )
            for class_id, own in class_filters_by_id(class_names, options).items()
            if (own.min_area, own.max_area) != (None, None)
        }
        #: Per ignore zone, the class ids it ignores (None: every class).
        self._classes: list[frozenset[int] | None] = []
        for i, zone in enumerate(self.ignore_zones):
            try:
                self._classes.append(class_ids(class_names, zone.classes))
            except ValueError as exc:  # "classes: the model has no class ..."
                raise ValueError(f"ignore_zones[{i}].{exc}") from None
        self._placed: tuple[int, int, list[_Placed]] | None = None  # the zones that fit one frame size
        #: Why ignore zones are left out at the current frame size, one line each; empty when all fit.
        self.problems: tuple[str, ...] = ()
        self.told = told

    @property
    def active(self) -> bool:
        """Whether it may drop anything: the defaults keep every detection at no cost."""
        return bool(self.ignore_zones or self._class_bounds) or self.min_area > 0.0 or self.max_area < 1.0

    def same_as(self, options: StreamOptions) -> bool:
        """Whether ``options`` filter as this does (a change in place that left the filter alone)."""
        return (options.min_area, options.max_area, options.ignore_zones, options.class_filters) == (
            self.min_area,
            self.max_area,
            self.ignore_zones,
            self.class_filters,
        )

    def keep(self, detections: Detections, shape: tuple[int, ...]) -> np.ndarray:
        """Which of ``detections``, in a frame of ``shape`` (height, width), the stream sees: a bool per row."""
        kept = np.ones(len(detections), dtype=bool)
        if not self.active:
            return kept
        height, width = shape[:2]
        placed = self._place(width, height)  # with no detections too: a zone that does not fit is said at once
        if not len(detections):
            return kept
        boxes = detections.boxes[:, :4]
        share = _clipped_area(boxes, width, height) / float(width * height)
        class_of = detections.class_ids
        # In the shares' own precision, as the stream's bounds are compared: a box of exactly a bound is seen.
        least, most = np.full_like(share, self.min_area), np.full_like(share, self.max_area)
        for class_id, (low, high) in self._class_bounds.items():
            mine = class_of == class_id
            least[mine], most[mine] = low, high
        kept &= (share >= least) & (share <= most)
        for zone, ignored_classes, mask in placed:
            for index in np.flatnonzero(kept & _overlapping(boxes, mask)):
                if ignored_classes is not None and int(class_of[index]) not in ignored_classes:
                    continue
                outline = detections.outline(int(index))
                polygon = None if outline is None else np.round(outline).astype(np.int32)
                x1, y1, x2, y2 = (float(v) for v in boxes[index])
                if share_inside(object_area((x1, y1, x2, y2), polygon, shape), mask) >= zone.min_share:
                    kept[index] = False
        return kept

    def _place(self, width: int, height: int) -> list[_Placed]:
        """The ignore zones that fit a ``width`` x ``height`` frame, with their masks; `problems` says why the
        others are left out (the log tells each new one once)."""
        if self._placed is not None and self._placed[:2] == (width, height):
            return self._placed[2]
        placed: list[_Placed] = []
        problems = []
        for i, (zone, ignored_classes) in enumerate(zip(self.ignore_zones, self._classes, strict=True)):
            try:
                points = resolve_zone(zone, width, height, f"ignore_zones[{i}].points")
            except ValueError as exc:
                problems.append(f"{exc}; ignore zone {zone.name!r} is left out")
                continue
            corners = np.round(np.array(points)).astype(np.int32)
            placed.append((zone, ignored_classes, ZoneMask.filled(corners, width, height)))
        for problem in problems:
            if problem not in self.told:
                log.warning("[%s] %s", self.stream_id, problem)
        self.problems = self.told = tuple(problems)
        self._placed = (width, height, placed)
        return placed


def _clipped_area(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """Each box's area within the frame, in square pixels."""
    widths = np.clip(boxes[:, 2], 0, width) - np.clip(boxes[:, 0], 0, width)
    heights = np.clip(boxes[:, 3], 0, height) - np.clip(boxes[:, 1], 0, height)
    return np.maximum(widths, 0) * np.maximum(heights, 0)


def _overlapping(boxes: np.ndarray, mask: ZoneMask) -> np.ndarray:
    """Which boxes reach into the zone's bounding box: only those can lie in it (their masks are within them)."""
    right, bottom = mask.left + mask.mask.shape[1], mask.top + mask.mask.shape[0]
    return (boxes[:, 0] < right) & (boxes[:, 2] > mask.left) & (boxes[:, 1] < bottom) & (boxes[:, 3] > mask.top)
