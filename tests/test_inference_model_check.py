"""A model that loads but cannot run stops start-up with one line, as one that cannot load does."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.inference.models import ModelError, load_model


def identity_onnx(path: Path) -> Path:
    """An ONNX model that loads (image in, image out) but gives nothing a YOLO model gives."""
    onnx = pytest.importorskip("onnx", reason="needs the onnx extra: pip install '.[onnx]'")
    pytest.importorskip("onnxruntime", reason="needs the onnx extra: pip install '.[onnx]'")
    helper = onnx.helper
    shape = ["b", 3, "h", "w"]
    graph = helper.make_graph(
        [helper.make_node("Identity", ["images"], ["output0"])],
        "identity",
        [helper.make_tensor_value_info("images", onnx.TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("output0", onnx.TensorProto.FLOAT, shape)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # one every ONNX Runtime reads
    onnx.save(model, path)
    return path


def test_a_model_that_loads_but_cannot_run_is_refused_at_load_with_one_line(tmp_path: Path) -> None:
    """Given an export that opens in its runtime but whose outputs are no YOLO model's, when it is
    loaded, then load fails naming --model and why, rather than start-up passing and every frame failing."""
    model = identity_onnx(tmp_path / "identity.onnx")
    with pytest.raises(ModelError, match=r"^--model .*identity\.onnx: loads but does not run \(.+\)$") as caught:
        load_model(str(model))
    assert "\n" not in str(caught.value)
