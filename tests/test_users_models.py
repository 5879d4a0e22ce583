"""Models users bring: what ``--model`` serves and refuses, and that a model's own size and task are kept.

Found by a review of users' own models: a model definition (.yaml) served an untrained network that
never found anything, a static export quietly ran at its own size while a stream listed another, the
benchmark's seed loop took every model for segmentation, and two refusals spoke ultralytics' words.
"""

from __future__ import annotations

import queue
import shutil
import warnings
from pathlib import Path
from typing import Any

import pytest

from server.app import create_app
from server.cli import EXIT_STARTUP_ERROR
from server.config import Settings, StreamConfig
from server.frames import FrameResult
from server.inference.local import LocalModel
from server.inference.models import (
    BUNDLED_MODEL,
    MODELS_TAKEN,
    ModelError,
    _exported_imgsz,
    load_model,
    resolve_model_path,
)
from server.inference.options import InferenceOptions
from server.inference.worker import InferenceWorker
from server.options import StreamOptions
from tests.support.cli_in_process import run_cli
from tests.support.components import require_module
from tests.support.ports import free_port

#: How a stream's imgsz of 640 is refused for the bundled model's static export (ultralytics' default, 320x320).
FIXED_SIZE_REFUSAL = "imgsz: the model takes 320x320 images only, got 640; give 320 or 'model' for its own size"
UNTRAINED = "a model definition, untrained (it finds nothing); pass the weights trained from it (a .pt file)"


def _export_onnx(folder: Path, dynamic: bool) -> Path:
    """The bundled model exported to ONNX as ``YOLO(pt).export(format="onnx")`` does, in ``folder``."""
    folder.mkdir()
    return _exported(Path(shutil.copy(BUNDLED_MODEL, folder / BUNDLED_MODEL.name)), dynamic=dynamic)


def _exported(source: Path, **options: Any) -> Path:
    """``source`` exported to ONNX beside it, with ultralytics' defaults but for ``options``."""
    from torch.jit import TracerWarning
    from ultralytics import YOLO

    with warnings.catch_warnings():  # torch deprecates the exporter ultralytics calls, as `segcast export` knows
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", TracerWarning)  # a static export's head compares shapes while traced
        return Path(YOLO(str(source)).export(format="onnx", simplify=False, verbose=False, **options))


@pytest.fixture(scope="module")
def static_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ultralytics' default ONNX export of the bundled model: one input size, [1, 3, 320, 320] (about 5 s)."""
    require_module("onnxruntime", "needs the onnx extra: pip install '.[onnx]'")
    return _export_onnx(tmp_path_factory.mktemp("users-models") / "static", dynamic=False)


@pytest.fixture(scope="module")
def dynamic_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_module("onnxruntime", "needs the onnx extra: pip install '.[onnx]'")
    return _export_onnx(tmp_path_factory.mktemp("users-models") / "dynamic", dynamic=True)


def _saved(tmp_path: Path, config: str) -> Path:
    """A .pt of an untrained network built from one of ultralytics' own model yamls: nothing downloaded."""
    from ultralytics import YOLO

    path = tmp_path / config.replace(".yaml", ".pt")
    YOLO(config).save(path)
    return path


# -- a model definition ---------------------------------------------------------------------------------


def test_serving_a_model_definition_by_name_stops_the_start_saying_it_is_untrained(
    capfd: pytest.CaptureFixture[str],
) -> None:
    """Before, the stream went live with classes '0' to '79' and never a detection, and no word of why."""
    exited = run_cli(capfd, "serve", "--source", "scene:", "--model", "yolo11n-seg.yaml", "--port", str(free_port()))
    assert exited.code == EXIT_STARTUP_ERROR, exited.err
    assert exited.one_error_line.startswith(f"segcast: --model yolo11n-seg.yaml: {UNTRAINED}"), exited.err


def test_a_model_definition_file_is_refused_too(tmp_path: Path) -> None:
    from ultralytics.utils.checks import check_yaml

    mine = Path(shutil.copy(check_yaml("yolo11-seg.yaml"), tmp_path / "mine.yaml"))
    with pytest.raises(ModelError) as caught:
        load_model(str(mine))
    assert str(caught.value).startswith(f"--model {mine}: {UNTRAINED}")


def test_the_benchmark_refuses_a_model_definition_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """It crashed reading a file of that name from the current folder."""
    from bench.run import main

    assert main(["--model", "yolo11n-seg.yaml", "--cache", str(tmp_path / "cache"), "--quick"]) == 2
    last = capsys.readouterr().err.splitlines()[-1]
    assert last.startswith(f"python -m bench: error: --model yolo11n-seg.yaml: {UNTRAINED}")


# -- a model's own file and size ------------------------------------------------------------------------


def test_a_users_own_file_named_like_the_bundled_model_is_the_one_served(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only a name with no such file is the bundled model: a file the user has is theirs to serve."""
    monkeypatch.chdir(tmp_path)
    Path(BUNDLED_MODEL.name).write_bytes(b"the user's own model")
    assert resolve_model_path(BUNDLED_MODEL.name) == BUNDLED_MODEL.name
    assert resolve_model_path("bundled") == str(BUNDLED_MODEL)


def test_a_pt_runs_at_the_size_it_was_trained_at() -> None:
    """The bundled model was trained at 320: at ultralytics' default of 640 each frame has four times the pixels."""
    assert LocalModel(load_model("bundled"), InferenceOptions(device="cpu")).default_imgsz == 320


def test_an_export_made_for_a_rectangle_runs_at_its_longer_side() -> None:
    """A rectangular export's ``imgsz`` is [height, width]; a single size is the longer side an image is scaled to."""
    assert _exported_imgsz({"imgsz": [384, 640]}) == 640


# -- a static export ------------------------------------------------------------------------------------


def test_a_static_export_refuses_an_imgsz_it_does_not_take_naming_its_size(static_onnx: Path) -> None:
    """It ran at 320 whatever the stream asked, while the stream's options said 640."""
    results: queue.Queue[FrameResult] = queue.Queue()
    worker = InferenceWorker(str(static_onnx), results.put, InferenceOptions(device="cpu"))
    worker.start()
    try:
        with pytest.raises(ValueError) as caught:
            worker.check_options(StreamOptions.from_mapping({"imgsz": 640}))
        for fits in ({"imgsz": 320}, {"imgsz": "model"}, {}):
            worker.check_options(StreamOptions.from_mapping(fits))
    finally:
        worker.stop()
    assert str(caught.value) == FIXED_SIZE_REFUSAL


def test_a_pt_and_a_dynamic_export_take_any_imgsz(dynamic_onnx: Path) -> None:
    options = InferenceOptions(device="cpu")
    assert LocalModel(load_model(str(BUNDLED_MODEL)), options).fixed_shape is None
    assert LocalModel(load_model(str(dynamic_onnx)), options).fixed_shape is None


async def test_a_patch_to_an_imgsz_a_static_export_does_not_take_is_a_400_and_changes_nothing(
    static_onnx: Path, aiohttp_client: Any
) -> None:
    settings = Settings(model=str(static_onnx), streams=(StreamConfig("cam", "scene:?seed=1"),))
    client = await aiohttp_client(create_app(settings))
    refused = await client.patch("/api/streams/cam", json={"imgsz": 640})
    assert (refused.status, (await refused.json())["error"]) == (400, f"body.{FIXED_SIZE_REFUSAL}")
    [stream] = (await (await client.get("/api/streams")).json())["streams"]
    assert stream["options"]["imgsz"] is None


def test_serving_a_static_export_at_another_imgsz_stops_the_start_in_one_line(
    static_onnx: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    port = str(free_port())
    exited = run_cli(
        capfd,
        "serve",
        "--source",
        "scene:",
        "--model",
        str(static_onnx),
        "--imgsz",
        "640",
        "--port",
        port,
        "--log-level",
        "ERROR",
    )
    assert exited.code == EXIT_STARTUP_ERROR, exited.err
    assert FIXED_SIZE_REFUSAL in exited.one_error_line, exited.err


# -- the benchmark's seed loop --------------------------------------------------------------------------


def test_the_seed_loop_runs_an_exported_detection_model_as_one(tmp_path: Path) -> None:
    """It loaded every model for segmentation: the benchmark's ONNX side of a detection model failed
    inside ultralytics, looking for masks (IndexError in its segment predictor)."""
    require_module("onnxruntime", "needs the onnx extra: pip install '.[onnx]'")
    from bench.seed_loop import run_seed_loop
    from server.scene import Scene, write_h264

    detector = _exported(_saved(tmp_path, "yolov8n.yaml"), imgsz=64)
    video = write_h264(Scene(seed=7), tmp_path / "two.mp4", 2)
    loop = run_seed_loop(str(detector), video, 2, imgsz=64, warmup=1)
    assert loop.frames == 2


# -- what a refusal says --------------------------------------------------------------------------------


def test_an_oriented_box_model_is_refused_saying_what_to_pass(tmp_path: Path) -> None:
    """It said "a obb model; segcast needs a segment or detect model": ultralytics' task names."""
    obb = _saved(tmp_path, "yolov8n-obb.yaml")
    with pytest.raises(ModelError) as caught:
        load_model(str(obb))
    assert str(caught.value) == (
        f"--model {obb}: an OBB (oriented-box) model; segcast needs a segmentation or detection model: "
        "pass a -seg .pt (such as yolov8n-seg.pt) or a detection .pt (such as yolov8n.pt)"
    )


def test_a_file_of_no_model_format_is_refused_saying_what_segcast_takes(tmp_path: Path) -> None:
    """It repeated ultralytics' list of 23 formats, most of which segcast neither exports nor documents."""
    notes = tmp_path / "notes.txt"
    notes.write_text("not a model\n")
    with pytest.raises(ModelError) as caught:
        load_model(str(notes))
    assert str(caught.value) == f"--model {notes}: not a model segcast takes; pass {MODELS_TAKEN}"
    for documented in (".pt", ".onnx", "_openvino_model", "grpc://"):
        assert documented in MODELS_TAKEN
