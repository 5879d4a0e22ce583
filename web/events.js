// The latest zone and line events of the open stream: live from the WebSocket and, when the server
// keeps an event history ([events.history], docs/protocol.md "Events out"), the recent ones from
// before the page was opened. Without a history there is simply nothing before the first live one.

import { eventOutputs, listEvents } from "./api.js";
import { reconcile } from "./dom.js";
import { describeEvent } from "./event_words.js";

export const ANALYTICS_EVENTS = ["zone_enter", "zone_exit", "line_cross", "loiter"];
// A page of the list: the newest shown at first, and as many more at each "Show older events".
const SHOWN = 20;
// Events known but not shown yet, kept for "Show older events", up to this many: more than paging leaves
// (under two pages of each kind), so that only live events, and events read after an outage, push the
// oldest out, to be read from the history again.
const KEPT_BELOW = 2 * SHOWN * ANALYTICS_EVENTS.length;

// How late an event may reach the list and still be put among the others by its own time: a line crossing
// is dated when its stay across began, confirm_s (at most 10 s) before it counts, or when its track was
// last seen, which the tracker gives up on a track buffer later (seconds at a low processing rate). Times
// further out of order are a clock that was set (a box with no clock of its own, a year off), and there
// the order events were stored or heard in holds.
const LATE_MAX_S = 60;

// Whether the server keeps a history: it cannot change while the server runs, so an answer is kept
// until the next hello (a restart may bring another config); a question that got none (the server
// restarting) is asked again next time.
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

// One event, however many ways it arrived (live and from the history both: the stored JSON is the
// WebSocket message, `time` as rounded there included). Its wall-clock `time` tells apart an event that
// repeats one from before a server restart, where track ids and `media_time` start from 0 again.
const identity = (e) => [e.type, e.stream, e.id, e.zone, e.line, e.direction, e.media_time, e.time].join("|");

export class EventList {
  // `said`: a live region (role=status) where a page more of older events is said, where the page has one.
  constructor(list, empty, said = null) {
    this.list = list;
    this.empty = empty;
    this.said = said;
    this.streamId = null;
    this.events = []; // known, newest first: the first `limit` shown, the rest kept for "Show older events"
    // Where each known event goes in the list (`newestFirst`): its history id, once known, or else when
    // it was heard. Not its `time` alone: a clock set ahead when it was stored would keep it on top for
    // good; its time only moves it among those of its moment (`lateOnesByTime`).
    this.places = new WeakMap();
    this.heard = 0; // live events heard so far: the place of the next among them
    this.items = new Map(); // identity() -> its <li>, kept while the event is shown
    // Whether the WebSocket has said hello yet: until then the history is left to `reconnected`,
    // which the first hello brings (loaded before it, events up to the subscription would be missed).
    this.connected = false;
    this.limit = SHOWN; // how many are shown: a page more at each "Show older events"
    // Where each kind's next page of the history starts: its `before` id ({} from its newest); a kind
    // without one has all of its events read. Paging by id, not time, reaches every stored event, those
    // of one moment beyond a page and a crossing stored after later ones (dated when it began) included.
    // A new Map for each stream opened: a read that finds another one here was for a stream left since.
    this.cursors = new Map();
    this.reading = Promise.resolve(); // the history read last: one at a time, each from where the last left
    this.loadingOlder = false; // a "Show older events" press is being answered: another is ignored meanwhile
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
    this.cursors = new Map();
    this.render();
    if (streamId !== null && this.connected) this.loadHistory(streamId);
  }

  /** The WebSocket (re)connected: what happened while it was down is only in the history. */
  reconnected() {
    this.connected = true;
    historyOn = null; // of the server before, which may have restarted with another config
    if (this.streamId !== null) this.loadHistory(this.streamId);
  }

  /** Each kind's newest page. Each then pages on below it: what came while the socket was down, then
   * (again, no duplicates shown) what was known before. */
  async loadHistory(streamId) {
    const cursors = this.cursors;
    if (!(await hasHistory())) return;
    await this.serially(async () => {
      if (cursors !== this.cursors) return;
      const from = new Map(ANALYTICS_EVENTS.map((type) => [type, cursors.get(type)]));
      const pages = await Promise.all(ANALYTICS_EVENTS.map((type) => readPage(streamId, type, {})));
      if (cursors !== this.cursors) return;
      ANALYTICS_EVENTS.forEach((type, i) => {
        // Not read: its cursor kept, or from its newest where it had none. Reset meanwhile (an event of
        // its kind pushed out): its events taken, but read again from its newest all the same.
        if (pages[i] === null) cursors.set(type, cursors.get(type) ?? {});
        else if (cursors.get(type) === from.get(type)) this.take(cursors, type, pages[i]);
        else for (const stored of pages[i].events) this.insert(stored.event, stored.id);
      });
      this.trim();
      this.render();
    });
  }

  /** A page more of the list, with each kind's events read until a page of them waits below those shown.
   * The button stays focusable while it loads (aria-disabled, not `disabled`, which would throw the
   * keyboard's focus to the page's top), and a press meanwhile, which would add a second page, is ignored. */
  async loadOlder() {
    if (this.loadingOlder) return;
    const [streamId, cursors] = [this.streamId, this.cursors];
    this.loadingOlder = true;
    this.older.setAttribute("aria-disabled", "true");
    try {
      await this.serially(async () => {
        await Promise.all([...cursors.keys()].map((type) => this.readBelow(streamId, cursors, type)));
        if (cursors !== this.cursors) return;
        const shownBefore = new Set(this.items.values());
        const pressedHere = document.activeElement === this.older;
        this.limit += SHOWN;
        this.render();
        this.olderShown(itemsBelow(this.list, shownBefore), pressedHere);
      });
    } finally {
      this.loadingOlder = false;
      this.older.removeAttribute("aria-disabled");
    }
  }

  /** Says how many older events a press brought (`added`, their items); where the button went with the
   * keyboard's focus (the last page shown), the focus goes on to the first of them, where reading goes on. */
  olderShown(added, pressedHere) {
    if (this.said) this.said.textContent = `${added.length} older ${added.length === 1 ? "event" : "events"} shown`;
    if (!pressedHere || !this.older.hidden) return;
    const next = added[0] ?? this.list;
    next.tabIndex = -1;
    next.focus();
  }

  /** ``type``'s next pages, until `SHOWN` of its events wait below the list or all of them are read: then
   * the page shown next is the newest of all kinds' (the list is in the order of the history's ids). */
  async readBelow(streamId, cursors, type) {
    while (cursors === this.cursors && cursors.has(type) && this.waiting(type) < SHOWN) {
      const from = cursors.get(type);
      const page = await readPage(streamId, type, from);
      if (page === null || cursors !== this.cursors) return; // tried again at the next click
      if (cursors.get(type) === from) this.take(cursors, type, page);
    }
  }

  /** ``type``'s page from the history: its events, and its cursor moved below them (the `before` id of
   * the page's `next` link), or taken away on its last page. */
  take(cursors, type, page) {
    for (const stored of page.events) this.insert(stored.event, stored.id);
    if (page.next) cursors.set(type, { before: page.events.at(-1).id });
    else cursors.delete(type);
  }

  /** How many of ``type``'s events are known and wait below those shown. */
  waiting(type) {
    return this.events.slice(this.limit).filter((event) => event.type === type).length;
  }

  /** A live event from the WebSocket (any stream's; only the open stream's are kept). The item that lists
   * it, where it is new and shown, else null: for a summary of what is new, which cannot take the top item
   * for it, since an event that came late goes below newer ones. */
  add(event) {
    if (event.stream !== this.streamId) return null;
    const key = identity(event);
    const known = this.events.some((other) => identity(other) === key);
    this.insert(event);
    this.trim();
    this.render();
    return known ? null : (this.items.get(key) ?? null);
  }

  /** Keep at most `KEPT_BELOW` events below those shown. A pushed-out event's kind is read again from its
   * newest: where it was stored is not known (a live event carries no history id), and those of its
   * kind still known come back as duplicates, which are skipped. */
  trim() {
    for (const pushed of this.events.splice(this.limit + KEPT_BELOW)) this.cursors.set(pushed.type, {});
  }

  /** ``event`` in its place: by ``storedId``, its history id, or, heard live (no history id on the
   * WebSocket), above all stored events in the order heard; then, where it came late, below the newer
   * events of its moment. A live event's stored copy read later gives it its id: events stored after it,
   * of a WebSocket outage, then go above it. */
  insert(event, storedId = null) {
    if (!validTime(event.time)) {
      // Not shown: a time no date can be made of would throw at each render of the list.
      console.warn("segcast: an event without a valid time was skipped:", event);
      return;
    }
    const key = identity(event);
    const known = this.events.find((other) => identity(other) === key);
    if (known === undefined) {
      this.events.push(event);
      this.places.set(event, { stored: storedId, heard: storedId === null ? ++this.heard : 0 });
    } else {
      const place = this.places.get(known);
      if (storedId === null || place.stored !== null) return;
      place.stored = storedId;
    }
    this.events.sort((a, b) => newestFirst(this.places.get(a), this.places.get(b)));
    this.events = lateOnesByTime(this.events);
  }

  serially(read) {
    const done = this.reading.then(read);
    this.reading = done.catch(() => {}); // a read that failed (reported by its caller) stops none after it
    return done;
  }

  // Only new events are added and only the oldest dropped: a list rebuilt whole would lose a screen
  // reader's place in it (new ones are summed up apart, StreamView.eventHeard).
  render() {
    const shown = this.events.slice(0, this.limit);
    this.empty.hidden = shown.length > 0;
    // Only where a history can give them: without one, events cut off the list are gone.
    const more = this.events.length > this.limit || this.cursors.size > 0;
    this.older.hidden = !(more && historyKept);
    const items = new Map();
    for (const event of shown) {
      const key = identity(event);
      items.set(key, this.items.get(key) ?? eventItem(event));
    }
    this.items = items;
    reconcile(this.list, [...items.values()]);
  }
}

/** The items of ``list`` below the last of ``before``: those a page more of older events added. */
function itemsBelow(list, before) {
  const items = [...list.children];
  return items.slice(items.findLastIndex((item) => before.has(item)) + 1);
}

/** ``type``'s page of the stream's events from the history, newest first, from ``cursor`` (`before`
 * an id, or {} from the newest); null where it could not be read. */
function readPage(streamId, type, cursor) {
  return listEvents({ stream: streamId, type, limit: SHOWN, ...cursor }, { interactive: false }).catch(() => null);
}

/** Newest first: stored events by history id (the order they were stored in), below those only heard
 * live, which go in the order heard. */
function newestFirst(a, b) {
  if ((a.stored === null) !== (b.stored === null)) return a.stored === null ? -1 : 1;
  return a.stored === null ? b.heard - a.heard : b.stored - a.stored;
}

/** ``arrived`` (newest first in the order stored or heard) with each event moved below the ones before it
 * in that order that are newer by its time, by up to `LATE_MAX_S`: a list of one moment reads in time
 * order, a crossing counted late included, while a clock set far back or ahead reorders nothing. Ties
 * keep the order they arrived in. */
function lateOnesByTime(arrived) {
  const ordered = [];
  for (const event of arrived.slice().reverse()) {
    let at = 0;
    while (at < ordered.length && cameLateAfter(event, ordered[at])) at += 1;
    ordered.splice(at, 0, event);
  }
  return ordered;
}

/** Whether ``late``, which arrived after ``newer``, happened before it, and by little enough to be late. */
function cameLateAfter(late, newer) {
  return newer.time > late.time && newer.time - late.time <= LATE_MAX_S;
}

/** Whether `time` (Unix seconds) is one a Date can be made of: a number, within the Date's range. */
function validTime(time) {
  return typeof time === "number" && !Number.isNaN(new Date(time * 1000).getTime());
}

function eventItem(event) {
  const item = document.createElement("li");
  item.dataset.type = event.type;
  const time = document.createElement("time");
  const at = new Date(event.time * 1000);
  time.dateTime = at.toISOString();
  // The date too where it is not today's: an event of another day (or of a clock that was wrong) would
  // otherwise read as one of today.
  const today = at.toDateString() === new Date().toDateString();
  time.textContent = today ? at.toLocaleTimeString() : at.toLocaleString();
  item.append(time, " ", describeEvent(event));
  return item;
}
