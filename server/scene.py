"""Generated scenes with exact ground truth.

The demo, the bundled model's training set and the tracking tests all need video in which every
object's identity, class, box and visible mask are known for every frame. A `Scene` is a pure function
of its seed: objects of a few textured classes enter from one edge, wander through waypoints at
changing speeds, cross and occlude each other, and leave by another edge. Rendering frame ``i`` twice
gives the same pixels, so tests can regenerate the truth for any frame a server reports.

A scene is periodic (`period_frames`): objects are drawn from the seed per period, so a live demo can
run forever while every frame stays reproducible.

Two families: ``"wander"`` (the default: objects roam between random waypoints) and ``"occlusion"``,
which stages what breaks trackers: objects passing behind a near object that stops in the middle,
same-class objects crossing, objects stopping and starting, and an object leaving by an edge and
coming back. An object that is hidden (or out of the frame) is simply absent from a frame's truth,
so a hidden spell is the run of frames an object id is missing between two appearances.

Either family can be filmed by a moving camera instead of a still one: ``"shaking"``, a camera on a
pole in the wind, swaying by a few percent of the frame and now and then knocked to a new rest, so
that everything in the picture, background included, jumps between frames; or ``"panning"``, a
camera that sweeps from side to side, a quarter of the frame each way, so that what is hidden for a
second comes out somewhere else in the picture. The objects move in the world as they would before a
still camera; the truth is what the moving camera sees.
"""

from __future__ import annotations

import itertools
import math
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

CLASS_NAMES: tuple[str, ...] = ("disc", "square", "triangle")
MIN_VISIBLE_PX = 60
#: The smallest side a scene is drawn at: below it the objects, a tenth of the shorter side, vanish.
MIN_SIDE_PX = 64
FAMILIES: tuple[str, ...] = ("wander", "occlusion")
CAMERAS: tuple[str, ...] = ("still", "shaking", "panning")
#: How far a shaking camera sways (each of two swings) and how far a knock moves its rest, as shares
#: of the frame's shorter side.
SWAY_SHARE, KNOCK_SHARE = 0.025, 0.04
#: How far a panning camera turns each way, as a share of the frame's width, and how long a sweep
#: there and back takes, in frames.
PAN_SHARE, PAN_PERIOD = 0.25, 150
#: The background is drawn this many pixels at a time, so its float working copy and noise stay small
#: beside the picture (drawn whole, a panning 4K scene's float64 noise alone was 0.8 GB).
_BACKGROUND_BAND_PX = 1 << 16


@dataclass(frozen=True, slots=True)
class TrueObject:
    """Ground truth for one object in one frame: only the part a camera would see."""

    object_id: int
    class_id: int
    box: tuple[int, int, int, int]  # x1, y1, x2, y2 of the visible mask, inclusive-exclusive
    mask: np.ndarray  # bool, frame-sized, visible pixels only
    occluded_fraction: float  # 0 = fully visible, 1 = hidden

    @property
    def class_name(self) -> str:
        return CLASS_NAMES[self.class_id]

    @property
    def visibility(self) -> float:
        """The share of the object's in-frame area not hidden behind nearer objects."""
        return 1.0 - self.occluded_fraction


@dataclass(frozen=True, slots=True)
class _Actor:
    """One object's identity, look and trajectory within a period."""

    object_id: int
    class_id: int
    radius: float
    color: tuple[int, int, int]
    stripe_color: tuple[int, int, int]
    stripe_period: float
    stripe_angle: float
    z: float
    spin: float
    key_frames: tuple[float, ...]
    key_points: tuple[tuple[float, float], ...]

    def position(self, t: float) -> tuple[float, float] | None:
        """Centre at frame ``t`` (eased between waypoints, so speed changes), or None if not in play."""
        if t < self.key_frames[0] or t > self.key_frames[-1]:
            return None
        for i in range(len(self.key_frames) - 1):
            t0, t1 = self.key_frames[i], self.key_frames[i + 1]
            if t <= t1:
                u = (t - t0) / (t1 - t0)
                u = u * u * (3 - 2 * u)
                (x0, y0), (x1, y1) = self.key_points[i], self.key_points[i + 1]
                return x0 + (x1 - x0) * u, y0 + (y1 - y0) * u
        return None


class Scene:
    """A deterministic, endlessly repeating scene of moving textured shapes.

    `render(i)` returns the BGR frame and its ground truth. Object ids are unique across periods
    (period ``p`` uses ids from ``p * 1000``), so a looping demo never reuses an id for a new object.
    """

    def __init__(
        self,
        seed: int = 0,
        width: int = 640,
        height: int = 384,
        fps: int = 15,
        period_frames: int = 450,
        objects_per_period: int = 7,
        family: str = "wander",
        camera: str = "still",
    ) -> None:
        if width < MIN_SIDE_PX or height < MIN_SIDE_PX:
            raise ValueError(f"a scene needs at least {MIN_SIDE_PX}x{MIN_SIDE_PX} pixels")
        if seed < 0:
            raise ValueError(f"seed: must be 0 or more, got {seed}")
        if family not in FAMILIES:
            raise ValueError(f"family: expected one of {', '.join(FAMILIES)}, got {family!r}")
        if camera not in CAMERAS:
            raise ValueError(f"camera: expected one of {', '.join(CAMERAS)}, got {camera!r}")
        self.seed = seed
        self.width = width
        self.height = height
        self.fps = fps
        self.period_frames = period_frames
        self.objects_per_period = objects_per_period
        self.family = family
        self.camera = camera
        self._motion = _camera_motion(camera, seed, width, height)
        #: The world is wider than the frame by what the camera can move, so it never films its edge.
        self._margin = self._motion.reach if self._motion else 0
        self._background = self._make_background()
        #: How many periods before a frame's own can still have objects in play in it.
        self._reach_periods = int(self._longest_play_frames() // period_frames)
        #: The periods drawn last, least recently used first: a frame needs its own and those it reaches.
        self._periods: OrderedDict[int, list[_Actor]] = OrderedDict()
        self._periods_kept = self._reach_periods + 3

    def render(self, index: int) -> tuple[np.ndarray, list[TrueObject]]:
        """Frame ``index`` as a BGR image and the objects visible in it, nearest first."""
        x, y = self.camera_offset(index)
        m = self._margin
        image = self._background[m + y : m + y + self.height, m + x : m + x + self.width].copy()
        placed, truths, _ = self._layout(index)
        for actor, full in placed:
            self._paint(image, actor, full, index)
        return image, truths

    def whole_masks(self, index: int) -> Iterator[tuple[int, int, np.ndarray]]:
        """Each object in play at frame ``index`` (its id, its class id, its mask), whole: the parts
        hidden behind nearer objects or outside the picture's edge are not cut away, where `render`'s
        objects are what shows. The truth a line crossing made behind another object is judged by
        (tools/analytics_report.py). An object wholly outside the picture has an empty mask."""
        for actor in self._actors_at(index):
            yield actor.object_id, actor.class_id, self._shape_mask(actor, index)

    def camera_offset(self, index: int) -> tuple[int, int]:
        """How far the camera has moved from its still position at frame ``index`` (x, y pixels):
        everything it films appears moved the other way."""
        return self._motion.offset(index) if self._motion else (0, 0)

    def visibility(self, index: int) -> dict[int, float]:
        """Every object with any part inside frame ``index``, and the share of that part one can see.

        Objects hidden behind nearer ones are here with 0.0 (or a sliver too small to count); they are
        the ones missing from `render`'s truth while still in the frame.
        """
        return self._layout(index)[2]

    def _layout(self, index: int) -> tuple[list[tuple[_Actor, np.ndarray]], list[TrueObject], dict[int, float]]:
        placed = []
        for actor in self._actors_at(index):
            full = self._shape_mask(actor, index)
            if full.any():
                placed.append((actor, full))
        placed.sort(key=lambda entry: entry[0].z)  # far to near: nearer objects paint over
        covered = np.zeros((self.height, self.width), dtype=bool)
        truths: list[TrueObject] = []
        shares: dict[int, float] = {}
        for actor, full in reversed(placed):  # near to far, to know what is hidden
            visible = full & ~covered
            covered |= full
            area = cv2.countNonZero(visible.view(np.uint8))
            full_area = cv2.countNonZero(full.view(np.uint8))
            shares[actor.object_id] = area / full_area
            if area < MIN_VISIBLE_PX:
                continue
            x, y, width, height = cv2.boundingRect(visible.view(np.uint8))
            box = (x, y, x + width, y + height)
            occluded = 1.0 - area / max(full_area, 1)
            truths.append(TrueObject(actor.object_id, actor.class_id, box, visible, occluded))
        return placed, truths, shares

    def frames(self, count: int, start: int = 0) -> Iterator[np.ndarray]:
        """Just the images of ``count`` frames, for writers and sources."""
        for index in range(start, start + count):
            yield self.render(index)[0]

    # -- generation -----------------------------------------------------------------------------

    def _actors_at(self, index: int) -> list[_Actor]:
        """The objects in play at frame ``index``: its own period's, then those still on their way
        out from each earlier period that can reach it (a slow object's play can outlast two)."""
        period = index // self.period_frames
        actors = []
        for drawn in range(period, max(-1, period - self._reach_periods - 1), -1):
            local = index - drawn * self.period_frames
            actors += [a for a in self._period(drawn) if a.position(local) is not None]
        return actors

    def _period(self, period: int) -> list[_Actor]:
        actors = self._periods.get(period)
        if actors is None:
            rng = np.random.default_rng((self.seed, period))
            if self.family == "occlusion":
                actors = _OcclusionStager(self, rng, period * 1000).actors()
            else:
                actors = [self._make_actor(rng, period * 1000 + n, n) for n in range(self.objects_per_period)]
            self._periods[period] = actors
            if len(self._periods) > self._periods_kept:
                self._periods.popitem(last=False)  # the least recently used, never the one just drawn
        else:
            self._periods.move_to_end(period)
        return actors

    def _longest_play_frames(self) -> float:
        """An upper bound on how long after its period begins an object can still be in play, from the
        ranges `_make_actor` and `_OcclusionStager` draw from: speeds scale with the width alone, so
        in a tall scene objects crawl, and a play can last several periods."""
        w, h, span = self.width, self.height, float(self.period_frames)
        if self.family == "occlusion":
            # The latest pass is at 0.6 of the period, half its leg at most 106 frames after, then a
            # pause of up to 25 frames and the way out at 3 px a frame, shorter than w + h.
            return span + 106 + 25 + max(10.0, (w + h) / 3.0)
        margin = 0.12 * min(w, h) * 1.2 * 1.2
        longest_leg = math.hypot(w + 2 * margin, h + 2 * margin) / (2.0 * w / 640)
        return span + 20 + 3 * max(8.0, longest_leg)  # the last start, then at most three legs

    def _make_actor(self, rng: np.random.Generator, object_id: int, slot: int) -> _Actor:
        w, h = self.width, self.height
        radius = float(rng.uniform(0.07, 0.12) * min(w, h) * 1.2)
        margin = radius * 1.2
        entry_edge, exit_edge = rng.choice(4, size=2, replace=False)
        points = [self._edge_point(rng, int(entry_edge), margin)]
        for _ in range(int(rng.integers(1, 3))):
            points.append((float(rng.uniform(0.15, 0.85) * w), float(rng.uniform(0.2, 0.8) * h)))
        points.append(self._edge_point(rng, int(exit_edge), margin))
        # Start times are spread over the period so that a few objects are always in view.
        start = slot * self.period_frames / self.objects_per_period + rng.uniform(0, 20)
        frames = [float(start)]
        for a, b in itertools.pairwise(points):
            speed = rng.uniform(2.0, 5.5) * w / 640  # px per frame, different per leg
            frames.append(frames[-1] + max(8.0, math.dist(a, b) / speed))
        return _look(rng, object_id, radius, frames, points)

    def _edge_point(self, rng: np.random.Generator, edge: int, margin: float) -> tuple[float, float]:
        w, h = self.width, self.height
        along = float(rng.uniform(0.2, 0.8))
        return [
            (along * w, -margin),
            (w + margin, along * h),
            (along * w, h + margin),
            (-margin, along * h),
        ][edge]

    def _make_background(self) -> np.ndarray:
        """The world behind the objects, drawn a band of rows at a time.

        Every pixel gets the value one pass over the whole picture gave (the recorded figures and
        the bundled model's training stills depend on it): the same float32 waves, the noise drawn
        in the same order, band after band, the same grid and rounding.
        """
        rng = np.random.default_rng((self.seed, 0xBAC))
        height, width = self.height + 2 * self._margin, self.width + 2 * self._margin
        xs = np.arange(width, dtype=np.float32)
        tint = rng.uniform(60, 140, size=3)
        background = np.empty((height, width, 3), dtype=np.uint8)
        rows = max(1, _BACKGROUND_BAND_PX // width)
        for top in range(0, height, rows):
            ys = np.arange(top, min(top + rows, height), dtype=np.float32)[:, None]
            band = np.empty((len(ys), width, 3), dtype=np.float32)
            for c in range(3):
                band[..., c] = tint[c] + 25 * np.sin(xs / 57.0 + c) + 20 * np.cos(ys / 43.0 - c)
            band += rng.normal(0, 6, size=band.shape)
            # A faint floor grid gives the scene structure without looking like any object class.
            band[-top % 48 :: 48, :, :] *= 0.85
            band[:, ::48, :] *= 0.85
            background[top : top + len(ys)] = np.clip(band, 0, 255, out=band).astype(np.uint8)
        return background

    # -- rendering ------------------------------------------------------------------------------

    def _outline(self, actor: _Actor, index: int) -> np.ndarray | None:
        local = index - (actor.object_id // 1000) * self.period_frames  # time in the actor's own period
        centre = actor.position(local)
        if centre is None:
            return None
        cx, cy = centre
        r = actor.radius
        angle = actor.spin * local
        if actor.class_id == 0:
            sides, phase, scale = 48, 0.0, 1.0
        elif actor.class_id == 1:
            sides, phase, scale = 4, math.pi / 4, 1.0
        else:
            sides, phase, scale = 3, -math.pi / 2, 1.15
        theta = phase + angle + np.arange(sides) * 2 * math.pi / sides
        x, y = self.camera_offset(index)
        pts = np.stack([cx - x + scale * r * np.cos(theta), cy - y + scale * r * np.sin(theta)], axis=1)
        return np.round(pts).astype(np.int32)

    def _shape_mask(self, actor: _Actor, index: int) -> np.ndarray:
        mask = np.zeros((self.height, self.width), dtype=np.uint8)
        outline = self._outline(actor, index)
        if outline is not None:
            cv2.fillPoly(mask, [outline], 1)
        return mask.astype(bool)

    def _paint(self, image: np.ndarray, actor: _Actor, mask: np.ndarray, index: int) -> None:
        ys, xs = pixels_of(mask)
        x, y = self.camera_offset(index)  # the texture is painted in the world, not on the lens
        xs, ys = xs + x, ys + y
        c, s = math.cos(actor.stripe_angle), math.sin(actor.stripe_angle)
        phase = (xs * c + ys * s) / actor.stripe_period
        stripes = (np.floor(phase).astype(np.int64) % 2).astype(bool)
        colors = np.where(stripes[:, None], actor.stripe_color, actor.color).astype(np.int16)
        shade = (8 * np.sin(xs / 5.0 + ys / 7.0)).astype(np.int16)[:, None]
        image[ys - y, xs - x] = np.clip(colors + shade, 0, 255).astype(np.uint8)
        outline = self._outline(actor, index)
        if outline is not None:
            dark = tuple(int(v * 0.5) for v in actor.color)
            cv2.polylines(image, [outline], True, dark, max(1, self.width // 320), cv2.LINE_AA)


def pixels_of(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices of a frame-sized bool mask's set pixels, as ``np.nonzero`` gives them.

    They are looked for within the mask's bounding box only: searching the whole frame for every
    shape cost half a render, and most of a run of tools/analytics_report.py's truth.
    """
    left, top, width, height = cv2.boundingRect(mask.view(np.uint8))
    ys, xs = np.nonzero(mask[top : top + height, left : left + width])
    return ys + top, xs + left


def _camera_motion(camera: str, seed: int, width: int, height: int) -> _Shake | _Pan | None:
    if camera == "shaking":
        return _Shake(seed, min(width, height))
    if camera == "panning":
        return _Pan(seed, width)
    return None


class _Pan:
    """A panning camera's path: a sweep from side to side, eased at each end as a turning head is."""

    def __init__(self, seed: int, width: int) -> None:
        self.swing = PAN_SHARE * width
        self.reach = math.ceil(self.swing) + 1
        self.phase = float(np.random.default_rng((seed, 0x9A7)).uniform(0, 2 * math.pi))

    def offset(self, index: int) -> tuple[int, int]:
        return round(self.swing * math.sin(2 * math.pi * index / PAN_PERIOD + self.phase)), 0


class _Shake:
    """A shaking camera's path: two swings of different periods and a rest that a knock moves now and then.

    Drawn from the scene's seed apart from the objects, so a shaking scene has the same objects
    doing the same things as the still scene of its seed.
    """

    def __init__(self, seed: int, size: int) -> None:
        rng = np.random.default_rng((seed, 0x5AE))
        self.sway = SWAY_SHARE * size
        self.knock = KNOCK_SHARE * size
        self.reach = math.ceil(2 * self.sway + self.knock) + 1
        self.periods = rng.uniform([30.0, 7.0], [60.0, 12.0])  # frames: a slow swing and a quick tremble
        self.phases = rng.uniform(0, 2 * math.pi, size=(2, 2))  # per swing, per axis
        self.knock_every = float(rng.uniform(40, 80))  # frames between knocks
        self.seed = seed

    def offset(self, index: int) -> tuple[int, int]:
        swings = np.sin(2 * math.pi * index / self.periods[:, None] + self.phases)  # (swing, axis)
        x, y = self.sway * swings.sum(axis=0) + self._rest(index)
        return round(x), round(y)

    def _rest(self, index: int) -> np.ndarray:
        """Where the last knock before frame ``index`` left the camera (the origin before the first)."""
        spell = int(index // self.knock_every)
        if spell == 0:
            return np.zeros(2)
        return np.random.default_rng((self.seed, 0x5AE, spell)).uniform(-self.knock, self.knock, size=2)


def _look(
    rng: np.random.Generator,
    object_id: int,
    radius: float,
    frames: list[float],
    points: list[tuple[float, float]],
    class_id: int | None = None,
    z: float | None = None,
) -> _Actor:
    """An actor on the given trajectory, with colours and texture (and class and depth unless given)
    drawn from ``rng``.

    The draws come in the order the ``"wander"`` family has always made them, so its scenes, and
    every figure measured on them, stay the same pixel for pixel.
    """
    base = rng.integers(40, 230, size=3)
    stripe = (base + rng.integers(60, 120, size=3)) % 256
    drawn_class = int(rng.integers(len(CLASS_NAMES))) if class_id is None else class_id
    stripe_period = float(rng.uniform(6, 14))
    stripe_angle = float(rng.uniform(0, math.pi))
    depth = float(rng.uniform()) if z is None else z
    return _Actor(
        object_id=object_id,
        class_id=drawn_class,
        radius=radius,
        color=(int(base[0]), int(base[1]), int(base[2])),
        stripe_color=(int(stripe[0]), int(stripe[1]), int(stripe[2])),
        stripe_period=stripe_period,
        stripe_angle=stripe_angle,
        z=depth,
        spin=float(rng.uniform(-0.03, 0.03)),
        key_frames=tuple(frames),
        key_points=tuple(points),
    )


class _OcclusionStager:
    """Stages one period of the ``"occlusion"`` family: a few short plays, each built to test a tracker.

    Every play is placed in time and space from the seed, so a family is many different scenes with
    the same difficulties. A pass behind or across another object goes through the middle of a leg,
    where the eased motion is fastest, rather than through a waypoint, where it would stop.
    """

    def __init__(self, scene: Scene, rng: np.random.Generator, first_id: int) -> None:
        self.scene, self.rng, self.next_id = scene, rng, first_id
        self.unit = min(scene.width, scene.height) * 1.2  # radii are fractions of this, as in "wander"
        self.cast: list[_Actor] = []

    def actors(self) -> list[_Actor]:
        w, h, span = self.scene.width, self.scene.height, float(self.scene.period_frames)
        rng = self.rng
        # A near object walks in, stops in the middle for a while and walks out; two others pass
        # behind it while it stands, one of its own class.
        stand = (rng.uniform(0.38, 0.62) * w, rng.uniform(0.4, 0.6) * h)
        stop_from, stop_to = 0.18 * span, 0.7 * span
        occluder = int(rng.integers(len(CLASS_NAMES)))
        self.add(
            occluder,
            0.12,
            0.95,
            [0.0, stop_from, stop_to, 0.95 * span],
            [self.edge(3, 0.12), stand, stand, self.edge(1, 0.12)],
        )
        self.cross(occluder, stand, stop_from + 0.2 * (stop_to - stop_from), z=0.3)
        self.cross(int(rng.integers(len(CLASS_NAMES))), stand, stop_from + 0.65 * (stop_to - stop_from), z=0.4)
        # Two objects of one class cross; the one behind stops for a moment afterwards and goes on.
        meet = (rng.uniform(0.2, 0.8) * w, rng.uniform(0.25, 0.75) * h)
        kind = int(rng.integers(len(CLASS_NAMES)))
        at = rng.uniform(0.3, 0.6) * span
        self.cross(kind, meet, at, z=0.6, pause=True)
        self.cross(kind, meet, at, z=0.7)
        # One object leaves by an edge and comes back in near where it left.
        side = int(rng.integers(4))
        gone = rng.uniform(0.35, 0.5) * span
        away = rng.uniform(5, 30)
        inside = (rng.uniform(0.3, 0.7) * w, rng.uniform(0.3, 0.7) * h)
        self.add(
            int(rng.integers(len(CLASS_NAMES))),
            0.09,
            0.5,
            [0.05 * span, gone - 40, gone, gone + away, gone + away + 40, 0.97 * span],
            [
                self.edge(side, 0.09),
                inside,
                self.edge(side, 0.09),
                self.edge(side, 0.09),
                inside,
                self.edge((side + 2) % 4, 0.09),
            ],
        )
        return self.cast

    def cross(self, class_id: int, through: tuple[float, float], at: float, z: float, pause: bool = False) -> None:
        """An object whose straight leg passes ``through`` at frame ``at``, from one edge to the far one."""
        rng = self.rng
        size = float(rng.uniform(0.07, 0.1))
        angle = rng.uniform(0, 2 * math.pi)
        reach = rng.uniform(0.15, 0.22) * self.scene.width
        peak_speed = rng.uniform(2.0, 6.0) * self.scene.width / 640  # px per frame where it passes
        leg = 1.5 * 2 * reach / peak_speed  # eased: the middle of a leg runs at 1.5x its mean speed
        dx, dy = reach * math.cos(angle), reach * math.sin(angle)
        start, end = (through[0] - dx, through[1] - dy), (through[0] + dx, through[1] + dy)
        frames = [at - leg / 2, at + leg / 2]
        points = [start, end]
        if pause:
            frames.append(frames[-1] + float(rng.uniform(8, 25)))
            points.append(end)
        leaving = self.nearest_edge(end)
        frames.append(frames[-1] + max(10.0, math.dist(end, leaving) / 3.0))
        points.append(leaving)
        entering = self.nearest_edge(start)
        frames.insert(0, frames[0] - max(10.0, math.dist(start, entering) / 3.0))
        points.insert(0, entering)
        self.add(class_id, size, z, frames, points)

    def add(self, class_id: int, size: float, z: float, frames: list[float], points: list[tuple[float, float]]) -> None:
        self.cast.append(_look(self.rng, self.next_id, size * self.unit, frames, points, class_id, z))
        self.next_id += 1

    def edge(self, side: int, size: float) -> tuple[float, float]:
        """A point just outside edge ``side`` (0 top, 1 right, 2 bottom, 3 left) for an object of ``size``."""
        return self.scene._edge_point(self.rng, side, size * self.unit * 1.3)

    def nearest_edge(self, point: tuple[float, float]) -> tuple[float, float]:
        """Where an object at ``point`` leaves (or enters) the frame by the shortest way."""
        w, h = self.scene.width, self.scene.height
        margin = 0.12 * self.unit * 1.3
        x, y = point
        options = [(x, -margin), (w + margin, y), (x, h + margin), (-margin, y)]
        return min(options, key=lambda p: math.dist(p, point))


def write_h264(scene: Scene, path: Path, frame_count: int, start: int = 0) -> Path:
    """Encode ``frame_count`` frames to an H.264 MP4 at the scene's rate (what a camera file looks like)."""
    import av

    path = Path(path)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=Fraction(scene.fps))
        stream.width, stream.height = scene.width, scene.height
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "18", "preset": "veryfast", "tune": "zerolatency"}
        for image in scene.frames(frame_count, start):
            frame = av.VideoFrame.from_ndarray(image, format="bgr24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_y4m(scene: Scene, path: Path, frame_count: int, start: int = 0) -> Path:
    """Write raw YUV4MPEG2 frames, the format Chromium's fake webcam reads."""
    path = Path(path)
    with path.open("wb") as out:
        header = f"YUV4MPEG2 W{scene.width} H{scene.height} F{scene.fps}:1 Ip A1:1 C420jpeg\n"
        out.write(header.encode("ascii"))
        for image in scene.frames(frame_count, start):
            out.write(b"FRAME\n")
            out.write(cv2.cvtColor(image, cv2.COLOR_BGR2YUV_I420).tobytes())
    return path
