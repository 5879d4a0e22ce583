"""A repository for Triton's ONNX Runtime backend turned into the same models on its Python backend.

The CPU build of tritonserver that ``segcast triton serve`` runs (`server.triton.cpu_install`) has
no ONNX Runtime backend. So the launcher serves a copy of the repository (``segcast export --format
triton`` writes one, and Ultralytics' Triton guide another) in which every model runs
``python_model.py`` - ONNX Runtime on the CPU - on the Python backend, with the name, inputs,
outputs, batching and parameters it had, so clients cannot tell it from the ONNX Runtime backend's.
A model that backend would refuse is refused here, in one line naming the folder and the fix.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

from server.inference.models import install_hint
from server.triton.cpu_install import TritonCpuError
from server.triton.onnx_config import complete_config, mismatches, read_signatures

ONNX_BACKEND, ONNX_PLATFORM, DEFAULT_ONNX_FILE = "onnxruntime", "onnxruntime_onnx", "model.onnx"
PYTHON_MODEL = Path(__file__).with_name("python_model.py")
#: Parameters `python_model.py` reads; the thread count is the ONNX Runtime backend's own parameter.
ONNX_FILE_PARAMETER, THREADS_PARAMETER = "onnx_file", "intra_op_thread_count"

log = logging.getLogger(__name__)


def write_python_repository(source: Path, target: Path, instances: int | None, python: Path) -> list[str]:
    """Write ``target``: every ONNX Runtime model of the repository ``source`` on the Python backend.

    Each model runs its config's ``instance_group`` count of instances on the CPU (one if it has none),
    or ``instances`` of them where that is given (``--instances``), which then wins, said in the log
    where it replaces another count.

    A config may leave out what Triton's ONNX Runtime backend reads from the ONNX file (the backend,
    inputs, outputs, batching): ``python``, with ONNX Runtime, reads the file for it. Each model keeps
    its name, inputs, outputs, batching and parameters (the ``metadata`` clients read), so clients
    cannot tell it from the ONNX Runtime backend's. Its version folders link to the source's files
    and get `PYTHON_MODEL` as ``model.py``. Returns the model names, sorted.
    """
    schema, text_format = _config_codec()
    if not source.is_dir():
        raise TritonCpuError(
            f"{source}: no such folder; give a Triton model repository (segcast export --format triton)"
        )
    if (source / "config.pbtxt").exists():  # Triton's repository holds model folders, each with its config
        parent = source.parent if source.name else source.resolve().parent
        raise TritonCpuError(
            f"{source}: a model folder (it has config.pbtxt), not a repository of them; give the folder "
            f"it is in, {parent}"
        )
    folders = sorted(path for path in source.iterdir() if path.is_dir() and not path.name.startswith("."))
    if not folders:
        raise TritonCpuError(f"{source}: no models in this repository; write one with segcast export --format triton")
    for folder in folders:
        config_path = folder / "config.pbtxt"
        if not config_path.exists():
            raise TritonCpuError(f"{folder}: no config.pbtxt; every model folder of a repository needs one")
        config = schema.ModelConfig()
        try:
            text_format.Parse(config_path.read_text(), config)
        except text_format.ParseError as exc:
            raise TritonCpuError(f"{config_path}: not a Triton model config ({exc})") from None
        versions = [path for path in folder.iterdir() if path.is_dir() and path.name.isdigit()]
        versions.sort(key=lambda path: int(path.name))
        onnx_file = config.default_model_filename or DEFAULT_ONNX_FILE
        onnx_files = [version / onnx_file for version in versions if (version / onnx_file).exists()]
        _check_backend(config, folder, onnx_file, bool(onnx_files))
        if not onnx_files:
            raise TritonCpuError(f"{folder}: no version folder with {onnx_file} (expected {folder}/1/{onnx_file})")
        _complete_and_check(schema, config, folder, onnx_files, python)
        _convert(schema, config, folder, instances)
        model = target / folder.name
        for version in versions:
            (model / version.name).mkdir(parents=True)
            for entry in version.iterdir():
                (model / version.name / entry.name).symlink_to(entry.resolve())
            shutil.copyfile(PYTHON_MODEL, model / version.name / "model.py")
        (model / "config.pbtxt").write_text(text_format.MessageToString(config))
    return [folder.name for folder in folders]


def _check_backend(config: Any, folder: Path, onnx_file: str, has_onnx_file: bool) -> None:
    """Refuse a model for another backend. One naming none is ONNX Runtime's when a version folder
    holds ``model.onnx``, as Triton decides from the files (Ultralytics' Triton guide writes such)."""
    if not config.backend and not config.platform:
        if has_onnx_file:
            config.backend = ONNX_BACKEND
            return
        raise TritonCpuError(
            f"{folder}: config.pbtxt names no backend or platform and there is no {folder}/1/{onnx_file} to tell "
            f'it from; put the ONNX file there (and backend: "onnxruntime" in config.pbtxt)'
        )
    if config.backend != ONNX_BACKEND and config.platform != ONNX_PLATFORM:
        kind = config.backend or config.platform
        raise TritonCpuError(f"{folder}: backend {kind!r} is not onnxruntime; triton serve runs ONNX models only")


def _complete_and_check(schema: Any, config: Any, folder: Path, onnx_files: list[Path], python: Path) -> None:
    """Fill in the inputs, outputs and batching the config leaves out from the newest ONNX file, then
    refuse the model, naming every mismatch, where the config contradicts any version's file: Triton's
    ONNX Runtime backend would not load it, and the Python backend would fail every request instead."""
    try:
        signatures = read_signatures(python, onnx_files)
    except ValueError as exc:
        raise TritonCpuError(str(exc)) from None
    try:
        complete_config(schema, config, signatures[onnx_files[-1]])
    except ValueError as exc:
        raise TritonCpuError(f"{folder}: {exc}") from None
    for path, signature in signatures.items():
        if problems := mismatches(schema, config, signature):
            raise TritonCpuError(
                f"{folder}/config.pbtxt does not match {path}: {'; '.join(problems)}. Fix the config, or leave out "
                f"its input and output lists for triton serve to read them from the file"
            )


def _convert(schema: Any, config: Any, folder: Path, instances: int | None) -> None:
    """Turn an ONNX Runtime backend config, complete and checked, into the Python backend's, in place.

    Its instance groups become one of as many CPU instances (the Python backend runs on the CPU, and a
    GPU group would not load on a CPU-only server), unless ``instances`` replaces that count; the
    instances share the CPUs' threads."""
    if config.name and config.name != folder.name:
        raise TritonCpuError(f"{folder}/config.pbtxt: name {config.name!r} differs from its folder, as Triton forbids")
    onnx_file = config.default_model_filename or DEFAULT_ONNX_FILE
    config.name = folder.name
    config.backend = "python"
    for field in ("platform", "runtime", "default_model_filename", "cc_model_filenames", "optimization"):
        config.ClearField(field)  # ONNX Runtime's file names and accelerators mean nothing to the Python backend
    # Triton runs one instance for a group that gives no count, and one for a config without groups.
    configured = sum(group.count or 1 for group in config.instance_group) or 1
    if instances is not None and config.instance_group and instances != configured:
        log.info("%s: --instances %d replaces the instance count %d of its config", folder.name, instances, configured)
    count = configured if instances is None else instances
    del config.instance_group[:]
    config.instance_group.add(count=count, kind=schema.ModelInstanceGroup.KIND_CPU)
    config.parameters[ONNX_FILE_PARAMETER].string_value = onnx_file
    if THREADS_PARAMETER not in config.parameters:
        config.parameters[THREADS_PARAMETER].string_value = str(max(1, len(os.sched_getaffinity(0)) // count))


def _config_codec() -> tuple[Any, Any]:
    """Triton's model config messages and protobuf's text format, from tritonclient (the ``triton`` extra)."""
    try:
        from google.protobuf import text_format
        from tritonclient.grpc import model_config_pb2
    except ImportError:
        raise TritonCpuError(f"triton serve reads model configs with tritonclient: {install_hint('triton')}") from None
    return model_config_pb2, text_format
