"""Resolving ``--model`` to a loaded ultralytics model, with errors that name the flag, and the device and
CPU threads the inference thread runs it with (`resolve_device`, `check_device`, `use_cores`)."""

from __future__ import annotations

import ast
import importlib.util
import logging
import os
import re
import traceback
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from server.inference import weights
from server.inference.telemetry import switch_off_ultralytics_telemetry

if TYPE_CHECKING:
    from ultralytics import YOLO

    from server.triton.model import TritonModel

log = logging.getLogger(__name__)

#: The real default for cameras, as in ultralytics' own segmentation-and-tracking example. It is
#: downloaded on first use, so it needs internet once.
DEFAULT_MODEL = "yolov8n-seg.pt"
#: The small model trained on generated scenes (tools/train_model.py) that ships with segcast, so the
#: demo and the tests work offline. It knows only the scene's classes.
BUNDLED_MODEL = Path(__file__).parent.parent / "data" / "segcast-scene-seg.pt"
BUNDLED_ALIASES = frozenset({"bundled", BUNDLED_MODEL.name})
SUPPORTED_TASKS = frozenset({"segment", "detect"})
#: The side of the blank frame a loaded model is tried on (`_check_runs`): every YOLO stride divides it.
CHECK_IMGSZ_PX = 64
#: What ultralytics uses when a model does not record its own inference size.
DEFAULT_IMGSZ_PX = 640
#: A ``--model`` that reads as an address, not a file: ``scheme://...`` or ``HOST:PORT/...``.
_ADDRESS = re.compile(r"^(?:[A-Za-z][\w+.-]*://|[^/]*:\d+(?:/|$))")
#: The level word and emoji ultralytics starts its log lines and some error messages with.
_LOG_MARKS = re.compile(r"^(?:ERROR|WARNING)\b[^\w/.\\-]*")
#: ultralytics' advice after a file it cannot load ("Use an official Ultralytics model, i.e. 'yolo predict
#: model=yolo26n.pt'"): a command of its own CLI, not segcast's, and a model name segcast does not take.
_ULTRALYTICS_ADVICE = re.compile(r"\.?\s+(?:Use an official Ultralytics model|Recommended fixes are)\b.*$")
#: What a .pt that is no ultralytics checkpoint (a ``torch.save``'d dict, weights alone) is said to need instead.
NOT_A_CHECKPOINT = (
    "not an ultralytics YOLO checkpoint: give --model bundled (the demo model), a model ultralytics publishes "
    "such as yolov8n-seg.pt (downloaded once, needs internet), or a .pt trained or exported with ultralytics"
)
#: What to pass instead when a model cannot be downloaded: what serving takes, and what exporting takes.
OFFLINE_HINT = "without internet use --model bundled (the demo model), a local .pt or .onnx file, or an OpenVINO folder"
EXPORT_OFFLINE_HINT = "without internet use --model bundled (the demo model) or a local .pt file"
#: What segcast serves, as README's ``--model`` row lists it: said for a file that is none of them.
MODELS_TAKEN = (
    "a .pt file (or a name ultralytics publishes, such as yolov8n-seg.pt), an .onnx file, a NAME_openvino_model "
    "folder, or a model on a Triton server (grpc://HOST:PORT/MODEL)"
)
#: The tasks segcast does not serve, as a person names them (ultralytics' own words are "obb", "classify").
_TASK_NAMES = {"obb": "an OBB (oriented-box) model", "classify": "a classification model", "pose": "a pose model"}


class ModelError(Exception):
    """The model given by ``--model`` cannot be used; the message says why and what to pass instead."""


class DeviceError(ModelError):
    """``[model] device`` names a device this machine does not have; the message names that key.

    `flagged` names ``--device`` instead, for a device the flag gave: the command line knows that,
    the inference thread that checks the device does not.
    """

    def __init__(self, device: str, reason: str) -> None:
        self.device, self.reason = device, reason
        super().__init__(
            f'model.device "{device}": {reason}; use device = "auto" (or "cpu") under [model], or --device auto'
        )

    def flagged(self) -> str:
        return f"--device {self.device}: {self.reason}; use --device auto (or cpu)"


class InferenceUnavailable(Exception):
    """No inference for now (a remote server unreachable, too slow, or refusing): not the frame's fault."""


@dataclass(frozen=True, slots=True)
class InferenceStatus:
    """Whether frames can be inferred now: a local model always can, a remote one while its server answers.

    Shown with every stream (API, WebSocket ``hello`` and ``inference`` messages) and in /metrics.
    """

    available: bool
    error: str | None = None
    next_attempt_at: float | None = None  # wall-clock time of the next attempt while unavailable

    def to_json(self) -> dict[str, object]:
        return {
            "state": "available" if self.available else "unavailable",
            "error": self.error,
            "next_attempt_at": None if self.next_attempt_at is None else round(self.next_attempt_at, 3),
        }


def resolve_model_path(spec: str, offline_hint: str = OFFLINE_HINT) -> str:
    """What to hand ultralytics for ``spec``: a local path, or a published name downloaded into the cache
    first (`server.inference.weights`).

    A model definition (``yolo11n-seg.yaml``, a name or a file) is refused: ultralytics builds an untrained
    network from it, which served a live stream that never found anything, with no word of why.
    ``offline_hint`` says what to pass instead when the download fails: the caller knows what it takes.
    """
    if not spec.strip():  # Path("") is ".", the folder segcast was started from
        raise ModelError(f"--model {spec!r}: empty; pass a model's name, a .pt or .onnx file, or an OpenVINO folder")
    if spec in BUNDLED_ALIASES and not Path(spec).exists():
        return str(BUNDLED_MODEL)
    path = Path(spec).expanduser()
    if path.suffix.lower() in {".yaml", ".yml"} and not path.is_dir():
        raise ModelError(
            f"--model {spec}: a model definition, untrained (it finds nothing); pass the weights trained from it "
            "(a .pt file), or to serve, an export of them"
        )
    if path.is_dir():
        _check_model_folder(spec, path)
    if path.exists():
        return str(path)
    if path.parent != Path(".") or not weights.is_published_name(spec):
        # "triton://host:8001/m" or "host:8001/m" was meant for a Triton server, as the hint says.
        remote = (
            "; a model on Triton is grpc://HOST:PORT/MODEL or http://HOST:PORT/MODEL" if _ADDRESS.match(spec) else ""
        )
        raise ModelError(
            f"--model {spec}: no such file or folder, nor a model ultralytics publishes (e.g. yolov8n-seg.pt){remote}"
        )
    try:
        return str(weights.fetch(spec))
    except weights.DownloadError as exc:
        raise ModelError(
            f"--model {spec}: could not download it ({exc}); {offline_hint}, or put {spec} into {weights.cache_dir()}"
        ) from None


def open_model(spec: str) -> YOLO | TritonModel:
    """What the inference thread runs: a model on a Triton server when ``spec`` is its URL
    (``grpc://HOST:PORT/MODEL`` or ``http://HOST:PORT/MODEL``), else `load_model`'s local model."""
    from server.triton.transport import TritonEndpoint

    endpoint = TritonEndpoint.parse(spec)
    if endpoint is None:
        return load_model(spec)
    from server.triton.model import connect

    return connect(spec, endpoint)


def runs_here(spec: str) -> bool:
    """Whether ``spec`` is a model run on this machine's ``[model] device``, not one on a Triton server
    (which runs on the server's own devices). A broken Triton URL counts as remote: its load says why."""
    from server.triton.transport import TritonEndpoint

    try:
        return TritonEndpoint.parse(spec) is None
    except (ModelError, ValueError):
        return False


def load_model(spec: str) -> YOLO:
    """Load ``spec`` (a name ultralytics knows, a .pt, an .onnx or an OpenVINO folder).

    Raises `ModelError` with one line a person can act on; never an ultralytics traceback. An export's
    runtime is opened here, not at the first frame, so a broken export stops start-up instead of failing
    later in a thread pool (where ultralytics' ``StopIteration`` for an OpenVINO folder without its
    model would leave start-up waiting for ever).
    """
    from ultralytics import YOLO

    switch_off_ultralytics_telemetry()
    target = resolve_model_path(spec)
    _check_runtime(spec, target)
    try:
        if target.endswith(".pt"):
            model = YOLO(target)
            classes = len(model.names)
        else:
            metadata = _exported_metadata(target)
            model = YOLO(target, task=_exported_task(target, metadata))
            overrides: dict[str, Any] = model.overrides
            if "imgsz" not in overrides and (imgsz := _exported_imgsz(metadata)):
                overrides["imgsz"] = imgsz
            classes = len(_open_export(model))
    except Exception as exc:  # ultralytics raises many kinds: pickle, onnx, openvino errors, StopIteration
        instead = f"; {NOT_A_CHECKPOINT}" if target.endswith(".pt") and _not_a_checkpoint(exc) else ""
        if isinstance(exc, TypeError) and "is not a supported model format" in str(exc):
            # ultralytics' own list of 23 formats, most of which segcast neither exports nor documents
            raise ModelError(f"--model {spec}: not a model segcast takes; pass {MODELS_TAKEN}") from None
        raise ModelError(f"--model {spec}: cannot load it ({first_line(exc)}){instead}") from None
    if model.task not in SUPPORTED_TASKS:
        raise ModelError(unsupported_task(spec, model.task))
    _check_runs(spec, model)
    log.info("loaded model %s (%s, %d classes)", target, model.task, classes)
    return model


def _not_a_checkpoint(exc: Exception) -> bool:
    """Whether loading a .pt failed as it does for a file that holds no checkpoint, which `NOT_A_CHECKPOINT`
    then says what to give instead of.

    TypeError for one ultralytics refuses to unpickle; AttributeError ("'Linear' object has no attribute
    'model'") for one whose object it took for a model; ValueError from torch's unpickling of a file that
    is no zip archive (`_unpickled_legacy`), as a text file starting with "g" is. Not every AttributeError:
    a checkpoint of a newer ultralytics fails so too, naming a class this one lacks.
    """
    if isinstance(exc, AttributeError):
        return str(exc).endswith("attribute 'model'")
    return isinstance(exc, TypeError) or (isinstance(exc, ValueError) and _unpickled_legacy(exc))


def _unpickled_legacy(exc: Exception) -> bool:
    """Whether ``exc`` was raised while torch read a .pt that is no zip archive (``torch.serialization``'s
    ``_legacy_load``, which no checkpoint saved by torch 1.6 or later takes).

    Text read as pickle fails there with what its first letter calls for: "g", "I", "L" and "F" are
    opcodes followed by a number on the rest of the line ("garbage" asks for memo entry "arbage"), and
    ``int()`` or ``float()`` of it raises a ValueError, which ultralytics passes on as it is, unlike the
    UnpicklingError of other junk that it turns into its "not a loadable checkpoint" TypeError. Told by
    where it was raised, not by its words, which any ``int()`` anywhere says.
    """
    return any(
        frame.f_code.co_name == "_legacy_load" and frame.f_globals.get("__name__") == "torch.serialization"
        for frame, _ in traceback.walk_tb(exc.__traceback__)
    )


def unsupported_task(spec: str, task: str | None) -> str:
    """Why ``--model`` of ``task`` (one not in `SUPPORTED_TASKS`) is refused, and what to pass: one line for
    every place that refuses it (serving, export, a model on Triton), in words a person uses, not
    ultralytics' task names ("a obb model")."""
    what = _TASK_NAMES.get(task or "", f"a {task} model")
    return (
        f"--model {spec}: {what}; segcast needs a segmentation or detection model: "
        "pass a -seg .pt (such as yolov8n-seg.pt) or a detection .pt (such as yolov8n.pt)"
    )


def model_task(target: str) -> str | None:
    """The task to load ``target`` (a path `resolve_model_path` gave) as, as `load_model` does: None for a
    ``.pt``, whose checkpoint says it; for an export, the task it recorded (`_exported_task`).

    For code that runs ultralytics' own ``YOLO`` on the file (the benchmark's seed loop): a task given
    wrong there fails inside ultralytics on every frame, as segmentation of a detection model does.
    """
    if target.endswith(".pt"):
        return None
    return _exported_task(target, _exported_metadata(target))


def _check_runs(spec: str, model: YOLO) -> None:
    """Run ``model`` on one blank frame the way serving does (`detect`), so a model that loads but cannot
    run (an export whose outputs are no YOLO model's) stops start-up instead of failing on every frame.

    At `CHECK_IMGSZ_PX`, on the CPU where an export's runtime was opened (`_open_export`, whose predictor
    runs it and is kept); a static export runs at its own size whatever is asked.
    """
    from server.inference.detections import detect

    blank = np.zeros((CHECK_IMGSZ_PX, CHECK_IMGSZ_PX, 3), np.uint8)
    kept = model.predictor  # an export's, which the check runs on; none for a .pt
    try:
        detect(model, [blank], imgsz=CHECK_IMGSZ_PX, device="cpu")
    except Exception as exc:
        raise ModelError(f"--model {spec}: loads but does not run ({first_line(exc)})") from None
    finally:
        # A .pt's is set up by its first frame, on the device serving asks for; and a plain ``predict``
        # by a caller of this function still gets ultralytics' own results.
        model.predictor = kept


def first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message, without the level and mark ultralytics words its errors with
    for its own log ("ERROR ❌️ "), which inside segcast's line read as a second failure, nor the advice
    to run its own CLI that it may end with (`_ULTRALYTICS_ADVICE`)."""
    text = str(exc).strip()
    if not text:
        return type(exc).__name__
    return _ULTRALYTICS_ADVICE.sub("", _LOG_MARKS.sub("", text.splitlines()[0])) or type(exc).__name__


def resolve_device(device: str) -> str:
    """``auto``: the first NVIDIA GPU where PyTorch sees one, else the CPU; any other device as it is.

    The default, as ultralytics' own: on a GPU box a first ``segcast serve`` ran on the CPU, several
    times slower, until the config file said otherwise. Apple's GPU is not taken by itself (``mps``),
    as ultralytics does not either: its speed against the CPU depends on the model.
    """
    if device != "auto":
        return device
    import torch

    return "cuda:0" if torch.cuda.is_available() else "cpu"


def check_device(device: str) -> None:
    """Refuse a device this machine does not have (``cuda:0`` where PyTorch sees no GPU) with `DeviceError`,
    before any frame.

    ``device`` is already of a form segcast knows (`server.inference.options.InferenceOptions`). Without
    this, start-up went on and ultralytics failed on every frame. Only for a model run here: a Triton
    model runs on its server's devices.
    """
    if device == "cpu":
        return
    import torch

    if device == "mps":
        if not torch.backends.mps.is_available():
            raise DeviceError(device, "not available on this machine (PyTorch sees no Apple GPU)")
        return
    index = int(device.rpartition(":")[2]) if device != "cuda" else 0
    count = torch.cuda.device_count()
    if index >= count:
        seen = f"{count} CUDA devices, cuda:0 to cuda:{count - 1}"
        seen = {0: "no CUDA devices", 1: "1 CUDA device, cuda:0"}.get(count, seen)
        raise DeviceError(device, f"not available on this machine (PyTorch sees {seen})")


def use_cores() -> int:
    """Give the calling thread's PyTorch work every core this process may run on; returns how many.

    Called on the inference thread itself, since PyTorch's OpenMP thread count is per calling thread.
    It counts the cores the process is allowed (a container's CPU set), where PyTorch's own default
    counts the host's and would oversubscribe. Readers and the encoder are not held back: on 2 cores,
    a 2-thread forward pass beside them measured faster than a 1-thread one (docs/benchmarks.md).
    ONNX Runtime and OpenVINO keep their own defaults (a pool of one thread per core).
    """
    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    torch.set_num_threads(max(1, cores))
    return torch.get_num_threads()


def use_cores_or_say_why() -> int:
    """`use_cores`, failing as a `ModelError` that says it is the thread's cores, not the model, at fault."""
    try:
        return use_cores()
    except Exception as exc:
        raise ModelError(f"the inference thread cannot set its CPU threads ({type(exc).__name__}: {exc})") from exc


def _open_export(model: YOLO) -> dict[int, str]:
    """Open an exported model's runtime on the CPU, as ultralytics' own ``names`` does, and return its classes.

    The predictor is kept, so later reads of ``names`` do not open the runtime again; it is of the class
    serving runs the model with (`serving_predictor`, under the default ``fast_masks``), so the first
    ``predict`` on the CPU reuses it; any other device or class makes ultralytics set up its own.
    """
    from server.inference.detections import serving_predictor

    predictor_class: Any = serving_predictor(model) or model._smart_load("predictor")
    predictor = predictor_class(overrides={**model.overrides, "device": "cpu"}, _callbacks=model.callbacks)
    predictor.setup_model(model=model.model, verbose=False)
    model.predictor = predictor
    return dict(predictor.model.names)


def _check_model_folder(spec: str, path: Path) -> None:
    """Refuse a folder that is not a complete OpenVINO export, the only folder segcast loads.

    Ultralytics would take any folder for a model and fail with a traceback, or, for an OpenVINO folder
    without its ``.xml``, raise ``StopIteration``.
    """
    if not path.name.endswith("_openvino_model"):
        raise ModelError(
            f"--model {spec}: a folder, not a model; pass a .pt or .onnx file or a NAME_openvino_model folder"
        )
    if not any(xml.with_suffix(".bin").is_file() for xml in path.glob("*.xml")):
        raise ModelError(
            f"--model {spec}: an OpenVINO folder without its model (.xml and .bin); "
            "export it again with segcast export --format openvino"
        )


def _check_runtime(spec: str, target: str) -> None:
    """Refuse an exported model whose runtime is missing, before ultralytics tries to pip-install it."""
    path = Path(target)
    needed: tuple[str, ...]
    if path.suffix == ".onnx":
        needed, extra = ("onnx", "onnxruntime"), "onnx"
    elif path.is_dir() and path.name.endswith("_openvino_model"):
        needed, extra = ("openvino",), "openvino"
    else:
        return
    missing = [name for name in needed if importlib.util.find_spec(name) is None]
    if missing:
        raise ModelError(f"--model {spec}: needs {', '.join(missing)}; install it with {install_hint(extra)}")


def install_hint(extra: str) -> str:
    """How to install an optional extra: segcast is installed from its checkout, not from PyPI.

    In segcast's image (the Dockerfile sets ``SEGCAST_IMAGE``) there is no checkout, and the container
    runs as a user that cannot install packages, and would lose them with the container: the extra
    goes into the image's build instead.
    """
    if os.environ.get("SEGCAST_IMAGE"):
        return (
            f"a segcast image built with the {extra} extra (add {extra} to the extras of the "
            "Dockerfile's pip install '.[...]' line, then docker build again): this image was built without it"
        )
    return f"pip install '.[{extra}]' in segcast's folder"


def _exported_metadata(target: str) -> dict[str, Any]:
    """What ultralytics wrote into an exported model (its size, class names...), read without running it."""
    from ultralytics.nn.backends.base import BaseBackend

    metadata = dict(BaseBackend.read_metadata(target))
    for key, value in metadata.items():
        if isinstance(value, str):  # ONNX keeps metadata as strings
            with suppress(ValueError, SyntaxError):
                metadata[key] = ast.literal_eval(value)
    return metadata


def _exported_imgsz(metadata: dict[str, Any]) -> int | None:
    """The inference size an exported model was made for, so it runs at the size its ``.pt`` ran at.

    A ``.pt`` carries its training size; ultralytics forgets it for exports and would use 640.
    """
    size = metadata.get("imgsz")
    if isinstance(size, int):
        return size
    if isinstance(size, list | tuple) and size and all(isinstance(v, int) for v in size):
        return max(size)
    return None


def _exported_task(target: str, metadata: dict[str, Any]) -> str:
    """The task an export recorded (ultralytics writes it into every export it makes); else, for one that
    did not, segcast's naming: segmentation unless named -det. A detection model taken for segmentation
    would fail on every frame, looking for masks it does not have."""
    task = metadata.get("task")
    if isinstance(task, str) and task:
        return task
    return "detect" if "-det" in Path(target).name else "segment"
