"""A Triton model repository for an exported ONNX model: what ``segcast export --format triton`` writes.

```
DIR/<name>/config.pbtxt
DIR/<name>/1/model.onnx
```

The config is for NVIDIA's own tritonserver and its ONNX Runtime backend, CPU or GPU (``KIND_AUTO``
puts the instance on a GPU when there is one). The model takes the letterboxed picture as uint8 RGB
pixels and scales them to 0-1 as its first step, so a request carries a quarter of the bytes of
ultralytics' float input: at 640x384, 0.7 MB a frame instead of 2.9 MB, which is what lets one
server's network link carry dozens of cameras. Dynamic batching lets Triton join the requests of
many segcast nodes into one execution. The ``metadata`` parameter carries what the ONNX file's own
metadata says of the model (class names, task, input size, stride) in the format ultralytics' Triton
client reads too. Only that format is shared: ultralytics' client (``YOLO("grpc://...")``) cannot
use this model, because it sends its 0-1 float input cast to the model's uint8 type, making every
pixel 0 or 1 (no detections); segcast's own client sends the pixels.
"""

from __future__ import annotations

import ast
import contextlib
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: ONNX metadata keys that go into the Triton config's ``metadata`` parameter, parsed from their strings.
METADATA_KEYS = ("description", "author", "version", "task", "stride", "batch", "imgsz", "names", "args", "end2end")
_PARSED_KEYS = frozenset({"stride", "batch", "imgsz", "names", "args", "end2end"})


@dataclass(frozen=True, slots=True)
class BatchingOptions:
    """How Triton batches requests: ``max_batch`` images per execution, preferring ``preferred`` sizes
    and holding a request up to ``queue_delay_us`` for others to join it.

    The delay is short on purpose: a busy server batches the requests that queue while it runs the
    last execution anyway, and every request of an idle one pays the whole delay (2 ms measured as
    a fifth of a request's round trip on a CPU server)."""

    max_batch: int = 8
    preferred: tuple[int, ...] = (4, 8)
    queue_delay_us: int = 100
    instances: int = 1

    def __post_init__(self) -> None:
        if self.max_batch < 1:
            raise ValueError(f"max batch: expected at least 1, got {self.max_batch}")
        if any(size < 1 or size > self.max_batch for size in self.preferred):
            raise ValueError(f"preferred batch sizes must be from 1 to {self.max_batch}, got {list(self.preferred)}")


def write_repository(onnx_path: Path, out_dir: Path, name: str, batching: BatchingOptions | None = None) -> Path:
    """Write ``out_dir/name`` (config and version 1) from ``onnx_path``; returns the model's folder.

    An existing model of that name in ``out_dir`` is replaced; other models there are left alone, so
    one repository can hold several.
    """
    batching = batching or BatchingOptions()
    model_dir = out_dir / name
    if model_dir.exists():
        shutil.rmtree(model_dir)
    (model_dir / "1").mkdir(parents=True)
    served = model_dir / "1" / "model.onnx"
    write_pixel_input_model(onnx_path, served)
    (model_dir / "config.pbtxt").write_text(model_config(served, name, batching))
    return model_dir


def write_pixel_input_model(onnx_path: Path, out: Path) -> None:
    """``onnx_path``'s network, taking uint8 pixels: its float input becomes ``Cast`` and ``Div`` by 255.

    The same two operations ultralytics' predictor runs before the network, now inside the graph, so
    the outputs are those of the float model fed ``pixels / 255``.
    """
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(onnx_path))
    graph = model.graph
    initializers = {tensor.name for tensor in graph.initializer}
    [image] = [value for value in graph.input if value.name not in initializers]
    if image.type.tensor_type.elem_type != TensorProto.FLOAT:
        raise ValueError(f"{onnx_path}: input {image.name} is not float; is it already a pixel-input model?")
    scaled = f"{image.name}_scaled"
    for node in graph.node:
        node.input[:] = [scaled if name == image.name else name for name in node.input]
    divisor = f"{image.name}_255"
    graph.initializer.append(numpy_helper.from_array(np.array(255.0, np.float32), divisor))
    as_float = f"{image.name}_float"
    steps = [
        helper.make_node("Cast", [image.name], [as_float], to=TensorProto.FLOAT, name="segcast_pixels_to_float"),
        helper.make_node("Div", [as_float, divisor], [scaled], name="segcast_pixels_to_unit"),
    ]
    for step in reversed(steps):
        graph.node.insert(0, step)
    image.type.tensor_type.elem_type = TensorProto.UINT8
    onnx.checker.check_model(model)
    onnx.save(model, str(out))


def check_pixel_input_model(float_path: Path, pixel_path: Path, shape: tuple[int, int]) -> None:
    """Run both models in ONNX Runtime on the same random picture of ``shape`` (height, width);
    `ValueError` unless the pixel-input model's outputs are the float model's on ``pixels / 255``."""
    import numpy as np
    import onnxruntime

    pixels = np.random.default_rng(0).integers(0, 256, (1, 3, *shape), dtype=np.uint8)
    float_session = onnxruntime.InferenceSession(str(float_path), providers=["CPUExecutionProvider"])
    pixel_session = onnxruntime.InferenceSession(str(pixel_path), providers=["CPUExecutionProvider"])
    [float_input], [pixel_input] = float_session.get_inputs(), pixel_session.get_inputs()
    expected = float_session.run(None, {float_input.name: pixels.astype(np.float32) / 255})
    served = pixel_session.run(None, {pixel_input.name: pixels})
    for index, (got, want) in enumerate(zip(served, expected, strict=True)):
        if got.shape != want.shape or not np.allclose(got, want, rtol=1e-4, atol=1e-3):
            raise ValueError(f"output {index} differs (largest difference {np.abs(got - want).max():g})")


def model_config(onnx_path: Path, name: str, batching: BatchingOptions) -> str:
    """The ``config.pbtxt`` text for the ONNX model at ``onnx_path``."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    metadata = _metadata({prop.key: prop.value for prop in model.metadata_props})
    graph_inputs = {tensor.name for tensor in model.graph.initializer}
    inputs = [_tensor(value) for value in model.graph.input if value.name not in graph_inputs]
    outputs = [_tensor(value) for value in model.graph.output]
    lines = [
        f"name: {_quote(name)}",
        'backend: "onnxruntime"',
        f"max_batch_size: {batching.max_batch}",
        "input [",
        ",\n".join(f"  {{ name: {_quote(n)} data_type: {t} dims: {_dims(d)} }}" for n, t, d in inputs),
        "]",
        "output [",
        ",\n".join(f"  {{ name: {_quote(n)} data_type: {t} dims: {_dims(d)} }}" for n, t, d in outputs),
        "]",
        "dynamic_batching {",
        f"  preferred_batch_size: {_dims(batching.preferred)}",
        f"  max_queue_delay_microseconds: {batching.queue_delay_us}",
        "}",
        f"instance_group [ {{ count: {batching.instances} kind: KIND_AUTO }} ]",
        f"parameters {{ key: {_quote('metadata')} value: {{ string_value: {_quote(repr(metadata))} }} }}",
    ]
    return "\n".join(lines) + "\n"


def _metadata(props: dict[str, str]) -> dict[str, Any]:
    """The exporter's metadata as values, not strings; ``args.dynamic`` tells clients the size may vary."""
    metadata: dict[str, Any] = {}
    for key in METADATA_KEYS:
        if key not in props:
            continue
        value: Any = props[key]
        if key in _PARSED_KEYS:
            with contextlib.suppress(ValueError, SyntaxError):
                value = ast.literal_eval(value)
        metadata[key] = value
    if "names" not in metadata or "task" not in metadata:
        raise ValueError("the ONNX file has no ultralytics metadata (names, task): export it with segcast export")
    return metadata


def _tensor(value: Any) -> tuple[str, str, list[int]]:
    """An ONNX graph input or output as Triton sees it: name, type, and dims without the batch dimension."""
    from onnx import TensorProto

    tensor = value.type.tensor_type
    types = {TensorProto.FLOAT: "TYPE_FP32", TensorProto.FLOAT16: "TYPE_FP16", TensorProto.UINT8: "TYPE_UINT8"}
    if tensor.elem_type not in types:
        raise ValueError(f"{value.name}: ONNX element type {tensor.elem_type} is not one segcast exports")
    dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim]
    return value.name, types[tensor.elem_type], dims[1:]


def _dims(values: Sequence[int]) -> str:
    return "[ " + ", ".join(str(v) for v in values) + " ]"


def _quote(text: str) -> str:
    """A protobuf text-format string literal."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'
