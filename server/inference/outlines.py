"""Mask outlines straight from a segmentation model's prototypes: only inside each box, only when asked.

ultralytics turns each detection's mask coefficients into a whole-input mask: the prototypes
``(C, H/4, W/4)`` times the coefficients, upsampled to the letterboxed input ``(H, W)``, cropped to the
box, and for ``masks.xy`` traced over the whole input again. With 20 objects at 640 px that is 20
full-size float masks, nearly all of each thrown away by the crop, and it cost more than half of an
OpenVINO forward pass (docs/benchmarks.md).

Here each detection's mask is made from the part of the prototypes under its box only. The upsampling
uses the same bilinear rule (half-pixel centres, an integer factor) on a window with enough margin that
no sample reaches its edge, so every pixel inside the box gets the value it has in ultralytics' full
mask (up to float rounding, where a logit is within about 1e-5 of the threshold). The outline is
traced in that window, on demand, and scaled to frame pixels as ``masks.xy`` scales it. Same masks,
same outlines, same detections kept: tests/test_outlines.py holds it to that.

Measured on CPUs only. On a GPU the prototypes are copied to the host each frame (about 3 MB at
640), where ultralytics would copy every whole-input mask for ``masks.xy`` instead.
"""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np
from ultralytics.data.converter import merge_multi_segment
from ultralytics.models.yolo.segment import SegmentationPredictor
from ultralytics.utils import ops

from server.inference.detections import Detections

_NO_POINTS = np.zeros((0, 2), np.float32)


class BoxMasks:
    """The masks of one frame's detections, each kept as the window of input pixels inside its box.

    ``protos`` is ``(C, h, w)``, ``coefficients`` ``(N, C)``, ``boxes`` ``(N, 4)`` xyxy in the pixels
    of the model's input (``input_shape``, letterboxed); outlines come out in ``frame_shape`` pixels.
    """

    def __init__(
        self,
        protos: np.ndarray,
        coefficients: np.ndarray,
        boxes: np.ndarray,
        input_shape: tuple[int, int],
        frame_shape: tuple[int, int],
    ) -> None:
        _, proto_h, proto_w = protos.shape
        height, width = input_shape
        if height % proto_h or width % proto_w:  # YOLO's prototypes are a stride-4 map of a stride-32 input
            raise ValueError(f"prototypes {proto_w}x{proto_h} do not divide the input {width}x{height}")
        self._input_shape = input_shape
        self._frame_shape = frame_shape
        self._windows = [
            _box_window(protos, coefficient, box, input_shape, (height // proto_h, width // proto_w))
            for coefficient, box in zip(coefficients, boxes, strict=True)
        ]

    @property
    def nonempty(self) -> np.ndarray:
        """Which detections have any mask pixel in their box (ultralytics drops the others)."""
        return np.array([window is not None and window[2].any() for window in self._windows], bool)

    def mask(self, index: int) -> np.ndarray:
        """Detection ``index``'s whole binary mask at the input size, as ultralytics would make it."""
        full = np.zeros(self._input_shape, np.uint8)
        window = self._windows[index]
        if window is not None:
            x, y, pixels = window
            full[y : y + pixels.shape[0], x : x + pixels.shape[1]] = pixels
        return full

    def outline(self, index: int) -> np.ndarray:
        """Detection ``index``'s outline in frame pixels, float32 ``(K, 2)``, traced like ``masks.xy``."""
        window = self._windows[index]
        if window is None:
            return _NO_POINTS
        x, y, pixels = window
        contours = cv2.findContours(pixels, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE, offset=(x, y))[0]
        if not contours:
            return _NO_POINTS
        if len(contours) == 1:
            points = contours[0].reshape(-1, 2)
        else:  # one polygon per object, joined as ultralytics joins them
            points = np.concatenate(merge_multi_segment([c.reshape(-1, 2).tolist() for c in contours]))
        return ops.scale_coords(self._input_shape, points.astype(np.float32), self._frame_shape)


def _box_window(
    protos: np.ndarray,
    coefficient: np.ndarray,
    box: np.ndarray,
    input_shape: tuple[int, int],
    factor: tuple[int, int],
) -> tuple[int, int, np.ndarray] | None:
    """The mask inside ``box``: its top-left input pixel and uint8 pixels, or None if the box holds no pixel."""
    columns = _span(float(box[0]), float(box[2]), input_shape[1], factor[1])
    rows = _span(float(box[1]), float(box[3]), input_shape[0], factor[0])
    if columns is None or rows is None:
        return None
    (x_first, x_stop, px0, px1), (y_first, y_stop, py0, py1) = columns, rows
    logits = np.tensordot(coefficient, protos[:, py0:py1, px0:px1], axes=1)
    upsampled = cv2.resize(logits, ((px1 - px0) * factor[1], (py1 - py0) * factor[0]), interpolation=cv2.INTER_LINEAR)
    top, left = py0 * factor[0], px0 * factor[1]
    inside = upsampled[y_first - top : y_stop - top, x_first - left : x_stop - left]
    return x_first, y_first, (inside > 0).astype(np.uint8)


def _span(low: float, high: float, size: int, factor: int) -> tuple[int, int, int, int] | None:
    """Along one axis: the input pixels ``[first, stop)`` with ``low <= i < high`` (ultralytics' crop),
    and the prototype cells ``[p0, p1)`` their bilinear samples read; None when no pixel is inside.

    Input pixel ``i`` samples the prototypes at ``(i + 0.5) / factor - 0.5``, between the cells at its
    floor and one past it, clamped to the map. Taking cells from the floor of the first sample to one
    past the floor of the last means the window's own edge clamping never comes into play.
    """
    first = min(max(math.ceil(low), 0), size)
    stop = min(max(math.ceil(high), 0), size)
    if stop <= first:
        return None
    cells = size // factor
    p0 = max(0, math.floor((first + 0.5) / factor - 0.5))
    p1 = min(cells, math.floor((stop - 0.5) / factor - 0.5) + 2)
    return first, stop, p0, p1


class OutlinePredictor(SegmentationPredictor):
    """ultralytics' segmentation predictor (letterboxing, forward pass, NMS), handing out `Detections`
    whose outlines come from `BoxMasks` instead of whole-input masks.

    Pass the class as ``model.predict(..., predictor=OutlinePredictor)``. Masks are always at the
    inference resolution (ultralytics' ``retina_masks`` is not supported), and ReID features, which
    only ultralytics' own ``model.track`` asks for, are not attached.
    """

    # SegmentationPredictor's own override adds ``proto`` to DetectionPredictor's signature, as this does.
    def construct_result(  # type: ignore[override]
        self, pred: Any, img: Any, orig_img: np.ndarray, img_path: str, proto: Any
    ) -> Detections:
        input_shape = (int(img.shape[2]), int(img.shape[3]))
        frame_shape = (int(orig_img.shape[0]), int(orig_img.shape[1]))
        return segment_detections(pred.float().cpu().numpy(), proto.float().cpu().numpy(), input_shape, frame_shape)


def segment_detections(
    pred: np.ndarray, protos: np.ndarray, input_shape: tuple[int, int], frame_shape: tuple[int, int]
) -> Detections:
    """One image's detections from a segmentation head after NMS, with outlines from `BoxMasks`.

    ``pred`` is ``(N, 6 + C)``: box in input pixels, confidence, class, then the mask coefficients for
    the ``(C, h, w)`` ``protos``. Detections whose box holds no mask pixel are dropped, as ultralytics
    drops them. Shared by the in-process predictor and remote inference (`server.triton`), so both
    hand the tracker the same detections for the same network outputs.
    """
    if pred.shape[0] == 0:
        return Detections.empty()
    masks = BoxMasks(protos, pred[:, 6:], pred[:, :4], input_shape, frame_shape)
    boxes = pred[:, :6].copy()
    boxes[:, :4] = ops.scale_boxes(input_shape, boxes[:, :4], frame_shape)
    keep = masks.nonempty
    if keep.all():
        return Detections(boxes, masks.outline)
    return Detections(boxes[keep], masks.outline, np.flatnonzero(keep))
