// Ignore zones (the stream's `ignore_zones` option, Frigate's object masks): polygons where the stream
// sees nothing, of every class or of those each names. A detection with at least `min_share` of it inside
// one is dropped before the tracker: never tracked, drawn, counted or sent. The zone editor (zones.js)
// holds them among its shapes as kind "ignore", drawn, moved, renamed and deleted as a zone is, and saved
// in the stream's `ignore_zones` (zone_saving.js); shapes.js words them and knows them for polygons. What
// differs from a zone beyond that is here: what its entry in the list says, and how it is drawn on the
// picture, greyed and hatched behind a dashed outline, so that a person sees where the stream is blind.
// They are not in a frame's metadata: they are drawn from the stream's options. Their name tags are drawn
// only for the selected one, as they go over the tracks' labels; the list names the others.
//
// A click inside an ignore zone selects nothing: one often covers much of the picture, and would take
// every click from the zones, lines and tracks under it. It is picked by a corner, or in the list.

import { pictureRect } from "./overlay.js";
import { IGNORE, keyOf, settingsText } from "./shapes.js";

// The share of an object inside that ignores it where an ignore zone names none: the server's default
// (server/analytics/shapes.py DEFAULT_IGNORE_SHARE).
const DEFAULT_SHARE = 0.5;
const EDGE_COLOR = "#d0d4da"; // the dashed outline, the tag and the handles' rings
const HATCH_COLOR = "#0b0d10"; // the stripes across it
const FILL_COLOR = "#8a9099"; // the grey under them
const INK = "#0b0d10"; // handles' insides and the tag's text
const HATCH_GAP_PX = 10; // between the stripes, in CSS px
const DASH_PX = [8, 5]; // the outline's dashes and gaps, in CSS px
const COUNT_FORMAT = new Intl.NumberFormat(); // "12,345" in the person's locale

/** An ignore zone's share inside, as a person reads it: a percentage (0.5 -> 50). */
export const sharePercent = (shape) => Number(((shape.extra.min_share ?? DEFAULT_SHARE) * 100).toFixed(2));

/**
 * What `shape` is limited to, for its entry in the list: a zone's or a line's classes and loiter time
 * (settingsText()), an ignore zone's rule in a person's words ("ignored when ≥ 50 % inside · all classes").
 */
export function limitsText(shape) {
  if (shape.kind !== IGNORE) return settingsText(shape);
  const { classes = [] } = shape.extra;
  return `ignored when ≥ ${sharePercent(shape)} % inside · ${classes.length ? classes.join(", ") : "all classes"}`;
}

/**
 * Whether the stream's `options` keep any detection from its tracker (ignore zones, `min_area` above 0,
 * `max_area` under 1, a class filter's own of either): only then is what they kept worth a line under the
 * list (ignoredText()).
 */
export function filtersObjects(options) {
  const bounded = (own) => own?.min_area !== undefined || own?.max_area !== undefined;
  return (
    Boolean(options?.ignore_zones?.length) ||
    options?.min_area > 0 ||
    options?.max_area < 1 ||
    Object.values(options?.class_filters ?? {}).some(bounded)
  );
}

/** The stream's `detections_ignored` (a count so far) as the line under the list says it. */
export function ignoredText(count) {
  return `Ignored so far: ${COUNT_FORMAT.format(count)} ${count === 1 ? "detection" : "detections"}`;
}

/**
 * Draw onto `context` (its canvas holds the whole frame, at any size) the ignore zones among `shapes`,
 * the one keyOf() `selected` with its corners' handles and its name tag, and `draft` ({points, cursor}
 * of one being drawn, or null). `layer`: "under" the tracks their fills and outlines, "over" them the
 * selected one's handles and tag, and the draft, "both" in that order (as shape_drawing.js drawShapes()).
 * No other tag is drawn: over the tracks, it would cover their labels, and the list names the zone.
 */
export function drawIgnoreZones(context, { shapes, selected, draft }, layer = "both") {
  const { width, height } = context.canvas;
  const scale = width / (pictureRect(context.canvas).width || width); // canvas pixels per CSS pixel
  const px = ([x, y]) => [x * width, y * height];
  const zones = shapes.filter((shape) => shape.kind === IGNORE);
  context.save();
  context.lineJoin = "round";
  if (layer !== "over") {
    for (const zone of zones) drawZone(context, zone.points.map(px), keyOf(zone) === selected, scale);
  }
  if (layer !== "under") {
    const zone = zones.find((shape) => keyOf(shape) === selected);
    if (zone) {
      const points = zone.points.map(px);
      drawHandles(context, points, scale, 4 * scale);
      const label = [`ignored: ${zone.name}`, (zone.extra.classes ?? []).join(", ")].filter(Boolean).join("  ");
      drawTag(context, label, points[0], scale);
    }
    if (draft?.points.length) drawDraft(context, draft, px, scale);
  }
  context.restore();
}

// Grey, hatched and outlined in dashes: unlike a zone's tint, it reads as "not seen" over any picture.
function drawZone(context, points, selected, scale) {
  const outline = () => {
    context.beginPath();
    points.forEach(([x, y], i) => (i ? context.lineTo(x, y) : context.moveTo(x, y)));
    context.closePath();
  };
  context.save();
  outline();
  context.globalAlpha = selected ? 0.4 : 0.3;
  context.fillStyle = FILL_COLOR;
  context.fill();
  context.clip();
  context.globalAlpha = selected ? 0.55 : 0.4;
  context.strokeStyle = HATCH_COLOR;
  context.lineWidth = 2 * scale;
  const xs = points.map(([x]) => x);
  const ys = points.map(([, y]) => y);
  const [left, right, top, bottom] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  const gap = HATCH_GAP_PX * scale;
  context.beginPath();
  for (let x = left - (bottom - top); x < right; x += gap) {
    context.moveTo(x, bottom);
    context.lineTo(x + (bottom - top), top);
  }
  context.stroke();
  context.restore();
  outline();
  context.strokeStyle = EDGE_COLOR;
  context.lineWidth = (selected ? 4 : 2) * scale;
  context.setLineDash(DASH_PX.map((length) => length * scale));
  context.stroke();
  context.setLineDash([]);
}

function drawDraft(context, draft, px, scale) {
  const points = draft.cursor ? [...draft.points, draft.cursor] : draft.points;
  context.strokeStyle = EDGE_COLOR;
  context.lineWidth = 2 * scale;
  context.setLineDash(DASH_PX.map((length) => length * scale));
  context.beginPath();
  points.map(px).forEach(([x, y], i) => (i ? context.lineTo(x, y) : context.moveTo(x, y)));
  context.stroke();
  context.setLineDash([]);
  drawHandles(context, draft.points.map(px), scale, 2 * scale);
}

function drawHandles(context, points, scale, lineWidth) {
  context.fillStyle = INK;
  context.strokeStyle = EDGE_COLOR;
  context.lineWidth = lineWidth;
  for (const [x, y] of points) {
    context.beginPath();
    context.arc(x, y, 6 * scale, 0, 2 * Math.PI);
    context.fill();
    context.stroke();
  }
}

// Its name tag (and the classes it ignores, where it names some), just below its first point (a zone's
// and a line's go above theirs, so the two seldom cover each other where shapes start at one place), kept
// on the picture.
function drawTag(context, text, [x, y], scale) {
  const size = Math.round(13 * scale);
  const [padX, padY] = [4 * scale, 3 * scale];
  context.font = `600 ${size}px system-ui, sans-serif`;
  const width = context.measureText(text).width + 2 * padX;
  const height = size + 2 * padY;
  const left = Math.min(Math.max(0, x), context.canvas.width - width);
  const top = Math.min(Math.max(0, y + 4 * scale), context.canvas.height - height);
  context.fillStyle = EDGE_COLOR;
  context.fillRect(left, top, width, height);
  context.fillStyle = INK;
  context.textBaseline = "top";
  context.fillText(text, left + padX, top + padY);
}
