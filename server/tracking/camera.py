"""How far the whole picture moved between two frames: a shaking or panning camera, for segtrack.

A tracker predicts where an object will be from how it has moved. When the camera moves, everything
in the picture moves with it, so every prediction is off by the camera's step and a lost object is
looked for where the camera no longer points. `PictureShift` measures that step so the tracker can
move its tracks with it.

The step is the translation that best maps the background of one frame onto the next: phase
correlation of small grey copies of the two frames, Hann-windowed and weighted to leave out where
the detected objects stand in either frame, since objects move on their own and, being the most
textured part of many pictures, would otherwise pull the estimate their way. Translation only: a
camera swaying on a pole, knocked, or panning; zoom and rotation are not followed. On the generated
shaking scenes (`server.scene`, 640 pixels wide, steps of 4 to 5 pixels a frame on average and up to
25) it is within 0.7 pixels of the truth in half the frames and within 1.4 in nine of ten
(tests/test_camera_motion.py).
"""

from __future__ import annotations

import cv2
import numpy as np

#: Frames are compared this many pixels wide (or at their own width, if narrower). Twice this was
#: more accurate on the generated scenes at three times the cost, and tracked no better.
WORK_WIDTH = 160
#: But never fewer than this many pixels on their short side (a very wide, short frame is shrunk
#: less): 1 pixel high, phase correlation fails; 2, it finds no peak; 3, it finds half-pixel steps in
#: a still picture.
MIN_WORK_SIDE = 8
#: The holes left where objects stand reach this far beyond their boxes and fade out over about as
#: far again (the blur's sigma), in pixels of the small frames: the object's own edges must not show
#: through. Tighter holes, or harder edges, doubled the error on a still camera's generated scenes.
HOLE_MARGIN, EDGE_SOFTNESS = 6, 4.0
#: Phase correlation's peak response under which no step is taken: the two frames share too little
#: (a cut, a flash, a lens covered) to say how the camera moved.
MIN_RESPONSE = 0.05


class PictureShift:
    """Steps of one stream's picture, frame after frame (the tracker owns one per stream)."""

    def __init__(self) -> None:
        self._previous: np.ndarray | None = None  # the last frame, small and grey, its mean taken out
        self._previous_objects = np.zeros((0, 4))
        self._size: tuple[int, int] | None = None  # the frames' width and height
        self._window: np.ndarray = np.ones((1, 1), np.float32)  # a Hann window of the small frames' size

    def step(self, image: np.ndarray, objects: np.ndarray) -> tuple[float, float]:
        """How far the background moved from the previous frame to ``image`` (x, y pixels of ``image``).

        ``objects`` are the boxes (x1, y1, x2, y2 rows) of what the detector found in ``image``. The
        first frame, and a frame whose size differs from the one before, has no step: (0, 0).
        """
        height, width = image.shape[:2]
        scale = min(max(WORK_WIDTH / width, MIN_WORK_SIDE / min(width, height)), 1.0)
        small_size = (max(round(width * scale), 1), max(round(height * scale), 1))
        grey = cv2.cvtColor(cv2.resize(image, small_size, interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2GRAY)
        picture = grey.astype(np.float32)
        picture -= float(picture.mean())
        objects = objects * scale
        if self._previous is None or self._size != (width, height):
            # The size is kept only with a window made for it: a failure here must not leave the next
            # frame weighted by the window of another size.
            self._window = cv2.createHanningWindow(small_size, cv2.CV_32F)
            self._size, self._previous, self._previous_objects = (width, height), picture, objects
            return 0.0, 0.0
        previous, self._previous = self._previous, picture
        previous_objects, self._previous_objects = self._previous_objects, objects
        weights = self._window * _background_weights(picture.shape, np.vstack([previous_objects, objects]))
        (dx, dy), response = cv2.phaseCorrelate(previous, picture, weights)
        if response < MIN_RESPONSE:
            return 0.0, 0.0
        return dx / scale, dy / scale


def _background_weights(shape: tuple[int, ...], objects: np.ndarray) -> np.ndarray:
    """1 on the background, 0 where an object stands in either frame, with soft edges.

    The same weights for both frames: a hole where an object stood in one frame only would move with
    it, and a hard edge would be the sharpest thing in the picture, both pulling the estimate their way.
    They are applied with a Hann window, without which the frame's own edges, which stay where they
    are, pulled the estimate towards no step at all (errors doubled on the shaking scenes).
    """
    weights = np.ones(shape, np.float32)
    holes = objects.astype(int) + np.array([-HOLE_MARGIN, -HOLE_MARGIN, HOLE_MARGIN + 1, HOLE_MARGIN + 1])
    for x1, y1, x2, y2 in np.maximum(holes, 0):
        weights[y1:y2, x1:x2] = 0.0
    return cv2.GaussianBlur(weights, (0, 0), EDGE_SOFTNESS)
