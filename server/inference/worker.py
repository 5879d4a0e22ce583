"""The inference thread: the only owner of the model, feeding each stream's own tracker.

Each cycle takes the newest unprocessed frame of every stream (older ones were already overwritten
in their `LatestFrame` slot and counted), runs them through the model as one batch, and updates each
stream's tracker with that stream's result only. Streams can be added and removed at any time from
other threads; the trackers themselves are touched by this thread alone.

Which frames share one ``predict`` call, and at what settings, is `server.inference.batching`'s:
a stream gets the same tracks batched or alone.

The model is behind `server.inference.backend.InferenceBackend`: a model run here
(`server.inference.local`) or on a Triton server (`server.triton`). A backend may be `pipelined` (a
Triton server's): the next batch goes out once the last is answered and before the thread finishes
that one, so while the server runs one the thread tracks and delivers the one before, and its answer
wakes the thread like a new frame does. Batches are
still finished strictly in the order they were taken, so each tracker sees its stream's frames in
order. Without frames for `IDLE_PROBE_AFTER_S` the thread has the backend check by itself
(`InferenceBackend.probe`), so an idle node's inference status stays true. `InferenceWorker.stop`
closes the backend first, which ends what is out at once: a hung server never holds up the thread's exit.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from server.analytics.events import Counts
from server.analytics.shapes import check_classes
from server.frames import Frame, FrameResult
from server.inference import batching
from server.inference.analysis import analyse, pending_shapes
from server.inference.backend import BatchFailed, InferenceBackend, InferenceRefused, RequestStats
from server.inference.batching import Batch, Job, group_jobs, predict_options
from server.inference.local import LocalModel
from server.inference.models import (
    InferenceStatus,
    InferenceUnavailable,
    ModelError,
    check_device,
    open_model,
    resolve_device,
    runs_here,
    use_cores_or_say_why,
)
from server.inference.options import InferenceOptions
from server.inference.pace import BusyShare
from server.inference.registration import StreamRegistration, StreamStats
from server.options import MODEL_IMGSZ, StreamOptions
from server.sources.base import LatestFrame
from server.tracking.filters import check_tracked_classes
from server.tracking.stream import StreamTracker

if TYPE_CHECKING:
    from ultralytics import YOLO

log = logging.getLogger(__name__)

IDLE_POLL_S = 0.1
#: Time without a frame to infer after which the backend checks by itself that it could run one (a remote
#: model's server is asked whether it still serves the model; a node whose cameras send frames asks with
#: them: a probe then could only make its status flap).
IDLE_PROBE_AFTER_S = 1.0
JOIN_TIMEOUT_S = 5.0
MODEL_LOAD_TIMEOUT_S = 600.0
#: The stream options `InferenceWorker.change_shapes` changes on a running stream: neither the model's
#: call nor the tracker's own state depends on them (the object filter before it and the reporting gates
#: after it follow them, `StreamTracker.follow`): ``class_filters`` only where the stream's lowest ``conf``
#: stays as it was (`StreamOptions.lowest_conf`). Any other change restarts the stream.
IN_PLACE_OPTIONS = ("zones", "lines", "process_fps", "min_area", "max_area", "ignore_zones", "class_filters")
#: Whose classes a stream's misfit option names, by its key (`InferenceWorker._unfit`'s advice).
_WHOSE_CLASSES = {"ignore_zones": "its ignore zones", "class_filters": "its class filters"}


class InferenceWorker:
    """Owns the model thread. `start` blocks until the model is loaded and raises `ModelError` if not.

    ``on_result`` is called on the inference thread for every processed frame, in frame order per
    stream; it must hand the result over and return quickly. ``on_status``, likewise, whenever
    `inference_status` changes (a remote model's server going away or coming back); ``on_unfit``
    (stream id, its options, why) once a stream's options turn out never to fit the model (`_unfit`).
    """

    def __init__(
        self,
        model_spec: str,
        on_result: Callable[[FrameResult], None],
        options: InferenceOptions,
        *,
        load: Callable[[str], YOLO | InferenceBackend] = open_model,
        on_status: Callable[[InferenceStatus], None] | None = None,
        on_unfit: Callable[[str, StreamOptions, str], None] | None = None,
    ) -> None:
        self._model_spec = model_spec
        self._on_result = on_result
        self._options = options
        self._load = load
        self._lock = threading.Lock()
        self._streams: dict[str, StreamRegistration] = {}
        #: Streams removed to be added again with new settings (`remove_stream`), until they are.
        self._restarting: dict[str, StreamRegistration] = {}
        self._work_ready = threading.Event()
        self._stop = threading.Event()
        self._loaded = threading.Event()
        self._load_error: ModelError | None = None
        #: Why the thread ended on its own (`_run`), which the inference status then says; None while it serves.
        self._ended: str | None = None
        self._thread = threading.Thread(target=self._run, name="inference", daemon=True)
        self._next_first = 0  # round-robin start, so streams beyond max_batch are not always last
        self._backend: InferenceBackend | None = None
        self._on_status = on_status
        self._on_unfit = on_unfit
        self._last_status: InferenceStatus | None = None
        #: Batches sent to the model, one per ``predict`` call or remote request (``segcast_inference_cycles_total``):
        #: a cycle split by image size or ``max_batch`` makes several, one of only ended files' frames none.
        self.cycles = 0
        #: How much of its time the thread spends on batches rather than waiting for frames
        #: (``segcast_inference_busy``): near 1, the streams share what it can do and skip the rest.
        self.busy = BusyShare()

    @property
    def model_spec(self) -> str:
        """The model as ``--model`` named it: a path, a name ultralytics knows, or a Triton URL."""
        return self._model_spec

    @property
    def class_names(self) -> dict[int, str]:
        """The model's classes; empty until it is loaded (for a Triton model, until the server described it)."""
        backend = self._backend
        return {} if backend is None else dict(backend.names)

    @property
    def remote_stats(self) -> RequestStats | None:
        """The remote model's request counters, which /metrics shows; None for a local model."""
        backend = self._backend
        return None if backend is None else backend.request_stats

    @property
    def ended(self) -> str | None:
        """Why the inference thread ended on its own (``inference thread stopped: ...``); None while it serves
        or once it ended as `stop` asked. Such a thread never serves again, whatever the model: the server
        stops on it (`server.app`) for a service manager to restart segcast. A remote model's outage does
        not end the thread (it heals by itself): only the inference status says it."""
        return self._ended

    @property
    def inference_status(self) -> InferenceStatus:
        """Whether frames can be inferred now: a local model always can, a remote one while its server answers."""
        if self._ended is not None:
            return InferenceStatus(available=False, error=self._ended)
        backend = self._backend
        return InferenceStatus(available=False) if backend is None else backend.status

    @property
    def stream_defaults(self) -> StreamOptions:
        """The options a stream gets when it is added without its own."""
        return self._options.stream_defaults()

    def start(self) -> None:
        self._thread.start()
        self._loaded.wait(MODEL_LOAD_TIMEOUT_S)
        if self._load_error is not None:
            self._thread.join(JOIN_TIMEOUT_S)
            raise self._load_error
        if not self._loaded.is_set():
            raise ModelError(f"--model {self._model_spec}: not loaded after {MODEL_LOAD_TIMEOUT_S:.0f} s")

    def stop(self) -> None:
        self._stop.set()
        backend = self._backend
        if backend is not None:
            backend.close()  # the thread may be waiting for an answer: it fails at once, the server hung or not
        self._work_ready.set()
        if self._thread.is_alive():
            self._thread.join(JOIN_TIMEOUT_S)
        if self._thread.is_alive():
            log.warning("inference thread did not stop within %.1f s", JOIN_TIMEOUT_S)

    def check_options(self, options: StreamOptions) -> None:
        """Raise ValueError if ``options`` do not fit the loaded model (a class name it does not know, in the
        stream's classes, a shape's or a class filter; an ``imgsz`` other than the one input size a static
        export or a Triton model takes).

        Without this such a stream would run the model on every frame and fail in its tracker each time,
        or be shown at an ``imgsz`` its frames are not letterboxed to. A remote model whose server has
        not answered yet cannot be asked: its streams' classes are checked once it has (`_unfit`), and
        a size it does not take is said in the log when their frames go out.
        """
        names = self.class_names
        if names:
            check_tracked_classes(names, options)
            check_classes(options.zones, options.lines, names)
        backend = self._backend
        fixed = None if backend is None else backend.fixed_shape
        if fixed is not None and options.imgsz is not None and options.imgsz != max(fixed):
            height, width = fixed
            raise ValueError(
                f"imgsz: the model takes {width}x{height} images only, got {options.imgsz}; give {max(fixed)} "
                f"or {MODEL_IMGSZ!r} for its own size"
            )

    def add_stream(
        self,
        stream_id: str,
        fps: float | Callable[[], float],
        options: StreamOptions | None = None,
        same_reader: bool = False,
    ) -> LatestFrame:
        """Register a stream and return the slot its reader should fill.

        ``fps`` is the source's nominal rate, only the tracker's first guess: it then follows the
        rate the stream is really processed at. A callable is read when the tracker is made, on the
        stream's first frame: a file's rate is known once its reader has opened it. Re-adding an id
        replaces the stream with a fresh one, unless it was removed ``restarting``: then the new one
        carries on from it (see `remove_stream`). ``same_reader``: the stream it restarts goes on
        reading the same source (only its options changed, `StreamManager._retrack`), so its counts
        of thinned and failed frames, its last error and its frame size carry on here too, as its
        reader's counts do: a total that went back to 0 alone would read as a reset to ``rate()`` and
        break sums with the others. A restart that reopens the source starts them all from 0.
        """
        slot = LatestFrame(self._work_ready)
        with self._lock:
            restarts = self._restarting.pop(stream_id, None)
            options = options or self.stream_defaults
            replaced = self._streams.get(stream_id)
            if replaced is not None:
                replaced.mark_removed()
            registration = StreamRegistration(stream_id, fps, options, slot, restarts)
            if same_reader and restarts is not None:
                registration.carry_counts(restarts)
            self._streams[stream_id] = registration
        return slot

    def change_shapes(self, stream_id: str, options: StreamOptions) -> bool:
        """Give a running stream new zones, lines, ``process_fps`` or object filter without restarting it; False
        if there is no such stream.

        ``options`` must differ from the stream's own in `IN_PLACE_OPTIONS` only. Its tracker, ids and
        video carry on; from its next frame the analytics use the new shapes, keeping the state of
        those that did not change (`StreamAnalytics.reshaped`), a new cap counts from that frame, and
        the tracker is given what the new filter lets through.
        """
        with self._lock:
            registration = self._streams.get(stream_id)
            if registration is None:
                return False
            registration.options = options
            registration.classes_checked = False  # its ignore zones' classes, where the model was not described
        return True

    def remove_stream(self, stream_id: str, restarting: bool = False) -> None:
        """Forget a stream: a frame of it already in the model is dropped, never tracked nor delivered.

        ``restarting``: it is coming back with new settings (`add_stream` with the same id, now or after
        its new source failed to open). Then the stream's ids carry on after the ones it gave so far, and
        its tracks and their zone visits end on the restarted stream's first frame, as on a looped
        file's (`StreamTracker` ``follows``). A plain removal forgets the id: added again, it starts over.
        """
        with self._lock:
            registration = self._streams.pop(stream_id, None)
            if not restarting:
                for removed in (registration, self._restarting.pop(stream_id, None)):
                    if removed is not None:
                        removed.mark_removed()
            elif registration is not None:
                self._restarting[stream_id] = registration

    def counts(self, stream_id: str) -> Counts | None:
        """The stream's newest zone and line counts; None if it has no zones or lines (or is unknown).

        Of the shapes it has now: one removed or moved since its last frame is left out.
        """
        read = self.counts_since(stream_id)
        return None if read is None else read[0]

    def counts_since(self, stream_id: str) -> tuple[Counts, Mapping[str, float]] | None:
        """`counts`, and when the totals of each of their lines began (`StreamAnalytics.since`, which may
        name lines they leave out), read from the same analytics: a stream restarted meanwhile has new ones,
        whose totals start again, and a line's time must be that of the totals it is read with."""
        with self._lock:
            r = self._streams.get(stream_id)
        if r is None or (analytics := r.analytics) is None:
            return None
        options = r.options
        counts = analytics.counts_for(options.zones, options.lines)
        return counts, analytics.since  # replaced before the counts: read after them, it has each of their lines

    def stats(self, stream_id: str) -> StreamStats | None:
        with self._lock:
            r = self._streams.get(stream_id)
        if r is None:
            return None
        return StreamStats(
            processed=r.processed,
            errors=r.errors,
            last_error=r.last_error,
            last_error_at=r.last_error_at,
            processing_fps=r.processing_fps,
            analytics_error=r.analytics_error,
            frame_size=r.frame_size,
            pending_shapes=pending_shapes(r),
            options_error=r.options_error,
            thinned=r.cap.thinned,
            ignored=r.ignored(),
        )

    # -- the inference thread ---------------------------------------------------------------------

    def _run(self) -> None:
        """The thread's body: load the model, then serve until `stop`. Whatever ends it otherwise is
        logged with its traceback and shown as the inference status (`ended`), never a silent death."""
        try:
            self._serve()
        except BaseException as exc:  # SystemExit too, which the thread would end on without a word
            self._ended = f"inference thread stopped: {type(exc).__name__}: {exc}"
            log.critical("%s; no frame is inferred until segcast is restarted", self._ended, exc_info=exc)
            self._report_status()

    def _serve(self) -> None:
        try:
            threads = use_cores_or_say_why()
            backend = self._backend = self._open_backend()
        except ModelError as exc:
            self._load_error = exc
            return
        except BaseException as exc:  # `start` must not take a thread that ended for a loaded model
            self._load_error = ModelError(
                f"--model {self._model_spec}: loading it stopped the inference thread ({exc!r})"
            )
            raise
        finally:
            self._loaded.set()
        if not backend.status.available:  # its reason was just logged
            log.info(
                "inference thread started on %s (max batch %d, %d CPU threads); %s unavailable: retrying",
                backend.runs_on,
                self._options.max_batch,
                threads,
                backend.kind,
            )
        else:
            log.info(
                "inference thread ready on %s (max batch %d, %d CPU threads)",
                backend.runs_on,
                self._options.max_batch,
                threads,
            )
        self._report_status()
        in_flight: deque[Batch] = deque()
        try:
            self._cycles(backend, in_flight)
            # Stopping: what was answered is still tracked and delivered, with its events (`_finish`).
            for batch in in_flight:
                if batch.answered():
                    self._finish(backend, batch)
        finally:
            backend.close()

    def _open_backend(self) -> InferenceBackend:
        """The model ``--model`` names, as a backend; `ModelError` (one line) if it cannot be had."""
        try:
            if runs_here(self._model_spec):
                self._options = replace(self._options, device=resolve_device(self._options.device))
                check_device(self._options.device)  # ultralytics would fail on every frame instead
                if self._options.half and not self._options.use_half:  # as on Triton: asked for, never unsaid
                    log.warning("half is not used: it needs a CUDA GPU, and the model runs on %s", self._options.device)
            else:  # asked for, so it must not go unused unsaid
                if self._options.device != "auto":
                    log.warning(
                        "device %s is not used: a model on Triton runs where its server places it "
                        "(instance_group in its config.pbtxt)",
                        self._options.device,
                    )
                if self._options.half:
                    log.warning(
                        "half is not used: a model on Triton runs at the precision of the model its server was given"
                    )
            loaded = self._load(self._model_spec)
        except ModelError:
            raise
        except Exception as exc:  # a loader that is not load_model: still one line, never a hang
            raise ModelError(f"--model {self._model_spec}: cannot load it ({exc})") from exc
        return loaded if isinstance(loaded, InferenceBackend) else LocalModel(loaded, self._options)

    def _cycles(self, backend: InferenceBackend, in_flight: deque[Batch]) -> None:
        """Take, submit and finish batches until `stop`. A cycle that fails (a bug outside any one frame:
        each frame's own failure is charged to its stream in `_finish`) is logged and the next one goes on."""
        last_frame_at = time.monotonic()
        told: str | None = None
        while not self._stop.is_set():
            try:
                if not (in_flight and in_flight[0].answered()):
                    # Waiting on a batch out is the model's work under way (busy), waiting for frames is not.
                    with nullcontext() if in_flight else self.busy.waiting():
                        self._work_ready.wait(IDLE_POLL_S)  # new frames, or an answer to a request
                self._work_ready.clear()
                # The next batch goes out once every earlier one is answered, and before those are finished:
                # the backend works on it while this thread finishes them. Sent behind one still out, its
                # frames waited that one's whole request, aging, where the slots keep the newest instead.
                out = all(batch.answered() for batch in in_flight)
                if out and (jobs := self._take_batch()):
                    in_flight.append(self._start(backend, jobs))
                    last_frame_at = time.monotonic()
                elif not in_flight and time.monotonic() - last_frame_at >= IDLE_PROBE_AFTER_S:
                    backend.probe(on_answer=self._work_ready.set)  # nothing to send: it checks by itself
                while in_flight and in_flight[0].answered():
                    self._finish(backend, in_flight.popleft())
                if in_flight and not backend.pipelined:  # finished as it is submitted: its answer comes next
                    self._finish(backend, in_flight.popleft())
                self._report_status()
            except Exception as exc:
                reason = f"{type(exc).__name__}: {exc}"
                if reason != told:  # the traceback once per new reason, not once per cycle
                    log.error("inference cycle failed (%s); the thread goes on", reason, exc_info=exc)
                told = reason
                self._stop.wait(IDLE_POLL_S)  # a failure that comes back every cycle must not spin a core

    def _report_status(self) -> None:
        status = self.inference_status
        if status != self._last_status and self._on_status is not None:
            try:
                self._on_status(status)
            except Exception:
                log.exception("inference status handler failed")
        self._last_status = status

    def _take_batch(self) -> list[Job]:
        """The newest frame of up to ``max_batch`` streams, starting the round where the last one stopped.

        A frame its stream's ``process_fps`` does not want is taken out of its slot and left out
        (`FrameCap`): its reader's next frame wakes the thread again, and a stream with no frame due
        takes no place in the batch, which the others' frames get.
        """
        with self._lock:
            registrations = list(self._streams.values())
        if not registrations:
            return []
        first = self._next_first % len(registrations)
        jobs: list[Job] = []
        for offset in range(len(registrations)):
            registration = registrations[(first + offset) % len(registrations)]
            if len(jobs) == self._options.max_batch:
                self._next_first = first + offset
                self._work_ready.set()  # the rest are picked up next cycle, without waiting
                break
            frame = registration.slot.take()
            if frame is None or not registration.cap.admits(frame, registration.options.process_fps):
                continue
            if (unfit := self._unfit(registration)) is None:
                jobs.append(Job(registration, frame))
            else:  # never sent to the model: it could not track what the model finds
                registration.failed(unfit)
        return jobs

    def _unfit(self, registration: StreamRegistration) -> str | None:
        """Why the stream's classes, an ignore zone's or a class filter can never fit the model (a class it
        lacks); None if it fits, or while the model's classes are not known.

        `check_options` refuses such a stream when it is added, but cannot while a remote model was
        never described (its server down at start): the stream is checked here once the model's
        classes are known, which they then stay (a remote model refuses other ones), and said once in
        the log with what to do. Its frames would otherwise each cost a request, then fail in its
        tracker. Changing its options (``PATCH``) makes it a new registration, checked anew, or, changed in
        place (`change_shapes`), checks it again.
        """
        if not registration.classes_checked and (names := self.class_names):
            registration.classes_checked = True
            try:
                check_tracked_classes(names, registration.options)
            except ValueError as exc:
                # Told here, with the fix: `_fail` must not tell it again as one frame's failure.
                registration.options_error = registration.told_error = str(exc)
                key = re.split(r"[.:\[]", str(exc), maxsplit=1)[0]  # "classes", "ignore_zones" or "class_filters"
                log.warning(
                    "[%s] none of its frames can be processed: %s; give %s classes the model knows "
                    "(PATCH /api/streams/%s, or its config file's %s and restart segcast)",
                    registration.stream_id,
                    exc,
                    _WHOSE_CLASSES.get(key, "the stream"),
                    registration.stream_id,
                    key,
                )
                if self._on_unfit is not None:
                    try:
                        self._on_unfit(registration.stream_id, registration.options, str(exc))
                    except Exception:
                        log.exception("[%s] unfit stream handler failed", registration.stream_id)
        return registration.options_error

    def _start(self, backend: InferenceBackend, jobs: list[Job]) -> Batch:
        """Submit ``jobs`` to the model, one batch per group of frames that may share a call."""
        batch = Batch(jobs)
        # A remote model not described yet (its server was down at start) has no size of its own, so
        # it uses the size the server describes rather than ultralytics' default.
        for (imgsz, iou, agnostic, _), group in group_jobs(jobs, backend.default_imgsz).items():
            self._submit(backend, batch, group, predict_options(group, imgsz, iou, agnostic, self._options))
        return batch

    def _submit(self, backend: InferenceBackend, batch: Batch, group: list[Job], options: dict[str, Any]) -> None:
        """Submit ``group`` as one batch; if the model fails on it as a whole, each frame goes alone, so
        only the culprit is charged."""
        try:
            pending = backend.submit([job.frame.image for job in group], on_answer=self._work_ready.set, **options)
        except BatchFailed:  # raised for several frames only: each one's own batch answers for itself
            self.cycles += 1
            for job in group:
                self._submit(backend, batch, [job], options)
        except InferenceUnavailable as exc:
            batching.fail_unavailable(group, exc)
        except Exception as exc:  # a bug or an odd model must cost these frames, not the thread
            batching.fail_model_error(group, exc)
        else:
            self.cycles += 1
            batch.waiting.append((group, pending))

    def _finish(self, backend: InferenceBackend, batch: Batch) -> None:
        """Wait for what is still out, then track and deliver every frame of the batch, in order. Once
        stopping, frames that failed are not: a remote model was closed under them (`stop`), and a
        stop is no outage to show; frames that were inferred are, with their events. Whatever fails on
        one frame (a bug in tracking or analytics, an answer that does not fit the batch) is charged to
        that frame's stream, and the others go on."""
        for group, pending in batch.waiting:
            try:
                answers = batching.with_answers(group, pending.result())
            except InferenceUnavailable as exc:
                batching.fail_unavailable(group, exc)
                continue
            except Exception as exc:
                batching.fail_model_error(group, exc)
                continue
            elapsed_ms = pending.seconds * 1000 / len(group)
            for job, found in answers:
                if isinstance(found, InferenceRefused):
                    batching.fail_refused(job, found, backend.kind)
                else:
                    job.detections, job.inference_ms = found, elapsed_ms
        stopping = self._stop.is_set()
        for job in batch.jobs:
            if stopping and job.error is not None:
                continue
            try:
                self._track_and_deliver(job)
            except Exception as exc:
                reason = f"processing failed: {type(exc).__name__}: {exc}"
                if reason != job.registration.told_error:  # the traceback once per new reason, as `_fail`'s line
                    log.warning(
                        "[%s] processing failed on frame %d", job.registration.stream_id, job.frame.seq, exc_info=exc
                    )
                self._fail(job.registration, job.frame, reason)

    def _track_and_deliver(self, job: Job) -> None:
        registration, frame = job.registration, job.frame
        if not self._current(registration):
            return  # removed (or restarted) while in the model: its tracks must not start unseen
        if job.error is None and job.detections is not None:
            tracker = registration.tracker
            # The model described by this frame's request, or options changed in place, are checked here:
            # a stream whose classes can never fit is failed once (`_unfit`), not on every frame.
            job.error = self._unfit(registration)
            if tracker is None and job.error is None:
                try:
                    tracker = registration.tracker = self._new_tracker(registration)
                except ValueError as exc:  # the stream's options do not fit the model (an unknown class name)
                    job.error = str(exc)
            if tracker is not None and job.error is None:
                try:
                    tracker.follow(registration.options)  # changed in place (`change_shapes`), checked above
                    tracks, track_events = tracker.update(job.detections, frame)
                except Exception as exc:  # a ValueError here too: a tracking bug (numpy's, OpenCV's), not the options
                    job.error = f"tracking failed: {type(exc).__name__}: {exc}"
                    if job.error != registration.told_error:  # the traceback once per new reason, as for the model
                        log.warning(
                            "[%s] tracking failed on frame %d", registration.stream_id, frame.seq, exc_info=True
                        )
                else:
                    registration.processed += 1
                    registration.frame_size = (frame.image.shape[1], frame.image.shape[0])
                    if registration.processed > 1:
                        registration.processing_fps = tracker.processing_fps
                    tracks, events, shown = analyse(registration, tracks, track_events, frame, self.class_names)
                    # Removed meanwhile, its frames must not leak out; restarted, this one's track starts must
                    # go out, as the restarted stream's tracker ends those tracks (`remove_stream`).
                    if not registration.removed:
                        self._deliver(FrameResult(frame, tracks, job.inference_ms, events, shown))
                    return
        self._fail(registration, frame, job.error or "no result from the model")
        if job.unavailable and not registration.removed:
            self._deliver(FrameResult.unanalysed(frame))

    def _current(self, registration: StreamRegistration) -> bool:
        with self._lock:
            return self._streams.get(registration.stream_id) is registration

    def _new_tracker(self, registration: StreamRegistration) -> StreamTracker:
        """The stream's tracker, made on its first frame; a restarted stream's goes on from its old one.

        Its first guess of the rate it is processed at is the source's, or the stream's cap if lower.
        """
        restarted = registration.restarted()
        follows = None if restarted is None else restarted.tracker
        fps = registration.fps() if callable(registration.fps) else registration.fps
        if (cap := registration.options.process_fps) is not None:
            fps = min(fps, cap)
        return StreamTracker(registration.stream_id, self.class_names, registration.options, fps, follows)

    def _deliver(self, result: FrameResult) -> None:
        try:
            self._on_result(result)
        except Exception:
            log.exception("[%s] result handler failed on frame %d", result.frame.stream_id, result.frame.seq)

    def _fail(self, registration: StreamRegistration, frame: Frame, reason: str) -> None:
        if registration.failed(reason):  # one line per new reason, not one per frame
            log.warning("[%s] frame %d not processed: %s", registration.stream_id, frame.seq, reason)
