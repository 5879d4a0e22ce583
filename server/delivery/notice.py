"""A picture that says why a stream shows none, for MJPEG viewers while their stream has no current frame.

An ``<img>`` in a dashboard can show neither an HTTP status nor a WebSocket's ``status`` message: a
camera that cannot be reached would be a blank box, and one that stopped mid-stream a frozen picture,
each looking like a working stream. A notice is a plain JPEG naming the stream, its state and what
is known of why (the next attempt, the error), so the ``<img>`` says it in its own place.

Notices are drawn in a worker thread, never on the loop, and kept per text and size: the viewers of
one broken camera share each one, and the text changes only with the stream's state (the next
attempt is a time of day, not a countdown), so a camera that stays unreachable costs an encoding per
attempt, not per viewer or per second.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict

import cv2
import numpy as np

from server.inference.models import InferenceStatus
from server.sources.base import StreamState

#: The size of a notice for a stream that has no frame to take its size from (width, height).
NOTICE_SIZE_PX = (640, 360)
#: A notice is no wider than this, in its frame's shape: a 4K camera's would be some 280 kB sent each
#: second to each viewer to say one line, where the ``<img>`` scales it to its box anyway.
NOTICE_MAX_WIDTH_PX = 1280
BACKGROUND_BGR = (48, 48, 48)
TITLE_BGR = (255, 255, 255)
TEXT_BGR = (200, 200, 200)
#: Text is laid out as on a picture this wide and scaled with the picture, so that it can be read
#: wherever the picture is shown at least this wide (a dashboard tile).
LAYOUT_WIDTH_PX = 320
MARGIN_PX = 12  # at `LAYOUT_WIDTH_PX`
LINE_GAP_PX = 6  # at `LAYOUT_WIDTH_PX`
TITLE_SCALE = 0.6  # font scale at `LAYOUT_WIDTH_PX`
TEXT_SCALE = 0.42
FONT = cv2.FONT_HERSHEY_SIMPLEX
#: Notices kept at once: a few per broken stream and image size, each a few kB.
MAX_CACHED_NOTICES = 64

NoticeKey = tuple[tuple[str, ...], tuple[int, int], int]


def notice_lines(
    stream_id: str,
    state: StreamState,
    error: str | None,
    next_attempt_at: float | None,
    inference: InferenceStatus,
) -> tuple[str, ...]:
    """What a notice says, title first: the stream, why it has no picture, when it is tried again.

    A live stream has no current picture only while inference is unavailable (a remote model's
    server down) or before its first frame; then the notice says that instead of the stream's state.
    """
    if state is StreamState.LIVE and not inference.available:
        reason, error, next_attempt_at = "inference unavailable", inference.error, inference.next_attempt_at
    elif state is StreamState.LIVE:
        reason = "live, waiting for its first picture"
    else:
        reason = state.value
    lines = [f"{stream_id}: no picture", reason]
    if next_attempt_at is not None:
        lines.append(f"next attempt at {time.strftime('%H:%M:%S', time.gmtime(next_attempt_at))} UTC")
    if error:
        lines.append(error)
    return tuple(lines)


def notice_size(frame_size: tuple[int, int] | None) -> tuple[int, int]:
    """The size (width, height) of a notice standing in for frames of ``frame_size``, if any are known."""
    if frame_size is None:
        return NOTICE_SIZE_PX
    width, height = frame_size
    if width <= NOTICE_MAX_WIDTH_PX:
        return width, height
    return NOTICE_MAX_WIDTH_PX, max(1, round(height * NOTICE_MAX_WIDTH_PX / width))


def render_notice(lines: tuple[str, ...], size: tuple[int, int], jpeg_quality: int) -> bytes:
    """A JPEG of ``size`` (width, height) showing ``lines``, wrapped to its width; what does not fit
    below is left out. A character OpenCV's font lacks shows as ``?``."""
    width, height = size
    image = np.full((height, width, 3), BACKGROUND_BGR, np.uint8)
    unit = width / LAYOUT_WIDTH_PX
    margin = max(1, round(MARGIN_PX * unit))
    gap = max(1, round(LINE_GAP_PX * unit))
    thickness = max(1, round(unit))
    y = margin
    for index, line in enumerate(lines):
        scale, colour = (TITLE_SCALE, TITLE_BGR) if index == 0 else (TEXT_SCALE, TEXT_BGR)
        for piece in _wrap(line, scale * unit, thickness, width - 2 * margin):
            (_, text_height), baseline = cv2.getTextSize(piece, FONT, scale * unit, thickness)
            if y + text_height + baseline > height - margin:
                return _encode(image, jpeg_quality)
            y += text_height
            cv2.putText(image, piece, (margin, y), FONT, scale * unit, colour, thickness, cv2.LINE_AA)
            y += baseline + gap
    return _encode(image, jpeg_quality)


def _encode(image: np.ndarray, jpeg_quality: int) -> bytes:
    ok, buffer = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return bytes(buffer.tobytes())


def _wrap(text: str, scale: float, thickness: int, width: int) -> list[str]:
    """``text`` in lines no wider than ``width`` pixels: broken between words, and inside a word too
    long for a line of its own (a URI)."""

    def fits(piece: str) -> bool:
        return cv2.getTextSize(piece, FONT, scale, thickness)[0][0] <= width

    lines: list[str] = []
    current = ""
    for word in text.split():
        candidate = f"{current} {word}" if current else word
        if fits(candidate):
            current = candidate
            continue
        if current:
            lines.append(current)
        current = ""
        for char in word:
            if current and not fits(current + char):
                lines.append(current)
                current = ""
            current += char
    if current:
        lines.append(current)
    return lines


class Notices:
    """Notice JPEGs made off the loop, each once however many viewers show it at the same time.

    Use on one event loop. The newest `MAX_CACHED_NOTICES` are kept; a failed drawing is forgotten,
    so it is tried afresh for the next caller.
    """

    def __init__(self, max_cached: int = MAX_CACHED_NOTICES) -> None:
        self._max_cached = max_cached
        self._made: OrderedDict[NoticeKey, asyncio.Future[bytes]] = OrderedDict()

    async def jpeg(self, lines: tuple[str, ...], size: tuple[int, int], jpeg_quality: int) -> bytes:
        """The notice showing ``lines`` at ``size``; a caller cancelled while it waits leaves it to the others."""
        key = (lines, size, jpeg_quality)
        made = self._made.get(key)
        if made is None:
            made = asyncio.get_running_loop().run_in_executor(None, render_notice, lines, size, jpeg_quality)
            self._made[key] = made
            made.add_done_callback(lambda done: self._forget_failure(key, done))
            if len(self._made) > self._max_cached:
                self._made.popitem(last=False)
        else:
            self._made.move_to_end(key)
        return await asyncio.shield(made)

    def _forget_failure(self, key: NoticeKey, done: asyncio.Future[bytes]) -> None:
        if (done.cancelled() or done.exception() is not None) and self._made.get(key) is done:
            del self._made[key]
