"""What the inference thread runs a model through: one small protocol, for a model run here and one on a server.

`server.inference.worker` calls only `InferenceBackend`. `server.inference.local.LocalModel` runs an
ultralytics model on the inference thread itself, each batch answered by the time it is submitted;
`server.triton.model.TritonModel` sends batches to a Triton server and has the next out while the
worker finishes the last (it is `pipelined`), and may be unavailable for a while. How a batch can fail is
said in backend-neutral terms, so the worker charges frames alike whatever runs the model: the whole
batch unavailable (`server.inference.models.InferenceUnavailable`), one image refused
(`InferenceRefused`, in place of its detections), or the model failing on the batch (any other
exception; `BatchFailed` where each of its images may go through alone).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from server.inference.detections import Detections
from server.inference.models import InferenceStatus


class InferenceRefused(Exception):
    """The backend answered, and said no because of the request itself (say, a frame size the model
    does not take): the fault of the frames it carried, not an outage, so other streams carry on."""


class BatchFailed(Exception):
    """The model raised on a batch of more than one image (the cause is chained): which image is at
    fault is unknown, so the caller runs each alone and charges only the ones that fail again."""


@dataclass(frozen=True, slots=True)
class RequestStats:
    """A remote backend's exchanges with its server, for /metrics: every request, failed or not, and
    the time spent waiting for the answers."""

    requests: int
    failed_requests: int
    request_seconds: float


class PendingBatch(Protocol):
    """A submitted batch's detections: `done` without waiting, `result` waits for them."""

    @property
    def seconds(self) -> float:
        """The model's time for the batch, once `result` returned: not the time it waited to be run."""
        ...

    def done(self) -> bool: ...

    def result(self) -> Sequence[Detections | InferenceRefused]:
        """Each image's detections, or its `InferenceRefused`; raises `InferenceUnavailable` if the
        batch could not be run for now, anything else if the model failed on it. Inference thread only."""
        ...


@runtime_checkable
class InferenceBackend(Protocol):
    """A model the inference thread runs batches on. `submit`, `probe` and `close` are called by the
    inference thread (`close` by any, at once); the rest may be read from any thread."""

    @property
    def kind(self) -> str:
        """What runs the model, as a refusal or an unavailable start is worded ("Triton")."""
        ...

    @property
    def runs_on(self) -> str:
        """Where the model runs, as the log names it: a device here, a server's endpoint."""
        ...

    @property
    def pipelined(self) -> bool:
        """Whether the worker sends the next batch before it finishes the last, once that is answered, so the
        backend's work on one overlaps the worker's on the other (a server's); else each batch is finished as
        it is submitted. One is out at a time either way: a batch sent behind another would wait out that
        whole request, its frames aging, where the cameras' slots keep the newest instead."""
        ...

    @property
    def names(self) -> dict[int, str]:
        """The model's classes; empty while they are not known (a remote model never described yet)."""
        ...

    @property
    def status(self) -> InferenceStatus:
        """Whether frames can be inferred now."""
        ...

    @property
    def default_imgsz(self) -> int | None:
        """The inference size of a stream that sets none; None: the model's own, once it is known."""
        ...

    @property
    def fixed_shape(self) -> tuple[int, int] | None:
        """(height, width): the one input size the model takes (a static export, a Triton model built for one);
        None for a model of any size, or one not described yet. `InferenceWorker.check_options` refuses a
        stream's other ``imgsz``."""
        ...

    @property
    def request_stats(self) -> RequestStats | None:
        """Its requests to a server, for /metrics; None for a model run here."""
        ...

    def submit(self, images: list[np.ndarray], *, on_answer: Callable[[], None], **options: Any) -> PendingBatch:
        """Run ``images`` (one shape, one set of ``options``: `server.inference.batching.predict_options`)
        as one batch. ``on_answer`` is called, on any thread, once a batch not answered when this
        returned is; raises `InferenceUnavailable` while the model cannot be run, `BatchFailed` as said."""
        ...

    def probe(self, on_answer: Callable[[], None]) -> None:
        """The worker has had no frames for a while: check, without waiting, that the model could still
        run them, so `status` stays true while idle; ``on_answer`` once it may have changed."""
        ...

    def close(self) -> None:
        """End what is out at once, a batch the model is still working on included."""
        ...
