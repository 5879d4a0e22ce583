// Zones and lines drawn over the stream's picture (shapes.js has what a shape is): each with its name
// tag and live count, the selected one with handles on its corners, the one being drawn dashed, and the
// keyboard's crosshair. Handles, lines and tags keep their size on screen whatever the frame's size, and
// are drawn in the canvas' own pixels: the stream view's are the screen's (picture.js ShownCanvas).
// In two layers, which the stream view draws the tracks between (drawShapes).

import { pictureRect } from "./overlay.js";
import { countText, keyOf, settingsText } from "./shapes.js";

const ZONE_COLOR = "#ffd21f";
const LINE_COLOR = "#25e0ff";
const INK = "#0b0d10"; // handles' insides and tags' text

/**
 * Draw onto `context` (its canvas holds the whole frame, at any size): `shapes`, zones and lines (none
 * while hidden; ignore zones, greyed and hatched, are ignore_zones.js's to draw), the one keyOf()
 * `selected` highlighted, each tagged with its count in `counts`; `draft` ({kind, points, cursor} of a
 * zone or line being drawn, or null); and `crosshair` (where the keyboard is, in fractions of the frame,
 * or null: it is drawn here whatever is being drawn).
 * `layer`: "under" the tracks, the zones' fills and outlines and the lines (no zone tints a track's
 * label); "over" them, what the person reads and draws with, which no track's mask may tint: the name
 * tags and counts, the selected shape's handles, the draft and the crosshair; "both", in that order.
 */
export function drawShapes(context, { shapes, selected, counts, draft, crosshair }, layer = "both") {
  const { width, height } = context.canvas;
  // The canvas' pixels per CSS pixel: handles, lines and tags keep their size on screen, phone or not.
  const scale = width / (pictureRect(context.canvas).width || width);
  const px = ([x, y]) => [x * width, y * height];
  context.save();
  context.lineJoin = "round";
  if (layer !== "over") {
    for (const shape of shapes) drawShape(context, shape, keyOf(shape) === selected, px, scale);
  }
  if (layer !== "under") drawMarks(context, { shapes, selected, counts, draft, crosshair }, px, scale);
  context.restore();
}

function drawMarks(context, { shapes, selected, counts, draft, crosshair }, px, scale) {
  const tags = [];
  for (const shape of shapes) {
    const color = shape.kind === "zone" ? ZONE_COLOR : LINE_COLOR;
    const points = shape.points.map(px);
    if (keyOf(shape) === selected) drawHandles(context, points, scale, color, 4 * scale);
    const label = [shape.name, settingsText(shape), countText(shape, counts)].filter(Boolean).join("  ");
    tags.push(drawTag(context, label, points[0], color, scale, tags));
  }
  if (draft && draft.points.length) {
    const points = draft.cursor ? [...draft.points, draft.cursor] : draft.points;
    context.strokeStyle = draft.kind === "zone" ? ZONE_COLOR : LINE_COLOR;
    context.lineWidth = 2 * scale;
    context.setLineDash([6 * scale, 4 * scale]);
    context.beginPath();
    points.map(px).forEach(([x, y], i) => (i ? context.lineTo(x, y) : context.moveTo(x, y)));
    context.stroke();
    context.setLineDash([]);
    drawHandles(context, draft.points.map(px), scale, context.strokeStyle, 2 * scale);
  }
  if (crosshair) drawCrosshair(context, px(crosshair), scale);
}

function drawShape(context, shape, selected, px, scale) {
  const color = shape.kind === "zone" ? ZONE_COLOR : LINE_COLOR;
  const points = shape.points.map(px);
  context.strokeStyle = color;
  context.fillStyle = color;
  context.lineWidth = (selected ? 4 : 2) * scale;
  context.beginPath();
  points.forEach(([x, y], i) => (i ? context.lineTo(x, y) : context.moveTo(x, y)));
  if (shape.kind === "zone") {
    context.closePath();
    context.globalAlpha = selected ? 0.25 : 0.12;
    context.fill();
    context.globalAlpha = 1;
  }
  context.stroke();
  if (shape.kind === "line") drawArrow(context, points, scale);
}

// An arrow from the middle of the first segment to the line's "in" side (docs/analytics.md).
function drawArrow(context, points, scale) {
  const [[x1, y1], [x2, y2]] = points;
  const length = Math.hypot(x2 - x1, y2 - y1) || 1;
  const [nx, ny] = [-(y2 - y1) / length, (x2 - x1) / length];
  const [mx, my] = [(x1 + x2) / 2, (y1 + y2) / 2];
  const reach = 18 * scale;
  const [tx, ty] = [mx + nx * reach, my + ny * reach];
  context.beginPath();
  context.moveTo(mx, my);
  context.lineTo(tx, ty);
  context.moveTo(tx - nx * 8 * scale + ny * 6 * scale, ty - ny * 8 * scale - nx * 6 * scale);
  context.lineTo(tx, ty);
  context.lineTo(tx - nx * 8 * scale - ny * 6 * scale, ty - ny * 8 * scale + nx * 6 * scale);
  context.stroke();
}

// Where the keyboard is: the crosshair being drawn with, or the corner the arrow keys move.
function drawCrosshair(context, [x, y], scale) {
  const reach = 14 * scale;
  for (const [color, width] of [[INK, 4], ["#ffffff", 2]]) {
    context.strokeStyle = color;
    context.lineWidth = width * scale;
    context.beginPath();
    context.moveTo(x - reach, y);
    context.lineTo(x + reach, y);
    context.moveTo(x, y - reach);
    context.lineTo(x, y + reach);
    context.stroke();
  }
}

// `lineWidth`: their rings', that of the shape's outline (a selected shape's, or the draft's).
function drawHandles(context, points, scale, color, lineWidth) {
  const radius = 6 * scale;
  context.fillStyle = INK;
  context.strokeStyle = color;
  context.lineWidth = lineWidth;
  for (const [x, y] of points) {
    context.beginPath();
    context.arc(x, y, radius, 0, 2 * Math.PI);
    context.fill();
    context.stroke();
  }
}

// A shape's name tag, over its first point; where it would cover a tag drawn before it (`placed`: a
// line starting where a zone does) it goes below that one, so no name or count is hidden. Its box.
function drawTag(context, text, [x, y], color, scale, placed) {
  const size = Math.round(13 * scale);
  const [padX, padY] = [4 * scale, 3 * scale]; // CSS px around the text, as its font is sized
  context.font = `600 ${size}px system-ui, sans-serif`;
  const width = context.measureText(text).width + 2 * padX;
  const height = size + 2 * padY;
  const left = Math.min(Math.max(0, x), context.canvas.width - width);
  let top = Math.min(Math.max(0, y - height - 4 * scale), context.canvas.height - height);
  const covers = (tag) =>
    left < tag.left + tag.width && tag.left < left + width && top < tag.top + tag.height && tag.top < top + height;
  for (let under = placed.find(covers); under; under = placed.find(covers)) top = under.top + under.height + 2 * scale;
  context.fillStyle = color;
  context.fillRect(left, top, width, height);
  context.fillStyle = INK;
  context.textBaseline = "top";
  context.fillText(text, left + padX, top + padY);
  return { left, top, width, height };
}
