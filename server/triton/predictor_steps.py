"""The steps of ultralytics' predictor for an exported model that stay on the node when Triton runs the network.

Only the network runs on the server. Letterboxing a batch before its request, and NMS and mask
outlines after the answer, are done here as ultralytics' predictor does them for an exported model,
so a frame gets the same detections from Triton as from the same weights run in-process
(tests/test_triton.py compares them). `server.triton.model` calls them around each request.
"""

from __future__ import annotations

import numpy as np

from server.inference.detections import Detections
from server.inference.models import ModelError
from server.triton.served_model import ServedModel, rows_problem


def letterbox(served: ServedModel, images: list[np.ndarray], imgsz: int | None) -> tuple[np.ndarray, tuple[int, int]]:
    """The batch as ultralytics' predictor makes it for an exported model: letterboxed, RGB, CHW, and
    scaled to 0-1 unless the model takes uint8 pixels (as segcast's exports do) and scales them itself.
    A fixed-shape model's frames are letterboxed to its shape, whatever ``imgsz``; None: the served
    model's own size. Returns the batch and its input shape (height, width)."""
    from ultralytics.data.augment import LetterBox
    from ultralytics.utils.checks import check_imgsz

    if served.fixed_shape is not None:
        boxer = LetterBox(served.fixed_shape, auto=False, stride=served.stride)
    else:
        size = check_imgsz(imgsz or served.imgsz, stride=served.stride, min_dim=2)
        boxer = LetterBox(tuple(size), auto=len({image.shape for image in images}) == 1, stride=served.stride)
    boxed = np.stack([np.asarray(boxer(image=image)) for image in images])
    pixels = np.ascontiguousarray(boxed[..., ::-1].transpose(0, 3, 1, 2))
    input_shape = (int(pixels.shape[2]), int(pixels.shape[3]))
    if served.input_dtype == np.uint8:
        return pixels, input_shape
    return (pixels.astype(np.float32) / 255).astype(served.input_dtype, copy=False), input_shape


def postprocess(
    served: ServedModel,
    outputs: list[np.ndarray],
    input_shape: tuple[int, int],
    frame_shapes: list[tuple[int, ...]],
    conf: float,
    iou: float,
    agnostic: bool,
    max_det: int,
) -> list[Detections]:
    """NMS as ultralytics runs it for an exported model, then segcast's outlines from the prototypes.

    `ModelError` if the outputs are not of the shapes the model's description promises, one per
    image (an answer that is not this model's), or if the output does not have a row per class the
    metadata names (checked at start when the config gives the sizes): class ids beyond the names,
    or coefficients taken for classes."""
    import torch
    from ultralytics.utils import nms, ops

    from server.inference.outlines import segment_detections

    _check_shapes(served, outputs, len(frame_shapes))
    head = outputs[0]
    if not served.end2end:
        mask_channels = outputs[1].shape[1] if served.task == "segment" else 0
        problem = rows_problem(head.shape[1], len(served.names), mask_channels)
        if problem:
            raise ModelError(f"the served model's {served.outputs[0]} {problem}")
    kept = nms.non_max_suppression(
        torch.from_numpy(np.array(head, np.float32)),  # a copy: the client's answer is read-only
        conf,
        iou,
        None,
        agnostic,
        max_det=max_det,
        nc=len(served.names),
        end2end=served.end2end,
    )
    results: list[Detections] = []
    for index, (pred, frame_shape) in enumerate(zip(kept, frame_shapes, strict=True)):
        pred_np = pred.float().numpy()
        shape = (int(frame_shape[0]), int(frame_shape[1]))
        if served.task == "segment":
            results.append(segment_detections(pred_np, outputs[1][index].astype(np.float32), input_shape, shape))
        elif len(pred_np) == 0:
            results.append(Detections.empty())
        else:
            boxes = pred_np[:, :6].copy()
            boxes[:, :4] = ops.scale_boxes(input_shape, boxes[:, :4], shape)
            results.append(Detections(boxes))
    return results


def _check_shapes(served: ServedModel, outputs: list[np.ndarray], images: int) -> None:
    """`ModelError` unless the outputs are a head of [images, rows, boxes] and, for a segment model,
    prototypes of [images, channels, height, width]: what NMS and the outlines index into."""
    dimensions = (3, 4) if served.task == "segment" else (3,)
    if len(outputs) != len(dimensions):
        raise ModelError(f"the served model answered with {len(outputs)} outputs, {len(dimensions)} expected")
    for name, output, wanted in zip(served.outputs, outputs, dimensions, strict=True):
        if output.ndim != wanted or len(output) != images:
            raise ModelError(
                f"the served model's {name} has shape {list(output.shape)} for {images} image"
                f"{'' if images == 1 else 's'}: expected {wanted} dimensions, the first {images}"
            )
