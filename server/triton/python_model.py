"""An ONNX model served by Triton's Python backend, as ``segcast triton serve`` runs it on a CPU.

This file is copied to ``<model>/<version>/model.py`` of the repository the launcher writes and runs
inside Triton's Python backend stub, in the Triton virtual environment: it may import only what that
environment has (numpy, onnxruntime, ``triton_python_backend_utils``), never segcast.

It stands in for Triton's ONNX Runtime backend, which the CPU build of tritonserver lacks, and
answers as that backend would: the same ONNX Runtime, the same outputs for the same input. The
requests the dynamic batcher hands over together run as one batch, so a server shared by several
nodes runs one execution for the frames of many. Triton joins only requests of one shape (images of
one size) unless the config allows ragged batches; then each shape runs as a batch of its own. A
request the model cannot run gets its own error; the others are answered.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
import onnxruntime
import triton_python_backend_utils as pb_utils

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
                responses[index] = pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc)))
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
        return feed

    def _run(self, feeds: list[dict[str, np.ndarray]]) -> list[Any]:
        """Run same-shaped requests as one batch: a response for each, or the batch's error for each."""
        if len(feeds) == 1:
            batch = feeds[0]
        else:
            batch = {name: np.concatenate([feed[name] for feed in feeds]) for name in self.inputs}
        try:
            results = self.session.run(self.outputs, batch)
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
