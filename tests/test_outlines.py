"""The fast mask path (server/inference/outlines.py) against ultralytics' own: same masks, outlines, detections, tracks.

Random prototypes make speckled masks with many edges and holes, which is where an off-by-one in the
window, the bilinear alignment or the crop would show; the bundled model on a busy scene checks the
whole predictor end to end.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from ultralytics.utils import ops

from server.inference.detections import detect
from server.inference.models import load_model
from server.inference.outlines import BoxMasks
from server.options import StreamOptions
from server.scene import Scene
from tests.support.truth import mask_iou, polygon_mask
from tools.track_report import track_scene

CHANNELS = 32
#: Where the two paths' float32 arithmetic may round a logit to the other side of 0.
LOGIT_TIE = 1e-4


def random_case(seed: int, input_shape: tuple[int, int], count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Prototypes, coefficients and boxes as a model's head could give them, boxes often fractional,
    tiny, or over the input's edge."""
    rng = np.random.default_rng(seed)
    height, width = input_shape
    protos = rng.normal(size=(CHANNELS, height // 4, width // 4)).astype(np.float32)
    coefficients = rng.normal(size=(count, CHANNELS)).astype(np.float32)
    x1 = rng.uniform(-20, width, count)
    y1 = rng.uniform(-20, height, count)
    boxes = np.stack([x1, y1, x1 + rng.uniform(0, width / 2, count), y1 + rng.uniform(0, height / 2, count)], 1)
    boxes[: count // 4, 2:] = boxes[: count // 4, :2] + rng.uniform(0, 3, (count // 4, 2))  # a pixel or two
    return protos, coefficients, boxes.astype(np.float32)


def ultralytics_masks(protos: np.ndarray, coefficients: np.ndarray, boxes: np.ndarray, shape: tuple[int, int]) -> Any:
    """ultralytics' whole-input masks, and the logits they were thresholded from (for ties)."""
    proto_t, coeff_t, boxes_t = (torch.from_numpy(a) for a in (protos, coefficients, boxes))
    masks = ops.process_mask(proto_t, coeff_t, boxes_t, shape, upsample=True).numpy()
    small = (coeff_t @ proto_t.view(CHANNELS, -1)).view(-1, *proto_t.shape[1:])
    return masks, F.interpolate(small[None], shape, mode="bilinear")[0].numpy()


@pytest.mark.parametrize(("input_shape", "seed"), [((384, 640), 0), ((640, 640), 1), ((192, 320), 2)])
def test_box_masks_equal_ultralytics_masks_pixel_for_pixel(input_shape: tuple[int, int], seed: int) -> None:
    protos, coefficients, boxes = random_case(seed, input_shape, 40)
    expected, logits = ultralytics_masks(protos, coefficients, boxes, input_shape)
    masks = BoxMasks(protos, coefficients, boxes, input_shape, input_shape)
    for index in range(len(boxes)):
        differ = masks.mask(index) != expected[index]
        assert np.all(np.abs(logits[index][differ]) < LOGIT_TIE), f"mask {index} differs at {np.argwhere(differ)[:5]}"
    assert masks.nonempty.tolist() == (expected.max(axis=(1, 2)) > 0).tolist()
    assert not masks.nonempty.all() and masks.nonempty.any()  # both kinds were exercised


@pytest.mark.parametrize("frame_shape", [(720, 1280), (384, 640), (1080, 1920)])
def test_box_mask_outlines_equal_masks_xy(frame_shape: tuple[int, int]) -> None:
    input_shape = (384, 640)
    protos, coefficients, boxes = random_case(3, input_shape, 30)
    expected, _ = ultralytics_masks(protos, coefficients, boxes, input_shape)
    masks = BoxMasks(protos, coefficients, boxes, input_shape, frame_shape)
    compared = in_pieces = 0
    for index, segment in enumerate(ops.masks2segments(expected)):
        if not np.array_equal(masks.mask(index), expected[index]):
            continue  # a float tie flipped a pixel (the test above bounds those); the outline may differ
        expected_outline = ops.scale_coords(input_shape, segment, frame_shape)
        np.testing.assert_array_equal(masks.outline(index), expected_outline)
        compared += 1
        in_pieces += len(cv2.findContours(expected[index], cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)[0]) > 1
    assert compared >= 25 and in_pieces > 0  # speckled masks: outlines joined from several pieces were compared


def assert_same_outline(outline: np.ndarray | None, expected: np.ndarray | None, shape: tuple[int, ...]) -> None:
    """The same points; or, where float rounding flipped a pixel on the threshold, the same area."""
    assert outline is not None and expected is not None
    if outline.shape == expected.shape and np.allclose(outline, expected, atol=1e-3):
        return
    height, width = shape[:2]
    iou = mask_iou(polygon_mask(outline, (height, width)), polygon_mask(expected, (height, width)))
    assert iou > 0.98, f"outlines differ beyond a rounding tie (IoU {iou:.3f})"


@pytest.fixture(scope="module")
def busy_scene_frames() -> list[np.ndarray]:
    """A 720p scene with many objects: overlaps, edges, and a dozen detections a frame."""
    scene = Scene(seed=11, width=1280, height=720, objects_per_period=40)
    return list(scene.frames(12, start=120))


@pytest.mark.parametrize("imgsz", [320, 640])
def test_model_gives_the_same_detections_and_outlines_on_both_paths(
    busy_scene_frames: list[np.ndarray], imgsz: int
) -> None:
    fast_model, plain_model = load_model("bundled"), load_model("bundled")  # one predictor class per model
    detections_seen = 0
    for image in busy_scene_frames:
        [fast] = detect(fast_model, [image], imgsz=imgsz, verbose=False)
        [plain] = detect(plain_model, [image], fast_masks=False, imgsz=imgsz, verbose=False)
        np.testing.assert_allclose(fast.boxes, plain.boxes, atol=1e-3)
        for index in range(len(plain)):
            assert_same_outline(fast.outline(index), plain.outline(index), image.shape[:2])
        detections_seen += len(plain)
    assert detections_seen >= 5 * len(busy_scene_frames)


def test_batched_frames_of_different_shapes_get_their_own_outlines(busy_scene_frames: list[np.ndarray]) -> None:
    """A batch is letterboxed to one input shape: each frame's outlines must still land on that frame."""
    fast_model, plain_model = load_model("bundled"), load_model("bundled")
    images = [busy_scene_frames[0], busy_scene_frames[1][:, :900].copy()]  # 16:9 and a narrower crop
    for image, fast, plain in zip(
        images,
        detect(fast_model, images, imgsz=640, verbose=False),
        detect(plain_model, images, fast_masks=False, imgsz=640, verbose=False),
        strict=True,
    ):
        assert len(plain) > 0
        np.testing.assert_allclose(fast.boxes, plain.boxes, atol=1e-3)
        for index in range(len(plain)):
            assert_same_outline(fast.outline(index), plain.outline(index), image.shape[:2])


def test_one_model_can_switch_paths_and_is_quiet_unless_asked(busy_scene_frames: list[np.ndarray]) -> None:
    """ultralytics keeps the last call's predictor class: a plain call after a fast one must still be plain."""
    model, reference = load_model("bundled"), load_model("bundled")
    image = busy_scene_frames[0]
    [fast] = detect(model, [image], imgsz=640)  # no verbose=False: ultralytics would write results out
    [plain] = detect(model, [image], fast_masks=False, imgsz=640)
    [expected] = detect(reference, [image], fast_masks=False, imgsz=640)
    assert len(expected) > 0 and len(fast) == len(plain) == len(expected)
    np.testing.assert_allclose(plain.boxes, expected.boxes, atol=1e-3)
    for index in range(len(expected)):
        assert_same_outline(plain.outline(index), expected.outline(index), image.shape[:2])


@pytest.mark.slow
def test_tracking_quality_is_the_same_on_both_paths() -> None:
    """Issue 7: the fast path may not cost tracking quality (IDF1 within 0.01 of the plain path)."""
    scene, options = Scene(seed=7), StreamOptions()
    fast = track_scene(load_model("bundled"), scene, 150, options)
    plain = track_scene(load_model("bundled"), scene, 150, options, fast_masks=False)
    assert fast.idf1 == pytest.approx(plain.idf1, abs=0.01)
    assert fast.switches == plain.switches
    assert fast.idf1 > 0.8  # the scene is tracked at all
