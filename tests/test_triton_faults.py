"""Remote inference when Triton fails: hangs, refusals, a model that is not what its metadata says.

The server here is mostly `_FakeTriton`, a transport the test controls, put where `server.triton.model`
opens its connection; what goes over the wire is the real `TritonModel`'s. How each transport
classifies a server's errors is tested against `_served_failing`, a small gRPC or HTTP server that
describes that model and fails every inference request. tests/test_triton.py has the real server.
"""

from __future__ import annotations

import json
import logging
import queue
import re
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from typing import Any

import numpy as np
import pytest

import server.triton.model as triton_model
from server.app import create_app
from server.config import Settings, StreamConfig
from server.config_values import ConfigError
from server.frames import Frame, FrameResult
from server.inference.models import InferenceUnavailable, ModelError
from server.inference.options import InferenceOptions
from server.inference.worker import InferenceWorker
from server.options import StreamOptions
from server.streams import StreamManager
from server.triton.model import TritonModel
from server.triton.transport import (
    RepositoryModel,
    TritonEndpoint,
    TritonFailed,
    TritonModelMissing,
    TritonRefused,
    TritonTimeout,
    TritonUnavailable,
    _port_hint,
    open_transport,
)
from tests.support.http_stand_in import serving
from tests.support.listeners import SilentListener
from tests.support.ports import held_closed_port

SPEC = "grpc://triton:8001/m"
MASK_CHANNELS = 32
ANCHORS = 10  # boxes per image in an answer; all score 0 unless a test says otherwise

Answer = Callable[[np.ndarray, float], list[np.ndarray]]


#: Triton's answer, over gRPC and HTTP alike, for a model it does not serve: a wrong name, or one not loaded.
UNKNOWN_MODEL = "Request for unknown model: '{}' has no available versions"


class _FakeTriton:
    """A Triton server in the test's hands: it serves a model of ``names`` (max batch 2 unless told, any image size)
    as ``m`` once its ``state`` is READY, and answers each request with ``answer``, recording the shape
    and deadline of what was sent. Its repository index lists ``m`` and ``others``, or raises
    ``index_refused``."""

    def __init__(self) -> None:
        self.names = ["disc", "square"]
        self.task = "segment"
        self.imgsz = 320
        self.input_dims = [3, -1, -1]  # its input's, as the config gives them: any image size
        self.head_rows = -1  # output0's rows per box as the config gives them; -1: left to the model
        self.max_batch = 2  # 0: no server-side batching; each shape in the config then starts with a batch of 1
        self.down = False  # refuse connections, as a stopped server does
        self.exiting = False  # answer whether it is live as Triton does once told to stop: "Server exiting"
        self.live: bool | Exception = True  # its liveness answer otherwise: False or an error where it restricts it
        self.state, self.reason = "READY", ""  # the model's, as the repository index says them
        self.others = ["det"]  # the other models in its repository
        self.index_refused: Exception | None = None  # what a restricted repository API answers
        self.answer: Answer = self.empty_answer
        self.sent: list[tuple[tuple[int, ...], float]] = []
        self.closed = threading.Event()

    def model_config(self, model: str, timeout_s: float) -> dict[str, Any]:
        if self.down:
            raise TritonUnavailable("connection refused")
        if model != "m" or self.state != "READY":
            raise TritonModelMissing(UNKNOWN_MODEL.format(model))
        batch = [] if self.max_batch else [1]
        outputs = [{"name": "output0", "data_type": "TYPE_FP32", "dims": [*batch, self.head_rows, -1]}]
        if self.task == "segment":
            outputs.append({"name": "output1", "data_type": "TYPE_FP32", "dims": [*batch, MASK_CHANNELS, -1, -1]})
        metadata = {"task": self.task, "names": dict(enumerate(self.names)), "imgsz": [self.imgsz] * 2, "stride": 32}
        return {
            "max_batch_size": self.max_batch,
            "input": [{"name": "images", "data_type": "TYPE_UINT8", "dims": [*batch, *self.input_dims]}],
            "output": outputs,
            "parameters": {"metadata": {"string_value": repr(metadata)}},
        }

    def infer(
        self, model: str, input_name: str, batch: np.ndarray, outputs: list[str], timeout_s: float, version: str = ""
    ) -> list[np.ndarray]:
        if self.down:
            raise TritonUnavailable("connection refused")
        self.sent.append((batch.shape, timeout_s))
        return self.answer(batch, timeout_s)

    def repository_index(self, timeout_s: float) -> list[RepositoryModel]:
        if self.down:
            raise TritonUnavailable("connection refused")
        if self.index_refused is not None:
            raise self.index_refused
        others = [RepositoryModel(name, "1", "READY", "") for name in self.others]
        return [RepositoryModel("m", "1", self.state, self.reason), *others]

    def server_live(self, timeout_s: float) -> bool:
        if self.down:
            raise TritonUnavailable("connection refused")
        if self.exiting:
            raise TritonUnavailable("Server exiting")
        if isinstance(self.live, Exception):
            raise self.live
        return self.live

    def close(self) -> None:
        self.closed.set()

    def empty_answer(self, batch: np.ndarray, timeout_s: float) -> list[np.ndarray]:
        """What the network gives for frames without objects, in the shapes of the model it serves."""
        count, _, height, width = batch.shape
        masks = MASK_CHANNELS if self.task == "segment" else 0
        head = np.zeros((count, 4 + len(self.names) + masks, ANCHORS), np.float32)
        if self.task == "detect":
            return [head]
        return [head, np.zeros((count, MASK_CHANNELS, height // 4, width // 4), np.float32)]


class _Clock:
    """In place of the `time` module in `server.triton.model`: time passes only when a test moves it."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def perf_counter(self) -> float:
        return self.now

    def time(self) -> float:
        return self.now


@pytest.fixture
def triton(monkeypatch: pytest.MonkeyPatch) -> _FakeTriton:
    server = _FakeTriton()
    monkeypatch.setattr(triton_model, "open_transport", lambda endpoint, timeout_s: server)
    return server


def _model(spec: str = SPEC) -> TritonModel:
    endpoint = TritonEndpoint.parse(spec)
    assert endpoint is not None
    model = TritonModel(endpoint, spec)
    model.connect()
    return model


def _image(height: int = 360, width: int = 640) -> np.ndarray:
    return np.zeros((height, width, 3), np.uint8)


def test_after_a_request_goes_unanswered_those_queued_behind_it_fail_unsent(triton: _FakeTriton) -> None:
    """A hung server holds a node for one deadline, not one per request: a batch split in two by the
    max batch size, and two more of other frame sizes, are queued behind the first request."""
    sent, deadline_passed = threading.Event(), threading.Event()

    def hang(batch: np.ndarray, timeout_s: float) -> list[np.ndarray]:
        sent.set()
        deadline_passed.wait(30)
        raise TritonTimeout(f"not answering (nothing within {timeout_s:.3g} s)")  # as the transports say it

    triton.answer = hang
    model = _model()
    try:
        pending = [model.submit([_image()] * 4), model.submit([_image(480, 640)]), model.submit([_image(240, 320)])]
        assert sent.wait(30)
        deadline_passed.set()
        for request in pending:
            with pytest.raises(InferenceUnavailable, match=r"is not answering \(nothing within 10 s\)"):
                request.result()
    finally:
        model.close()
    assert len(triton.sent) == 1
    assert not model.status.available


def test_the_requests_of_a_batch_share_one_deadline(triton: _FakeTriton, monkeypatch: pytest.MonkeyPatch) -> None:
    """Five frames at a max batch of 2 are three requests; each takes 6 s, so the second gets the 4 s
    left of the batch's 10 and the third is not sent at all."""
    clock = _Clock()
    monkeypatch.setattr(triton_model, "time", clock)

    def slow(batch: np.ndarray, timeout_s: float) -> list[np.ndarray]:
        clock.now += 6.0
        return triton.empty_answer(batch, timeout_s)

    triton.answer = slow
    model = _model()
    try:
        with pytest.raises(InferenceUnavailable, match="no answer within 10 s"):
            model.detect([_image()] * 5)
    finally:
        model.close()
    assert [timeout_s for _, timeout_s in triton.sent] == [10.0, 4.0]


@pytest.mark.parametrize(
    ("first_part_s", "second_part_s"), [(10.0, None), (9.95, 0.05)], ids=["none-left", "too-little-left"]
)
def test_a_batch_whose_first_part_leaves_too_little_time_is_slow_not_down(
    triton: _FakeTriton, monkeypatch: pytest.MonkeyPatch, first_part_s: float, second_part_s: float | None
) -> None:
    """Four frames at a max batch of 2 are two requests. The first is answered, but takes all or nearly
    all of the batch's 10 s: the second is then not sent, or sent with too little time and not answered
    in it. Either way the server answered: the batch fails as slow, and the node stays available, so
    the batch queued behind it is sent with its whole deadline, not failed unsent."""
    clock = _Clock()
    monkeypatch.setattr(triton_model, "time", clock)
    both_submitted = threading.Event()

    def slow(batch: np.ndarray, timeout_s: float) -> list[np.ndarray]:
        assert both_submitted.wait(30)
        if len(triton.sent) == 1:
            clock.now += first_part_s
        elif timeout_s < 1.0:  # a server this slow takes more than that; the client gives up at its deadline
            clock.now += timeout_s
            raise TritonTimeout(f"not answering (nothing within {timeout_s:.3g} s)")
        return triton.empty_answer(batch, timeout_s)

    triton.answer = slow
    model = _model()
    try:
        split, queued = model.submit([_image()] * 4), model.submit([_image()])
        both_submitted.set()
        with pytest.raises(InferenceUnavailable, match="no answer within 10 s: the batch's first requests took"):
            split.result()
        assert len(queued.result()) == 1
        assert model.status.available
    finally:
        model.close()
    split_parts = [10.0] if second_part_s is None else [10.0, pytest.approx(second_part_s)]
    assert [timeout_s for _, timeout_s in triton.sent] == [*split_parts, 10.0]


def test_a_request_the_server_refuses_fails_only_the_frames_it_carried(triton: _FakeTriton) -> None:
    """A stream at a size the model does not take (as a TensorRT profile's largest shape refuses) gets
    the server's reason; the stream beside it, and inference for the node, carry on."""

    def refuse_wide(batch: np.ndarray, timeout_s: float) -> list[np.ndarray]:
        if batch.shape[3] > 640:
            raise TritonRefused("input shape exceeds the model's largest")
        return triton.empty_answer(batch, timeout_s)

    triton.answer = refuse_wide
    results: queue.Queue[FrameResult] = queue.Queue()
    worker = InferenceWorker(SPEC, results.put, InferenceOptions(), load=lambda _: _model())
    worker.start()
    try:
        big = worker.add_stream("big", 15.0, StreamOptions.from_mapping({"imgsz": 1280}))
        ok = worker.add_stream("ok", 15.0)
        for seq in range(4):
            if seq < 3:  # the last frame of "ok" comes after every frame of "big" is finished
                big.put(Frame("big", seq, 1000.0 + seq, seq / 15, _image()))
            ok.put(Frame("ok", seq, 1000.0 + seq, seq / 15, _image()))
            assert results.get(timeout=30).frame.stream_id == "ok"
        big_stats, ok_stats = worker.stats("big"), worker.stats("ok")
        assert worker.inference_status.available
    finally:
        worker.stop()
    assert big_stats is not None and big_stats.errors == 3
    assert big_stats.last_error == "Triton refused the request: input shape exceeds the model's largest"
    assert ok_stats is not None and (ok_stats.processed, ok_stats.errors) == (4, 0)


def test_a_remote_batchs_inference_time_is_its_own_not_the_wait_behind_another(
    triton: _FakeTriton, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A frame's ``inference_ms`` is the model's time for it. A remote batch's was measured from its
    submission, so the second out counted the first's time as its own, waiting behind it: here the
    frames of two sizes in one batch, each size a request of its own."""
    clock = _Clock()
    monkeypatch.setattr(triton_model, "time", clock)
    first_out, release = threading.Event(), threading.Event()

    def answer(batch: np.ndarray, timeout_s: float) -> list[np.ndarray]:
        if not first_out.is_set():
            first_out.set()
            assert release.wait(30), "the test never released the first request"
        clock.now += 0.25  # the server's own time for each request
        return triton.empty_answer(batch, timeout_s)

    triton.answer = answer
    results: queue.Queue[FrameResult] = queue.Queue()
    worker = InferenceWorker(SPEC, results.put, InferenceOptions(), load=lambda _: _model())
    # Both frames in their slots before the thread starts: its first batch takes both.
    worker.add_stream("wide", 15.0).put(Frame("wide", 0, 1000.0, 0.0, _image()))
    worker.add_stream("square", 15.0).put(Frame("square", 0, 1000.0, 0.0, _image(480, 480)))
    worker.start()
    try:
        assert first_out.wait(30), "the first request was never sent"
        clock.now += 5.0  # Triton works on the first request for 5 s; the second is submitted meanwhile
        deadline = time.monotonic() + 30
        while worker.cycles < 2:  # the inference thread has submitted it: it waits behind the first
            assert time.monotonic() < deadline, "the second batch was never submitted"
            time.sleep(0.01)
        release.set()
        first, second = results.get(timeout=30), results.get(timeout=30)
    finally:
        release.set()
        worker.stop()
    assert (first.frame.stream_id, first.inference_ms) == ("wide", pytest.approx(5250.0))
    assert (second.frame.stream_id, second.inference_ms) == ("square", pytest.approx(250.0))


def test_a_server_that_answers_again_is_sent_the_next_request_at_once(triton: _FakeTriton) -> None:
    model = _model()
    try:
        model._down("Triton at triton:8001 unreachable: connection reset")
        model._up()  # what an answer does
        assert model.status.available
        assert len(model.detect([_image()])) == 1
    finally:
        model.close()


@pytest.mark.parametrize(("task", "rows"), [("segment", 4 + 3 + MASK_CHANNELS), ("detect", 4 + 80)])
def test_class_names_that_are_not_the_networks_stop_the_start(triton: _FakeTriton, task: str, rows: int) -> None:
    """The config says how many rows per box output0 has: 4 box coordinates, a score per class, the
    mask coefficients. Names of another network are one line at start, not a failure on every frame."""
    triton.task, triton.head_rows = task, rows  # a network of 3 or 80 classes, metadata naming 2
    with pytest.raises(ModelError, match=f"^--model {SPEC}: output output0 has {rows} rows per box") as caught:
        _model()
    assert "names are not this network's" in str(caught.value) and "\n" not in str(caught.value)


def test_a_model_without_server_side_batching_is_checked_on_its_rows_per_box_not_its_batch_of_one(
    triton: _FakeTriton,
) -> None:
    """With max_batch_size 0 every shape in the config starts with the model's own batch dimension, so
    the rows per box are the second size, not the first."""
    triton.task, triton.max_batch, triton.input_dims = "detect", 0, [3, 320, 320]
    triton.head_rows = 4 + len(triton.names)
    model = _model()
    try:
        assert len(model.detect([_image(), _image()])) == 2
    finally:
        model.close()
    assert [shape for shape, _ in triton.sent] == [(1, 3, 320, 320)] * 2

    triton.head_rows = 4 + 80
    with pytest.raises(ModelError, match=f"^--model {SPEC}: output output0 has 84 rows per box"):
        _model()


@pytest.mark.parametrize("dims", [[3, -1, 640], [3, 384, -1]])
def test_an_input_fixed_in_one_dimension_only_stops_the_start_in_one_line(triton: _FakeTriton, dims: list[int]) -> None:
    """A model of fixed height and any width (or the reverse) cannot be letterboxed to: say so at start."""
    triton.input_dims = dims
    with pytest.raises(ModelError) as caught:
        _model()
    assert str(caught.value) == f"--model {SPEC}: input images has shape {dims}; make both height and width fixed or -1"


def test_an_answer_with_more_classes_than_names_makes_inference_unavailable(triton: _FakeTriton) -> None:
    """Without sizes in the config the first answer shows it: a detection of class 50 of a model that
    names 2 is refused, not passed on to trackers without a name, and the node says why."""

    def eighty_classes(batch: np.ndarray, timeout_s: float) -> list[np.ndarray]:
        head = np.zeros((len(batch), 4 + 80, ANCHORS), np.float32)
        head[:, :4, 0] = [100, 100, 50, 50]
        head[:, 4 + 50, 0] = 0.9
        return [head]

    triton.task, triton.answer = "detect", eighty_classes
    model = _model()
    try:
        with pytest.raises(InferenceUnavailable, match="output0 has 84 rows per box, 6 expected"):
            model.detect([_image()])
    finally:
        model.close()
    assert not model.status.available and "names are not this network's" in (model.status.error or "")


def test_the_first_batch_after_triton_was_down_at_start_runs_at_the_served_size(
    triton: _FakeTriton, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(triton_model, "RETRY_FIRST_S", 0.0)  # the next attempt is due at once
    triton.down = True
    model = _model()
    assert not model.status.available
    triton.down = False
    results: queue.Queue[FrameResult] = queue.Queue()
    worker = InferenceWorker(SPEC, results.put, InferenceOptions(), load=lambda _: model)
    worker.start()
    try:
        worker.add_stream("cam", 15.0).put(Frame("cam", 0, 1000.0, 0.0, _image(360, 640)))
        assert results.get(timeout=30).frame.seq == 0
    finally:
        worker.stop()
    [(shape, _)] = triton.sent
    assert shape == (1, 3, 192, 320)  # letterboxed to the model's 320, not to ultralytics' default 640


@pytest.mark.parametrize(
    ("state", "reason", "said"),
    [
        ("LOADING", "", "state LOADING"),
        ("UNAVAILABLE", "unloaded", "state UNAVAILABLE: unloaded"),
        ("", "", "never loaded"),  # in its repository, not loaded at start (explicit model control)
    ],
)
def test_a_node_started_while_triton_has_not_loaded_its_model_waits_for_it(
    triton: _FakeTriton, monkeypatch: pytest.MonkeyPatch, state: str, reason: str, said: str
) -> None:
    """Triton answers NOT_FOUND for a model in its repository that it is still loading (a big model, or
    a node and Triton started together) or has unloaded: the node starts, says so, backs off like in any
    outage, and infers once the model is ready."""
    clock = _Clock()
    monkeypatch.setattr(triton_model, "time", clock)
    triton.state, triton.reason = state, reason
    model = _model()  # no ModelError
    expected = f"Triton at triton:8001 has m but has not loaded it ({said})"
    try:
        status = model.status
        assert (status.available, status.error) == (False, expected)
        assert status.next_attempt_at == clock.now + triton_model.RETRY_FIRST_S
        clock.now = status.next_attempt_at
        with pytest.raises(InferenceUnavailable, match=re.escape(expected)):  # the next attempt says the same
            model.detect([_image()])
        assert model.status.next_attempt_at == clock.now + 2 * triton_model.RETRY_FIRST_S  # backing off

        triton.state, triton.reason = "READY", ""
        clock.now += triton_model.RETRY_MAX_S
        assert len(model.detect([_image()])) == 1
        assert model.status.available
    finally:
        model.close()
    assert model.names == {0: "disc", 1: "square"} and len(triton.sent) == 1


def test_a_model_name_triton_does_not_have_stops_the_start_naming_those_it_has(triton: _FakeTriton) -> None:
    triton.others = ["yolo-seg", "det"]
    with pytest.raises(ModelError) as caught:
        _model("grpc://triton:8001/nope")
    assert str(caught.value) == (
        "--model grpc://triton:8001/nope: Triton at triton:8001 has no model 'nope' (it has: det, m, yolo-seg)"
    )


@pytest.mark.parametrize(
    "live",
    [
        False,  # HTTP: tritonclient reads a restricted health API's 403 as not live
        TritonUnavailable("This protocol is restricted, expecting header 'admin-key'"),  # gRPC's restriction
        TritonTimeout("not answering (nothing within 5 s)"),
    ],
    ids=["http-restricted", "grpc-restricted", "slow"],
)
def test_a_wrong_model_name_is_refused_at_start_whatever_triton_says_of_its_liveness(
    triton: _FakeTriton, live: bool | Exception
) -> None:
    """Only Triton's own word that it is exiting (or its port refusing right after an answer) makes a
    model it lacks a shutdown to wait out: a liveness it will not or cannot give tells nothing, and a
    typo'd name still stops the start, where it waited for ever "shutting down"."""
    triton.live = live
    with pytest.raises(ModelError) as caught:
        _model("grpc://triton:8001/nope")
    assert "has no model 'nope'" in str(caught.value)


def test_a_node_started_while_triton_shuts_down_waits_for_it_instead_of_refusing_the_model(
    triton: _FakeTriton,
) -> None:
    """Triton unloads its models as it stops: a node started then (a whole box restarted at once) found
    the model missing and refused it as a wrong name, exit status 2, for good; it waits for Triton instead."""
    triton.exiting, triton.others = True, []
    model = _model("grpc://triton:8001/nope")
    try:
        assert model.status.error == "Triton at triton:8001 is shutting down"
        assert not model.status.available
    finally:
        model.close()


@pytest.mark.parametrize(
    "refusal",
    [
        TritonRefused("This API is restricted, expecting header 'admin-key'"),  # HTTP 403
        TritonUnavailable("This protocol is restricted, expecting header 'admin-key'"),  # gRPC UNAVAILABLE
    ],
    ids=["http", "grpc"],
)
def test_a_model_triton_does_not_serve_stops_the_start_when_its_repository_index_is_restricted(
    triton: _FakeTriton, refusal: Exception
) -> None:
    """Without the index a wrong name cannot be told from a model still loading: a node that would
    wait for ever on a typo is the worse mistake, so the start stops, as it did before the index."""
    triton.state, triton.index_refused = "LOADING", refusal
    with pytest.raises(ModelError) as caught:
        _model()
    assert str(caught.value) == f"--model {SPEC}: Triton at triton:8001 cannot serve it ({UNKNOWN_MODEL.format('m')})"


def _one_attempt_while_down(triton: _FakeTriton, model: TritonModel) -> None:
    """Triton goes away for one of ``model``'s requests, then comes back (to be described again)."""
    triton.down = True
    with pytest.raises(InferenceUnavailable, match="connection refused"):
        model.detect([_image()])
    triton.down = False


def test_a_server_that_comes_back_is_asked_again_what_it_serves(
    triton: _FakeTriton, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Triton restarted with an updated model of the same classes: the node uses it at its new size."""
    monkeypatch.setattr(triton_model, "RETRY_FIRST_S", 0.0)
    model = _model()
    try:
        _one_attempt_while_down(triton, model)
        triton.imgsz = 640
        assert len(model.detect([_image()])) == 1
    finally:
        model.close()
    assert model.names == {0: "disc", 1: "square"}
    assert model.overrides["imgsz"] == 640 and triton.sent[-1][0] == (1, 3, 384, 640)


def test_a_server_that_comes_back_with_other_classes_leaves_inference_unavailable(
    triton: _FakeTriton, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Running streams' trackers and class filters hold the ids of the names the node started with:
    a model that numbers its classes otherwise is not used until segcast restarts, and says so."""
    monkeypatch.setattr(triton_model, "RETRY_FIRST_S", 0.0)
    model = _model()
    try:
        _one_attempt_while_down(triton, model)
        triton.names = ["square", "disc", "triangle"]
        for _ in range(2):  # and again at the next attempt
            with pytest.raises(InferenceUnavailable, match="now has other classes than at start: restart segcast"):
                model.detect([_image()])
        status = model.status
        assert not status.available and status.next_attempt_at is not None
        assert model.names == {0: "disc", 1: "square"}
        assert triton.sent == []  # no frame went out to be read with the wrong names

        triton.names = ["disc", "square"]  # the model it started with, back again
        assert len(model.detect([_image()])) == 1
        assert model.status.available
    finally:
        model.close()


def test_a_model_replaced_in_place_with_other_classes_is_not_used_by_a_node_sending_frames(
    triton: _FakeTriton, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Triton loads a model of other class names in place of the one served (model control poll or
    explicit: no outage between, so nothing else has the node read the model again): a node that
    keeps sending frames reads its description again within a few seconds and stops, as after an
    outage, rather than labelling what it finds with the names it read at start."""
    clock = _Clock()
    monkeypatch.setattr(triton_model, "time", clock)
    model = _model()
    try:
        assert len(model.detect([_image()])) == 1
        triton.names = ["person", "car"]  # as many classes: the answers fit the old names too
        sent = len(triton.sent)
        clock.now += triton_model.RETRY_MAX_S  # as long as a node may take to notice any change
        with pytest.raises(InferenceUnavailable, match="now has other classes than at start: restart segcast"):
            model.detect([_image()])
        assert len(triton.sent) == sent, "the batch queued behind the description was not sent"
        assert not model.status.available
        assert model.names == {0: "disc", 1: "square"}
    finally:
        model.close()


def _descriptions_read(triton: _FakeTriton, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The models whose description ``triton`` is asked for from now on, in order."""
    described: list[str] = []
    describe = triton.model_config
    monkeypatch.setattr(
        triton, "model_config", lambda model, timeout_s: (described.append(model), describe(model, timeout_s))[1]
    )
    return described


def test_a_model_whose_size_changes_in_place_is_used_at_its_new_size_described_once_per_interval(
    triton: _FakeTriton, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The metadata's size of a model of any input size changes in place: a node sending frames uses
    the new size after its next reading of the description, which costs one request every few
    seconds, not one per batch."""
    clock = _Clock()
    monkeypatch.setattr(triton_model, "time", clock)
    described = _descriptions_read(triton, monkeypatch)
    model = _model()
    try:
        for _ in range(10):
            clock.now += 0.1
            model.detect([_image()])
        assert described == ["m"], "not read again per batch"
        triton.imgsz = 640
        clock.now += triton_model.RETRY_MAX_S
        model.detect([_image()])  # goes out as the model was; its description read again before it
        model.detect([_image()])
    finally:
        model.close()
    assert described == ["m", "m"]
    assert model.overrides["imgsz"] == 640 and triton.sent[-1][0] == (1, 3, 384, 640)
    assert model.status.available


def test_an_imgsz_a_fixed_size_model_does_not_take_is_said_once(
    triton: _FakeTriton, caplog: pytest.LogCaptureFixture
) -> None:
    """--imgsz (or a stream's imgsz) cannot change a fixed-shape model's input: its frames are
    letterboxed to the model's size, and the node says so once rather than ignore the option unseen."""
    triton.input_dims = [3, 320, 320]
    caplog.set_level(logging.WARNING, logger=triton_model.__name__)
    model = _model()
    try:
        model.detect([_image()], imgsz=320)  # the model's own size, as a node without --imgsz asks
        for _ in range(3):
            model.detect([_image()], imgsz=640)
    finally:
        model.close()
    said = [record.getMessage() for record in caplog.records if "imgsz" in record.getMessage()]
    assert said == [f"Triton model {SPEC} takes 320x320 images only: frames are letterboxed to that, not to imgsz 640"]
    assert triton.sent[-1][0] == (1, 3, 320, 320)


#: How a stream's imgsz of 640 is refused for a model that takes 320x320 images only.
FIXED_SIZE_REFUSAL = "imgsz: the model takes 320x320 images only, got 640; give 320 or 'model' for its own size"


def test_an_imgsz_a_described_fixed_size_model_does_not_take_is_refused_naming_its_size(
    triton: _FakeTriton, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given a model of one input size, described by the time a stream asks another, the option is
    refused, naming the size the model takes; before the model was described (its server down at
    start) nothing can be told, and the stream is let be (its frames are said in the log)."""
    monkeypatch.setattr(triton_model, "RETRY_FIRST_S", 0.0)  # the next attempt is due at once
    triton.input_dims, triton.down = [3, 320, 320], True
    results: queue.Queue[FrameResult] = queue.Queue()
    worker = InferenceWorker(SPEC, results.put, InferenceOptions(), load=lambda _: _model())
    worker.start()
    try:
        asked = StreamOptions.from_mapping({"imgsz": 640})
        worker.check_options(asked)  # not described yet: it cannot be told
        triton.down = False
        worker.add_stream("cam", 15.0).put(Frame("cam", 0, 1000.0, 0.0, _image()))
        assert results.get(timeout=30).frame.seq == 0  # described by the frame's request
        with pytest.raises(ValueError) as caught:
            worker.check_options(asked)
        for fits in ({"imgsz": 320}, {"imgsz": "model"}, {}):
            worker.check_options(StreamOptions.from_mapping(fits))
    finally:
        worker.stop()
    assert str(caught.value) == FIXED_SIZE_REFUSAL


def test_a_wide_fixed_size_model_takes_the_imgsz_of_its_width_and_refuses_its_height(triton: _FakeTriton) -> None:
    """A model exported at 640x384 letterboxes frames to its longer side, as ultralytics' imgsz does."""
    triton.input_dims = [3, 384, 640]
    worker = InferenceWorker(SPEC, lambda _: None, InferenceOptions(), load=lambda _: _model())
    worker.start()
    try:
        worker.check_options(StreamOptions.from_mapping({"imgsz": 640}))
        with pytest.raises(ValueError) as caught:
            worker.check_options(StreamOptions.from_mapping({"imgsz": 384}))
    finally:
        worker.stop()
    assert str(caught.value) == (
        "imgsz: the model takes 640x384 images only, got 384; give 640 or 'model' for its own size"
    )


async def test_a_patch_to_an_imgsz_a_fixed_size_model_does_not_take_is_a_400_and_changes_nothing(
    triton: _FakeTriton, aiohttp_client: Any
) -> None:
    """It was answered 200 and listed at 640, while its frames went on letterboxed to 320."""
    triton.input_dims = [3, 320, 320]
    client = await aiohttp_client(create_app(Settings(model=SPEC, streams=(StreamConfig("cam", "scene:?seed=1"),))))
    refused = await client.patch("/api/streams/cam", json={"imgsz": 640})
    assert (refused.status, (await refused.json())["error"]) == (400, f"body.{FIXED_SIZE_REFUSAL}")
    [stream] = (await (await client.get("/api/streams")).json())["streams"]
    assert stream["options"]["imgsz"] is None


def test_a_config_asking_an_imgsz_a_fixed_size_model_does_not_take_stops_the_start_in_one_line(
    triton: _FakeTriton,
) -> None:
    triton.input_dims = [3, 320, 320]
    settings = Settings(model=SPEC, stream_defaults=StreamOptions.from_mapping({"imgsz": 640}))
    manager = StreamManager(settings, SilentListener())
    with pytest.raises(ConfigError) as caught:
        manager.start()
    assert str(caught.value) == f"stream_defaults: {FIXED_SIZE_REFUSAL} (with --model {SPEC})"


def test_a_batch_queued_behind_another_gets_its_whole_deadline_once_sent(
    triton: _FakeTriton, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two submissions out (a batch's frames of two sizes), sent one after the other: a server that takes
    6 s of the 10 s deadline for each answers both in time and stays available, slow but not down."""
    clock = _Clock()
    monkeypatch.setattr(triton_model, "time", clock)
    both_submitted = threading.Event()

    def slow(batch: np.ndarray, timeout_s: float) -> list[np.ndarray]:
        assert both_submitted.wait(30)
        if timeout_s < 6.0:  # as a client does: it gives up at the deadline it was given
            clock.now += timeout_s
            raise TritonTimeout(f"not answering (nothing within {timeout_s:.3g} s)")
        clock.now += 6.0
        return triton.empty_answer(batch, timeout_s)

    triton.answer = slow
    model = _model()
    try:
        first, second = model.submit([_image()]), model.submit([_image()])
        both_submitted.set()
        assert len(first.result()) == len(second.result()) == 1
        assert model.status.available
    finally:
        model.close()
    assert [timeout_s for _, timeout_s in triton.sent] == [10.0, 10.0]


def test_describing_the_model_counts_as_a_request_so_failures_count_during_an_outage(
    triton: _FakeTriton, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the server is down every attempt is a describe call: each is a request that failed."""
    monkeypatch.setattr(triton_model, "RETRY_FIRST_S", 0.0)
    model = _model()
    try:
        assert (model.requests, model.failed_requests) == (1, 0)  # the description at start
        triton.down = True
        for _ in range(3):
            with pytest.raises(InferenceUnavailable, match="connection refused"):
                model.detect([_image()])
        assert (model.requests, model.failed_requests) == (4, 3)  # the failed request, then two describes
        triton.down = False
        model.detect([_image()])
    finally:
        model.close()
    assert (model.requests, model.failed_requests) == (6, 3)  # described again, then the frame


def test_closing_the_model_closes_its_connection(triton: _FakeTriton) -> None:
    model = _model()
    model.close()
    assert triton.closed.wait(30)


# -- a server that fails requests, over each transport ----------------------------------------------

#: What a real Triton answers when its Python backend's stub process died (or CUDA ran out of memory).
STUB_DEAD = "Failed to process the request(s) for model 'm_0_0', message: Stub process 'm_0_0' is not healthy."
#: Its answer to a request the model cannot take.
BAD_SHAPE = "unexpected shape for input 'images' for model 'm'"
#: What Triton puts before a request's errors: nothing a person can act on.
REQUEST_ID = "[request id: <id_unknown>] "
#: Its answer to a request as it shuts down (SIGTERM to ``segcast triton serve``).
STOPPING = f"{REQUEST_ID}Server is stopping, scheduler for model has stopped accepting new inference requests"
#: Each failure as Triton says it over gRPC (status code) and HTTP (status).
FAILURES = {
    "server failed": ("INTERNAL", 500, STUB_DEAD),
    "request refused": ("INVALID_ARGUMENT", 400, BAD_SHAPE),
    "shutting down": ("UNAVAILABLE", 503, STOPPING),
    "server failed, with a request id": ("INTERNAL", 500, f"{REQUEST_ID}{STUB_DEAD}"),
    "model unloaded, with a request id": ("NOT_FOUND", 404, f"{REQUEST_ID}{UNKNOWN_MODEL.format('m')}"),
}


@contextmanager
def _served_failing(scheme: str, failure: str) -> Iterator[TritonEndpoint]:
    """A server at a free local port that describes `_FakeTriton`'s model and fails every inference
    request as Triton does for ``failure``."""
    grpc_code, http_status, message = FAILURES[failure]
    config = _FakeTriton().model_config("m", 1.0)

    def http_answer(method: str, path: str) -> tuple[int, bytes]:
        if method == "GET":  # the model's config
            return 200, json.dumps(config).encode()
        return http_status, json.dumps({"error": message}).encode()

    server = _grpc_server(config, grpc_code, message) if scheme == "grpc" else _http_server(http_answer)
    with server as address:
        yield TritonEndpoint(scheme, address, "m")


@contextmanager
def _grpc_server(config: dict[str, Any], code: str, message: str) -> Iterator[str]:
    """A gRPC server that describes the model of ``config`` and fails every inference request."""
    import grpc
    from google.protobuf import json_format
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    class Service(service_pb2_grpc.GRPCInferenceServiceServicer):
        def ModelConfig(self, request: Any, context: Any) -> Any:  # gRPC's method names
            return json_format.ParseDict({"config": config}, service_pb2.ModelConfigResponse())

        def ModelInfer(self, request: Any, context: Any) -> Any:
            context.abort(getattr(grpc.StatusCode, code), message)

    with _grpc_service(Service()) as address:
        yield address


@contextmanager
def _grpc_service(service: Any) -> Iterator[str]:
    """A gRPC server at a free local port whose Triton service is ``service``."""
    import grpc
    from tritonclient.grpc import service_pb2_grpc

    with ThreadPoolExecutor(max_workers=2) as threads:
        server = grpc.server(threads)
        service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(service, server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        try:
            yield f"127.0.0.1:{port}"
        finally:
            server.stop(None).wait(30)


@contextmanager
def _http_server(
    answer: Callable[[str, str], tuple[int, bytes]], connections: list[str] | None = None
) -> Iterator[str]:
    """An HTTP server at a free local port answering each request with ``answer(method, path)``; each
    connection it accepts is added to ``connections`` (the client's address and port)."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            if connections is not None:
                connections.append(f"{self.client_address[0]}:{self.client_address[1]}")

        def reply(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status, body = answer(self.command, self.path)
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = reply  # http.server's method names

        def log_message(self, format: str, *args: Any) -> None:
            pass

    with serving(Handler, "fake-triton-http") as server:
        yield f"127.0.0.1:{server.server_address[1]}"


def test_http_requests_with_other_time_outs_keep_their_connections() -> None:
    """A description (5 s) and an inference (10 s) alternate on an idle node's probes and sparse frames;
    the client, made for one time-out, was made again at each change, with a new connection each time."""
    connections: list[str] = []

    def answer(method: str, path: str) -> tuple[int, bytes]:
        return 200, b"[]" if path.endswith("/repository/index") else b"{}"

    with _http_server(answer, connections) as address:
        transport = open_transport(TritonEndpoint("http", address, "m"), 5.0)
        try:
            for _ in range(4):
                assert transport.model_config("m", 5.0) == {}
                assert transport.repository_index(10.0) == []
        finally:
            transport.close()
    assert len(connections) == 2, connections  # one per time-out in use


@pytest.mark.parametrize("scheme", ["grpc", "http"])
def test_a_server_that_fails_a_request_on_its_side_is_down_over_either_protocol(
    scheme: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A dead backend stub (INTERNAL, HTTP 500) is no fault of the frames: the node is unavailable,
    backs off, and says the server failed, not that it is unreachable. The description the server
    still answers at each attempt does not make it available in between, so the waits grow."""
    clock = _Clock()
    monkeypatch.setattr(triton_model, "time", clock)
    waits = []
    with _served_failing(scheme, "server failed") as endpoint:
        model = TritonModel(endpoint, f"{endpoint}")
        model.connect()
        try:
            assert model.status.available  # it answered the description
            for _ in range(2):
                model._retry_at = 0.0  # the next attempt is due: what the worker sees once the wait is over
                with pytest.raises(InferenceUnavailable, match="failed the request: Failed to process") as caught:
                    model.detect([_image()])
                status = model.status
                assert not status.available and status.next_attempt_at is not None
                waits.append(status.next_attempt_at - clock.now)
        finally:
            model.close()
    assert "Stub process 'm_0_0' is not healthy" in str(caught.value) and "unreachable" not in str(caught.value)
    assert waits == [triton_model.RETRY_FIRST_S, 2 * triton_model.RETRY_FIRST_S]
    assert model.requests == 4 and model.failed_requests == 2  # described twice, each request failed


@pytest.mark.parametrize("scheme", ["grpc", "http"])
def test_a_request_the_server_finds_invalid_is_the_frames_fault_over_either_protocol(scheme: str) -> None:
    with _served_failing(scheme, "request refused") as endpoint:
        model = TritonModel(endpoint, f"{endpoint}")
        model.connect()
        try:
            with pytest.raises(TritonRefused, match="unexpected shape for input 'images'"):
                model.detect([_image()])
        finally:
            model.close()
    assert model.status.available


@pytest.mark.parametrize(("status", "body"), [(200, b"# HELP nv_inference_count\n"), (404, b"not found"), (404, b"")])
def test_an_http_url_at_a_port_that_is_not_triton_says_so(status: int, body: bytes) -> None:
    """E.g. Triton's metrics port, or a proxy's bare 404 before a restarting Triton (not Triton saying
    it has no such model): the node starts, unavailable with a reason, instead of a parser's traceback."""
    with _http_server(lambda method, path: (status, body)) as address:
        model = TritonModel(TritonEndpoint("http", address, "m"), f"http://{address}/m")
        model.connect()
        model.close()
    assert not model.status.available
    assert "unreachable: not a Triton HTTP endpoint" in (model.status.error or "")


@pytest.mark.parametrize(
    ("body", "said"),
    [
        (b"# HELP nv_inference_count Number of inferences\n", "its answer is Prometheus metrics, not JSON): is {}"),
        (b"hello", "its answer is not JSON)"),
    ],
)
def test_an_http_url_at_a_metrics_port_asks_whether_it_is_one(body: bytes, said: str) -> None:
    """Triton's metrics port answers every path with its metrics: the likely mistake is the port."""
    with _http_server(lambda method, path: (200, body)) as address:
        model = TritonModel(TritonEndpoint("http", address, "m"), f"http://{address}/m")
        model.connect()
        model.close()
    assert f"unreachable: not a Triton HTTP endpoint ({said.format(address)}" in (model.status.error or "")
    metrics_hint = "Triton's metrics port? http:// is usually port 8000, metrics 8002"
    assert (metrics_hint in (model.status.error or "")) == body.startswith(b"# HELP")


@pytest.mark.parametrize(
    ("failure", "said"),
    [
        ("shutting down", "is shutting down"),
        ("server failed, with a request id", f"failed the request: {STUB_DEAD}"),
        ("model unloaded, with a request id", f"does not serve m now: {UNKNOWN_MODEL.format('m')}"),
    ],
)
@pytest.mark.parametrize("scheme", ["grpc", "http"])
def test_a_triton_shutting_down_says_so_and_quotes_no_request_id_over_either_protocol(
    scheme: str, failure: str, said: str
) -> None:
    """A Triton stopping (SIGTERM) is reached: it was shown as "unreachable", with Triton's request id
    noise before its words, as every other error Triton quotes was."""
    with _served_failing(scheme, failure) as endpoint:
        model = TritonModel(endpoint, f"{endpoint}")
        model.connect()
        try:
            with pytest.raises(InferenceUnavailable):
                model.detect([_image()])
        finally:
            model.close()
    assert model.status.error == f"Triton at {endpoint.address} {said}"


@pytest.mark.parametrize("scheme", ["grpc", "http"])
def test_a_refused_connection_asks_whether_triton_runs_there_over_either_protocol(scheme: str) -> None:
    """As a stopped Triton's port refuses: "unreachable: connection refused" said nothing of what to check."""
    with held_closed_port() as port:
        address = f"127.0.0.1:{port}"
        model = TritonModel(TritonEndpoint(scheme, address, "m"), f"{scheme}://{address}/m")
        model.connect()
        model.close()
    assert model.status.error == f"Triton at {address} unreachable: connection refused: is Triton running at {address}?"


def test_a_model_triton_cannot_serve_at_start_is_said_without_its_request_id(
    triton: _FakeTriton, monkeypatch: pytest.MonkeyPatch
) -> None:
    def missing(model: str, timeout_s: float) -> dict[str, Any]:
        raise TritonModelMissing(f"{REQUEST_ID}{UNKNOWN_MODEL.format(model)}")

    monkeypatch.setattr(triton, "model_config", missing)
    triton.index_refused = TritonRefused("This API is restricted, expecting header 'admin-key'")
    with pytest.raises(ModelError) as caught:
        _model()
    assert str(caught.value) == f"--model {SPEC}: Triton at triton:8001 cannot serve it ({UNKNOWN_MODEL.format('m')})"


LOAD_ERROR = "failed to load 'm' version 1: Internal: Stub process 'm_0_0' is not healthy."
#: Repository indexes as Triton gives them (gRPC leaves empty fields out), and what a node makes of each.
INDEXES = {
    "loading": ([{"name": "m", "version": "1", "state": "LOADING"}], "has m but has not loaded it (state LOADING)"),
    "failed to load": (
        [
            {
                "name": "m",
                "version": "1",
                "state": "UNAVAILABLE",
                "reason": f"{LOAD_ERROR}\nTraceback (most recent call last):",
            }
        ],
        f"has m but has not loaded it (state UNAVAILABLE: {LOAD_ERROR})",  # its first line: statuses are one line
    ),
    "wrong name": (
        [{"name": "det", "version": "1", "state": "READY"}, {"name": "seg"}],
        "has no model 'm' (it has: det, seg)",
    ),
    "restricted": (None, "cannot serve it (Request for unknown model: 'm' has no available versions)"),
}
#: Cases where the node starts, waiting for the model; in the others the start stops.
WAITS = ("loading", "failed to load")


@contextmanager
def _not_serving(scheme: str, index: list[dict[str, str]] | None) -> Iterator[TritonEndpoint]:
    """A server at a free local port that answers NOT_FOUND for model ``m``, as Triton does, and
    ``index`` for its repository index (None: refused, as Triton restricting its repository API)."""
    missing = UNKNOWN_MODEL.format("m")
    restricted = "This API is restricted, expecting header 'admin-key'"
    if scheme == "http":

        def http_answer(method: str, path: str) -> tuple[int, bytes]:
            if path == "/v2/repository/index":
                return (200, json.dumps(index).encode()) if index is not None else (403, _error(restricted))
            if path == "/v2/health/live":  # a running Triton: the model is missing, not the server stopping
                return 200, b""
            return 404, _error(missing)

        with _http_server(http_answer) as address:
            yield TritonEndpoint(scheme, address, "m")
        return

    import grpc
    from google.protobuf import json_format
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    class Service(service_pb2_grpc.GRPCInferenceServiceServicer):
        def ModelConfig(self, request: Any, context: Any) -> Any:  # gRPC's method names
            context.abort(grpc.StatusCode.NOT_FOUND, missing)

        def RepositoryIndex(self, request: Any, context: Any) -> Any:
            if index is None:
                context.abort(grpc.StatusCode.UNAVAILABLE, restricted)
            return json_format.ParseDict({"models": index}, service_pb2.RepositoryIndexResponse())

    with _grpc_service(Service()) as address:
        yield TritonEndpoint(scheme, address, "m")


def _error(message: str) -> bytes:
    """Triton's JSON body of an HTTP error answer."""
    return json.dumps({"error": message}).encode()


@pytest.mark.parametrize("case", INDEXES)
@pytest.mark.parametrize("scheme", ["grpc", "http"])
def test_the_repository_index_tells_a_model_not_loaded_from_a_wrong_name_over_either_protocol(
    scheme: str, case: str
) -> None:
    """What each transport reads of the index, behind Triton's NOT_FOUND for the model's config: a model
    in the repository not loaded (the node starts, waiting for it), a name not in it (the start stops,
    naming those that are), an index refused (the start stops, as before the index was read)."""
    index, said = INDEXES[case]
    with _not_serving(scheme, index) as endpoint:
        model = TritonModel(endpoint, str(endpoint))
        try:
            if case in WAITS:
                model.connect()
                assert not model.status.available
                assert model.status.error == f"Triton at {endpoint.address} {said}"
            else:
                with pytest.raises(ModelError) as caught:
                    model.connect()
                assert str(caught.value) == f"--model {endpoint}: Triton at {endpoint.address} {said}"
        finally:
            model.close()


def test_a_server_failing_requests_is_not_brought_back_by_describing_its_model(
    triton: _FakeTriton, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A Triton that describes its model but fails every inference (a crashed backend, GPU memory
    exhausted) stays down between sparse frames: an idle node's probe describing the model fine is
    no sign inference works again (it made the status flap once per frame, the backoff never grew)."""
    monkeypatch.setattr(triton_model, "RETRY_FIRST_S", 0.0)  # the next attempt, and the probe, due at once
    caplog.set_level(logging.INFO, logger=triton_model.__name__)

    def fail(batch: np.ndarray, timeout_s: float) -> list[np.ndarray]:
        raise TritonFailed("CUDA out of memory")

    triton.answer = fail
    model = _model()
    try:
        with pytest.raises(InferenceUnavailable, match="failed the request"):
            model.detect([_image()])
        model.probe(lambda: None)
        with pytest.raises(InferenceUnavailable, match="failed the request"):  # queued behind any probe
            model.detect([_image()])
    finally:
        model.close()
    assert not [r for r in caplog.records if "available again" in r.getMessage()], "never shown as back"


def test_a_stream_whose_frames_are_always_refused_does_not_have_the_model_described_per_batch(
    triton: _FakeTriton, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A refusal has the model read again (it may have been replaced with one of another input size),
    at most once per `REDESCRIBE_AFTER_REFUSAL_S`: a stream at a size the model never takes cost a
    description before every batch."""
    clock = _Clock()
    monkeypatch.setattr(triton_model, "time", clock)
    described = _descriptions_read(triton, monkeypatch)

    def refuse_wide(batch: np.ndarray, timeout_s: float) -> list[np.ndarray]:
        if batch.shape[3] > 640:
            raise TritonRefused("input shape exceeds the model's largest")
        return triton.empty_answer(batch, timeout_s)

    triton.answer = refuse_wide
    model = _model()
    try:
        before = len(described)
        for _ in range(10):
            clock.now += 0.1
            with pytest.raises(TritonRefused):
                model.detect([_image()], imgsz=1280)
            assert len(model.detect([_image()])) == 1
        assert len(described) == before, "not once per batch"
        clock.now += triton_model.REDESCRIBE_AFTER_REFUSAL_S
        with pytest.raises(TritonRefused):
            model.detect([_image()], imgsz=1280)
        model.detect([_image()])
        assert len(described) == before + 1, "read again once the interval has passed"
    finally:
        model.close()


# -- a server that failed requests, coming back; descriptions and answers segcast cannot read -----------


def _probed(model: TritonModel) -> bool:
    """`probe` as the idle inference thread calls it; whether it asked the server, whose answer it
    then waits for."""
    before = model._probing
    model.probe(lambda: None)
    if model._probing is before:
        return False
    assert model._probing is not None
    wait([model._probing], 30)
    return True


def _fail_requests(batch: np.ndarray, timeout_s: float) -> list[np.ndarray]:
    raise TritonFailed(STUB_DEAD)


def test_an_idle_node_whose_server_failed_its_last_request_is_available_again_once_inference_works(
    triton: _FakeTriton, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A backend stub crashed on the last frame, then the streams went quiet and Triton was restarted
    healthy: the idle node's probe sends one blank image, as describing the model would show nothing,
    and `segcast_inference_available` comes back. It stayed 0 for as long as the node was idle."""
    clock = _Clock()
    monkeypatch.setattr(triton_model, "time", clock)
    triton.answer = _fail_requests
    model = _model()
    try:
        with pytest.raises(InferenceUnavailable, match="failed the request"):
            model.detect([_image()])
        clock.now += triton_model.RETRY_FIRST_S
        assert _probed(model)
        assert not model.status.available, "still failing: the probe's image fails as the frames did"
        triton.answer = triton.empty_answer  # restarted, healthy
        clock.now += triton_model.RETRY_MAX_S
        assert _probed(model)
        assert model.status.available
    finally:
        model.close()
    assert [shape for shape, _ in triton.sent] == [(1, 3, 192, 320), (1, 3, 320, 320), (1, 3, 320, 320)]


def test_a_request_failed_long_ago_does_not_stop_an_idle_node_coming_back_from_a_later_change(
    triton: _FakeTriton, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One request failed on the server's side, and requests went through after it. Later the idle
    node found the model replaced with other classes, then the original put back: its probes bring it
    back. The old failure, never cleared by the requests that went through, had it skip every probe."""
    clock = _Clock()
    monkeypatch.setattr(triton_model, "time", clock)
    model = _model()
    try:
        triton.answer = _fail_requests
        with pytest.raises(InferenceUnavailable, match="failed the request"):
            model.detect([_image()])
        triton.answer = triton.empty_answer
        clock.now += triton_model.RETRY_MAX_S
        assert len(model.detect([_image()])) == 1 and model.status.available

        triton.names = ["person", "car"]  # replaced in place while the node is idle
        clock.now += triton_model.IDLE_PROBE_S
        assert _probed(model)
        assert "now has other classes than at start" in (model.status.error or "")
        triton.names = ["disc", "square"]  # and put back
        clock.now += triton_model.RETRY_MAX_S
        assert _probed(model)
        assert model.status.available
    finally:
        model.close()


#: Metadata whose class names are keyed by strings, not class numbers.
NAMES_KEYED_BY_LETTERS = "{'task': 'segment', 'names': {'a': 'disc', 'b': 'square'}, 'imgsz': [320, 320]}"


def _serve_metadata(triton: _FakeTriton, monkeypatch: pytest.MonkeyPatch, metadata: str) -> None:
    """``triton`` describes its model with ``metadata`` from now on."""
    describe = triton.model_config

    def described(model: str, timeout_s: float) -> dict[str, Any]:
        config = describe(model, timeout_s)
        config["parameters"]["metadata"]["string_value"] = metadata
        return config

    monkeypatch.setattr(triton, "model_config", described)


def test_class_names_keyed_by_anything_but_numbers_stop_the_start_naming_the_field(
    triton: _FakeTriton, monkeypatch: pytest.MonkeyPatch
) -> None:
    _serve_metadata(triton, monkeypatch, NAMES_KEYED_BY_LETTERS)
    with pytest.raises(ModelError) as caught:
        _model()
    assert (
        str(caught.value) == f"--model {SPEC}: the model's metadata 'names' has keys 'a', 'b'; class numbers expected"
    )


@pytest.mark.parametrize(
    ("config", "field"),
    [({"max_batch_size": "two"}, "max_batch_size"), ({"input": [{"dims": [3, -1, -1]}]}, "input")],
)
def test_a_config_segcast_cannot_read_is_one_line_naming_the_field(
    triton: _FakeTriton, monkeypatch: pytest.MonkeyPatch, config: dict[str, Any], field: str
) -> None:
    describe = triton.model_config
    monkeypatch.setattr(triton, "model_config", lambda model, timeout_s: {**describe(model, timeout_s), **config})
    with pytest.raises(ModelError, match=f"^--model {re.escape(SPEC)}: the model's {field} cannot be read") as caught:
        _model()
    assert "\n" not in str(caught.value)


def test_a_busy_nodes_model_replaced_with_a_description_it_cannot_read_makes_inference_unavailable(
    triton: _FakeTriton, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by the description read again in the background every few seconds, the same model
    error as at start stops inference, saying why. Its ValueError was lost with the background
    future: every batch read the description again, and went on as if all were well."""
    clock = _Clock()
    monkeypatch.setattr(triton_model, "time", clock)
    model = _model()
    try:
        _serve_metadata(triton, monkeypatch, NAMES_KEYED_BY_LETTERS)
        clock.now += triton_model.DESCRIPTION_MAX_AGE_S
        with pytest.raises(InferenceUnavailable, match="metadata 'names' has keys 'a', 'b'"):
            model.detect([_image()])  # queued behind the description, and not sent
        assert not model.status.available
    finally:
        model.close()
    assert triton.sent == []


def test_a_background_descriptions_unexpected_failure_is_logged_and_makes_inference_unavailable(
    triton: _FakeTriton, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """An error of no kind the model expects (a client library's own, a bug), raised where no caller
    reads it, is neither lost nor taken for all being well."""
    clock = _Clock()
    monkeypatch.setattr(triton_model, "time", clock)
    caplog.set_level(logging.ERROR, logger=triton_model.__name__)
    model = _model()

    def broken(model: str, timeout_s: float) -> dict[str, Any]:
        raise RuntimeError("connection pool closed")

    try:
        monkeypatch.setattr(triton, "model_config", broken)
        clock.now += triton_model.DESCRIPTION_MAX_AGE_S
        with pytest.raises(InferenceUnavailable, match="failed: RuntimeError: connection pool closed"):
            model.detect([_image()])
        assert not model.status.available
    finally:
        model.close()
    [logged] = [record for record in caplog.records if record.levelno == logging.ERROR]
    assert logged.getMessage() == f"checking the model at {SPEC} failed" and logged.exc_info is not None


@pytest.mark.parametrize("scheme", ["grpc", "http"])
def test_an_answer_without_the_outputs_asked_for_is_the_servers_failure_over_either_protocol(scheme: str) -> None:
    """A 200 answer with no outputs (a proxy's, another server's) escaped as an AttributeError from
    post-processing, inference staying available and each frame failing with a traceback."""
    with _answered_without_outputs(scheme) as endpoint:
        model = TritonModel(endpoint, f"{endpoint}")
        model.connect()
        try:
            with pytest.raises(
                InferenceUnavailable, match="failed the request: its answer has no output output0, output1"
            ):
                model.detect([_image()])
            status = model.status
            assert not status.available and status.next_attempt_at is not None  # backing off
        finally:
            model.close()


@contextmanager
def _answered_without_outputs(scheme: str) -> Iterator[TritonEndpoint]:
    """A server at a free local port that describes `_FakeTriton`'s model and answers every inference
    request with success and no outputs."""
    config = _FakeTriton().model_config("m", 1.0)
    if scheme == "http":

        def http_answer(method: str, path: str) -> tuple[int, bytes]:
            if method == "GET":
                return 200, json.dumps(config).encode()
            return 200, json.dumps({"model_name": "m", "outputs": []}).encode()

        with _http_server(http_answer) as address:
            yield TritonEndpoint(scheme, address, "m")
        return

    from google.protobuf import json_format
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    class Service(service_pb2_grpc.GRPCInferenceServiceServicer):
        def ModelConfig(self, request: Any, context: Any) -> Any:  # gRPC's method names
            return json_format.ParseDict({"config": config}, service_pb2.ModelConfigResponse())

        def ModelInfer(self, request: Any, context: Any) -> Any:
            return service_pb2.ModelInferResponse(model_name="m")

    with _grpc_service(Service()) as address:
        yield TritonEndpoint(scheme, address, "m")


HEAD_ROWS = 4 + 2 + MASK_CHANNELS  # a box, a score for each of `_FakeTriton`'s two classes, the coefficients


@pytest.mark.parametrize(
    ("head", "prototypes", "said"),
    [
        ((3,), (1, MASK_CHANNELS, 8, 8), "output0 has shape [3]"),
        ((2, HEAD_ROWS, ANCHORS), (2, MASK_CHANNELS, 8, 8), "output0 has shape [2, 38, 10] for 1 image"),
        ((1, HEAD_ROWS, ANCHORS), (1, 8, 8), "output1 has shape [1, 8, 8] for 1 image: expected 4 dimensions"),
    ],
    ids=["one-dimensional", "an image too many", "prototypes without channels"],
)
def test_outputs_of_shapes_the_model_does_not_have_make_inference_unavailable(
    triton: _FakeTriton, head: tuple[int, ...], prototypes: tuple[int, ...], said: str
) -> None:
    """What post-processing indexes into is checked: an answer that does not fit the model is the
    model's error (unavailable, saying why, backing off), not an exception of each frame."""
    triton.answer = lambda batch, timeout_s: [np.zeros(head, np.float32), np.zeros(prototypes, np.float32)]
    model = _model()
    try:
        with pytest.raises(InferenceUnavailable, match=re.escape(said)):
            model.detect([_image()])
        status = model.status
        assert not status.available and status.next_attempt_at is not None
    finally:
        model.close()


def test_a_model_refused_at_start_leaves_no_thread_or_connection_open(triton: _FakeTriton) -> None:
    """Whatever a start raises, it leaves nothing running: the model's requester thread and its
    connection to Triton were left open when the server named a model it does not have."""
    before = set(threading.enumerate())
    worker = InferenceWorker("grpc://triton:8001/nope", lambda _: None, InferenceOptions())
    with pytest.raises(ModelError, match="has no model 'nope'"):
        worker.start()
    worker.stop()
    requesters = [thread for thread in set(threading.enumerate()) - before if thread.name.startswith("triton-requests")]
    for thread in requesters:
        thread.join(30)
    assert not [thread.name for thread in requesters if thread.is_alive()]
    assert triton.closed.is_set(), "its connection was left open"


def _unknown_model(batch: np.ndarray, timeout_s: float) -> list[np.ndarray]:
    raise TritonModelMissing(f"{REQUEST_ID}{UNKNOWN_MODEL.format('m')}")


@pytest.mark.parametrize(
    ("exiting", "said"),
    [(True, "is shutting down"), (False, f"does not serve m now: {UNKNOWN_MODEL.format('m')}")],
)
def test_a_served_model_gone_missing_is_a_shutdown_only_while_the_server_says_it_is_exiting(
    triton: _FakeTriton, exiting: bool, said: str
) -> None:
    """Triton unloads its models as it stops, and answers for them as for a model unloaded on a running
    server: given a node inferring, when its request and then the description read anew find the
    model missing, then the status says shutting down at each while Triton says it is exiting, and
    "does not serve" while it says it is live (an operator unloaded the model)."""
    model = _model()
    try:
        assert len(model.detect([_image()])) == 1
        triton.exiting = exiting
        triton.answer = _unknown_model
        errors = []
        for state in ("READY", "UNAVAILABLE"):  # the request, then the description read again at the next attempt
            triton.state = state
            model._retry_at = 0.0  # the next attempt is due
            with pytest.raises(InferenceUnavailable):
                model.detect([_image()])
            errors.append(model.status.error)
    finally:
        model.close()
    assert errors == [f"Triton at triton:8001 {said}"] * 2


#: HTTP/2's client connection preface, frame types and flags (RFC 9113), as `_Http2NotFound` speaks them.
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
HEADERS, SETTINGS, PING = 0x1, 0x4, 0x6
ACK = END_STREAM = 0x1
END_HEADERS = 0x4
STATUS_404 = b"\x8d"  # HPACK: ":status: 404", entry 13 of its static table


def _frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
    return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big") + payload


class _Http2NotFound(BaseHTTPRequestHandler):
    """HTTP/2 in the clear answering every request 404, as a proxy in front of Triton that does not pass
    gRPC on does (nginx ``listen ... http2; return 404``): the HTTP/2 status, with no gRPC status."""

    def handle(self) -> None:
        self.wfile.write(_frame(SETTINGS, 0, 0, b""))
        if self.rfile.read(len(HTTP2_PREFACE)) != HTTP2_PREFACE:
            return
        while len(header := self.rfile.read(9)) == 9:
            kind, flags, stream = header[3], header[4], int.from_bytes(header[5:], "big") & 0x7FFFFFFF
            payload = self.rfile.read(int.from_bytes(header[:3], "big"))
            if kind in (SETTINGS, PING) and not flags & ACK:
                self.wfile.write(_frame(kind, ACK, 0, payload if kind == PING else b""))
            elif kind == HEADERS:
                self.wfile.write(_frame(HEADERS, END_STREAM | END_HEADERS, stream, STATUS_404))


def test_a_grpc_url_answered_by_an_http2_server_that_is_not_triton_is_an_outage() -> None:
    """A proxy's 404 is no word of Triton's on the model (over http:// it was already an outage): the node
    starts, unavailable and retrying, saying what answers; a request mid-run is no refusal of its frames."""
    with serving(_Http2NotFound, "http2-not-found") as server:
        address = f"127.0.0.1:{server.server_address[1]}"
        model = TritonModel(TritonEndpoint("grpc", address, "m"), f"grpc://{address}/m")
        model.connect()
        model.close()
        transport = open_transport(TritonEndpoint("grpc", address, "m"), 5.0)
        try:
            with pytest.raises(TritonUnavailable) as caught:
                transport.infer("m", "images", np.zeros((1, 3, 32, 32), np.uint8), ["output0"], 5.0)
        finally:
            transport.close()
    said = "not a Triton gRPC endpoint (HTTP/2 status 404): a proxy in front of Triton?"
    assert model.status.error == f"Triton at {address} unreachable: {said}"
    assert str(caught.value) == said


@pytest.mark.parametrize(
    ("address", "other", "hint"),
    [
        (
            "127.0.0.1:8002",
            "HTTP",
            "is 127.0.0.1:8002 Triton's metrics port? its gRPC port is 8001 by default, HTTP 8000",
        ),
        ("127.0.0.1:8000", "HTTP", "is 127.0.0.1:8000 Triton's HTTP port? grpc:// is usually port 8001, http:// 8000"),
        ("[::1]:8001", "gRPC", "is [::1]:8001 Triton's gRPC port? grpc:// is usually port 8001, http:// 8000"),
    ],
)
def test_a_url_at_tritons_default_metrics_port_asks_whether_it_is_that(address: str, other: str, hint: str) -> None:
    """grpc://HOST:8002 is Triton's metrics port, not its HTTP one, as the hint for a port that does not
    speak gRPC had it."""
    assert _port_hint(address, other) == hint
