"""A real model that answers a call it has answered before from memory, so tests can share its inference.

The model is deterministic on a CPU: the same pixels with the same arguments give the same detections.
A test that runs a worker over frames a fixture's run already gave the model (every second frame of the
same scene) gets what the model gave then, without waiting for it again, and every other call goes to
the model. What the worker and its trackers do with the answers is theirs, as in a run of its own.
"""

from __future__ import annotations

import hashlib
from collections.abc import Hashable
from typing import Any

import numpy as np


class RememberingModel:
    """Wraps a YOLO model (as `tests.support.detections.Gated` does) and keeps each ``predict``'s answer,
    keyed by the images' pixels and the call's arguments. ``calls_run`` counts the calls the model ran."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.names = model.names
        self.overrides = model.overrides
        self.task = getattr(model, "task", None)
        self.calls_run = 0
        self._answers: dict[Hashable, Any] = {}

    def predict(self, images: list[np.ndarray], **kwargs: Any) -> list[Any]:
        key = (tuple(_pixels_key(image) for image in images), repr(sorted(kwargs.items())))
        if key not in self._answers:
            self._answers[key] = self.model.predict(images, **kwargs)
            self.calls_run += 1
        return list(self._answers[key])  # the caller's own list, as from the model


def _pixels_key(image: np.ndarray) -> tuple[tuple[int, ...], str, bytes]:
    """What identifies ``image``'s pixels: its shape, type and a digest of its bytes."""
    return image.shape, image.dtype.str, hashlib.blake2b(np.ascontiguousarray(image).data, digest_size=16).digest()
