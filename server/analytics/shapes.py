"""Zones, lines and ignore zones as stream options: parsed once from TOML or JSON, checked, then resolved
to pixels.

A shape's points are frame pixels (``units = "px"``, the default) or fractions of the frame's width
and height (``units = "fraction"``), so one definition fits every resolution of a camera. Fractions
are checked against the frame when the option is read; pixels can only be checked once the first
frame's size is known, which `resolve` does (a bad one becomes the stream's error), and so can whether
a line leaves a track room to cross it (`never_counts`). Once a stream has frames, a change that fails
either is refused at once (`check_fit`).
"""

from __future__ import annotations

import difflib
import enum
import itertools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from server.analytics.geometry import EDGE_OUTWARDS, Point, facing_edges, segments_intersect, sides_without_room

DEFAULT_MIN_SHARE = 0.25
#: The share of an object that must lie in an ignore zone for it to be ignored: more than half of it is
#: where the zone's false detections are; a person walking past, their feet outside it, is still seen.
DEFAULT_IGNORE_SHARE = 0.5
#: A line's dead band on each side, as a fraction of the frame's shorter side: a reference point
#: jittering within it never changes the side a track is on, so it never counts twice.
DEFAULT_HYSTERESIS = 0.02
#: How long a reference point must stay on the far side before a crossing counts (media time). A
#: nearer object hiding the lower part of a track lifts its visible bottom edge for a moment; that
#: dip, measured at about 0.3 s on the generated scenes, must not count as out-and-back-in.
DEFAULT_CONFIRM_S = 0.5
MAX_CONFIRM_S = 10.0
MAX_POINTS = 64
#: A line's shortest segment, in each unit: a pixel, or a thousandth of the frame. A side is
#: measured against each segment's direction, which a shorter one (a slip of the mouse) has none of.
MIN_SEGMENT = {"px": 1.0, "fraction": 1e-3}
#: A zone's least area, in each unit: a square pixel, or a millionth of the frame (a pixel of a
#: 1000x1000 frame, two of a 1920x1080 one). A smaller zone can never hold a quarter of any mask.
#: A zone in fractions is judged against the frame once its size is known, too (`resolve_zone`).
MIN_ZONE_AREA = {"px": 1.0, "fraction": 1e-6}
MAX_SHAPES = 32
NAME_PATTERN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
MAX_NAME_CHARS = 64
#: The characters of `NAME_PATTERN_CHARS` as refusals word them, for stream ids too (`server.config`):
#: "letters" alone told a German user that ü is not one.
NAME_CHARS_RULE = "ASCII letters (a-z, A-Z), digits, '-' or '_'"

#: Characters of a value an error echoes back: enough to find it by, never a whole body sent back.
ECHOED_CHARS = 60
#: Class names an unknown-class error lists in full. The bundled model's 3 fit; COCO's 80 or
#: Objects365's 365 would make one unreadable line, so a longer list is cut to its first this many,
#: after the close matches, and the error says where the whole list is.
MAX_LISTED_CLASSES = 20


def echoed(value: object) -> str:
    """``value`` as an error that refuses it shows it: as JSON (``true``, ``null``, ``"x"``), which a JSON
    body and a TOML file both spell so, never as Python writes it (``True``, ``None``, ``'x'``); cut to
    `ECHOED_CHARS` with an ellipsis."""
    try:
        text = json.dumps(value, ensure_ascii=False, default=str)
    except ValueError:  # an integer past Python's digit limit for str() (a TOML file's, or Python's own)
        text = "a number too long to show"
    return text if len(text) <= ECHOED_CHARS else text[: ECHOED_CHARS - 1] + "…"


def did_you_mean(key: str, keys: Sequence[str]) -> str:
    """``; did you mean 'units'?`` where ``key`` is close to one of ``keys`` (difflib's closest, at its own
    cutoff), else nothing: the words every unknown key of the config file and the API ends with, as the
    README promises. That cutoff takes a missing unit suffix (``loiter`` for ``loiter_s``)."""
    close = difflib.get_close_matches(key, keys, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def refuse_unknown_keys(table: Mapping[str, Any], keys: tuple[str, ...], where: str) -> None:
    """Raise ValueError naming the first key of ``table`` not in ``keys``, the keys it has, and the one meant."""
    if unknown := sorted(set(table) - set(keys)):
        raise ValueError(
            f"{where}.{unknown[0]}: unknown key; known keys are {', '.join(keys)}{did_you_mean(unknown[0], keys)}"
        )


def unquoted_number(value: object, where: str) -> str | None:
    """The error for a whole number given where a name is expected (``id = 1``, ``name = 1``), else None.

    Told "expected 1 to 64 letters, digits, ... got 1", a person read that a digit is not allowed: what
    to fix is the quotes. Stream ids (`server.config.check_stream_id`) and zone and line names share it.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{where}: expected text, got the number {echoed(value)}: quote it ({echoed(str(value))})"
    return None


class Units(enum.Enum):
    PX = "px"
    FRACTION = "fraction"


class Anchor(enum.Enum):
    """The point of a track that a line watches: bottom centre (where it stands) or its centroid."""

    BOTTOM = "bottom"
    CENTRE = "centre"


@dataclass(frozen=True, slots=True)
class Zone:
    """A polygon: a track is inside when at least ``min_share`` of its mask area (or box) lies in it.

    ``classes`` are class names (empty: all); ``loiter_s`` raises a ``loiter`` event once per visit
    that lasts longer (None: never).
    """

    name: str
    points: tuple[Point, ...]
    units: Units = Units.PX
    classes: tuple[str, ...] = ()
    min_share: float = DEFAULT_MIN_SHARE
    loiter_s: float | None = None

    def to_json(self) -> dict[str, object]:
        data: dict[str, object] = {**_common_json(self), "min_share": self.min_share}
        if self.loiter_s is not None:
            data["loiter_s"] = self.loiter_s
        return data

    def file_table(self) -> dict[str, object]:
        """The zone as a config file's table (`server.persist`): a key other than name, points and units
        only where it is not the default, so the file takes a later release's better default."""
        return _file_table(self.to_json(), _ZONE_DEFAULTS)

    @property
    def place(self) -> tuple[str, tuple[Point, ...], Units]:
        """Its name and where it lies: a zone with the same place is the same zone, whatever its settings,
        and keeps its visits and dwell times through a change of them (`StreamAnalytics.reshaped`)."""
        return self.name, self.points, self.units


@dataclass(frozen=True, slots=True)
class Line:
    """A polyline; crossing it from its left to its right (walking from the first point to the last) is "in".

    For a line drawn left to right across the picture, moving down across it is "in" and up is "out".
    ``anchor`` is the track point that must cross; ``hysteresis`` the dead band on each side, as a
    fraction of the frame's shorter side; ``confirm_s`` how long it must stay across before it counts.
    """

    name: str
    points: tuple[Point, ...]
    units: Units = Units.PX
    classes: tuple[str, ...] = ()
    anchor: Anchor = Anchor.BOTTOM
    hysteresis: float = DEFAULT_HYSTERESIS
    confirm_s: float = DEFAULT_CONFIRM_S

    def to_json(self) -> dict[str, object]:
        return {
            **_common_json(self),
            "anchor": self.anchor.value,
            "hysteresis": self.hysteresis,
            "confirm_s": self.confirm_s,
        }

    def file_table(self) -> dict[str, object]:
        """The line as a config file's table, its default keys left out as `Zone.file_table` leaves a zone's."""
        return _file_table(self.to_json(), _LINE_DEFAULTS)

    def dead_band(self, width: int, height: int) -> float:
        """Its dead band in pixels of a ``width`` x ``height`` frame: ``hysteresis`` is a share of its shorter side."""
        return self.hysteresis * min(width, height)

    @property
    def place(self) -> tuple[str, tuple[Point, ...], Units]:
        """Its name and where it lies: a line with the same place is the same line, whatever its settings,
        and keeps its crossing counts through a change of them (`StreamAnalytics.reshaped`)."""
        return self.name, self.points, self.units


@dataclass(frozen=True, slots=True)
class IgnoreZone:
    """A polygon where the stream sees no object: a detection at least ``min_share`` of whose mask area
    (or box) lies in it is dropped before the tracker, as Frigate's object masks drop theirs.

    For what a camera keeps mistaking for an object (a statue, a poster, a television, a road beyond the
    fence): it is never tracked, drawn, counted nor sent. ``classes`` are the class names it ignores
    (empty: all), so a zone that hides a statue's "person" can still let a cat through. Its points are
    held to the frame as a zone's are (`resolve_zone`): one drawn for another resolution is left out,
    and said, rather than hiding the wrong part of the picture.
    """

    name: str
    points: tuple[Point, ...]
    units: Units = Units.PX
    classes: tuple[str, ...] = ()
    min_share: float = DEFAULT_IGNORE_SHARE

    def to_json(self) -> dict[str, object]:
        return {**_common_json(self), "min_share": self.min_share}

    def file_table(self) -> dict[str, object]:
        """The ignore zone as a config file's table, its default keys left out as `Zone.file_table` leaves a zone's."""
        return _file_table(self.to_json(), _IGNORE_ZONE_DEFAULTS)


#: What a zone's and a line's keys are when a table leaves them out (name, points and units are always
#: written: without units, points all from 0 to 1 are refused, see `_fractions_hint`).
_ZONE_DEFAULTS: dict[str, object] = {"classes": [], "min_share": DEFAULT_MIN_SHARE}
_IGNORE_ZONE_DEFAULTS: dict[str, object] = {"classes": [], "min_share": DEFAULT_IGNORE_SHARE}
_LINE_DEFAULTS: dict[str, object] = {
    "classes": [],
    "anchor": Anchor.BOTTOM.value,
    "hysteresis": DEFAULT_HYSTERESIS,
    "confirm_s": DEFAULT_CONFIRM_S,
}


def _common_json(shape: Zone | Line | IgnoreZone) -> dict[str, object]:
    """The keys every shape has, as `to_json` gives them."""
    return {
        "name": shape.name,
        "points": [list(p) for p in shape.points],
        "units": shape.units.value,
        "classes": list(shape.classes),
    }


def _file_table(data: dict[str, object], defaults: Mapping[str, object]) -> dict[str, object]:
    return {key: value for key, value in data.items() if key not in defaults or value != defaults[key]}


def parse_zones(value: object) -> tuple[Zone, ...]:
    """Zones from a list of tables; ValueError names the zone and key (``zones[1].points: ...``)."""
    zones = tuple(_zone(table, f"zones[{i}]") for i, table in enumerate(_tables(value, "zones")))
    _unique(zones, "zones")
    return zones


def parse_lines(value: object) -> tuple[Line, ...]:
    """Lines from a list of tables; ValueError names the line and key."""
    lines = tuple(_line(table, f"lines[{i}]") for i, table in enumerate(_tables(value, "lines")))
    _unique(lines, "lines")
    return lines


def parse_ignore_zones(value: object) -> tuple[IgnoreZone, ...]:
    """Ignore zones from a list of tables; ValueError names the zone and key (``ignore_zones[0].points: ...``)."""
    key = "ignore_zones"
    zones = tuple(_ignore_zone(table, f"{key}[{i}]") for i, table in enumerate(_tables(value, key)))
    _unique(zones, key)
    return zones


def resolve(points: tuple[Point, ...], units: Units, width: int, height: int, where: str) -> tuple[Point, ...]:
    """``points`` in pixels of a ``width`` x ``height`` frame; ValueError if one lies outside it."""
    if units is Units.FRACTION:
        return tuple((x * width, y * height) for x, y in points)
    for x, y in points:
        if x > width or y > height:
            raise ValueError(f"{where}: point ({x:g}, {y:g}) is outside the {width}x{height} frame")
    return points


def resolve_zone(zone: Zone | IgnoreZone, width: int, height: int, where: str) -> tuple[Point, ...]:
    """``zone``'s corners in pixels of a ``width`` x ``height`` frame; ValueError if one lies outside it or
    the zone covers less than a square pixel of it (one in fractions of a small frame may)."""
    points = resolve(zone.points, zone.units, width, height, where)
    area = abs(_area(points))
    if area < MIN_ZONE_AREA[Units.PX.value]:
        raise ValueError(f"{where}: the polygon covers {area:.3g} square pixels of the {width}x{height} frame, under 1")
    return points


def unknown_class(name: str, class_names: dict[int, str]) -> str:
    """The words for a class filter naming ``name``, which the model (``class_names``) lacks: the close
    matches first, then the model's classes in class-id order, all of them where there are at most
    `MAX_LISTED_CLASSES`, else that many and where to read the rest. One wording for the stream's
    ``classes`` and a zone's or line's, so a config file and the API read the same."""
    known = list(dict.fromkeys(class_names[class_id] for class_id in sorted(class_names)))
    close = difflib.get_close_matches(name, known, n=3)
    meant = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
    said = f"the model has no class {name!r}{meant}; it knows "
    if len(known) <= MAX_LISTED_CLASSES:
        return said + ", ".join(known)
    listed = ", ".join(known[:MAX_LISTED_CLASSES])
    return f"{said}{listed}, ... ({len(known)} in all; a running segcast lists them at GET /api/viewer)"


def check_classes(
    zones: tuple[Zone, ...],
    lines: tuple[Line, ...],
    class_names: dict[int, str],
    ignore_zones: tuple[IgnoreZone, ...] = (),
) -> None:
    """ValueError naming the first zone, line or ignore zone whose class filter names a class the model
    does not know."""
    known = set(class_names.values())
    shapes: tuple[tuple[str, tuple[Zone | Line | IgnoreZone, ...]], ...] = (
        ("zones", zones),
        ("lines", lines),
        ("ignore_zones", ignore_zones),
    )
    for key, group in shapes:
        for i, shape in enumerate(group):
            for name in shape.classes:
                if name not in known:
                    raise ValueError(f"{key}[{i}].classes: {unknown_class(name, class_names)}")


def never_counts(line: Line, points: tuple[Point, ...], width: int, height: int, where: str) -> str | None:
    """Why ``line``, at ``points`` in a ``width`` x ``height`` frame, can never count a crossing and what to
    do, or None where it can. One wording for a change refused (`check_fit`) and a stream's problem
    (`server.analytics.engine`), the only way a line given before the frame size is known is told."""
    band = line.dead_band(width, height)
    missing = sides_without_room(points, band, width, height)
    if not missing:
        return None
    edges = [edge for edge in EDGE_OUTWARDS if any(edge in facing_edges(points, side) for side in missing)]
    named = f"{' and '.join(edges)} edge{'s' * (len(edges) > 1)}" if edges else "edges"
    return (
        f"{where}: line {line.name!r} lies within its dead band ({band:.3g} px) of the {width}x{height} frame's"
        f" {named}: nothing gets beyond the band on that side, so it can never count a crossing, in or out (each"
        " needs both sides); move it further in or lower its hysteresis"
    )


def check_fit(
    zones: tuple[Zone, ...],
    lines: tuple[Line, ...],
    width: int,
    height: int,
    old_zones: tuple[Zone, ...] = (),
    old_lines: tuple[Line, ...] = (),
    *,
    ignore_zones: tuple[IgnoreZone, ...] = (),
    old_ignore_zones: tuple[IgnoreZone, ...] = (),
) -> None:
    """ValueError naming the first zone, line or ignore zone in pixels with a point outside a ``width`` x
    ``height`` frame, or the first line that could never count in it (`never_counts`).

    Those among ``old_zones``, ``old_lines`` and ``old_ignore_zones`` (the stream's own, as they are) are not
    checked: one the stream already leaves out for not fitting, or says never counts, stays so until a frame
    it fits comes.
    """
    for i, ignore_zone in enumerate(ignore_zones):
        if ignore_zone not in old_ignore_zones:
            resolve(ignore_zone.points, ignore_zone.units, width, height, f"ignore_zones[{i}].points")
    for i, zone in enumerate(zones):
        if zone not in old_zones:
            resolve(zone.points, zone.units, width, height, f"zones[{i}].points")
    for i, line in enumerate(lines):
        if line not in old_lines:
            points = resolve(line.points, line.units, width, height, f"lines[{i}].points")
            if never := never_counts(line, points, width, height, f"lines[{i}]"):
                raise ValueError(never)


def _tables(value: object, key: str) -> list[Mapping[str, Any]]:
    if not isinstance(value, list | tuple) or not all(isinstance(t, Mapping) for t in value):
        # Said without a syntax: the same words answer a config file (TOML) and an API body (JSON).
        raise ValueError(f"{key}: expected a list, each item with a name and points; got {echoed(value)}")
    if len(value) > MAX_SHAPES:
        raise ValueError(f"{key}: at most {MAX_SHAPES} per stream, got {len(value)}")
    return list(value)


def _zone(table: Mapping[str, Any], where: str) -> Zone:
    refuse_unknown_keys(table, ("name", "points", "units", "classes", "min_share", "loiter_s"), where)
    units = _units(table, where)
    points = _polygon(table, units, where)
    min_share = _min_share(table, DEFAULT_MIN_SHARE, where)
    loiter_s = table.get("loiter_s")
    if loiter_s is not None and not 0 < _number(loiter_s, f"{where}.loiter_s", "seconds above 0") < math.inf:
        raise ValueError(f"{where}.loiter_s: expected seconds above 0, got {echoed(loiter_s)}")
    return Zone(
        _name(table, where),
        points,
        units,
        _classes(table, where),
        min_share,
        None if loiter_s is None else float(loiter_s),
    )


def _ignore_zone(table: Mapping[str, Any], where: str) -> IgnoreZone:
    refuse_unknown_keys(table, ("name", "points", "units", "classes", "min_share"), where)
    units = _units(table, where)
    points = _polygon(table, units, where)
    min_share = _min_share(table, DEFAULT_IGNORE_SHARE, where)
    return IgnoreZone(_name(table, where), points, units, _classes(table, where), min_share)


def _polygon(table: Mapping[str, Any], units: Units, where: str) -> tuple[Point, ...]:
    """A zone's corners, each given once, checked to make a simple polygon with area."""
    # A corner given twice in a row (a double click) is one corner, and so is the first one given again
    # at the end, the way many tools close a polygon.
    given = _points(table, units, 3, where)
    points = tuple(p for i, p in enumerate(given) if i == 0 or p != given[i - 1])
    if len(points) > 1 and points[-1] == points[0]:
        points = points[:-1]
    if len(set(points)) >= 3 and _self_intersects(points):
        raise ValueError(f"{where}.points: the polygon crosses itself; list its corners in order around it")
    area = abs(_area(points))
    if len(set(points)) < 3 or area < 1e-9:
        raise ValueError(f"{where}.points: the polygon is degenerate (it has no area)")
    if hint := _fractions_hint(table, points):
        raise ValueError(f"{where}.points: the polygon lies within a pixel of the frame's top-left corner; {hint}")
    least = MIN_ZONE_AREA[units.value]
    if area < least:
        size = "square pixels" if units is Units.PX else "of the frame"
        raise ValueError(f"{where}.points: the polygon is too small: its area is {area:.3g} {size}, under {least:g}")
    return points


def _min_share(table: Mapping[str, Any], default: float, where: str) -> float:
    min_share = table.get("min_share", default)
    if not 0 < _number(min_share, f"{where}.min_share", "a share above 0 and at most 1") <= 1:
        raise ValueError(f"{where}.min_share: expected a share above 0 and at most 1, got {echoed(min_share)}")
    return float(min_share)


def _line(table: Mapping[str, Any], where: str) -> Line:
    refuse_unknown_keys(table, ("name", "points", "units", "classes", "anchor", "hysteresis", "confirm_s"), where)
    units = _units(table, where)
    points = _points(table, units, 2, where)
    # Fractions that forgot their units are told so first, as a zone's are: as pixels most such lines
    # are also under a pixel long, but that is not what to fix. Not a line with no length as fractions
    # either (two points the same): that is what to fix there.
    long_as_fractions = all(math.dist(a, b) >= MIN_SEGMENT[Units.FRACTION.value] for a, b in itertools.pairwise(points))
    if long_as_fractions and (hint := _fractions_hint(table, points)):
        raise ValueError(
            f"{where}.points: the line lies within a pixel of the frame's top-left corner, where nothing crosses it; "
            f"{hint}"
        )
    shortest = MIN_SEGMENT[units.value]
    if any(math.dist(a, b) < shortest for a, b in itertools.pairwise(points)):
        unit = "pixel" if units is Units.PX else "thousandth of the frame"
        raise ValueError(
            f"{where}.points: two consecutive points are the same or less than a {unit} apart; a line needs length"
        )
    anchor = table.get("anchor", Anchor.BOTTOM.value)
    if not isinstance(anchor, str) or anchor not in {a.value for a in Anchor}:
        raise ValueError(f"{where}.anchor: expected bottom or centre, got {echoed(anchor)}")
    hysteresis = table.get("hysteresis", DEFAULT_HYSTERESIS)
    expected = "a fraction of the frame from 0 to 0.25"
    if not 0 <= _number(hysteresis, f"{where}.hysteresis", expected) <= 0.25:
        raise ValueError(f"{where}.hysteresis: expected {expected}, got {echoed(hysteresis)}")
    confirm_s = table.get("confirm_s", DEFAULT_CONFIRM_S)
    expected = f"seconds from 0 to {MAX_CONFIRM_S:g}"
    if not 0 <= _number(confirm_s, f"{where}.confirm_s", expected) <= MAX_CONFIRM_S:
        raise ValueError(f"{where}.confirm_s: expected {expected}, got {echoed(confirm_s)}")
    classes = _classes(table, where)
    return Line(_name(table, where), points, units, classes, Anchor(anchor), float(hysteresis), float(confirm_s))


def _name(table: Mapping[str, Any], where: str) -> str:
    name = table.get("name")
    if refused := unquoted_number(name, f"{where}.name"):
        raise ValueError(refused)
    if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME_CHARS or not set(name) <= NAME_PATTERN_CHARS:
        raise ValueError(
            f"{where}.name: expected 1 to {MAX_NAME_CHARS} {NAME_CHARS_RULE} (names go into MQTT topics and Home"
            f" Assistant ids), got {echoed(name)}"
        )
    return name


def _units(table: Mapping[str, Any], where: str) -> Units:
    units = table.get("units", Units.PX.value)
    if not isinstance(units, str) or units not in {u.value for u in Units}:
        raise ValueError(f"{where}.units: expected px or fraction, got {echoed(units)}")
    return Units(units)


def _fractions_hint(table: Mapping[str, Any], points: Sequence[Point]) -> str | None:
    """The fix for points all from 0 to 1 given without ``units``, else None.

    Without ``units`` they are pixels, all within a pixel of the frame's top-left corner, where nothing
    crosses a line and no zone holds a track: surely fractions with ``units`` forgotten, and such a
    zone or line is refused for it. Given outright, ``units = "px"`` keeps them pixels and says
    nothing of fractions.
    """
    if "units" in table or not all(0 <= x <= 1 and 0 <= y <= 1 for x, y in points):
        return None
    fraction, px = Units.FRACTION.value, Units.PX.value
    return f'without units the points are pixels: did you mean units "{fraction}"? (units "{px}" keeps them pixels)'


def _points(table: Mapping[str, Any], units: Units, least: int, where: str) -> tuple[Point, ...]:
    raw = table.get("points")
    if not isinstance(raw, list | tuple) or not least <= len(raw) <= MAX_POINTS:
        raise ValueError(f"{where}.points: expected {least} to {MAX_POINTS} [x, y] pairs, got {echoed(raw)}")
    points: list[Point] = []
    for pair in raw:
        if not isinstance(pair, list | tuple) or len(pair) != 2:
            raise ValueError(f"{where}.points: expected [x, y] pairs of numbers, got {echoed(pair)}")
        x, y = (_number(v, f"{where}.points", "[x, y] pairs of numbers") for v in pair)
        if not (math.isfinite(x) and math.isfinite(y)):
            raise ValueError(f"{where}.points: expected [x, y] pairs of numbers, got {echoed(pair)}")
        high = 1.0 if units is Units.FRACTION else math.inf
        if not (0 <= x <= high and 0 <= y <= high):
            frame = "from 0 to 1 (fractions of the frame)" if units is Units.FRACTION else "at least 0 (pixels)"
            raise ValueError(f"{where}.points: ({x:g}, {y:g}) is outside the frame; coordinates are {frame}")
        points.append((x, y))
    return tuple(points)


def _number(value: object, where: str, expected: str) -> float:
    """``value`` as a float; ValueError for anything else, an integer too large for one included."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{where}: expected {expected}, got {echoed(value)}")
    try:
        return float(value)
    except OverflowError:
        raise ValueError(f"{where}: expected {expected}, got a number too large") from None


def _classes(table: Mapping[str, Any], where: str) -> tuple[str, ...]:
    value = table.get("classes", [])
    if not isinstance(value, list | tuple) or not all(isinstance(name, str) and name for name in value):
        raise ValueError(f"{where}.classes: expected a list of class names, got {echoed(value)}")
    return tuple(dict.fromkeys(value))


def _unique(shapes: Sequence[Zone | Line | IgnoreZone], key: str) -> None:
    seen: set[str] = set()
    for i, shape in enumerate(shapes):
        if shape.name in seen:
            raise ValueError(f"{key}[{i}].name: {shape.name!r} is used twice; names must be unique per stream")
        seen.add(shape.name)


def _area(points: Sequence[Point]) -> float:
    return 0.5 * sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(points, (*points[1:], points[0]), strict=True))


def _self_intersects(points: Sequence[Point]) -> bool:
    """Whether two edges of the closed polygon touch anywhere but at the corner they share."""
    edges = list(zip(points, (*points[1:], points[0]), strict=True))
    count = len(edges)
    for i, j in itertools.combinations(range(count), 2):
        if j == i + 1 or (i == 0 and j == count - 1):
            continue
        if segments_intersect(*edges[i], *edges[j]):
            return True
    return False
