"""An ONNX model served by Triton's Python backend, as ``segcast triton serve`` runs it on a CPU.

This file is copied to ``<model>/<version>/model.py`` of the repository the launcher writes and runs
inside Triton's Python backend stub, in the Triton virtual environment: it may import only what that
environment has (numpy, onnxruntime, ``triton_python_backend_utils``), never segcast.

It stands in for Triton's ONNX Runtime backend, which the CPU build of tritonserver lacks, and
answers as that backend would: the same ONNX Runtime, the same outputs for the same input. The
requests the dynamic batcher hands over together run as one batch, so a server shared by several
nodes runs one execution for the frames of many. Triton joins only requests of one shape (images of
one size) unless the config allows ragged batches; then each shape runs as a batch of its own. A
request the model cannot run gets its own error; the others are answered. That error is
``INVALID_ARG`` (gRPC ``INVALID_ARGUMENT``, HTTP 400) when the input is at fault: a missing input, a
shape the network does not take (checked before running: its fixed dimensions, and images in
multiples of the stride its ONNX metadata gives), or one ONNX Runtime itself finds invalid. Clients
charge such an error to the frames the request carried. Anything else going wrong in a run (memory
run out, say) is ``INTERNAL``, the server's fault.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
import onnxruntime
import triton_python_backend_utils as pb_utils
from onnxruntime.capi.onnxruntime_pybind11_state import InvalidArgument

#: The ONNX Runtime backend's own parameter for the threads of one execution; 0 lets ONNX Runtime
#: choose (one per core), which is right for a single instance.
THREADS_PARAMETER = "intra_op_thread_count"
#: Names the ONNX file inside the version folder (``model.onnx`` when absent).
ONNX_FILE_PARAMETER = "onnx_file"
DEFAULT_ONNX_FILE = "model.onnx"


class TritonPythonModel:
    """One model instance: an ONNX Runtime session on the CPU, and the batching of what Triton hands it."""

    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        parameters = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
        path = os.path.join(
            args["model_repository"], args["model_version"], parameters.get(ONNX_FILE_PARAMETER, DEFAULT_ONNX_FILE)
        )
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = int(parameters.get(THREADS_PARAMETER, "0"))
        self.session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        #: Each input's dimensions as the network has them: a size where fixed, None where any size goes.
        self.shapes = {
            tensor.name: [dim if isinstance(dim, int) else None for dim in tensor.shape]
            for tensor in self.session.get_inputs()
        }
        stride = self.session.get_modelmeta().custom_metadata_map.get("stride", "")
        self.stride = int(stride) if stride.isdigit() else None
        self.inputs = [tensor["name"] for tensor in config["input"]]
        self.outputs = [tensor["name"] for tensor in config["output"]]
        self.batching = int(config.get("max_batch_size", 0)) > 0

    def execute(self, requests: list[Any]) -> list[Any]:
        """One response per request, in order; requests whose inputs agree in shape run as one batch."""
        responses: list[Any] = [None] * len(requests)
        feeds: dict[int, dict[str, np.ndarray]] = {}
        groups: dict[object, list[int]] = {}
        for index, request in enumerate(requests):
            try:
                feeds[index] = self._feed(request)
            except ValueError as exc:
                responses[index] = _refused(str(exc))
                continue
            # Without a batch dimension (max_batch_size 0) nothing can be joined: each request runs alone.
            key = tuple(feeds[index][name].shape[1:] for name in self.inputs) if self.batching else index
            groups.setdefault(key, []).append(index)
        for members in groups.values():
            for index, response in zip(members, self._run([feeds[i] for i in members]), strict=True):
                responses[index] = response
        return responses

    def _feed(self, request: Any) -> dict[str, np.ndarray]:
        feed = {}
        for name in self.inputs:
            tensor = pb_utils.get_input_tensor_by_name(request, name)
            if tensor is None:
                raise ValueError(f"the request has no input {name!r}")
            feed[name] = tensor.as_numpy()
            self._check_shape(name, feed[name].shape)
        return feed

    def _check_shape(self, name: str, shape: tuple[int, ...]) -> None:
        """`ValueError` for a shape the network cannot run. Without this, an image size off the stride
        fails deep inside (a ``Concat`` of mismatched feature maps) as an error of ONNX Runtime's own."""
        expected = self.shapes.get(name)
        if expected is None:
            return
        if len(shape) != len(expected):
            raise ValueError(f"input {name!r} has {len(shape)} dimensions, the model takes {len(expected)}")
        for axis, (got, wanted) in enumerate(zip(shape, expected, strict=True)):
            if wanted is not None and got != wanted:
                raise ValueError(f"input {name!r} has {got} in dimension {axis}, the model takes {wanted}")
        if self.stride and len(shape) == 4 and any(side % self.stride for side in shape[2:]):
            height, width = shape[2:]
            raise ValueError(
                f"input {name!r} is {width}x{height}: the model takes images in multiples of {self.stride} pixels"
            )

    def _run(self, feeds: list[dict[str, np.ndarray]]) -> list[Any]:
        """Run same-shaped requests as one batch: a response for each, or the batch's error for each."""
        if len(feeds) == 1:
            batch = feeds[0]
        else:
            batch = {name: np.concatenate([feed[name] for feed in feeds]) for name in self.inputs}
        try:
            results = self.session.run(self.outputs, batch)
        except InvalidArgument as exc:  # the input's fault, as ONNX Runtime judges it
            return [_refused(f"ONNX Runtime: {exc}") for _ in feeds]
        except Exception as exc:  # ONNX Runtime's errors share no base class; each becomes a response
            return [pb_utils.InferenceResponse(error=pb_utils.TritonError(f"ONNX Runtime: {exc}")) for _ in feeds]
        if len(feeds) == 1:
            return [self._response(results)]
        bounds = np.cumsum([len(feed[self.inputs[0]]) for feed in feeds])[:-1]
        parts = [np.split(result, bounds) for result in results]
        return [self._response([part[i] for part in parts]) for i in range(len(feeds))]

    def _response(self, results: list[np.ndarray]) -> Any:
        tensors = [pb_utils.Tensor(name, result) for name, result in zip(self.outputs, results, strict=True)]
        return pb_utils.InferenceResponse(output_tensors=tensors)


def _refused(message: str) -> Any:
    """A response refusing the request as the input's fault (``INVALID_ARG``): the server is fine."""
    return pb_utils.InferenceResponse(error=pb_utils.TritonError(message, pb_utils.TritonError.INVALID_ARG))
