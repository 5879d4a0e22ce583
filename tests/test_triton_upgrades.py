"""Day-2 operations on a model served by Triton: its classes changed under running nodes, its name gone
from the server's repository, and the instance count a repository's config gives ``triton serve``.

The server is tests/test_triton_faults.py's `_FakeTriton`; the repository's ONNX files are
tests/test_triton_onnx_config.py's tiny graphs, read by ONNX Runtime under this Python.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import server.triton.model as triton_model
from server.inference.models import InferenceUnavailable
from server.triton.description import classes_changed
from server.triton.python_repository import write_python_repository
from server.triton.transport import RepositoryModel, TritonModelMissing
from tests.test_triton_faults import UNKNOWN_MODEL, _Clock, _FakeTriton, _image, _model, triton  # noqa: F401


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
