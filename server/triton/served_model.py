"""What segcast needs to know of a model served by Triton, read from its config and checked once.

A model segcast cannot use (no metadata, a task it does not run, an input that is not one image, mask
prototypes missing, class names that are not its network's) is refused here with one `ModelError`
line saying what is wrong, at start, rather than failing every frame later; so is a config it cannot
read (a class number that is no number, an input without a name), naming the field.
`server.triton.model` reads the description at start, after each outage or refusal and every
``DESCRIPTION_MAX_AGE_S``, and compares it with the one it has, so the checks and the comparison need
only the config.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from server.inference.models import SUPPORTED_TASKS, ModelError, unsupported_task

DEFAULT_STRIDE = 32


@dataclass(frozen=True, slots=True)
class ServedModel:
    """What segcast needs to know of a served model, read from its Triton config and checked once."""

    names: dict[int, str]
    task: str
    imgsz: int
    stride: int
    input_name: str
    input_dtype: np.dtype[Any]
    fixed_shape: tuple[int, int] | None  # (height, width) when the model takes one size only
    outputs: tuple[str, ...]
    max_batch: int  # 0: the server does not batch this model; requests then carry one image each
    end2end: bool
    #: The model version requests are pinned to, the one this description is of
    #: (`server.triton.description.pinned_version`); "" leaves it to the server.
    version: str = ""

    @classmethod
    def from_config(cls, config: dict[str, Any], spec: str, version: str = "") -> ServedModel:
        """Raises `ModelError` with one line naming what is missing or wrong, and nothing else: the
        model is described again in the background while a node runs, where no other error is read."""
        with _reading("'metadata' parameter", spec):
            metadata = _metadata(config, spec)
        missing = [key for key in ("names", "task") if key not in metadata]
        if missing:
            raise ModelError(
                f"--model {spec}: the model's metadata has no {' or '.join(missing)}; serve a repository written "
                f"by segcast export --format triton"
            )
        task = str(metadata["task"])
        if task not in SUPPORTED_TASKS:
            raise ModelError(unsupported_task(spec, task))
        with _reading("metadata 'names'", spec):
            names = _names(metadata["names"], spec)
        with _reading("max_batch_size", spec):
            max_batch = int(config.get("max_batch_size", 0))
        with _reading("input", spec):
            input_name, dtype, fixed = _input(config, max_batch, spec)
        with _reading("output", spec):
            outputs = tuple(sorted(str(output["name"]) for output in config.get("output", [])))
        wanted = 2 if task == "segment" else 1
        if len(outputs) != wanted:
            if task == "segment" and len(outputs) == 1:
                raise ModelError(
                    f"--model {spec}: its metadata says segment but it has one output, no mask prototypes: "
                    f"a detection model? Export it again with segcast export --format triton"
                )
            counted = f"{len(outputs)} output{'' if len(outputs) == 1 else 's'}"
            named = f" ({', '.join(outputs)})" if outputs else ""
            guess = " a segment model?" if task == "detect" and len(outputs) == 2 else ""
            raise ModelError(
                f"--model {spec}: its metadata says task {task!r}, but it has {counted}{named}, not {wanted}:{guess} "
                f"export it again or fix the metadata"
            )
        imgsz = _imgsz(metadata.get("imgsz"), fixed)
        with _reading("metadata 'stride'", spec):
            stride = int(metadata.get("stride", DEFAULT_STRIDE))
        end2end = bool(metadata.get("end2end", False) or _args(metadata).get("nms", False))
        if not end2end:
            with _reading("output", spec):
                _check_rows(config, outputs, max_batch, len(names), spec)
        return cls(names, task, imgsz, stride, input_name, dtype, fixed, outputs, max_batch, end2end, version)


@contextmanager
def _reading(field: str, spec: str) -> Iterator[None]:
    """`ModelError` naming ``field`` for a part of the config of a shape segcast cannot read (a string
    where a number belongs, an entry without its name), in place of the parser's own exception."""
    try:
        yield
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        raise ModelError(
            f"--model {spec}: the model's {field} cannot be read ({type(exc).__name__}: {exc}); serve a repository "
            f"written by segcast export --format triton"
        ) from None


def _metadata(config: dict[str, Any], spec: str) -> dict[str, Any]:
    text = config.get("parameters", {}).get("metadata", {}).get("string_value")
    if not text:
        raise ModelError(
            f"--model {spec}: the served model has no 'metadata' parameter (class names, task, input size); "
            f"serve a repository written by segcast export --format triton"
        )
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        raise ModelError(f"--model {spec}: the model's 'metadata' parameter is not a Python literal dict") from None
    if not isinstance(value, dict):
        raise ModelError(f"--model {spec}: the model's 'metadata' parameter is not a dict")
    return value


def _args(metadata: dict[str, Any]) -> dict[str, Any]:
    args = metadata.get("args", {})
    return args if isinstance(args, dict) else {}


def _names(value: Any, spec: str) -> dict[int, str]:
    if isinstance(value, str):
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            value = None
    if isinstance(value, list):
        value = dict(enumerate(value))
    if not isinstance(value, dict) or not value:
        raise ModelError(f"--model {spec}: the model's metadata 'names' is not a list or dict of class names")
    unnumbered = [key for key in value if not (isinstance(key, int) or (isinstance(key, str) and key.isdigit()))]
    if unnumbered:
        keys = ", ".join(repr(key) for key in unnumbered[:3])
        raise ModelError(f"--model {spec}: the model's metadata 'names' has keys {keys}; class numbers expected")
    return {int(key): str(name) for key, name in value.items()}


def _input(config: dict[str, Any], max_batch: int, spec: str) -> tuple[str, np.dtype[Any], tuple[int, int] | None]:
    inputs = config.get("input", [])
    if len(inputs) != 1:
        raise ModelError(f"--model {spec}: expected one image input, the model has {len(inputs)}")
    entry = inputs[0]
    name = str(entry["name"])
    dims = [int(d) for d in entry.get("dims", [])]
    if not max_batch and dims:  # no server-side batching: the batch dimension is the model's own
        dims = dims[1:]
    types: dict[str, np.dtype[Any]] = {
        "TYPE_UINT8": np.dtype(np.uint8),
        "TYPE_FP32": np.dtype(np.float32),
        "TYPE_FP16": np.dtype(np.float16),
    }
    data_type = str(entry.get("data_type", ""))
    if data_type not in types:
        raise ModelError(f"--model {spec}: input {name} is {data_type}; segcast sends UINT8, FP32 or FP16 images")
    if len(dims) != 3 or dims[0] != 3:
        raise ModelError(
            f"--model {spec}: input {name} has shape {dims}; segcast sends images as [batch, 3, height, width]"
        )
    height, width = dims[1], dims[2]
    if (height < 0) != (width < 0):
        raise ModelError(f"--model {spec}: input {name} has shape {dims}; make both height and width fixed or -1")
    return name, types[data_type], None if height < 0 else (height, width)


def _check_rows(config: dict[str, Any], outputs: tuple[str, ...], max_batch: int, classes: int, spec: str) -> None:
    """`ModelError` if the config's sizes show that output0 has no row per class the metadata names.

    Without this a model whose names are not its own would start, and every frame fail (or, for a
    detection model, report classes that have no name)."""
    dims = {str(entry["name"]): [int(d) for d in entry.get("dims", [])] for entry in config.get("output", [])}
    first = 0 if max_batch else 1  # without server-side batching, the batch dimension is the model's own
    sizes = [dims[name][first] if len(dims[name]) > first else -1 for name in outputs]
    head_rows, mask_channels = sizes[0], sizes[1] if len(sizes) > 1 else 0
    if head_rows < 0 or mask_channels < 0:  # sizes left to the model: checked on the first answer
        return
    problem = rows_problem(head_rows, classes, mask_channels)
    if problem:
        raise ModelError(
            f"--model {spec}: output {outputs[0]} {problem}; export it again with segcast export --format triton"
        )


def rows_problem(rows: int, classes: int, mask_channels: int) -> str | None:
    """What is wrong with an output of ``rows`` per box (4 box coordinates, a score per class, the
    mask coefficients), or None."""
    expected = 4 + classes + mask_channels
    if rows == expected:
        return None
    masks = f" and {mask_channels} mask channels" if mask_channels else ""
    return (
        f"has {rows} rows per box, {expected} expected for the {classes} class names of its metadata{masks}: "
        f"the names are not this network's"
    )


def _imgsz(value: Any, fixed: tuple[int, int] | None) -> int:
    if fixed is not None:
        return max(fixed)
    if isinstance(value, str):
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            value = None
    if isinstance(value, int):
        return value
    if isinstance(value, list | tuple) and value and all(isinstance(v, int) for v in value):
        return max(value)
    return 640
