"""The Triton pieces that run without a tritonserver: the Python backend model ``segcast triton serve``
runs (server/triton/python_model.py), and the configs and repositories it and ``segcast export
--format triton`` write.

The model runs here in-process, under a stand-in for ``triton_python_backend_utils`` (`FakeBackend`):
Triton's backend module exists only inside tritonserver's Python backend stub. What a real server does
with the model is tests/test_triton_cpu_server.py's part.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from server.triton.onnx_config import OnnxSignature, OnnxTensor
from server.triton.repository import BatchingOptions, write_repository
from tests.support.components import require_module
from tests.test_triton_onnx_config import write_onnx

onnx = require_module("onnx", "needs the onnx extra: pip install '.[onnx]'")
require_module("onnxruntime", "needs the onnx extra: pip install '.[onnx]'")
text_format = require_module("google.protobuf.text_format", "needs the triton extra: pip install '.[triton]'")

PYTHON_MODEL = Path(__file__).resolve().parent.parent / "server" / "triton" / "python_model.py"
#: A request as the stand-in backend sees it: each input's name and array.
FakeRequest = dict[str, np.ndarray]


class FakeTensor:
    """``pb_utils.Tensor``: a named array."""

    def __init__(self, name: str, array: np.ndarray) -> None:
        self.name = name
        self.array = array

    def as_numpy(self) -> np.ndarray:
        return self.array


class FakeTritonError(Exception):
    """``pb_utils.TritonError``: a message and a code, ``INTERNAL`` unless given."""

    INTERNAL = "INTERNAL"
    INVALID_ARG = "INVALID_ARG"

    def __init__(self, message: str, code: str = INTERNAL) -> None:
        super().__init__(message)
        self.code = code


class FakeResponse:
    """``pb_utils.InferenceResponse``: its output tensors, or the error refusing the request."""

    def __init__(self, output_tensors: list[FakeTensor] | None = None, error: FakeTritonError | None = None) -> None:
        self.outputs = {tensor.name: tensor.array for tensor in output_tensors or []}
        self.error = error


def fake_backend() -> types.ModuleType:
    """``triton_python_backend_utils`` as far as python_model.py uses it, requests being `FakeRequest`."""
    backend = types.ModuleType("triton_python_backend_utils")
    backend.Tensor = FakeTensor  # type: ignore[attr-defined]
    backend.TritonError = FakeTritonError  # type: ignore[attr-defined]
    backend.InferenceResponse = FakeResponse  # type: ignore[attr-defined]

    def get_input_tensor_by_name(request: FakeRequest, name: str) -> FakeTensor | None:
        return FakeTensor(name, request[name]) if name in request else None

    backend.get_input_tensor_by_name = get_input_tensor_by_name  # type: ignore[attr-defined]
    return backend


class RecordingSession:
    """The model's ONNX Runtime session, noting how many images each run was given."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.batch_sizes: list[int] = []

    def run(self, outputs: list[str], feed: dict[str, np.ndarray]) -> Any:
        self.batch_sizes.append(len(feed["images"]))
        return self.session.run(outputs, feed)


def python_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, max_batch_size: int) -> Any:
    """python_model.py's ``TritonPythonModel``, initialised as Triton would on `write_onnx`'s graph (batch
    dimension free when batching, fixed at 1 when not), its session replaced by a `RecordingSession`.

    The module is loaded from its file under the stand-in backend and kept out of ``sys.modules``, so no
    other test sees a segcast module bound to the stand-in."""
    write_onnx(tmp_path / "yolo" / "1" / "model.onnx", batch="batch" if max_batch_size else 1)
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", fake_backend())
    spec = importlib.util.spec_from_file_location("segcast_test_python_model", PYTHON_MODEL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.TritonPythonModel()
    config = {
        "max_batch_size": max_batch_size,
        "input": [{"name": "images"}],
        "output": [{"name": "output0"}, {"name": "output1"}],
    }
    model.initialize(
        {"model_config": json.dumps(config), "model_repository": str(tmp_path / "yolo"), "model_version": "1"}
    )
    model.session = RecordingSession(model.session)
    return model


def image(value: int, side: int) -> FakeRequest:
    """A request of one ``side`` x ``side`` image, every pixel ``value``, so each answer says whose it is."""
    return {"images": np.full((1, 3, side, side), value, np.uint8)}


def assert_answers(response: FakeResponse, request: FakeRequest) -> None:
    """`write_onnx`'s graph gives the image back, as float (``output0``) and as it came (``output1``)."""
    assert response.error is None
    np.testing.assert_array_equal(response.outputs["output0"], request["images"].astype(np.float32))
    np.testing.assert_array_equal(response.outputs["output1"], request["images"])


def test_requests_of_one_shape_run_as_one_batch_each_answered_with_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given a dynamic batch of three 64x64 requests and one 32x32 among them
    When the model executes it
    Then the 64x64 ones run as one ONNX Runtime call of 3 and the other alone, each answered in order."""
    model = python_model(tmp_path, monkeypatch, max_batch_size=8)
    requests = [image(1, 64), image(2, 32), image(3, 64), image(4, 64)]
    responses = model.execute(requests)
    assert model.session.batch_sizes == [3, 1]
    assert len(responses) == len(requests)
    for response, request in zip(responses, requests, strict=True):
        assert_answers(response, request)


def test_a_refused_request_leaves_the_others_of_its_batch_answered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given a dynamic batch of two images and, between them, a request without the model's input
    When the model executes it
    Then that one is refused as the input's fault, and the two images run together and are answered."""
    model = python_model(tmp_path, monkeypatch, max_batch_size=8)
    requests = [image(1, 64), {"other": np.zeros((1, 3, 64, 64), np.uint8)}, image(3, 64)]
    first, refused, last = model.execute(requests)
    assert refused.error is not None and refused.error.code == FakeTritonError.INVALID_ARG
    assert str(refused.error) == "the request has no input 'images'"
    assert model.session.batch_sizes == [2]
    assert_answers(first, requests[0])
    assert_answers(last, requests[2])


def test_without_a_batch_dimension_each_request_runs_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A model of max_batch_size 0 takes exactly one image a run: joining same-shaped requests would hand
    ONNX Runtime a batch its fixed first dimension refuses, failing every one of them."""
    model = python_model(tmp_path, monkeypatch, max_batch_size=0)
    requests = [image(1, 64), image(2, 64)]
    responses = model.execute(requests)
    assert model.session.batch_sizes == [1, 1]
    for response, request in zip(responses, requests, strict=True):
        assert_answers(response, request)


DYNAMIC_IMAGES = OnnxTensor("images", "TYPE_UINT8", (-1, 3, -1, -1))
FIXED_IMAGES = OnnxTensor("images", "TYPE_UINT8", (1, 3, 640, 640))


@pytest.mark.parametrize(
    ("inputs", "outputs", "batches"),
    [
        ((DYNAMIC_IMAGES,), (OnnxTensor("output0", "TYPE_FP32", (-1, 116, 8400)),), True),
        ((DYNAMIC_IMAGES,), (OnnxTensor("output0", "TYPE_FP32", (1, 116, 8400)),), False),
        ((FIXED_IMAGES,), (OnnxTensor("output0", "TYPE_FP32", (-1, 116, 8400)),), False),
        ((DYNAMIC_IMAGES,), (OnnxTensor("count", "TYPE_INT64", ()),), False),
    ],
    ids=["all-free", "output-batch-fixed", "input-batch-fixed", "scalar-output"],
)
def test_a_file_batches_only_when_every_tensor_has_a_free_first_dimension(
    inputs: tuple[OnnxTensor, ...], outputs: tuple[OnnxTensor, ...], batches: bool
) -> None:
    """A tensor whose first dimension is fixed (or that has none) cannot carry a batch of requests: Triton
    would split its output along a dimension that is not the batch."""
    assert OnnxSignature(inputs, outputs).batches is batches


def write_float_onnx(path: Path, names: dict[int, str]) -> None:
    """A float-input graph carrying ultralytics' metadata (``names``, ``task``), as ``segcast export`` writes
    before the Triton repository takes it: ``output0`` is the input."""
    from onnx import TensorProto, helper

    shape = ["batch", 3, 64, 64]
    graph = helper.make_graph(
        [helper.make_node("Identity", ["images"], ["output0"])],
        "identity",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, shape)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for key, value in {"names": repr(names), "task": "detect"}.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))


def served_names(model_dir: Path) -> Any:
    """The class names the ``metadata`` parameter of ``model_dir``'s config.pbtxt gives a client."""
    from tritonclient.grpc.model_config_pb2 import ModelConfig

    config = text_format.Parse((model_dir / "config.pbtxt").read_text(), ModelConfig())
    return ast.literal_eval(config.parameters["metadata"].string_value)["names"]


def test_writing_a_model_again_leaves_only_the_new_one(tmp_path: Path) -> None:
    """Given a repository holding model ``m`` (with a stale version 2 Triton would serve first) and ``other``
    When ``m`` is written again from another file
    Then ``m`` is that file's alone, version 1 only, and ``other`` is untouched."""
    old, new, repository = tmp_path / "old.onnx", tmp_path / "new.onnx", tmp_path / "models"
    write_float_onnx(old, {0: "old"})
    write_float_onnx(new, {0: "new"})
    write_repository(old, repository, "other")
    model_dir = write_repository(old, repository, "m")
    (model_dir / "2").mkdir()
    (model_dir / "2" / "model.onnx").write_bytes((model_dir / "1" / "model.onnx").read_bytes())
    assert write_repository(new, repository, "m") == model_dir
    assert sorted(path.relative_to(model_dir).as_posix() for path in model_dir.rglob("*")) == [
        "1",
        "1/model.onnx",
        "config.pbtxt",
    ]
    assert served_names(model_dir) == {0: "new"}
    assert served_names(repository / "other") == {0: "old"}


def test_class_names_with_backslashes_and_quotes_reach_clients_as_they_were(tmp_path: Path) -> None:
    """The config's ``metadata`` is a protobuf string literal: a backslash left unescaped there is read as
    the start of an escape, so ``a\\b`` would come back as ``a`` and a backspace."""
    names = {0: "a\\b", 1: 'say "hi"', 2: "it's"}
    write_float_onnx(tmp_path / "model.onnx", names)
    model_dir = write_repository(tmp_path / "model.onnx", tmp_path / "models", "m")
    assert served_names(model_dir) == names


@pytest.mark.parametrize("preferred", [(5,), (0,), (2, 5)])
def test_a_preferred_batch_outside_one_to_the_max_batch_is_refused(preferred: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=r"preferred batch sizes must be from 1 to 4"):
        BatchingOptions(max_batch=4, preferred=preferred)


def test_a_preferred_batch_of_the_max_batch_itself_is_accepted() -> None:
    assert BatchingOptions(max_batch=4, preferred=(1, 4)).preferred == (1, 4)
