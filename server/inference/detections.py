"""One frame's detections as the tracker consumes them: boxes now, mask outlines only when asked.

The model thread hands each stream's tracker a `Detections`. Boxes are small and always needed; an
outline costs a contour trace, and a stream keeps only some detections (its own confidence and class
filter, then the tracker's choice), so outlines are made on demand, for the detections that end up in
a track, and at most once each.

Two producers fill it: `server.inference.outlines` straight from the model's mask prototypes (the fast path),
and `Detections.from_results` from an ultralytics ``Results`` (detection-only models, and the
reference the fast path is tested against).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import numpy as np

if TYPE_CHECKING:
    from ultralytics.engine.predictor import BasePredictor
    from ultralytics.engine.results import Results

#: Makes the outline of the detection with this index in the frame's full list, in frame pixels.
OutlineMaker = Callable[[int], np.ndarray]


@dataclass(slots=True, eq=False)
class Detections:
    """Boxes ``(N, 6)``: x1, y1, x2, y2, confidence, class id, in frame pixels, one row per detection.

    ``make_outline`` is None for models without masks. ``rows`` maps each row to its index in the
    frame's full list, which is what ``make_outline`` is asked for, so a `select`-ed subset shares its
    parent's outline cache. ``speed`` is ultralytics' per-stage timing of the call (ms per image):
    its predictor writes it into every result it hands out, so the slot must exist.
    """

    boxes: np.ndarray
    make_outline: OutlineMaker | None = None
    rows: np.ndarray | None = None  # None: row i is detection i of the frame
    _outlines: dict[int, np.ndarray] = field(default_factory=dict)
    speed: dict[str, float] = field(default_factory=dict)

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 6), np.float32))

    @classmethod
    def from_results(cls, result: Results) -> Detections:
        """``result``'s boxes, and outlines from its masks as ultralytics traces them (``masks.xy``)."""
        speed = {stage: ms for stage, ms in result.speed.items() if ms is not None}
        if result.boxes is None or len(result.boxes) == 0:
            return cls(np.zeros((0, 6), np.float32), speed=speed)
        boxes = np.asarray(result.boxes.cpu().numpy().data, np.float32)[:, :6]
        masks = result.masks
        if masks is None:
            return cls(boxes, speed=speed)
        return cls(boxes, lambda index: masks.xy[index], speed=speed)

    def __len__(self) -> int:
        return len(self.boxes)

    @property
    def confidence(self) -> np.ndarray:
        return self.boxes[:, 4]

    @property
    def class_ids(self) -> np.ndarray:
        return self.boxes[:, 5].astype(np.intp)

    def select(self, indices: Sequence[int] | np.ndarray) -> Detections:
        """The detections at ``indices`` (in this order), sharing this frame's outlines."""
        indices = np.asarray(indices, np.intp)
        rows = indices if self.rows is None else self.rows[indices]
        return Detections(self.boxes[indices], self.make_outline, rows, self._outlines)

    def with_own_outlines(self) -> Detections:
        """These detections with their own copy of the outlines traced so far, so that what is traced
        from here on is traced again for the next copy: how tools/track_report.py times each tracker's
        own outline tracing on the same detections."""
        return Detections(self.boxes, self.make_outline, self.rows, dict(self._outlines), self.speed)

    def outline(self, index: int) -> np.ndarray | None:
        """Detection ``index``'s mask outline as float32 ``(K, 2)`` frame pixels (K may be 0); None without masks."""
        if self.make_outline is None:
            return None
        row = index if self.rows is None else int(self.rows[index])
        outline = self._outlines.get(row)
        if outline is None:
            outline = self._outlines[row] = self.make_outline(row)
        return outline


def detect(model: Any, images: list[np.ndarray], *, fast_masks: bool = True, **kwargs: Any) -> list[Detections]:
    """``model.predict(images, **kwargs)``, one `Detections` per image (quietly, unless told otherwise).

    A segmentation model's outlines come from `server.inference.outlines` when ``fast_masks``, else from
    ultralytics' whole-input masks. ``save`` and ``show`` are not for this: results are not drawn here.
    """
    kwargs.setdefault("verbose", False)  # verbose results are written out, which needs ultralytics' Results
    predictor = serving_predictor(model, fast_masks)
    if predictor is not None:
        return cast("list[Detections]", model.predict(images, predictor=predictor, **kwargs))
    if getattr(model, "task", None) == "segment":
        from server.inference.outlines import OutlinePredictor

        if isinstance(getattr(model, "predictor", None), OutlinePredictor):
            model.predictor = None  # ultralytics keeps the last call's predictor class when none is named
    return [Detections.from_results(result) for result in model.predict(images, **kwargs)]


def serving_predictor(model: Any, fast_masks: bool = True) -> type[BasePredictor] | None:
    """The predictor class `detect` runs ``model`` with; None: ultralytics' own for its task.

    A caller that sets a predictor up ahead (`server.inference.models` opening an export's runtime)
    makes this class, so that the first `detect` reuses it rather than opening the runtime again.
    """
    if fast_masks and getattr(model, "task", None) == "segment":
        from server.inference.outlines import OutlinePredictor

        return OutlinePredictor
    return None
