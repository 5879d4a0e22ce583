"""A Frigate config (its ``config.yml``, read as a mapping) as a segcast config file's text.

What a Frigate user set up by hand over months: each camera's detect stream, the objects it tracks and at
what rate, its zones and the objects each counts, its per-object filters (area in pixels, score) and
masks, and the MQTT broker. Each has a segcast equivalent (README, docs/analytics.md "Ignoring objects"):

- a camera's input with the ``detect`` role is a stream's ``uri`` (Frigate's ``{FRIGATE_*}`` placeholders
  filled from the environment, as Frigate fills them; a go2rtc restream the camera's own RTSP URL among
  its go2rtc sources: segcast reads the camera, not a Frigate that is gone); ``detect: fps`` is
  ``process_fps``;
- ``objects: track`` is ``classes``; ``objects: filters`` (a camera's over the global ones, as Frigate
  merges them) are the camera's ``class_filters`` (``threshold``, else ``min_score``, as ``conf``; areas in
  pixels as shares of its detect size) and their ``mask`` an ignore zone of that class; ``objects: mask``
  an ignore zone of every class;
- a zone is a zone: its ``objects`` as ``classes``, ``loitering_time`` as ``loiter_s``.

Coordinates in pixels are of Frigate's detect size: where the config gives it, they become fractions of
the picture (segcast may read another resolution of the camera); where not, Frigate detected at the
stream's own size, which segcast reads too, so they stay pixels. What has no equivalent (motion masks,
recording, snapshots, a zone's inertia, the ratio filters) is listed in `Conversion.notes`, which the
file's header repeats, so nothing is dropped without a word.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from server.analytics.shapes import parse_ignore_zones, parse_zones
from server.persist import toml_value

#: How the two judge a zone: said once, where any zone is carried over.
ZONE_RULE_NOTE = (
    "zones: Frigate counts an object in a zone by its box's bottom centre, segcast by the share of its mask "
    "inside (min_share, 0.25): check a thin zone drawn on the ground, or give it a lower min_share"
)
#: Frigate's own default rate of detection, frames a second (segcast's is every frame).
FRIGATE_DETECT_FPS = 5
#: Frigate's own default for the objects a camera tracks.
FRIGATE_DEFAULT_TRACK = ("person",)
#: What Frigate writes ``{FRIGATE_RTSP_PASSWORD}`` and the like as, in a path: filled from the environment.
PLACEHOLDER = re.compile(r"\{(FRIGATE_[A-Za-z0-9_]+)\}")
#: Where Frigate's go2rtc restreams a camera (its name follows): on Frigate's own machine, port 8554.
GO2RTC_RESTREAM = re.compile(r"rtsps?://(?:127\.0\.0\.1|localhost|\[::1\]):8554/([^?#/]+)")
#: Frigate's labelmap calls COCO's trucks cars too; a COCO model tells them apart.
FRIGATE_CAR_NOTE = "Frigate's car includes COCO's truck (its labelmap): add truck where you track car"


class FrigateConfigError(ValueError):
    """A Frigate config that cannot be read as one (no cameras, a camera without an input...)."""


@dataclass
class Conversion:
    """A segcast config file's text, and what of the Frigate config it could not carry, one line each."""

    text: str
    notes: list[str] = field(default_factory=list)


@dataclass
class _Camera:
    """What is known of one Frigate camera's detect picture while converting it."""

    name: str
    size: tuple[float, float] | None  # Frigate's detect width and height, where the config gives them
    notes: list[str]
    go2rtc: Mapping[str, Any]  # go2rtc's streams, by name: a restream's camera is among their sources


def convert(frigate: Mapping[str, Any], source: str = "config.yml") -> Conversion:
    """``frigate`` (a parsed Frigate config) as a segcast config file; FrigateConfigError if it has no camera."""
    cameras = frigate.get("cameras")
    if not isinstance(cameras, Mapping) or not cameras:
        raise FrigateConfigError(f"{source}: no cameras: table, so no camera to carry over")
    notes: list[str] = []
    lines: list[str] = []
    global_detect = _table(frigate, "detect")
    global_objects = _table(frigate, "objects")
    try:
        defaults = _defaults(global_detect, global_objects, notes)
    except (TypeError, ValueError) as exc:
        raise FrigateConfigError(f"{source}: detect or objects: not read as Frigate's ({exc})") from None
    if defaults:
        lines += ["[stream_defaults]", *defaults, ""]
    lines += _mqtt(_table(frigate, "mqtt"), notes)
    if "model" in frigate or "detectors" in frigate:
        notes.append(
            "detectors and model: segcast runs its own model (yolov8n-seg by default, COCO's classes, --model for "
            "another); labels of a Frigate+ model that COCO lacks (package...) need a model that has them"
        )
    for name, camera in cameras.items():
        if not isinstance(camera, Mapping):
            raise FrigateConfigError(f"{source}: cameras.{name}: expected a table, got {camera!r}")
        if camera.get("enabled") is False or {**global_detect, **_table(camera, "detect")}.get("enabled") is False:
            notes.append(f"camera {name}: disabled in Frigate, or its detection is: left out")
            continue
        try:
            lines += _stream(str(name), camera, frigate, notes)
        except (TypeError, ValueError, AttributeError) as exc:
            if isinstance(exc, FrigateConfigError):
                raise
            raise FrigateConfigError(f"{source}: cameras.{name}: not read as a Frigate camera ({exc})") from None
    if not any(line == "[[streams]]" for line in lines):
        raise FrigateConfigError(f"{source}: every camera is disabled: nothing to carry over")
    header = [f"# segcast config converted from Frigate's {source} by `segcast import-frigate`."]
    if notes:
        header += ["# Not carried over, or carried with a caveat:", *(f"#   - {note}" for note in notes)]
    return Conversion("\n".join([*header, "", *lines]).rstrip("\n") + "\n", notes)


def _defaults(detect: Mapping[str, Any], objects: Mapping[str, Any], notes: list[str]) -> list[str]:
    """``[stream_defaults]`` lines from Frigate's global ``detect`` and ``objects`` (its filters go to each camera:
    their areas are pixels of each camera's own detect size)."""
    lines = [f"process_fps = {toml_value(detect.get('fps', FRIGATE_DETECT_FPS))}"]
    if "track" in objects:
        lines.append(f"classes = {toml_value(_labels(objects['track']))}")
        if "car" in _labels(objects["track"]):
            notes.append(FRIGATE_CAR_NOTE)
    return lines


def _mqtt(mqtt: Mapping[str, Any], notes: list[str]) -> list[str]:
    """``[events.mqtt]`` from Frigate's broker settings; segcast publishes its own topics, not Frigate's."""
    if not mqtt.get("host") or mqtt.get("enabled") is False:
        return []
    lines = ["[events.mqtt]", f"host = {toml_value(_filled(str(mqtt['host']), notes))}"]
    if "port" in mqtt:
        lines.append(f"port = {toml_value(int(mqtt['port']))}")
    if "user" in mqtt:
        lines.append(f"username = {toml_value(_filled(str(mqtt['user']), notes))}")
    if "password" in mqtt:
        lines.append(f"password = {toml_value(_filled(str(mqtt['password']), notes))}")
    if mqtt.get("tls_ca_certs") or mqtt.get("port") == 8883:
        lines.append("tls = true")
        if mqtt.get("tls_ca_certs"):
            lines.append(f"ca_file = {toml_value(str(mqtt['tls_ca_certs']))}")
            notes.append("mqtt: ca_file is Frigate's path (inside its container?): check it from segcast's config")
    notes.append(
        "mqtt: segcast publishes under segcast/ (topic_prefix) with its own messages, and Home Assistant finds "
        "its entities by discovery: automations on frigate/events need redoing (README, Events out)"
    )
    return [*lines, ""]


def _stream(name: str, camera: Mapping[str, Any], frigate: Mapping[str, Any], notes: list[str]) -> list[str]:
    """One ``[[streams]]`` table for Frigate camera ``name`` of config ``frigate``."""
    global_objects = _table(frigate, "objects")
    detect = {**_table(frigate, "detect"), **_table(camera, "detect")}
    cam = _Camera(name, _size(detect), notes, _table(_table(frigate, "go2rtc"), "streams"))
    lines = ["[[streams]]", f"id = {toml_value(name)}", f"uri = {toml_value(_detect_input(cam, camera))}"]
    own_detect = _table(camera, "detect")
    if "fps" in own_detect:
        lines.append(f"process_fps = {toml_value(own_detect['fps'])}")
    objects = _table(camera, "objects")
    track = _labels(objects.get("track", global_objects.get("track", FRIGATE_DEFAULT_TRACK)))
    if "track" in objects or "track" not in global_objects:
        lines.append(f"classes = {toml_value(track)}")
        if "car" in track and "track" in objects:
            notes.append(f"camera {name}: {FRIGATE_CAR_NOTE}")
    ignore_zones: list[dict[str, Any]] = []
    frigate_filters = _merged(_table(global_objects, "filters"), _table(objects, "filters"))
    filters = _class_filters(frigate_filters, cam.size, f"cameras.{name}.objects.filters", notes)
    for where, masks in (("global", global_objects.get("mask")), ("camera", objects.get("mask"))):
        if masks:
            ignore_zones += _ignore_zones(cam, masks, f"{where}-mask", None)
    for label, table in frigate_filters.items():
        if table.get("mask"):
            ignore_zones += _ignore_zones(cam, table["mask"], f"{label}-mask", [str(label)])
    if filters:
        lines.append(f"class_filters = {toml_value(filters)}")
    placed = (_zone(cam, zone_name, table, track) for zone_name, table in _table(camera, "zones").items())
    zones = [zone for zone in placed if zone is not None]
    for key, shapes in (("zones", zones), ("ignore_zones", ignore_zones)):
        if shapes:
            lines += [f"{key} = [", *(f"  {toml_value(shape)}," for shape in shapes), "]"]
    if _table(camera, "motion").get("mask"):
        notes.append(f"camera {name}: motion masks (segcast detects in every frame it processes, not on motion)")
    if any({**_table(frigate, key), **_table(camera, key)}.get("enabled") for key in ("record", "snapshots")):
        notes.append(f"camera {name}: recordings and snapshots (segcast keeps an event history, not video)")
    if _table(camera, "review"):
        notes.append(f"camera {name}: review (required_zones and the rest: segcast has no review items)")
    return [*lines, ""]


def _detect_input(cam: _Camera, camera: Mapping[str, Any]) -> str:
    """The path of the camera's input with the ``detect`` role (its first input where none has it)."""
    inputs = _table(camera, "ffmpeg").get("inputs")
    if not isinstance(inputs, Sequence) or not inputs or not all(isinstance(i, Mapping) for i in inputs):
        raise FrigateConfigError(f"cameras.{cam.name}.ffmpeg.inputs: expected a list of inputs with a path")
    detecting = [i for i in inputs if "detect" in (i.get("roles") or ())] or list(inputs)
    path = str(detecting[0].get("path", ""))
    if not path:
        raise FrigateConfigError(f"cameras.{cam.name}.ffmpeg.inputs: the detect input has no path")
    if restream := GO2RTC_RESTREAM.match(path):
        if camera_url := _go2rtc_source(cam.go2rtc.get(restream.group(1))):
            path = camera_url
        else:
            cam.notes.append(f"camera {cam.name}: its input is Frigate's go2rtc restream; point it at the camera")
    if "preset-rtsp-udp" in str(detecting[0].get("input_args", "")) and "#" not in path:
        path += "#transport=udp"
    return _filled(path, cam.notes)


def _go2rtc_source(sources: Any) -> str | None:
    """The camera's own RTSP URL among a go2rtc stream's sources (one behind ``ffmpeg:`` too), without go2rtc's
    own ``#`` parameters (``#backchannel=0``, ``#video=h264``), which segcast would take for its options."""
    listed = [sources] if isinstance(sources, str) else sources if isinstance(sources, Sequence) else []
    for source in (str(s).removeprefix("ffmpeg:") for s in listed):
        if source.startswith(("rtsp://", "rtsps://")):
            return source.partition("#")[0]
    return None


def _filled(text: str, notes: list[str]) -> str:
    """``text`` with Frigate's ``{FRIGATE_...}`` placeholders filled from the environment where set."""

    def fill(match: re.Match[str]) -> str:
        value = os.environ.get(match.group(1))
        if value is None:
            notes.append(f"{match.group(0)}: not set here; fill it in the file (segcast does not read placeholders)")
            return match.group(0)
        return value

    return PLACEHOLDER.sub(fill, text)


def _class_filters(
    filters: Mapping[str, Any],
    size: tuple[float, float] | None,
    where: str,
    notes: list[str],
) -> dict[str, dict[str, float]]:
    """Frigate's per-object filters as ``class_filters``: its score as ``conf``, its areas as shares."""
    converted: dict[str, dict[str, float]] = {}
    for label, table in filters.items():
        if not isinstance(table, Mapping):
            continue
        own: dict[str, float] = {}
        score = table.get("threshold", table.get("min_score"))
        if score is not None:
            own["conf"] = max(0.01, min(1.0, float(score)))
        for key in ("min_area", "max_area"):
            if key in table:
                share = _share(table[key], size)
                if share is None:
                    notes.append(
                        f"{where}.{label}.{key}: {table[key]} px, but the detect size is not given: set its share "
                        "of the picture (pixels / (width x height)) yourself"
                    )
                else:
                    own[key] = share
        for key in ("min_ratio", "max_ratio"):
            if key in table:
                notes.append(f"{where}.{label}.{key}: segcast has no bound on a box's shape")
        if own:
            converted[str(label)] = own
    return converted


def _merged(defaults: Mapping[str, Any], own: Mapping[str, Any]) -> dict[str, Any]:
    """A camera's filters over the global ones, object by object and key by key, as Frigate merges them."""
    merged: dict[str, Any] = {label: dict(table) for label, table in defaults.items() if isinstance(table, Mapping)}
    for label, table in own.items():
        if isinstance(table, Mapping):
            merged[label] = {**merged.get(label, {}), **table}
    return merged


def _share(area: float, size: tuple[float, float] | None) -> float | None:
    """A Frigate area as a share of the picture: a whole number is pixels of the detect size, as Frigate
    reads it, a decimal from 0 to 1 a share already."""
    if isinstance(area, float) and area <= 1:
        return area
    if size is None:
        return None
    return min(1.0, round(area / (size[0] * size[1]), 6))


def _zone(cam: _Camera, name: str, table: Any, track: list[str]) -> dict[str, Any] | None:
    """Frigate zone ``name`` as a segcast zone, its objects those the camera tracks."""
    if not isinstance(table, Mapping) or "coordinates" not in table:
        cam.notes.append(f"camera {cam.name}: zone {name} has no coordinates, left out")
        return None
    polygons = _polygons(table["coordinates"])
    shape_name = re.sub(r"[^A-Za-z0-9_-]", "_", name)[:64]
    if len(polygons) != 1:
        cam.notes.append(f"camera {cam.name}: zone {name} is not one polygon, left out")
        return None
    zone = _placed(cam, shape_name, polygons[0])
    if ZONE_RULE_NOTE not in cam.notes:
        cam.notes.append(ZONE_RULE_NOTE)
    objects = _labels(table.get("objects"))
    untracked = [label for label in objects if label not in track]
    if untracked:
        cam.notes.append(f"camera {cam.name}: zone {name} counts {', '.join(untracked)}, which it does not track")
    if counted := [label for label in objects if label in track]:
        zone["classes"] = counted
    if table.get("loitering_time"):
        zone["loiter_s"] = float(table["loitering_time"])
    if table.get("inertia") not in (None, 3):
        cam.notes.append(
            f"camera {cam.name}: zone {name}'s inertia (frames inside before it counts): segcast's zones count by the "
            "share of an object's mask inside, and leave it below 0.8 of that share"
        )
    for key in ("filters", "speed_threshold", "distances"):
        if key in table:
            cam.notes.append(f"camera {cam.name}: zone {name}'s {key} (no equivalent in segcast's zones)")
    if refusal := _refusal(parse_zones, zone):
        cam.notes.append(f"camera {cam.name}: zone {name} left out: {refusal}")
        return None
    return zone


def _refusal(parse: Callable[[object], object], shape: dict[str, Any]) -> str | None:
    """Why segcast would refuse ``shape`` (a polygon that crosses itself...), or None: a Frigate shape it
    refuses is left out with a note rather than stopping the whole import."""
    try:
        parse([shape])
    except ValueError as exc:
        return str(exc).partition(": ")[2] or str(exc)
    return None


def _ignore_zones(cam: _Camera, masks: Any, stem: str, classes: list[str] | None) -> list[dict[str, Any]]:
    """A Frigate object mask (one polygon or a list of them) as ignore zones of ``classes`` (None: all)."""
    zones = []
    for i, polygon in enumerate(_polygons(masks), start=1):
        zone = _placed(cam, re.sub(r"[^A-Za-z0-9_-]", "-", f"{stem}-{i}")[:64], polygon)
        if classes:
            zone["classes"] = classes
        if refusal := _refusal(parse_ignore_zones, zone):
            cam.notes.append(f"camera {cam.name}: mask {zone['name']} left out: {refusal}")
            continue
        zones.append(zone)
    return zones


def _placed(cam: _Camera, name: str, points: list[tuple[float, float]]) -> dict[str, Any]:
    """A shape named ``name`` at ``points``: fractions as they are or as the detect size makes them, else pixels."""
    if all(0 <= v <= 1 for point in points for v in point):
        return {"name": name, "points": [list(p) for p in points], "units": "fraction"}
    if cam.size is not None:
        width, height = cam.size
        scaled = [[_fraction(x / width), _fraction(y / height)] for x, y in points]
        return {"name": name, "points": scaled, "units": "fraction"}
    note = (
        f"camera {cam.name}: its zones and masks stay in pixels of its detect picture, no detect size being "
        "given (Frigate before 0.13 scaled that picture to 1280x720): check them on its picture in the viewer"
    )
    if note not in cam.notes:
        cam.notes.append(note)
    return {"name": name, "points": [list(p) for p in points], "units": "px"}


def _fraction(value: float) -> float:
    """A share of the picture's width or height, a point a pixel beyond its edge (Frigate takes those) on it."""
    return min(1.0, max(0.0, round(value, 4)))


def _polygons(value: Any) -> list[list[tuple[float, float]]]:
    """Frigate's coordinates: one polygon as ``"x,y,x,y,..."`` or a list of ``"x,y"``, or a list of polygons."""
    texts = [value] if isinstance(value, str) else [str(item) for item in value or ()]
    numbers = [[float(n) for n in text.split(",") if n.strip()] for text in texts]
    if numbers and all(len(pair) == 2 for pair in numbers):  # a list of points: one polygon
        numbers = [[v for pair in numbers for v in pair]]
    return [list(zip(flat[::2], flat[1::2], strict=True)) for flat in numbers if len(flat) >= 6 and len(flat) % 2 == 0]


def _labels(value: Any) -> list[str]:
    """Frigate's object labels: a list, or one label as a string (its zones take either)."""
    if value is None:
        return []
    return [value] if isinstance(value, str) else [str(label) for label in value]


def _size(detect: Mapping[str, Any]) -> tuple[float, float] | None:
    width, height = detect.get("width"), detect.get("height")
    return (float(width), float(height)) if width and height else None


def _table(parent: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = parent.get(key)
    return value if isinstance(value, Mapping) else {}
