"""``segcast export``: the exported model is served like the .pt, with the same detections.

Exporting needs the optional runtimes (``pip install 'segcast[onnx]'``); CI installs only ``.[test]``,
so the tests that export skip there and only the refusal without them runs everywhere.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from server.cli import main
from server.export import ExportError, export_model, missing_packages
from server.models import BUNDLED_MODEL, load_model
from server.scene import Scene

HAVE_ONNX = not missing_packages("onnx")


def test_unknown_format_names_the_flag(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="--format"):
        export_model("bundled", "tflite", tmp_path)


def test_a_missing_runtime_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "openvino" else real_find_spec(name, *a)
    )
    with pytest.raises(ExportError, match=r"segcast\[openvino\]"):
        export_model("bundled", "openvino", tmp_path)
    assert not any(tmp_path.iterdir())


@pytest.mark.skipif(not HAVE_ONNX, reason="needs the onnx extra: pip install '.[onnx]' (CI installs only .[test])")
def test_onnx_export_finds_what_the_pt_finds(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", "--model", "bundled", "--format", "onnx", "--out", str(tmp_path)]) == 0
    exported = tmp_path / f"{BUNDLED_MODEL.stem}.onnx"
    assert exported.is_file()
    assert "[3/3]" in capsys.readouterr().err  # the progress display got to the end

    image = Scene(seed=3).render(90)[0]
    pt = load_model("bundled").predict(image, verbose=False)[0]
    onnx = load_model(str(exported)).predict(image, verbose=False)[0]
    assert onnx.masks is not None or len(onnx.boxes) == 0
    assert len(onnx.boxes) == len(pt.boxes)
    np.testing.assert_allclose(onnx.boxes.xyxy.numpy(), pt.boxes.xyxy.numpy(), atol=2.0)
