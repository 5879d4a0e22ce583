// The list of the open stream's zones, lines and ignore zones beside the picture, with their live counts,
// and the selected shape's settings below it: its class filter (`classes`: none ticked counts, or an
// ignore zone ignores, every class; the classes offered are the model's, as GET /api/viewer names them),
// a zone's `loiter_s` and an ignore zone's `min_share` (as a percentage: "share inside"). What is chosen
// here is handed to the editor (zones.js), which saves it as any other change. A refusal of a save is
// worded here too, of the shape as the list names it. Under the list, where the stream filters objects,
// how many detections it ignored so far (its `detections_ignored`, as the stream list polled once a second
// says), so a person sees the ignore zones at work: not read out, as it changes on most polls.

import { reconcile } from "./dom.js";
import { ignoredText, limitsText, sharePercent } from "./ignore_zones.js";
import { countText, IGNORE, keyOf } from "./shapes.js";

const LOITER_RULE = "Loiter after: seconds above 0, or empty for no loiter events.";
const SHARE_RULE = "Share inside: a percentage above 1 and at most 100, or empty for the default (50 %).";
// A share typed as a fraction (0.5 for half) would save 0.5 %: refused, saying the field is in %.
const SHARE_IN_PERCENT = "Share inside is in %: 50 for half, 100 for all of it (1 or less is taken for a fraction).";
const SHARE_DIGITS = 4; // a share's fraction digits: a percentage to 1/100
// How a line's `since` is told (showSince()), in the person's locale: made once, as it is told on every frame.
const SINCE_TODAY = new Intl.DateTimeFormat(undefined, { timeStyle: "short" });
const SINCE_DAY = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
const SINCE_EXACT = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });
// Where the server's refusal of a save says which shape it is about: "body.zones[0].points: ...".
const SHAPE_PATH = /^(?:body\.)?(zones|lines|ignore_zones)\[(\d+)\]\.\w+: /;
const KIND_TITLES = { zones: "Zone", lines: "Line", ignore_zones: "Ignore zone" };

/**
 * The server's refusal of the shapes `sent` (the saved body: {zones, lines, ignore_zones?}) in a person's words: the
 * shape named as it is listed, not by its place in the request. Any other refusal is left as it is.
 */
export function refusalText(message, sent) {
  const match = message.match(SHAPE_PATH);
  const shape = match && sent[match[1]]?.[Number(match[2])];
  if (!shape) return message;
  return `${KIND_TITLES[match[1]]} “${shape.name}” was not saved: ${message.slice(match[0].length)}`;
}

// A loiter time as saved: seconds above 0, or undefined (none) for an empty field; null: refused.
function loiterValue(text) {
  const seconds = Number(text);
  if (text === "") return undefined;
  return seconds > 0 && Number.isFinite(seconds) ? seconds : null;
}

// A share inside as saved, from a percentage above 1 (at most 1 is most likely a fraction: shareRule())
// and at most 100, or undefined (the server's default) for an empty field; null: refused.
function shareValue(text) {
  const percent = Number(text);
  if (text === "") return undefined;
  return percent > 1 && percent <= 100 ? Number((percent / 100).toFixed(SHARE_DIGITS)) : null;
}

// Why a share typed as `text` is refused.
const shareRule = (text) => (Number(text) > 0 && Number(text) <= 1 ? SHARE_IN_PERCENT : SHARE_RULE);

/**
 * A number field of the selected shape's settings (`key`: the setting it sets, `toValue(text)` its value
 * there, null for text that is refused and not sent, which `rule(text)` explains). Saved on `change`,
 * as it loses the focus, or as the selection moves on (saveTyped()); and on `blur`, as text the browser
 * cannot read as a number ("1e309") typed into an empty field leaves its value "" as it was, so no
 * `change` comes.
 */
class NumberSetting {
  constructor(input, key, toValue, rule, on) {
    Object.assign(this, { input, key, toValue, rule, on });
    this.typed = false; // the field holds what the user typed, not the saved value
    input.addEventListener("input", () => (this.typed = true));
    input.addEventListener("change", () => this.save());
    input.addEventListener("blur", () => {
      if (this.typed) this.save();
    });
  }

  save() {
    const value = this.input.validity.badInput ? null : this.toValue(this.input.value.trim());
    this.typed = false;
    if (value === null) this.on.refuse(this.rule(this.input.value.trim()), this.input);
    else this.on.change({ [this.key]: value });
  }

  // The saved `value` (undefined: none), unless the user is typing another.
  show(value) {
    if (!this.typed) this.input.value = value ?? "";
  }
}

export class ShapePanel {
  /**
   * elements: {list, empty, ignored, settings, classes, classesLegend, loiter, loiterField, share, shareField,
   * fallback: what takes the focus when the list's last item goes}; on: {select(key) a shape picked in the
   * list, change(changes) to the selected shape's settings, refuse(message, field) a setting that cannot be
   * saved (the saved one is shown again)}.
   */
  constructor(elements, on) {
    this.el = elements;
    this.classNames = []; // the model's, in class-id order (GET /api/viewer); none while the server knows none
    this.classBoxes = new Map(); // class name -> its checkbox's label, kept so the keyboard's focus holds
    this.loiter = new NumberSetting(elements.loiter, "loiter_s", loiterValue, () => LOITER_RULE, on);
    this.share = new NumberSetting(elements.share, "min_share", shareValue, shareRule, on);
    elements.classes.addEventListener("change", () => {
      on.change({ classes: [...elements.classes.querySelectorAll("input:checked")].map((box) => box.value) });
    });
    elements.list.addEventListener("click", (event) => {
      const item = event.target.closest("li[data-shape]");
      if (item) on.select(item.dataset.shape);
    });
  }

  // A loiter time or share typed and not saved yet (their fields save on `change`, as they lose the
  // focus), saved now: the selection is about to move on (the editor's select()).
  saveTyped() {
    for (const setting of [this.loiter, this.share]) if (setting.typed) setting.save();
  }

  // Another shape selected: what was typed for the last one is not this one's.
  forgetTyped() {
    this.loiter.typed = false;
    this.share.typed = false;
  }

  /** `shapes` listed, the one keyOf() `selected` marked so. */
  renderList(shapes, selected) {
    const { el } = this;
    // Kept in place by shape, so the one the keyboard is on keeps its focus as it is selected. Each
    // item is taken once: two shapes of one name (until the server refuses them) are two items.
    const items = new Map([...el.list.children].map((item) => [item.dataset.shape, item]));
    const focused = [...el.list.children].findIndex((item) => item.contains(document.activeElement));
    reconcile(
      el.list,
      shapes.map((shape) => {
        const key = keyOf(shape);
        const item = items.get(key) ?? shapeItem(shape);
        items.delete(key);
        item.classList.toggle("selected", key === selected);
        item.firstChild.setAttribute("aria-pressed", String(key === selected));
        showLimits(item.firstChild, limitsText(shape));
        return item;
      }),
    );
    // The item the keyboard was on went (deleted, here or elsewhere): its place goes to its neighbour.
    if (focused >= 0 && !el.list.contains(document.activeElement)) {
      const next = el.list.children[Math.min(focused, el.list.children.length - 1)];
      (next?.firstChild ?? el.fallback).focus();
    }
    el.empty.hidden = shapes.length > 0;
  }

  /**
   * The class filter and a zone's loiter time or an ignore zone's share inside of `shape`, the one selected
   * (none: the panel hides).
   */
  renderSettings(shape) {
    const { el } = this;
    el.settings.hidden = !shape;
    if (!shape) return;
    const chosen = shape.extra.classes ?? [];
    // A class the filter has and the model's list lacks (that list not known yet) is shown to be unticked.
    const names = [...this.classNames, ...chosen.filter((name) => !this.classNames.includes(name))];
    reconcile(el.classes, names.map((name) => this.classBox(name)));
    for (const box of el.classes.querySelectorAll("input")) box.checked = chosen.includes(box.value);
    el.classesLegend.textContent = shape.kind === IGNORE ? "Classes ignored" : "Classes counted";
    el.loiterField.hidden = shape.kind !== "zone";
    el.shareField.hidden = shape.kind !== IGNORE;
    this.loiter.show(shape.extra.loiter_s);
    if (shape.kind === IGNORE) this.share.show(sharePercent(shape));
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

  /** The detections the stream ignored so far (`count`; null: none shown, as it filters nothing). */
  renderIgnored(count) {
    const { ignored } = this.el;
    ignored.hidden = typeof count !== "number";
    if (!ignored.hidden) ignored.textContent = ignoredText(count);
  }

  /**
   * Each listed shape's count in `counts` (a frame's metadata), and beside a line's totals since when they
   * count, from `since` (line name -> Unix s): one not known there (not judged on a frame yet) says none.
   */
  renderCounts(shapes, counts, since) {
    for (const item of this.el.list.children) {
      const shape = shapes.find((s) => keyOf(s) === item.dataset.shape);
      const count = item.querySelector(".shape-count");
      if (!shape || !count) continue;
      count.textContent = countText(shape, counts);
      showSince(item.firstChild, shape.kind === "line" && count.textContent ? since.get(shape.name) : undefined);
    }
  }
}

// An entry of the shape list: a button, so a keyboard reaches and selects it as a pointer does. An
// ignore zone's says so first ("ignore zone: statue"), and is outlined in dashes as on the picture.
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
  const count = document.createElement("span");
  count.className = "shape-count";
  if (shape.kind === IGNORE) {
    item.classList.add("shape-ignore");
    kind.textContent = "ignore zone:";
    button.append(kind, " ", name, " ", count);
  } else {
    kind.textContent = shape.kind;
    button.append(name, " ", kind, " ", count);
  }
  return item;
}

// When a line's totals began (`since`, Unix s; undefined: none shown), after them in its button: "since
// 16:07", with the date where it is not today's, and to the second in its tooltip. Totals that start again
// at 0 (the stream restarted, the line moved) then read as such, not as a fall. Inside the button, a
// screen reader reads it with the line's name and counts; muted, as it is no count.
function showSince(button, since) {
  let time = button.querySelector(".shape-since");
  if (since === undefined) {
    time?.previousSibling.remove(); // its space
    time?.remove();
    return;
  }
  if (!time) {
    time = document.createElement("time");
    time.className = "shape-since muted";
    button.append(" ", time);
  }
  const at = new Date(since * 1000);
  const today = at.toDateString() === new Date().toDateString();
  const text = `since ${(today ? SINCE_TODAY : SINCE_DAY).format(at)}`;
  const iso = at.toISOString();
  if (time.textContent === text && time.dateTime === iso) return; // as on most frames
  time.dateTime = iso;
  time.textContent = text;
  time.title = `Counted since ${SINCE_EXACT.format(at)}`;
}

// The class filter and loiter time or share of a shape's button (`text`), before its count, only
// where it has any: an empty span there had the button named without a space ("mid linein 66").
function showLimits(button, text) {
  let limits = button.querySelector(".shape-limits");
  if (!text) {
    limits?.nextSibling.remove(); // its space
    limits?.remove();
    return;
  }
  if (!limits) {
    limits = document.createElement("span");
    limits.className = "shape-limits muted";
    button.querySelector(".shape-count").before(limits, " ");
  }
  limits.textContent = text;
}
