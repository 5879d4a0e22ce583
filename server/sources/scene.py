"""``scene:`` URIs: the generated scene as a live camera, for the demo and for tests.

scene:                   seed 0, 640x384 at 15 fps
scene:?seed=3&fps=10&width=960&height=540
scene:?family=occlusion&camera=shaking    objects hiding one another, filmed by a shaking camera
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from server.frames import MIN_FRAME_SIDE_PX
from server.scene import CAMERAS, FAMILIES, MIN_SIDE_PX, Scene
from server.sources.base import MAX_FRAME_SIDE_PX, Decoded, SourceError
from server.sources.uri import mask_uri

_INT_PARAMS = {"seed": 0, "fps": 15, "width": 640, "height": 384}
_NAME_PARAMS = {"family": FAMILIES, "camera": CAMERAS}  # the first is the default
#: 4K: a scene is a test picture, and one anyone may ask for through the API must not exhaust memory.
MAX_SIDE_PX = 3840
#: The smallest side: the scene's own minimum, which is above the model's.
MIN_SCENE_SIDE_PX = max(MIN_FRAME_SIDE_PX, MIN_SIDE_PX)
#: Objects cross a scene at a speed set by its width: in a strip much taller than it is wide each
#: takes many periods to cross, and they pile up (64x3840: 130 at once, 70 ms a frame to draw).
MAX_TALLNESS = 4
#: How much of a value an error message repeats: enough to recognise it, not a 5000-digit seed.
_SHOWN_CHARS = 40


@dataclass(frozen=True, slots=True)
class SceneSettings:
    """What a ``scene:`` URI asks for, every option checked: the scene it describes can be built."""

    seed: int
    fps: int
    width: int
    height: int
    family: str
    camera: str

    @classmethod
    def of_uri(cls, uri: str, max_frame_side: int = MAX_FRAME_SIDE_PX) -> SceneSettings:
        """The settings ``uri`` asks for, or `SourceError` naming what is wrong with them.

        Reads the text alone and draws nothing: building a scene draws its whole background, which
        at 4K takes a second or more, so a URI is checked here before anything is built, and whoever
        only needs to know whether it would do (`server.sources.check_uri`) stops here. A side above
        ``max_frame_side`` is refused here too, not at the first frame.
        """
        shown_uri = _shown(mask_uri(uri))  # a password= meant for a camera must not come back in an error
        parts = urlsplit(uri)
        if parts.netloc or parts.path or parts.fragment:
            raise SourceError(f"{shown_uri}: a scene takes options after '?' and nothing else, e.g. scene:?seed=3")
        query = parse_qs(parts.query, keep_blank_values=True)
        known = {*_INT_PARAMS, *_NAME_PARAMS}
        unknown = set(query) - known
        if unknown:
            shown = sorted(_shown(key) for key in unknown)
            raise SourceError(
                f"unknown scene option(s) {', '.join(shown)} in {shown_uri}; known: {', '.join(sorted(known))}"
            )
        values = dict(_INT_PARAMS)
        names = {key: allowed[0] for key, allowed in _NAME_PARAMS.items()}
        for key, raw in query.items():
            if not raw[-1]:
                raise SourceError(f"scene option {key} is empty: give it a value or leave it out")
            if key in names:
                if raw[-1] not in _NAME_PARAMS[key]:
                    allowed = ", ".join(_NAME_PARAMS[key])
                    raise SourceError(f"{shown_uri}: {key}: expected one of {allowed}, got {_shown(raw[-1])}")
                names[key] = raw[-1]
                continue
            try:
                values[key] = int(raw[-1])
            except ValueError:
                raise SourceError(f"scene option {key}={_shown(raw[-1])} is not a whole number") from None
        if values["seed"] < 0:
            raise SourceError(f"scene seed={values['seed']}: must be 0 or more")
        if not 1 <= values["fps"] <= 120:
            raise SourceError("scene fps must be between 1 and 120")
        largest = min(MAX_SIDE_PX, max_frame_side)
        for side in ("width", "height"):
            if not MIN_SCENE_SIDE_PX <= values[side] <= largest:
                limit = " ([server] max_frame_side)" if largest < MAX_SIDE_PX else ""
                raise SourceError(
                    f"scene {side}={values[side]}: must be from {MIN_SCENE_SIDE_PX} to {largest} pixels{limit}"
                )
        if values["height"] > MAX_TALLNESS * values["width"]:
            raise SourceError(
                f"scene {values['width']}x{values['height']}: at most {MAX_TALLNESS} times as tall as it is wide"
            )
        return cls(values["seed"], values["fps"], values["width"], values["height"], names["family"], names["camera"])


class SceneSource:
    """Renders the scene at its frame rate against the wall clock, like a camera would deliver it."""

    live = True

    def __init__(self, uri: str, max_frame_side: int = MAX_FRAME_SIDE_PX) -> None:
        """Reads ``uri`` as `SceneSettings.of_uri` does, then builds the scene. Built here, not in
        `open`, so that a restarted stream's first picture follows its change as closely as a camera's
        would, at the cost of drawing it in the stream change's thread."""
        settings = SceneSettings.of_uri(uri, max_frame_side)
        try:
            self.scene = Scene(
                seed=settings.seed,
                width=settings.width,
                height=settings.height,
                fps=settings.fps,
                family=settings.family,
                camera=settings.camera,
            )
        except ValueError as exc:  # a setting `SceneSettings` let through: retrying cannot change it
            raise SourceError(f"{_shown(uri)}: {exc}") from None
        self._uri = uri
        self.fps = float(settings.fps)

    def describe(self) -> str:
        return self._uri

    def open(self, stop: threading.Event) -> Iterator[Decoded]:
        scene = self.scene
        interval = 1.0 / scene.fps
        started = time.monotonic()
        index = 0
        while not stop.is_set():
            image, _ = scene.render(index)
            yield Decoded(image, index * interval)
            index += 1
            if stop.wait(max(0.0, started + index * interval - time.monotonic())):
                return


def _shown(text: str) -> str:
    """``text`` quoted for an error message, cut short if long: the message is read by a person."""
    if len(text) <= _SHOWN_CHARS:
        return repr(text)
    return f"{text[:_SHOWN_CHARS]!r}... ({len(text)} characters)"
