// What the stream view's hint under the shape tools says (zones.js render()): how the shape being drawn
// is drawn, or, with none, how the shapes on the picture are moved and picked. Worded for a mouse and a
// keyboard, or, on a touch screen alone, for a finger: the picture's keys are of no use to a phone. So is
// what a screen reader hears as a shape's drawing starts (drawingStarted()): a phone has no crosshair.

import { aKind, percents, vertexWord } from "./shapes.js";

const DRAW_KEYS = "Keys: arrows move the crosshair (Shift: 10 steps), Enter or Space adds a point there,";
// A polygon's keys, worded for the `shape` it closes.
const polygonKeys = (shape) =>
  `Enter on the first corner or F closes ${shape}, Backspace (or Undo point) removes the last corner, Escape cancels.`;
const HINTS = {
  zone:
    "Click or tap the corners. Click the first corner again (or double-click) to close the zone. " +
    `${DRAW_KEYS} ${polygonKeys("the zone")}`,
  // Drawn as a zone is (ignore_zones.js): what the stream sees inside it is dropped.
  ignore:
    "Click or tap the corners of the area the stream is to ignore. Click the first corner again (or " +
    `double-click) to close it. ${DRAW_KEYS} ${polygonKeys("it")}`,
  line:
    "Click or tap the points of the line. Double-click (or tap the last point again) to end it. " +
    `${DRAW_KEYS} F ends the line, Backspace (or Undo point) removes the last point, Escape cancels.`,
  idle:
    "Drag a corner to move it; select a shape to rename or delete it (an ignore zone by a corner or in the " +
    "list: a click inside one reaches what is under it). With a shape selected, on the picture: “[” and “]” " +
    "pick a corner, arrows move it (Shift: 10 steps). Enter on the selected shape in the list takes the " +
    "keyboard to the picture.",
};

// The same in a finger's words, for a touch screen alone (touchOnly()).
const TOUCH_HINTS = {
  zone:
    "Tap the corners. Tap the first corner again (or press Done) to close the zone. Undo point removes the " +
    "last corner, Cancel zone drops it.",
  ignore:
    "Tap the corners of the area the stream is to ignore. Tap the first corner again (or press Done) to " +
    "close it. Undo point removes the last corner, Cancel ignore zone drops it.",
  line:
    "Tap the points of the line. Tap the last point again (or press Done) to end it. Undo point removes the " +
    "last point, Cancel line drops it.",
  idle:
    "Drag a corner to move it; tap a shape (on the picture or in the list, an ignore zone by a corner or in " +
    "the list) to rename or delete it.",
};

// A touch screen alone: a coarse pointer and no fine one (no mouse or trackpad, so most likely no keyboard).
const touchOnly = () => matchMedia("(pointer: coarse)").matches && !matchMedia("(any-pointer: fine)").matches;

/** The hint for the editor's `mode` ("idle", or the kind of shape being drawn), in the pointer's words. */
export function hintFor(mode) {
  return (touchOnly() ? TOUCH_HINTS : HINTS)[mode];
}

/**
 * What a screen reader hears as drawing a shape of `kind` starts: where the keyboard's crosshair is
 * (`cursor`, fractions of the frame), or, on a touch screen alone, which shows none, what to tap.
 */
export function drawingStarted(kind, cursor) {
  const how = touchOnly() ? `tap its ${vertexWord(kind).toLowerCase()}s` : `crosshair at ${percents(cursor)}`;
  return `Drawing ${aKind(kind)}: ${how}.`;
}
