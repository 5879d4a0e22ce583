// The viewer: a grid of every stream, and a stream view (#/stream/<id>) with overlays and tracks.
// One WebSocket feeds both (docs/protocol.md); it brings pictures, and stats come from the REST API
// once a second, only while the page is shown: a tab in the background asks for neither (its pictures:
// connection.js). While the socket is down and the API does not answer either, the stats wait: the
// socket's attempts ask the API (below), at their own growing intervals, and the stats go on once it answers.
// A browser does not say why a socket was refused: each time one closes, the stream list is asked for
// over HTTP (LiveRefusals), so that a server that wants a token the person has not given (the dialog's
// "Not now") is told from one out of reach, and the page offers the dialog again rather than
// "reconnecting". The same question tells a live connection refused while the server answers (a
// reverse proxy that drops the WebSocket or the Host header) from a server that is away.
// The keyboard goes between the grid and one camera (README): on the grid 1 to 9 open that tile, and in
// the stream view Escape goes back to the grid (a shape selected there is let go first). The stream's picture goes full screen from a button made
// here (index.html has none: a page in a frame not allowed full screen offers none) or a double-click.
// The grid's wall view (wall.js, ?wall=1 in the address) shows its tiles alone, filling the window: 1 to 9
// still open a tile, Escape there goes back to the wall, and Escape on the wall leaves it.

import { markInvalid, unmarkInvalid } from "./announce.js";
import {
  ApiError,
  addStream,
  askForAcceptedToken,
  listStreams,
  removeStream,
  sendsLinkToken,
  viewerSettings,
} from "./api.js";
import { Connection, carryToken, pageToken, storedToken } from "./connection.js";
import { ANALYTICS_EVENTS } from "./events.js";
import { GridView, ThumbnailWidth, gridSubscription } from "./grid.js";
import { LIVE_REFUSED_NOTICE, LiveRefusals, OFFLINE_NOTICE } from "./status.js";
import { routedStream, StreamView } from "./stream.js";
import { WallView } from "./wall.js";

const STATS_INTERVAL_MS = 1000;
const CONFIRM_WINDOW_MS = 3000;
// Remove's second press counts only this long after the first: sooner is a reflex double-tap on a
// phone (~120 ms apart) or a held Enter's repeat, not a decision. Until then the button keeps the
// question up but is dimmed (aria-disabled: it keeps the keyboard's focus), and a press leaves it as it is.
const CONFIRM_ARMING_MS = 600;
// While the server wants a token the page lacks, its socket is tried this seldom: only a token given
// (the button) or a change of the server's tokens lets it in, and the first is tried at once.
const TOKEN_RETRY_MS = 60000;
const TOKEN_NEEDED = {
  state: "unauthorized",
  title: "segcast needs an access token",
  reason: "None was given, so nothing can be shown: use “Enter access token” at the top of the page.",
  nextAttemptAt: null,
};
// The same where the page has a token (its address's, or one kept from before) that the server refused.
const TOKEN_REFUSED = {
  ...TOKEN_NEEDED,
  reason:
    "The access token this page has was not accepted (mistyped, expired or no longer configured), so " +
    "nothing can be shown: use “Enter access token” at the top of the page to give another.",
};
const NOT_ADDED = "Not added: no connection to segcast. Try again once it is back.";
// The add form's fields by the names the server's refusals give them ("body.uri: ..."), with their labels.
const ADD_FIELDS = { id: "Id", uri: "Source", conf: "Confidence", loop: "Loop files" };
const FIELD_PATH = /^body\.(\w+): /;
// What the grid says of a stream just removed, by whether the config file was changed.
const REMOVED = {
  saved: (id) => `Removed “${id}”, from the config file too.`,
  unsaved: (id) =>
    `Removed “${id}” until segcast restarts: the config file was left as it was, so if it lists ` +
    `“${id}”, the stream comes back then.`,
  noFile: (id) => `Removed “${id}”.`,
};

const $ = (id) => document.getElementById(id);
const grid = new GridView($("grid"), $("grid-empty"), { downChanged: showTitle });
// The tiles' pictures follow their size on the screen; the stream view asks for its own.
const thumbnails = new ThumbnailWidth($("grid"), (px) => {
  if (current === null) connection.subscribe(gridSubscription(px));
});
// Laid out anew, the tiles may be another width: their pictures are asked for as wide again.
const wall = new WallView($("grid"), $("wall-controls"), { laidOut: () => thumbnails.settle() });
const view = new StreamView(
  {
    canvas: $("video"),
    toggles: $("overlays"),
    trackBody: document.querySelector("#tracks tbody"),
    trackCount: $("track-count"),
    title: $("stream-title"),
    state: $("stream-state"),
    error: $("stream-error"),
    stats: $("stats"),
    embedCode: $("embed-code"),
    copyEmbed: $("copy-embed"),
    copyState: $("copy-state"),
    embedNote: $("embed-note"),
    pause: $("pause"),
    remove: $("remove-stream"),
    zones: {
      addZone: $("add-zone"),
      addLine: $("add-line"),
      addIgnore: $("add-ignore"),
      finish: $("finish-shape"),
      undo: $("undo-point"),
      name: $("shape-name"),
      remove: $("delete-shape"),
      persist: $("shape-persist"),
      hint: $("shape-hint"),
      list: $("shape-list"),
      empty: $("shape-empty"),
      ignored: $("shape-ignored"), // what the stream's object filters kept from its tracker so far
      error: $("shape-error"),
      problem: $("shape-problem"),
      classesLegend: $("shape-classes-legend"), // "Classes counted", or an ignore zone's "Classes ignored"
      share: $("shape-share"), // an ignore zone's share inside, in %
      shareField: $("shape-share-field"),
    },
    events: $("events"),
    eventsEmpty: $("events-empty"),
    eventsSummary: $("events-summary"),
  },
  { subscribe: (subscription) => connection.subscribe(subscription) },
);
const removePersist = $("remove-persist"); // Remove's "Save to config file"
let current = null; // the stream id shown in the stream view, or null on the grid
let shownView = null; // "grid" or "stream" once routed: the focus moves only when it changes
let outage = false; // the connection went down since the last hello
let polling = false; // a stream list asked for and not answered yet: one at a time, however slow
let live = false; // the WebSocket is open
// The API did not answer the last question asked of it while the socket was down (the server or the
// network is away): the stats poll then waits, and each of the socket's attempts asks instead
// (LiveRefusals), at the connection's growing backoff. Once the API answers, the poll goes on once a
// second: a live connection refused while the server answers leaves the page only these figures.
let away = false;
let tokenNeeded = false; // the server refused this page's (lack of a) token, as of the last closed socket
// Why the socket closed, as the API tells: a token wanted, the server away, or the live connection refused.
const refusals = new LiveRefusals(
  () => listStreams(),
  (error) => {
    if (live) return; // a socket opened meanwhile (a token was given): it was let in
    away = error !== null;
    tokenNeeded = error instanceof ApiError && error.status === 401;
    if (tokenNeeded) connection.holdOff(TOKEN_RETRY_MS);
    showConnection();
  },
);
// How many messages about which streams exist (hello, added, removed) the socket has brought: a stream
// list the API gave before the latest of them may be out of date, and would bring back a removed stream.
let listChanges = 0;
let fileSaves = false; // the server has a config file to save to (GET /api/viewer)

const connection = new Connection({
  hello(message) {
    refusals.hello();
    listChanges += 1;
    setInference(message.inference);
    fitAddForm(); // the answer at page load may have failed (a server starting), or a restart changed them
    // Back after an outage: a WebRTC peer of before may be dead without knowing it yet (a restarted
    // server), so the view starts over with a new one, on the WebSocket's frames meanwhile.
    if (outage) {
      view.reconnected(message.streams);
      tellGone(message.streams);
    }
    outage = false;
    route();
    view.events.reconnected(); // events of the time it was down, or before this socket subscribed
    showStreams(message.streams, performance.now());
  },
  frame(meta, jpeg) {
    if (current === null) grid.frame(meta, jpeg);
    else view.frame(meta, jpeg);
  },
  event(message) {
    if (message.type === "status") {
      grid.setState(message.stream, message.state, message.error);
      if (message.stream === current) view.setState(message.state, message.error);
    } else if (message.type === "added") {
      listChanges += 1;
      grid.upsert({ id: message.stream, state: "starting" });
      if (message.stream === current) view.setState("starting", null);
    } else if (message.type === "removed") {
      listChanges += 1;
      grid.remove(message.stream);
      view.zones.forget(message.stream);
      if (message.stream === current) view.setMissing();
    } else if (ANALYTICS_EVENTS.includes(message.type)) {
      grid.eventHeard(message); // the grid marks its tile, kept while the stream view is open
      if (message.stream === current) view.eventHeard(message);
    } else if (message.type === "inference") {
      setInference(message);
    } else if (message.type === "error") {
      console.warn("segcast:", message.message);
    }
  },
  state(state) {
    live = state === "live";
    if (live) tokenNeeded = false;
    else outage = true;
    showConnection();
    if (!live) refusals.lost();
  },
});

// What the page shows of each stream is only the last it heard while the socket is down: say so
// until hello, and why where the page can tell (a token the server wants, a live connection refused).
function showConnection() {
  const refused = !live && !tokenNeeded && refusals.blamed;
  const badge = $("connection");
  const down = tokenNeeded ? "needs a token" : refused ? "live connection refused" : "reconnecting…";
  badge.textContent = live ? "connected" : down;
  badge.className = `badge ${live ? "state-live" : "state-failed"}`;
  $("give-token").hidden = live || !tokenNeeded;
  const tokenNotice = pageToken || storedToken() ? TOKEN_REFUSED : TOKEN_NEEDED;
  const notice = tokenNeeded ? tokenNotice : refused ? LIVE_REFUSED_NOTICE : OFFLINE_NOTICE;
  grid.setOnline(live, notice);
  view.setOnline(live, notice);
}

// The dialog the person declined, again on their word; the socket is tried with the token at once.
$("give-token").addEventListener("click", async () => {
  const token = await askForAcceptedToken(pageToken || storedToken() ? "refused" : "missing");
  if (token) connection.holdOff(0);
});

function setInference(inference) {
  grid.setInference(inference ?? null);
  view.setInference(inference ?? null);
}

function route() {
  current = routedStream();
  if (removal && removal.stream !== current) cancelRemoval(); // it was asked for on another stream
  $("grid-view").hidden = current !== null;
  $("stream-view").hidden = current === null;
  wall.setGridShown(current === null);
  const shown = current === null ? "grid" : "stream";
  showTitle();
  // What had the focus (a stream's card, the Remove button) is hidden with its view: the focus goes to
  // the start of the view shown, so the keyboard and a screen reader carry on there, not at the page's top.
  if (shownView !== null && shown !== shownView) $(shown === "grid" ? "grid" : "stream-title").focus();
  shownView = shown;
  if (current === null) {
    connection.subscribe(gridSubscription(thumbnails.px()));
  } else {
    view.open(current);
    connection.subscribe(view.subscription());
  }
  refreshStats();
}

// The tab, the window list and a screen reader's page title name the stream shown, after how many streams
// are down: a tab left in the background says so ("(2 down) segcast").
function showTitle() {
  const down = grid.downCount();
  document.title = `${down ? `(${down} down) ` : ""}${current === null ? "" : `${current} · `}segcast`;
}

async function refreshStats() {
  // Refused until a token is given, or out of reach: the socket's attempts tell when to ask again.
  if (polling || tokenNeeded || (away && !live)) return;
  polling = true;
  const askedAt = performance.now();
  const asked = listChanges;
  let streams;
  try {
    ({ streams } = await listStreams());
  } catch {
    // The server is restarting or out of reach: the connection badge says so, and the next poll retries.
    away = !live;
    return;
  } finally {
    polling = false;
  }
  away = false;
  // Outside the try: a failure here is a bug of the page's own, for the console, not a server away.
  if (asked === listChanges) showStreams(streams, askedAt);
}

// The streams that exist (as hello and GET /api/streams list them), as of `askedAt` (performance.now()).
function showStreams(streams, askedAt) {
  grid.setStreams(streams);
  if (current === null) return;
  const shown = streams.find((s) => s.id === current);
  showRemovePersist(shown);
  if (shown) view.setStats(shown, askedAt);
  else view.setMissing();
}

// Remove saves to the config file as the add form and the zone editor do: by choice, where there is a
// file and the stream can be written to it (not one --source started), always under save_config.
function showRemovePersist(stream) {
  removePersist.closest("label").hidden = !(fileSaves && stream?.persistable);
}

// The add form offers what this server's API accepts (README, Security), and saving to the config
// file only where there is one: asking for more would only earn a refusal. Asked at page load (a live
// connection refused still leaves the form right) and at each hello, as a server may have been
// starting then, and restarts with another config.
async function fitAddForm() {
  if (sendsLinkToken()) return; // a camera's link (a wall's, a kiosk's) adds nothing: the node's settings are not its
  let settings;
  try {
    settings = await viewerSettings();
  } catch {
    return; // the server is away (or not yet up): the next hello asks again
  }
  view.zones.useViewerSettings(settings);
  view.detection.useViewerSettings(settings);
  const { sources } = settings;
  const kinds = [`${sources.schemes.map((scheme) => `${scheme}:`).join(" ")} sources`];
  if (sources.files) kinds.push("video files inside the server's media folders");
  if (sources.devices) kinds.push("local cameras (webcam:0)");
  const missing = [];
  if (!sources.files) missing.push("video files need [server] media_dirs");
  if (!sources.devices) missing.push("local cameras need [server] allow_devices = true");
  // Said so that it holds whether segcast runs from a config file or from flags alone (`segcast demo`,
  // `--source`): the API cannot take files or devices, only the file segcast starts from can allow them.
  const inFile =
    ` In the config file (segcast serve --config FILE), ${missing.join("; ")};` +
    " or give them with --source at start.";
  $("add-help").textContent = `This server accepts ${kinds.join(", ")}.` + (missing.length ? inFile : "");
  $("add-help").hidden = false;
  fileSaves = Boolean(settings.config_file);
  $("add-form").elements.persist.closest("label").hidden = !fileSaves; // Remove's: showRemovePersist()
  for (const persist of [$("add-form").elements.persist, removePersist]) {
    if (settings.save_config) {
      persist.checked = true;
      persist.disabled = true;
      persist.closest("label").title = "the config file says save_config = true: every change is saved";
    } else if (persist.disabled) {
      // save_config was on until the server restarted: the choice is the person's again.
      persist.checked = false;
      persist.disabled = false;
      persist.closest("label").title = "";
    }
  }
}

// The server's last error stays only until the next attempt: under a new one it would read as its answer.
$("add-form").addEventListener("input", () => showAddError(""));

// `text` under the form; where it is about one of its fields (`field`, its name), that field is marked
// invalid, described by it and given the focus, so a screen reader says which field to correct.
function showAddError(text, field = null) {
  const form = $("add-form");
  for (const marked of form.querySelectorAll("[aria-invalid]")) unmarkInvalid(marked, "add-error");
  $("add-error").textContent = text;
  const input = field && form.elements[field];
  if (!input) return;
  markInvalid(input, "add-error");
  input.focus();
}

// The server's refusal in the form's words: the field it is about (null: none), named by its label
// rather than by its path in the request ("Source: ...", not "body.uri: ..."); a taken id is the id's.
function addRefusal(error) {
  const match = error.message.match(FIELD_PATH);
  if (match && Object.hasOwn(ADD_FIELDS, match[1])) {
    return { field: match[1], text: `${ADD_FIELDS[match[1]]}: ${error.message.slice(match[0].length)}` };
  }
  if (error.status === 409 && / already exists/.test(error.message)) return { field: "id", text: error.message };
  return { field: null, text: error.message };
}

$("add-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  const data = new FormData(form);
  const body = { id: data.get("id").trim(), uri: data.get("uri").trim(), loop: data.get("loop") === "on" };
  const persist = form.elements.persist;
  if (data.get("conf")) body.conf = Number(data.get("conf"));
  showAddError("");
  $("grid-note").hidden = true;
  const added = (stream) => {
    grid.upsert(stream);
    form.reset();
    if (persist.disabled) persist.checked = true; // save_config: saved whatever reset() says
  };
  try {
    added(await addStream(body, persist.checked && !persist.disabled));
  } catch (error) {
    if (!(error instanceof ApiError)) {
      showAddError(NOT_ADDED); // never answered: an "added" message says if it was
      return;
    }
    if (error.stream !== null) added(error.stream); // added, only not saved: the message says so
    const { field, text } = addRefusal(error);
    showAddError(text, error.stream === null ? field : null);
  }
});

const removeButton = $("remove-stream");
// The first click on Remove, waiting CONFIRM_WINDOW_MS for the second: {stream, timer, armed (a second
// click counts: CONFIRM_ARMING_MS have passed), arming (its timer)}. It holds for the stream it was made
// on only, so a second click can never remove another.
let removal = null;

function cancelRemoval() {
  clearTimeout(removal?.timer);
  clearTimeout(removal?.arming);
  removal = null;
  removeButton.textContent = "Remove";
  removeButton.removeAttribute("aria-disabled");
}

function askToRemove() {
  cancelRemoval();
  const asked = { stream: current, timer: setTimeout(cancelRemoval, CONFIRM_WINDOW_MS), armed: false };
  asked.arming = setTimeout(() => {
    asked.armed = true;
    removeButton.removeAttribute("aria-disabled");
  }, CONFIRM_ARMING_MS);
  removal = asked;
  removeButton.setAttribute("aria-disabled", "true");
  removeButton.textContent = "Press again to remove";
}

removeButton.addEventListener("click", async () => {
  if (removal?.stream !== current) {
    askToRemove();
    return;
  }
  if (!removal.armed) return; // too soon to be a second thought: the question stands as it was
  cancelRemoval();
  const removed = current;
  const label = removePersist.closest("label");
  // Under save_config the box is ticked and off: the server saves without being asked (as for adding).
  const saved = fileSaves && !label.hidden && removePersist.checked;
  // The answer may come after the person went on to another stream: only a view still on the removed
  // stream goes to the grid or shows the refusal; elsewhere the grid's note tells either.
  const stillShown = () => current === removed;
  view.setRemoving(true);
  try {
    await removeStream(removed, saved && !removePersist.disabled);
  } catch (error) {
    if (stillShown()) {
      view.setRemoving(false);
      $("stream-error").textContent = error.message;
    } else showGridNote(`Not removed “${removed}”: ${error.message}`);
    return;
  }
  showGridNote(REMOVED[saved ? "saved" : fileSaves ? "unsaved" : "noFile"](removed));
  if (stillShown()) location.hash = "#/";
});

// Streams the grid had that a hello after an outage no longer lists: removed meanwhile, or added without
// "Save to config file" to a segcast that has restarted since. Said once, as their tiles go, so that a
// camera does not vanish from a wall screen without a word.
function tellGone(streams) {
  const listed = new Set(streams.map((stream) => stream.id));
  const gone = grid.streamIds().filter((id) => !listed.has(id));
  if (gone.length === 0) return;
  const named = gone.map((id) => `“${id}”`).join(", ");
  showGridNote(
    `Gone while the connection was down: ${named}. Removed meanwhile, or added without “Save to config ` +
      "file” to a segcast that has restarted since: such a camera lasts only until segcast stops.",
  );
}

function showGridNote(text) {
  $("grid-note").textContent = text;
  $("grid-note").hidden = false;
}

// A key of the page's own: not one typed into a field or a dialog, nor one with a modifier (the browser's).
function pageKey(event) {
  const own = !event.defaultPrevented && !event.altKey && !event.ctrlKey && !event.metaKey;
  return own && !event.target.closest?.("input, textarea, select, [contenteditable], dialog");
}

// Heard before the zone editor's keys (capture): by then an Escape that dropped a shape being drawn
// (zone_keyboard.js) would leave the editor idle, and go on to leave the view too.
window.addEventListener(
  "keydown",
  (event) => {
    if (!pageKey(event)) return;
    if (current === null && /^[1-9]$/.test(event.key)) openTile(Number(event.key));
    else if (current !== null && event.key === "Escape" && !document.fullscreenElement) {
      // A shape being drawn or moved, or detection settings edited and not applied, keep the view.
      if (view.zones.busy() || view.detection.busy()) return;
      // A selected shape is let go first, as editors drop a selection; the next Escape leaves the view.
      if (view.zones.selected !== null) view.zones.select(null);
      else location.hash = "#/";
    }
  },
  { capture: true },
);

// The grid's `n`th tile (from 1), in the order shown, opened; none where there are fewer.
function openTile(n) {
  const tile = $("grid").querySelectorAll(":scope > .card")[n - 1];
  if (tile) location.hash = tile.hash;
}

// The stream's picture (its wrapper, with its notices) full screen, or back: from a button beside Pause,
// or a double-click on it, but not one made while drawing or moving a zone (its clicks add points).
function offerFullScreen() {
  if (!document.fullscreenEnabled) return;
  const wrap = $("video").closest(".canvas-wrap");
  const button = document.createElement("button");
  button.type = "button";
  button.className = "quiet";
  button.textContent = "Full screen";
  button.title = "The picture full screen (or double-click it); Escape leaves it";
  $("pause").after(button);
  const toggle = () => {
    const asked = document.fullscreenElement ? document.exitFullscreen() : wrap.requestFullscreen();
    asked.catch((error) => console.warn("segcast: full screen refused:", error.message));
  };
  button.addEventListener("click", toggle);
  let pressesEditing = [false, false]; // whether the zone editor was busy at each of the last two presses
  wrap.addEventListener("pointerdown", () => (pressesEditing = [pressesEditing[1], view.zones.busy()]), {
    capture: true,
  });
  wrap.addEventListener("dblclick", () => {
    if (!pressesEditing.some(Boolean)) toggle();
  });
}

offerFullScreen();
carryToken($("nav-camera"));
carryToken($("nav-history"));
window.addEventListener("hashchange", route);
// Stats are for someone looking at them: a hidden tab (a dashboard left in the background) asks for
// none, and asks at once when shown again rather than show figures as old as its time away.
const refreshShownStats = () => {
  if (!document.hidden) refreshStats();
};
setInterval(refreshShownStats, STATS_INTERVAL_MS);
document.addEventListener("visibilitychange", refreshShownStats);
route();
fitAddForm();
