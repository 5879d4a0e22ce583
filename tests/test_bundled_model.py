"""The model shipped for the demo and tests finds the scene's objects, with the right class and mask."""

from __future__ import annotations

import numpy as np
import pytest
from ultralytics import YOLO

from server.inference.models import load_model
from server.scene import Scene
from tests.support.truth import mask_iou, polygon_mask
from tools.track_report import is_apart, match_boxes

UNSEEN_SEED = 4242  # in no split of tools/train_model.py


@pytest.fixture(scope="module")
def model() -> YOLO:
    return load_model("bundled")


def test_finds_every_clear_object_with_its_class_and_a_tight_mask(model: YOLO) -> None:
    scene = Scene(seed=UNSEEN_SEED)
    checked, ious = 0, []
    for index in range(40, 440, 8):
        image, truths = scene.render(index)
        result = model.predict(image, verbose=False)[0]
        boxes = result.boxes.xyxy.numpy().tolist()
        classes = result.boxes.cls.numpy().astype(int).tolist()
        outlines = result.masks.xy if result.masks is not None else []
        pairs = dict(match_boxes(truths, boxes))
        for i, truth in enumerate(truths):
            if not is_apart(truth, truths, scene.width, scene.height):
                continue
            checked += 1
            assert i in pairs, f"frame {index}: object {truth.object_id} ({truth.class_name}) not found"
            j = pairs[i]
            assert classes[j] == truth.class_id, f"frame {index}: object {truth.object_id} has the wrong class"
            iou = mask_iou(polygon_mask(outlines[j], image.shape[:2]), truth.mask)
            assert iou >= 0.8, f"frame {index}: object {truth.object_id} mask IoU {iou:.2f}"
            ious.append(iou)
    assert checked >= 40, "the scene must show enough clear objects to judge the model"
    assert float(np.mean(ious)) >= 0.85


def test_no_detections_on_the_empty_background(model: YOLO) -> None:
    image, truths = Scene(seed=UNSEEN_SEED).render(0)
    assert truths == []
    assert len(model.predict(image, verbose=False)[0].boxes) == 0
