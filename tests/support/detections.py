"""Detections made from the scene's ground truth, to test tracking and the worker without a model.

A perfect detector isolates what the tracker and the worker do: any id switch or mixed-up mask in a
test fed by these is theirs, not the model's.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from ultralytics.engine.results import Results

from server.inference.detections import Detections
from server.scene import CLASS_NAMES, TrueObject

NAMES = dict(enumerate(CLASS_NAMES))
GATE_TIMEOUT_S = 30.0


class NoDetections:
    """Stands in for a model that finds nothing: for tests about streams and their sources, not what is in them."""

    names = NAMES

    def __init__(self) -> None:
        self.overrides: dict[str, Any] = {"imgsz": 320}

    def predict(self, images: list[np.ndarray], **kwargs: Any) -> list[Results]:
        return [Results(image, "", NAMES, boxes=torch.zeros((0, 6))) for image in images]


def truth_result(image: np.ndarray, truths: Sequence[TrueObject], confidence: float = 0.9) -> Results:
    """A segmentation result with one detection per visible object, boxes and masks exact."""
    if not truths:
        return Results(image, "", NAMES, boxes=torch.zeros((0, 6)), masks=torch.zeros((0, *image.shape[:2])))
    boxes = torch.tensor([[*t.box, confidence, t.class_id] for t in truths], dtype=torch.float32)
    masks = torch.from_numpy(np.stack([t.mask for t in truths]).astype(np.float32))
    return Results(image, "", NAMES, boxes=boxes, masks=masks)


def truth_detections(image: np.ndarray, truths: Sequence[TrueObject], confidence: float = 0.9) -> Detections:
    """`truth_result` as the tracker takes it."""
    return Detections.from_results(truth_result(image, truths, confidence))


class TruthModel:
    """Stands in for a YOLO model in the worker: detections are the truth registered for each image.

    Images are recognised by identity, so a test registers each frame's image before putting it in a
    slot. An image registered with ``fail=True`` makes `predict` raise, like a model that chokes on it.
    """

    names = NAMES

    def __init__(self) -> None:
        self.overrides: dict[str, Any] = {"imgsz": 320}
        self._lock = threading.Lock()
        self._truths: dict[int, tuple[np.ndarray, Sequence[TrueObject] | None]] = {}

    def register(self, image: np.ndarray, truths: Sequence[TrueObject], fail: bool = False) -> np.ndarray:
        with self._lock:
            self._truths[id(image)] = (image, None if fail else truths)
        return image

    def predict(self, images: list[np.ndarray], **kwargs: Any) -> list[Results]:
        with self._lock:
            entries = [self._truths[id(image)] for image in images]
            if any(truths is None for _, truths in entries):
                if len(images) == 1:
                    del self._truths[id(images[0])]
                raise RuntimeError("the model cannot read this frame")
            for image in images:
                del self._truths[id(image)]
        return [truth_result(image, truths or ()) for image, truths in entries]


class Gated:
    """Wraps a model (real or `TruthModel`) to hold the worker inside ``predict`` on demand.

    While ``gate`` is a cleared Event, `predict` sets ``entered`` and waits for it, so a test can
    line up one frame per stream for the worker's next cycle without sleeping. ``calls`` records the
    batch size and keyword arguments of every call, in order.
    """

    def __init__(self, model: Any) -> None:
        self.model = model
        self.names = model.names
        self.overrides = model.overrides
        self.task = getattr(model, "task", None)
        self.gate: threading.Event | None = None
        self.entered = threading.Event()
        self.calls: list[tuple[int, dict[str, Any]]] = []

    def predict(self, images: list[np.ndarray], **kwargs: Any) -> Any:
        self.calls.append((len(images), kwargs))
        gate = self.gate
        self.entered.set()
        if gate is not None and not gate.wait(GATE_TIMEOUT_S):
            raise TimeoutError("the test never opened the gate")
        return self.model.predict(images, **kwargs)
