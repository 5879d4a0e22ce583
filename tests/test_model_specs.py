"""What ``--model`` refuses: an empty name, a folder that is not an export, a broken export - one line, at start."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from server.cli import EXIT_STARTUP_ERROR
from server.inference.detections import detect
from server.inference.models import NOT_A_CHECKPOINT, ModelError, _exported_task, load_model
from server.scene import Scene
from tests.support.cli_in_process import run_cli
from tests.support.components import require_module
from tests.support.ports import free_port

REPO = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 120


def test_an_empty_model_is_refused_not_taken_for_the_current_folder() -> None:
    with pytest.raises(ModelError, match=r"^--model '': empty; pass a model's name"):
        load_model("")


def test_a_plain_folder_is_refused_as_not_a_model(tmp_path: Path) -> None:
    (tmp_path / "weights").mkdir()
    with pytest.raises(ModelError, match=r": a folder, not a model; pass .* NAME_openvino_model folder$"):
        load_model(str(tmp_path / "weights"))


def test_an_openvino_folder_without_its_xml_and_bin_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "x_openvino_model"
    folder.mkdir()
    (folder / "metadata.yaml").write_text("task: segment\n")
    with pytest.raises(ModelError, match=r"x_openvino_model: an OpenVINO folder without its model \(\.xml and \.bin\)"):
        load_model(str(folder))


def test_an_openvino_folder_with_its_xml_but_not_its_bin_is_refused_the_same_way(tmp_path: Path) -> None:
    """The .bin holds the weights: without it OpenVINO cannot read the network the .xml describes."""
    folder = tmp_path / "x_openvino_model"
    folder.mkdir()
    (folder / "metadata.yaml").write_text("task: segment\n")
    (folder / "x.xml").write_text("<net/>")
    with pytest.raises(ModelError) as caught:
        load_model(str(folder))
    assert str(caught.value) == (
        f"--model {folder}: an OpenVINO folder without its model (.xml and .bin); "
        "export it again with segcast export --format openvino"
    )


def test_a_corrupt_onnx_file_is_a_model_error_at_load_not_at_the_first_frame(tmp_path: Path) -> None:
    require_module("onnxruntime", "needs the onnx extra: pip install '.[onnx]'")
    junk = tmp_path / "x.onnx"
    junk.write_bytes(b"\x00\xffnot an onnx model" * 64)
    with pytest.raises(ModelError, match=r"^--model .*x\.onnx: cannot load it \(") as caught:
        load_model(str(junk))
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("text", ["garbage\n", "Final weights\n"])
def test_a_pt_text_file_read_as_pickle_numbers_is_named_not_a_checkpoint(tmp_path: Path, text: str) -> None:
    """Text starting with "g" (or "F", "I", "L") reads as a pickle opcode followed by a number: torch's
    unpickler fails with a ValueError ("invalid literal for int() ... 'arbage'"), not the UnpicklingError
    other junk gives, and that alone lacked the hint."""
    junk = tmp_path / "x.pt"
    junk.write_text(text)
    with pytest.raises(ModelError, match=r"^--model .*x\.pt: cannot load it \(") as caught:
        load_model(str(junk))
    assert str(caught.value).endswith(f"; {NOT_A_CHECKPOINT}"), str(caught.value)


def test_a_pt_file_that_is_no_model_is_named_in_segcasts_words_not_ultralytics_log_marks(tmp_path: Path) -> None:
    """Ultralytics words this error for its own log ("ERROR ❌️ ... "): inside segcast's line the marks
    read as a second, different failure."""
    junk = tmp_path / "x.pt"
    junk.write_text("not a model")
    with pytest.raises(ModelError, match=r"^--model .*x\.pt: cannot load it \(") as caught:
        load_model(str(junk))
    message = str(caught.value)
    assert "ERROR" not in message and "❌" not in message, message
    assert "not a loadable checkpoint" in message  # ultralytics' reason itself stays


def test_an_exported_detection_model_is_loaded_as_one_whatever_its_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The task comes from what the export recorded: named like ultralytics names it (no -det), a
    detection model was taken for segmentation and failed on every frame, looking for masks."""
    require_module("onnxruntime", "needs the onnx extra: pip install '.[onnx]'")
    from ultralytics import YOLO

    monkeypatch.chdir(tmp_path)  # the export is written beside its input: here, the current folder
    untrained = YOLO("yolov8n.yaml")  # built from ultralytics' yaml: a detection model, nothing downloaded
    with warnings.catch_warnings():  # torch deprecates the exporter ultralytics calls, as `segcast export` knows
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        exported = Path(untrained.export(format="onnx", imgsz=64, dynamic=True, simplify=False, verbose=False))
    model = load_model(str(exported))
    assert model.task == "detect"
    [found] = detect(model, [Scene(seed=7).render(60)[0]], conf=0.0, max_det=5)
    assert found.make_outline is None and len(found) <= 5


def test_an_export_that_recorded_no_task_is_taken_by_segcasts_naming() -> None:
    """Segmentation unless named -det; a task the export recorded wins over its name."""
    assert _exported_task("yard-det.onnx", {}) == "detect"
    assert _exported_task("yard.onnx", {}) == "segment"
    assert _exported_task("yard-det.onnx", {"task": "segment"}) == "segment"


def models_it_cannot_open(folder: Path) -> None:
    """``folder`` holding an OpenVINO folder without its model and an .onnx file that is no model."""
    (folder / "x_openvino_model").mkdir()
    (folder / "x.onnx").write_bytes(b"\x00\xffnot an onnx model" * 64)


@pytest.mark.parametrize("model", ["", ".", "x_openvino_model", "x.onnx"])
def test_serve_stops_at_once_with_one_line_for_a_model_it_cannot_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str], model: str
) -> None:
    """Before, an empty OpenVINO folder left segcast neither listening nor exiting; the others ended in a traceback."""
    models_it_cannot_open(tmp_path)
    monkeypatch.chdir(tmp_path)
    exited = run_cli(capfd, "serve", "--source", "scene:", "--model", model, "--port", str(free_port()))
    assert exited.code == EXIT_STARTUP_ERROR, exited.err
    assert exited.one_error_line.startswith("segcast: --model "), exited.err


def test_a_process_refusing_an_openvino_folder_without_its_model_exits_at_once(tmp_path: Path) -> None:
    """The case that once hung, in a real process: it exits, with one line and nothing else on stderr."""
    models_it_cannot_open(tmp_path)
    command = ["serve", "--source", "scene:", "--model", "x_openvino_model", "--port", str(free_port())]
    result = subprocess.run(
        [sys.executable, "-m", "server", *command],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT_S,
    )
    assert result.returncode == EXIT_STARTUP_ERROR, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("segcast: --model x_openvino_model: an OpenVINO folder without its model"), line


def test_serve_stops_at_once_with_one_line_for_a_device_the_machine_lacks(tmp_path: Path) -> None:
    """Before, ``device = "cuda:0"`` on a machine without a GPU started, and every frame failed with a traceback."""
    config = tmp_path / "segcast.toml"
    config.write_text(
        f'[server]\nport = {free_port()}\n[model]\nname = "bundled"\ndevice = "cuda:0"\n'
        '[[streams]]\nid = "a"\nuri = "scene:"\n'
    )
    result = subprocess.run(
        [sys.executable, "-m", "server", "serve", "--config", str(config)],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO), "CUDA_VISIBLE_DEVICES": ""},  # no GPU, whatever this machine has
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT_S,
    )
    assert result.returncode == EXIT_STARTUP_ERROR, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line == (
        'segcast: model.device "cuda:0": not available on this machine (PyTorch sees no CUDA devices); '
        'use device = "auto" (or "cpu") under [model], or --device auto'
    )
    assert "listening" not in result.stdout
