"""An ultralytics model run in segcast's own process, on the inference thread, as an `InferenceBackend`."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from server.inference.backend import BatchFailed
from server.inference.detections import Detections, detect
from server.inference.models import DEFAULT_IMGSZ_PX, InferenceStatus
from server.inference.options import InferenceOptions

if TYPE_CHECKING:
    from ultralytics import YOLO


class LocalModel:
    """A loaded ultralytics model (`server.inference.models.load_model`), run where `submit` is called.

    Each batch is run as it is submitted, so the worker has one out at a time and its answer is there
    at once; the model is always available, has no server to probe and nothing to close.
    """

    kind = "ultralytics"
    pipelined = False
    status = InferenceStatus(available=True)
    request_stats = None

    def __init__(self, model: YOLO, options: InferenceOptions) -> None:
        self._model = model
        self._fast_masks = options.fast_masks
        self.runs_on = options.device
        self._names: dict[int, str] | None = None
        self.fixed_shape = _fixed_shape(model)

    @property
    def names(self) -> dict[int, str]:
        """Read from the model once: for an exported model each read of ``names`` loads its runtime anew."""
        if self._names is None:
            self._names = dict(self._model.names)
        return self._names

    @property
    def default_imgsz(self) -> int:
        """The size the model records (an export's, its ``.pt``'s training size), else ultralytics' default."""
        known = self._model.overrides.get("imgsz")
        return DEFAULT_IMGSZ_PX if known is None else int(known)

    def submit(self, images: list[np.ndarray], *, on_answer: Callable[[], None], **options: Any) -> _Ran:
        """Run the model on ``images`` now. A failure on a single image is its answer, raised by `_Ran.result`;
        one on several is `BatchFailed`, so that each goes alone and only the culprit is charged."""
        started = time.perf_counter()
        try:
            results = detect(self._model, images, fast_masks=self._fast_masks, **options)
            # A result short or over costs these images, not the thread.
            found = [detections for _, detections in zip(images, results, strict=True)]
        except Exception as exc:
            if len(images) > 1:
                raise BatchFailed(f"the model failed on a batch of {len(images)} images") from exc
            return _Ran(exc, 0.0)
        return _Ran(found, time.perf_counter() - started)

    def probe(self, on_answer: Callable[[], None]) -> None:
        """Nothing to ask: a model run here is there as long as the process is."""

    def close(self) -> None:
        """Nothing to end: a batch is run within `submit`, and the model is the process's."""


def _fixed_shape(model: YOLO) -> tuple[int, int] | None:
    """(height, width): the only images an export of one size takes, as ultralytics' predictor decides it
    (a backend with an ``imgsz`` from the export's metadata that is not ``dynamic`` is run at that size
    whatever ``imgsz`` is asked); None for a ``.pt`` and a dynamic export.

    Read from the runtime `server.inference.models.load_model` opened (`_open_export`): a ``.pt`` has
    none by then. `InferenceWorker.check_options` refuses another ``imgsz``, as for a Triton model of
    one size: before, a stream asking 640 was listed at 640 while the model ran at 320.
    """
    backend = getattr(getattr(model, "predictor", None), "model", None)  # not every model given has one
    size = getattr(backend, "imgsz", None)
    if size is None or getattr(backend, "dynamic", False):
        return None
    height, width = (size, size) if isinstance(size, int) else size
    return int(height), int(width)


@dataclass(frozen=True, slots=True)
class _Ran:
    """A local batch's answer, there by the time `LocalModel.submit` returns: its detections, or the
    model's exception on its single image."""

    found: list[Detections] | Exception
    seconds: float

    def done(self) -> bool:
        return True

    def result(self) -> list[Detections]:
        if isinstance(self.found, Exception):
            raise self.found
        return self.found
