"""``segcast export``: the exported model is served like the .pt, with the same detections and outlines.

Exporting needs the optional runtimes (``pip install 'segcast[onnx,openvino]'``); the test extra
installs both, so CI runs the round trips. Without them those tests skip (and fail in CI: see
tests/support/components.py), and the refusal that names the extra runs everywhere.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from server.cli import main
from server.detections import detect
from server.export import ExportError, export_model, missing_packages, output_name
from server.models import BUNDLED_MODEL, load_model
from server.scene import Scene
from tests.support.components import require_component
from tests.support.truth import box_iou, mask_iou, polygon_mask


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
