// A mouse, a pen or a finger on the stream's picture, for the zone editor (zones.js), which owns the
// shapes and saves them. A press adds a point to the shape being drawn, or selects the shape it is
// inside, only once it is lifted as a tap: within a few pixels of where it went down, with no second
// finger put down meanwhile. So a swipe or a pinch while drawing adds no stray point (a phone has no
// Backspace to take one back), and a swipe that scrolls the page from inside a zone does not select it
// (a selected shape makes the picture hold the next swipe: style.css `editing`). A press on a corner
// drags it at once.

import { clampFraction, hitShape, keyOf, locate } from "./shapes.js";

const TAP_SLOP_PX = 8; // how far, in CSS px, a press may move and still be a tap

export class ShapePointer {
  // editor: the ZoneEditor whose picture (editor.host.canvas) is pressed on.
  constructor(editor) {
    this.editor = editor;
    this.drag = null; // {key, index, pointerId, moved}: a corner being dragged
    // {pointerId, x, y (client px where it went down), mode: the editor's then, select: keyOf() the shape
    // a tap selects, or null}: a press that is a tap if it is lifted where it went down
    this.press = null;
    this.claimed = false; // the last press was the editor's, not a click on a track

    const { canvas } = editor.host;
    canvas.addEventListener("pointerdown", (event) => this.pointerDown(event));
    canvas.addEventListener("touchstart", (event) => this.touchStart(event), { passive: false });
    canvas.addEventListener("pointermove", (event) => this.pointerMove(event));
    canvas.addEventListener("pointerup", (event) => this.pointerUp(event, true));
    canvas.addEventListener("pointercancel", (event) => this.pointerUp(event, false));
    canvas.addEventListener("pointerleave", () => editor.pointAt(null));
  }

  // Another stream opened: nothing of a press on the last one's picture carries over.
  reset() {
    this.drag = null;
    this.press = null;
  }

  takeClaim() {
    const claimed = this.claimed;
    this.claimed = false;
    return claimed;
  }

  // Whether a touch may scroll the page is settled as it starts (touch-action), before pointerdown
  // could select the shape and make the canvas "editing": a finger landing on a corner of a shape not
  // selected yet would scroll the page, and its drag be cancelled, unless it is held here.
  touchStart(event) {
    const { editor } = this;
    if (event.touches.length !== 1 || editor.mode !== "idle" || !editor.visible || editor.saving) return;
    if (!editor.host.size()) return;
    const [touch] = event.touches;
    const where = locate(editor.host.canvas, { clientX: touch.clientX, clientY: touch.clientY, pointerType: "touch" });
    const found = where && hitShape(editor.shapes, editor.selected, where);
    if (found && found.index >= 0) event.preventDefault();
  }

  pointerDown(event) {
    const { editor } = this;
    this.claimed = false;
    this.press = null; // a second finger makes a pinch of the first one's press
    if (!event.isPrimary || event.button !== 0 || !editor.host.size()) return;
    const where = locate(editor.host.canvas, event);
    if (!where) return;
    const press = { pointerId: event.pointerId, x: event.clientX, y: event.clientY, mode: editor.mode, select: null };
    if (editor.mode !== "idle") {
      this.claimed = true;
      this.press = press;
      return;
    }
    if (!editor.visible || editor.saving) return;
    const found = hitShape(editor.shapes, editor.selected, where);
    if (!found) {
      if (editor.selected !== null) editor.select(null);
      return;
    }
    // A finger inside a shape may be starting to scroll the page: it selects the shape once lifted.
    if (found.index < 0 && event.pointerType === "touch") {
      this.press = { ...press, select: keyOf(found.shape) };
      return;
    }
    this.claimed = true;
    editor.select(keyOf(found.shape));
    // A press that saved a name or loiter time typed for the shape (select()) drags nothing, as no
    // press does while a save is on its way.
    if (found.index >= 0 && !editor.saving) {
      event.preventDefault();
      editor.host.canvas.setPointerCapture(event.pointerId);
      this.drag = { key: keyOf(found.shape), index: found.index, pointerId: event.pointerId, moved: false };
    }
  }

  pointerMove(event) {
    const { editor } = this;
    if (this.press?.pointerId === event.pointerId && moved(this.press, event)) this.press = null;
    const where = locate(editor.host.canvas, event);
    if (!where) return;
    if (this.drag && event.pointerId === this.drag.pointerId) {
      if (editor.moveCorner(this.drag.key, this.drag.index, where.point.map(clampFraction))) this.drag.moved = true;
    } else if (editor.mode !== "idle") {
      editor.pointAt(where.point);
    }
  }

  // `done`: lifted; otherwise the browser took the pointer over (a scroll, a system gesture).
  pointerUp(event, done) {
    const { press, drag } = this;
    if (press?.pointerId === event.pointerId) {
      this.press = null;
      if (done && !moved(press, event)) this.tap(press, event);
    }
    if (!drag || event.pointerId !== drag.pointerId) return;
    this.drag = null;
    if (drag.moved) this.editor.endDrag(done);
  }

  tap(press, event) {
    const { editor } = this;
    const where = locate(editor.host.canvas, event);
    if (!where || press.mode !== editor.mode || !editor.host.size()) return;
    this.claimed = true;
    if (press.mode !== "idle") editor.addPoint(where);
    else editor.select(press.select);
  }
}

// Whether the pointer of `press` is, at `event`, too far from where it went down for a tap.
function moved(press, event) {
  return Math.hypot(event.clientX - press.x, event.clientY - press.y) > TAP_SLOP_PX;
}
