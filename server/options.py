"""Per-stream inference and tracking options, validated once where they enter (TOML, flags, REST).

Everything the worker may do differently for one stream lives in one frozen `StreamOptions`, so a
stream's behaviour is a value that can be compared, logged and sent to a client. `from_mapping` is the
single way in from untrusted input: it names the key that is wrong, so a config file or an API call
gets an error a person can act on instead of a traceback from deep inside the model.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from server.analytics.shapes import (
    IgnoreZone,
    Line,
    Zone,
    did_you_mean,
    echoed,
    parse_ignore_zones,
    parse_lines,
    parse_zones,
)

#: The fewest and most frames a second ``process_fps`` may let through: one every 10 s for a scene that
#: barely changes, and above any camera's rate (a cap over the input's rate caps nothing).
PROCESS_FPS_LIMITS = (0.1, 1000.0)
#: ``process_fps`` for every frame the stream gives (None in Python and JSON): the config file's way to
#: say it, where TOML has no null, over a ``[stream_defaults]`` cap.
EVERY_FRAME = "all"
#: ultralytics' own default; ``max_det`` bounds the work per frame, not the objects a camera can see.
DEFAULT_MAX_DET = 300
#: The largest ``max_det``: ultralytics' NMS keeps at most 30000 candidate boxes (its ``max_nms``), so
#: a stream could never be given more detections than that.
MAX_MAX_DET = 30_000
SEGTRACK = "segtrack"  # segcast's own mask- and appearance-aware tracker (server.tracking.segtrack)
#: segtrack keeps ids through occlusion and frame skipping where the box trackers lose them
#: (docs/benchmarks.md); any of ultralytics' trackers can be picked per stream instead.
DEFAULT_TRACKER = SEGTRACK
MIN_IMGSZ_PX = 32
MAX_IMGSZ_PX = 4096
#: ``imgsz`` for the size the model was trained or exported at (None in Python and JSON): the config
#: file's way to say it, where TOML has no null, over a ``[stream_defaults]`` size.
MODEL_IMGSZ = "model"
IMGSZ_STRIDE_PX = 32  # YOLO's largest stride: an input must be a whole number of its cells
#: The largest number a tracker setting takes: thresholds are shares and windows are frames, so
#: this only keeps out infinity and integers no float holds (they break the tracker and JSON).
MAX_TRACKER_NUMBER = 1e9
#: The tracker settings a detection must reach to start a track (ByteTrack's and segtrack's names).
START_THRESHOLDS = ("track_high_thresh", "new_track_thresh")
#: The lowest ``conf``. The start thresholds follow ``conf`` down (`StreamOptions.tracker_config`), and
#: at 0 the model reports every candidate box however faint: on the occlusion scene (seed 11) the bundled
#: model gave 203 detections a frame for 2.3 objects, against 2.8 at 0.01, and each started a track
#: (MOTA -27.6 and 272 ms a frame, against 0.83 and 30 ms at 0.01); a review saw every stream of the
#: node slow with it. 0.01 is still well under the trackers' ``track_low_thresh`` (0.1) for faint objects.
MIN_CONF = 0.01
#: Tracker settings that pick the tracker or wire it to a model; segcast sets these itself.
_RESERVED_TRACKER_KEYS = frozenset({"tracker_type", "model", "device", "with_reid"})
#: The words a tracker setting may be, by key: ultralytics checks ``gmc_method`` (case-sensitive, in
#: ``ultralytics/trackers/utils/gmc.py``) only when the tracker is built, so any other word left a stream
#: live that failed on every frame. The one word setting of its trackers' yamls segcast does not set itself.
_TRACKER_CHOICES: dict[str, tuple[str, ...]] = {"gmc_method": ("sparseOptFlow", "orb", "sift", "ecc", "none")}

TrackerValue = float | int | bool | str


@cache
def tracker_defaults(kind: str) -> dict[str, TrackerValue]:
    """The default settings of tracker ``kind`` (ultralytics' ``<kind>.yaml``); raises ValueError if unknown.

    segtrack's are answered before ultralytics is imported: it brings PyTorch (seconds, tens of them on a busy
    machine), which a command that only reads a config file (``segcast split``) never needs otherwise.
    """
    if kind == SEGTRACK:
        from server.tracking.segtrack_settings import SEGTRACK_DEFAULTS

        return dict(SEGTRACK_DEFAULTS)
    from ultralytics.trackers.track import TRACKER_MAP
    from ultralytics.utils import YAML
    from ultralytics.utils.checks import check_yaml

    if kind not in TRACKER_MAP:
        stem = kind.removesuffix(".yaml")  # ultralytics' own spelling, track(tracker="bytetrack.yaml")
        hint = f" (the name, without .yaml: {stem!r})" if stem != kind and stem in tracker_kinds() else ""
        raise ValueError(f"tracker: unknown tracker {kind!r}; choose one of {', '.join(tracker_kinds())}{hint}")
    return dict(YAML.load(check_yaml(f"{kind}.yaml")))


def tracker_kinds() -> tuple[str, ...]:
    """Every tracker accepted by ``tracker``: ultralytics' and segcast's own."""
    from ultralytics.trackers.track import TRACKER_MAP

    return tuple(sorted({*TRACKER_MAP, SEGTRACK}))


#: What a class's own filter may set, over the stream's value of the same name.
CLASS_FILTER_KEYS = ("conf", "min_area", "max_area")
#: Frigate's filter keys that people moving over write, with what segcast calls them.
FRIGATE_KEYS = {
    "threshold": "; Frigate's threshold and min_score are segcast's conf",
    "min_score": "; Frigate's threshold and min_score are segcast's conf",
    "mask": "; Frigate's object masks are segcast's ignore_zones (with the classes each ignores)",
    "min_ratio": "; segcast has no bound on a box's shape (Frigate's min_ratio and max_ratio)",
    "max_ratio": "; segcast has no bound on a box's shape (Frigate's min_ratio and max_ratio)",
}


@dataclass(frozen=True, slots=True)
class ClassFilter:
    """One class's own thresholds, over the stream's (Frigate's ``objects.filters.<class>``); None keeps the stream's.

    A person needs a surer detection than a car before it raises an alarm, and a car is never as small
    as a far person: one ``conf`` and one ``min_area`` for every class made people pick between false
    alarms and missed objects.
    """

    conf: float | None = None
    min_area: float | None = None
    max_area: float | None = None

    def to_json(self) -> dict[str, float]:
        return {key: value for key in CLASS_FILTER_KEYS if (value := getattr(self, key)) is not None}


@dataclass(frozen=True, slots=True)
class StreamOptions:
    """How one stream is inferred and tracked.

    ``classes`` are class *names* (empty: every class the model knows); names the model does not
    know are reported by the worker on the stream, since the model is not loaded when options are
    read. ``imgsz`` None (``"model"`` in a config file) means the size the model was trained or
    exported at. ``tracker_settings`` override keys of the tracker's ultralytics yaml (thresholds,
    ``track_buffer``...), as sorted pairs so the value stays hashable; ``track_buffer`` keeps
    ultralytics' meaning of frames at 30 fps, which segcast turns into a time and re-applies at the
    rate the stream is really processed. ``process_fps`` None (``"all"`` in a config file) sends the
    model every frame it can take.
    """

    conf: float = 0.25
    iou: float = 0.7
    classes: tuple[str, ...] = ()
    imgsz: int | None = None
    max_det: int = DEFAULT_MAX_DET
    tracker: str = DEFAULT_TRACKER
    tracker_settings: tuple[tuple[str, TrackerValue], ...] = field(default=())
    #: One NMS over all classes: a model unsure between two classes would otherwise report an object
    #: twice, and the class-blind trackers would give it two tracks (measured on the generated scene:
    #: IDF1 0.70 -> 0.78 and no id switches with the bundled model). Off: ultralytics' per-class NMS.
    agnostic_nms: bool = True
    #: Zones and lines watched on this stream (server.analytics); a list given replaces the base's.
    zones: tuple[Zone, ...] = ()
    lines: tuple[Line, ...] = ()
    #: At most this many frames a second of media time reach the model (Frigate's ``detect: fps``): a
    #: driveway camera of 30 fps needs 5, and the inference it leaves goes to the other streams.
    process_fps: float | None = None
    #: The least and most share of the frame an object's box may cover to be seen at all (Frigate's
    #: ``min_area`` and ``max_area``): a detection outside them never reaches the tracker.
    min_area: float = 0.0
    max_area: float = 1.0
    #: Where the stream sees nothing (of the classes each names): `IgnoreZone`.
    ignore_zones: tuple[IgnoreZone, ...] = ()
    #: Classes' own ``conf``, ``min_area`` and ``max_area``, by class name, sorted (hashable as the rest).
    class_filters: tuple[tuple[str, ClassFilter], ...] = ()

    @classmethod
    def from_mapping(
        cls, values: Mapping[str, Any], base: StreamOptions | None = None, *, keep_settings: bool = False
    ) -> StreamOptions:
        """Options from a TOML table or JSON object, over ``base`` (the global defaults) for keys not given.

        Raises ValueError whose message starts with the offending key. ``tracker_settings`` given here
        are merged over those of ``base`` when the tracker kind stays the same, and replace them when it
        changes: the defaults' settings are their tracker's. A setting given as None (the API's null; TOML
        has none) is taken out: the tracker's own default holds for it again, not a ``[stream_defaults]``
        value, which a stream's options hold as their own. ``keep_settings``: ``base`` is the stream's own
        options, which a change (a PATCH) leaves as they are but for the keys it gives, so a new tracker
        keeps those of them it also takes (`_settings_also_taken`).
        """
        base = base or cls()
        known = sorted(f.name for f in dataclasses.fields(cls))
        unknown = sorted(set(values) - set(known))
        if unknown:
            meant = FRIGATE_KEYS.get(unknown[0]) or did_you_mean(unknown[0], known)
            raise ValueError(f"{unknown[0]}: unknown stream option; known options are {', '.join(known)}{meant}")
        conf = _conf(values, base.conf)
        iou = _fraction(values, "iou", base.iou)
        classes = _classes(values["classes"]) if "classes" in values else base.classes
        imgsz = _imgsz(values["imgsz"]) if "imgsz" in values else base.imgsz
        max_det = _max_det(values.get("max_det", base.max_det))
        tracker = values.get("tracker", base.tracker)
        if not isinstance(tracker, str):
            raise ValueError(f"tracker: expected a tracker name, got {echoed(tracker)}")
        tracker_defaults(tracker)  # raises for an unknown kind
        if tracker == base.tracker:
            inherited = dict(base.tracker_settings)
        else:
            inherited = dict(_settings_also_taken(tracker, base)) if keep_settings else {}
        overrides = values.get("tracker_settings", {})
        if not isinstance(overrides, Mapping):
            raise ValueError(f"tracker_settings: expected a table of tracker settings, got {echoed(overrides)}")
        settings = _tracker_settings(tracker, {**inherited, **overrides})
        agnostic = values.get("agnostic_nms", base.agnostic_nms)
        if not isinstance(agnostic, bool):
            raise ValueError(f"agnostic_nms: expected true or false, got {echoed(agnostic)}")
        zones = parse_zones(values["zones"]) if "zones" in values else base.zones
        lines = parse_lines(values["lines"]) if "lines" in values else base.lines
        process_fps = _process_fps(values["process_fps"]) if "process_fps" in values else base.process_fps
        min_area, max_area = (
            _area_share(values, "min_area", base.min_area),
            _area_share(values, "max_area", base.max_area),
        )
        if min_area >= max_area:
            key = "max_area" if "max_area" in values else "min_area"
            raise ValueError(
                f"{key}: min_area ({min_area:g}) must be below max_area ({max_area:g}), or no object is ever seen"
            )
        ignore_zones = parse_ignore_zones(values["ignore_zones"]) if "ignore_zones" in values else base.ignore_zones
        if "class_filters" in values:
            class_filters = _class_filters(values["class_filters"], base.class_filters, min_area, max_area)
        else:  # the base's, under the stream's bounds as given
            class_filters = _still_bounded(base.class_filters, min_area, max_area, given=False)
        _check_shape_classes(zones, lines, classes, values)
        return cls(
            conf,
            iou,
            classes,
            imgsz,
            max_det,
            tracker,
            settings,
            agnostic,
            zones,
            lines,
            process_fps,
            min_area,
            max_area,
            ignore_zones,
            class_filters,
        )

    @property
    def lowest_conf(self) -> float:
        """The lowest confidence any class the stream tracks is reported at: its ``conf``, or a class filter's
        under it. One of a class its ``classes`` leaves out lowers nothing: the model's call and the tracks'
        start thresholds would follow it down for a class nobody sees (one of ``[stream_defaults]`` may name
        classes a stream does not track, as an ignore zone may)."""
        tracked = [own.conf for name, own in self.class_filters if not self.classes or name in self.classes]
        return min([self.conf, *(conf for conf in tracked if conf is not None)])

    def tracker_config(self) -> dict[str, TrackerValue]:
        """The full tracker configuration: ultralytics' defaults for the kind with this stream's overrides.

        A track starts only from a detection of at least `START_THRESHOLDS` (0.25 by default): a
        ``conf`` lowered under them for small or distant objects reported nothing new. Where the
        stream does not set them, they follow its ``conf`` down, or a class filter's lower one.
        """
        given = dict(self.tracker_settings)
        config = {**tracker_defaults(self.tracker), **given}
        lowest = self.lowest_conf
        for key in START_THRESHOLDS:
            value = config.get(key)
            if key not in given and isinstance(value, int | float) and lowest < value:
                config[key] = lowest
        return config

    def to_json(self) -> dict[str, object]:
        return {
            "conf": self.conf,
            "iou": self.iou,
            "classes": list(self.classes),
            "imgsz": self.imgsz,
            "max_det": self.max_det,
            "tracker": self.tracker,
            "tracker_settings": dict(self.tracker_settings),
            "agnostic_nms": self.agnostic_nms,
            "zones": [zone.to_json() for zone in self.zones],
            "lines": [line.to_json() for line in self.lines],
            "process_fps": self.process_fps,
            "min_area": self.min_area,
            "max_area": self.max_area,
            "ignore_zones": [zone.to_json() for zone in self.ignore_zones],
            "class_filters": {name: own.to_json() for name, own in self.class_filters},
        }


def _check_shape_classes(
    zones: tuple[Zone, ...], lines: tuple[Line, ...], classes: tuple[str, ...], given: Mapping[str, Any]
) -> None:
    """ValueError for a shape watching a class the stream's own ``classes`` leaves out: it would read 0 forever.

    The message starts with the key of ``given`` that made the conflict, which a PATCH's 400 names: the
    shape's classes where its list is given, else ``classes``, narrowed under shapes the stream had. An
    ignore zone is not held to them: one that ignores a class the stream does not detect harms nothing,
    and one of ``[stream_defaults]`` would otherwise refuse every stream that narrows its classes.
    """
    if not classes:
        return
    named: dict[str, Sequence[Zone | Line]] = {"zones": zones, "lines": lines}
    for key, shapes in named.items():
        for i, shape in enumerate(shapes):
            if not (missing := [name for name in shape.classes if name not in classes]):
                continue
            if key in given or "classes" not in given:
                raise ValueError(
                    f"{key}[{i}].classes: the stream only detects {', '.join(classes)}, not {missing[0]!r}; "
                    "add it to the stream's classes or leave it out of the shape's"
                )
            raise ValueError(
                f"classes: {key.removesuffix('s')} {shape.name!r} counts {missing[0]!r}, which the stream would not "
                f"detect with these classes; add {missing[0]!r} to them or take it out of {key}[{i}].classes"
            )


def _fraction(values: Mapping[str, Any], key: str, default: float, least: float = 0.0) -> float:
    """``values[key]`` (``default`` where absent), a number from ``least`` to 1."""
    value = values.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not least <= value <= 1.0:
        # A word as Python writes it: --conf and --iou show the text typed in its place (server.cli).
        shown = repr(value) if isinstance(value, str) else echoed(value)
        raise ValueError(f"{key}: expected a number from {least:g} to 1, got {shown}")
    return float(value)


def _area_share(values: Mapping[str, Any], key: str, default: float) -> float:
    """``min_area`` or ``max_area``: a `_fraction` of the frame. Frigate's are pixels, and a whole number over 1
    is most likely one of those: the refusal says how to turn it into a share."""
    value = values.get(key, default)
    if (whole := _whole(value)) is not None and whole > 1:
        raise ValueError(
            f"{key}: expected a share of the frame from 0 to 1, got {echoed(value)} (for an area in pixels, divide "
            f"it by the width times the height of the picture it was measured on, Frigate's detect size: "
            f"{echoed(value)} px of 1280x720 is {value / (1280 * 720):.3g})"
        )
    return _fraction(values, key, default)


def _class_filters(
    value: object, base: tuple[tuple[str, ClassFilter], ...], min_area: float, max_area: float
) -> tuple[tuple[str, ClassFilter], ...]:
    """``class_filters`` merged over ``base``'s (``[stream_defaults]``'s, or the stream's own in a change), class by
    class and key by key, as Frigate merges a camera's filters over its global ones; a class or a key given None
    (the API's null; TOML has none) is taken out, back to the stream's values. Each a table of some of
    `CLASS_FILTER_KEYS`, checked as the stream's own keys of those names; a class's area bounds, its own or the
    stream's, must leave room."""
    if not isinstance(value, Mapping):
        raise ValueError(
            f"class_filters: expected a table of class names, each with its {', '.join(CLASS_FILTER_KEYS)}, "
            f"got {echoed(value)}"
        )
    merged = {name: own.to_json() for name, own in base}
    for name, table in value.items():
        where = f"class_filters.{name}"
        if table is None:
            merged.pop(name, None)
            continue
        if not isinstance(table, Mapping) or not table:
            raise ValueError(
                f"{where}: expected a table with {' or '.join(CLASS_FILTER_KEYS)} (null: none), got {echoed(table)}"
            )
        for key in table:
            if key not in CLASS_FILTER_KEYS:
                meant = FRIGATE_KEYS.get(key) or did_you_mean(key, list(CLASS_FILTER_KEYS))
                takes = ", ".join(CLASS_FILTER_KEYS)
                raise ValueError(f"{where}.{key}: unknown key; a class filter takes {takes}{meant}")
        given = {key: item for key, item in table.items() if item is not None}
        try:
            own = ClassFilter(
                _conf(given, 0.0) if "conf" in given else None,
                _area_share(given, "min_area", 0.0) if "min_area" in given else None,
                _area_share(given, "max_area", 1.0) if "max_area" in given else None,
            )
        except ValueError as exc:  # "conf: expected ...": the key within the class filter
            raise ValueError(f"{where}.{exc}") from None
        kept = {key: item for key, item in merged.get(name, {}).items() if key not in table}
        merged[name] = {**kept, **own.to_json()}
        if not merged[name]:
            del merged[name]
    filters = tuple(sorted((name, ClassFilter(**keys)) for name, keys in merged.items()))
    return _still_bounded(filters, min_area, max_area)


def _still_bounded(
    filters: tuple[tuple[str, ClassFilter], ...], min_area: float, max_area: float, given: bool = True
) -> tuple[tuple[str, ClassFilter], ...]:
    """``filters``, once each class's area bounds (its own, else the stream's) are checked to leave room.

    The key named is the class filter's bound where ``given`` (the filters are what is being set), else
    the stream's: the filters were there before (the stream's own, or ``[stream_defaults]``'s).
    """
    for name, own in filters:
        low = min_area if own.min_area is None else own.min_area
        high = max_area if own.max_area is None else own.max_area
        if low >= high:
            lows = f"{name}'s" if own.min_area is not None else "the stream's"
            highs = f"{name}'s" if own.max_area is not None else "the stream's"
            if given:
                key = f"class_filters.{name}.{'min_area' if own.min_area is not None else 'max_area'}"
            else:
                key = "min_area" if own.min_area is None else "max_area"
            raise ValueError(
                f"{key}: {lows} min_area ({low:g}) must be below {highs} max_area ({high:g}), or no {name} is ever seen"
            )
    return filters


def _conf(values: Mapping[str, Any], default: float) -> float:
    """``conf``: a `_fraction` of at least `MIN_CONF`; a value under that floor is told why, so that nobody
    takes it for a typing slip."""
    value = values.get("conf", default)
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value < MIN_CONF:
        raise ValueError(
            f"conf: expected a number from {MIN_CONF:g} to 1, got {echoed(value)} "
            f"(below {MIN_CONF:g} the model's every faint guess is a detection, and starts a track)"
        )
    return _fraction(values, "conf", default, MIN_CONF)


def _whole(value: object) -> int | None:
    """``value`` as an int where it is a whole number, else None: ``64.0`` is one, as JSON Schema counts it,
    and Python clients send a size they computed as a float."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _max_det(value: object) -> int:
    whole = _whole(value)
    if whole is None or not 1 <= whole <= MAX_MAX_DET:
        raise ValueError(f"max_det: expected a whole number from 1 to {MAX_MAX_DET}, got {echoed(value)}")
    return whole


def _imgsz(value: object) -> int | None:
    """A size the model takes as it is: ultralytics rounds any other up to its stride and warns on every frame."""
    if value is None or value == MODEL_IMGSZ:
        return None
    if isinstance(value, str):
        raise ValueError(
            f"imgsz: expected pixels from {MIN_IMGSZ_PX} to {MAX_IMGSZ_PX}, or {MODEL_IMGSZ!r} for the model's own "
            f"size, got {value!r}"  # as Python writes it: --imgsz shows the text typed in its place (server.cli)
        )
    whole = _whole(value)
    pixels = "a whole number of pixels" if isinstance(value, float) and whole is None else "pixels"
    if whole is None or not MIN_IMGSZ_PX <= whole <= MAX_IMGSZ_PX:
        raise ValueError(f"imgsz: expected {pixels} from {MIN_IMGSZ_PX} to {MAX_IMGSZ_PX}, got {echoed(value)}")
    if whole % IMGSZ_STRIDE_PX:
        nearest = max(IMGSZ_STRIDE_PX, round(whole / IMGSZ_STRIDE_PX) * IMGSZ_STRIDE_PX)
        raise ValueError(f"imgsz: expected a multiple of {IMGSZ_STRIDE_PX} pixels, got {echoed(value)} (try {nearest})")
    return whole


def _process_fps(value: object) -> float | None:
    """A cap in frames a second, or None for every frame (``"all"``, TOML having no null)."""
    if value is None or value == EVERY_FRAME:
        return None
    low, high = PROCESS_FPS_LIMITS
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ValueError(
            f"process_fps: expected frames a second from {low:g} to {high:g}, or {EVERY_FRAME!r} for every frame, "
            f"got {echoed(value)}"
        )
    return float(value)


def _classes(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, list | tuple) or not all(isinstance(name, str) and name for name in value):
        raise ValueError(f"classes: expected a list of class names, got {echoed(value)}")
    return tuple(dict.fromkeys(value))


def _tracker_settings(kind: str, overrides: Mapping[str, Any]) -> tuple[tuple[str, TrackerValue], ...]:
    defaults = tracker_defaults(kind)
    checked: dict[str, TrackerValue] = {}
    for key, value in overrides.items():
        if key in _RESERVED_TRACKER_KEYS or key not in defaults:
            allowed = sorted(set(defaults) - _RESERVED_TRACKER_KEYS)
            meant = did_you_mean(key, allowed)
            raise ValueError(f"tracker_settings.{key}: not a setting of {kind}; it has {', '.join(allowed)}{meant}")
        if value is None:
            continue
        default = defaults[key]
        if isinstance(default, bool):
            ok, expected = isinstance(value, bool), "true or false"
        elif isinstance(default, int):  # frame counts and window lengths: trackers slice and range with them
            whole = _whole(value)  # 60.0 is one, as JSON Schema counts it (imgsz and max_det take it too)
            ok = whole is not None and 0 <= whole <= MAX_TRACKER_NUMBER
            value = whole if ok else value
            expected = f"a whole number like {default!r}"
        elif isinstance(default, float):
            top = 1.0 if _is_share(key) else MAX_TRACKER_NUMBER
            ok = isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= top
            expected = f"a value from 0 to 1 like {default!r}" if top == 1.0 else f"a value like {default!r}"
        elif key in _TRACKER_CHOICES:
            ok, expected = value in _TRACKER_CHOICES[key], f"one of {', '.join(_TRACKER_CHOICES[key])}"
        else:
            ok, expected = isinstance(value, str), f"a value like {default!r}"
        if not ok:
            raise ValueError(f"tracker_settings.{key}: expected {expected}, got {echoed(value)}")
        checked[key] = value
    return tuple(sorted(checked.items()))


def _is_share(key: str) -> bool:
    """Whether tracker setting ``key`` is a share from 0 to 1 (a confidence, an overlap, a likeness, a
    weight of segtrack's): 5 meant for 0.5 was taken, and a stream with such a threshold tracked nothing."""
    return key.endswith(("_thresh", "_thr")) or key in ("min_overlap", "mask_weight")


def _settings_also_taken(kind: str, base: StreamOptions) -> tuple[tuple[str, TrackerValue], ...]:
    """Those of ``base``'s tracker settings that tracker ``kind`` also takes: the same key, with a value it
    accepts, between ultralytics' trackers (ByteTrack's ``track_buffer`` is BoT-SORT's too). None from or
    to segtrack: its settings share some names with theirs, not their meaning (its ``appearance_thresh``
    is a colour likeness, BoT-SORT's a re-identification network's)."""
    if SEGTRACK in (kind, base.tracker):
        return ()
    kept: dict[str, TrackerValue] = {}
    for key, value in base.tracker_settings:
        with contextlib.suppress(ValueError):
            kept.update(_tracker_settings(kind, {key: value}))
    return tuple(sorted(kept.items()))
