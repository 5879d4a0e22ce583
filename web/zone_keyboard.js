// The keyboard on the stream's picture, for the zone editor (zones.js), which owns the shapes and saves
// them. The page's keys: Escape drops the shape being drawn, Enter finishes it, Delete or Backspace (a
// Mac's delete key) removes the selected shape; Backspace only one the person chose (the editor's
// `chosen`), not one selected by finishing it a moment before, when it was taking points back. The
// picture's own (shape_keys.js works out what each asks for): while a shape is drawn the arrows move a
// crosshair, Enter or Space adds a point at it, F finishes the shape and Backspace takes the last point
// back; with a shape selected "[" and "]" pick a corner and the arrows move it, each burst of presses
// saved once they are let go, as a drag is when it ends. The editor's live region says what each key did:
// where the corner went on each press, and that the change is not kept in the config file (where it is
// not) once, after the first save of a shape's moves while the picture has the focus, so that warning
// does not take the place of each press's position.

import { ARROWS, cornerKeyAction, drawingKeyAction } from "./shape_keys.js";
import { kindWord, percents } from "./shapes.js";
import { CHANGED } from "./zone_saving.js";

export class ShapeKeyboard {
  // editor: the ZoneEditor whose picture (editor.host.canvas) takes the keys.
  constructor(editor) {
    this.editor = editor;
    this.corner = 0; // the selected shape's vertex the arrow keys move
    this.nudging = false; // the arrow keys moved a corner, saved once they are let go
    this.warned = false; // the moves of the selected shape were said to be gone at a restart (endNudge())

    const { canvas } = editor.host;
    canvas.addEventListener("keydown", (event) => this.canvasKey(event));
    canvas.addEventListener("keyup", (event) => ARROWS[event.key] && this.endNudge());
    canvas.addEventListener("focus", () => editor.host.redraw()); // the crosshair or the corner picked
    canvas.addEventListener("blur", () => {
      this.endNudge();
      this.warned = false; // the keys' burst ends with the focus
      editor.host.redraw();
    });
    document.addEventListener("keydown", (event) => this.pageKey(event));
  }

  // Another stream opened: no corner picked or moved on the last one's shapes carries over.
  reset() {
    this.picked();
    this.nudging = false;
  }

  // A shape selected (again): the arrows move its first corner, and its moves are warned of afresh.
  picked() {
    this.corner = 0;
    this.warned = false;
  }

  pageKey(event) {
    const { editor } = this;
    if (event.defaultPrevented || editor.streamId === null || editor.host.canvas.closest("[hidden]")) return;
    const typing = event.target.closest?.("input, textarea, select");
    if (event.key === "Escape" && editor.mode !== "idle") editor.cancel();
    else if (event.key === "Enter" && editor.mode !== "idle" && !event.target.closest?.("button")) editor.finish();
    else if ((event.key === "Delete" || event.key === "Backspace") && !typing && editor.selected !== null) {
      event.preventDefault();
      const shape = editor.selectedShape();
      if (event.key === "Delete" || editor.chosen) editor.removeSelected();
      else if (shape) editor.announce(`${kindWord(shape.kind)} “${shape.name}” kept: Delete removes it.`);
    }
  }

  // The picture's own keys (shape_hints.js); one it takes is not also the page's (pageKey(), scrolling).
  canvasKey(event) {
    const { editor } = this;
    if (event.altKey || event.ctrlKey || event.metaKey || !editor.host.size()) return;
    if (editor.mode === "idle" ? this.cornerKey(event) : this.drawKey(event)) event.preventDefault();
  }

  // While drawing: the crosshair, a point at it, the last point taken back, the shape finished.
  drawKey(event) {
    const { editor } = this;
    const action = drawingKeyAction(event, editor.cursor, editor.host.canvas);
    if (action?.move) {
      editor.cursor = action.move;
      editor.announce(`Crosshair at ${percents(editor.cursor)}.`);
      editor.host.redraw();
    } else if (action?.add) {
      editor.addPoint(action.add);
    } else if (action?.finish) {
      editor.finish(); // which says so where the shape has too few points
    } else if (action?.undo) {
      editor.undoPoint();
    }
    return action !== null;
  }

  // With a shape selected: which vertex the arrows move, and moving it, saved once they are let go
  // (endNudge()), behind a save in flight like any change (the editor's commit()).
  cornerKey(event) {
    const { editor } = this;
    const shape = editor.selectedShape();
    const movable = shape && editor.visible && editor.pointer.drag === null;
    const action = movable ? cornerKeyAction(event, shape, this.corner) : null;
    if (!action) return false;
    editor.chosen = true;
    if (action.points) {
      shape.points = action.points;
      shape.server = null; // saved in fractions from now on
      this.nudging = true;
    } else {
      this.corner = action.corner;
    }
    editor.announce(action.message);
    editor.host.redraw();
    return true;
  }

  async endNudge() {
    if (!this.nudging) return;
    this.nudging = false;
    const { editor } = this;
    const saved = await editor.commit(editor.shapes, null, true);
    if (!saved || this.warned || !editor.saver.unticked()) return;
    this.warned = true;
    editor.announce(editor.saver.said(CHANGED));
  }
}
