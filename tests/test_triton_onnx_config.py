"""``segcast triton serve`` completes a model config from its ONNX file and checks it against the file,
as Triton's ONNX Runtime backend does, before any tritonserver starts.

The ONNX files here are tiny graphs built on the spot; ONNX Runtime reads them under this Python
(the launcher uses the Triton venv's), so no Triton install is needed.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest

from server.triton.cpu_install import TritonCpuError
from server.triton.python_repository import write_python_repository
from tests.support.components import require_module

onnx = require_module("onnx", "needs the onnx extra: pip install '.[onnx]'")
require_module("onnxruntime", "needs the onnx extra: pip install '.[onnx]'")
text_format = require_module("google.protobuf.text_format", "needs the triton extra: pip install '.[triton]'")

METADATA = "parameters { key: \"metadata\" value { string_value: \"{'task': 'segment'}\" } }\n"


def write_onnx(path: Path, batch: int | str = "batch") -> None:
    """A graph taking uint8 ``images`` [batch, 3, h, w] and giving them back as float ``output0``
    and uint8 ``output1``: an exported model's tensors, without its network."""
    from onnx import TensorProto, helper

    shape = [batch, 3, "height", "width"]
    graph = helper.make_graph(
        [
            helper.make_node("Cast", ["images"], ["output0"], to=TensorProto.FLOAT),
            helper.make_node("Identity", ["images"], ["output1"]),
        ],
        "tensors",
        [helper.make_tensor_value_info("images", TensorProto.UINT8, shape)],
        [
            helper.make_tensor_value_info("output0", TensorProto.FLOAT, shape),
            helper.make_tensor_value_info("output1", TensorProto.UINT8, shape),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # what the ONNX Runtime of the Triton venv reads
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))


def served_config(repository: Path, target: Path, instances: int = 1) -> Any:
    from tritonclient.grpc.model_config_pb2 import ModelConfig

    [name] = write_python_repository(repository, target, instances, Path(sys.executable))
    return text_format.Parse((target / name / "config.pbtxt").read_text(), ModelConfig())


def test_a_config_holding_only_metadata_is_completed_from_the_onnx_file(tmp_path: Path) -> None:
    """As Ultralytics' Triton guide writes it: no backend, no tensors; Triton reads them from the file."""
    write_onnx(tmp_path / "models" / "yolo" / "1" / "model.onnx")
    (tmp_path / "models" / "yolo" / "config.pbtxt").write_text(METADATA)
    config = served_config(tmp_path / "models", tmp_path / "served")
    assert config.backend == "python"
    assert [(t.name, t.data_type, list(t.dims)) for t in config.input] == [("images", 2, [3, -1, -1])]
    assert [(t.name, t.data_type, list(t.dims)) for t in config.output] == [
        ("output0", 11, [3, -1, -1]),  # TYPE_FP32
        ("output1", 2, [3, -1, -1]),  # TYPE_UINT8
    ]
    assert config.max_batch_size == 8
    assert list(config.dynamic_batching.preferred_batch_size) == [4, 8]
    assert config.parameters["metadata"].string_value == "{'task': 'segment'}"


def test_the_config_is_completed_from_the_highest_numbered_version_not_the_last_in_text_order(
    tmp_path: Path,
) -> None:
    """Version 10 is newer than 9 though "10" sorts first; 9's file, batching, fits 10's fixed batch."""
    write_onnx(tmp_path / "models" / "yolo" / "9" / "model.onnx")
    write_onnx(tmp_path / "models" / "yolo" / "10" / "model.onnx", batch=1)
    (tmp_path / "models" / "yolo" / "config.pbtxt").write_text(METADATA)
    config = served_config(tmp_path / "models", tmp_path / "served")
    assert config.max_batch_size == 0
    assert [list(t.dims) for t in config.input] == [[1, 3, -1, -1]]


def test_a_hidden_folder_in_the_repository_is_not_taken_for_a_model(tmp_path: Path) -> None:
    """Jupyter leaves .ipynb_checkpoints beside the models; Triton skips such folders, and so must segcast."""
    write_onnx(tmp_path / "models" / "yolo" / "1" / "model.onnx")
    (tmp_path / "models" / "yolo" / "config.pbtxt").write_text(METADATA)
    (tmp_path / "models" / ".ipynb_checkpoints").mkdir()
    assert write_python_repository(tmp_path / "models", tmp_path / "served", 1, Path(sys.executable)) == ["yolo"]


def test_a_config_named_other_than_its_folder_is_refused_naming_both(tmp_path: Path) -> None:
    model = tmp_path / "models" / "yolo"
    write_onnx(model / "1" / "model.onnx")
    (model / "config.pbtxt").write_text(f'name: "other"\n{METADATA}')
    with pytest.raises(TritonCpuError) as refused:
        served_config(tmp_path / "models", tmp_path / "served")
    assert str(refused.value) == f"{model}/config.pbtxt: name 'other' differs from its folder, as Triton forbids"


def test_the_instances_share_the_cpus_onnx_runtime_threads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two instances each running a thread per CPU would oversubscribe the CPUs twice over."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))
    write_onnx(tmp_path / "models" / "yolo" / "1" / "model.onnx")
    (tmp_path / "models" / "yolo" / "config.pbtxt").write_text(METADATA)
    config = served_config(tmp_path / "models", tmp_path / "served", instances=2)
    assert config.parameters["intra_op_thread_count"].string_value == "4"


def test_a_thread_count_the_config_gives_is_kept(tmp_path: Path) -> None:
    write_onnx(tmp_path / "models" / "yolo" / "1" / "model.onnx")
    (tmp_path / "models" / "yolo" / "config.pbtxt").write_text(
        f'parameters {{ key: "intra_op_thread_count" value {{ string_value: "3" }} }}\n{METADATA}'
    )
    config = served_config(tmp_path / "models", tmp_path / "served", instances=2)
    assert config.parameters["intra_op_thread_count"].string_value == "3"


def test_a_fixed_batch_file_is_completed_without_batching(tmp_path: Path) -> None:
    write_onnx(tmp_path / "models" / "yolo" / "1" / "model.onnx", batch=1)
    (tmp_path / "models" / "yolo" / "config.pbtxt").write_text(METADATA)
    config = served_config(tmp_path / "models", tmp_path / "served")
    assert config.max_batch_size == 0
    assert [list(t.dims) for t in config.input] == [[1, 3, -1, -1]]


@pytest.mark.parametrize(
    ("tensors", "problems"),
    [
        (
            'input [ { name: "input" data_type: TYPE_FP16 dims: [ 3, -1, -1 ] } ]\n',
            [
                "input 'input' is not in the file (its inputs: images)",
                "input 'images' of the file is not in the config",
            ],
        ),
        (
            'input [ { name: "images" data_type: TYPE_FP16 dims: [ 3, 640, 640 ] } ]\n'
            'output [ { name: "output0" data_type: TYPE_FP32 dims: [ 4, -1, -1 ] } ]\n',
            [
                "input 'images' is TYPE_FP16 in the config, TYPE_UINT8 in the file",
                "output 'output0' has dims [ 4, -1, -1 ] in the config, [ 3, -1, -1 ] after the batch dimension "
                "in the file",
            ],
        ),
        (
            'input [ { name: "images" data_type: TYPE_UINT8 dims: [ -1, 3, -1, -1 ] } ]\n',
            [
                "input 'images' has dims [ -1, 3, -1, -1 ] in the config, [ 3, -1, -1 ] after the batch dimension "
                "in the file"
            ],
        ),
    ],
)
def test_a_config_contradicting_the_onnx_file_is_refused_naming_every_mismatch(
    tmp_path: Path, tensors: str, problems: list[str]
) -> None:
    """Triton's ONNX Runtime backend refuses such a model; loaded anyway, it would fail every request
    (``Unexpected input data type``) while clients saw it ready."""
    onnx_path = tmp_path / "models" / "yolo" / "1" / "model.onnx"
    write_onnx(onnx_path)
    (tmp_path / "models" / "yolo" / "config.pbtxt").write_text(
        f'backend: "onnxruntime"\nmax_batch_size: 8\n{tensors}{METADATA}'
    )
    with pytest.raises(TritonCpuError) as refused:
        served_config(tmp_path / "models", tmp_path / "served")
    assert str(refused.value) == (
        f"{tmp_path / 'models' / 'yolo'}/config.pbtxt does not match {onnx_path}: {'; '.join(problems)}. Fix the "
        "config, or leave out its input and output lists for triton serve to read them from the file"
    )


def test_batching_a_file_with_a_fixed_batch_is_refused(tmp_path: Path) -> None:
    write_onnx(tmp_path / "models" / "yolo" / "1" / "model.onnx", batch=1)
    (tmp_path / "models" / "yolo" / "config.pbtxt").write_text(f'backend: "onnxruntime"\nmax_batch_size: 8\n{METADATA}')
    with pytest.raises(TritonCpuError, match=r"input 'images' has a fixed first dimension \(1\) in the file, so "):
        served_config(tmp_path / "models", tmp_path / "served")


def test_a_config_without_backend_or_onnx_file_names_both(tmp_path: Path) -> None:
    model = tmp_path / "models" / "yolo"
    (model / "1").mkdir(parents=True)
    (model / "config.pbtxt").write_text(METADATA)
    with pytest.raises(TritonCpuError) as refused:
        served_config(tmp_path / "models", tmp_path / "served")
    assert str(refused.value) == (
        f"{model}: config.pbtxt names no backend or platform and there is no {model}/1/model.onnx to tell it "
        'from; put the ONNX file there (and backend: "onnxruntime" in config.pbtxt)'
    )


def test_a_file_onnx_runtime_cannot_open_is_named(tmp_path: Path) -> None:
    onnx_path = tmp_path / "models" / "yolo" / "1" / "model.onnx"
    onnx_path.parent.mkdir(parents=True)
    onnx_path.write_bytes(b"not an onnx file")
    (tmp_path / "models" / "yolo" / "config.pbtxt").write_text(METADATA)
    with pytest.raises(TritonCpuError, match=rf"^{onnx_path}: ONNX Runtime cannot open it \("):
        served_config(tmp_path / "models", tmp_path / "served")


def test_a_reshaped_input_is_checked_as_the_model_sees_it(tmp_path: Path) -> None:
    """Clients send ``dims``, the model sees ``reshape``: Triton takes this config, so must segcast."""
    write_onnx(tmp_path / "models" / "yolo" / "1" / "model.onnx", batch=1)
    (tmp_path / "models" / "yolo" / "config.pbtxt").write_text(
        'backend: "onnxruntime"\n'
        'input [ { name: "images" data_type: TYPE_UINT8 dims: [ 3, 4, 5 ] reshape { shape: [ 1, 3, -1, -1 ] } } ]\n'
        f'output [ {{ name: "output0" data_type: TYPE_FP32 dims: [ 1, 3, -1, -1 ] }} ]\n{METADATA}'
    )
    config = served_config(tmp_path / "models", tmp_path / "served")
    assert list(config.input[0].reshape.shape) == [1, 3, -1, -1]


def test_a_file_tensor_triton_has_no_type_for_is_named_not_a_traceback(tmp_path: Path) -> None:
    from tritonclient.grpc import model_config_pb2 as schema

    from server.triton.onnx_config import OnnxSignature, OnnxTensor, complete_config

    signature = OnnxSignature((OnnxTensor("images", "tensor(float8e4m3fn)", (-1, 3, -1, -1)),), ())
    with pytest.raises(ValueError, match=r"^the ONNX file's 'images' is a tensor\(float8e4m3fn\), which Triton"):
        complete_config(schema, schema.ModelConfig(), signature)


def test_a_module_in_the_current_folder_does_not_stand_in_for_onnx_runtime(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every other run of the venv's Python leaves the current folder and PYTHONPATH out; this one did not."""
    write_onnx(tmp_path / "models" / "yolo" / "1" / "model.onnx")
    (tmp_path / "models" / "yolo" / "config.pbtxt").write_text(METADATA)
    here = tmp_path / "here"
    here.mkdir()
    (here / "onnxruntime.py").write_text("raise ImportError('a stand-in from the current folder')\n")
    monkeypatch.chdir(here)
    monkeypatch.setenv("PYTHONPATH", str(here))
    config = served_config(Path("../models"), tmp_path / "served")  # relative, as a user may give it
    assert [t.name for t in config.input] == ["images"]


def test_a_venv_given_as_a_relative_path_reads_the_onnx_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`triton serve --venv v`: the venv's Python runs from the venv's folder, where "v/bin/python3"
    led nowhere (No such file or directory)."""
    from tritonclient.grpc.model_config_pb2 import ModelConfig

    write_onnx(tmp_path / "models" / "yolo" / "1" / "model.onnx")
    (tmp_path / "models" / "yolo" / "config.pbtxt").write_text(METADATA)
    (tmp_path / "v" / "bin").mkdir(parents=True)
    (tmp_path / "v" / "bin" / "python3").symlink_to(sys.executable)
    monkeypatch.chdir(tmp_path)
    [name] = write_python_repository(Path("models"), tmp_path / "served", 1, Path("v/bin/python3"))
    config = text_format.Parse((tmp_path / "served" / name / "config.pbtxt").read_text(), ModelConfig())
    assert [t.name for t in config.input] == ["images"]
