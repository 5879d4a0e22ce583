"""Pictures that say which frame they are and show known colours, for tests of pairing and colour order.

Each picture carries its index as a row of black and white blocks (big enough to survive H.264, VP8
and JPEG) and three patches of pure red, green and blue. A test that reads the index back from a
JPEG can tell whether the metadata sent with it is that frame's or a neighbour's, and one that reads
the patches can tell whether red is still red: a BGR/RGB swap anywhere turns the red patch blue.
The bundled model cannot tell either way (it was trained colour-blind on its scenes).
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

WIDTH, HEIGHT = 320, 192
BITS = 8  # indices 0..255; a looping video of fewer frames counts modulo its length
BLOCK_PX = 16
CODE_AT = (8, 8)  # top-left corner of the row of blocks
BACKGROUND = 128
#: name -> (BGR value, top-left corner); 48 px squares well apart from each other and the code.
PATCH_PX = 48
PATCHES: dict[str, tuple[tuple[int, int, int], tuple[int, int]]] = {
    "red": ((0, 0, 255), (24, 112)),
    "green": ((0, 255, 0), (136, 112)),
    "blue": ((255, 0, 0), (248, 112)),
}


def numbered_image(index: int) -> np.ndarray:
    """A BGR picture carrying ``index`` (modulo 256) and the three colour patches."""
    image = np.full((HEIGHT, WIDTH, 3), BACKGROUND, np.uint8)
    x0, y0 = CODE_AT
    for bit in range(BITS):
        value = 255 if (index >> bit) & 1 else 0
        image[y0 : y0 + BLOCK_PX, x0 + bit * BLOCK_PX : x0 + (bit + 1) * BLOCK_PX] = value
    for colour, (x, y) in PATCHES.values():
        image[y : y + PATCH_PX, x : x + PATCH_PX] = colour
    return image


def number_of(image: np.ndarray) -> int:
    """The index a (decoded, BGR or gray) `numbered_image` carries, read from the middle of each block."""
    scale_x, scale_y = image.shape[1] / WIDTH, image.shape[0] / HEIGHT
    x0, y0 = CODE_AT
    number = 0
    for bit in range(BITS):
        cx, cy = x0 + bit * BLOCK_PX + BLOCK_PX // 2, y0 + BLOCK_PX // 2
        patch = image[
            int((cy - 4) * scale_y) : int((cy + 4) * scale_y), int((cx - 4) * scale_x) : int((cx + 4) * scale_x)
        ]
        if patch.mean() > 128:
            number |= 1 << bit
    return number


def colour_errors(image: np.ndarray) -> list[str]:
    """What is wrong with the patches of a decoded BGR `numbered_image` (nothing: an empty list)."""
    scale_x, scale_y = image.shape[1] / WIDTH, image.shape[0] / HEIGHT
    errors = []
    for name, (colour, (x, y)) in PATCHES.items():
        inner = image[
            int((y + 12) * scale_y) : int((y + PATCH_PX - 12) * scale_y),
            int((x + 12) * scale_x) : int((x + PATCH_PX - 12) * scale_x),
        ]
        seen = inner.reshape(-1, 3).mean(axis=0)
        strong = int(np.argmax(colour))
        if seen[strong] < 170 or any(seen[c] > 90 for c in range(3) if c != strong):
            errors.append(f"{name} patch is BGR {[round(v) for v in seen]}, expected about {list(colour)}")
    return errors


def write_numbered_video(path: Path, frames: int, fps: int = 15, key_frame_every: int | None = None) -> Path:
    """``frames`` numbered pictures as H.264 with a key frame every second (as a camera would send them),
    or every ``key_frame_every`` frames."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.options = {"preset": "veryfast", "tune": "zerolatency", "g": str(key_frame_every or fps), "crf": "18"}
        for index in range(frames):
            frame = av.VideoFrame.from_ndarray(numbered_image(index), format="bgr24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
