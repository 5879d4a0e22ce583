// Zones and lines of the open stream (docs/analytics.md): drawn over the video with their live counts,
// and drawn, moved, renamed and deleted here with a mouse, a pen or a finger (pointer events), or from
// the keyboard: while a shape is drawn the picture takes the focus and a crosshair is moved with the
// arrow keys, and a selected shape's corners are picked with "[" and "]" and moved with the arrows, each
// burst of presses saved once, as a drag is when it ends. A live region says what each key did.
//
// The server is the record: every change is one PATCH of the stream's whole `zones` and `lines`, and
// what the server answers (or, once a second, what the stream list says) is what is shown. A shape
// drawn or moved here is saved in fractions of the frame, so that it survives a change of resolution;
// every other shape is sent back exactly as the server gave it, so one in pixels (a config file's)
// stays in pixels, and is drawn where those pixels are on the frame on screen, whatever its size. A
// refusal (a polygon that crosses itself, a name taken twice) is shown in the server's words and the
// last saved shapes come back; so do they after a save that never reached the server (the network or
// the server is down), which is not tried again: the page says it was not saved, and once the server
// answers again its shapes are shown, whatever became of that save. The stream runs on through a
// change: only the counts of changed shapes start again.
// Each save is made only over the shapes it was drawn on (`If-Match`): where someone else changed
// them meanwhile (another tab, a script), theirs are shown and this change is not saved over them.
// A stream that restarts or reconnects keeps its last picture (dimmed, its notice stepping aside while
// a shape is drawn: style.css), and shapes go on being drawn and moved on it, in fractions of it: a
// point clicked there is in the same place of the picture the stream comes back with, whatever its size.
// The selected shape's class filter (`classes`: none ticked counts every class) and a zone's `loiter_s`
// are set in the panel below the list and saved the same way; the classes offered are the model's,
// as GET /api/viewer names them.

import { ApiError, changeStream, getStream, viewerSettings } from "./api.js";
import { reconcile } from "./dom.js";
import { pictureRect } from "./overlay.js";

const HIT_PX = { mouse: 8, pen: 10, touch: 18 }; // how near a pointer must come to a vertex or a line, in CSS px
const LEAST_POINTS = { zone: 3, line: 2 };
const ZONE_COLOR = "#ffd21f";
const LINE_COLOR = "#25e0ff";
const FRACTION_DIGITS = 4; // 1/10000 of the frame: finer than any camera's pixels
const KEY_STEP = 0.01; // how far an arrow key moves the crosshair or a corner, in fractions of the frame
const BIG_STEP = 10; // how many steps it moves with Shift held
const ARROWS = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] };
const CENTRE = [0.5, 0.5];

const DRAW_KEYS = "Keys: arrows move the crosshair (Shift: 10 steps), Enter or Space adds a point there,";
const HINTS = {
  zone:
    "Click or tap the corners. Click the first corner again (or double-click) to close the zone. " +
    `${DRAW_KEYS} Enter on the first corner or F closes the zone, Backspace removes the last corner, Escape cancels.`,
  line:
    "Click or tap the points of the line. Double-click (or tap the last point again) to end it. " +
    `${DRAW_KEYS} F ends the line, Backspace removes the last point, Escape cancels.`,
  idle:
    "Drag a corner to move it; select a shape to rename or delete it. With a shape selected, on the " +
    "picture: “[” and “]” pick a corner, arrows move it (Shift: 10 steps).",
};

const keyOf = (shape) => `${shape.kind}:${shape.name}`;
const shapesKey = (options) => JSON.stringify({ zones: options?.zones ?? [], lines: options?.lines ?? [] });
const NO_CONNECTION =
  "Not saved: no connection to segcast. The zones and lines it has saved are shown: " +
  "make the change again once it is back.";
const WAIT_FOR_PICTURE = "Wait for the first picture: shapes are drawn on it.";
const CHANGED_ELSEWHERE =
  "The zones or lines were changed elsewhere meanwhile: these are the saved ones now. Make your change again.";
// Saves made again after the stream's other settings (not its shapes) changed under them.
const MAX_RESENDS = 3;
// Names as the server takes them (server/analytics/shapes.py): checked here first, so a name it would
// refuse is never sent, and the field says so while the saved name stays.
const NAME_RULE = "up to 64 letters, digits, “-” or “_”";
const LOITER_RULE = "Loiter after: seconds above 0, or empty for no loiter events.";

const inPixels = (json) => json.units !== "fraction";
const clampFraction = (v) => Number(Math.min(1, Math.max(0, v)).toFixed(FRACTION_DIGITS));
const percents = ([x, y]) => `${Math.round(x * 100)} %, ${Math.round(y * 100)} %`;
const vertexWord = (kind) => (kind === "zone" ? "Corner" : "Point");

// `point` moved one arrow key's step (`big`: Shift held) in `direction`, kept on the frame.
function stepped(point, [dx, dy], big) {
  const step = KEY_STEP * (big ? BIG_STEP : 1);
  return [clampFraction(point[0] + dx * step), clampFraction(point[1] + dy * step)];
}

// Where a shape as the server has it (`json`) is on a frame of `size`, in fractions of it.
function fractionsOf(json, size) {
  const [w, h] = inPixels(json) ? [size.width, size.height] : [1, 1];
  return json.points.map(([x, y]) => [x / w, y / h]);
}

// `server`: the shape as the server gave it, sent back as it is while the shape is not edited here.
function fromServer(kind, json, size) {
  const { name, points, units, ...extra } = json;
  return { kind, name, points: fractionsOf(json, size), extra, server: json };
}

function toServer(shape) {
  if (shape.server) return shape.server;
  const points = shape.points.map(([x, y]) => [clampFraction(x), clampFraction(y)]);
  return { ...shape.extra, name: shape.name, points, units: "fraction" };
}

// `shape` with its `changes` to the keys the panel sets (a key `undefined` is dropped), in its own units:
// like a rename, a shape in pixels stays in pixels.
function withSettings(shape, changes) {
  const apply = (json) => {
    const changed = { ...json, ...changes };
    for (const [key, value] of Object.entries(changes)) if (value === undefined) delete changed[key];
    return changed;
  };
  return { ...shape, extra: apply(shape.extra), server: shape.server && apply(shape.server) };
}

// What a shape is limited to, for its tag and its entry in the list: its classes, a zone's loiter time.
function settingsText(shape) {
  const { classes = [], loiter_s: loiterS } = shape.extra;
  return [classes.join(", "), loiterS === undefined ? "" : `loiter ${loiterS} s`].filter(Boolean).join(" · ");
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

export class ZoneEditor {
  // host: {canvas, size() -> {width, height} | null, redraw(), reveal() (turn the zones overlay on)};
  // elements: the toolbar's parts.
  constructor(host, elements) {
    this.host = host;
    this.el = elements;
    this.streamId = null;
    // {kind: "zone" | "line", name, points: [[x, y] in fractions of the frame on screen], extra: other
    // keys, server: the shape as the server gave it, or null once it is drawn or moved here}
    this.shapes = [];
    this.fitted = null; // the frame size the shapes in pixels are converted with
    this.options = null; // the stream's zones and lines as the server last said
    this.etag = null; // the ETag of the stream's settings those came with
    this.savedKey = null;
    this.mode = "idle"; // or "zone", "line": adding one
    this.draft = [];
    this.cursor = null; // where the pointer or the keyboard's crosshair is, while drawing
    this.selected = null; // keyOf() the selected shape
    this.drag = null; // {key, index, pointerId, moved}
    this.corner = 0; // the selected shape's vertex the arrow keys move
    this.nudging = false; // the arrow keys moved a corner, saved once they are let go
    this.saving = false;
    this.unsaved = false; // a change made while saving, sent once that save is answered
    this.claimed = false; // the last press was the editor's, not a click on a track
    this.counts = null;
    this.visible = true;
    this.changedAt = -Infinity; // performance.now() when the last change here was answered
    this.fileSaves = false; // the server has a config file to save to (GET /api/viewer)
    this.persistable = true; // and can save this stream's changes there (not one --source started)
    this.typed = false; // the name field holds what the user typed, not a name filled in here
    this.renaming = null; // {from, to}: keyOf() a shape being renamed, selected again if refused
    this.adding = null; // {key, name}: keyOf() a new shape named by the user, whose name a refusal keeps
    this.classNames = []; // the model's, in class-id order (GET /api/viewer); none while the server knows none
    this.askingClasses = false;
    this.classBoxes = new Map(); // class name -> its checkbox's label, kept so the keyboard's focus holds
    this.loiterTyped = false; // the loiter field holds what the user typed, not the saved value

    const { canvas } = host;
    canvas.addEventListener("pointerdown", (event) => this.pointerDown(event));
    canvas.addEventListener("touchstart", (event) => this.touchStart(event), { passive: false });
    canvas.addEventListener("pointermove", (event) => this.pointerMove(event));
    canvas.addEventListener("pointerup", (event) => this.pointerUp(event, true));
    canvas.addEventListener("pointercancel", (event) => this.pointerUp(event, false));
    canvas.addEventListener("pointerleave", () => {
      this.cursor = null;
      if (this.mode !== "idle") this.host.redraw();
    });
    canvas.addEventListener("keydown", (event) => this.canvasKey(event));
    canvas.addEventListener("keyup", (event) => ARROWS[event.key] && this.endNudge());
    canvas.addEventListener("focus", () => this.host.redraw()); // the crosshair or the corner picked
    canvas.addEventListener("blur", () => {
      this.endNudge();
      this.host.redraw();
    });
    elements.addZone.addEventListener("click", () => this.start("zone"));
    elements.addLine.addEventListener("click", () => this.start("line"));
    elements.finish.addEventListener("click", () => this.finish());
    elements.remove.addEventListener("click", () => this.removeSelected());
    elements.name.addEventListener("input", () => (this.typed = true));
    elements.name.addEventListener("change", () => this.rename());
    elements.classes.addEventListener("change", () => this.changeClasses());
    elements.loiter.addEventListener("input", () => (this.loiterTyped = true));
    elements.loiter.addEventListener("change", () => this.changeLoiter());
    elements.list.addEventListener("click", (event) => {
      const item = event.target.closest("li[data-shape]");
      if (item) this.select(item.dataset.shape);
    });
    document.addEventListener("keydown", (event) => this.key(event));
  }

  open(streamId) {
    if (streamId === this.streamId) return;
    this.streamId = streamId;
    this.shapes = [];
    this.options = null;
    this.etag = null;
    this.savedKey = null;
    this.fitted = null;
    this.mode = "idle";
    this.draft = [];
    this.selected = null;
    this.drag = null;
    this.corner = 0;
    this.nudging = false;
    this.saving = false; // a save for the stream left is ignored when it is answered
    this.unsaved = false;
    this.counts = null;
    this.showError("");
    this.showProblem("");
    this.render();
  }

  // Saving to the config file is offered only where there is one (GET /api/viewer), and class filters
  // only of the model's classes, which the same answer names.
  useViewerSettings(settings) {
    const { persist } = this.el;
    this.fileSaves = Boolean(settings.config_file);
    persist.checked = settings.save_config;
    persist.disabled = settings.save_config;
    this.showPersist();
    this.offerClasses(settings.classes);
  }

  offerClasses(names) {
    this.classNames = Array.isArray(names) ? names : [];
    this.renderSettings();
  }

  // A remote model's classes are known to the server only once its server has described the model:
  // until then they are asked again each time a shape is selected.
  async askClasses() {
    if (this.classNames.length || this.askingClasses) return;
    this.askingClasses = true;
    try {
      const settings = await viewerSettings().catch(() => null);
      if (settings) this.offerClasses(settings.classes);
    } finally {
      this.askingClasses = false;
    }
  }

  // A stream started by --source cannot be saved to the file: its changes last until a restart.
  showPersist() {
    this.el.persist.closest("label").hidden = !(this.fileSaves && this.persistable);
  }

  setVisible(visible) {
    this.visible = visible;
    if (!visible && this.mode === "idle") this.selected = null;
    this.render();
  }

  busy() {
    return this.mode !== "idle" || this.drag !== null || this.nudging || this.saving;
  }

  /**
   * The stream as the server has it (null: none), as asked at `askedAt` (performance.now()); its
   * shapes are adopted unless a change is being made here, or the question was asked before the last
   * change was answered. None ends a shape being drawn: its picture is gone, and there is nothing to
   * save it to (a stream restarting keeps its last picture to draw on; a removed one is not shown).
   */
  setStream(stream, askedAt = performance.now()) {
    this.persistable = stream?.persistable !== false;
    this.showPersist();
    if (stream === null && this.mode !== "idle") this.cancel();
    if (askedAt >= this.changedAt && !this.busy()) this.adopt(stream?.options, stream?.etag ?? null);
  }

  // Show `options` (a stream's, as the server has them, with its `etag`) unless they are what is shown already.
  adopt(options, etag = this.etag) {
    const wanted = { zones: options?.zones ?? [], lines: options?.lines ?? [] };
    const key = JSON.stringify(wanted);
    this.etag = etag;
    if (key === this.savedKey) return;
    const size = this.host.size();
    // Pixels mean nothing before the first frame: the next poll retries.
    if ([...wanted.zones, ...wanted.lines].some(inPixels) && !size) return;
    this.options = wanted;
    this.savedKey = key;
    this.fitted = size;
    this.shapes = [
      ...wanted.zones.map((zone) => fromServer("zone", zone, size)),
      ...wanted.lines.map((line) => fromServer("line", line, size)),
    ];
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

  /** The `counts` of the frame on screen. */
  setCounts(counts) {
    this.counts = counts ?? null;
    this.renderCounts();
  }

  countText(shape) {
    if (shape.kind === "zone") {
      const zone = this.counts?.zones?.[shape.name];
      return zone ? `${zone.objects} inside` : "";
    }
    const line = this.counts?.lines?.[shape.name];
    return line ? `in ${line.in} · out ${line.out}` : "";
  }

  // The press was on a shape or made a point: the view then neither pins nor unpins a track.
  takeClaim() {
    const claimed = this.claimed;
    this.claimed = false;
    return claimed;
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
    // A name typed before the click names the new shape; one that cannot is kept, to be corrected
    // before the shape is finished, and the error says why. Otherwise the next free name is offered.
    const typed = this.typed ? this.el.name.value.trim() : "";
    this.showError(typed && this.nameProblem(kind, typed));
    if (!typed) this.showName(this.freeName(kind));
    this.host.reveal();
    this.render();
    this.host.canvas.focus(); // its keys draw (HINTS)
    this.announce(`Drawing a ${kind}: crosshair at ${percents(this.cursor)}.`);
  }

  cancel() {
    this.mode = "idle";
    this.draft = [];
    this.render();
  }

  // Why `name` cannot name a `kind` (other than `shape`, being renamed): "" if it can. The field's
  // pattern is compiled as the browser compiles it for checkValidity() (the "v" flag).
  nameProblem(kind, name, shape = null) {
    const source = `^(?:${this.el.name.pattern})$`;
    let valid;
    try {
      valid = new RegExp(source, "v");
    } catch {
      valid = new RegExp(source, "u"); // a browser from before the "v" flag compiles patterns so
    }
    if (!valid.test(name)) return `“${name}” cannot be a name: use ${NAME_RULE}.`;
    if (this.shapes.some((s) => s !== shape && s.kind === kind && s.name === name)) {
      return `There is a ${kind} called “${name}” already: give this one another name.`;
    }
    return "";
  }

  // A name put in the field here (the selected shape's, a free one), as opposed to one typed.
  showName(name) {
    this.el.name.value = name;
    this.typed = false;
  }

  freeName(kind) {
    const taken = new Set(this.shapes.filter((s) => s.kind === kind).map((s) => s.name));
    let n = 1;
    while (taken.has(`${kind}-${n}`)) n += 1;
    return `${kind}-${n}`;
  }

  finish() {
    const kind = this.mode;
    if (kind === "idle" || this.draft.length < LEAST_POINTS[kind]) return;
    const name = this.el.name.value.trim() || this.freeName(kind);
    const problem = this.nameProblem(kind, name);
    if (problem) {
      this.showError(problem);
      this.el.name.focus();
      return;
    }
    const typed = this.typed;
    this.showName(name);
    const shape = { kind, name, points: this.draft, extra: {}, server: null };
    this.adding = typed ? { key: keyOf(shape), name } : null;
    this.mode = "idle";
    this.draft = [];
    this.selected = keyOf(shape);
    this.commit([...this.shapes, shape]);
  }

  select(key) {
    if (this.mode !== "idle") return;
    this.selected = key;
    this.corner = 0;
    this.loiterTyped = false;
    const shape = this.selectedShape();
    if (shape) this.showName(shape.name);
    this.render();
    if (shape) this.askClasses();
  }

  selectedShape() {
    return this.shapes.find((s) => keyOf(s) === this.selected);
  }

  changeClasses() {
    const classes = [...this.el.classes.querySelectorAll("input:checked")].map((box) => box.value);
    this.changeSelected({ classes });
  }

  // A time the server would refuse is not sent: the error says why, and the field shows the saved one.
  changeLoiter() {
    const { loiter } = this.el;
    const text = loiter.value.trim();
    const seconds = Number(text);
    this.loiterTyped = false;
    if (loiter.validity.badInput || (text !== "" && !(seconds > 0 && Number.isFinite(seconds)))) {
      this.showError(LOITER_RULE);
      this.renderSettings();
      return;
    }
    this.changeSelected({ loiter_s: text === "" ? undefined : seconds });
  }

  // Saved like any other change (commit()); one that changes nothing is not sent.
  changeSelected(changes) {
    const shape = this.selectedShape();
    if (this.mode !== "idle" || this.drag !== null || !shape) return;
    const same = ([key, value]) => JSON.stringify(shape.extra[key]) === JSON.stringify(value);
    if (Object.entries(changes).every(same)) return;
    this.commit(this.shapes.map((s) => (s === shape ? withSettings(shape, changes) : s)));
  }

  // While a save is in flight the removal is queued behind it (commit()), like any other change.
  removeSelected() {
    if (this.selected === null || this.mode !== "idle" || this.drag !== null) return;
    const rest = this.shapes.filter((shape) => keyOf(shape) !== this.selected);
    this.selected = null;
    this.commit(rest);
  }

  // A name the server would refuse is not sent: the error says why, and the field shows the saved name.
  rename() {
    const shape = this.shapes.find((s) => keyOf(s) === this.selected);
    if (this.mode !== "idle" || !shape) return;
    const name = this.el.name.value.trim();
    const problem = name && this.nameProblem(shape.kind, name, shape);
    if (problem) this.showError(problem);
    this.showName(problem || !name ? shape.name : name);
    if (problem || !name || name === shape.name) return;
    const renamed = { ...shape, name, server: shape.server && { ...shape.server, name } }; // in its own units
    this.selected = keyOf(renamed);
    this.renaming = { from: keyOf(shape), to: this.selected };
    this.commit(this.shapes.map((s) => (s === shape ? renamed : s)));
  }

  key(event) {
    if (event.defaultPrevented || this.streamId === null || this.host.canvas.closest("[hidden]")) return;
    const typing = event.target.closest?.("input, textarea, select");
    if (event.key === "Escape" && this.mode !== "idle") this.cancel();
    else if (event.key === "Enter" && this.mode !== "idle" && !event.target.closest?.("button")) this.finish();
    else if ((event.key === "Delete" || event.key === "Backspace") && !typing && this.selected !== null) {
      event.preventDefault();
      this.removeSelected();
    }
  }

  // The picture's own keys (HINTS); one it takes is not also the page's (key(), scrolling).
  canvasKey(event) {
    if (event.altKey || event.ctrlKey || event.metaKey || !this.host.size()) return;
    if (this.mode === "idle" ? this.cornerKey(event) : this.drawKey(event)) event.preventDefault();
  }

  // While drawing: the crosshair, a point at it, the last point taken back, the shape finished.
  drawKey(event) {
    const arrow = ARROWS[event.key];
    if (arrow) {
      this.cursor = stepped(this.cursor ?? CENTRE, arrow, event.shiftKey);
      this.announce(`Crosshair at ${percents(this.cursor)}.`);
      this.host.redraw();
    } else if (event.key === "Enter" || event.key === " ") {
      const rect = pictureRect(this.host.canvas);
      const reach = (KEY_STEP / 2) * Math.min(rect.width, rect.height); // on a point: on the crosshair's grid
      this.addPoint({ point: this.cursor ?? CENTRE, rect, reach });
    } else if (event.key === "f" || event.key === "F") {
      if (this.draft.length < LEAST_POINTS[this.mode]) {
        this.announce(`A ${this.mode} needs ${LEAST_POINTS[this.mode]} points.`);
      }
      this.finish();
    } else if (event.key === "Backspace") {
      if (this.draft.length) this.announce(`Point ${this.draft.length} removed.`);
      this.draft.pop();
      this.render();
    } else {
      return false;
    }
    return true;
  }

  // With a shape selected: which vertex the arrows move, and moving it, saved once they are let go
  // (endNudge()), behind a save in flight like any change (commit()).
  cornerKey(event) {
    const shape = this.selectedShape();
    const arrow = ARROWS[event.key];
    const picks = event.key === "[" || event.key === "]";
    if (!shape || !this.visible || this.drag !== null || !(arrow || picks)) return false;
    const count = shape.points.length;
    const word = vertexWord(shape.kind);
    if (!arrow) {
      this.corner = (Math.min(this.corner, count - 1) + (event.key === "]" ? 1 : count - 1)) % count;
      this.announce(`${word} ${this.corner + 1} of ${count} at ${percents(shape.points[this.corner])}.`);
    } else {
      const index = Math.min(this.corner, count - 1);
      const point = stepped(shape.points[index], arrow, event.shiftKey);
      shape.points = shape.points.map((p, i) => (i === index ? point : p));
      shape.server = null; // saved in fractions from now on
      this.nudging = true;
      this.announce(`${word} ${index + 1} at ${percents(point)}.`);
    }
    this.host.redraw();
    return true;
  }

  endNudge() {
    if (!this.nudging) return;
    this.nudging = false;
    this.commit(this.shapes);
  }

  // Said by a screen reader (a polite live region): what a key or a press did.
  announce(message) {
    if (this.el.status) this.el.status.textContent = message;
  }

  // The whole new list to the server; shown at once, and undone if the server refuses it. One save at
  // a time, so that the server applies the changes in the order they were made: one made while a save
  // is in flight (a rename, a new shape) is sent when that save is answered, and only the last
  // answer is shown.
  async commit(shapes) {
    const streamId = this.streamId;
    this.shapes = shapes;
    this.showError("");
    this.render();
    if (this.saving) {
      this.unsaved = true;
      return;
    }
    this.saving = true;
    let saved;
    try {
      saved = await this.save(streamId);
    } finally {
      // Whatever happened: a save left "in flight" would keep busy() true, and every later change unsaved.
      if (streamId === this.streamId) this.saving = false;
    }
    if (streamId !== this.streamId) return; // a save for the stream left is ignored
    const { options, etag, refusal } = saved;
    this.showError(refusal);
    this.changedAt = performance.now();
    this.savedKey = null;
    this.counts = null; // the next frame's counts are those of the new shapes
    // A refused rename leaves the shape selected under the name it kept, and the field showing that.
    const { renaming } = this;
    this.renaming = null;
    if (refusal && renaming?.to === this.selected) this.selected = renaming.from;
    if (this.nudging) {
      // Arrow keys are moving a corner: the shapes they move stay, and their save (endNudge()) goes
      // over these and shows what the server makes of them.
      this.options = options;
      this.etag = etag;
    } else {
      this.adopt(options, etag); // even while a new shape is being drawn: it is not in them yet
    }
    const selected = this.shapes.find((s) => keyOf(s) === this.selected);
    if (refusal && selected) this.showName(selected.name);
    // A new shape refused (it crosses itself) leaves the name typed for it, for the next try.
    const { adding } = this;
    this.adding = null;
    if (refusal && adding && !selected && this.mode === "idle") {
      this.el.name.value = adding.name;
      this.typed = true;
    }
  }

  /**
   * Send the shapes shown, again while they changed meanwhile: the stream's zones and lines (and
   * ETag) as the last answer left them, and what to say of the refusal ("" for none). A save the
   * server never answered is not sent again (it may even have been made): the last saved shapes are
   * shown, and the next poll that reaches the server shows its own.
   */
  async save(streamId) {
    const { persist } = this.el;
    let { options, etag } = this;
    let refusal = "";
    let resends = 0;
    do {
      this.unsaved = false;
      const body = {
        zones: this.shapes.filter((s) => s.kind === "zone").map(toServer),
        lines: this.shapes.filter((s) => s.kind === "line").map(toServer),
      };
      try {
        ({ options, etag } = await changeStream(streamId, body, persist.checked && !persist.disabled, etag));
        refusal = "";
      } catch (error) {
        if (!(error instanceof ApiError)) return { options, etag, refusal: NO_CONNECTION };
        refusal = error.message;
        if (error.stream !== null) {
          ({ options, etag } = error.stream); // made, only not saved: the next change goes over it
        } else if (error.status === 412) {
          const current = await getStream(streamId).catch(() => null);
          if (current === null) break; // the refusal as it is; the next poll brings the stream back
          // Only other settings changed (a new conf): the shapes this change was drawn on still hold.
          const resend = shapesKey(current.options) === shapesKey(options) && resends++ < MAX_RESENDS;
          ({ options, etag } = current);
          refusal = resend ? "" : CHANGED_ELSEWHERE;
          this.unsaved = resend;
        }
      }
    } while (this.unsaved && streamId === this.streamId);
    return { options, etag, refusal };
  }

  showError(message) {
    this.el.error.textContent = message;
  }

  // What the server says it cannot use of the saved shapes (pixels beyond the frame), while it lasts.
  showProblem(message) {
    this.el.problem.textContent = message;
    this.el.problem.hidden = !message;
  }

  // Where an event is on the picture, in fractions of the frame, and how near counts as on something.
  locate(event) {
    const rect = pictureRect(this.host.canvas);
    if (!rect.width || !rect.height) return null;
    const point = [(event.clientX - rect.left) / rect.width, (event.clientY - rect.top) / rect.height];
    return { point, rect, reach: HIT_PX[event.pointerType] ?? HIT_PX.mouse };
  }

  near(a, b, where) {
    return Math.hypot((a[0] - b[0]) * where.rect.width, (a[1] - b[1]) * where.rect.height) <= where.reach;
  }

  // The shape and vertex under a point: the selected shape first, then the others, newest on top.
  hit(where) {
    const chosen = (shape) => keyOf(shape) === this.selected;
    const order = [...this.shapes].reverse().sort((a, b) => chosen(b) - chosen(a));
    for (const shape of order) {
      const index = shape.points.findIndex((p) => this.near(p, where.point, where));
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

  // Whether a touch may scroll the page is settled as it starts (touch-action), before pointerdown
  // could select the shape and make the canvas "editing": a finger landing on a corner of a shape not
  // selected yet would scroll the page, and its drag be cancelled, unless it is held here.
  touchStart(event) {
    if (event.touches.length !== 1 || this.mode !== "idle" || !this.visible || this.saving || !this.host.size()) return;
    const [touch] = event.touches;
    const where = this.locate({ clientX: touch.clientX, clientY: touch.clientY, pointerType: "touch" });
    const found = where && this.hit(where);
    if (found && found.index >= 0) event.preventDefault();
  }

  pointerDown(event) {
    this.claimed = false;
    if (!event.isPrimary || event.button !== 0 || !this.host.size()) return;
    const where = this.locate(event);
    if (!where) return;
    if (this.mode !== "idle") {
      this.claimed = true;
      this.addPoint(where);
      return;
    }
    if (!this.visible || this.saving) return;
    const found = this.hit(where);
    if (!found) {
      if (this.selected !== null) this.select(null);
      return;
    }
    this.claimed = true;
    this.select(keyOf(found.shape));
    if (found.index >= 0) {
      event.preventDefault();
      this.host.canvas.setPointerCapture(event.pointerId);
      this.drag = { key: keyOf(found.shape), index: found.index, pointerId: event.pointerId, moved: false };
    }
  }

  // A point of the shape being drawn; the first point again closes a zone, the last again ends it
  // (which is also what the second press of a double-click or double-tap does).
  addPoint(where) {
    const { draft } = this;
    const enough = draft.length >= LEAST_POINTS[this.mode];
    if (this.mode === "zone" && enough && this.near(draft[0], where.point, where)) this.finish();
    else if (draft.length && this.near(draft.at(-1), where.point, where)) {
      if (enough) this.finish();
    } else {
      draft.push(where.point.map((v) => Math.min(1, Math.max(0, v))));
      this.announce(`Point ${draft.length} added at ${percents(draft.at(-1))}.`);
      this.render();
    }
  }

  pointerMove(event) {
    const where = this.locate(event);
    if (!where) return;
    if (this.drag && event.pointerId === this.drag.pointerId) {
      const shape = this.shapes.find((s) => keyOf(s) === this.drag.key);
      const point = where.point.map((v) => Math.min(1, Math.max(0, v)));
      if (!shape) return;
      shape.points = shape.points.map((p, i) => (i === this.drag.index ? point : p));
      shape.server = null; // saved in fractions from now on
      this.drag.moved = true;
      this.host.redraw();
    } else if (this.mode !== "idle") {
      this.cursor = where.point;
      this.host.redraw();
    }
  }

  pointerUp(event, done) {
    const { drag } = this;
    if (!drag || event.pointerId !== drag.pointerId) return;
    this.drag = null;
    if (done && drag.moved) {
      this.commit(this.shapes);
    } else if (drag.moved) {
      this.savedKey = null;
      this.adopt(this.options);
    }
  }

  render() {
    const { el, mode } = this;
    const drawing = mode !== "idle";
    el.addZone.setAttribute("aria-pressed", String(mode === "zone"));
    el.addLine.setAttribute("aria-pressed", String(mode === "line"));
    el.addZone.textContent = mode === "zone" ? "Cancel zone" : "Add zone";
    el.addLine.textContent = mode === "line" ? "Cancel line" : "Add line";
    el.finish.hidden = !drawing;
    el.finish.disabled = !drawing || this.draft.length < LEAST_POINTS[mode];
    el.remove.disabled = this.selected === null || drawing;
    el.hint.textContent = HINTS[mode];
    // A finger that draws or drags must not scroll the page instead; the keyboard reaches the picture
    // while it has keys (HINTS), and a click focuses it, so a shape selected there takes them at once.
    const editing = drawing || this.selected !== null;
    this.host.canvas.classList.toggle("editing", editing);
    this.host.canvas.tabIndex = editing ? 0 : -1;
    // Kept in place by shape, so the one the keyboard is on keeps its focus as it is selected. Each
    // item is taken once: two shapes of one name (until the server refuses them) are two items.
    const items = new Map([...el.list.children].map((item) => [item.dataset.shape, item]));
    const focused = [...el.list.children].findIndex((item) => item.contains(document.activeElement));
    reconcile(
      el.list,
      this.shapes.map((shape) => {
        const key = keyOf(shape);
        const item = items.get(key) ?? shapeItem(shape);
        items.delete(key);
        item.classList.toggle("selected", key === this.selected);
        item.firstChild.setAttribute("aria-pressed", String(key === this.selected));
        item.querySelector(".shape-limits").textContent = settingsText(shape);
        return item;
      }),
    );
    // The item the keyboard was on went (deleted, here or elsewhere): its place goes to its neighbour.
    if (focused >= 0 && !el.list.contains(document.activeElement)) {
      const next = el.list.children[Math.min(focused, el.list.children.length - 1)];
      (next?.firstChild ?? el.addZone).focus();
    }
    el.empty.hidden = this.shapes.length > 0;
    this.renderSettings();
    this.renderCounts();
    this.host.redraw();
  }

  // The selected shape's class filter and (a zone's) loiter time, as shown in the list and saved.
  renderSettings() {
    const { el } = this;
    const shape = this.mode === "idle" ? this.selectedShape() : undefined;
    el.settings.hidden = !shape;
    if (!shape) return;
    const chosen = shape.extra.classes ?? [];
    // A class the filter has and the model's list lacks (that list not known yet) is shown to be unticked.
    const names = [...this.classNames, ...chosen.filter((name) => !this.classNames.includes(name))];
    reconcile(el.classes, names.map((name) => this.classBox(name)));
    for (const box of el.classes.querySelectorAll("input")) box.checked = chosen.includes(box.value);
    el.loiterField.hidden = shape.kind !== "zone";
    if (!this.loiterTyped) el.loiter.value = shape.extra.loiter_s ?? "";
  }

  classBox(name) {
    let label = this.classBoxes.get(name);
    if (!label) {
      label = document.createElement("label");
      const box = document.createElement("input");
      box.type = "checkbox";
      box.value = name;
      label.append(box, ` ${name}`);
      this.classBoxes.set(name, label);
    }
    return label;
  }

  renderCounts() {
    for (const item of this.el.list.children) {
      const shape = this.shapes.find((s) => keyOf(s) === item.dataset.shape);
      const count = item.querySelector(".shape-count");
      if (shape && count) count.textContent = this.countText(shape);
    }
  }

  /** Draw the shapes, their counts and the one being drawn onto `context` (frame pixels). */
  draw(context) {
    const { width, height } = context.canvas;
    // Frame pixels per CSS pixel: handles, lines and labels keep their size on screen, phone or not.
    const scale = width / (pictureRect(context.canvas).width || width);
    const px = ([x, y]) => [x * width, y * height];
    context.save();
    context.lineJoin = "round";
    if (this.visible) {
      const tags = [];
      for (const shape of this.shapes) this.drawShape(context, shape, px, scale, tags);
    }
    if (this.mode !== "idle" && this.draft.length) {
      const points = this.cursor ? [...this.draft, this.cursor] : this.draft;
      context.strokeStyle = this.mode === "zone" ? ZONE_COLOR : LINE_COLOR;
      context.lineWidth = 2 * scale;
      context.setLineDash([6 * scale, 4 * scale]);
      context.beginPath();
      points.map(px).forEach(([x, y], i) => (i ? context.lineTo(x, y) : context.moveTo(x, y)));
      context.stroke();
      context.setLineDash([]);
      this.drawHandles(context, this.draft.map(px), scale, context.strokeStyle);
    }
    // Shown to the keyboard only: a click that focuses the picture leaves no crosshair on it.
    const focused = this.host.canvas.matches(":focus-visible");
    if (this.mode !== "idle" && this.cursor && focused) this.drawCrosshair(context, px(this.cursor), scale);
    const shape = this.mode === "idle" && focused && this.visible ? this.selectedShape() : undefined;
    if (shape) this.drawCrosshair(context, px(shape.points[Math.min(this.corner, shape.points.length - 1)]), scale);
    context.restore();
  }

  // `tags`: where the name tags drawn so far on this frame are (drawTag).
  drawShape(context, shape, px, scale, tags) {
    const selected = keyOf(shape) === this.selected;
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
    if (shape.kind === "line") this.drawArrow(context, points, scale);
    if (selected) this.drawHandles(context, points, scale, color);
    const label = [shape.name, settingsText(shape), this.countText(shape)].filter(Boolean).join("  ");
    tags.push(drawTag(context, label, points[0], color, scale, tags));
  }

  // An arrow from the middle of the first segment to the line's "in" side (docs/analytics.md).
  drawArrow(context, points, scale) {
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
  drawCrosshair(context, [x, y], scale) {
    const reach = 14 * scale;
    for (const [color, width] of [["#0b0d10", 4], ["#ffffff", 2]]) {
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

  drawHandles(context, points, scale, color) {
    const radius = 6 * scale;
    context.fillStyle = "#0b0d10";
    context.strokeStyle = color;
    for (const [x, y] of points) {
      context.beginPath();
      context.arc(x, y, radius, 0, 2 * Math.PI);
      context.fill();
      context.stroke();
    }
  }
}

// An entry of the shape list: a button, so a keyboard reaches and selects it as a pointer does.
function shapeItem(shape) {
  const item = document.createElement("li");
  item.dataset.shape = keyOf(shape);
  const button = document.createElement("button");
  button.type = "button";
  button.className = "quiet";
  item.append(button);
  const name = document.createElement("strong");
  name.textContent = shape.name;
  const kind = document.createElement("span");
  kind.className = "muted";
  kind.textContent = shape.kind;
  const limits = document.createElement("span");
  limits.className = "shape-limits muted";
  const count = document.createElement("span");
  count.className = "shape-count";
  button.append(name, " ", kind, " ", limits, " ", count);
  return item;
}

// A shape's name tag, over its first point; where it would cover a tag drawn before it (`placed`: a
// line starting where a zone does) it goes below that one, so no name or count is hidden. Its box.
function drawTag(context, text, [x, y], color, scale, placed) {
  const size = Math.round(13 * scale);
  context.font = `600 ${size}px system-ui, sans-serif`;
  const width = context.measureText(text).width + 8;
  const height = size + 6;
  const left = Math.min(Math.max(0, x), context.canvas.width - width);
  let top = Math.min(Math.max(0, y - height - 4), context.canvas.height - height);
  const covers = (tag) =>
    left < tag.left + tag.width && tag.left < left + width && top < tag.top + tag.height && tag.top < top + height;
  for (let under = placed.find(covers); under; under = placed.find(covers)) top = under.top + under.height + 2 * scale;
  context.fillStyle = color;
  context.fillRect(left, top, width, height);
  context.fillStyle = "#0b0d10";
  context.textBaseline = "top";
  context.fillText(text, left + 4, top + 3);
  return { left, top, width, height };
}
