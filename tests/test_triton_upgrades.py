"""Day-2 operations on a model served by Triton: its classes changed under running nodes, a new version
loaded beside the one a node uses, its name gone from the server's repository, and the instance count a
repository's config gives ``triton serve``.

The server is tests/test_triton_faults.py's `_FakeTriton` (`_VersionedTriton` for one that serves
versions), or its small gRPC and HTTP servers for what goes over the wire; the repository's ONNX files
are tests/test_triton_onnx_config.py's tiny graphs, read by ONNX Runtime under this Python.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import server.triton.model as triton_model
from server.cli import build_parser
from server.inference.models import InferenceUnavailable
from server.triton import cpu_server
from server.triton.cpu_install import TritonInstall
from server.triton.description import classes_changed
from server.triton.python_repository import write_python_repository
from server.triton.transport import RepositoryModel, TritonEndpoint, TritonModelMissing, open_transport
from tests.test_triton_faults import (  # noqa: F401
    UNKNOWN_MODEL,
    _Clock,
    _FakeTriton,
    _grpc_service,
    _http_server,
    _image,
    _model,
    triton,
)

#: What Triton answers a request pinned to a version it no longer serves (gRPC UNAVAILABLE, HTTP 503).
VERSION_NOT_READY = "Request for unknown model: 'm' version {} is not at ready state"


def test_a_model_replaced_with_other_classes_says_how_they_changed_and_what_a_restart_refuses(
    triton: _FakeTriton,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The operator reading "other classes than at start" learns which, and that a stream filtering on
    a class the new model lacks would process nothing after the restart it asks for."""
    clock = _Clock()
    monkeypatch.setattr(triton_model, "time", clock)
    model = _model()
    try:
        assert len(model.detect([_image()])) == 1
        triton.names = ["circle", "square", "triangle"]
        clock.now += triton_model.DESCRIPTION_MAX_AGE_S
        with pytest.raises(InferenceUnavailable) as caught:
            model.detect([_image()])
    finally:
        model.close()
    assert str(caught.value) == (
        "the model on Triton at triton:8001 now has other classes than at start: restart segcast to use it "
        "(class 0 disc -> circle; added class 2 triangle; a stream filtering on disc processes no frames after "
        "the restart)"
    )


def test_classes_removed_or_renumbered_are_named_and_a_renumbered_name_is_not_lost() -> None:
    old = {0: "disc", 1: "square", 2: "triangle"}
    assert classes_changed(old, {0: "square", 1: "disc"}) == (
        "class 0 disc -> square; class 1 square -> disc; removed class 2 triangle; "
        "a stream filtering on triangle processes no frames after the restart"
    )


def test_a_running_nodes_model_gone_from_the_repository_names_the_models_triton_has(
    triton: _FakeTriton,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Renamed or removed on Triton while the node runs: as at start, the models Triton has are named,
    since the fix is likely in ``--model``; it stays an outage, as the model may come back."""
    monkeypatch.setattr(triton_model, "RETRY_FIRST_S", 0.0)
    model = _model()
    try:
        assert len(model.detect([_image()])) == 1

        def gone(batch: np.ndarray, timeout_s: float) -> list[np.ndarray]:
            raise TritonModelMissing(UNKNOWN_MODEL.format("m"))

        def index(timeout_s: float) -> list[RepositoryModel]:
            return [RepositoryModel(name, "1", "READY", "") for name in ("det", "seg-v2")]

        triton.answer, triton.state = gone, "gone"
        monkeypatch.setattr(triton, "repository_index", index)
        for _ in range(2):  # the request that fails, then the next attempt, which describes the model
            with pytest.raises(InferenceUnavailable):
                model.detect([_image()])
        status = model.status
    finally:
        model.close()
    gone_said = f"does not serve m now: {UNKNOWN_MODEL.format('m')} (it has: det, seg-v2)"
    assert status.error == f"Triton at triton:8001 {gone_said}"
    assert status.next_attempt_at is not None  # still retried


def _repository(tmp_path: Path, instance_group: str) -> Path:
    """A repository of one model, ``yolo``, whose config holds only its metadata and ``instance_group``."""
    from tests.test_triton_onnx_config import METADATA, write_onnx

    write_onnx(tmp_path / "models" / "yolo" / "1" / "model.onnx")
    (tmp_path / "models" / "yolo" / "config.pbtxt").write_text(METADATA + instance_group)
    return tmp_path / "models"


def _served_instances(target: Path) -> list[tuple[int, int]]:
    """(count, kind) of each instance group of the served ``yolo``."""
    from google.protobuf import text_format
    from tritonclient.grpc.model_config_pb2 import ModelConfig

    config: Any = text_format.Parse((target / "yolo" / "config.pbtxt").read_text(), ModelConfig())
    return [(group.count, group.kind) for group in config.instance_group]


def test_triton_serve_runs_the_instance_count_the_config_gives_on_the_cpu(tmp_path: Path) -> None:
    """scaling.md says to add ``count`` in ``instance_group``: without ``--instances`` it is kept, as
    instances on the CPU (a GPU group would not load on the CPU server)."""
    from tritonclient.grpc.model_config_pb2 import ModelInstanceGroup

    repository = _repository(tmp_path, "instance_group [ { count: 2 kind: KIND_GPU }, { count: 1 } ]\n")
    write_python_repository(repository, tmp_path / "served", None, Path(sys.executable))
    assert _served_instances(tmp_path / "served") == [(3, ModelInstanceGroup.KIND_CPU)]


def test_instances_given_replace_the_configs_count_and_say_so(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from tritonclient.grpc.model_config_pb2 import ModelInstanceGroup

    repository = _repository(tmp_path, "instance_group [ { count: 3 kind: KIND_CPU } ]\n")
    with caplog.at_level(logging.INFO, "server.triton.python_repository"):
        write_python_repository(repository, tmp_path / "served", 2, Path(sys.executable))
    assert _served_instances(tmp_path / "served") == [(2, ModelInstanceGroup.KIND_CPU)]
    assert [record.getMessage() for record in caplog.records] == [
        "yolo: --instances 2 replaces the instance count 3 of its config"
    ]


class _VersionedTriton(_FakeTriton):
    """`_FakeTriton` serving versions of ``m`` as Triton does: ``versions`` maps each version in its
    repository to its class names, of which those in ``ready`` are loaded. The config read and a request
    that name no version go to the highest version loaded; a request pinned to one not loaded is refused
    as Triton refuses it. ``answered_by`` records the version that answered each request."""

    def __init__(self) -> None:
        super().__init__()
        self.versions = {"1": ["disc", "square"]}
        self.ready = {"1"}
        self.answered_by: list[str] = []

    def _latest(self) -> str:
        return max(self.ready, key=int)

    def model_config(self, model: str, timeout_s: float) -> dict[str, Any]:
        self.names = self.versions[self._latest()]
        return super().model_config(model, timeout_s)

    def infer(
        self, model: str, input_name: str, batch: np.ndarray, outputs: list[str], timeout_s: float, version: str = ""
    ) -> list[np.ndarray]:
        if version and version not in self.ready:
            raise TritonModelMissing(VERSION_NOT_READY.format(version))
        answering = version or self._latest()
        self.names = self.versions[answering]
        self.answered_by.append(answering)
        return super().infer(model, input_name, batch, outputs, timeout_s, version)

    def repository_index(self, timeout_s: float) -> list[RepositoryModel]:
        return [
            RepositoryModel("m", version, "READY" if version in self.ready else "UNAVAILABLE", "")
            for version in sorted(self.versions, key=int)
        ]


@pytest.fixture
def versioned(monkeypatch: pytest.MonkeyPatch) -> _VersionedTriton:
    server = _VersionedTriton()
    monkeypatch.setattr(triton_model, "open_transport", lambda endpoint, timeout_s: server)
    return server


def test_a_new_version_with_other_classes_never_answers_frames_labelled_with_the_old_names(
    versioned: _VersionedTriton, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given a node using version 1 of m, when version 2, of other classes, is loaded beside it
    (model control poll, version policy latest:1) and version 1 is then unloaded, then every answer the
    node takes is version 1's, until it reads the new version and stops with "other classes"."""
    clock = _Clock()
    monkeypatch.setattr(triton_model, "time", clock)
    model = _model()
    try:
        assert len(model.detect([_image()])) == 1
        versioned.versions["2"] = ["circle", "square"]  # as many classes: its answers fit the old names too
        versioned.ready.add("2")
        assert len(model.detect([_image()])) == 1  # before the node reads the description again
        clock.now += triton_model.DESCRIPTION_MAX_AGE_S
        with pytest.raises(InferenceUnavailable, match="now has other classes than at start: restart segcast"):
            model.detect([_image()])
        versioned.ready.discard("1")
        clock.now += triton_model.RETRY_MAX_S
        with pytest.raises(InferenceUnavailable, match=r"restart segcast to use it \(class 0 disc -> circle;"):
            model.detect([_image()])
        assert model.names == {0: "disc", 1: "square"}
    finally:
        model.close()
    assert versioned.answered_by == ["1", "1"]


def test_a_new_version_with_the_same_classes_is_used_once_the_old_one_is_unloaded_without_a_restart(
    versioned: _VersionedTriton, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given a node using version 1, when version 2 of the same classes is loaded and version 1 unloaded,
    then the request pinned to version 1 fails as the model missing, and the next attempt reads the
    model anew and sends to version 2."""
    clock = _Clock()
    monkeypatch.setattr(triton_model, "time", clock)
    model = _model()
    try:
        assert len(model.detect([_image()])) == 1
        versioned.versions["2"] = ["disc", "square"]
        versioned.ready.add("2")
        assert len(model.detect([_image()])) == 1
        versioned.ready.discard("1")
        with pytest.raises(InferenceUnavailable) as caught:
            model.detect([_image()])
        clock.now += triton_model.RETRY_FIRST_S
        assert len(model.detect([_image()])) == 1
        assert model.status.available
    finally:
        model.close()
    assert str(caught.value) == f"Triton at triton:8001 does not serve m now: {VERSION_NOT_READY.format(1)}"
    assert versioned.answered_by == ["1", "1", "2"]


@pytest.mark.parametrize("scheme", ["grpc", "http"])
def test_a_request_pinned_to_a_version_triton_unloaded_is_the_model_missing_over_either_protocol(scheme: str) -> None:
    """Triton answers a request for a version it no longer serves with UNAVAILABLE (HTTP 503), as it
    answers when too busy: the transport sends the version, and tells the model missing, which the node
    reads again, from a server it would only wait for."""
    asked: list[str] = []
    message = f"[request id: <id_unknown>] {VERSION_NOT_READY.format(1)}"
    batch = np.zeros((1, 3, 32, 32), np.uint8)
    if scheme == "http":

        def answer(method: str, path: str) -> tuple[int, bytes]:
            asked.append(path)
            return 503, json.dumps({"error": message}).encode()

        server = _http_server(answer)
    else:
        import grpc
        from tritonclient.grpc import service_pb2_grpc

        class Service(service_pb2_grpc.GRPCInferenceServiceServicer):
            def ModelInfer(self, request: Any, context: Any) -> Any:  # gRPC's method name
                asked.append(request.model_version)
                context.abort(grpc.StatusCode.UNAVAILABLE, message)

        server = _grpc_service(Service())
    with server as address:
        transport = open_transport(TritonEndpoint(scheme, address, "m"), 5.0)
        try:
            with pytest.raises(TritonModelMissing, match="version 1 is not at ready state"):
                transport.infer("m", "images", batch, ["output0"], 5.0, "1")
        finally:
            transport.close()
    assert asked == (["/v2/models/m/versions/1/infer"] if scheme == "http" else ["1"])


def test_requests_are_pinned_to_the_highest_version_triton_has_loaded(triton: _FakeTriton) -> None:  # noqa: F811
    """The version a request naming none goes to, whose description the node read: not one still
    loading or unloaded, nor another model's."""
    index = [
        RepositoryModel("m", "2", "READY", ""),
        RepositoryModel("m", "10", "READY", ""),
        RepositoryModel("m", "11", "LOADING", ""),
        RepositoryModel("m", "12", "UNAVAILABLE", "unloaded"),
        RepositoryModel("det", "13", "READY", ""),
    ]
    triton.repository_index = lambda timeout_s: index  # type: ignore[method-assign]
    model = _model()
    try:
        served = model._served
    finally:
        model.close()
    assert served is not None and served.version == "10"


def test_triton_serve_without_instances_leaves_each_models_count_to_its_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``segcast triton serve DIR`` as the command line parses it: no ``--instances`` reaches the
    repository's writer as None, which keeps each config's ``instance_group`` count."""
    given: list[int | None] = []

    class Written(Exception):
        pass

    def write(source: Path, target: Path, instances: int | None, python: Path) -> list[str]:
        given.append(instances)
        raise Written

    monkeypatch.setattr(cpu_server, "write_python_repository", write)
    args: argparse.Namespace = build_parser().parse_args(["triton", "serve", str(tmp_path)])
    install = TritonInstall(tmp_path, tmp_path / "tritonserver", tmp_path, tmp_path, tmp_path / "stub")
    with pytest.raises(Written):
        cpu_server.serve(install, args)
    assert given == [None]
