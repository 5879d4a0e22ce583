"""Complete a Triton model config from its ONNX file, and check the config against it, as Triton's
ONNX Runtime backend does when it loads a model.

NVIDIA's backend fills in what a config leaves out (inputs, outputs, batching) from the file, and
refuses a config that contradicts it. ``segcast triton serve`` runs the model on the Python backend
instead, which does neither: a config leaving its tensors out could not load, and one naming a
wrong input or data type would load and then fail every request, while every client saw a ready
model. So the launcher does both here, before tritonserver starts.

The file is read by ONNX Runtime in the Triton venv (`segcast triton setup` installs it there;
segcast's own environment needs only tritonclient for ``triton serve``).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from server.triton.cpu_install import own_python_environment
from server.triton.repository import BatchingOptions

#: ONNX Runtime's tensor type names as Triton's config data types.
ONNX_TO_TRITON_TYPE = {
    "tensor(bool)": "TYPE_BOOL",
    "tensor(uint8)": "TYPE_UINT8",
    "tensor(uint16)": "TYPE_UINT16",
    "tensor(uint32)": "TYPE_UINT32",
    "tensor(uint64)": "TYPE_UINT64",
    "tensor(int8)": "TYPE_INT8",
    "tensor(int16)": "TYPE_INT16",
    "tensor(int32)": "TYPE_INT32",
    "tensor(int64)": "TYPE_INT64",
    "tensor(float16)": "TYPE_FP16",
    "tensor(float)": "TYPE_FP32",
    "tensor(double)": "TYPE_FP64",
    "tensor(string)": "TYPE_STRING",
    "tensor(bfloat16)": "TYPE_BF16",
}
#: A config that lets the file's dynamic first dimension be the batch gets segcast export's batching:
#: at most 8 images an execution, preferring 4 or 8 (Triton's own ONNX backend defaults to 4).
DEFAULT_BATCHING = BatchingOptions()
READ_TIMEOUT_S = 120.0  # ONNX Runtime opening the file, without optimising it
#: Run by the Triton venv's Python: each file's inputs and outputs as JSON (name, type, shape with
#: -1 where a dimension is not fixed), or the first line of ONNX Runtime's error on stderr.
_READER = """
import json, sys
import onnxruntime
options = onnxruntime.SessionOptions()
options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
def tensors(args):
    return [[a.name, a.type, [d if isinstance(d, int) else -1 for d in a.shape]] for a in args]
found = {}
for path in sys.argv[1:]:
    try:
        session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        sys.exit(f"{path}: ONNX Runtime cannot open it ({str(exc).strip().splitlines()[0]})")
    found[path] = {"inputs": tensors(session.get_inputs()), "outputs": tensors(session.get_outputs())}
print(json.dumps(found))
"""


@dataclass(frozen=True, slots=True)
class OnnxTensor:
    """An ONNX graph input or output: its name, Triton data type and full shape (-1: not fixed)."""

    name: str
    data_type: str
    shape: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class OnnxSignature:
    inputs: tuple[OnnxTensor, ...]
    outputs: tuple[OnnxTensor, ...]

    @property
    def batches(self) -> bool:
        """Whether every tensor's first dimension is free, so Triton may stack requests along it."""
        return all(tensor.shape and tensor.shape[0] == -1 for tensor in (*self.inputs, *self.outputs))


def read_signatures(python: Path, paths: Sequence[Path]) -> dict[Path, OnnxSignature]:
    """Each ONNX file's inputs and outputs, read by ONNX Runtime under ``python`` (one process for all);
    `ValueError` naming the file that cannot be read.

    Run as segcast runs the venv's Python elsewhere: without PYTHONPATH, from the venv's folder, so
    neither segcast's packages nor a module in the current folder stand in for the venv's own.
    """
    files = [str(path.resolve()) for path in paths]
    python = python.absolute()  # it runs from the venv's folder
    try:
        read = subprocess.run(
            [str(python), "-c", _READER, *files],
            capture_output=True,
            text=True,
            timeout=READ_TIMEOUT_S,
            env=own_python_environment(),
            cwd=python.parent.parent,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ValueError(f"cannot read the ONNX files with {python} ({exc})") from None
    if read.returncode != 0:
        lines = read.stderr.strip().splitlines()
        raise ValueError(lines[-1] if lines else f"{python} could not read the ONNX files (no output)")
    found = json.loads(read.stdout)
    return {path: _signature(found[file]) for path, file in zip(paths, files, strict=True)}


def _signature(found: dict[str, Any]) -> OnnxSignature:
    def tensors(entries: list[Any]) -> tuple[OnnxTensor, ...]:
        return tuple(
            OnnxTensor(name, ONNX_TO_TRITON_TYPE.get(kind, kind), tuple(shape)) for name, kind, shape in entries
        )

    return OnnxSignature(tensors(found["inputs"]), tensors(found["outputs"]))


def complete_config(schema: Any, config: Any, signature: OnnxSignature) -> None:
    """Fill in what ``config`` (a ``ModelConfig``) leaves out from ``signature``, as Triton's ONNX
    Runtime backend does, in place: the inputs and the outputs when either list is empty, and, when
    both were, batching where the file's first dimensions are free (`DEFAULT_BATCHING`)."""
    if not config.input and not config.output and config.max_batch_size == 0 and signature.batches:
        config.max_batch_size = DEFAULT_BATCHING.max_batch
        if not config.HasField("dynamic_batching"):
            config.dynamic_batching.preferred_batch_size.extend(DEFAULT_BATCHING.preferred)
            config.dynamic_batching.max_queue_delay_microseconds = DEFAULT_BATCHING.queue_delay_us
    skip = 1 if config.max_batch_size > 0 else 0
    for listed, tensors in ((config.input, signature.inputs), (config.output, signature.outputs)):
        if not listed:
            for tensor in tensors:
                try:
                    data_type = schema.DataType.Value(tensor.data_type)
                except ValueError:
                    raise ValueError(
                        f"the ONNX file's {tensor.name!r} is a {tensor.data_type}, which Triton has no data type "
                        "for: list the model's inputs and outputs in config.pbtxt, or export it again"
                    ) from None
                listed.add(name=tensor.name, data_type=data_type, dims=tensor.shape[skip:])


def mismatches(schema: Any, config: Any, signature: OnnxSignature) -> list[str]:
    """Every way ``config``'s inputs and outputs contradict the ONNX file's: a name the file lacks,
    an input the config leaves out, another data type, rank or fixed size, or batching over a fixed
    first dimension. Empty when Triton's ONNX Runtime backend would load the model."""
    batched = config.max_batch_size > 0
    problems: list[str] = []
    sides = (("input", config.input, signature.inputs), ("output", config.output, signature.outputs))
    for role, listed, tensors in sides:
        in_file = {tensor.name: tensor for tensor in tensors}
        for entry in listed:
            tensor = in_file.get(entry.name)
            if tensor is None:
                problems.append(f"{role} {entry.name!r} is not in the file (its {role}s: {', '.join(in_file)})")
                continue
            declared = schema.DataType.Name(entry.data_type)
            if declared != tensor.data_type:
                problems.append(f"{role} {entry.name!r} is {declared} in the config, {tensor.data_type} in the file")
            # A reshape is the shape the model sees, the dims what clients send (Triton checks their sizes agree).
            dims = list(entry.reshape.shape) if entry.HasField("reshape") else list(entry.dims)
            problems.extend(_shape_mismatches(role, entry.name, dims, tensor.shape, batched))
        if role == "input":
            named = {entry.name for entry in listed}
            problems.extend(f"input {name!r} of the file is not in the config" for name in in_file if name not in named)
    return problems


def _shape_mismatches(role: str, name: str, dims: list[int], shape: tuple[int, ...], batched: bool) -> list[str]:
    if batched:
        if shape and shape[0] != -1:
            return [
                f"{role} {name!r} has a fixed first dimension ({shape[0]}) in the file, so max_batch_size must be 0"
            ]
        shape = shape[1:]
    pairs = zip(dims, shape, strict=False)
    fixed_apart = any(-1 not in (declared, fixed) and declared != fixed for declared, fixed in pairs)
    if len(dims) == len(shape) and not fixed_apart:
        return []
    batch = " after the batch dimension" if batched else ""
    return [f"{role} {name!r} has dims {_dims(dims)} in the config, {_dims(shape)}{batch} in the file"]


def _dims(values: Sequence[int]) -> str:
    return "[ " + ", ".join(map(str, values)) + " ]"
