"""``segcast export``: the exported model is served like the .pt, with the same detections and outlines.

Exporting needs the optional runtimes (``pip install '.[onnx,openvino]'``); the test extra
installs both, so CI runs the round trips. Without them those tests skip (and fail in CI: see
tests/support/components.py), and the refusal that names the extra runs everywhere.
"""

from __future__ import annotations

import errno
import importlib.util
import io
import logging
import os
import queue
import re
import shutil
import time
from pathlib import Path
from typing import Any, NoReturn

import pytest

from server.cli import main
from server.frames import Frame, FrameResult
from server.inference.detections import detect
from server.inference.export import ExportError, Progress, export_model, missing_packages, output_name
from server.inference.models import BUNDLED_MODEL, ModelError, load_model
from server.inference.options import InferenceOptions
from server.inference.worker import InferenceWorker
from server.options import StreamOptions
from server.scene import Scene
from tests.support.components import require_component
from tests.support.segcast_process import SegcastProcess
from tests.support.truth import mask_iou, polygon_mask
from tools.track_report import box_iou


def test_unknown_format_names_the_flag(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="--format"):
        export_model("bundled", "tflite", tmp_path)


def test_a_missing_runtime_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "openvino" else real_find_spec(name, *a)
    )
    with pytest.raises(ExportError, match=r"pip install '\.\[openvino\]' in segcast's folder$"):
        export_model("bundled", "openvino", tmp_path)
    assert not any(tmp_path.iterdir())


def test_a_missing_model_file_is_called_missing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", "--model", str(tmp_path / "missing.pt"), "--format", "onnx"]) != 0
    assert main(["export", "--model", "missing.pt", "--format", "onnx"]) != 0
    for line in capsys.readouterr().err.splitlines():
        assert "missing.pt: no such file" in line, line
    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(ExportError, match=r"notes\.txt: expected a local PyTorch \.pt file"):
        export_model(str(tmp_path / "notes.txt"), "onnx", tmp_path)


@pytest.mark.parametrize("fmt", ["onnx", "openvino", "triton"])
def test_what_export_cannot_take_is_refused_naming_what_it_takes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str
) -> None:
    """A folder or an empty name was told to pass a .pt or .onnx file or an OpenVINO folder, which
    export then refused too: every format is exported from PyTorch weights."""
    monkeypatch.setattr("server.inference.export.missing_packages", lambda fmt: [])  # no runtime is reached
    exported = tmp_path / "yard_openvino_model"
    exported.mkdir()
    (exported / "yard.xml").write_text("<net/>")
    (exported / "yard.bin").write_bytes(b"weights")
    (tmp_path / "yard.onnx").write_bytes(b"an exported model")
    takes = "expected a local PyTorch .pt file (or 'bundled')"
    for spec, refused in (
        (str(tmp_path), f"--model {tmp_path}: a folder, not a model; {takes}"),
        (str(exported), f"--model {exported}: a folder, not a model; {takes}"),
        ("", f"--model '': empty; {takes}"),
        ("grpc://triton.lan:8001/yard", f"--model grpc://triton.lan:8001/yard: an address, not a file; {takes}"),
        (str(tmp_path / "yard.onnx"), f"--model {tmp_path / 'yard.onnx'}: {takes}"),
    ):
        with pytest.raises(ExportError) as failed:
            export_model(spec, fmt, tmp_path / "out")
        assert str(failed.value) == refused
    assert not (tmp_path / "out").exists()


def test_a_pt_file_that_is_no_checkpoint_is_named_as_the_user_gave_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ultralytics' "ERROR ❌️ /tmp/segcast-export-xxxx/notes.pt ..." named a copy the user never made."""
    monkeypatch.setattr("server.inference.export.missing_packages", lambda fmt: [])  # no runtime is reached
    notes = tmp_path / "notes.pt"
    notes.write_text("not a model")
    with pytest.raises(ExportError) as failed:
        export_model(str(notes), "onnx", tmp_path / "out", progress=Progress(3, io.StringIO()))
    assert str(failed.value).startswith(f"--model {notes}: cannot load it (notes.pt ")
    assert "segcast-export-" not in str(failed.value) and "ERROR" not in str(failed.value)


@pytest.mark.parametrize(
    ("imgsz", "message"),
    [("-32", "expected pixels from 32 to 4096, got -32"), ("33", "expected a multiple of 32 pixels, got 33 (try 32)")],
)
def test_an_imgsz_serve_would_refuse_is_refused_before_exporting(
    imgsz: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["export", "--model", "bundled", "--format", "onnx", "--imgsz", imgsz, "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err == f"segcast: --imgsz {imgsz}: {message}\n"
    assert not any(tmp_path.iterdir())


def test_an_out_that_cannot_be_a_folder_is_refused_before_exporting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Said at once, not after a minute of exporting (the export would print its first step)."""
    taken = tmp_path / "models"
    taken.write_text("a file")
    for out, reason in ((taken, "a file, not a folder"), (taken / "sub", "Not a directory")):
        assert main(["export", "--model", "bundled", "--format", "triton", "--out", str(out)]) == 2
        assert capsys.readouterr().err == f"segcast: --out {out}: {reason}\n"


class _ExportedAtOnce:
    """Stands in for ultralytics' model: `export` gives a path at once, instead of after a minute."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self.overrides: dict[str, object] = {}

    def export(self, **options: object) -> str:
        return str(self._path)


def test_a_file_in_the_models_place_in_out_is_one_line_naming_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("server.inference.export._load_pt", lambda path, spec: _ExportedAtOnce(tmp_path / "m.onnx"))
    out = tmp_path / "models"
    out.mkdir()
    (out / BUNDLED_MODEL.stem).write_text("not a model's folder")
    assert main(["export", "--model", "bundled", "--format", "triton", "--out", str(out)]) == 2
    last = capsys.readouterr().err.splitlines()[-1]
    assert last == f"segcast: --out {out}: {out / BUNDLED_MODEL.stem}: Not a directory"


def test_a_model_segcast_cannot_serve_is_refused_before_exporting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A classify (or pose) .pt is refused with the server's own line, before a minute of exporting,
    and nothing is written to --out."""
    from ultralytics import YOLO

    monkeypatch.setattr("server.inference.export.missing_packages", lambda fmt: [])  # no runtime is reached
    classifier = tmp_path / "cls.pt"
    YOLO("yolov8n-cls.yaml").save(classifier)  # built from ultralytics' own config: no download
    with pytest.raises(ModelError) as served:
        load_model(str(classifier))
    out = tmp_path / "models"
    assert main(["export", "--model", str(classifier), "--format", "onnx", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1] == f"segcast: {served.value}"
    assert "[2/3] exporting" not in err
    assert not out.exists(), "the --out it made for the export is left behind, empty"


class _Loads:
    """Stands in for `load_model` in the check of an export: a model that runs, or one that does not load."""

    def __init__(self, works: bool) -> None:
        self.works = works
        self.loaded: list[str] = []

    def __call__(self, spec: str) -> _Loads:
        self.loaded.append(spec)
        if not self.works:
            raise ModelError(f"--model {spec}: cannot load it (truncated)")
        return self

    def predict(self, image: object, **options: object) -> list[object]:
        return []


def test_an_export_replaces_the_model_in_out_only_once_it_loads_and_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A re-export that fails its check must not cost a server the model it is using."""
    monkeypatch.setattr("server.inference.export.missing_packages", lambda fmt: [])
    made = tmp_path / "made" / output_name(BUNDLED_MODEL, "onnx")
    monkeypatch.setattr("server.inference.export._load_pt", lambda path, spec: _ExportedAtOnce(made))
    out = tmp_path / "models"
    out.mkdir()
    served = out / output_name(BUNDLED_MODEL, "onnx")
    served.write_bytes(b"the model being served")
    made.parent.mkdir()
    made.write_bytes(b"a broken export")
    broken = _Loads(works=False)
    with pytest.raises(ExportError) as failed:
        export_model("bundled", "onnx", out, progress=Progress(3, io.StringIO()), load=broken)
    assert [p.name for p in out.iterdir()] == [served.name] and served.read_bytes() == b"the model being served"
    assert broken.loaded and not broken.loaded[0].startswith(str(out)), "tried where it was made"
    # The scratch folder it was tried in is gone: the message names the model, not where it was.
    assert str(failed.value) == f"the exported model does not load: --model {served.name}: cannot load it (truncated)"

    made.write_bytes(b"a working export")
    result = export_model("bundled", "onnx", out, progress=Progress(3, io.StringIO()), load=_Loads(works=True))
    assert result.path == served and served.read_bytes() == b"a working export"


def test_a_copy_into_out_that_fails_leaves_the_served_model_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--out on another filesystem than the scratch folder makes the last move a copy: one that fails
    (a full disk) must not have deleted the model a server is using, nor leave half a copy behind."""
    monkeypatch.setattr("server.inference.export.missing_packages", lambda fmt: [])
    made = tmp_path / "made" / output_name(BUNDLED_MODEL, "onnx")
    made.parent.mkdir()
    made.write_bytes(b"a working export")
    monkeypatch.setattr("server.inference.export._load_pt", lambda path, spec: _ExportedAtOnce(made))
    out = tmp_path / "models"
    out.mkdir()
    served = out / output_name(BUNDLED_MODEL, "onnx")
    served.write_bytes(b"the model being served")
    (out / "other.onnx").write_bytes(b"another model")
    copyfile = shutil.copyfile

    def across_filesystems(src: str, dst: str, *args: object, **kwargs: object) -> NoReturn:
        raise OSError(errno.EXDEV, os.strerror(errno.EXDEV), src, None, dst)

    def full_disk(src: str | Path, dst: str | Path, **kwargs: Any) -> object:
        if Path(dst).parent == out:
            Path(dst).write_bytes(b"half a cop")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))
        return copyfile(src, dst, **kwargs)

    monkeypatch.setattr(os, "rename", across_filesystems)
    monkeypatch.setattr(shutil, "copyfile", full_disk)
    with pytest.raises(ExportError, match="No space left on device"):
        export_model("bundled", "onnx", out, progress=Progress(3, io.StringIO()), load=_Loads(works=True))
    assert sorted(p.name for p in out.iterdir()) == ["other.onnx", served.name]
    assert served.read_bytes() == b"the model being served"


def test_a_new_model_folder_that_cannot_be_renamed_in_puts_the_old_one_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The old folder is renamed aside before the new one goes in: a rename in that fails (a full disk)
    must leave the served model where it was, not aside under a hidden name a server never loads."""
    monkeypatch.setattr("server.inference.export.missing_packages", lambda fmt: [])
    made = tmp_path / "made" / output_name(BUNDLED_MODEL, "openvino")
    made.mkdir(parents=True)
    (made / "model.xml").write_text("the new model")
    monkeypatch.setattr("server.inference.export._load_pt", lambda path, spec: _ExportedAtOnce(made))
    out = tmp_path / "models"
    served = out / made.name
    served.mkdir(parents=True)
    (served / "model.xml").write_text("the model being served")
    rename = os.rename

    def full_disk_for_the_new_copy(src: str | Path, dst: str | Path) -> None:
        if Path(src).name.endswith(".new"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(src))
        rename(src, dst)

    monkeypatch.setattr(os, "rename", full_disk_for_the_new_copy)
    with pytest.raises(ExportError, match="No space left on device"):
        export_model("bundled", "openvino", out, progress=Progress(3, io.StringIO()), load=_Loads(works=True))
    assert [p.name for p in out.iterdir()] == [served.name], "neither the .old nor the .new copy is left"
    assert (served / "model.xml").read_text() == "the model being served"


def test_an_export_keeps_folders_it_did_not_make_and_lands_if_another_export_removed_its_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two exports into one new --out (onnx and openvino side by side): the one that fails removes the
    empty folder it made while the other is still exporting, which must still put its model there.
    A path that cannot be made at all leaves none of the parents it made either."""
    monkeypatch.setattr("server.inference.export.missing_packages", lambda fmt: [])
    out = tmp_path / "new" / "models"
    made = tmp_path / "made" / output_name(BUNDLED_MODEL, "onnx")
    made.parent.mkdir()
    made.write_bytes(b"a working export")

    def exported_while_the_other_export_fails(path: Path, spec: str) -> _ExportedAtOnce:
        shutil.rmtree(tmp_path / "new")  # the other export made it first, then failed and removed it
        return _ExportedAtOnce(made)

    monkeypatch.setattr("server.inference.export._load_pt", exported_while_the_other_export_fails)
    result = export_model("bundled", "onnx", out, progress=Progress(3, io.StringIO()), load=_Loads(works=True))
    assert result.path.read_bytes() == b"a working export"

    too_long = tmp_path / "fresh" / "deeper" / ("x" * 300)
    with pytest.raises(ExportError, match="--out"):
        export_model("bundled", "onnx", too_long, progress=Progress(3, io.StringIO()), load=_Loads(works=True))
    assert not (tmp_path / "fresh").exists(), "the parents it made for a --out it could not make are left behind"


def _pixel_input_onnx(path: Path) -> Path:
    """A tiny ONNX model with the metadata of an ultralytics segmentation export (an identity network)."""
    import onnx
    from onnx import TensorProto, helper

    images = helper.make_tensor_value_info("images", TensorProto.FLOAT, ["b", 3, "h", "w"])
    out = helper.make_tensor_value_info("out", TensorProto.FLOAT, ["b", 3, "h", "w"])
    graph = helper.make_graph([helper.make_node("Identity", ["images"], ["out"])], "g", [images], [out])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    for key, value in {"names": "{0: 'a'}", "task": "segment", "stride": "32", "imgsz": "[320, 320]"}.items():
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value
    onnx.save(model, path)
    return path


def test_a_triton_export_replaces_only_its_model_in_the_repository_and_only_once_it_checks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Triton server may be serving the repository's models: a failed check leaves every one as it
    was, and a good export replaces its own model's folder whole and leaves the others alone."""
    require_component(not missing_packages("triton"), "needs the onnx extra: pip install '.[onnx]'")
    monkeypatch.setattr("server.inference.export.missing_packages", lambda fmt: [])
    made = _pixel_input_onnx(tmp_path / "m.onnx")
    monkeypatch.setattr("server.inference.export._load_pt", lambda path, spec: _ExportedAtOnce(made))
    out = tmp_path / "repository"
    name = output_name(BUNDLED_MODEL, "triton")
    for model in ("other", name):
        (out / model / "1").mkdir(parents=True)
        (out / model / "1" / "model.onnx").write_bytes(f"old {model}".encode())
        (out / model / "config.pbtxt").write_text(f"old {model}")

    def contents() -> dict[str, bytes]:
        return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}

    before = contents()

    def differs(*args: object) -> None:
        raise ValueError("output 0 differs")

    with monkeypatch.context() as check:
        check.setattr("server.inference.export.check_pixel_input_model", differs)
        with pytest.raises(ExportError, match="does not match the export: output 0 differs"):
            export_model("bundled", "triton", out, progress=Progress(3, io.StringIO()))
    assert contents() == before and sorted(p.name for p in out.iterdir()) == sorted(["other", name])

    # The repository on another filesystem than the scratch folder, and the disk full partway through the copy.
    copyfile = shutil.copyfile

    def across_filesystems(src: str, dst: str, *args: object, **kwargs: object) -> NoReturn:
        raise OSError(errno.EXDEV, os.strerror(errno.EXDEV), src, None, dst)

    def full_disk(src: str | Path, dst: str | Path, **kwargs: Any) -> object:
        if Path(dst).name == "model.onnx":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))
        return copyfile(src, dst, **kwargs)

    with monkeypatch.context() as disk:
        disk.setattr(os, "rename", across_filesystems)
        disk.setattr(shutil, "copyfile", full_disk)
        with pytest.raises(ExportError, match="No space left on device"):
            export_model("bundled", "triton", out, progress=Progress(3, io.StringIO()))
    assert contents() == before and sorted(p.name for p in out.iterdir()) == sorted(["other", name])

    result = export_model("bundled", "triton", out, progress=Progress(3, io.StringIO()))
    assert result.path == out / name and sorted(p.name for p in out.iterdir()) == sorted(["other", name])
    after = contents()
    assert {key: value for key, value in after.items() if key.startswith("other")} == {
        key: value for key, value in before.items() if key.startswith("other")
    }
    assert f'name: "{name}"' in after[f"{name}/config.pbtxt"].decode()
    assert after[f"{name}/1/model.onnx"] != before[f"{name}/1/model.onnx"]


def test_serving_an_export_without_its_runtime_says_how_to_install_it_from_the_checkout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real_find_spec(name, *a)
    )
    (tmp_path / "yard.onnx").write_bytes(b"")
    with pytest.raises(ModelError, match=r"needs onnxruntime; install it with pip install '\.\[onnx\]' in segcast"):
        load_model(str(tmp_path / "yard.onnx"))


@pytest.mark.parametrize("fmt", ["onnx", "openvino"])
def test_an_export_finds_and_outlines_what_the_pt_does(
    fmt: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    require_component(not missing_packages(fmt), f"needs the {fmt} extra: pip install '.[{fmt}]'")
    assert main(["export", "--model", "bundled", "--format", fmt, "--out", str(tmp_path)]) == 0
    exported = tmp_path / output_name(BUNDLED_MODEL, fmt)
    assert exported.exists()
    assert "[3/3]" in capsys.readouterr().err  # the progress display got to the end

    pt_model, exported_model = load_model("bundled"), load_model(str(exported))
    compared = 0
    for index in (90, 150, 240):  # the server's fast mask path on both, as the worker runs it
        image = Scene(seed=3).render(index)[0]
        [pt] = detect(pt_model, [image], verbose=False)
        [served] = detect(exported_model, [image], verbose=False)
        assert len(served) == len(pt)
        # OpenVINO may run in reduced precision on CPUs that support it: boxes agree, not to the last bit.
        for box, expected_box in zip(served.boxes[:, :4], pt.boxes[:, :4], strict=True):
            assert box_iou(tuple(box), tuple(expected_box)) > 0.9, (box, expected_box)
        assert served.class_ids.tolist() == pt.class_ids.tolist()
        for i in range(len(pt)):
            expected, outline = pt.outline(i), served.outline(i)
            assert expected is not None and outline is not None
            shape = image.shape[:2]
            assert mask_iou(polygon_mask(outline, shape), polygon_mask(expected, shape)) > 0.9
            compared += 1
    assert compared >= 3


def test_export_progress_is_one_line_per_step_in_a_log() -> None:
    log = io.StringIO()  # not a terminal, like a CI log or a file
    progress = Progress(2, log)
    with progress.step("loading x.pt"):
        pass
    with progress.step("exporting to onnx"):
        pass
    lines = log.getvalue().splitlines()
    assert len(lines) == 2 and "\r" not in log.getvalue()
    assert re.fullmatch(r"segcast export \[1/2\] loading x\.pt \.\.\. \d+\.\d s", lines[0])
    assert re.fullmatch(r"segcast export \[2/2\] exporting to onnx \.\.\. \d+\.\d s", lines[1])


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_component(not missing_packages("onnx"), "needs the onnx extra: pip install '.[onnx]'")
    out = tmp_path_factory.mktemp("onnx")
    return export_model("bundled", "onnx", out, progress=Progress(3, io.StringIO())).path


class _RuntimeLoads(logging.Handler):
    """Counts ultralytics' 'Loading <model> for ONNX Runtime inference' lines: one per runtime set up."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += "for ONNX Runtime inference" in record.getMessage()


def test_a_served_export_opens_its_runtime_once_for_its_classes_and_its_frames(onnx_model: Path) -> None:
    ultralytics_log = logging.getLogger("ultralytics")
    loads, level = _RuntimeLoads(), ultralytics_log.level
    ultralytics_log.addHandler(loads)
    ultralytics_log.setLevel(logging.INFO)
    results: queue.Queue[FrameResult] = queue.Queue()
    worker = InferenceWorker(str(onnx_model), results.put, InferenceOptions())
    try:
        worker.start()
        for _ in range(3):  # as adding three streams does
            worker.check_options(StreamOptions.from_mapping({"classes": ["disc"]}))
        slot = worker.add_stream("cam", 15.0)
        slot.put(Frame("cam", 1, time.time(), 0.0, Scene(seed=1).render(10)[0]))
        assert results.get(timeout=60).frame.stream_id == "cam"
    finally:
        worker.stop()
        ultralytics_log.removeHandler(loads)
        ultralytics_log.setLevel(level)
    assert loads.count == 1, "once: the predictor set up for its class names is the one that runs it"


def test_serving_an_export_says_once_that_it_loaded(onnx_model: Path) -> None:
    server = SegcastProcess("--model", str(onnx_model), "--source", "scene:", "--log-level", "INFO")
    server.start()
    try:
        server.wait_for_processed_frames(2)  # the predictor that runs it is set up by then
    finally:
        _, _, output = server.terminate()
    assert output.count(f"loaded model {onnx_model}") == 1, output
    assert "ONNX Runtime inference" not in output, "ultralytics' own loading lines are not repeated to the user"
