"""``scene:`` URIs: the generated scene as a live camera, for the demo and for tests.

scene:                   seed 0, 640x384 at 15 fps
scene:?seed=3&fps=10&width=960&height=540
scene:?family=occlusion&camera=shaking    objects hiding one another, filmed by a shaking camera
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

from server.frames import MIN_FRAME_SIDE_PX
from server.scene import Scene
from server.sources.base import Decoded, SourceError

_INT_PARAMS = {"seed": 0, "fps": 15, "width": 640, "height": 384}
_NAME_PARAMS = {"family": "wander", "camera": "still"}  # checked by `Scene`
#: 4K: a scene is a test picture, and one anyone may ask for through the API must not exhaust memory.
MAX_SIDE_PX = 3840


class SceneSource:
    """Renders the scene at its frame rate against the wall clock, like a camera would deliver it."""

    live = True

    def __init__(self, uri: str) -> None:
        parts = urlsplit(uri)
        query = parse_qs(parts.query)
        known = {*_INT_PARAMS, *_NAME_PARAMS}
        unknown = set(query) - known
        if unknown:
            raise SourceError(f"unknown scene option(s) {sorted(unknown)} in {uri!r}; known: {sorted(known)}")
        values = dict(_INT_PARAMS)
        names = dict(_NAME_PARAMS)
        for key, raw in query.items():
            if key in names:
                names[key] = raw[-1]
                continue
            try:
                values[key] = int(raw[-1])
            except ValueError:
                raise SourceError(f"scene option {key}={raw[-1]!r} is not a whole number") from None
        if not 1 <= values["fps"] <= 120:
            raise SourceError("scene fps must be between 1 and 120")
        for side in ("width", "height"):
            if not MIN_FRAME_SIDE_PX <= values[side] <= MAX_SIDE_PX:
                raise SourceError(
                    f"scene {side}={values[side]}: must be from {MIN_FRAME_SIDE_PX} to {MAX_SIDE_PX} pixels"
                )
        try:
            self.scene = Scene(
                seed=values["seed"],
                width=values["width"],
                height=values["height"],
                fps=values["fps"],
                family=names["family"],
                camera=names["camera"],
            )
        except ValueError as exc:
            raise SourceError(f"{uri!r}: {exc}") from None
        self._uri = uri
        self.fps = float(self.scene.fps)

    def describe(self) -> str:
        return self._uri

    def open(self, stop: threading.Event) -> Iterator[Decoded]:
        interval = 1.0 / self.scene.fps
        started = time.monotonic()
        index = 0
        while not stop.is_set():
            image, _ = self.scene.render(index)
            yield Decoded(image, index * interval)
            index += 1
            if stop.wait(max(0.0, started + index * interval - time.monotonic())):
                return
