"""``segcast export``: turn a PyTorch ``.pt`` model into an ONNX Runtime or OpenVINO model, or a
Triton model repository (an ONNX model with the config NVIDIA's tritonserver needs, `server.triton.repository`).

Exported models are what make segcast fast on a CPU (see docs/benchmarks.md): the same network runs
several times faster in OpenVINO than in PyTorch. The server loads the result like any other model
(``--model yard.onnx`` or ``--model yard_openvino_model``), always as the task the ``.pt`` had.

Exports are dynamic in batch and image size, because the inference thread batches the newest frame of
every stream into one call and letterboxes each frame to its own aspect ratio. The runtimes come from
optional extras (``pip install '.[onnx]'`` or ``'.[openvino]'`` in segcast's folder); a missing one is
reported before any work, since ultralytics would otherwise try to pip-install it while running.
"""

from __future__ import annotations

import errno
import importlib.util
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from server.inference.models import (
    DEFAULT_IMGSZ_PX,
    EXPORT_OFFLINE_HINT,
    SUPPORTED_TASKS,
    ModelError,
    first_line,
    install_hint,
    load_model,
    resolve_model_path,
    unsupported_task,
)
from server.inference.telemetry import switch_off_ultralytics_telemetry
from server.options import StreamOptions
from server.triton.repository import check_pixel_input_model, write_repository

#: Per format: the packages it needs (import names) and the extra that installs them.
REQUIREMENTS: dict[str, tuple[tuple[str, ...], str]] = {
    "onnx": (("onnx", "onnxslim", "onnxruntime"), "onnx"),
    "openvino": (("openvino",), "openvino"),
    "triton": (("onnx", "onnxslim", "onnxruntime"), "onnx"),  # the repository holds an ONNX model
}
FORMATS = tuple(REQUIREMENTS)
PROGRESS_INTERVAL_S = 0.5  # how often the elapsed time of a running step is redrawn on a terminal
CHECK_IMAGE_PX = (384, 640)  # height, width of the blank frame the exported model is tried on
#: The other fix for an ``--out`` segcast's user may not write in, after `_write_denied`'s chown or chmod.
_WRITABLE_OUT = "or choose an --out segcast's user may write in"
#: What every format is exported from: ultralytics exports PyTorch weights, never an exported model.
_PYTORCH_ONLY = "expected a local PyTorch .pt file (or 'bundled')"

log = logging.getLogger(__name__)


class ExportError(Exception):
    """The export cannot be done; the message names the flag or the package to install."""


@dataclass(frozen=True, slots=True)
class ExportResult:
    path: Path
    seconds: float


def missing_packages(fmt: str) -> list[str]:
    """The packages ``fmt`` needs that are not installed (import names)."""
    packages, _ = REQUIREMENTS[fmt]
    return [name for name in packages if importlib.util.find_spec(name) is None]


def output_name(model_path: Path, fmt: str) -> str:
    """What segcast writes for ``model_path``: ultralytics' name for its export, or for Triton the
    model's folder in the repository (the name it is served by)."""
    if fmt == "triton":
        return model_path.stem
    return f"{model_path.stem}.onnx" if fmt == "onnx" else f"{model_path.stem}_openvino_model"


class Progress:
    """Numbered steps on one line each; on a terminal the running step also shows its elapsed time.

    Elsewhere (a log file, CI) each step is still one line: its label when it starts, its time
    appended when it ends, and no carriage returns.
    """

    def __init__(self, steps: int, stream: TextIO | None = None) -> None:
        self._steps = steps
        self._stream = stream if stream is not None else sys.stderr
        self._live = self._stream.isatty()
        self._done = 0

    @contextmanager
    def step(self, text: str) -> Iterator[None]:
        self._done += 1
        label = f"segcast export [{self._done}/{self._steps}] {text}"
        started = time.monotonic()
        stop = threading.Event()
        ticker = threading.Thread(target=self._tick, args=(label, started, stop), daemon=True)
        if self._live:
            ticker.start()
        else:
            print(f"{label} ...", end="", file=self._stream, flush=True)
        try:
            yield
        finally:
            stop.set()
            elapsed = f"{time.monotonic() - started:.1f} s"
            if self._live:
                ticker.join()
                print(f"\r{label} ... {elapsed}", file=self._stream, flush=True)
            else:
                print(f" {elapsed}", file=self._stream, flush=True)

    def _tick(self, label: str, started: float, stop: threading.Event) -> None:
        while not stop.wait(PROGRESS_INTERVAL_S):
            print(f"\r{label} ... {time.monotonic() - started:.0f} s", end="", file=self._stream, flush=True)


def export_model(
    spec: str,
    fmt: str,
    out_dir: Path,
    imgsz: int | None = None,
    progress: Progress | None = None,
    *,
    load: Callable[[str], Any] = load_model,
) -> ExportResult:
    """Export the ``.pt`` model ``spec`` (a path or ``bundled``) to ``fmt`` in ``out_dir``, then try it.

    The result is loaded back through `server.inference.models.load_model` and run on one frame, so a model
    that exports but cannot be served fails here and not when the server starts. For ``triton``,
    ``out_dir`` is the model repository and the model inside it is what is tried. The result is tried
    before it replaces anything in ``out_dir``: a failed export leaves the model there (which a server
    may be using) as it was. Raises `ExportError`; before the slow export for a bad ``imgsz``, an
    ``out_dir`` that cannot be a folder or that segcast's user may not write in (another user's, as a
    container run as root leaves a volume: `_write_denied`), or a model of a task segcast does not serve.
    """
    if fmt not in REQUIREMENTS:
        raise ExportError(f"--format {fmt}: expected one of {', '.join(FORMATS)}")
    try:
        StreamOptions.from_mapping({"imgsz": imgsz})  # the sizes serve's --imgsz takes
    except ValueError as exc:
        raise ExportError(f"--imgsz {imgsz}: {str(exc).partition(': ')[2]}") from None
    missing = missing_packages(fmt)
    if missing:
        extra = REQUIREMENTS[fmt][1]
        raise ExportError(f"--format {fmt} needs {', '.join(missing)}: install them with {install_hint(extra)}")
    source = _pytorch_file(spec)
    target = out_dir / output_name(source, fmt)
    if out_dir.exists() and not out_dir.is_dir():
        raise ExportError(f"--out {out_dir}: a file, not a folder")
    with _new_folder(out_dir):
        if (denied := _write_denied(out_dir)) is not None:
            raise ExportError(f"--out {out_dir}: {denied}; {_WRITABLE_OUT}")
        if fmt == "triton" and target.exists() and not target.is_dir():
            raise ExportError(f"--out {out_dir}: {target}: {os.strerror(errno.ENOTDIR)}")
        return _export(spec, fmt, source, target, imgsz, progress or Progress(3), load)


def _pytorch_file(spec: str) -> Path:
    """The ``.pt`` file ``--model`` names, downloaded first where it is a name ultralytics publishes.

    What is not one is refused saying what export takes: `resolve_model_path`'s own errors for an
    empty name, a folder or an address suggest what serve takes besides (an ONNX file, an OpenVINO
    folder, a model on a Triton server).
    """
    if not spec.strip():
        raise ExportError(f"--model {spec!r}: empty; {_PYTORCH_ONLY}")
    if Path(spec).expanduser().is_dir():
        raise ExportError(f"--model {spec}: a folder, not a model; {_PYTORCH_ONLY}")
    if "://" in spec:
        raise ExportError(f"--model {spec}: an address, not a file; {_PYTORCH_ONLY}")
    try:
        source = Path(resolve_model_path(spec, EXPORT_OFFLINE_HINT))
    except ModelError as exc:
        raise ExportError(str(exc)) from None
    if source.suffix != ".pt" or not source.is_file():
        raise ExportError(f"--model {spec}: {_PYTORCH_ONLY}")
    return source


def _export(
    spec: str, fmt: str, source: Path, target: Path, imgsz: int | None, progress: Progress, load: Callable[[str], Any]
) -> ExportResult:
    """Export ``source`` in scratch, check it there, then put it in ``target``'s place (`export_model`)."""
    out_dir = target.parent
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="segcast-export-") as scratch:
        # ultralytics writes the export beside its input: work on a copy so nothing lands beside the
        # original (which may be inside the installed package).
        copy = Path(scratch) / source.name
        shutil.copyfile(source, copy)
        with progress.step(f"loading {source.name}"):
            model = _load_pt(copy, spec)
        with progress.step(f"exporting to {fmt} (a minute or so on a small CPU)"), _quiet_ultralytics():
            size = imgsz or int(model.overrides.get("imgsz", DEFAULT_IMGSZ_PX))
            try:
                exported = Path(model.export(format="onnx" if fmt == "triton" else fmt, imgsz=size, dynamic=True))
            except Exception as exc:  # ultralytics raises many kinds; one line is what a person needs
                raise ExportError(f"--format {fmt}: export failed ({first_line(exc)})") from None
        # Checked where it was made: what --out holds (a model a server may be using) is only replaced
        # by an export that works.
        if fmt == "triton":
            repository = Path(scratch) / "repository"
            try:
                served = write_repository(exported, repository, target.name) / "1" / "model.onnx"
            except (ValueError, OSError) as exc:
                raise ExportError(f"--format triton: cannot make the repository's model ({exc})") from None
            with progress.step(f"checking that {target.name} gives what the ONNX export gives"):
                try:
                    check_pixel_input_model(exported, served, CHECK_IMAGE_PX)
                except ValueError as exc:
                    raise ExportError(f"the Triton model does not match the export: {exc}") from None
            checked = repository / target.name
        else:
            with progress.step(f"checking that {target.name} loads and runs"), _quiet_ultralytics():
                _check(exported, load)
            checked = exported
        with _writing(out_dir):
            out_dir.mkdir(parents=True, exist_ok=True)  # gone if another export's failure removed it
            _replace(checked, target)
    return ExportResult(target, time.monotonic() - started)


def _replace(checked: Path, target: Path) -> None:
    """Put ``checked`` (a file or a folder, maybe on another filesystem) at ``target``, replacing what is there.

    It is first copied whole to a hidden sibling, ``.<name>.new``: a copy that fails (a full disk)
    leaves ``target`` as it was, and the sibling is removed. Only then is it renamed in, which within
    one folder is one step: a file over the old one; a folder after the old one is renamed aside to
    ``.<name>.old`` (put back if the new one cannot go in), and the old one is removed last. So a
    server never loads half a model: segcast loads ``target`` only, and Triton, which polls every
    folder of its repository (a dot does not hide one), loads one only where the name its
    ``config.pbtxt`` gives is the folder's own, which the siblings' are not.
    """
    staged, aside = target.with_name(f".{target.name}.new"), target.with_name(f".{target.name}.old")
    for leftover in (staged, aside):  # of an export that was killed there
        _remove(leftover)
    try:
        shutil.move(str(checked), staged)
        if target.is_dir() or (target.exists() and staged.is_dir()):
            os.rename(target, aside)
            try:
                os.rename(staged, target)
            except OSError:
                os.rename(aside, target)
                raise
            try:
                _remove(aside)
            except OSError as exc:  # the new model is in place: an old copy left over is no failure
                log.warning("could not remove the replaced model %s: %s", aside, exc)
        else:
            os.replace(staged, target)
    finally:
        with suppress(OSError):
            _remove(staged)


def _remove(path: Path) -> None:
    """Remove a file or a whole folder; nothing there is fine."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


@contextmanager
def _new_folder(out_dir: Path) -> Iterator[None]:
    """Make ``out_dir`` and its missing parents first, so that one that cannot be made is said before
    the slow export; if what follows fails, remove the folders made here that are still empty (a
    refused model or a failed export leaves no empty ``--out`` behind).

    Only folders this call made are removed: one that another export (or the user) made meanwhile is
    theirs. An export whose ``--out`` such a removal took makes it again before putting its model in.
    """
    made: list[Path] = []
    try:
        with _writing(out_dir):
            for folder in (*reversed(out_dir.parents), out_dir):
                try:
                    folder.mkdir()
                except FileExistsError:
                    continue
                made.append(folder)
            if not out_dir.is_dir():
                raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(out_dir))
        yield
    except BaseException:
        for folder in reversed(made):  # deepest first
            try:
                folder.rmdir()
            except OSError:  # something was put in it: keep it, and its parents
                break
        raise


@contextmanager
def _writing(out_dir: Path) -> Iterator[None]:
    """`OSError` writing into ``out_dir`` (a file in the way, no permission, a full disk) as one line
    naming ``--out``."""
    try:
        yield
    except OSError as exc:
        where = f" {exc.filename}:" if exc.filename and Path(exc.filename) != out_dir else ""
        # Refused by the folder it was made in (a parent of a new --out): its owner, and the fix.
        denied = _write_denied(Path(exc.filename).parent) if isinstance(exc, PermissionError) and exc.filename else None
        why = f": {denied}; {_WRITABLE_OUT}" if denied is not None else ""
        raise ExportError(f"--out {out_dir}:{where} {exc.strerror or exc}{why}") from None


def _write_denied(folder: Path) -> str | None:
    """Why segcast's user may not write in ``folder``, with the fix (`server.file_saving.write_denied`); None
    where it may. Imported here: that module needs `server.config`, which imports PyAV, and the CLI, which
    imports this one, says its first line before anything heavy is imported."""
    from server.file_saving import write_denied

    return write_denied([folder])


def _load_pt(path: Path, spec: str) -> Any:
    from ultralytics import YOLO

    switch_off_ultralytics_telemetry()

    try:
        model = YOLO(str(path))
    except Exception as exc:
        # ultralytics names the path it was given: the copy in the scratch folder, which has the file's name.
        reason = first_line(exc).replace(str(path), path.name)
        raise ExportError(f"--model {spec}: cannot load it ({reason})") from None
    if model.task not in SUPPORTED_TASKS:  # as the server says it: refused before a minute of exporting
        raise ExportError(unsupported_task(spec, model.task))
    return model


def _check(exported: Path, load: Callable[[str], Any]) -> None:
    """Load ``exported`` as the server would and run it on one frame; it is still in the scratch folder,
    which the message does not name."""
    try:
        model = load(str(exported))
        model.predict(np.zeros((*CHECK_IMAGE_PX, 3), np.uint8), verbose=False)
    except ModelError as exc:
        raise ExportError(
            f"the exported model does not load: {str(exc).replace(str(exported), exported.name)}"
        ) from None
    except Exception as exc:
        raise ExportError(f"the exported model does not run: {first_line(exc)}") from None


@contextmanager
def _quiet_ultralytics() -> Iterator[None]:
    """Only ultralytics' warnings and errors while exporting: the progress lines say the rest."""
    logger = logging.getLogger("ultralytics")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        # torch deprecates the tracing exporters ultralytics calls; nothing a user of segcast can act on.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", FutureWarning)
            yield
    finally:
        logger.setLevel(level)
