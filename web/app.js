// The viewer: a grid of every stream, and a stream view (#/stream/<id>) with overlays and tracks.
// One WebSocket feeds both (docs/protocol.md); stats come from the REST API once a second.

import { addStream, listStreams, removeStream, viewerSettings } from "./api.js";
import { Connection, carryToken } from "./connection.js";
import { ANALYTICS_EVENTS } from "./events.js";
import { GridView, gridSubscription } from "./grid.js";
import { routedStream, StreamView } from "./stream.js";

const STATS_INTERVAL_MS = 1000;
const CONFIRM_WINDOW_MS = 3000;

const $ = (id) => document.getElementById(id);
const grid = new GridView($("grid"), $("grid-empty"));
const view = new StreamView({
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
  zones: {
    addZone: $("add-zone"),
    addLine: $("add-line"),
    finish: $("finish-shape"),
    name: $("shape-name"),
    remove: $("delete-shape"),
    persist: $("shape-persist"),
    hint: $("shape-hint"),
    list: $("shape-list"),
    empty: $("shape-empty"),
    error: $("shape-error"),
    problem: $("shape-problem"),
  },
  events: $("events"),
  eventsEmpty: $("events-empty"),
});
let current = null; // the stream id shown in the stream view, or null on the grid
let shownView = null; // "grid" or "stream" once routed: the focus moves only when it changes
let outage = false; // the connection went down since the last hello
let polling = false; // a stream list asked for and not answered yet: one at a time, however slow
// How many messages about which streams exist (hello, added, removed) the socket has brought: a stream
// list the API gave before the latest of them may be out of date, and would bring back a removed stream.
let listChanges = 0;

const connection = new Connection({
  hello(message) {
    listChanges += 1;
    setInference(message.inference);
    // Back after an outage: a WebRTC peer of before may be dead without knowing it yet (a restarted
    // server), so the view starts over with a new one, on the WebSocket's frames meanwhile.
    if (outage) view.reconnected(message.streams);
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
      if (message.stream === current) view.setMissing();
    } else if (ANALYTICS_EVENTS.includes(message.type)) {
      if (message.stream === current) view.events.add(message);
    } else if (message.type === "inference") {
      setInference(message);
    } else if (message.type === "error") {
      console.warn("segcast:", message.message);
    }
  },
  state(state) {
    if (state === "down") outage = true;
    const badge = $("connection");
    badge.textContent = state === "live" ? "connected" : "reconnecting…";
    badge.className = `badge ${state === "live" ? "state-live" : "state-failed"}`;
    // What the page shows of each stream is now only the last it heard: say so until hello.
    grid.setOnline(state === "live");
    view.setOnline(state === "live");
  },
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
  const shown = current === null ? "grid" : "stream";
  // What had the focus (a stream's card, the Remove button) is hidden with its view: the focus goes to
  // the start of the view shown, so the keyboard and a screen reader carry on there, not at the page's top.
  if (shownView !== null && shown !== shownView) $(shown === "grid" ? "grid" : "stream-title").focus();
  shownView = shown;
  if (current === null) {
    connection.subscribe(gridSubscription);
  } else {
    view.open(current);
    connection.subscribe(view.subscription());
  }
  refreshStats();
}

async function refreshStats() {
  if (polling) return;
  polling = true;
  try {
    const askedAt = performance.now();
    const asked = listChanges;
    const { streams } = await listStreams();
    if (asked === listChanges) showStreams(streams, askedAt);
  } catch {
    // The server is restarting or out of reach: the connection badge says so, and the next poll retries.
  } finally {
    polling = false;
  }
}

// The streams that exist (as hello and GET /api/streams list them), as of `askedAt` (performance.now()).
function showStreams(streams, askedAt) {
  grid.setStreams(streams);
  if (current === null) return;
  const shown = streams.find((s) => s.id === current);
  if (shown) view.setStats(shown, askedAt);
  else view.setMissing();
}

// The add form offers what this server's API accepts (README, Security), and saving to the config
// file only where there is one: asking for more would only earn a refusal.
async function fitAddForm() {
  const settings = await viewerSettings().catch(() => null);
  if (!settings) return;
  view.zones.offerPersist(settings);
  const { sources } = settings;
  const kinds = [`${sources.schemes.map((scheme) => `${scheme}:`).join(" ")} sources`];
  if (sources.files) kinds.push("video files inside the server's media folders");
  if (sources.devices) kinds.push("local cameras (webcam:0)");
  const missing = [];
  if (!sources.files) missing.push("video files need [server] media_dirs");
  if (!sources.devices) missing.push("local cameras need [server] allow_devices = true");
  $("add-help").textContent =
    `This server accepts ${kinds.join(", ")}.` + (missing.length ? ` In its config file, ${missing.join("; ")}.` : "");
  $("add-help").hidden = false;
  const persist = $("add-form").elements.persist;
  persist.closest("label").hidden = !settings.config_file;
  if (settings.save_config) {
    persist.checked = true;
    persist.disabled = true;
    persist.closest("label").title = "the config file says save_config = true: every change is saved";
  }
}

$("add-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  const data = new FormData(form);
  const body = { id: data.get("id").trim(), uri: data.get("uri").trim(), loop: data.get("loop") === "on" };
  const persist = form.elements.persist;
  if (data.get("conf")) body.conf = Number(data.get("conf"));
  $("add-error").textContent = "";
  const added = (stream) => {
    grid.upsert(stream);
    form.reset();
    if (persist.disabled) persist.checked = true; // save_config: saved whatever reset() says
  };
  try {
    added(await addStream(body, persist.checked && !persist.disabled));
  } catch (error) {
    if (error.stream !== null) added(error.stream); // added, only not saved: the message says so
    $("add-error").textContent = error.message;
  }
});

const removeButton = $("remove-stream");
// The first click on Remove, waiting CONFIRM_WINDOW_MS for the second: {stream, timer}. It holds for
// the stream it was made on only, so a second click can never remove another.
let removal = null;

function cancelRemoval() {
  clearTimeout(removal?.timer);
  removal = null;
  removeButton.textContent = "Remove";
}

removeButton.addEventListener("click", async () => {
  if (removal?.stream !== current) {
    cancelRemoval();
    removal = { stream: current, timer: setTimeout(cancelRemoval, CONFIRM_WINDOW_MS) };
    removeButton.textContent = "Click again to remove";
    return;
  }
  cancelRemoval();
  try {
    await removeStream(current, false);
    location.hash = "#/";
  } catch (error) {
    $("stream-error").textContent = error.message;
  }
});

carryToken($("nav-camera"));
window.addEventListener("hashchange", route);
setInterval(refreshStats, STATS_INTERVAL_MS);
route();
fitAddForm();
