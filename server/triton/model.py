"""A segmentation or detection model served by NVIDIA Triton, used by the inference thread like a local one.

Only the network runs remotely: letterboxing, NMS and mask outlines stay on the node
(`server.triton.predictor_steps`). Each batch the inference thread forms is one request; a node has
one out at a time, the next sent once it is answered while the thread finishes it (`TritonModel.pipelined`),
and meanwhile the newest frame of each camera keeps replacing the last, so a slow server makes live
streams skip frames, never queue them.

Each `submit` (the worker submits each group of frames of one size and options on its own) is
answered within `REQUEST_TIMEOUT_S` of being sent or fails: the requests it is split into by the
served ``max_batch_size`` share that one deadline, enforced on the wall clock over either protocol
(see `server.triton.transport`), while the worker's groups of other frame sizes each have their own.
The clock starts when the requester thread sends the submitted images' first request, not when they
are submitted: a submission out waits behind the one before it off the clock, so a server that takes
most of the deadline for each is slow, not down. So is one whose answers to a submission's first
requests leave the next too little time: a request unanswered in time is the server's fault only
when no earlier request of its submission was answered.

The server may be down when segcast starts or go away while it runs, or stop serving the model (it was
unloaded, or is being replaced: NOT_FOUND), or not serve it yet when segcast starts (it is still
loading it, or has it in its repository unloaded: NOT_FOUND too, told from a wrong name by the server's
repository index). Then each request fails at once with `InferenceUnavailable` saying why and when the
next attempt is due; attempts back off from `RETRY_FIRST_S` to `RETRY_MAX_S`, so processing resumes
within that long of the server coming back, and the model is described anew then, on a fresh
connection. A node with no frames to send asks by itself (`probe`), so its status is true while idle
too; one that sends frames reads the description again every `DESCRIPTION_MAX_AGE_S`, queued before its
next batch. A server may serve an updated model, restarted or replaced in place: one with the same
class names is used as it now is (input size and shape), one with other class names is not (streams'
trackers and class filters hold the ids of the names the node started with), and inference stays
unavailable, saying so, until segcast restarts. Requests are pinned to the model version whose
description the node read (`ServedModel.version`), so a new version loaded beside it is used only once
described: a request pinned to a version since unloaded fails as a model missing, an outage after which
the model is described anew. A request left unanswered fails those queued behind it
without sending them, so a hung server holds the inference thread for one deadline, not one per request
(two, if it stopped answering in the middle of a batch). A server that fails a request on its own side
(``INTERNAL``, HTTP 500: a crashed backend, out of memory, or an answer without the outputs asked for)
is down like one that does not answer; as it may well describe the model meanwhile, only an inference
request that goes through brings it back (an idle node's `probe` sends one blank image). A request the
server refuses (a frame size the model does not take) is `TritonRefused`, charged to the frames it
carried (of a batch split in several requests, only those of the refused one): the server is up, and
other streams carry on; the model is described again before the next batch, as a model replaced on the
server (another input size) is refused like that. A model the server does not have, or has but segcast
cannot use (missing metadata, wrong input shape, masks missing, class names that do not match its
output: `server.triton.served_model`), is a `ModelError` at start, with one line saying what is wrong
(and nothing of the model left running); a name its repository does not have says which names it does.
Found later (the model replaced in place, or an answer that does not fit its description), it makes
inference unavailable, saying why, backing off as in an outage. A server that restricts its repository
index answers NOT_FOUND at start with that `ModelError` too, as it cannot tell a wrong name from a
model still loading.

``requests``, ``failed_requests`` and ``request_seconds`` count every exchange with the server:
inference requests and the model descriptions read at start, at each attempt after an outage, every
`DESCRIPTION_MAX_AGE_S` and by `probe`, so failures go on counting while the server is down.

`close` ends everything at once, a request the server is still working on included (its connection
is closed under it), so a hung server never holds up a node's shutdown.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from server.inference.backend import RequestStats
from server.inference.detections import Detections
from server.inference.models import InferenceStatus, InferenceUnavailable, ModelError
from server.triton.description import ModelNotLoaded, cannot_serve, outage, read_description, unless_stopping
from server.triton.predictor_steps import letterbox, postprocess
from server.triton.served_model import ServedModel
from server.triton.transport import (
    Transport,
    TritonEndpoint,
    TritonFailed,
    TritonModelMissing,
    TritonRefused,
    TritonTimeout,
    TritonUnavailable,
    open_transport,
    require_client,
)

log = logging.getLogger(__name__)
_T = TypeVar("_T")

CONNECT_TIMEOUT_S = 5.0
REQUEST_TIMEOUT_S = 10.0
RETRY_FIRST_S = 0.5
RETRY_MAX_S = 4.0
#: How long an available server may go unasked before `probe` asks it whether it still serves the model.
IDLE_PROBE_S = RETRY_MAX_S
#: A node that keeps sending frames reads the model's description again once it is this old, before
#: its next batch: a model replaced in place on the server (model control ``poll`` or ``explicit``,
#: with no outage between) is noticed within it, and one with other class names is not used.
DESCRIPTION_MAX_AGE_S = RETRY_MAX_S
#: A refused request has the model described again at most this often: a model replaced in place
#: is noticed within it, and a stream whose frames the model never takes costs no request per batch.
REDESCRIBE_AFTER_REFUSAL_S = RETRY_MAX_S
_CLOSED = "the model was closed"

#: The server's answer to one request of a batch: its outputs, or its refusal.
_Answer = list[np.ndarray] | TritonRefused


class TritonModel:
    """A model on a Triton server, as the inference thread runs it (`server.inference.backend.InferenceBackend`).

    ``names``, ``task`` and ``overrides["imgsz"]`` are known once the server has described the model
    (at start, or at the first successful attempt when it was down then), and read again after each
    outage or refusal and every `DESCRIPTION_MAX_AGE_S`. `submit`, `detect` and `probe` are for the
    inference thread, `close` for any; the network calls themselves run on one requester thread of
    this model's own, which owns the connection, so the inference thread can prepare or finish one
    batch while the server works on the previous one. `status` may be read from any thread; the
    availability state behind it changes under its lock, from either thread.
    """

    def __init__(self, endpoint: TritonEndpoint, spec: str, *, request_timeout_s: float = REQUEST_TIMEOUT_S) -> None:
        self.endpoint = endpoint
        self._spec = spec
        self._request_timeout_s = request_timeout_s
        # One thread, so requests go out one at a time in the order submitted, the next as soon as
        # the last is answered; the worker sends the next only once the last is answered, so at most one
        # waits here.
        self._requester = ThreadPoolExecutor(max_workers=1, thread_name_prefix="triton-requests")
        self._transport: Transport | None = None  # the requester thread's, but for `close`
        self._transport_lock = threading.Lock()  # guards `_transport` and `_closed`
        self._reconnect = False  # set after a failure, acted on by the requester
        self._closed = False
        self._served: ServedModel | None = None
        self._described = False  # whether `_served` was read since the last failure or refusal
        self._described_at = 0.0  # when it was, by the monotonic clock
        #: Whether the server failed a request on its side (`TritonFailed`) since inference last went
        #: through: it may describe the model all the same, so only an inference request that goes
        #: through shows it is back (`_up` clears it), and an idle node's `probe` sends one.
        self._requests_failing = False
        #: The inference thread's last description read in the background: its `probe`, or a busy
        #: node's every `DESCRIPTION_MAX_AGE_S`; one at a time.
        self._probing: Future[Any] | None = None
        self._fixed_size_said = False  # whether a size asked of a fixed-shape model was said to be unused
        self._last_exchange_at = 0.0  # monotonic, when the requester thread last asked the server anything
        self._status_lock = threading.Lock()  # guards the three below and `_status`
        self._failures = 0
        self._retry_at = 0.0  # monotonic; no request goes out before it
        self._status = InferenceStatus(available=False, error="not connected yet")
        self.overrides: dict[str, Any] = {}
        self.requests = 0
        self.failed_requests = 0
        self.request_seconds = 0.0

    # -- what the worker reads ---------------------------------------------------------------------

    kind = "Triton"
    pipelined = True

    @property
    def runs_on(self) -> str:
        return str(self.endpoint)

    @property
    def default_imgsz(self) -> int | None:
        """The served model's size once it was described; None before (its server down at start)."""
        known = self.overrides.get("imgsz")
        return None if known is None else int(known)

    @property
    def fixed_shape(self) -> tuple[int, int] | None:
        """(height, width): the only images the served model takes, whatever ``imgsz`` a stream asks
        (`InferenceWorker.check_options` refuses another); None for a model of any size, and before it
        was described, when a stream asking another is only told of it in the log (`_prepare`)."""
        served = self._served
        return None if served is None else served.fixed_shape

    @property
    def request_stats(self) -> RequestStats:
        return RequestStats(self.requests, self.failed_requests, self.request_seconds)

    @property
    def names(self) -> dict[int, str]:
        return {} if self._served is None else self._served.names

    @property
    def task(self) -> str | None:
        return None if self._served is None else self._served.task

    @property
    def status(self) -> InferenceStatus:
        with self._status_lock:
            return self._status

    def connect(self) -> None:
        """Describe the model now. `ModelError` if the server says it cannot be used or does not have
        it; if the server is unreachable, or has the model but not loaded (yet), the model stays
        unavailable and the next `submit` tries again."""
        with contextlib.suppress(InferenceUnavailable):  # `_down` has said so; `submit` tries again
            self._send(self._first_description).result()
            self._up()

    def close(self) -> None:
        """From any thread, at once: requests not sent yet fail, one still out fails as its connection is
        closed under it, and the requester thread ends."""
        with self._transport_lock:
            if self._closed:
                return
            self._closed = True
            transport, self._transport = self._transport, None
        self._requester.shutdown(wait=False, cancel_futures=True)
        if transport is not None:
            transport.close()

    def submit(
        self,
        images: list[np.ndarray],
        *,
        imgsz: int | None = None,
        conf: float = 0.25,
        iou: float = 0.7,
        agnostic_nms: bool = False,
        max_det: int = 300,
        on_answer: Callable[[], None] | None = None,
        **_: Any,
    ) -> PendingDetections:
        """Send ``images`` (all of one shape, as the worker groups them), one request per `max_batch`
        images, and return at once; ``on_answer`` is called (on the requester thread) when the server
        has answered, or the request failed. ``imgsz`` None: the served model's own size.

        Raises `InferenceUnavailable`, here while the server is known to be down (or the model was
        closed) and from `PendingDetections.result` when the requests fail; there, an image the server
        refused has its `TritonRefused` in place of its detections.
        """
        self._refuse_while_down()
        served = self._served
        if served is None or not self._described:
            served = self._outcome(self._send(self._describe))
        elif time.monotonic() - self._described_at >= DESCRIPTION_MAX_AGE_S and not self._probe_in_flight():
            # Not waited for: this batch goes out as the model was, queued behind the description,
            # and is not sent if the description shows the model can no longer be used.
            self._probing = self._send(self._redescribe)
            self._probing.add_done_callback(self._background_done)
        batch, input_shape = self._prepare(served, images, imgsz)
        timing = RequestTiming()
        request = self._send(self._infer, served, batch, timing)
        if on_answer is not None:
            request.add_done_callback(lambda _: on_answer())
        frame_shapes = [image.shape[:2] for image in images]
        step = served.max_batch or 1  # images per request, as `_infer` splits them

        def detections(answers: list[_Answer]) -> list[Detections | TritonRefused]:
            found: list[Detections | TritonRefused] = []
            for index, answer in enumerate(answers):
                shapes = frame_shapes[index * step : (index + 1) * step]
                if isinstance(answer, TritonRefused):
                    found += [answer] * len(shapes)
                else:
                    found += postprocess(served, answer, input_shape, shapes, conf, iou, agnostic_nms, max_det)
            return found

        return PendingDetections(self, request, detections, timing)

    def detect(self, images: list[np.ndarray], **options: Any) -> list[Detections]:
        """`submit`, then wait: the detections of each image; `TritonRefused` if the server refused any."""
        found: list[Detections] = []
        for outcome in self.submit(images, **options).result():
            if isinstance(outcome, TritonRefused):
                raise outcome
            found.append(outcome)
        return found

    def probe(self, on_answer: Callable[[], None]) -> None:
        """Inference thread, while it has no frames to send: ask the server whether it serves the model
        when a batch would have (it is down, and the next attempt is due) or when it was not heard
        from for `IDLE_PROBE_S`. Returns at once; ``on_answer`` is called (on the requester thread)
        once `status` may have changed. Without this an idle node would say unavailable long after
        the server came back, and available after it went away."""
        if self._probe_in_flight():
            return
        with self._status_lock:
            due = self._retry_at if not self._status.available else self._last_exchange_at + IDLE_PROBE_S
        if time.monotonic() < due:
            return
        try:
            self._probing = self._send(self._probe)
        except InferenceUnavailable:  # closed
            return
        self._probing.add_done_callback(self._background_done)
        self._probing.add_done_callback(lambda _: on_answer())

    # -- inside -------------------------------------------------------------------------------------

    def _probe_in_flight(self) -> bool:
        return self._probing is not None and not self._probing.done()

    def _background_done(self, probing: Future[Any]) -> None:
        """Any thread: the end of a `probe` or background description, whose outcome no caller reads. An
        exception of no expected kind (a client's own error, a bug) is logged and makes inference
        unavailable, saying so, rather than be lost with the future while the node says all is well."""
        if probing.cancelled() or self._closed:
            return
        exc = probing.exception()
        if exc is None or isinstance(exc, InferenceUnavailable):  # fine, or said by `_down` already
            return
        log.error("checking the model at %s failed", self.endpoint, exc_info=exc)
        self._down(f"checking the model on Triton at {self.endpoint.address} failed: {type(exc).__name__}: {exc}")

    def _send(self, call: Callable[..., _T], *args: Any) -> Future[_T]:
        """Queue ``call`` for the requester thread, as an `_attempt`."""
        try:
            return self._requester.submit(self._attempt, call, *args)
        except RuntimeError:  # the requester was shut down: closed
            raise InferenceUnavailable(_CLOSED) from None

    def _outcome(self, request: Future[_T]) -> _T:
        """The request's result (raising as `submit` says); a served model segcast cannot use makes
        inference unavailable for every stream."""
        try:
            return request.result()
        except CancelledError:  # dropped unsent by `close`
            raise InferenceUnavailable(_CLOSED) from None
        except ModelError as exc:
            raise self._unusable(exc) from None

    def _unusable(self, exc: ModelError) -> InferenceUnavailable:
        self._down(str(exc))
        return InferenceUnavailable(self.status.error)

    def _refuse_while_down(self) -> None:
        """Raise `InferenceUnavailable` while the server is down and the next attempt is not due yet."""
        with self._status_lock:
            status, waiting = self._status, time.monotonic() < self._retry_at
        if waiting:
            raise InferenceUnavailable(status.error)

    def _attempt(self, call: Callable[..., _T], *args: Any) -> _T:
        """Requester thread: ``call`` (one exchange with the server), unless the model was closed or
        the server failed since it was queued. A server that does not answer, fails the request on
        its own side (`TritonFailed`) or does not serve the model now (`TritonModelMissing`) is down
        from that moment, so what is queued behind fails here without being sent. One that answers
        an inference request, even no, is up; an answered description alone does not make it so (but
        for the first, in `connect`, and an idle node's `probe` of a server that failed no request
        on its side): a server that describes its model but fails every request stays down, backing
        off, and never flaps."""
        if self._closed:
            raise InferenceUnavailable(_CLOSED)
        self._refuse_while_down()
        try:
            value = call(*args)
        except Exception as exc:
            if self._closed:  # `close` ended the call: no outage to report
                raise InferenceUnavailable(_CLOSED) from None
            if not isinstance(exc, TritonUnavailable):
                raise
            if isinstance(exc, TritonFailed):
                with self._status_lock:
                    self._requests_failing = True
            if isinstance(exc, TritonModelMissing):  # unloaded, or unloaded by a server shutting down?
                exc = unless_stopping(self._connection(), self._counted, self._describe_timeout_s, exc)
            self._down(outage(self.endpoint, exc))
            raise InferenceUnavailable(self.status.error) from None
        if call == self._infer:
            self._up()
        return value

    def _connection(self) -> Transport:
        """The requester thread's connection; a fresh one after a failure (see `_down`)."""
        with self._transport_lock:
            if self._closed:
                raise InferenceUnavailable(_CLOSED)
            if self._reconnect and self._transport is not None:
                self._transport.close()
                self._transport = None
            self._reconnect = False
            if self._transport is None:
                self._transport = open_transport(self.endpoint, CONNECT_TIMEOUT_S)
            return self._transport

    def _first_description(self) -> ServedModel:
        """`_describe` at start, where a model the server does not have is a wrong name, said in one
        line, not an outage to wait out; one it has but has not loaded (yet) is such an outage. A
        NOT_FOUND the repository index cannot explain (the server restricts it) is taken for a
        wrong name, as a typo that only shows as a node waiting for ever is the worse mistake."""
        try:
            return self._describe()
        except ModelNotLoaded:
            raise
        except TritonModelMissing as exc:
            raise cannot_serve(self._spec, self.endpoint, exc) from None

    def _probe(self) -> None:
        """Requester thread: describe the model, and if the server failed a request on its side since
        inference last went through, send it one blank image at the model's size, as a frame would
        be. For a node with no frames to send, that is all there is to show that inference would
        work: a server whose backend crashed may describe its model all the same."""
        served = self._redescribe()
        if served is None:
            return
        with self._status_lock:
            failing = self._requests_failing
        if failing:
            blank = np.zeros((served.imgsz, served.imgsz, 3), np.uint8)
            self._infer(served, letterbox(served, [blank], None)[0], RequestTiming())
        self._up()

    def _redescribe(self) -> ServedModel | None:
        """Requester thread: describe the model again; the model if segcast can still use it. One it
        cannot (other class names than at start) makes inference unavailable, saying why, as after an
        outage. Being described is no sign that inference works (see `_attempt`): the caller says if it is."""
        try:
            return self._describe()
        except ModelError as exc:
            self._down(str(exc))
            return None

    def _describe(self) -> ServedModel:
        """The served model, read from the server (`read_description`: `ModelError` if segcast cannot use
        it, or if its class names are not those the node has used since it first read them)."""
        served = read_description(
            self._connection(), self.endpoint, self._spec, self._served, self._counted, self._describe_timeout_s
        )
        if served != self._served:  # the first time, or a restarted server serves another model by that name
            log.info(
                "Triton model %s: %s, %d classes, input %s, max batch %d, version %s",
                self.endpoint,
                served.task,
                len(served.names),
                served.fixed_shape or f"dynamic at {served.imgsz}",
                served.max_batch,
                served.version or "unpinned (the repository index was not read)",
            )
        self.overrides["imgsz"] = served.imgsz
        self._served, self._described, self._described_at = served, True, time.monotonic()
        return served

    @property
    def _describe_timeout_s(self) -> float:
        """No longer than a request may take: a hung server must not hold a retry longer than a batch."""
        return min(CONNECT_TIMEOUT_S, self._request_timeout_s)

    def _prepare(
        self, served: ServedModel, images: list[np.ndarray], imgsz: int | None
    ) -> tuple[np.ndarray, tuple[int, int]]:
        """`letterbox`, saying once that a fixed-shape model's frames are not letterboxed to ``imgsz``: a
        stream's ``imgsz`` is refused when it is set if the model was described by then (`fixed_shape`),
        so this is for one set before (its server down at start) or a model replaced in place."""
        if served.fixed_shape is not None and imgsz is not None and imgsz != served.imgsz and not self._fixed_size_said:
            self._fixed_size_said = True
            height, width = served.fixed_shape
            log.warning(
                "Triton model %s takes %dx%d images only: frames are letterboxed to that, not to imgsz %d",
                self.endpoint,
                width,
                height,
                imgsz,
            )
        return letterbox(served, images, imgsz)

    def _infer(self, served: ServedModel, batch: np.ndarray, timing: RequestTiming) -> list[_Answer]:
        """Requester thread: send ``batch``, in parts of the served max batch, which share one deadline
        from now (not from when the batch was submitted: time spent queued behind another is no
        sign of a server that does not answer). Each part's outputs, or the server's refusal of it:
        a refused part costs its own images only. A refusal also marks the description stale, so
        a model replaced on the server (another input size) is read again before the next batch.
        ``timing`` gets the seconds from sending to the last answer."""
        sent = time.monotonic()
        deadline = sent + self._request_timeout_s
        transport = self._connection()
        step = served.max_batch or 1  # without server-side batching, the batch dimension is the model's own
        answers: list[_Answer] = []
        # A part that finds the deadline spent, or runs out of what the parts before it left, failed
        # for their time: they were answered, so the server is slow, not down (no `_down`, no backoff).
        slow = InferenceUnavailable(
            f"no answer within {self._request_timeout_s:.3g} s: the batch's first requests took most of it"
        )
        for first in range(0, len(batch), step):
            left_s = deadline - time.monotonic()
            if left_s <= 0:
                raise slow
            try:
                answers.append(
                    self._counted(
                        transport.infer,
                        self.endpoint.model,
                        served.input_name,
                        batch[first : first + step],
                        list(served.outputs),
                        left_s,
                        served.version,
                    )
                )
            except TritonRefused as exc:
                # The model may have been replaced in place (a new input size): read it again, but not
                # before every batch of a stream whose frames it never takes.
                if time.monotonic() - self._described_at >= REDESCRIBE_AFTER_REFUSAL_S:
                    self._described = False
                answers.append(exc)
            except TritonTimeout:  # said as the batch's deadline, not as the time this part had left of it
                if answers:
                    raise slow from None
                raise TritonTimeout(f"not answering (nothing within {self._request_timeout_s:.3g} s)") from None
        timing.request_s = time.monotonic() - sent
        return answers

    def _counted(self, call: Callable[..., _T], *args: Any) -> _T:
        """Requester thread: one exchange with the server, counted in ``requests``, ``failed_requests``
        (whatever the reason) and ``request_seconds``."""
        started = time.perf_counter()
        self.requests += 1
        try:
            return call(*args)
        except Exception:
            self.failed_requests += 1
            raise
        finally:
            self.request_seconds += time.perf_counter() - started
            self._last_exchange_at = time.monotonic()

    def _down(self, reason: str) -> None:
        with self._status_lock:
            self._failures += 1
            delay = min(RETRY_MAX_S, RETRY_FIRST_S * 2 ** (self._failures - 1))
            self._retry_at = time.monotonic() + delay
            changed = self._status.available or self._status.error != reason
            self._status = InferenceStatus(False, reason, time.time() + delay)
        # A fresh connection on the next attempt: a gRPC channel that saw the server go keeps its
        # own, longer reconnect backoff, which would delay recovery well past ours.
        self._reconnect = True
        self._described = False
        if changed:
            log.warning("inference unavailable: %s (next attempt in %.1f s)", reason, delay)

    def _up(self) -> None:
        with self._status_lock:
            recovered = self._failures > 0
            self._failures, self._retry_at = 0, 0.0
            self._requests_failing = False
            if not self._status.available:
                self._status = InferenceStatus(True)
        if recovered:
            log.info("inference available again at %s", self.endpoint)


@dataclass(slots=True)
class RequestTiming:
    """How long a batch's requests took, from the first sent to the last answered: set by the requester
    thread before the batch's future completes, so read safely once it has."""

    request_s: float = 0.0


class PendingDetections:
    """Detections of a request that is out: `done` without waiting, `result` waits (and post-processes)."""

    def __init__(
        self,
        model: TritonModel,
        request: Future[list[_Answer]],
        detections: Callable[[list[_Answer]], list[Detections | TritonRefused]],
        timing: RequestTiming,
    ) -> None:
        self._model = model
        self._request = request
        self._detections = detections
        self._timing = timing
        #: The model's time for the batch once `result` returned: its requests' round trips and the
        #: post-processing on this node, not the time it waited to be sent behind another batch, nor
        #: the time its answer waited for the inference thread.
        self.seconds = 0.0

    def done(self) -> bool:
        return self._request.done()

    def result(self) -> list[Detections | TritonRefused]:
        """The detections of each image, or the server's refusal of the request that carried it;
        `InferenceUnavailable` if the requests failed. Inference thread only."""
        answers = self._model._outcome(self._request)
        started = time.perf_counter()
        try:
            found = self._detections(answers)
        except ModelError as exc:  # an answer that does not fit the model's description
            raise self._model._unusable(exc) from None
        self.seconds = self._timing.request_s + time.perf_counter() - started
        return found


def connect(spec: str, endpoint: TritonEndpoint) -> TritonModel:
    """The model at ``endpoint``, described now if the server answers (`ModelError` if it cannot be used,
    its requester thread and connection closed: a refused start leaves nothing running)."""
    require_client(spec)
    model = TritonModel(endpoint, spec)
    try:
        model.connect()
    except BaseException:
        model.close()
        raise
    return model
