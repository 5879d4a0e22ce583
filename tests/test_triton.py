"""Remote inference on a real NVIDIA Triton Inference Server (issue 16).

The server is the real ``tritonserver`` binary, started by `tests.support.triton_server` on a model
repository that ``segcast export --format triton`` wrote (the `triton_repository` fixture). What it
must show: the same detections as the same model in-process, one-line errors for a model segcast
cannot use, a node that starts while Triton is down and carries on when Triton stops and comes back,
and requests of two nodes executed together in one batch.
"""

from __future__ import annotations

import io
import json
import queue
import re
import shutil
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest
from aiohttp.test_utils import TestClient

from server.app import create_app
from server.config import Settings, StreamConfig
from server.frames import Frame, FrameResult
from server.http.metrics import model_labels
from server.inference.detections import Detections, detect
from server.inference.models import InferenceUnavailable, ModelError, load_model, open_model
from server.inference.options import InferenceOptions
from server.inference.worker import InferenceWorker
from server.scene import Scene
from server.triton.model import RETRY_MAX_S, PendingDetections, RequestTiming, TritonModel
from server.triton.repository import BatchingOptions, model_config
from server.triton.served_model import ServedModel
from server.triton.transport import TritonEndpoint
from tests.support.dashboard import DASHBOARD, exported
from tests.support.polling import eventually
from tests.support.ports import free_port
from tests.support.segcast_process import SegcastProcess
from tests.support.triton_server import TritonProcess
from tests.support.truth import mask_iou, polygon_mask
from tools.track_report import box_iou

MODEL = "segcast-scene-seg"
POLL_S = 0.05
_T = TypeVar("_T")
SEGMENT_CONFIG: dict[str, Any] = {
    "name": MODEL,
    "max_batch_size": 8,
    "input": [{"name": "images", "data_type": "TYPE_FP32", "dims": ["3", "-1", "-1"]}],
    "output": [{"name": "output0", "data_type": "TYPE_FP32"}, {"name": "output1", "data_type": "TYPE_FP32"}],
    "parameters": {
        "metadata": {"string_value": "{'task': 'segment', 'names': {0: 'disc', 1: 'square'}, 'imgsz': [320, 320]}"}
    },
}


# -- without a server ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("grpc://triton:8001/yolo", ("grpc", "triton:8001", "yolo")),
        ("http://10.0.0.5/yolo", ("http", "10.0.0.5:8000", "yolo")),
        ("grpc://[::1]:9001/m/", ("grpc", "[::1]:9001", "m")),
        ("yolov8n-seg.pt", None),
        ("rtsp://camera/stream", None),
    ],
)
def test_a_triton_url_names_scheme_address_and_model(spec: str, expected: tuple[str, str, str] | None) -> None:
    endpoint = TritonEndpoint.parse(spec)
    assert (None if endpoint is None else (endpoint.scheme, endpoint.address, endpoint.model)) == expected


@pytest.mark.parametrize(
    "spec", ["grpc://triton:8001/", "grpc://triton:8001/a/b", "http://triton:99999/m", "grpc://triton:0/m"]
)
def test_a_broken_triton_url_is_one_line_naming_the_flag(spec: str) -> None:
    with pytest.raises(ModelError, match=r"^--model ") as caught:
        TritonEndpoint.parse(spec)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("spec", ["grpc:/triton:8001/m", "grpc:triton:8001/m", "http:/triton/m"])
def test_a_triton_url_without_its_two_slashes_asks_whether_they_were_meant(spec: str) -> None:
    """Not taken for a file name, which said "no such file or folder"."""
    scheme = spec.split(":")[0]
    with pytest.raises(ModelError, match=f"^--model {spec}: did you mean {scheme}://HOST:PORT/MODEL, with two slashes"):
        open_model(spec)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("grpcs://triton:8001/yolo", "without TLS; use grpc://HOST:PORT/MODEL"),
        ("https://triton/yolo", r"without TLS \(and downloads no models: give a local file\); use http://"),
        (
            "grpc://segcast:secret@triton:8001/yolo",
            r"^--model grpc://segcast:\*\*\*@triton:8001/yolo: segcast sends Triton no",
        ),
        ("http://secret@triton:8000/yolo?x=1", "no credentials"),
        ("grpc://triton:8001/yolo?version=2", r"without \?query or #fragment"),
    ],
)
def test_tls_credentials_and_queries_are_refused_in_one_line_that_hides_the_password(spec: str, message: str) -> None:
    """segcast sends Triton neither TLS nor credentials: asking for them stops the start, rather than
    the URL being taken for a file or its password silently dropped."""
    with pytest.raises(ModelError, match=message) as caught:
        open_model(spec)
    assert str(caught.value).startswith("--model ") and "\n" not in str(caught.value)
    assert "secret" not in str(caught.value)


def test_a_served_model_is_read_from_its_config() -> None:
    served = ServedModel.from_config(SEGMENT_CONFIG, "grpc://h:1/m")
    assert served.names == {0: "disc", 1: "square"}
    assert (served.task, served.imgsz, served.max_batch, served.fixed_shape) == ("segment", 320, 8, None)
    assert served.outputs == ("output0", "output1")


def _config_with(**changes: Any) -> dict[str, Any]:
    return {**SEGMENT_CONFIG, **changes}


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (_config_with(parameters={}), "no 'metadata' parameter"),
        (
            _config_with(parameters={"metadata": {"string_value": "{'task': 'segment'}"}}),
            "metadata has no names",
        ),
        (
            _config_with(input=[{"name": "images", "data_type": "TYPE_FP32", "dims": ["640", "640", "3"]}]),
            r"input images has shape \[640, 640, 3\]",
        ),
        (_config_with(input=[{"name": "images", "data_type": "TYPE_INT32", "dims": ["3", "-1", "-1"]}]), "INT32"),
        (_config_with(output=[{"name": "output0", "data_type": "TYPE_FP32"}]), "no mask prototypes"),
        (
            _config_with(parameters={"metadata": {"string_value": "{'task': 'classify', 'names': ['a']}"}}),
            "a classification model",
        ),
    ],
)
def test_a_model_segcast_cannot_use_is_one_line_saying_what_is_wrong(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ModelError, match=message) as caught:
        ServedModel.from_config(config, "grpc://h:1/m")
    assert str(caught.value).startswith("--model grpc://h:1/m: ")
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("task", "outputs", "said"),
    [
        ("detect", ["output0", "output1"], "2 outputs (output0, output1), not 1: a segment model? export"),
        ("segment", ["output0", "output1", "output2"], "3 outputs (output0, output1, output2), not 2: export"),
        ("detect", [], "0 outputs, not 1: export"),
    ],
)
def test_outputs_that_do_not_fit_the_metadata_task_say_what_the_model_seems_to_be(
    task: str, outputs: list[str], said: str
) -> None:
    metadata = {"string_value": f"{{'task': '{task}', 'names': {{0: 'disc'}}}}"}
    config = _config_with(parameters={"metadata": metadata}, output=[{"name": name} for name in outputs])
    with pytest.raises(ModelError) as caught:
        ServedModel.from_config(config, "grpc://h:1/m")
    assert str(caught.value) == (
        f"--model grpc://h:1/m: its metadata says task {task!r}, but it has {said} it again or fix the metadata"
    )


def test_a_fixed_size_model_is_letterboxed_to_its_size() -> None:
    config = _config_with(input=[{"name": "images", "data_type": "TYPE_FP32", "dims": ["3", "384", "640"]}])
    served = ServedModel.from_config(config, "grpc://h:1/m")
    assert (served.fixed_shape, served.imgsz) == ((384, 640), 640)


def test_retries_back_off_to_a_cap_so_recovery_is_prompt() -> None:
    """Attempts against a port nobody listens on: each fails fast, and the wait never exceeds the cap."""
    model = TritonModel(TritonEndpoint("grpc", f"127.0.0.1:{free_port()}", MODEL), "grpc://test")
    image = np.zeros((64, 64, 3), np.uint8)
    waits = []
    for _ in range(6):
        model._retry_at = 0.0  # due now: what the worker sees once the wait is over
        with pytest.raises(Exception, match="unreachable"):
            model.detect([image])
        status = model.status
        assert not status.available and status.next_attempt_at is not None
        waits.append(status.next_attempt_at - time.time())
    assert waits[1] > waits[0]  # it backs off...
    assert max(waits) <= RETRY_MAX_S + 0.5  # ...but never longer than the cap


class _HeldAnswers(TritonModel):
    """A remote model whose server answers only when the test releases each request; logs what happens."""

    def __init__(self, log: list[str]) -> None:
        super().__init__(TritonEndpoint("grpc", "127.0.0.1:1", MODEL), "grpc://test")
        self._served = ServedModel(
            {0: "disc"}, "segment", 320, 32, "images", np.dtype(np.uint8), None, ("output0", "output1"), 8, False
        )
        self.log = log
        self.requests_out: queue.Queue[Future[list[np.ndarray]]] = queue.Queue()
        self.awaited = threading.Event()  # the inference thread is waiting for an answer
        self.sent: list[Future[list[np.ndarray]]] = []
        self.unanswered_at_submit: list[int] = []  # of the requests sent before, at each request

    def submit(self, images: list[np.ndarray], **options: Any) -> PendingDetections:
        self.unanswered_at_submit.append(sum(not sent.done() for sent in self.sent))
        answer: Future[list[np.ndarray]] = Future()
        self.sent.append(answer)
        on_answer = options.get("on_answer")
        if on_answer is not None:
            answer.add_done_callback(lambda _: on_answer())
        self.log.append("request")
        self.requests_out.put(answer)
        return _Awaited(self, answer, lambda _: [Detections.empty() for _ in images], RequestTiming())


class _Awaited(PendingDetections):
    def __init__(self, model: _HeldAnswers, *args: Any) -> None:
        super().__init__(model, *args)
        self._held = model

    def result(self) -> list[Detections]:
        self._held.awaited.set()
        return super().result()


class _NextFrameAtEachRequest(_HeldAnswers):
    """Puts the next of ``frames`` in ``slot`` as each request goes out: a thread that sends behind a
    request still out takes it at once."""

    def __init__(self, log: list[str], slot: Any, frames: list[Frame]) -> None:
        super().__init__(log)
        self.slot, self.frames = slot, frames

    def submit(self, images: list[np.ndarray], **options: Any) -> PendingDetections:
        pending = super().submit(images, **options)
        if self.frames:
            self.slot.put(self.frames.pop(0))
        return pending


def test_a_remote_model_has_the_next_batch_out_once_the_last_is_answered() -> None:
    """Batch 2 goes out once batch 1 is answered, with the newest frame (where the thread takes it before
    it finishes batch 1, the server works on it meanwhile), never behind a batch still out, where its
    frames waited that one's whole request, aging. Frames come out in order."""
    results: queue.Queue[FrameResult] = queue.Queue()
    image = np.zeros((64, 64, 3), np.uint8)
    frames = [Frame("cam", seq, 1000.0 + seq, seq / 15, image) for seq in range(3)]
    model: _NextFrameAtEachRequest | None = None

    def load(_: str) -> _NextFrameAtEachRequest:
        nonlocal model
        model = _NextFrameAtEachRequest([], None, frames[1:])
        return model

    worker = InferenceWorker("grpc://test", results.put, InferenceOptions(), load=load)
    worker.start()
    try:
        assert model is not None
        model.slot = worker.add_stream("cam", 15.0)
        model.slot.put(frames[0])
        for _ in range(3):
            model.requests_out.get(timeout=30).set_result([])
        assert [results.get(timeout=30).frame.seq for _ in range(3)] == [0, 1, 2]
    finally:
        worker.stop()
    assert model.unanswered_at_submit == [0, 0, 0], "a batch went out behind one still out"


class _BrokenOnce(_HeldAnswers):
    def submit(self, images: list[np.ndarray], **options: Any) -> PendingDetections:
        if not self.log:
            self.log.append("broken")
            raise IndexError("a bug in post-processing")
        return super().submit(images, **options)


def test_an_unexpected_error_of_a_remote_model_costs_the_frame_not_the_thread() -> None:
    model = _BrokenOnce([])
    results: queue.Queue[FrameResult] = queue.Queue()
    worker = InferenceWorker("grpc://test", results.put, InferenceOptions(), load=lambda _: model)
    worker.start()
    try:
        slot = worker.add_stream("cam", 15.0)
        image = np.zeros((64, 64, 3), np.uint8)
        slot.put(Frame("cam", 0, 1000.0, 0.0, image))
        assert slot.wait_empty(threading.Event())  # taken, and failed
        slot.put(Frame("cam", 1, 1001.0, 0.1, image))
        model.requests_out.get(timeout=30).set_result([])
        assert results.get(timeout=30).frame.seq == 1
        stats = worker.stats("cam")
        assert stats is not None and stats.errors == 1
        assert stats.last_error == "model failed: IndexError: a bug in post-processing"
    finally:
        worker.stop()


def test_the_exported_config_is_valid_triton_text_with_batching_and_metadata(triton_repository: Path) -> None:
    from google.protobuf import text_format
    from tritonclient.grpc.model_config_pb2 import DataType, ModelConfig

    text = (triton_repository / MODEL / "config.pbtxt").read_text()
    config = text_format.Parse(text, ModelConfig())
    assert (config.name, config.backend, config.max_batch_size) == (MODEL, "onnxruntime", 8)
    assert list(config.dynamic_batching.preferred_batch_size) == [4, 8]
    assert [(i.name, i.data_type, tuple(i.dims)) for i in config.input] == [
        ("images", DataType.TYPE_UINT8, (3, -1, -1))
    ]
    assert sorted(o.name for o in config.output) == ["output0", "output1"]
    metadata = config.parameters["metadata"].string_value
    served = ServedModel.from_config(
        {
            "input": [{"name": "images", "data_type": "TYPE_UINT8", "dims": [3, -1, -1]}],
            "output": [{"name": o.name} for o in config.output],
            "max_batch_size": 8,
            "parameters": {"metadata": {"string_value": metadata}},
        },
        "grpc://h:1/m",
    )
    assert served.names == load_model("bundled").names
    assert (triton_repository / MODEL / "1" / "model.onnx").stat().st_size > 0


def test_the_served_model_takes_pixels_and_gives_what_the_float_model_gives(tmp_path: Path) -> None:
    """Requests carry uint8 pixels (a quarter of the bytes); the scaling moved into the graph changes nothing."""
    import onnxruntime

    from server.inference.export import Progress, export_model
    from server.triton.repository import check_pixel_input_model, write_pixel_input_model

    plain = export_model("bundled", "onnx", tmp_path, progress=Progress(3, io.StringIO())).path
    pixel = tmp_path / "pixel.onnx"
    write_pixel_input_model(plain, pixel)
    [image] = onnxruntime.InferenceSession(str(pixel), providers=["CPUExecutionProvider"]).get_inputs()
    assert image.type == "tensor(uint8)"
    check_pixel_input_model(plain, pixel, (384, 640))  # raises if any output differs
    with pytest.raises(ValueError, match="not float"):
        write_pixel_input_model(pixel, tmp_path / "twice.onnx")


def test_batching_options_are_checked(triton_repository: Path) -> None:
    with pytest.raises(ValueError, match="preferred"):
        BatchingOptions(max_batch=4, preferred=(8,))
    text = model_config(triton_repository / MODEL / "1" / "model.onnx", "m", BatchingOptions(16, (16,), 500, 2))
    assert "max_batch_size: 16" in text and "max_queue_delay_microseconds: 500" in text and "count: 2" in text


async def test_a_node_starts_while_triton_is_down_and_says_so(aiohttp_client: Any) -> None:
    settings = Settings(
        model=f"grpc://127.0.0.1:{free_port()}/{MODEL}", streams=(StreamConfig("cam", "scene:?seed=3"),)
    )
    client: TestClient = await aiohttp_client(create_app(settings))

    async def unavailable_stream() -> dict[str, Any] | None:
        stream = await (await client.get("/api/streams/cam")).json()
        error = stream["last_inference_error"] or ""
        return stream if error.startswith("inference unavailable") else None

    stream = await eventually(unavailable_stream, what="frames failing with 'inference unavailable'")
    assert stream["state"] == "live"  # the camera is fine; only inference is missing
    assert stream["inference"]["state"] == "unavailable" and "unreachable" in stream["inference"]["error"]
    health = await (await client.get("/healthz")).json()
    assert health["inference"]["state"] == "unavailable"
    metrics = await (await client.get("/metrics")).text()
    assert "segcast_inference_available 0.0" in metrics


# -- with a real Triton server --------------------------------------------------------------------


@pytest.fixture(scope="module")
def triton(triton_repository: Path) -> Iterator[TritonProcess]:
    """Shared by this module's tests; with explicit model control, so one can unload the model (and
    must load it again before it ends)."""
    with TritonProcess(triton_repository, explicit_model_control=True) as server:
        yield server


def _scene_images() -> list[np.ndarray]:
    return [Scene(seed=3).render(index)[0] for index in (90, 150, 240)]


@pytest.mark.parametrize("scheme", ["grpc", "http"])
def test_triton_finds_and_outlines_what_the_same_model_finds_in_process(triton: TritonProcess, scheme: str) -> None:
    url = triton.grpc_url(MODEL) if scheme == "grpc" else triton.http_url(MODEL)
    # Loaded first: the remote model is asked for its description again once it is a few seconds old.
    local = load_model("bundled")  # the same weights in PyTorch, in this process
    remote = open_model(url)
    assert isinstance(remote, TritonModel) and remote.status.available
    assert remote.names == local.names
    options: dict[str, Any] = {"imgsz": 320, "conf": 0.25, "iou": 0.7, "agnostic_nms": True, "max_det": 300}
    images = _scene_images()
    served = remote.detect(images, **options)  # one request for the three frames
    expected = detect(local, images, verbose=False, **options)
    assert sum(len(d) for d in expected) >= 6  # the scene has objects to compare
    for image, got, want in zip(images, served, expected, strict=True):
        assert len(got) == len(want)
        assert got.class_ids.tolist() == want.class_ids.tolist()
        for i in range(len(want)):
            assert box_iou(tuple(got.boxes[i, :4]), tuple(want.boxes[i, :4])) > 0.9
            got_mask = polygon_mask(got.outline(i), image.shape[:2])
            want_mask = polygon_mask(want.outline(i), image.shape[:2])
            assert mask_iou(got_mask, want_mask) > 0.9
    assert remote.requests == 2  # the model's description, then one request for the three frames


def test_an_http_url_at_the_grpc_port_says_it_is_not_triton_http(triton: TritonProcess) -> None:
    """The node starts, unavailable with a reason a person can act on, and retries like any outage."""
    model = open_model(f"http://127.0.0.1:{triton.grpc_port}/{MODEL}")
    try:
        assert isinstance(model, TritonModel) and not model.status.available
        assert "unreachable: not a Triton HTTP endpoint" in (model.status.error or "")
        assert f"is 127.0.0.1:{triton.grpc_port} Triton's gRPC port? grpc:// is usually port 8001, http:// 8000" in (
            model.status.error or ""
        )
    finally:
        model.close()


def test_a_grpc_url_at_the_http_port_asks_whether_it_is_triton_http(triton: TritonProcess) -> None:
    """gRPC says no more than "Socket closed" of a server that does not speak it."""
    model = open_model(f"grpc://127.0.0.1:{triton.http_port}/{MODEL}")
    try:
        assert isinstance(model, TritonModel) and not model.status.available
        assert f"is 127.0.0.1:{triton.http_port} Triton's HTTP port? grpc:// is usually port 8001, http:// 8000" in (
            model.status.error or ""
        )
    finally:
        model.close()


def test_an_unknown_model_name_is_one_line_naming_it(triton: TritonProcess) -> None:
    with pytest.raises(ModelError, match=f"has no model 'nope' \\(it has: {MODEL}\\)$") as caught:
        open_model(triton.grpc_url("nope"))
    assert str(caught.value).startswith("--model grpc://") and "\n" not in str(caught.value)


def test_a_node_started_while_triton_has_not_loaded_its_model_infers_once_it_is_loaded(triton: TritonProcess) -> None:
    """Triton answers NOT_FOUND for a model in its repository that it has not loaded, as for a wrong
    name: the node must start all the same, say why it waits, and find the model by itself."""
    import tritonclient.http as httpclient

    admin = httpclient.InferenceServerClient(f"127.0.0.1:{triton.http_port}")
    model: Any = None
    try:
        admin.unload_model(MODEL)
        _poll(lambda: _state(admin) == "UNAVAILABLE", "the model unloaded")  # Triton unloads in the background
        model = open_model(triton.grpc_url(MODEL))
        assert isinstance(model, TritonModel) and not model.status.available
        assert model.status.error == f"Triton at 127.0.0.1:{triton.grpc_port} has {MODEL} but has not loaded it " + (
            "(state UNAVAILABLE: unloaded)"
        )
        admin.load_model(MODEL)  # answers once loaded
        images = _scene_images()[:1]
        found = _poll(lambda: _detected(model, images), "detections once the model is loaded")
        assert len(found[0]) > 0 and model.status.available
    finally:
        if not admin.is_model_ready(MODEL):  # the other tests of the module need it
            admin.load_model(MODEL)
        admin.close()
        if model is not None:
            model.close()


def _state(admin: Any) -> str:
    """The model's state in Triton's repository index."""
    [entry] = [entry for entry in admin.get_model_repository_index() if entry["name"] == MODEL]
    return str(entry.get("state", ""))


def _detected(model: TritonModel, images: list[np.ndarray]) -> list[Detections] | None:
    """The detections, or None while inference is unavailable (until the next attempt is due)."""
    try:
        return model.detect(images, imgsz=320)
    except InferenceUnavailable:
        return None


def _poll(check: Callable[[], _T | None], what: str, timeout_s: float = 60.0) -> _T:
    """``check()`` once it is neither None nor False; fails after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while (value := check()) is None or value is False:
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(POLL_S)
    return value


async def test_a_node_rides_out_triton_stopping_and_coming_back(aiohttp_client: Any, triton: TritonProcess) -> None:
    settings = Settings(model=triton.grpc_url(MODEL), streams=(StreamConfig("cam", "scene:?seed=3"),))
    client: TestClient = await aiohttp_client(create_app(settings))
    socket = await client.ws_connect("/ws")
    hello = await socket.receive_json()
    assert hello["inference"]["state"] == "available"

    async def stream() -> dict[str, Any]:
        info = await (await client.get("/api/streams/cam")).json()
        return dict(info)

    async def processed_beyond(count: int) -> int | None:
        done = (await stream())["frames_processed"]
        return done if done > count else None

    before = await eventually(lambda: processed_beyond(5), timeout_s=60, what="frames inferred by Triton")

    triton.stop()
    await eventually(
        lambda: _inference_message(socket, "unavailable"), timeout_s=60, what="an 'inference unavailable' message"
    )
    info = await stream()
    assert info["state"] == "live" and info["inference"]["state"] == "unavailable"
    assert info["last_inference_error"].startswith("inference unavailable")
    metrics = await (await client.get("/metrics")).text()
    assert "segcast_inference_available 0.0" in metrics
    assert _metric(metrics, "segcast_remote_request_failures_total") >= 1
    stalled = (await stream())["frames_processed"]
    assert stalled >= before

    triton.start()  # the same ports: the node must find it again by itself
    await eventually(lambda: _inference_message(socket, "available"), timeout_s=60, what="inference available again")
    await eventually(lambda: processed_beyond(stalled + 5), timeout_s=60, what="frames inferred after the restart")
    assert "segcast_inference_available 1.0" in await (await client.get("/metrics")).text()
    await socket.close()


async def test_a_node_on_triton_names_its_model_and_triton_has_what_the_dashboard_reads(
    aiohttp_client: Any, triton: TritonProcess
) -> None:
    """Nodes on two models had the same unlabelled segcast_remote_* series: segcast_model_info names
    each node's model and its Triton, so they can be told apart (the dashboard joins them on it), and
    Triton's own /metrics has each of its series the dashboard's Triton panels read, for the model."""
    url = triton.grpc_url(MODEL)
    client: TestClient = await aiohttp_client(
        create_app(Settings(model=url, streams=(StreamConfig("cam", "scene:?seed=3"),)))
    )

    async def inferred() -> bool:
        return bool((await (await client.get("/api/streams/cam")).json())["frames_processed"] > 0)

    await eventually(inferred, timeout_s=60, what="frames inferred by Triton")
    metrics = await (await client.get("/metrics")).text()
    assert f'segcast_model_info{{model="{url}",server="127.0.0.1:{triton.grpc_port}"}} 1' in metrics.splitlines()
    dashboard = DASHBOARD.read_text()
    remote = set(re.findall(r"\bsegcast_remote_[a-z_]+", dashboard))
    assert remote and all(exported(name, metrics) for name in remote), "the remote request time panel's series"
    served = triton.metrics().splitlines()
    names = set(re.findall(r"\bnv_[a-z_]+", dashboard))
    assert len(names) == 5
    missing = {
        name for name in names if not any(row.startswith(f"{name}{{") and f'model="{MODEL}"' in row for row in served)
    }
    assert not missing, f"Triton's /metrics has no series of {MODEL} for {missing}"


@pytest.mark.parametrize(
    ("spec", "labels"),
    [
        ("grpc://triton:8001/seg", {"model": "grpc://triton:8001/seg", "server": "triton:8001"}),
        ("http://triton/seg", {"model": "http://triton/seg", "server": "triton:8000"}),
        ("grpc://[::1]:9001/seg", {"model": "grpc://[::1]:9001/seg", "server": "[::1]:9001"}),
        ("/models/yolo11n-seg.pt", {"model": "/models/yolo11n-seg.pt", "server": ""}),
        # Refused at start, but never shown with its password, wherever it would be.
        ("grpc://admin:hunter22@triton:8001/seg", {"model": "grpc://admin:***@triton:8001/seg", "server": ""}),
    ],
)
def test_model_info_names_the_model_without_a_password_and_the_server_of_a_triton_url(
    spec: str, labels: dict[str, str]
) -> None:
    assert model_labels(spec) == labels


async def _inference_message(socket: Any, state: str) -> bool:
    """Read the socket until an ``inference`` message with ``state`` (frames and JPEGs are passed over)."""
    message = await socket.receive(timeout=30)
    if message.type.name != "TEXT":
        return False
    data = json.loads(message.data)
    return data.get("type") == "inference" and data.get("state") == state


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def test_two_nodes_requests_are_executed_together(triton_repository: Path, tmp_path: Path) -> None:
    """Each node has one camera, and its requests go out one after another, each holding one image: a
    node never has two requests at the server at once. An execution of two or more images therefore
    joined requests of both nodes: Triton's own statistics must show such executions.

    The repository here waits up to 20 ms for a request's partner (the default waits 0.1 ms): on a
    busy server requests queue behind the running execution and meet anyway, but on an idle test
    machine two nodes' requests rarely arrive within 0.1 ms of each other.
    """
    repository = tmp_path / "models"
    shutil.copytree(triton_repository, repository)
    served = repository / MODEL / "1" / "model.onnx"
    (repository / MODEL / "config.pbtxt").write_text(
        model_config(served, MODEL, BatchingOptions(queue_delay_us=20_000))
    )
    with TritonProcess(repository) as triton:
        _two_nodes_batched(triton)


def _two_nodes_batched(triton: TritonProcess) -> None:
    before = _batch_executions(triton)
    nodes = [
        SegcastProcess("--model", triton.grpc_url(MODEL), "--source", f"cam{seed}=scene:?seed={seed}&fps=30")
        for seed in (4, 5)
    ]
    try:
        for node in nodes:
            node.start()
        for node in nodes:
            node.wait_for_processed_frames(40)
        after = _batch_executions(triton)
    finally:
        for node in nodes:
            node.terminate(timeout_s=30)
    joined = {size: count - before.get(size, 0) for size, count in after.items() if size >= 2}
    assert sum(joined.values()) > 0, f"no execution held more than one image: {after}"


def _batch_executions(triton: TritonProcess) -> dict[int, int]:
    """Executions per batch size, from Triton's ``/v2/models/<m>/stats``."""
    with urllib.request.urlopen(f"{triton.http_base}/v2/models/{MODEL}/stats", timeout=10) as reply:
        stats = json.load(reply)["model_stats"][0]
    return {int(entry["batch_size"]): int(entry["compute_infer"]["count"]) for entry in stats.get("batch_stats", [])}
