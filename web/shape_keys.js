// The stream picture's own keys, for drawing and moving zones and lines without a pointer: while a shape
// is drawn the arrows move a crosshair, Enter or Space adds a point at it, F finishes the shape and
// Backspace takes the last point back; with a shape selected "[" and "]" pick a corner and the arrows
// move it. What a key asks for is worked out here; the editor (zones.js) does it and saves it.

import { pictureRect } from "./overlay.js";
import { clampFraction, percents, vertexWord } from "./shapes.js";

const KEY_STEP = 0.01; // how far an arrow key moves the crosshair or a corner, in fractions of the frame
const BIG_STEP = 10; // how many steps it moves with Shift held
export const ARROWS = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] };
export const CENTRE = [0.5, 0.5];

// `point` moved one arrow key's step (`big`: Shift held) in `direction`, kept on the frame.
function stepped(point, [dx, dy], big) {
  const step = KEY_STEP * (big ? BIG_STEP : 1);
  return [clampFraction(point[0] + dx * step), clampFraction(point[1] + dy * step)];
}

/**
 * What a key on `canvas`'s picture asks for while a shape is drawn with the crosshair at `cursor`
 * (null: not placed yet, the centre): {move: the crosshair's new place}, {add: where a point goes, as
 * shapes.js locate() says of a pointer}, {finish: true}, {undo: true}, or null for a key not the picture's.
 */
export function drawingKeyAction(event, cursor, canvas) {
  const arrow = ARROWS[event.key];
  if (arrow) return { move: stepped(cursor ?? CENTRE, arrow, event.shiftKey) };
  if (event.key === "Enter" || event.key === " ") {
    const rect = pictureRect(canvas);
    const reach = (KEY_STEP / 2) * Math.min(rect.width, rect.height); // on a point: on the crosshair's grid
    return { add: { point: cursor ?? CENTRE, rect, reach } };
  }
  if (event.key === "f" || event.key === "F") return { finish: true };
  if (event.key === "Backspace") return { undo: true };
  return null;
}

/**
 * What a key asks of `shape`, selected, whose vertex `corner` the arrows move: {corner, message} (another
 * vertex picked), {points, message} (that vertex moved: the shape's new points), or null for a key not
 * the picture's. `message` says it to a screen reader.
 */
export function cornerKeyAction(event, shape, corner) {
  const arrow = ARROWS[event.key];
  if (!arrow && event.key !== "[" && event.key !== "]") return null;
  const count = shape.points.length;
  const word = vertexWord(shape.kind);
  if (!arrow) {
    const picked = (Math.min(corner, count - 1) + (event.key === "]" ? 1 : count - 1)) % count;
    return { corner: picked, message: `${word} ${picked + 1} of ${count} at ${percents(shape.points[picked])}.` };
  }
  const index = Math.min(corner, count - 1);
  const point = stepped(shape.points[index], arrow, event.shiftKey);
  const points = shape.points.map((p, i) => (i === index ? point : p));
  return { points, message: `${word} ${index + 1} at ${percents(point)}.` };
}
