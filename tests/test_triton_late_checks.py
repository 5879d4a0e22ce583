"""What a node on Triton can only find out late, and what ``segcast triton serve`` meets from its user.

A stream's class filter is checked against the model's classes when it is added; a model on a Triton
server that was down at start has no classes yet, so the check comes once the server described it.
A Triton stopping normally closes its kept-alive connections: that is an outage, not a sign that the
URL names the wrong port. The launcher stops its server cleanly when its terminal closes, and tells a
model folder from a repository. A Triton URL typed with the wrong scheme, or none, gets the right form,
and a device that a model on Triton does not use is said to be unused.
"""

from __future__ import annotations

import logging
import signal
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from server.config import Settings, StreamConfig
from server.frames import Frame
from server.inference.detections import Detections
from server.inference.models import ModelError, resolve_model_path
from server.inference.options import InferenceOptions
from server.inference.worker import InferenceWorker
from server.options import StreamOptions
from server.sources import StreamState, open_source
from server.streams import HandedInError, StreamManager
from server.triton.model import PendingDetections, RequestTiming, TritonModel
from server.triton.served_model import ServedModel
from server.triton.transport import TritonEndpoint, TritonUnavailable, open_transport
from tests.support.components import require_module
from tests.test_worker import Listener

REPO = Path(__file__).resolve().parents[1]
NAMES = {0: "disc", 1: "square", 2: "triangle"}
WAIT_S = 30.0
POLL_S = 0.02


class _DescribedByFirstRequest(TritonModel):
    """A Triton model whose server was down at start: it has no classes until its first request,
    which describes it (as `TritonModel.submit` does); every request is answered at once, empty."""

    def __init__(self) -> None:
        super().__init__(TritonEndpoint("grpc", "127.0.0.1:1", "m"), "grpc://test/m")
        self.requests_sent = 0

    def submit(self, images: list[np.ndarray], **options: Any) -> PendingDetections:
        self.requests_sent += 1
        self._served = ServedModel(
            NAMES, "segment", 320, 32, "images", np.dtype(np.uint8), None, ("o0", "o1"), 8, False
        )
        answer: Future[list[Any]] = Future()
        answer.set_result([])
        options["on_answer"]()
        return PendingDetections(self, answer, lambda _: [Detections.empty() for _ in images], RequestTiming())

    def probe(self, on_answer: Callable[[], None]) -> None:
        """Never asked: the test's frames keep it busy."""


def _wait_for_errors(worker: InferenceWorker, stream_id: str, count: int) -> None:
    """Until the stream has ``count`` frames failed; fails after `WAIT_S`."""
    deadline = time.monotonic() + WAIT_S
    while (stats := worker.stats(stream_id)) is None or stats.errors < count:
        assert time.monotonic() < deadline, f"timed out after {WAIT_S:.0f} s waiting for {count} failed frames"
        time.sleep(POLL_S)


STATUE = {"name": "statue", "points": [[0, 0], [1, 0], [1, 1]], "units": "fraction", "classes": ["person"]}


@pytest.mark.parametrize(
    ("options", "reason", "fix"),
    [
        (
            {"classes": ["person"]},
            "classes: the model has no class 'person'; it knows disc, square, triangle",
            "give the stream classes the model knows (PATCH /api/streams/s, or its config file's classes",
        ),
        (
            {"ignore_zones": [STATUE]},
            "ignore_zones[0].classes: the model has no class 'person'; it knows disc, square, triangle",
            "give its ignore zones classes the model knows (PATCH /api/streams/s, or its config file's ignore_zones",
        ),
        (
            {"class_filters": {"person": {"conf": 0.6}}},
            "class_filters.person: the model has no class 'person'; it knows disc, square, triangle",
            "give its class filters classes the model knows (PATCH /api/streams/s, or its config file's class_filters",
        ),
    ],
)
def test_a_class_the_model_lacks_stops_the_stream_once_a_late_described_model_is_known(
    caplog: pytest.LogCaptureFixture, options: dict[str, Any], reason: str, fix: str
) -> None:
    """Given a stream filtering on "person" (or ignoring it in an ignore zone, or filtering it by a class
    filter), added while the model's
    classes were unknown, when the first request describes the model, then the stream says why it cannot
    work, once, with the fix, and none of its later frames goes to the server."""
    model = _DescribedByFirstRequest()
    worker = InferenceWorker("grpc://test/m", lambda _: None, InferenceOptions(), load=lambda _: model)
    worker.start()
    caplog.set_level(logging.WARNING, logger="server.inference.worker")
    try:
        worker.check_options(StreamOptions.from_mapping(options))  # not known yet: passes
        slot = worker.add_stream("s", 15.0, StreamOptions.from_mapping(options))
        image = np.zeros((64, 64, 3), np.uint8)
        for seq in range(3):
            slot.put(Frame("s", seq, 1000.0 + seq, seq / 15, image))
            _wait_for_errors(worker, "s", seq + 1)
        stats = worker.stats("s")
        assert stats is not None and stats.processed == 0
        assert stats.options_error == reason and stats.last_error == reason
        assert model.requests_sent == 1  # only the frame that described the model
    finally:
        worker.stop()
    told = [
        r.getMessage() for r in caplog.records if r.name == "server.inference.worker" and "person" in r.getMessage()
    ]
    assert told == [f"[s] none of its frames can be processed: {reason}; {fix} and restart segcast)"]


def test_an_ignore_zone_changed_in_place_is_checked_once_the_model_is_known(caplog: pytest.LogCaptureFixture) -> None:
    """A running stream given, in place, an ignore zone of a class the model lacks (a change checked while the
    model could not be asked; here made on the worker directly): the next frame finds it, once, as for a new
    stream, rather than failing in its tracker on every frame."""
    model = _DescribedByFirstRequest()
    worker = InferenceWorker("grpc://test/m", lambda _: None, InferenceOptions(), load=lambda _: model)
    worker.start()
    try:
        slot = worker.add_stream("s", 15.0, StreamOptions())
        image = np.zeros((64, 64, 3), np.uint8)
        slot.put(Frame("s", 0, 1000.0, 0.0, image))
        deadline = time.monotonic() + WAIT_S
        while (stats := worker.stats("s")) is None or stats.processed < 1:
            assert time.monotonic() < deadline, "the first frame was never processed"
            time.sleep(POLL_S)
        assert worker.change_shapes("s", StreamOptions.from_mapping({"ignore_zones": [STATUE]}))
        for seq in (1, 2):
            slot.put(Frame("s", seq, 1000.0 + seq, seq / 15, image))
            _wait_for_errors(worker, "s", seq)
        stats = worker.stats("s")
        assert stats is not None and stats.processed == 1
        reason = "ignore_zones[0].classes: the model has no class 'person'; it knows disc, square, triangle"
        assert stats.options_error == reason and stats.last_error == reason, stats
        assert model.requests_sent == 1, "no frame after the change goes to the model: it could never be tracked"
    finally:
        worker.stop()


class _States(Listener):
    """The viewers' side of a `StreamManager`: the states it announces, and when it announced a failure."""

    def __init__(self) -> None:
        super().__init__()
        self.announced: list[tuple[str, StreamState, str | None]] = []
        self.failed = threading.Event()

    def state_threadsafe(self, stream_id: str, state: StreamState, error: str | None) -> None:
        self.announced.append((stream_id, state, error))
        if state is StreamState.FAILED:
            self.failed.set()


def test_a_stream_found_unfit_late_shows_failed_and_opens_again_with_classes_the_model_knows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Before, it stayed ``live`` with no error, reading its camera for ever, none of it processed."""
    model = _DescribedByFirstRequest()
    monkeypatch.setattr("server.streams.InferenceWorker", _worker_of(model))
    person = StreamOptions.from_mapping({"classes": ["person"]})
    states = _States()
    manager = StreamManager(
        Settings(model="grpc://test/m", streams=(StreamConfig("s", "scene:?seed=1", options=person),)), states
    )
    manager.start()
    try:
        assert states.failed.wait(WAIT_S)
        reason = "classes: the model has no class 'person'; it knows disc, square, triangle"
        assert states.announced[-1] == ("s", StreamState.FAILED, reason)
        status = manager.info("s").status
        assert (status.state, status.error) == (StreamState.FAILED, reason)
        # Other classes: opened again, and it runs.
        manager.replace(StreamConfig("s", "scene:?seed=1", options=StreamOptions.from_mapping({"classes": ["disc"]})))
        deadline = time.monotonic() + WAIT_S
        while manager.info("s").frames_processed == 0:
            assert time.monotonic() < deadline, "the stream with known classes never processed a frame"
            time.sleep(POLL_S)
        assert manager.info("s").status.state is StreamState.LIVE
    finally:
        manager.stop()


def test_a_published_stream_found_unfit_late_refuses_new_options_saying_to_publish_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Its publisher was let go with the failure, so nothing can go on with new options: before, the
    change was answered 404, "removed meanwhile", for a stream still listed as failed."""
    model = _DescribedByFirstRequest()
    monkeypatch.setattr("server.streams.InferenceWorker", _worker_of(model))
    person = StreamOptions.from_mapping({"classes": ["person"]})
    states = _States()
    manager = StreamManager(Settings(model="grpc://test/m"), states)
    manager.start()
    try:
        manager.add_source(StreamConfig("cam", "webrtc:127.0.0.1", options=person), open_source("scene:?seed=1"))
        assert states.failed.wait(WAIT_S)
        disc = StreamOptions.from_mapping({"classes": ["disc"]})
        with pytest.raises(HandedInError, match="cannot be reopened: remove it and publish again") as refusal:
            manager.replace(StreamConfig("cam", "webrtc:127.0.0.1", options=disc))
        assert "the model has no class 'person'" in str(refusal.value)
        status = manager.info("cam").status
        assert status.state is StreamState.FAILED and manager.config("cam").options == person
    finally:
        manager.stop()


def _worker_of(model: TritonModel) -> Callable[..., InferenceWorker]:
    """`InferenceWorker` as `StreamManager` makes it, loading ``model`` whatever its spec."""

    def make(*args: Any, **kwargs: Any) -> InferenceWorker:
        return InferenceWorker(*args, load=lambda _: model, **kwargs)

    return make


def test_a_device_and_half_are_said_to_be_unused_with_a_model_on_triton(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="server.inference.worker")
    worker = InferenceWorker(
        "grpc://test/m",
        lambda _: None,
        InferenceOptions(device="cuda:0", half=True),
        load=lambda _: _DescribedByFirstRequest(),
    )
    worker.start()
    worker.stop()
    assert caplog.messages == [
        "device cuda:0 is not used: a model on Triton runs where its server places it "
        "(instance_group in its config.pbtxt)",
        "half is not used: a model on Triton runs at the precision of the model its server was given",
    ]


@contextmanager
def _http_listener(reply: bytes) -> Iterator[str]:
    """A server that reads each request, sends ``reply`` (nothing: none) and closes the connection."""

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            while self.rfile.readline() not in (b"\r\n", b""):
                pass
            self.wfile.write(reply)

    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"127.0.0.1:{server.server_address[1]}"
        finally:
            server.shutdown()
            thread.join()


def _asked_over(scheme: str, reply: bytes) -> tuple[str, str]:
    """The server's address and why a ``scheme`` transport found it unavailable, where it answers ``reply``."""
    with _http_listener(reply) as address:
        transport = open_transport(TritonEndpoint(scheme, address, "m"), 2.0)
        try:
            with pytest.raises(TritonUnavailable) as caught:
                transport.model_config("m", 2.0)
        finally:
            transport.close()
    return address, str(caught.value)


def test_a_connection_closed_without_an_answer_is_an_outage_not_the_wrong_port() -> None:
    """A Triton shutting down closes its kept-alive connections unanswered: no question about the port."""
    assert _asked_over("http", b"")[1] == "connection closed before any answer"


def test_an_answer_that_is_not_http_asks_whether_it_is_the_grpc_port_without_the_parsers_words() -> None:
    http2_settings = b"\x00\x00\x06\x04\x00\x00\x00\x00\x00\x00\x03\x00\x00\x00\x64"  # what a gRPC port sends
    address, reason = _asked_over("http", http2_settings)
    assert reason == (
        f"not a Triton HTTP endpoint (its answer is not HTTP/1.1): is {address} Triton's gRPC port? "
        "grpc:// is usually port 8001, http:// 8000"
    )


@pytest.mark.parametrize(
    ("reply", "said"),
    [
        (b"HTTP/1.1 400 Bad Request\r\n\r\n", "it answers HTTP/1.1, not gRPC: an http:// endpoint?"),
        (b"220 an SMTP server, say\r\n", "its answer is not gRPC:"),
        (b"", "it closed the connection without speaking gRPC:"),  # as Triton's HTTP port does
    ],
)
def test_a_grpc_url_at_a_server_that_is_not_grpc_asks_whether_it_is_the_http_port(reply: bytes, said: str) -> None:
    """gRPC's own text (``Failed parsing HTTP/2 ... (Trying to connect an http1.x server (HTTP status 400))``)
    gives the reply's bytes, not the likely mistake."""
    address, reason = _asked_over("grpc", reply)
    assert reason == f"{said} is {address} Triton's HTTP port? grpc:// is usually port 8001, http:// 8000"


#: A launcher's work as `serve` does it, on a stand-in for tritonserver that says when SIGTERM stops it.
_LAUNCHER = """
import os, sys, tempfile, time
from server.triton.cpu_server import _running

SERVER = '''
import signal, sys, time
def stop(signum, frame):
    print("server: stopped by", signal.Signals(signum).name, flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
print("server: ready", flush=True)
while True:
    time.sleep(1)
'''
with tempfile.TemporaryDirectory(prefix="segcast-triton-", dir=sys.argv[1]):
    with _running([sys.executable, "-c", SERVER], dict(os.environ)) as (process, log):
        deadline = time.monotonic() + 30
        while "server: ready" not in log.tail and time.monotonic() < deadline:
            time.sleep(0.02)
        print("ready", flush=True)
        process.wait()
"""


def test_a_closed_terminal_stops_the_server_cleanly_and_leaves_no_work_folder(tmp_path: Path) -> None:
    launcher = subprocess.Popen(
        [sys.executable, "-c", _LAUNCHER, str(tmp_path)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert launcher.stdout is not None and launcher.stdout.readline() == "ready\n"
        launcher.send_signal(signal.SIGHUP)
        _, log = launcher.communicate(timeout=WAIT_S)
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.communicate()
    assert launcher.returncode == 0, log
    assert "server: stopped by SIGTERM" in log
    assert list(tmp_path.iterdir()) == []


def test_a_model_folder_given_as_the_repository_names_the_folder_to_give(tmp_path: Path) -> None:
    require_module("tritonclient.grpc", "needs the triton extra: pip install '.[triton]'")  # reads configs
    from server.triton.cpu_install import TritonCpuError
    from server.triton.python_repository import write_python_repository

    model = tmp_path / "models" / "segcast-scene-seg"
    (model / "1").mkdir(parents=True)
    (model / "1" / "model.onnx").write_bytes(b"")
    (model / "config.pbtxt").write_text('backend: "onnxruntime"\n')
    with pytest.raises(TritonCpuError) as caught:
        write_python_repository(model, tmp_path / "served", 1, Path(sys.executable))
    assert str(caught.value) == (
        f"{model}: a model folder (it has config.pbtxt), not a repository of them; give the folder it is in, "
        f"{tmp_path / 'models'}"
    )


@pytest.mark.parametrize("spec", ["triton://host:8001/m", "host:8001/m"])
def test_a_triton_address_without_its_scheme_gets_the_url_forms(spec: str) -> None:
    with pytest.raises(ModelError) as caught:
        resolve_model_path(spec)
    assert str(caught.value).endswith("; a model on Triton is grpc://HOST:PORT/MODEL or http://HOST:PORT/MODEL")


def test_a_node_started_while_triton_is_down_does_not_log_inference_ready(caplog: pytest.LogCaptureFixture) -> None:
    """The reason is logged first; the line after it must not read as inference working."""
    from tests.support.ports import free_port

    caplog.set_level(logging.INFO, logger="server")
    endpoint = TritonEndpoint("grpc", f"127.0.0.1:{free_port()}", "m")  # nothing listens there
    model = TritonModel(endpoint, str(endpoint))

    def connected(_: str) -> TritonModel:
        model.connect()
        return model

    worker = InferenceWorker(str(endpoint), lambda _: None, InferenceOptions(), load=connected)
    try:
        worker.start()
        worker.stop()
    finally:
        model.close()
    said = [message for message in caplog.messages if message.startswith(("inference thread", "inference unav"))]
    assert said[0].startswith("inference unavailable: ")
    assert said[1].startswith(f"inference thread started on {endpoint} (max batch ")
    assert said[1].endswith("; Triton unavailable: retrying")
    assert not any(message.startswith("inference thread ready") for message in said)
