"""The history's snapshot of an event: cut from its frame on the loop, encoded in the writer thread.

A queued event must not keep its frame: a full-size decoded image is megabytes, and a queue holds
a thousand events. So the part the snapshot shows is copied out of the frame when the event is
handed over (slicing and one copy of that part: no scaling or encoding on the loop), thinned to at
most `SNAPSHOT_MAX_PX` pixels, and only that copy waits in the history's queue (whose pictures
together have a byte budget of their own: see `server.events.history.writer`). The writer thread scales
and encodes it.

An event can be decided on a frame its object is not in: a track ends the tracker's lost-track
buffer (seconds) after it was last seen, and its zone exits and line crossings settle then. For
those `LastSeen` keeps, per stream, the crop of each track from the last published frame it was
in, until it ends.

MQTT publishes the same picture of a zone's or line's event (`server.events.mqtt.snapshots`), encoded in a
thread of its own and scaled down to its size limit where it is over (`snapshot_jpeg_within`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
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
#: The most pixels `LastSeen` keeps of a track (those of a 640x360 image, 0.7 MB): they are copied
#: for every track of every frame, on the loop, so a big object's end is shown at a lower resolution
#: rather than the loop copying megabytes per frame.
LAST_SEEN_MAX_PX = 640 * 360
#: The most bytes of crops one stream keeps (`LastSeen`): a hundred tracks at `LAST_SEEN_MAX_PX`.
LAST_SEEN_MAX_BYTES = 100 * LAST_SEEN_MAX_PX * 3
#: The shortest side a snapshot scaled down to fit a size limit may have (`snapshot_jpeg_within`): smaller,
#: it shows nothing anyone could recognise.
SNAPSHOT_MIN_SIDE_PX = 16


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
    box = _box_of(data, result)
    crop = _crop(image, box) if box is not None else None
    if crop is not None:
        return crop
    height, width = image.shape[:2]
    # No wider than needed: less than twice the stored width, unless the frame is tall.
    step = max(width // SNAPSHOT_MAX_WIDTH_PX, _thinning(width, height))
    return Picture(image[::step, ::step].copy(), whole_frame=True)


def _crop(image: np.ndarray, box: tuple[float, float, float, float], max_px: int = SNAPSHOT_MAX_PX) -> Picture | None:
    """``box`` with its margin, copied out of ``image`` (every n-th pixel past ``max_px``); None if no box in it."""
    if not all(math.isfinite(v) for v in box):
        return None
    height, width = image.shape[:2]
    x1, y1, x2, y2 = box
    mx, my = (x2 - x1) * SNAPSHOT_MARGIN, (y2 - y1) * SNAPSHOT_MARGIN
    left, top = max(0, int(x1 - mx)), max(0, int(y1 - my))
    right, bottom = min(width, int(x2 + mx) + 1), min(height, int(y2 + my) + 1)
    if right - left < 2 or bottom - top < 2:
        return None
    step = _thinning(right - left, bottom - top, max_px)
    return Picture(image[top:bottom:step, left:right:step].copy())


class LastSeen:
    """One stream's tracks as last seen, for the snapshots of events decided on a frame they are not in.

    Fed every published frame of its stream, in order, on the loop (`seen`). A track's crop is copied
    out of the frame it was last in only once it is missing from the next (one slice copy, at most
    `LAST_SEEN_MAX_PX`): copying every track out of every frame cost the loop 1.7 ms a 1080p frame
    with 20 tracks, where a frame loses a track or two at most. So the stream's previous frame is
    kept until the next is seen, one frame more than the hub keeps; no older frame is kept alive.
    A track that ends lets its crop go once that frame's events are out (`ended`); a tracker's
    reset ends every track too. `LAST_SEEN_MAX_BYTES` bounds a stream's crops whatever happens:
    past it, the tracks missing longest go first, and their events fall back to `picture_of`.
    """

    def __init__(self) -> None:
        self._crops: dict[int, Picture] = {}  # by track id, the longest unseen first
        self._bytes = 0
        self._previous: FrameResult | None = None

    def seen(self, result: FrameResult) -> None:
        """``result`` is the stream's next published frame: its tracks are last seen there, and the
        previous frame's tracks missing from it were last seen in that one."""
        here = {track.track_id for track in result.tracks}
        for track_id in here:  # a crop of an earlier absence is of an older picture
            self._drop(track_id)
        previous, self._previous = self._previous, result
        if previous is None:
            return
        for track in previous.tracks:
            if track.track_id not in here:
                crop = _crop(previous.frame.image, track.box, LAST_SEEN_MAX_PX)
                if crop is not None:
                    self._crops[track.track_id] = crop
                    self._bytes += crop.pixels.nbytes
        while self._bytes > LAST_SEEN_MAX_BYTES and self._crops:
            self._drop(next(iter(self._crops)))

    def picture_of(self, data: Mapping[str, Any], result: FrameResult) -> Picture:
        """Event ``data``'s snapshot: as `picture_of` in ``result`` when its track is in it (or it has
        none), else the crop of where the track was last seen, if kept."""
        track_id = data.get("id")
        in_frame = any(track.track_id == track_id for track in result.tracks)
        kept = None if in_frame or not isinstance(track_id, int) else self._crops.get(track_id)
        return kept if kept is not None else picture_of(data, result)

    def ended(self, track_ids: Iterable[int]) -> None:
        """These tracks ended and their events are out: their crops are of no more use."""
        for track_id in track_ids:
            self._drop(track_id)

    def _drop(self, track_id: int) -> None:
        crop = self._crops.pop(track_id, None)
        if crop is not None:
            self._bytes -= crop.pixels.nbytes


def _thinning(width: int, height: int, max_px: int = SNAPSHOT_MAX_PX) -> int:
    """The n of every n-th pixel, each way, that keeps a ``width`` x ``height`` picture within ``max_px``."""
    step = 1
    while -(-width // step) * -(-height // step) > max_px:  # what slicing by step keeps, rounded up
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


def snapshot_jpeg_within(picture: Picture, max_bytes: int) -> bytes | None:
    """`snapshot_jpeg` of ``picture``, halved each way until it is at most ``max_bytes``; None where it would
    have to be smaller than `SNAPSHOT_MIN_SIDE_PX` on a side.

    For an output whose messages have a size limit (a broker ends the connection for a message over its own);
    the history stores the picture as it is. Each try encodes, so it runs off the loop; it raises as
    `snapshot_jpeg` does.
    """
    while len(jpeg := snapshot_jpeg(picture)) > max_bytes:
        height, width = picture.pixels.shape[:2]
        if min(height, width) // 2 < SNAPSHOT_MIN_SIDE_PX:
            return None
        half = cv2.resize(picture.pixels, (width // 2, height // 2), interpolation=cv2.INTER_AREA)
        picture = Picture(half, picture.whole_frame)
    return jpeg


def _box_of(data: Mapping[str, Any], result: FrameResult) -> tuple[float, float, float, float] | None:
    box = data.get("box")
    if isinstance(box, list | tuple) and len(box) == 4 and all(isinstance(v, int | float) for v in box):
        return (float(box[0]), float(box[1]), float(box[2]), float(box[3]))
    track_id = data.get("id")
    for track in result.tracks:
        if track.track_id == track_id:
            return track.box
    return None
