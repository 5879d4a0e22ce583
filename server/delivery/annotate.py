"""Drawing tracks on a frame: translucent masks, boxes, "id class conf" labels and trails; zones and lines.

Sizes scale with the frame, so the overlay reads the same on a 320p and a 1080p camera: every width
below is given for `REFERENCE_HEIGHT_PX` and scaled by the frame's shorter side, with floors that
keep thin lines and small text legible on tiny frames. Each track id keeps one colour for its whole
life (derived from the id, not from the order of detections), so a viewer can follow an object by
colour alone.

A track whose geometry cannot be drawn (a coordinate that is NaN, infinite or absurdly far outside
any frame, from a model or tracker gone wrong) is left out of the overlay rather than failing the
whole frame; it is still in the frame's metadata. Labels are drawn with OpenCV's Hershey font, which
knows only ASCII, so class names are folded to ASCII for the picture (see `_label_name`); the JSON
metadata, and the browser viewer that draws from it, keep the real name.
"""

from __future__ import annotations

import colorsys
import dataclasses
import unicodedata
from dataclasses import dataclass

import cv2
import numpy as np

from server.analytics.events import FrameAnalytics
from server.frames import FrameResult, Track

MASK_OPACITY = 0.45
REFERENCE_HEIGHT_PX = 720.0  # the sizes below are for a frame this tall (its shorter side)
BOX_WIDTH_PX = 2.0
OUTLINE_WIDTH_PX = 1.5
TRAIL_WIDTH_PX = 3.0
FONT_SCALE = 0.6  # cv2's Hershey scale at the reference height
MIN_FONT_SCALE = 0.35  # smaller than this Hershey text is unreadable, whatever the frame
LABEL_PAD_PX = 4.0
#: A tag (label, zone or line tag) taller than this share of the picture's height is not drawn at all: at
#: `MIN_FONT_SCALE` a 160x90 picture's tags covered 17% of it and a 64x36 one's 58%, hiding the objects
#: they name, while its boxes, masks and lines still show where they are.
MAX_TAG_HEIGHT_SHARE = 1 / 8
_FONT = cv2.FONT_HERSHEY_SIMPLEX
#: Coordinates further than this from the frame's origin are a bug upstream, not an object: OpenCV
#: refuses them beyond 32 bits, and nothing that far out would show anyway.
MAX_COORDINATE_PX = 1_000_000
_GOLDEN_RATIO = 0.618033988749895

Color = tuple[int, int, int]


@dataclass(frozen=True, slots=True)
class Layers:
    """Which parts of the overlay to draw; all of them by default."""

    masks: bool = True
    boxes: bool = True
    labels: bool = True
    trails: bool = True


ALL_LAYERS = Layers()
ZONE_COLOR: Color = (0, 215, 255)  # amber: distinct from the saturated track colours' outlines
LINE_COLOR: Color = (255, 80, 255)
SHAPE_WIDTH_PX = 3.0
ARROW_LENGTH_PX = 28.0


def track_color(track_id: int) -> Color:
    """A bright BGR colour per id; consecutive ids land far apart on the hue circle."""
    hue = (track_id * _GOLDEN_RATIO) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 1.0)
    return int(b * 255), int(g * 255), int(r * 255)


def scale_for(image: np.ndarray) -> float:
    """How much bigger than at the reference size lines and text are drawn on ``image``."""
    return min(image.shape[:2]) / REFERENCE_HEIGHT_PX


#: Written on the annotated picture of a frame shown without analysis (`annotated_picture`).
UNANALYSED_NOTE = "not analysed: inference unavailable"
UNANALYSED_NOTE_SHORT = "not analysed"  # in a picture too narrow for the whole note
NOTE_COLOR: Color = (0, 165, 255)  # orange, the viewer's warning colour


def annotated_picture(result: FrameResult, size: tuple[int, int] | None = None) -> np.ndarray:
    """The annotated picture of ``result``: its tracks, zones and lines drawn over its frame. A frame shown
    unanalysed (inference unavailable) says so in its bottom left corner instead: a picture without boxes
    must not pass for an empty scene in an ``<img>`` or a player that shows nothing else. At the bottom,
    as the viewer's own notice of it is a strip along the top.

    ``size`` (width, height; None: the frame's own) makes the picture at that size: the frame is scaled
    first and the overlay drawn on the scaled picture, every coordinate scaled alike, so that text and
    line widths are chosen for the picture people see. An overlay drawn at full size and shrunk with the
    picture had labels a few pixels high in a small embed or grid tile.
    """
    image, tracks, analytics = result.frame.image, result.tracks, result.analytics
    height, width = image.shape[:2]
    if size is not None and size != (width, height):
        fx, fy = size[0] / width, size[1] / height
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        tracks = tuple(_scaled_track(track, fx, fy) for track in tracks if _drawable(track))
        if analytics is not None:
            analytics = dataclasses.replace(
                analytics,
                zones=tuple((name, _scaled_points(outline, fx, fy)) for name, outline in analytics.zones),
                lines=tuple((name, _scaled_points(outline, fx, fy)) for name, outline in analytics.lines),
            )
    if result.analysed:
        return annotate(image, tracks, analytics=analytics)
    canvas = image.copy()
    bottom, scale = float(canvas.shape[0]), scale_for(canvas)
    # Drawn even where `MAX_TAG_HEIGHT_SHARE` leaves out every other tag: it is the one thing such a picture
    # must say. Shortened where the whole note would run off the picture's right edge.
    fits = _tag_size(UNANALYSED_NOTE, scale)[0] <= canvas.shape[1]
    note = UNANALYSED_NOTE if fits else UNANALYSED_NOTE_SHORT
    _label(canvas, note, (0.0, bottom, 0.0, bottom), NOTE_COLOR, scale)
    return canvas


def _scaled_points(points: np.ndarray, fx: float, fy: float) -> np.ndarray:
    return np.rint(points * (fx, fy)).astype(np.int32)


def _scaled_track(track: Track, fx: float, fy: float) -> Track:
    """``track``'s geometry in a picture scaled by ``fx`` x ``fy`` (a drawable track only: NaN cannot round).

    Its mask is drawn as its outline scaled, not as a mask filled at full size and shrunk: fill and
    edge are then drawn at the picture's own pixels, as crisp as at full size and within half a pixel
    of the scaled shape.
    """
    x1, y1, x2, y2 = track.box
    return dataclasses.replace(
        track,
        box=(x1 * fx, y1 * fy, x2 * fx, y2 * fy),
        polygon=None if track.polygon is None else _scaled_points(track.polygon, fx, fy),
        trail=tuple((round(x * fx), round(y * fy)) for x, y in track.trail),
    )


def annotate(
    image: np.ndarray,
    tracks: tuple[Track, ...],
    layers: Layers = ALL_LAYERS,
    analytics: FrameAnalytics | None = None,
) -> np.ndarray:
    """A new image with ``tracks`` (and the stream's zones and lines) drawn over ``image``, which is left untouched."""
    scale = scale_for(image)
    canvas = image.copy()
    if analytics is not None:
        draw_analytics(canvas, analytics, scale)
    tracks = tuple(track for track in tracks if _drawable(track))
    if layers.masks:
        _draw_masks(canvas, tracks, scale)
    for track in tracks:
        color = track_color(track.track_id)
        if layers.trails and len(track.trail) > 1:
            _draw_trail(canvas, track.trail, color, scale)
        if layers.boxes:
            x1, y1, x2, y2 = (round(v) for v in track.box)
            cv2.rectangle(canvas, (x1, y1), (x2, y2), color, _width(BOX_WIDTH_PX, scale), cv2.LINE_AA)
    if layers.labels and _tags_fit(canvas, scale):  # last, so no box or trail of another track covers a label
        for track in tracks:
            label = f"{track.track_id} {_label_name(track)} {track.confidence:.2f}"
            _label(canvas, label, track.box, track_color(track.track_id), scale)
    return canvas


def _drawable(track: Track) -> bool:
    """Whether every coordinate of ``track``'s box, outline and trail is finite and within `MAX_COORDINATE_PX`."""
    limit = MAX_COORDINATE_PX
    if not all(-limit <= v <= limit for v in track.box):  # False for NaN too
        return False
    if not all(-limit <= v <= limit for point in track.trail for v in point):
        return False
    polygon = track.polygon
    return polygon is None or polygon.size == 0 or bool(polygon.min() >= -limit and polygon.max() <= limit)


def _label_name(track: Track) -> str:
    """``track``'s class name as the Hershey font can draw it, which would turn each other character into "?".

    Accents are dropped ("café" is "cafe") and other non-ASCII or control characters left out; a
    name with nothing left ("人") is shown as "class <id>".
    """
    folded = unicodedata.normalize("NFKD", track.class_name).encode("ascii", "ignore").decode("ascii")
    name = " ".join("".join(c if c.isprintable() else " " for c in folded).split())
    return name or f"class {track.class_id}"


def _width(reference_px: float, scale: float) -> int:
    return max(1, round(reference_px * scale))


def _draw_masks(canvas: np.ndarray, tracks: tuple[Track, ...], scale: float) -> None:
    polygons = [(t.polygon, track_color(t.track_id)) for t in tracks if t.polygon is not None and len(t.polygon) >= 3]
    if not polygons:
        return
    overlay = canvas.copy()
    for polygon, color in polygons:
        cv2.fillPoly(overlay, [polygon], color, cv2.LINE_AA)
    cv2.addWeighted(overlay, MASK_OPACITY, canvas, 1 - MASK_OPACITY, 0, dst=canvas)
    for polygon, color in polygons:  # a crisp edge shows where the mask ends, even on a busy background
        cv2.polylines(canvas, [polygon], True, color, _width(OUTLINE_WIDTH_PX, scale), cv2.LINE_AA)


def _draw_trail(canvas: np.ndarray, trail: tuple[tuple[int, int], ...], color: Color, scale: float) -> None:
    """Older segments thinner, so the direction of travel shows at a glance."""
    full = TRAIL_WIDTH_PX * scale
    count = len(trail) - 1
    for i in range(count):
        width = max(1, round(full * (i + 1) / count))
        cv2.line(canvas, trail[i], trail[i + 1], color, width, cv2.LINE_AA)


def _font(scale: float) -> tuple[float, int, int]:
    """The Hershey scale, stroke weight and padding of a tag drawn at ``scale``."""
    font_scale = max(FONT_SCALE * scale, MIN_FONT_SCALE)
    return font_scale, max(1, round(font_scale * 2)), max(2, round(LABEL_PAD_PX * scale))


def _tag_size(text: str, scale: float) -> tuple[int, int]:
    """The width and height of ``text``'s tag, padding included."""
    font_scale, weight, pad = _font(scale)
    (w, h), baseline = cv2.getTextSize(text, _FONT, font_scale, weight)
    return w + 2 * pad, h + baseline + 2 * pad


def _tags_fit(canvas: np.ndarray, scale: float) -> bool:
    """Whether tags are drawn on ``canvas`` (`MAX_TAG_HEIGHT_SHARE`); a tag is as tall whatever its text."""
    return _tag_size("0", scale)[1] <= canvas.shape[0] * MAX_TAG_HEIGHT_SHARE


def _label(canvas: np.ndarray, text: str, box: tuple[float, float, float, float], color: Color, scale: float) -> None:
    """A filled tag above the box's top-left corner; inside the box when it touches the top edge."""
    font_scale, weight, pad = _font(scale)
    h = cv2.getTextSize(text, _FONT, font_scale, weight)[0][1]
    tag_w, tag_h = _tag_size(text, scale)
    width = canvas.shape[1]
    x = min(max(0, round(box[0])), max(0, width - tag_w))
    y = round(box[1]) - tag_h
    if y < 0:
        y = max(0, round(box[1]))
    cv2.rectangle(canvas, (x, y), (x + tag_w, y + tag_h), color, cv2.FILLED)
    luminance = 0.114 * color[0] + 0.587 * color[1] + 0.299 * color[2]
    ink = (0, 0, 0) if luminance > 140 else (255, 255, 255)
    cv2.putText(canvas, text, (x + pad, y + pad + h), _FONT, font_scale, ink, weight, cv2.LINE_AA)


def draw_analytics(canvas: np.ndarray, analytics: FrameAnalytics, scale: float) -> None:
    """Zones with "name: objects", lines with an arrow to their "in" side and "name in N out M".

    Drawn under the tracks, so that an object in a zone stays readable. Their tags are left out of a picture
    too small for them (`MAX_TAG_HEIGHT_SHARE`).
    """
    width = _width(SHAPE_WIDTH_PX, scale)
    tags = _tags_fit(canvas, scale)
    zones, lines = analytics.counts.zones, analytics.counts.lines
    for name, outline in analytics.zones:
        cv2.polylines(canvas, [outline], True, ZONE_COLOR, width, cv2.LINE_AA)
        inside = sum(zones.get(name, {}).values())
        x, y = outline[np.argmin(outline[:, 1])]  # the top corner, where a tag least covers the zone
        if tags:
            _label(canvas, f"{name}: {inside}", (float(x), float(y), float(x), float(y)), ZONE_COLOR, scale)
    for name, outline in analytics.lines:
        cv2.polylines(canvas, [outline], False, LINE_COLOR, width, cv2.LINE_AA)
        (ax, ay), (bx, by) = outline[0].astype(float), outline[1].astype(float)
        length = max(float(np.hypot(bx - ax, by - ay)), 1.0)
        mx, my = (ax + bx) / 2, (ay + by) / 2
        nx, ny = -(by - ay) / length, (bx - ax) / length  # the right-hand normal in image axes: the "in" side
        arrow = ARROW_LENGTH_PX * scale
        tip = (round(mx + nx * arrow), round(my + ny * arrow))
        cv2.arrowedLine(canvas, (round(mx), round(my)), tip, LINE_COLOR, width, cv2.LINE_AA, tipLength=0.35)
        by_class = lines.get(name, {})
        crossed_in = sum(d.get("in", 0) for d in by_class.values())
        crossed_out = sum(d.get("out", 0) for d in by_class.values())
        x, y = outline[0]
        if tags:
            _label(
                canvas, f"{name} in {crossed_in} out {crossed_out}", (float(x), float(y), 0.0, 0.0), LINE_COLOR, scale
            )
