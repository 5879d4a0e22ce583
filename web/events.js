// The latest zone and line events of the open stream: live from the WebSocket and, when the server
// keeps an event history ([events.history], docs/protocol.md "Events out"), the recent ones from
// before the page was opened. Without a history there is simply nothing before the first live one.

import { eventOutputs, listEvents } from "./api.js";
import { reconcile } from "./dom.js";

export const ANALYTICS_EVENTS = ["zone_enter", "zone_exit", "line_cross", "loiter"];
// A page of the list: the newest shown at first, and as many more at each "Show older events".
const SHOWN = 20;

// Whether the server keeps a history: it cannot change while the server runs, so an answer is kept;
// a question that got none (the server restarting) is asked again next time.
let historyOn = null;
let historyKept = false; // its answer, once it came: whether older events can be read back

function hasHistory() {
  historyOn ??= eventOutputs({ interactive: false })
    .then(({ outputs }) => (historyKept = outputs.some((output) => output.name === "history")))
    .catch(() => {
      historyOn = null;
      return false;
    });
  return historyOn;
}

// One event, however many ways it arrived (live and from the history both).
const identity = (e) => [e.type, e.stream, e.id, e.zone, e.line, e.direction, e.media_time].join("|");

function describe(event) {
  const who = `#${event.id} ${event.class}`;
  const seconds = (s) => `${Number(s).toFixed(1)} s`;
  switch (event.type) {
    case "zone_enter":
      return `${who} entered ${event.zone}`;
    case "zone_exit":
      return `${who} left ${event.zone} after ${seconds(event.dwell)}`;
    case "loiter":
      return `${who} has been in ${event.zone} for ${seconds(event.dwell)}`;
    default:
      return `${who} crossed ${event.line} (${event.direction})`;
  }
}

export class EventList {
  constructor(list, empty) {
    this.list = list;
    this.empty = empty;
    this.streamId = null;
    this.events = []; // newest first
    this.items = new Map(); // identity() -> its <li>, kept while the event is shown
    // Whether the WebSocket has said hello yet: until then the history is left to `reconnected`,
    // which the first hello brings (loaded before it, events up to the subscription would be missed).
    this.connected = false;
    this.limit = SHOWN; // how many are shown: a page more at each "Show older events"
    // Whether older events than those shown are known of: cut off the list, or on the history's next pages.
    this.more = false;
    this.older = document.createElement("button");
    this.older.type = "button";
    this.older.className = "quiet event-older";
    this.older.textContent = "Show older events";
    this.older.hidden = true;
    this.older.addEventListener("click", () => this.loadOlder());
    list.after(this.older);
  }

  open(streamId) {
    if (streamId === this.streamId) return;
    this.streamId = streamId;
    this.events = [];
    this.limit = SHOWN;
    this.more = false;
    this.render();
    if (streamId !== null && this.connected) this.loadHistory(streamId);
  }

  /** The WebSocket (re)connected: what happened while it was down is only in the history. */
  reconnected() {
    this.connected = true;
    if (this.streamId !== null) this.loadHistory(this.streamId);
  }

  async loadHistory(streamId) {
    if (!(await hasHistory())) return;
    const pages = await readHistory(streamId, {});
    if (streamId !== this.streamId) return;
    for (const page of pages) for (const stored of page.events) this.insert(stored.event);
    this.more ||= pages.some((page) => page.next);
    this.render();
  }

  /** A page more of the history: each kind's events from the oldest shown back. */
  async loadOlder() {
    const streamId = this.streamId;
    const oldest = this.events.at(-1);
    this.older.disabled = true;
    // Up to the oldest's time, itself included: events of the same moment are not skipped (nor shown twice).
    const pages = await readHistory(streamId, oldest ? { until: oldest.time } : {});
    this.older.disabled = false;
    if (streamId !== this.streamId) return;
    const shown = this.events.length;
    this.limit += SHOWN;
    this.more = false;
    for (const page of pages) for (const stored of page.events) this.insert(stored.event);
    // Nothing new came: what the history has is all shown (its pages of the same moment aside).
    this.more ||= this.events.length > shown && pages.some((page) => page.next);
    this.render();
  }

  /** A live event from the WebSocket (any stream's; only the open stream's are kept). */
  add(event) {
    if (event.stream !== this.streamId) return;
    this.insert(event);
    this.render();
  }

  insert(event) {
    const key = identity(event);
    if (this.events.some((known) => identity(known) === key)) return;
    this.events.push(event);
    this.events.sort((a, b) => b.time - a.time);
    this.more ||= this.events.length > this.limit;
    this.events.length = Math.min(this.events.length, this.limit);
  }

  // Only new events are added and only the oldest dropped: the list is a live region, and a screen
  // reader reads out what is added to it.
  render() {
    this.empty.hidden = this.events.length > 0;
    // Only where a history can give them: without one, events cut off the list are gone.
    this.older.hidden = !(this.more && historyKept);
    const items = new Map();
    for (const event of this.events) {
      const key = identity(event);
      items.set(key, this.items.get(key) ?? eventItem(event));
    }
    this.items = items;
    reconcile(this.list, [...items.values()]);
  }
}

/** A page of each kind of the stream's events from the history (``filters`` added), newest first. */
function readHistory(streamId, filters) {
  return Promise.all(
    ANALYTICS_EVENTS.map((type) =>
      listEvents({ stream: streamId, type, limit: SHOWN, ...filters }, { interactive: false }).catch(() => ({
        events: [],
        next: null,
      })),
    ),
  );
}

function eventItem(event) {
  const item = document.createElement("li");
  item.dataset.type = event.type;
  const time = document.createElement("time");
  const at = new Date(event.time * 1000);
  time.dateTime = at.toISOString();
  time.textContent = at.toLocaleTimeString();
  item.append(time, " ", describe(event));
  return item;
}
