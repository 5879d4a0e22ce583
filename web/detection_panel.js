// The stream view's Detection panel: the open stream's detection settings as the server has them, so a
// class that never shows (left out of `classes`, or held to its own `conf` in `class_filters`) has its
// cause in sight, and its confidence, its tracked classes and each class's own confidence are changed
// here. What the panel shows is the server's: what the stream list says once a second (someone else's
// change in another tab or through the API included), unless the person is mid-edit (the form differs
// from it), and what each change is answered with. A change is one PATCH of what differs only, made over
// the settings it was edited on (`If-Match`): `class_filters` merge class by class and key by key on the
// server, so a class's confidence cleared is `{"<class>": {"conf": null}}`. Where only other settings
// changed meanwhile (a zone drawn in the shape panel), it is made again over those; where these did,
// theirs are shown and it is not. A refusal is shown in the server's words, the server's values back.
// Area bounds, the tracker and the processing rate are shown, not changed: the config file or the API
// sets them. A line under the heading sums the settings up (confidence, classes tracked, classes with
// filters of their own); the form opens below it (a disclosure), so the side column stays short. Saving
// to the config file follows the shape panel's rules (zone_saving.js): offered only where GET /api/viewer
// says there is a file segcast may write and the stream is one it keeps there; under save_config every
// change is saved.

import { markInvalid, unmarkInvalid } from "./announce.js";
import { ApiError, changeStream, getStream, sendsLinkToken, viewerSettings } from "./api.js";
import { reconcile } from "./dom.js";

// The stream's own area bounds where none is set (server/options.py StreamOptions): not worth a line.
const DEFAULT_MIN_AREA = 0;
const DEFAULT_MAX_AREA = 1;
const AREA_DIGITS = 3; // significant digits of an area share shown in %
// At most this many times a change is made again as only other settings changed under it (a zone drawn meanwhile).
const MAX_RESENDS = 3;
const CONF_RULE = "a number from 0.01 to 1";
const NO_CONNECTION =
  "Not applied: no connection to segcast. The settings it had are shown: apply the change again once it is back.";
const CHANGED_ELSEWHERE =
  "Not applied: the detection settings were changed elsewhere meanwhile (another tab, the API). The " +
  "server's are shown now: make your change again over them.";
// What a change did to the stream's tracking (server/streams.py, replace() and _changed_in_place()).
const RESTARTED = "Tracking restarted: its tracks ended, new ids follow theirs and its counts start from zero.";
const IN_PLACE = "Made in place: its tracks, ids and counts go on.";
const REOPENED = "Its source was opened again, as it had failed or ended.";
const NOT_IN_FILE = "Not saved to the config file: gone at a restart (tick Save to config file to keep it).";
const FILE_FORCED = "the config file says save_config = true: every change is saved";
// Where the server's refusal names what it is about: "body.conf: ...", "body.class_filters.disc.conf: ...".
const REFUSAL_PATH = /^body\.(conf|classes|class_filters\.(.+)\.conf): /;

const sameSet = (a, b) => a.length === b.length && a.every((name) => b.includes(name));
const sameList = (a, b) => a.length === b.length && a.every((name, i) => name === b[i]);
const ownConf = (options, name) => options.class_filters?.[name]?.conf;

/**
 * The least confidence a class the stream tracks is reported at (server/options.py lowest_conf): one that
 * moves restarts the stream's tracking, as the model's call and the tracks' start follow it.
 */
function lowestConf(options) {
  const tracked = Object.entries(options.class_filters ?? {}).filter(
    ([name]) => !options.classes.length || options.classes.includes(name),
  );
  return Math.min(options.conf, ...tracked.map(([, own]) => own.conf ?? Infinity));
}

/** A change from options `before` to `after` restarts the stream's tracking (server/streams.py _changed_in_place). */
function restartsTracking(before, after) {
  const moved = before.conf !== after.conf || !sameList(before.classes, after.classes);
  return moved || lowestConf(before) !== lowestConf(after);
}

/** What differs between options `before` and `after`, in words: ["confidence 0.25 → 0.4", ...]. */
function changesSaid(before, after) {
  const said = [];
  if (before.conf !== after.conf) said.push(`confidence ${before.conf} → ${after.conf}`);
  if (!sameSet(before.classes, after.classes)) {
    said.push(`classes tracked: ${after.classes.length ? after.classes.join(", ") : "every class"}`);
  }
  const named = new Set([...Object.keys(before.class_filters ?? {}), ...Object.keys(after.class_filters ?? {})]);
  for (const name of named) {
    const [was, now] = [ownConf(before, name), ownConf(after, name)];
    if (was !== now) said.push(now === undefined ? `${name}: the stream's confidence` : `${name} confidence ${now}`);
  }
  return said;
}

/** The settings in one line: "confidence 0.4 · tracking disc, square · own filters: disc". */
function summaryOf(options) {
  const tracked = options.classes.length ? options.classes.join(", ") : "every class";
  const own = Object.keys(options.class_filters ?? {});
  const filters = own.length ? [`own filters: ${own.join(", ")}`] : [];
  return [`confidence ${options.conf}`, `tracking ${tracked}`, ...filters].join(" · ");
}

/** A share of the frame (0 to 1) in %: "0.05 %". */
const percent = (share) => `${Number((share * 100).toPrecision(AREA_DIGITS))} %`;

/** Area bounds (shares of the frame; undefined: none) in words, or "" for none. */
function areaText(least, most) {
  if (least !== undefined && most !== undefined) return `area ${percent(least)} to ${percent(most)} of the frame`;
  if (least !== undefined) return `area at least ${percent(least)} of the frame`;
  return most === undefined ? "" : `area at most ${percent(most)} of the frame`;
}

export class DetectionPanel {
  /** root: the panel (index.html #detection), whose parts are found by their ids. */
  constructor(root) {
    const part = (name) => root.querySelector(`#detection-${name}`);
    this.el = {
      summary: part("summary"),
      more: part("more"),
      form: part("form"),
      fields: part("fields"),
      conf: part("conf"),
      classes: part("classes"),
      fixed: part("fixed"),
      apply: part("apply"),
      discard: part("discard"),
      persist: part("persist"),
      error: part("error"),
      status: part("status"),
    };
    this.streamId = null;
    this.stream = null; // the open stream as the server last said and the panel shows ({options, etag, state})
    this.latest = null; // its options as the server last said, shown in the line above the form
    this.classNames = []; // the model's, in class-id order (GET /api/viewer); none while the server knows none
    this.rows = new Map(); // class name -> its row, kept so the keyboard's focus holds
    this.fileSaves = false; // the server has a config file to save to (GET /api/viewer)
    this.persistable = true; // and can save this stream's changes there (not one --source started)
    this.saving = false; // a change is on its way
    this.changedAt = -Infinity; // performance.now() when the last change was answered
    this.askingSettings = false;
    this.fileTitle = this.el.persist.closest("label").title; // what saving rewrites, shown but under save_config

    const { form, discard } = this.el;
    form.addEventListener("input", (event) => {
      unmarkInvalid(event.target, this.el.error.id);
      this.refresh();
    });
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.apply();
    });
    discard.addEventListener("click", () => {
      if (discard.getAttribute("aria-disabled") === "true") return;
      this.showError("");
      this.render();
    });
    // A remote model's classes are known only once its server described it: asked again as the panel is used.
    root.addEventListener("focusin", () => {
      if (!this.classNames.length) this.askSettings();
    });
  }

  /** Another stream is shown (null: none): nothing of the last one's stays, nor an edit of it. */
  open(streamId) {
    if (streamId === this.streamId) return;
    this.streamId = streamId;
    this.changedAt = -Infinity;
    this.clear();
    this.showError("");
    this.say("");
    if (streamId !== null) this.askSettings();
  }

  // No stream's settings on show, until the stream list says what the open one has.
  clear() {
    this.stream = null;
    this.el.fields.disabled = true;
    this.el.conf.value = "";
    this.latest = null;
    this.el.summary.textContent = "";
    reconcile(this.el.classes, []);
    this.el.fixed.replaceChildren();
    this.refresh();
  }

  // The model's classes and whether there is a config file to save to: asked as a stream is opened. A
  // camera's link (a wall's, a kiosk's) is not let read the node's settings: the stream's own classes are shown.
  async askSettings() {
    if (this.askingSettings || sendsLinkToken()) return;
    this.askingSettings = true;
    try {
      const settings = await viewerSettings().catch(() => null); // the next stream opened asks again
      if (settings) this.useViewerSettings(settings);
    } finally {
      this.askingSettings = false;
    }
  }

  // As the shape panel's box (zone_saving.js useSettings()): a box the person ticked stays so, unless
  // save_config decides for them.
  useViewerSettings(settings) {
    const { persist } = this.el;
    this.classNames = Array.isArray(settings.classes) ? settings.classes : [];
    this.fileSaves = Boolean(settings.config_file);
    if (settings.save_config || persist.disabled) persist.checked = settings.save_config;
    persist.disabled = settings.save_config;
    persist.closest("label").title = settings.save_config ? FILE_FORCED : this.fileTitle;
    this.showPersist();
    if (this.stream && !this.edited()) this.render();
  }

  showPersist() {
    this.el.persist.closest("label").hidden = !(this.fileSaves && this.persistable);
  }

  /**
   * The stream as the server has it (null: none), as asked at `askedAt` (performance.now()): shown unless
   * the person is mid-edit, a change is on its way, or the question was asked before the last change was answered.
   */
  setStream(stream, askedAt = performance.now()) {
    if (stream === null) {
      this.clear();
      return;
    }
    this.persistable = stream.persistable !== false;
    this.showPersist();
    if (askedAt >= this.changedAt) this.latest = stream.options; // the line above the form is always the server's
    this.showSummary();
    if (this.saving || askedAt < this.changedAt || (this.stream && this.edited())) return;
    this.stream = stream;
    this.el.fields.disabled = false;
    this.render();
  }

  // The settings in a line, as the server has them now (changed elsewhere during an edit too), and, while
  // the form differs from what it was edited over, that it does: the form may be folded away.
  showSummary() {
    if (!this.latest) return;
    const edited = this.stream !== null && this.edited();
    this.el.summary.textContent = summaryOf(this.latest) + (edited ? " · edited below, not applied" : "");
  }

  /** Whether a change is being made here: edited and not applied, or on its way (Escape then keeps the view). */
  busy() {
    return this.saving || (this.stream !== null && this.edited());
  }

  /** Whether the form differs from the server's settings (something to apply, or a field that cannot be). */
  edited() {
    const { body, problem } = this.changes();
    return problem !== null || Object.keys(body).length > 0;
  }

  /** The form as the server's settings (this.stream), but where a field already says the same in other digits. */
  render() {
    const { options } = this.stream;
    const { conf } = this.el;
    if (conf.validity.badInput || conf.value === "" || Number(conf.value) !== options.conf) conf.value = options.conf;
    const extra = [...options.classes, ...Object.keys(options.class_filters ?? {})];
    const names = [...new Set([...this.classNames, ...extra])];
    reconcile(this.el.classes, names.map((name) => this.row(name)));
    for (const name of names) this.showRow(name, options);
    this.latest = options;
    this.showFixed(options);
    this.refresh();
  }

  row(name) {
    let row = this.rows.get(name);
    if (row) return row;
    row = document.createElement("li");
    row.dataset.class = name;
    const tracked = document.createElement("label");
    tracked.className = "check";
    const box = document.createElement("input");
    box.type = "checkbox";
    box.value = name;
    const label = document.createElement("span");
    tracked.append(box, " ", label);
    const own = document.createElement("label");
    own.className = "detection-own";
    const conf = document.createElement("input");
    Object.assign(conf, { type: "number", min: "0.01", max: "1", step: "any", inputMode: "decimal" });
    conf.placeholder = "stream's";
    conf.setAttribute("aria-label", `${name} confidence`); // the visible "confidence" is in it
    own.append("confidence ", conf);
    const area = document.createElement("span");
    area.className = "muted detection-area";
    row.append(tracked, own, area);
    this.rows.set(name, row);
    return row;
  }

  // A class's row as `options` have it: tracked or not, its own confidence (empty: the stream's, which its
  // placeholder says in words, as the stream's number there was taken for the class's own), and its own
  // area bounds, read only.
  showRow(name, options) {
    const row = this.rows.get(name);
    const [box, conf] = row.querySelectorAll("input");
    const unknown = this.classNames.length > 0 && !this.classNames.includes(name);
    row.querySelector(".check span").textContent = unknown ? `${name} (not a class of the model)` : name;
    box.checked = options.classes.includes(name);
    const own = ownConf(options, name);
    const differs = own === undefined ? conf.value !== "" : Number(conf.value) !== own;
    if (conf.validity.badInput || differs) conf.value = own ?? "";
    const filter = options.class_filters?.[name];
    const area = row.querySelector(".detection-area");
    area.textContent = areaText(filter?.min_area, filter?.max_area);
    area.hidden = !area.textContent;
  }

  // What is shown, not changed here: the tracker, the processing rate and the stream's own area bounds.
  showFixed(options) {
    const least = options.min_area === DEFAULT_MIN_AREA ? undefined : options.min_area;
    const most = options.max_area === DEFAULT_MAX_AREA ? undefined : options.max_area;
    const rate = options.process_fps === null ? "every frame" : `at most ${options.process_fps} fps`;
    const rows = [
      ["tracker", options.tracker],
      ["processing", rate],
      ["objects", areaText(least, most)],
    ];
    this.el.fixed.replaceChildren(
      ...rows
        .filter(([, text]) => text)
        .flatMap(([name, text]) => {
          const term = document.createElement("dt");
          term.textContent = name;
          const detail = document.createElement("dd");
          detail.textContent = text;
          return [term, detail];
        }),
    );
  }

  // Apply and Discard are offered only while the form differs from the server's settings; aria-disabled
  // rather than disabled, so the one pressed keeps the keyboard's focus as it goes off.
  refresh() {
    this.showSummary();
    const off = String(!this.stream || this.saving || !this.edited());
    this.el.apply.setAttribute("aria-disabled", off);
    this.el.discard.setAttribute("aria-disabled", off);
  }

  /**
   * The PATCH body of what the form changes of the server's settings, and the first field that cannot be
   * sent as it is ({field, text}; null: none). Ranges are the server's to judge, and to word.
   */
  changes() {
    const body = {};
    let problem = null;
    if (!this.stream) return { body, problem };
    const { options } = this.stream;
    const { conf } = this.el;
    if (conf.validity.badInput || conf.value.trim() === "") {
      problem = { field: conf, text: `Confidence: ${CONF_RULE}.` };
    } else if (Number(conf.value) !== options.conf) body.conf = Number(conf.value);
    const rows = [...this.el.classes.children];
    const ticked = rows.filter((row) => row.querySelector(".check input").checked).map((row) => row.dataset.class);
    if (!sameSet(ticked, options.classes)) body.classes = ticked;
    const filters = {};
    for (const row of rows) {
      const name = row.dataset.class;
      const field = row.querySelector("input[type=number]");
      const own = ownConf(options, name);
      const text = field.value.trim();
      if (field.validity.badInput) {
        problem ??= { field, text: `${name} confidence: ${CONF_RULE}, or empty for the stream's.` };
      } else if (text === "" ? own !== undefined : Number(text) !== own) {
        filters[name] = { conf: text === "" ? null : Number(text) };
      }
    }
    if (Object.keys(filters).length) body.class_filters = filters;
    return { body, problem };
  }

  /** The form's own state (what was typed and ticked), to tell whether it was edited while a change was out. */
  formKey() {
    const fields = [...this.el.form.querySelectorAll("input:not(#detection-persist)")];
    return JSON.stringify(fields.map((field) => [field.value, field.checked, field.validity.badInput]));
  }

  // What differs sent (Apply, or Enter in a field), one change at a time; edits made while it is out stay.
  async apply() {
    const { body, problem } = this.changes();
    if (!this.stream || this.saving || (problem === null && !Object.keys(body).length)) return;
    this.showError("");
    if (problem) {
      this.showError(problem.text, problem.field);
      return;
    }
    const { streamId } = this;
    const { persist } = this.el;
    const filing = persist.checked; // by ?persist=1, or by save_config (the box then ticked and off)
    const sentKey = this.formKey();
    this.saving = true;
    this.say("Applying…");
    this.refresh();
    let answer;
    try {
      answer = await this.send(streamId, body, filing && !persist.disabled);
    } finally {
      this.saving = false;
    }
    if (streamId !== this.streamId) return; // another stream is shown: the next poll of this one shows it
    this.changedAt = performance.now();
    const { stream, before, refusal } = answer;
    if (stream) this.stream = stream;
    // What was edited while the change was out stays, to be applied over its answer; a refusal shows the server's.
    if (refusal || this.formKey() === sentKey) this.render();
    else this.refresh();
    const applied = stream && !answer.elsewhere;
    this.say(applied ? this.appliedText(before, stream, filing) : "");
    if (refusal) this.showError(refusal.text, refusal.field);
  }

  /**
   * Send `body` over the settings shown (their ETag), again over the server's where only other settings
   * changed meanwhile. Resolves to {stream: as answered (none: unchanged), before: the stream it was made
   * over, refusal: {text, field} or null, elsewhere: whether these settings changed meanwhile}.
   */
  async send(streamId, body, persist) {
    let before = this.stream;
    for (let resends = 0; ; resends += 1) {
      try {
        return { stream: await changeStream(streamId, body, persist, before.etag), before, refusal: null };
      } catch (error) {
        if (!(error instanceof ApiError)) return { before, refusal: { text: NO_CONNECTION } };
        // Made, only not saved to the config file: the stream as it now is, with why.
        if (error.stream !== null) return { stream: error.stream, before, refusal: { text: error.message } };
        if (error.status !== 412) return { before, refusal: this.refusalOf(error.message) };
        const current = await getStream(streamId).catch(() => null);
        const same = current && detectionKey(current.options) === detectionKey(before.options);
        if (!same || resends >= MAX_RESENDS) {
          return { stream: current, before, refusal: { text: CHANGED_ELSEWHERE }, elsewhere: true };
        }
        before = current;
      }
    }
  }

  // The server's refusal with the field it is about named by its label, marked and focused: "Confidence:
  // expected a number from 0.01 to 1, got 0 (...)", not "body.conf: ...". Any other is left as it is.
  refusalOf(message) {
    const match = message.match(REFUSAL_PATH);
    if (!match) return { text: message };
    const rest = message.slice(match[0].length);
    if (match[1] === "conf") return { text: `Confidence: ${rest}`, field: this.el.conf };
    if (match[1] === "classes") return { text: `Classes: ${rest}`, field: this.el.classes.querySelector("input") };
    const field = this.rows.get(match[2])?.querySelector("input[type=number]");
    return { text: `${match[2]} confidence: ${rest}`, field: field?.isConnected ? field : null };
  }

  // What an applied change did ("Applied: confidence 0.25 → 0.4."), whether the stream's tracking started
  // afresh for it, and, where the server could keep it in its file but was not asked to, that it goes at a restart.
  appliedText(before, after, filing) {
    const said = changesSaid(before.options, after.options);
    const over = ["failed", "ended"].includes(before.state);
    const how = over ? REOPENED : restartsTracking(before.options, after.options) ? RESTARTED : IN_PLACE;
    const unfiled = this.fileSaves && this.persistable && !filing ? ` ${NOT_IN_FILE}` : "";
    return `Applied: ${said.join("; ") || "nothing changed"}. ${how}${unfiled}`;
  }

  // Said once, politely (role="status"), and left on show until the next change.
  say(text) {
    this.el.status.textContent = text;
  }

  // A refusal (role="alert"); `field`: the input it is about, marked invalid and described by it, with the
  // focus, until it is changed.
  showError(text, field = null) {
    const { error, more } = this.el;
    error.textContent = text;
    if (text) more.open = true; // a refusal of an edit made there, or of a field typed and Entered
    for (const input of this.el.form.querySelectorAll("[aria-invalid]")) unmarkInvalid(input, error.id);
    if (text && field) {
      markInvalid(field, error.id);
      field.focus();
    }
  }
}

/** The settings this panel changes, to tell a change elsewhere of them from one of the stream's others. */
function detectionKey(options) {
  const confs = Object.entries(options.class_filters ?? {}).filter(([, own]) => own.conf !== undefined);
  return JSON.stringify([options.conf, [...options.classes].sort(), confs.map(([name, own]) => [name, own.conf])]);
}
