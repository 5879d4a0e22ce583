// Zones, lines and ignore zones of the open stream (docs/analytics.md): drawn over the video, zones and
// lines with their live counts (shape_drawing.js), ignore zones greyed where the stream sees nothing
// (ignore_zones.js), and drawn, moved, renamed and deleted here with a mouse, a pen or a finger (pointer
// events: taps told from swipes and pinches in zone_pointer.js), or from the keyboard (zone_keyboard.js):
// while a shape is drawn the picture takes the focus and a crosshair is moved with the arrow keys, and a
// selected shape's corners are moved with the arrows, each burst of presses saved once, as a drag is
// when it ends. A live region says what each key did.
//
// The server is the record: every change is one PATCH of the stream's whole `zones` and `lines` (and
// `ignore_zones`, where they changed), saved by zone_saving.js (which says what becomes of a refusal, a
// save that never reached the server, one made over shapes changed elsewhere, and the config file), and
// what the server answers (or, once a second, what the stream list says) is what is shown.
// A stream that restarts or reconnects keeps its last picture (dimmed, its notice stepping aside while
// a shape is drawn: style.css), and shapes go on being drawn and moved on it, in fractions of it: a
// point clicked there is in the same place of the picture the stream comes back with, whatever its size.
// The selected shape's class filter, a zone's loiter time and an ignore zone's share are set in the panel
// below the list (shape_panel.js) and saved the same way. Beside a line's totals the list says since when they count
// (GET /api/streams/<id>/counts `since`), asked whenever they may have started again (askSince()).

import { markInvalid, unmarkInvalid } from "./announce.js";
import { streamCounts, viewerSettings } from "./api.js";
import { drawIgnoreZones, filtersObjects } from "./ignore_zones.js";
import { drawShapes } from "./shape_drawing.js";
import { drawingStarted, hintFor } from "./shape_hints.js";
import { CENTRE } from "./shape_keys.js";
import { ShapePanel } from "./shape_panel.js";
import { ShapeKeyboard } from "./zone_keyboard.js";
import { ShapePointer } from "./zone_pointer.js";
import { ShapeSaver } from "./zone_saving.js";
import {
  aKind,
  fractionsOf,
  freeName,
  fromServer,
  IGNORE,
  inPixels,
  isPolygon,
  keyOf,
  kindWord,
  leastPoints,
  nameProblem,
  near,
  optionOf,
  percents,
  SHAPE_KINDS,
  withSettings,
} from "./shapes.js";

const WAIT_FOR_PICTURE = "Wait for the first picture: shapes are drawn on it.";

/**
 * Each line's `since` in a GET /api/streams/<id>/counts answer: name -> Unix s, of those that have one a
 * date can be made of (an answer not segcast's, or garbled, gives none rather than an error on each frame).
 */
function sinceOf(answer) {
  const since = new Map();
  for (const [name, line] of Object.entries(answer?.lines ?? {})) {
    const at = line?.since;
    if (typeof at === "number" && !Number.isNaN(new Date(at * 1000).getTime())) since.set(name, at);
  }
  return since;
}

/** Whether any of `element` is inside the window. */
function inView(element) {
  const { top, bottom, left, right } = element.getBoundingClientRect();
  return bottom > 0 && top < window.innerHeight && right > 0 && left < window.innerWidth;
}

export class ZoneEditor {
  // host: {canvas, size() -> {width, height} | null, redraw(), reveal() (turn the zones overlay on)};
  // elements: the toolbar's parts (and its Undo point button, in index.html beside Done) and the panel's.
  constructor(host, elements) {
    this.host = host;
    this.el = elements;
    this.streamId = null;
    this.exists = true; // the server has the open stream, as far as the page knows: shapes can be added
    // {kind: "zone" | "line" | "ignore", name, points: [[x, y] in fractions of the frame on screen], extra: other
    // keys, server: the shape as the server gave it, or null once it is drawn or moved here}
    this.shapes = [];
    this.fitted = null; // the frame size the shapes in pixels are converted with
    this.options = null; // the stream's zones, lines and ignore zones as the server last said
    this.etag = null; // the ETag of the stream's settings those came with
    this.savedKey = null;
    this.mode = "idle"; // or "zone", "line", "ignore": adding one
    this.draft = [];
    this.cursor = null; // where the pointer or the keyboard's crosshair is, while drawing
    this.selected = null; // keyOf() the selected shape
    // The person chose the selected shape (selected it, or changed it), as opposed to it being selected
    // by finishing its drawing: only then does Backspace delete it. A Backspace pressed a moment after
    // a shape is finished is meant for its last point ("Undo point" a press before), not the shape.
    this.chosen = false;
    this.counts = null;
    this.since = new Map(); // line name -> when its totals began (Unix s), as the server last said
    this.sinceAsked = null; // the stream's settings and state as of the last question of `since`
    this.askingSince = false; // a question of `since` is on its way
    this.sinceWanted = false; // and another is to follow it: the totals may have started again since it went
    this.visible = true;
    this.errorsShown = 0; // refusals shown so far (showError): a later save's answer keeps a newer one
    this.typed = false; // the name field holds what the user typed, not a name filled in here
    this.renaming = null; // {from, to}: keyOf() a shape being renamed, selected again if refused
    this.adding = null; // {key, name}: keyOf() a new shape named by the user, whose name a refusal keeps
    this.askingClasses = false;

    this.pointer = new ShapePointer(this);
    this.keyboard = new ShapeKeyboard(this);
    this.saver = new ShapeSaver(this);
    // The button that starts (and cancels) each kind of shape.
    this.starters = { zone: elements.addZone, line: elements.addLine, [IGNORE]: elements.addIgnore };
    for (const [kind, button] of Object.entries(this.starters)) {
      button.addEventListener("click", () => this.start(kind));
    }
    elements.finish.addEventListener("click", () => this.finish());
    this.el.undo.addEventListener("click", () => this.undoPoint());
    elements.remove.addEventListener("click", () => this.removeSelected());
    elements.name.addEventListener("input", () => {
      this.typed = true;
      unmarkInvalid(elements.name, elements.error.id);
    });
    for (const input of [elements.loiter, elements.share]) {
      input.addEventListener("input", () => unmarkInvalid(input, elements.error.id));
    }
    elements.name.addEventListener("change", () => this.rename());
    const { list, empty, ignored, settings, classes, classesLegend, loiter, loiterField, share, shareField } = elements;
    const fallback = elements.addZone;
    this.panel = new ShapePanel(
      { list, empty, ignored, settings, classes, classesLegend, loiter, loiterField, share, shareField, fallback },
      {
        select: (key) => this.select(key),
        change: (changes) => this.changeSelected(changes),
        refuse: (message, field) => {
          this.showError(message, field);
          this.renderSettings();
        },
      },
    );
  }

  open(streamId) {
    if (streamId === this.streamId) return;
    this.streamId = streamId;
    this.exists = true;
    this.shapes = this.saver.inFlight.get(streamId) ?? [];
    this.options = null;
    this.etag = null;
    this.savedKey = null;
    this.fitted = null;
    this.mode = "idle";
    this.draft = [];
    this.selected = null;
    this.chosen = false;
    this.pointer.reset();
    this.keyboard.reset();
    this.saver.reset();
    this.counts = null;
    this.since = new Map();
    this.sinceAsked = null;
    this.showError("");
    this.showProblem("");
    this.panel.renderIgnored(null); // until the stream list says what this one ignored
    this.render();
    this.saver.showPersist();
  }

  // Saving to the config file is offered only where there is one (GET /api/viewer), and class filters
  // only of the model's classes, which the same answer names. Told again at each hello (app.js): a
  // box the person ticked stays so, unless save_config decides for them.
  useViewerSettings(settings) {
    this.saver.useSettings(settings);
    this.offerClasses(settings.classes);
    // A hello: the server may have restarted, its lines' totals with it (asked of a stream it has: one not
    // there yet, or gone, would answer 404 to no purpose).
    if (this.sinceAsked) this.askSince();
  }

  offerClasses(names) {
    this.panel.classNames = Array.isArray(names) ? names : [];
    this.renderSettings();
  }

  // A remote model's classes are known to the server only once its server has described the model:
  // until then they are asked again each time a shape is selected.
  async askClasses() {
    if (this.panel.classNames.length || this.askingClasses) return;
    this.askingClasses = true;
    try {
      const settings = await viewerSettings().catch(() => null);
      if (settings) this.offerClasses(settings.classes);
    } finally {
      this.askingClasses = false;
    }
  }

  setVisible(visible) {
    this.visible = visible;
    if (!visible && this.mode === "idle") this.selected = null;
    this.render();
  }

  /** Whether a save of the open stream's shapes is on its way. */
  get saving() {
    return this.saver.inFlight.has(this.streamId);
  }

  busy() {
    return this.mode !== "idle" || this.pointer.drag !== null || this.keyboard.nudging || this.saving;
  }

  /**
   * The stream as the server has it (null: none), as asked at `askedAt` (performance.now()); its
   * shapes are adopted unless a change is being made here, or the question was asked before the last
   * change was answered. None ends a shape being drawn: its picture is gone, and there is nothing to
   * save it to (a stream restarting keeps its last picture to draw on; a removed one is not shown).
   * What its object filters kept from its tracker so far is said under the list, where it has any.
   */
  setStream(stream, askedAt = performance.now()) {
    this.panel.renderIgnored(filtersObjects(stream?.options) ? stream.detections_ignored : null);
    this.saver.persistable = stream?.persistable !== false;
    this.saver.showPersist();
    if (this.exists !== (stream !== null)) {
      this.exists = stream !== null;
      this.render();
    }
    if (stream === null && this.mode !== "idle") this.cancel();
    if (askedAt >= this.saver.changedAt && !this.busy()) this.adopt(stream?.options, stream?.etag ?? null);
    this.askSinceOnChange(stream);
  }

  // New settings (a line moved, a restarting change), a new state, or the stream gone and back may have
  // started the lines' totals again: when they began is asked again. None: they are gone with it.
  askSinceOnChange(stream) {
    const asked = stream && `${stream.etag} ${stream.state}`;
    if (asked === this.sinceAsked) return;
    this.sinceAsked = asked;
    if (stream) this.askSince();
    else this.showSince(new Map());
  }

  /**
   * When each line's totals began (GET /api/streams/<id>/counts `since`), from the server, which alone
   * knows: they start again at a restart of the stream or of segcast, or as a line moves, whether or not
   * they were 0. One question at a time; one wanted while it is out follows it, as its answer may be of
   * before the change that wanted it.
   */
  async askSince() {
    if (this.streamId === null) return;
    if (this.askingSince) {
      this.sinceWanted = true;
      return;
    }
    const { streamId } = this;
    this.askingSince = true;
    this.sinceWanted = false;
    const answer = await streamCounts(streamId).catch(() => null); // the next change or frame asks again
    this.askingSince = false;
    if (answer && streamId === this.streamId) this.showSince(sinceOf(answer));
    if (this.sinceWanted) this.askSince();
  }

  showSince(since) {
    this.since = since;
    this.renderCounts();
  }

  // Show `options` (a stream's, as the server has them, with its `etag`) unless they are what is shown already.
  adopt(options, etag = this.etag) {
    const wanted = Object.fromEntries(SHAPE_KINDS.map((kind) => [optionOf(kind), options?.[optionOf(kind)] ?? []]));
    const key = JSON.stringify(wanted);
    this.etag = etag;
    if (key === this.savedKey) return;
    const size = this.host.size();
    // Pixels mean nothing before the first frame: the next poll retries.
    if (Object.values(wanted).flat().some(inPixels) && !size) return;
    this.options = wanted;
    this.savedKey = key;
    this.fitted = size;
    this.shapes = SHAPE_KINDS.flatMap((kind) => wanted[optionOf(kind)].map((json) => fromServer(kind, json, size)));
    if (!this.shapes.some((shape) => keyOf(shape) === this.selected)) this.selected = null;
    this.render();
  }

  /**
   * The frame on screen may have a new size (the camera's resolution changed): shapes in pixels are
   * where they were in pixels, so they are converted again; those in fractions stay where they are.
   */
  fit() {
    const size = this.host.size();
    if (size && this.el.error.textContent === WAIT_FOR_PICTURE) this.showError(""); // the picture it asked for came
    if (!size || this.options === null) return;
    if (size.width === this.fitted?.width && size.height === this.fitted?.height) return;
    this.fitted = size;
    for (const shape of this.shapes) {
      if (shape.server && inPixels(shape.server)) shape.points = fractionsOf(shape.server, size);
    }
  }

  /**
   * The `counts` of the frame on screen. A line counted there that the server has not said since when of
   * (a new or moved one, a restarted stream's, as last asked before its first frame) is asked about.
   */
  setCounts(counts) {
    this.counts = counts ?? null;
    const unknown = Object.keys(this.counts?.lines ?? {}).some((name) => !this.since.has(name));
    if (unknown && !this.askingSince) this.askSince();
    this.renderCounts();
  }

  // The press was on a shape or made a point: the view then neither pins nor unpins a track.
  takeClaim() {
    return this.pointer.takeClaim();
  }

  start(kind) {
    if (this.mode === kind) {
      this.cancel();
      return;
    }
    if (!this.host.size()) {
      this.showError(WAIT_FOR_PICTURE);
      return;
    }
    this.mode = kind;
    this.draft = [];
    this.selected = null;
    this.cursor = CENTRE;
    // A name typed before the click with no shape selected names the new shape (typed with one selected,
    // it renamed that one as the field lost the focus, before this click); one that cannot is kept, to
    // be corrected before the shape is finished, and the error says why. Else the next free name is offered.
    const typed = this.typed ? this.el.name.value.trim() : "";
    this.showError(typed && nameProblem(this.shapes, this.el.name.pattern, kind, typed), this.el.name);
    if (!typed) this.showName(freeName(this.shapes, kind));
    this.host.reveal();
    this.render();
    this.focusPicture(); // its keys draw (shape_hints.js)
    this.announce(drawingStarted(kind, this.cursor));
  }

  // The picture takes the keyboard's focus. Not scrolled to where any of it shows: on a short screen (a
  // phone held sideways) that would push Done and Cancel below it, and a finger on the picture cannot
  // scroll while it draws. Wholly out of sight (a window zoomed far in), it is brought into view.
  focusPicture() {
    const { canvas } = this.host;
    canvas.focus({ preventScroll: true });
    if (!inView(canvas)) canvas.scrollIntoView({ block: "nearest" });
  }

  // The picture leaves the keyboard's way as drawing ends (render()): a focus on it goes back to the
  // button that started the shape, and a screen reader hears that the shape was dropped.
  cancel() {
    const started = this.starters[this.mode] ?? this.el.addZone;
    this.mode = "idle";
    this.draft = [];
    this.render();
    this.announce("Cancelled.");
    if (document.activeElement === this.host.canvas) started.focus();
  }

  // A name put in the field here (the selected shape's, a free one), as opposed to one typed.
  showName(name) {
    this.el.name.value = name;
    this.typed = false;
  }

  finish() {
    const kind = this.mode;
    if (kind === "idle") return;
    if (this.draft.length < leastPoints(kind)) {
      // Asked by the keyboard (F, Enter: zone_keyboard.js), which has no disabled Done to tell it so.
      const needs = `${aKind(kind)} needs ${leastPoints(kind)} points.`;
      this.announce(needs[0].toUpperCase() + needs.slice(1));
      return;
    }
    const name = this.el.name.value.trim() || freeName(this.shapes, kind);
    const problem = nameProblem(this.shapes, this.el.name.pattern, kind, name);
    if (problem) {
      this.showError(problem, this.el.name);
      return;
    }
    const typed = this.typed;
    this.showName(name);
    const shape = { kind, name, points: this.draft, extra: {}, server: null };
    this.adding = typed ? { key: keyOf(shape), name } : null;
    this.mode = "idle";
    this.draft = [];
    this.selected = keyOf(shape);
    this.chosen = false;
    this.commit([...this.shapes, shape], `${kindWord(kind)} “${name}” added`);
  }

  // A click on the picture or the list selects before the name or loiter field loses the focus, and so
  // before its `change` could save what was typed in it: that is saved first, for the shape it was
  // typed for (a shape renamed by it stays the selected one if that is the one selected again).
  select(key) {
    if (this.mode !== "idle") return;
    const again = key !== null && key === this.selected;
    this.saveTyped();
    this.selected = again ? this.selected : key;
    this.chosen = this.selected !== null;
    this.keyboard.picked();
    this.panel.forgetTyped();
    const shape = this.selectedShape();
    if (shape) this.showName(shape.name);
    this.render();
    if (!shape) return;
    this.askClasses();
    // Pressed again in the list (Enter on it): on to its corners, whose keys are the picture's.
    if (again) this.focusPicture();
  }

  selectedShape() {
    return this.shapes.find((s) => keyOf(s) === this.selected);
  }

  // The selected shape's name, loiter time and share as typed and not saved yet (their fields save on
  // `change`, which comes only as they lose the focus), saved now.
  saveTyped() {
    if (this.mode !== "idle" || !this.selectedShape()) return;
    if (this.typed) this.rename();
    this.panel.saveTyped(); // after the rename: a loiter time it refuses keeps its error on show
  }

  // Saved like any other change (commit()); one that changes nothing is not sent.
  changeSelected(changes) {
    const shape = this.selectedShape();
    if (this.mode !== "idle" || this.pointer.drag !== null || !shape) return;
    const same = ([key, value]) => JSON.stringify(shape.extra[key]) === JSON.stringify(value);
    if (Object.entries(changes).every(same)) return;
    this.chosen = true;
    this.commit(this.shapes.map((s) => (s === shape ? withSettings(shape, changes) : s)));
  }

  // While a save is in flight the removal is queued behind it (commit()), like any other change.
  removeSelected() {
    const shape = this.selectedShape();
    if (!shape || this.mode !== "idle" || this.pointer.drag !== null) return;
    const rest = this.shapes.filter((s) => s !== shape);
    this.selected = null;
    this.commit(rest, `${kindWord(shape.kind)} “${shape.name}” deleted`);
  }

  // A name the server would refuse is not sent: the error says why, and the field shows the saved name.
  rename() {
    const shape = this.shapes.find((s) => keyOf(s) === this.selected);
    if (this.mode !== "idle" || !shape) return;
    const name = this.el.name.value.trim();
    const problem = name && nameProblem(this.shapes, this.el.name.pattern, shape.kind, name, shape);
    if (problem) this.showError(problem, this.el.name);
    this.showName(problem || !name ? shape.name : name);
    if (problem || !name || name === shape.name) return;
    const renamed = { ...shape, name, server: shape.server && { ...shape.server, name } }; // in its own units
    this.selected = keyOf(renamed);
    this.chosen = true;
    this.renaming = { from: keyOf(shape), to: this.selected };
    this.commit(this.shapes.map((s) => (s === shape ? renamed : s)));
  }

  // Said by a screen reader (a polite live region): what a key or a press did.
  announce(message) {
    if (this.el.status) this.el.status.textContent = message;
  }

  // The whole new list to the server, shown at once (zone_saving.js); `what`: what the change did, announced
  // (`quiet`: nothing else is). Resolves to whether it was saved.
  commit(shapes, what = null, quiet = false) {
    return this.saver.commit(shapes, what, quiet);
  }

  // `streamId` was removed (app.js): nothing of it is left unsaved to the config file.
  forget(streamId) {
    this.saver.forget(streamId);
  }

  // Said next to the shape tools, and scrolled to where it can be read: a refusal under a tall picture
  // would otherwise go unseen, as the shape it refused disappears. `field`: the input it is about (the
  // name, the loiter time, the share), marked invalid and described by it, with the focus, until it is changed.
  showError(message, field = null) {
    if (message) this.errorsShown += 1;
    this.el.error.textContent = message;
    for (const input of [this.el.name, this.el.loiter, this.el.share]) unmarkInvalid(input, this.el.error.id);
    if (message && field) {
      markInvalid(field, this.el.error.id);
      field.focus();
    }
    if (message) this.el.error.scrollIntoView({ block: "nearest" });
  }

  // What the server says it cannot use of the saved shapes (pixels beyond the frame), while it lasts.
  showProblem(message) {
    this.el.problem.textContent = message;
    this.el.problem.hidden = !message;
  }

  // A point of the shape being drawn; the first point again closes a zone or an ignore zone, the last again ends it
  // (which is also what the second press of a double-click or double-tap does).
  addPoint(where) {
    const { draft } = this;
    const enough = draft.length >= leastPoints(this.mode);
    if (isPolygon(this.mode) && enough && near(draft[0], where.point, where)) this.finish();
    else if (draft.length && near(draft.at(-1), where.point, where)) {
      if (enough) this.finish();
    } else {
      draft.push(where.point.map((v) => Math.min(1, Math.max(0, v))));
      this.announce(`Point ${draft.length} added at ${percents(draft.at(-1))}.`);
      this.render();
    }
  }

  // The last point of the shape being drawn taken back (Backspace, Undo point).
  undoPoint() {
    if (!this.draft.length) return;
    this.announce(`Point ${this.draft.length} removed.`);
    this.draft.pop();
    this.render();
  }

  // Where the pointer is over the picture (null: off it), for the shape being drawn.
  pointAt(point) {
    this.cursor = point;
    if (this.mode !== "idle") this.host.redraw();
  }

  // Vertex `index` of the shape keyOf() `key`, dragged to `point` (fractions of the frame); false
  // where there is no such shape any more.
  moveCorner(key, index, point) {
    const shape = this.shapes.find((s) => keyOf(s) === key);
    if (!shape) return false;
    shape.points = shape.points.map((p, i) => (i === index ? point : p));
    shape.server = null; // saved in fractions from now on
    this.host.redraw();
    return true;
  }

  // A corner's drag ended: saved, or (one the browser cancelled) the saved shapes shown again.
  endDrag(save) {
    if (save) {
      this.commit(this.shapes);
    } else {
      this.savedKey = null;
      this.adopt(this.options);
    }
  }

  render() {
    const { el, mode } = this;
    const drawing = mode !== "idle";
    for (const [kind, button] of Object.entries(this.starters)) {
      const noun = kindWord(kind).toLowerCase();
      button.setAttribute("aria-pressed", String(mode === kind));
      button.textContent = mode === kind ? `Cancel ${noun}` : `Add ${noun}`;
      button.disabled = !this.exists; // a stream the server has not: nothing to draw on or save to
    }
    el.finish.hidden = !drawing;
    el.finish.disabled = !drawing || this.draft.length < leastPoints(mode);
    el.undo.hidden = !drawing;
    el.undo.disabled = !drawing || this.draft.length === 0;
    el.remove.disabled = this.selected === null || drawing;
    el.hint.textContent = hintFor(mode);
    // A finger that draws or drags must not scroll the page instead; the keyboard reaches the picture
    // while it has keys (shape_hints.js), and a click focuses it, so a shape selected there takes them at once.
    const editing = drawing || this.selected !== null;
    this.host.canvas.classList.toggle("editing", editing);
    this.host.canvas.tabIndex = editing ? 0 : -1;
    this.panel.renderList(this.shapes, this.selected);
    this.saver.showPersist(); // a stream no file keeps says so once it has shapes to lose
    this.renderSettings();
    this.renderCounts();
    this.host.redraw();
  }

  // The selected shape's class filter and a zone's loiter time or an ignore zone's share, as listed and saved.
  renderSettings() {
    this.panel.renderSettings(this.mode === "idle" ? this.selectedShape() : undefined);
  }

  renderCounts() {
    this.panel.renderCounts(this.shapes, this.counts, this.since);
  }

  /**
   * Draw the shapes, their counts and the one being drawn onto `context` (the whole frame); `layer`:
   * "under" or "over" the tracks, or "both" (drawShapes). Ignore zones go first: under the zones and
   * lines, and their tags under the zones' tags and the crosshair.
   */
  draw(context, layer = "both") {
    const drawing = this.mode !== "idle";
    // Shown to the keyboard only: a click that focuses the picture leaves no crosshair on it.
    const focused = this.host.canvas.matches(":focus-visible");
    const shape = !drawing && focused && this.visible ? this.selectedShape() : undefined;
    let crosshair = drawing && this.cursor && focused ? this.cursor : null;
    if (shape) crosshair = shape.points[Math.min(this.keyboard.corner, shape.points.length - 1)];
    const shown = this.visible ? this.shapes : [];
    const draft = drawing ? { kind: this.mode, points: this.draft, cursor: this.cursor } : null;
    const { selected, counts } = this;
    const ignoring = draft?.kind === IGNORE;
    drawIgnoreZones(context, { shapes: shown, selected, draft: ignoring ? draft : null }, layer);
    const shapes = shown.filter((s) => s.kind !== IGNORE);
    drawShapes(context, { shapes, selected, counts, draft: ignoring ? null : draft, crosshair }, layer);
  }
}
