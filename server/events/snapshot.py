"""The history's snapshot of an event: cut from its frame on the loop, encoded in the writer thread.

A queued event must not keep its frame: a full-size decoded image is megabytes, and a queue holds
a thousand events. So the part the snapshot shows is copied out of the frame when the event is
handed over (slicing and one copy of that part: no scaling or encoding on the loop), thinned to at
most `SNAPSHOT_MAX_PX` pixels, and only that copy waits in the history's queue (whose pictures
together have a byte budget of their own: see `server.events.history`). The writer thread scales
and encodes it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from server.frames import FrameResult

SNAPSHOT_QUALITY = 80
SNAPSHOT_MARGIN = 0.15  # of the box's size on each side
SNAPSHOT_MAX_WIDTH_PX = 640  # for an event without a box: the whole frame, scaled down
#: The most pixels a queued picture keeps (those of a 720p image, 2.7 MB): an object's box with its
#: margin is kept at the frame's resolution up to this, and thinned by area past it, so a big object
#: near a 4K camera, or a tall one, costs no more than an ordinary one near a 720p camera.
SNAPSHOT_MAX_PX = 1280 * 720


@dataclass(frozen=True, slots=True, eq=False)  # pixels: compared by identity
class Picture:
    """The pixels of an event's snapshot, copied out of its frame: at most `SNAPSHOT_MAX_PX` of them.

    ``whole_frame``: the event has no object in the frame, so its snapshot is the frame scaled down
    to at most `SNAPSHOT_MAX_WIDTH_PX` wide; ``pixels`` is then every n-th pixel of it, less than
    twice that wide (and no narrower unless the frame is, or is so tall that `SNAPSHOT_MAX_PX`
    thins it more), so a queued event costs about a 640 px image and the writer still scales it
    smoothly. Otherwise
    ``pixels`` is the object's box with a margin, at the frame's resolution, or every n-th pixel of
    it when that would be more than `SNAPSHOT_MAX_PX`.
    """

    pixels: np.ndarray
    whole_frame: bool = False


def picture_of(data: Mapping[str, Any], result: FrameResult) -> Picture:
    """What the snapshot of event ``data`` shows: its object's box with a margin, in the frame of ``result``.

    The box is the event's own (track events carry one) or that of the track with the event's id in
    the frame (analytics events); without either, the whole frame. Called on the loop for each event.
    """
    image = result.frame.image
    height, width = image.shape[:2]
    box = _box_of(data, result)
    if box is not None and all(math.isfinite(v) for v in box):
        x1, y1, x2, y2 = box
        mx, my = (x2 - x1) * SNAPSHOT_MARGIN, (y2 - y1) * SNAPSHOT_MARGIN
        left, top = max(0, int(x1 - mx)), max(0, int(y1 - my))
        right, bottom = min(width, int(x2 + mx) + 1), min(height, int(y2 + my) + 1)
        if right - left >= 2 and bottom - top >= 2:
            step = _thinning(right - left, bottom - top)
            return Picture(image[top:bottom:step, left:right:step].copy())
    # No wider than needed: less than twice the stored width, unless the frame is tall.
    step = max(width // SNAPSHOT_MAX_WIDTH_PX, _thinning(width, height))
    return Picture(image[::step, ::step].copy(), whole_frame=True)


def _thinning(width: int, height: int) -> int:
    """The n of every n-th pixel, each way, that keeps a ``width`` x ``height`` picture within `SNAPSHOT_MAX_PX`."""
    step = 1
    while -(-width // step) * -(-height // step) > SNAPSHOT_MAX_PX:  # what slicing by step keeps, rounded up
        step += 1
    return step


def snapshot_jpeg(picture: Picture) -> bytes:
    """The JPEG stored with an event. Raises ValueError (or cv2.error) if it cannot be encoded."""
    image = picture.pixels
    height, width = image.shape[:2]
    if picture.whole_frame and width > SNAPSHOT_MAX_WIDTH_PX:
        size = (SNAPSHOT_MAX_WIDTH_PX, max(1, round(height * SNAPSHOT_MAX_WIDTH_PX / width)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    ok, buffer = cv2.imencode(".jpg", np.ascontiguousarray(image), [cv2.IMWRITE_JPEG_QUALITY, SNAPSHOT_QUALITY])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buffer.tobytes()


def _box_of(data: Mapping[str, Any], result: FrameResult) -> tuple[float, float, float, float] | None:
    box = data.get("box")
    if isinstance(box, list | tuple) and len(box) == 4 and all(isinstance(v, int | float) for v in box):
        return (float(box[0]), float(box[1]), float(box[2]), float(box[3]))
    track_id = data.get("id")
    for track in result.tracks:
        if track.track_id == track_id:
            return track.box
    return None
