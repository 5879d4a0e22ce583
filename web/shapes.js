// A zone, line or ignore zone as the stream editor (zones.js) holds it, and the way to and from the
// server's: points in fractions of the frame on screen, so that one drawn or moved here survives a change
// of resolution, while every other shape is sent back exactly as the server gave it, so one in pixels (a
// config file's) stays in pixels, and is drawn where those pixels are on the frame on screen, whatever its
// size. Also what is under a pointer, and what a shape is named and labelled with.
//
// A shape: {kind: "zone" | "line" | "ignore", name, points: [[x, y] in fractions of the frame on screen],
// extra: its other keys, server: the shape as the server gave it, or null once it is drawn or moved here}.

import { pictureRect } from "./overlay.js";

export const IGNORE = "ignore"; // an ignore zone's `kind` (ignore_zones.js has what else is its own)
// Each kind's words in a sentence, whether it is a polygon (closed, with corners and an inside), the
// fewest points it takes and the stream option that holds it (PATCH /api/streams/<id>), in one place, so
// that no word or rule takes a kind it was not told of for a line ("Line “x” kept" of an ignore zone).
// An ignore zone is a polygon, as a zone is.
const KINDS = {
  zone: { word: "Zone", article: "a", polygon: true, least: 3, option: "zones" },
  line: { word: "Line", article: "a", polygon: false, least: 2, option: "lines" },
  [IGNORE]: { word: "Ignore zone", article: "an", polygon: true, least: 3, option: "ignore_zones" },
};
const HIT_PX = { mouse: 8, pen: 10, touch: 18 }; // how near a pointer must come to a vertex or a line, in CSS px
const FRACTION_DIGITS = 4; // 1/10000 of the frame: finer than any camera's pixels
// Names as the server takes them (server/analytics/shapes.py): checked here first, so a name it would
// refuse is never sent, and the field says so while the saved name stays.
const NAME_RULE = "up to 64 ASCII letters (a-z, A-Z), digits, “-” or “_”";

export const keyOf = (shape) => `${shape.kind}:${shape.name}`;
export const inPixels = (json) => json.units !== "fraction";
export const clampFraction = (v) => Number(Math.min(1, Math.max(0, v)).toFixed(FRACTION_DIGITS));
export const percents = ([x, y]) => `${Math.round(x * 100)} %, ${Math.round(y * 100)} %`;
/** What a vertex of a shape of `kind` is called: a polygon's "Corner", a line's "Point". */
export const vertexWord = (kind) => (KINDS[kind].polygon ? "Corner" : "Point");
/** A shape of `kind` named at the start of a sentence ("Ignore zone “a” kept"). */
export const kindWord = (kind) => KINDS[kind].word;
/** A shape of `kind` with its article, within a sentence ("Drawing an ignore zone"). */
export const aKind = (kind) => `${KINDS[kind].article} ${KINDS[kind].word.toLowerCase()}`;
/** The fewest points of a shape of `kind`. */
export const leastPoints = (kind) => KINDS[kind].least;
/** Whether a shape of `kind` is closed (the first corner again ends it) and has an inside. */
export const isPolygon = (kind) => KINDS[kind].polygon;
/** Every kind, in the order the editor lists them. */
export const SHAPE_KINDS = Object.keys(KINDS);
/** The stream option that holds the shapes of `kind` ("ignore_zones"). */
export const optionOf = (kind) => KINDS[kind].option;
/** The shapes of the stream's `options`, every kind, to tell whether they changed. */
export const shapesKey = (options) => JSON.stringify(Object.values(KINDS).map(({ option }) => options?.[option] ?? []));
/** The shapes of `kind` among `shapes`, as the server takes them. */
export const serverList = (shapes, kind) => shapes.filter((shape) => shape.kind === kind).map(toServer);

// Where a shape as the server has it (`json`) is on a frame of `size`, in fractions of it.
export function fractionsOf(json, size) {
  const [w, h] = inPixels(json) ? [size.width, size.height] : [1, 1];
  return json.points.map(([x, y]) => [x / w, y / h]);
}

// `server`: the shape as the server gave it, sent back as it is while the shape is not edited here.
export function fromServer(kind, json, size) {
  const { name, points, units, ...extra } = json;
  return { kind, name, points: fractionsOf(json, size), extra, server: json };
}

export function toServer(shape) {
  if (shape.server) return shape.server;
  const points = shape.points.map(([x, y]) => [clampFraction(x), clampFraction(y)]);
  return { ...shape.extra, name: shape.name, points, units: "fraction" };
}

/**
 * `shapes` (the editor's) with the shapes that `current` (the stream's zones, lines and ignore zones now)
 * has beyond `saved` (those `shapes` were drawn on), on a frame of `size`, where adding shapes is all that
 * changed between the two and none of the added ones is named as one of `shapes`; null otherwise, and
 * where one in pixels comes without a frame to place it on.
 */
export function withAdded(shapes, saved, current, size) {
  const theirs = [];
  for (const [kind, { option }] of Object.entries(KINDS)) {
    const before = saved?.[option] ?? [];
    const now = current?.[option] ?? [];
    if (before.some((json, i) => JSON.stringify(now[i]) !== JSON.stringify(json))) return null;
    const added = now.slice(before.length);
    if (added.some(inPixels) && !size) return null;
    theirs.push(...added.map((json) => fromServer(kind, json, size)));
  }
  const shown = new Set(shapes.map(keyOf));
  return theirs.some((shape) => shown.has(keyOf(shape))) ? null : [...shapes, ...theirs];
}

// `shape` with its `changes` to the keys the panel sets (a key `undefined` is dropped), in its own units:
// like a rename, a shape in pixels stays in pixels.
export function withSettings(shape, changes) {
  const apply = (json) => {
    const changed = { ...json, ...changes };
    for (const [key, value] of Object.entries(changes)) if (value === undefined) delete changed[key];
    return changed;
  };
  return { ...shape, extra: apply(shape.extra), server: shape.server && apply(shape.server) };
}

// What a shape is limited to, for its tag and its entry in the list: its classes, a zone's loiter time.
export function settingsText(shape) {
  const { classes = [], loiter_s: loiterS } = shape.extra;
  return [classes.join(", "), loiterS === undefined ? "" : `loiter ${loiterS} s`].filter(Boolean).join(" · ");
}

// A shape's live count in `counts` (a frame's metadata), or "" while it has none: always so for an
// ignore zone, which counts nothing (a line of its name has counts of its own).
export function countText(shape, counts) {
  if (shape.kind === "zone") {
    const zone = counts?.zones?.[shape.name];
    return zone ? `${zone.objects} inside` : "";
  }
  const line = shape.kind === "line" && counts?.lines?.[shape.name];
  return line ? `in ${line.in} · out ${line.out}` : "";
}

// Why `name` cannot name a `kind` among `shapes` (other than `shape`, being renamed): "" if it can. Names
// are unique among the shapes of a kind only, as the server has them in a list each. `pattern` is the
// name field's, compiled as the browser compiles it for checkValidity() (the "v" flag).
export function nameProblem(shapes, pattern, kind, name, shape = null) {
  const source = `^(?:${pattern})$`;
  let valid;
  try {
    valid = new RegExp(source, "v");
  } catch {
    valid = new RegExp(source, "u"); // a browser from before the "v" flag compiles patterns so
  }
  if (!valid.test(name)) return `“${name}” cannot be a name: use ${NAME_RULE}.`;
  if (shapes.some((s) => s !== shape && s.kind === kind && s.name === name)) {
    return `There is ${aKind(kind)} called “${name}” already: give this one another name.`;
  }
  return "";
}

export function freeName(shapes, kind) {
  const taken = new Set(shapes.filter((s) => s.kind === kind).map((s) => s.name));
  let n = 1;
  while (taken.has(`${kind}-${n}`)) n += 1;
  return `${kind}-${n}`;
}

// Where a pointer `event` is on `canvas`'s picture, in fractions of the frame, and how near counts as
// on something: {point, rect, reach}, or null while the picture has no size.
export function locate(canvas, event) {
  const rect = pictureRect(canvas);
  if (!rect.width || !rect.height) return null;
  const point = [(event.clientX - rect.left) / rect.width, (event.clientY - rect.top) / rect.height];
  return { point, rect, reach: HIT_PX[event.pointerType] ?? HIT_PX.mouse };
}

// Whether points `a` and `b` are within `where`'s reach of each other on screen (locate()).
export function near(a, b, where) {
  return Math.hypot((a[0] - b[0]) * where.rect.width, (a[1] - b[1]) * where.rect.height) <= where.reach;
}

// The shape and vertex (index -1: none, only the shape) under `where` (locate()): the selected shape
// (keyOf() `selected`) first, then the others, newest on top. Null where there is none. An ignore zone
// only by a vertex: one often covers much of the picture, and inside it would take every click from
// the zones, lines and tracks under it (ignore_zones.js).
export function hitShape(shapes, selected, where) {
  const chosen = (shape) => keyOf(shape) === selected;
  const order = [...shapes].reverse().sort((a, b) => chosen(b) - chosen(a));
  for (const shape of order) {
    const index = shape.points.findIndex((p) => near(p, where.point, where));
    if (index >= 0) return { shape, index };
  }
  const scale = Math.min(where.rect.width, where.rect.height);
  for (const shape of order) {
    const { points } = shape;
    if (shape.kind === "zone" && insidePolygon(where.point, points)) return { shape, index: -1 };
    for (let i = 1; i < points.length; i += 1) {
      if (shape.kind === "line" && segmentDistance(where.point, points[i - 1], points[i]) * scale <= where.reach) {
        return { shape, index: -1 };
      }
    }
  }
  return null;
}

function insidePolygon([x, y], points) {
  let inside = false;
  for (let i = 0, j = points.length - 1; i < points.length; j = i++) {
    const [xi, yi] = points[i];
    const [xj, yj] = points[j];
    if (yi > y !== yj > y && x < ((xj - xi) * (y - yi)) / (yj - yi) + xi) inside = !inside;
  }
  return inside;
}

function segmentDistance(p, a, b) {
  const [dx, dy] = [b[0] - a[0], b[1] - a[1]];
  const length = dx * dx + dy * dy;
  const t = length ? Math.max(0, Math.min(1, ((p[0] - a[0]) * dx + (p[1] - a[1]) * dy) / length)) : 0;
  return Math.hypot(p[0] - a[0] - t * dx, p[1] - a[1] - t * dy);
}
