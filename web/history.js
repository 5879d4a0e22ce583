// Event history (static/history.html): the events the server keeps ([events.history], docs/protocol.md
// "History") of every camera in one list, newest first, filtered by camera, type, zone or line and period,
// each with its snapshot. The stream view's list shows one camera's latest only; this is where a person
// looks back over an hour or a week.
//
// The filters live in the page's address (?stream=&type=&name=&period=), so a filtered view can be
// bookmarked, reloaded and sent to someone. The list follows each answer's `next` link, so paging stays
// exact while new events are stored above it.

import { ApiError, listEvents, listStreams, mintToken, serverNow } from "./api.js";
import { APP_ROOT, appUrl, carryToken, pageToken, storedToken } from "./connection.js";
import { describeEvent } from "./event_words.js";

// Events added at each "Show more", and shown at first.
const PAGE = 50;
// The periods offered, in seconds back from now; null: everything the history keeps.
const PERIODS = { "1h": 3600, "24h": 86400, "7d": 7 * 86400, all: null };
const DEFAULT_PERIOD = "24h";
const TYPES = ["zone_enter", "zone_exit", "loiter", "line_cross", "track"];
// The types whose events name a zone; a line crossing names a line; a track event names neither.
const ZONE_TYPES = ["zone_enter", "zone_exit", "loiter"];
const THUMBNAIL_WIDTH = 96;
const THUMBNAIL_HEIGHT = 72;
// The snapshots' addresses carry a signed token that opens stored events' snapshots and nothing else (POST
// /api/tokens, scope event_snapshots), minted again this long before it expires: an address copied out of
// the page, or kept in the browser's history, shows those pictures, never a camera, the list or a new token.
const SNAPSHOT_TOKEN_TTL_S = 3600;
const SNAPSHOT_TOKEN_RENEW_MS = 5 * 60 * 1000;
const HISTORY_OFF =
  "The event history is off on this server, so no events are kept. To keep them, add an [events.history] " +
  'table with a path (path = "segcast-events.db") to its config file and restart it (README, "Events out").';

const $ = (id) => document.getElementById(id);
const form = $("history-filters");
const streamField = $("history-stream");
const table = $("history-table");
const rows = table.tBodies[0];
const more = $("history-more");
const status = $("history-status");
const problem = $("history-error");

/** The filters the address holds; a value the page does not offer is taken as not given. */
function filtersOfAddress() {
  const params = new URLSearchParams(location.search);
  const type = params.get("type") ?? "";
  const period = params.get("period") ?? DEFAULT_PERIOD;
  return {
    stream: params.get("stream") ?? "",
    type: TYPES.includes(type) ? type : "",
    name: (params.get("name") ?? "").trim(),
    period: period in PERIODS ? period : DEFAULT_PERIOD,
  };
}

function filtersOfForm() {
  const data = new FormData(form);
  return {
    stream: data.get("stream"),
    type: data.get("type"),
    name: data.get("name").trim(),
    period: data.get("period"),
  };
}

function fillForm(filters) {
  offerCamera(filters.stream);
  for (const [name, value] of Object.entries(filters)) form.elements[name].value = value;
}

/** The address with ``filters`` in its query, a filter not given left out; its other parameters (a page's
 * ?token=) kept. The period is always written: a bookmark keeps its meaning if the default changes. */
function addressOf(filters) {
  const url = new URL(location.href);
  for (const [name, value] of Object.entries(filters)) {
    if (value === "") url.searchParams.delete(name);
    else url.searchParams.set(name, value);
  }
  return url.href;
}

/** A camera in the camera filter, added where it is not offered yet: one the address names may have been
 * removed since its events were stored, and the history keeps them. */
function offerCamera(id) {
  if (id === "" || [...streamField.options].some((option) => option.value === id)) return;
  streamField.append(new Option(id, id));
}

/** The cameras the server has now, offered in the camera filter in the server's order, and the one chosen
 * where it is not among them. Without an answer, the filter offers all cameras and the one the address
 * names: the list of events says what went wrong. */
async function offerCameras() {
  let streams;
  try {
    ({ streams } = await listStreams());
  } catch {
    return;
  }
  const chosen = streamField.value; // as it is now: it may have been changed while the list was on its way
  streamField.replaceChildren(streamField.options[0], ...streams.map(({ id }) => new Option(id, id)));
  offerCamera(chosen);
  streamField.value = chosen;
}

/** The GET /api/events queries whose events together are those ``filters`` ask for, newest first, each
 * read on by its own `next` links. A name alone (any type) is a zone's or a line's: the API filters by
 * one or the other, so both are asked. */
function queriesOf(filters, now) {
  const query = { limit: PAGE };
  if (filters.stream) query.stream = filters.stream;
  if (filters.type) query.type = filters.type;
  const back = PERIODS[filters.period];
  if (back !== null) query.since = String(now - back);
  if (!filters.name) return [query];
  if (filters.type === "line_cross") return [{ ...query, line: filters.name }];
  if (ZONE_TYPES.includes(filters.type) || filters.type === "track") return [{ ...query, zone: filters.name }];
  return [
    { ...query, zone: filters.name },
    { ...query, line: filters.name },
  ];
}

/** What an empty list says: of the filters set, those that may be why, so that a name typed wrong is not
 * taken for too short a period ("All kept" is as long as it goes). */
function emptySaying(filters) {
  if (filters.type === "track" && filters.name) {
    return "No events: track events name no zone or line; clear Zone or line, or choose another type";
  }
  const named = filters.name ? ` of a zone or line named "${filters.name}" (its name exactly, case included)` : "";
  const within = PERIODS[filters.period] === null ? "" : " in this period";
  return `No events${named}${within}`;
}

/** The filters of the page a `next` link leads to: only its query is taken, as the link's path is the
 * server's own, which behind a proxy's prefix is not the one this page reaches it by. */
function filtersOfLink(link) {
  return Object.fromEntries(new URL(link, location.href).searchParams);
}

/** The events of several queries as one list, newest first by history id (the order they were stored in,
 * as each query's pages are), read a page of each at a time as it is needed. */
class NewestFirst {
  constructor(queries) {
    // Per query: its events read and not taken yet, and the filters of its next page (null after its last).
    this.sources = queries.map((query) => ({ read: [], next: query }));
  }

  /** Whether events are left to take, read or not. */
  get more() {
    return this.sources.some((source) => source.read.length > 0 || source.next !== null);
  }

  /** Move up to ``count`` of the newest events left into ``taken``, one at a time: where a read fails,
   * those taken before it stay taken, and the next call reads that page again. */
  async take(count, taken) {
    for (let left = count; left > 0; left -= 1) {
      await Promise.all(this.sources.map((source) => readIfEmpty(source)));
      const waiting = this.sources.filter((source) => source.read.length > 0);
      if (waiting.length === 0) return;
      const newest = waiting.reduce((a, b) => (a.read[0].id > b.read[0].id ? a : b));
      taken.push(newest.read.shift());
    }
  }
}

async function readIfEmpty(source) {
  if (source.read.length > 0 || source.next === null) return;
  const page = await listEvents(source.next);
  source.read.push(...page.events);
  source.next = page.next ? filtersOfLink(page.next) : null;
}

/** The local time of ``event``, with its date where that is not today's. */
function timeCell(event) {
  const cell = document.createElement("td");
  const at = new Date(event.time * 1000);
  if (Number.isNaN(at.getTime())) return cell; // a time no date can be made of: the row says the rest
  const time = document.createElement("time");
  time.dateTime = at.toISOString();
  const today = at.toDateString() === new Date().toDateString();
  time.textContent = today ? at.toLocaleTimeString() : at.toLocaleString();
  cell.append(time);
  return cell;
}

/** A link to the camera's stream view, carrying the page's own token (the viewer has no other way to it). */
function cameraCell(streamId) {
  const cell = document.createElement("td");
  const link = document.createElement("a");
  link.className = "history-camera";
  link.href = new URL(`#/stream/${encodeURIComponent(streamId)}`, APP_ROOT).href;
  link.textContent = streamId;
  carryToken(link);
  cell.append(link);
  return cell;
}

let snapshotToken = null; // {token, renewAt}: the snapshots' token as last minted

/** The snapshots' token (SNAPSHOT_TOKEN_TTL_S), minted with the page's own token or the person's; null where
 * the page has neither (the server asked for none) or none could be minted (the pictures are then refused). */
async function snapshotTokenNow() {
  if (!pageToken && !storedToken()) return null;
  if (snapshotToken && Date.now() < snapshotToken.renewAt) return snapshotToken.token;
  try {
    const { token, ttl_s: ttlS } = await mintToken("viewer", SNAPSHOT_TOKEN_TTL_S, { event_snapshots: true });
    snapshotToken = { token, renewAt: Date.now() + ttlS * 1000 - SNAPSHOT_TOKEN_RENEW_MS };
  } catch {
    snapshotToken = null;
  }
  return snapshotToken?.token ?? null;
}

/** The stored snapshot, small and loaded as it scrolls into view, linked full size. An <img> sends no
 * Authorization header: its address carries `token`, the snapshots' own (snapshotTokenNow), if any. */
function snapshotCell(stored, what, token) {
  const cell = document.createElement("td");
  if (stored.snapshot === null) return cell;
  const url = appUrl(`api/events/${stored.id}/snapshot.jpg`);
  if (token) url.searchParams.set("token", token);
  const address = url.href;
  const link = document.createElement("a");
  link.href = address;
  const picture = document.createElement("img");
  picture.loading = "lazy";
  picture.width = THUMBNAIL_WIDTH;
  picture.height = THUMBNAIL_HEIGHT;
  picture.alt = `Snapshot of ${what}`;
  picture.src = address;
  link.append(picture);
  cell.append(link);
  return cell;
}

function eventRow(stored, token) {
  const { event } = stored;
  const row = document.createElement("tr");
  row.dataset.eventId = String(stored.id);
  const what = describeEvent(event);
  const whatCell = document.createElement("td");
  whatCell.className = "history-what";
  whatCell.textContent = what;
  row.append(timeCell(event), cameraCell(event.stream), whatCell, snapshotCell(stored, what, token));
  return row;
}

/** The list of one set of filters: the events shown, and "Show more" for the rest. */
class HistoryList {
  constructor() {
    this.events = null; // the NewestFirst of the filters shown; another replaces it when they change
    this.empty = ""; // what the status says where the filters shown find no event
    this.loading = false; // a "Show more" is being answered: another press is ignored meanwhile
    more.addEventListener("click", () => this.showMore());
  }

  /** The newest page of ``filters``' events, in place of what was shown. */
  async show(filters) {
    const events = new NewestFirst(queriesOf(filters, serverNow()));
    this.events = events;
    this.empty = emptySaying(filters);
    rows.replaceChildren();
    more.hidden = true;
    problem.textContent = "";
    status.textContent = "Loading events…";
    await this.add(events);
  }

  /** A page more, below those shown. The button stays focusable while it loads (aria-disabled, not
   * `disabled`, which would drop the keyboard's focus to the page's top). */
  async showMore() {
    if (this.loading || this.events === null) return;
    this.loading = true;
    more.setAttribute("aria-disabled", "true");
    const pressedHere = document.activeElement === more;
    const shownBefore = rows.rows.length;
    try {
      await this.add(this.events);
    } finally {
      this.loading = false;
      more.removeAttribute("aria-disabled");
    }
    // Gone with the last page, the button would leave the focus to <body>: it goes on to the first row added.
    if (pressedHere && more.hidden) focusRow(rows.rows[shownBefore] ?? rows.rows[shownBefore - 1]);
  }

  /** Add ``events``' next page to the list, if they are still what is shown. */
  async add(events) {
    const taken = [];
    let failure = null;
    try {
      await events.take(PAGE, taken);
    } catch (error) {
      failure = error;
    }
    // For the snapshots' addresses: asked for after the events, which may have asked the person for a token.
    const token = await snapshotTokenNow();
    if (events !== this.events) return; // the filters changed meanwhile
    rows.append(...taken.map((stored) => eventRow(stored, token)));
    more.hidden = failure !== null ? rows.rows.length === 0 : !events.more;
    table.hidden = failure instanceof ApiError && failure.status === 404;
    const count = rows.rows.length;
    status.textContent = count > 0 ? `${count} ${count === 1 ? "event" : "events"} shown` : failure ? "" : this.empty;
    problem.textContent = failure === null ? "" : explain(failure);
  }
}

function focusRow(row) {
  if (!row) return;
  row.tabIndex = -1;
  row.focus();
}

function explain(failure) {
  if (failure instanceof ApiError && failure.status === 404) return HISTORY_OFF;
  return `The events could not be read: ${failure.message}`;
}

const list = new HistoryList();

form.addEventListener("submit", (event) => {
  event.preventDefault();
  const filters = filtersOfForm();
  const address = addressOf(filters);
  if (address !== location.href) history.pushState(null, "", address);
  list.show(filters);
});

// Back and forward go through the filters chosen before, as through pages.
window.addEventListener("popstate", () => {
  const filters = filtersOfAddress();
  fillForm(filters);
  list.show(filters);
});

for (const link of document.querySelectorAll(".topbar a")) carryToken(link);
const initial = filtersOfAddress();
fillForm(initial);
offerCameras();
list.show(initial);
