"""Remote inference when the model, not the server, goes away: a real Triton that has a model unloaded,
replaced or hung under a running node, and an HTTP server in front of Triton that is not Triton.

The server is the real ``tritonserver`` with explicit model control (`TritonProcess`
``explicit_model_control``), so a test unloads the model, or loads it again with another config, through
Triton's own API, as an operator does. Each test leaves the model served as exported.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import server.triton.model as triton_model
from server.frames import Frame, FrameResult
from server.inference.detections import Detections
from server.inference.models import InferenceStatus, InferenceUnavailable, open_model
from server.inference.options import InferenceOptions
from server.inference.worker import InferenceWorker
from server.scene import Scene
from server.triton.model import TritonModel
from server.triton.transport import TritonEndpoint, TritonRefused
from tests.support.triton_server import TritonProcess

MODEL = "segcast-scene-seg"
#: Longer than any test waits: a request left to its deadline shows as a thread that is still there.
HUNG_REQUEST_TIMEOUT_S = 600.0
#: How long a test waits for what should take a few seconds, on a loaded machine.
WAIT_S = 60.0
POLL_S = 0.05


@pytest.fixture(scope="module")
def triton(triton_repository: Path) -> Iterator[TritonProcess]:
    with TritonProcess(triton_repository, explicit_model_control=True) as server:
        yield server


@pytest.fixture
def admin(triton: TritonProcess) -> Iterator[Any]:
    """Triton's model control over HTTP; the model is served as exported again after the test."""
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(f"127.0.0.1:{triton.http_port}")
    try:
        yield client
    finally:
        _unload(client)  # loaded again in place, a model would keep the config it was last given
        client.load_model(MODEL)
        client.close()


def _unload(admin: Any) -> None:
    """Unload the model, and return once Triton no longer has it (it unloads in the background)."""
    admin.unload_model(MODEL)
    _wait_for(lambda: not admin.is_model_ready(MODEL), "the model unloaded")


def _load(admin: Any, config: dict[str, Any], **changes: Any) -> None:
    """Load the model with its ``config`` changed, as an updated model is deployed (in place, if loaded)."""
    admin.load_model(MODEL, config=json.dumps({**config, **changes}))


def _image() -> np.ndarray:
    return Scene(seed=3).render(90)[0]


def test_a_model_unloaded_while_running_is_an_outage_and_its_replacement_is_read_anew(
    triton: TritonProcess, admin: Any
) -> None:
    """Not the frames' fault: inference is unavailable, saying why, and backs off; the model loaded
    again, with another input size, is described anew and used as it now is."""
    config = admin.get_model_config(MODEL)
    model = open_model(triton.grpc_url(MODEL))
    assert isinstance(model, TritonModel)
    try:
        assert len(model.detect([_image()])) == 1
        _unload(admin)
        with pytest.raises(InferenceUnavailable, match=f"does not serve {MODEL} now: Request for unknown model"):
            model.detect([_image()])
        assert not model.status.available and model.status.next_attempt_at is not None
        sent = model.requests
        with pytest.raises(InferenceUnavailable):
            model.detect([_image()])
        assert model.requests == sent  # backing off: nothing sent before the next attempt is due

        _load(admin, config, input=[{**config["input"][0], "dims": [3, 640, 640]}])
        model._retry_at = 0.0  # due now: what the worker sees once the wait is over
        assert len(model.detect([_image()])) == 1
        assert model.status.available
        assert model.overrides["imgsz"] == 640  # letterboxed to the size the model takes now
    finally:
        model.close()


def test_a_refused_part_of_a_split_batch_fails_only_its_frames_and_the_model_is_read_again(
    triton: TritonProcess, admin: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The model is replaced by one with a smaller max batch: of a batch split for the old one, the part
    now too large is refused and the rest answered; the refusal has the model described again, so the
    next batch is split for the new one and every frame answered."""
    config = admin.get_model_config(MODEL)

    def load_with_max_batch(size: int) -> None:
        batching = {**config["dynamic_batching"], "preferred_batch_size": [size]}
        _load(admin, config, max_batch_size=size, dynamic_batching=batching)

    monkeypatch.setattr(triton_model, "REDESCRIBE_AFTER_REFUSAL_S", 0.0)  # read again at the first refusal
    load_with_max_batch(2)
    model = open_model(triton.grpc_url(MODEL))
    assert isinstance(model, TritonModel)
    try:
        load_with_max_batch(1)
        images = [_image()] * 3  # sent as 2 + 1 images, as the model was described
        outcomes = model.submit(images).result()
        assert [type(outcome) for outcome in outcomes] == [TritonRefused, TritonRefused, Detections]
        assert "batch-size must be <= 1" in str(outcomes[0])
        assert model.status.available
        assert len(model.detect(images)) == 3
    finally:
        model.close()


def test_a_model_replaced_in_place_with_other_classes_stops_a_node_sending_frames(
    triton: TritonProcess, admin: Any
) -> None:
    """Triton loads a model of other class names in place of the one served, with no moment without
    one (as ``--model-control-mode=poll`` picks up a changed repository): a node that keeps sending
    frames stops within a few seconds, saying why, rather than label what it finds with the names it
    read at start."""
    config = admin.get_model_config(MODEL)
    metadata = config["parameters"]["metadata"]["string_value"]
    renamed = metadata.replace("'disc'", "'person'").replace("'square'", "'car'").replace("'triangle'", "'dog'")
    assert renamed != metadata
    model = open_model(triton.grpc_url(MODEL))
    assert isinstance(model, TritonModel)
    try:
        names = model.names
        assert len(model.detect([_image()])) == 1
        _load(admin, config, parameters={**config["parameters"], "metadata": {"string_value": renamed}})
        assert "'person'" in admin.get_model_config(MODEL)["parameters"]["metadata"]["string_value"]
        deadline = time.monotonic() + WAIT_S
        while True:
            try:
                model.detect([_image()])  # each answered: the model was never away
            except InferenceUnavailable as exc:
                assert "now has other classes than at start: restart segcast" in str(exc)
                break
            assert time.monotonic() < deadline, f"still inferring {WAIT_S:.0f} s after the model was replaced"
        assert not model.status.available and model.names == names
    finally:
        model.close()


@pytest.mark.parametrize("scheme", ["grpc", "http"])
def test_stopping_a_node_while_triton_hangs_ends_its_pipeline_threads(triton: TritonProcess, scheme: str) -> None:
    """Triton stops answering (SIGSTOP) with one batch at it and the next frame waiting in its slot, the
    inference thread waiting for the answer: stopping the worker ends that thread and the requester
    thread at once, not at the request's deadline."""
    url = triton.grpc_url(MODEL) if scheme == "grpc" else triton.http_url(MODEL)
    endpoint = TritonEndpoint.parse(url)
    assert endpoint is not None
    models: list[TritonModel] = []

    def load(spec: str) -> TritonModel:
        model = TritonModel(endpoint, spec, request_timeout_s=HUNG_REQUEST_TIMEOUT_S)
        model.connect()
        models.append(model)
        return model

    threads_before = set(threading.enumerate())
    results: queue.Queue[FrameResult] = queue.Queue()
    worker = InferenceWorker(url, results.put, InferenceOptions(), load=load)
    worker.start()
    try:
        slot = worker.add_stream("cam", 15.0)
        slot.put(Frame("cam", 0, 1000.0, 0.0, _image()))
        assert results.get(timeout=WAIT_S).frame.seq == 0
        with _hung(triton):
            sent = models[0].requests
            slot.put(Frame("cam", 1, 1001.0, 1 / 15, _image()))
            _wait_for(lambda: models[0].requests > sent, "a request to the hung server")
            slot.put(Frame("cam", 2, 1002.0, 2 / 15, _image()))  # left in its slot while the request is out
            started = [t for t in threading.enumerate() if t not in threads_before]
            pipeline = [t for t in started if t.name == "inference" or t.name.startswith("triton-requests")]
            assert sorted(t.name for t in pipeline) == ["inference", "triton-requests_0"]
            worker.stop()
            deadline = time.monotonic() + WAIT_S
            for thread in pipeline:
                thread.join(max(0.0, deadline - time.monotonic()))
            left = [t.name for t in pipeline if t.is_alive()]
            assert not left, left
    finally:
        worker.stop()


def test_stopping_triton_under_a_node_inferring_says_shutting_down_until_it_is_gone(triton_repository: Path) -> None:
    """Triton unloads its models as it stops and answers for them as for a model unloaded on a running
    server ("Request for unknown model"): given a node inferring over gRPC, when ``segcast triton serve``
    is told to stop, then the node's first status says Triton is shutting down, and none says it does not
    serve the model, until its port refuses connections. A Triton of its own: this one does not come back."""
    with TritonProcess(triton_repository) as server:  # as operators run it: no explicit model control
        model = open_model(server.grpc_url(MODEL))
        assert isinstance(model, TritonModel)
        errors: list[str] = []
        try:
            assert len(model.detect([_image()])) == 1
            assert server.process is not None
            server.process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + WAIT_S
            while not errors or "connection refused" not in errors[-1]:
                assert time.monotonic() < deadline, f"still no refusal {WAIT_S:.0f} s after SIGTERM: {errors}"
                try:
                    model.detect([_image()])
                except InferenceUnavailable:
                    errors.append(model.status.error or "")
                    model._retry_at = 0.0  # the next attempt is due at once: every status on the way down is seen
        finally:
            model.close()
    assert errors[0] == f"Triton at 127.0.0.1:{server.grpc_port} is shutting down", errors
    assert not [error for error in errors if "does not serve" in error], errors


def test_an_idle_node_notices_its_model_going_and_coming_back(triton: TritonProcess, admin: Any) -> None:
    """A node with no streams sends no frames: its status still follows the server, as /healthz and
    /metrics show it."""
    statuses: queue.Queue[InferenceStatus] = queue.Queue()
    worker = InferenceWorker(
        triton.grpc_url(MODEL), lambda result: None, InferenceOptions(), load=open_model, on_status=statuses.put
    )
    worker.start()
    try:
        assert statuses.get(timeout=WAIT_S).available
        _unload(admin)
        went = statuses.get(timeout=WAIT_S)
        assert not went.available and f"does not serve {MODEL} now" in (went.error or "")
        admin.load_model(MODEL)
        while not (status := statuses.get(timeout=WAIT_S)).available:
            assert status.next_attempt_at is not None  # still trying
    finally:
        worker.stop()


@contextmanager
def _hung(triton: TritonProcess) -> Iterator[None]:
    """tritonserver stopped (SIGSTOP): it keeps its connections and answers nothing, until the block ends."""
    children = Path(f"/proc/{triton.pid}/task/{triton.pid}/children").read_text().split()
    [server] = [int(pid) for pid in children]
    os.kill(server, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(server, signal.SIGCONT)


def _wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {WAIT_S:.0f} s")
        time.sleep(POLL_S)
