// All cameras (static/fleet.html?nodes=node-1,node-2): the streams of every segcast node behind one
// entrance in one grid, each tile naming its node and opening that node's own viewer.
//
// Behind the entrance (docs/scaling.md) each node is a folder of the same origin, <entrance>/node-2/
// beside <entrance>/node-1/, so a listed name is that folder beside the one this page came from: the
// page needs no address of its own per node, and stays right behind another proxy's prefix. Without
// ?nodes= it shows its own node only.
//
// One WebSocket per node (connection.js), subscribed for pictures as wide as its tiles (none while the
// page is hidden), each reconnecting by itself: a node that is down says so over its own tiles and in
// its badge, and the others play on. Every node is behind the entrance's one host, where a browser opens
// one WebSocket at a time: each is opened only once its node has answered over HTTP, so that a node that
// accepts and never answers (its event loop blocked) holds back no other node's. One whose REST API
// answers while its live connection keeps being refused says that, and what to fix. The nodes of one
// deployment share their tokens, so the person is asked once (api.js) and the answer serves all; where
// one node refuses the token the others took (its tokens rotated without theirs), the question names it.
// Each live node's REST API is asked for its streams once a second, as the viewer asks its own (app.js):
// a stream's rate and viewers change between the socket's messages; a node that is down shows none.
// The nodes are asked in turn, spread over the second rather than all at once through the one entrance,
// and not at all while the page is hidden (a dashboard in a background tab); shown again, every node
// is asked at once, once, so that no figure is as old as the time away.
// A node that does not answer has no tiles of its own to darken: where the entrance says which node
// runs which camera (a split's does: FleetMap), its placeholder names the cameras it leaves out, and a
// listed node the entrance no longer has says so, rather than "unreachable. 404 Not Found".
// Its wall view (wall.js, ?nodes=...&wall=1) is the viewer's grid's: every node's tiles alone, filling the window.

import { ApiError, listStreams } from "./api.js";
import {
  APP_ROOT,
  Connection,
  REQUEST_TIMEOUT_MS,
  answerOf,
  authHeaders,
  carryToken,
  nameTokenAsker,
  pageToken,
  storedToken,
  timeoutSignal,
} from "./connection.js";
import { ANALYTICS_EVENTS } from "./events.js";
import { GridView, ThumbnailWidth, gridSubscription } from "./grid.js";
import { LIVE_REFUSED_NOTICE, LiveRefusals, notice } from "./status.js";
import { WallView } from "./wall.js";

// A node's name is one folder of the entrance: nothing that could lead out of it.
const NODE_NAME = /^(?!\.\.?$)[A-Za-z0-9._~-]{1,64}$/;
// The entrance's folder serving this page from whichever node answers (ALL_NODES in server/deploy/entrance.py).
const ALL_NODES = "all";
// The entrance: the folder above this page's node (or above ALL_NODES).
const ENTRANCE = new URL("../", APP_ROOT);
// Where the entrance says which node runs which camera (FLEET_MAP_PATH in server/deploy/entrance.py).
const FLEET_MAP = "fleet.json";
const STATS_INTERVAL_MS = 1000;
// What the entrance answers for a node that is not answering (nginx: refused, timed out, no node).
const ENTRANCE_NOT_ANSWERING = [502, 503, 504];

const $ = (id) => document.getElementById(id);

// What a down node's tiles say of their pictures: `reason` over one received, `reasonBeforePicture`
// over a tile that has had none.
const LAST_PICTURES = "Its pictures are the last received. Trying again…";
const NO_PICTURE = "No picture has been received yet. Trying again…";
const RECONNECTING = {
  state: "reconnecting",
  text: "reconnecting…",
  reason: LAST_PICTURES,
  reasonBeforePicture: NO_PICTURE,
};
// `fix`: said on the node's placeholder too, as a node refused (or never reached) from the start has no
// tiles to say it on.
const LIVE_REFUSED = {
  state: LIVE_REFUSED_NOTICE.state,
  text: "live connection refused",
  reason: LIVE_REFUSED_NOTICE.reason,
  fix: LIVE_REFUSED_NOTICE.reason,
};

// Why a node's WebSocket is down, from what its REST API answers (a browser does not say why a
// WebSocket failed): no answer, or the entrance's 502, means the node is not there.
function diagnosis(error) {
  if (error === null) return RECONNECTING;
  if (error instanceof ApiError && (error.status === 401 || error.status === 403)) {
    return { state: "unauthorized", text: "access token needed", reason: error.message };
  }
  const why =
    error.name === "TimeoutError"
      ? `the node is not answering (nothing in ${REQUEST_TIMEOUT_MS / 1000} s): it is stopped, starting or overloaded`
      : error.message;
  return {
    state: "unreachable",
    text: "unreachable",
    reason: `${why}. ${LAST_PICTURES}`,
    reasonBeforePicture: `${why}. ${NO_PICTURE}`,
    fix: why,
  };
}

// Resolves once the node at `root` answers over HTTP (a refusal is an answer: its socket is refused
// and says why), rejects where it does not: no answer in time, or the entrance's for a node not there.
async function answering(root) {
  try {
    await listStreams({ base: root });
  } catch (error) {
    if (!(error instanceof ApiError) || ENTRANCE_NOT_ANSWERING.includes(error.status)) throw error;
  }
}

// The entrance's map as node name -> its camera ids, or null where `data` is none.
function placement(data) {
  if (!Array.isArray(data?.nodes)) return null;
  const nodes = new Map();
  for (const node of data.nodes) {
    if (typeof node?.name !== "string" || !Array.isArray(node.streams)) return null;
    nodes.set(node.name, node.streams.map(String));
  }
  return nodes;
}

/**
 * Which cameras each node of the entrance runs, as the entrance's FLEET_MAP says: none where it has
 * no map (deploy/'s Compose and Kubernetes entrances, an older one, a single node's page), and the
 * page does as without it. Asked when a node turns unreachable (again at each turn: a re-split may
 * have moved cameras meanwhile), one question at a time, never while every node answers: where there
 * is no map its 404 would be a console error on a healthy page.
 */
class FleetMap {
  // `url`: null where the page lists no nodes (its own alone); `changed`: called with each new map.
  constructor(url, changed) {
    this.url = url;
    this.changed = changed;
    this.nodes = null;
    this.asking = false;
  }

  async ask() {
    if (this.url === null || this.asking) return;
    this.asking = true;
    try {
      // The entrance gives its map to whoever a node would give its streams: the page's token goes with it.
      const url = new URL(this.url);
      if (pageToken) url.searchParams.set("token", pageToken);
      const headers = authHeaders();
      const response = await fetch(url, { cache: "no-store", headers, signal: timeoutSignal(REQUEST_TIMEOUT_MS) });
      this.nodes = response.ok ? placement(await answerOf(response)) : null;
    } catch {
      return; // no answer: the map known stays
    } finally {
      this.asking = false;
    }
    this.changed();
  }

  // Node `name`'s camera ids: undefined without a map, null where the map does not list the node.
  streamsOf(name) {
    return this.nodes === null ? undefined : (this.nodes.get(name) ?? null);
  }
}

/** One node: its connection, its tiles in the shared grid, and its badge in the top bar. */
class FleetNode {
  constructor(name, root, grid, nav, thumbnails, map) {
    this.name = name;
    this.root = root;
    this.map = map;
    this.shown = null; // what its badge and placeholder say (show)
    this.live = false;
    this.polling = false; // its stream list asked for and not answered yet: one at a time, however slow
    // How many messages about which streams exist (hello, added, removed) its socket has brought: a list
    // its API gave before the latest of them may be out of date, and would bring back a removed stream.
    this.listChanges = 0;
    // Why its socket closed, as its API tells; a refusal asks the person for a token (api.js: once for
    // every node), which the socket uses at its next attempt.
    this.refusals = new LiveRefusals(
      () => listStreams({ base: root }),
      (error) => {
        if (!this.live) this.down(this.refusals.blamed ? LIVE_REFUSED : diagnosis(error)); // unless back meanwhile
      },
    );
    // Its tiles stay together in the grid (display: contents), in the order the nodes were listed.
    const group = document.createElement("div");
    group.className = "fleet-node";
    group.dataset.node = name;
    this.placeholder = document.createElement("div");
    this.placeholder.className = "fleet-placeholder";
    this.placeholder.dataset.node = name;
    this.placeholder.setAttribute("role", "status");
    group.append(this.placeholder);
    grid.append(group);
    this.view = new GridView(group, this.placeholder, { node: name, viewerRoot: root });

    this.link = document.createElement("a");
    this.link.href = root.href;
    this.link.dataset.node = name;
    this.link.append(name, " ");
    this.badge = document.createElement("span");
    this.link.append(this.badge);
    nav.append(this.link);
    carryToken(this.link);
    this.show({ state: "starting", text: "connecting…" });

    this.connection = new Connection(
      {
        hello: (message) => this.hello(message),
        frame: (meta, jpeg) => this.view.frame(meta, jpeg),
        event: (message) => this.event(message),
        state: (state, why) => this.setState(state, why),
      },
      { base: root, answering: () => answering(root) },
    );
    this.subscribe(thumbnails.px());
  }

  // Pictures `maxWidthPx` wide at most: as wide as a tile of the shared grid is on the screen.
  subscribe(maxWidthPx) {
    this.connection.subscribe(gridSubscription(maxWidthPx));
  }

  // What the node's badge and its placeholder tile (shown while it has no tiles) say.
  show(found) {
    const { state, text } = found;
    this.shown = found;
    const placed = this.map.streamsOf(this.name);
    this.badge.textContent = placed === null && !this.live ? "not in this entrance" : text;
    this.badge.className = `badge state-${state}`;
    this.placeholder.dataset.state = state;
    this.placeholder.textContent = this.live ? `${this.name}: no streams` : this.downText(found, placed);
  }

  // Why the node is down, and where the entrance's map says, what that leaves out: its cameras, or
  // the node itself where the entrance no longer has it (`placed` null).
  downText({ state, text, fix = null }, placed) {
    if (placed === null) {
      return `${this.name} is not part of this entrance (removed by a re-split?): drop it from the address`;
    }
    if (state === "unreachable" && placed?.length) {
      const verb = placed.length === 1 ? "is" : "are";
      return `${this.name} does not answer: ${placed.join(", ")} ${verb} not shown. ${fix}`;
    }
    return fix ? `${this.name}: ${text}. ${fix}` : `${this.name}: ${text}`;
  }

  hello(message) {
    this.refusals.hello();
    this.listChanges += 1;
    this.view.setInference(message.inference ?? null);
    this.view.setStreams(message.streams);
  }

  event(message) {
    if (message.type === "added" || message.type === "removed") this.listChanges += 1;
    if (message.type === "status") this.view.setState(message.stream, message.state, message.error);
    else if (message.type === "added") this.view.upsert({ id: message.stream, state: "starting" });
    else if (message.type === "removed") this.view.remove(message.stream);
    else if (message.type === "inference") this.view.setInference(message);
    else if (ANALYTICS_EVENTS.includes(message.type)) this.view.eventHeard(message); // marks its tile, as the grid's
    else if (message.type === "error") console.warn(`segcast ${this.name}:`, message.message);
  }

  // `why`: as Connection's state handler has it. A node that did not answer over HTTP got no socket.
  setState(state, { error = null, unanswered = false } = {}) {
    const wasLive = this.live;
    this.live = state === "live";
    if (this.live) {
      this.view.setOnline(true);
      this.show({ state: "live", text: "connected" });
      return;
    }
    if (error !== null) {
      this.refusals.outage(); // a refusal before it and one after are not two in a row
      this.down(diagnosis(error));
      return;
    }
    if (wasLive) this.down(RECONNECTING); // until its API says more; later attempts keep what it said
    this.refusals.lost({ unanswered });
  }

  down(found) {
    if (found.state === "unreachable" && this.shown?.state !== "unreachable") this.map.ask();
    const title = `${this.name}: ${found.text}`;
    const offline = notice(found.state, title, found.reason);
    if (found.reasonBeforePicture) offline.beforePicture = notice(found.state, title, found.reasonBeforePicture);
    this.view.setOnline(false, offline);
    this.show(found);
  }

  // The node's streams as its API lists them now, while its socket is live (once down, probe() asks).
  async refresh() {
    if (this.polling || !this.live) return;
    this.polling = true;
    const asked = this.listChanges;
    let streams;
    try {
      ({ streams } = await listStreams({ base: this.root }));
    } catch {
      return; // Gone meanwhile: its socket's loss says so, and the poll after it is back asks again.
    } finally {
      this.polling = false;
    }
    // Outside the try: a failure here is a bug of the page's own, for the console, not a node away.
    if (asked === this.listChanges && this.live) this.view.setStreams(streams);
  }
}

function showError(text) {
  $("fleet-error").textContent = text;
  $("fleet-error").hidden = false;
}

// The nodes the address lists, each with its root: a folder beside this page's node. Without a
// list, its own node; but the entrance's All cameras folder is no node, and cannot tell the nodes.
function listedNodes() {
  const listed = new URLSearchParams(location.search).get("nodes");
  if (listed === null) {
    const own = APP_ROOT.pathname.split("/").filter(Boolean).pop() ?? location.host;
    if (own === ALL_NODES) {
      showError(
        "Which nodes? Open this page with ?nodes=node-1,node-2 at the end of its address, " +
          "as the entrance's All cameras link does.",
      );
      return [];
    }
    return [{ name: own, root: APP_ROOT }];
  }
  const names = [...new Set(listed.split(",").map((name) => name.trim()))].filter(Boolean);
  const wrong = names.filter((name) => !NODE_NAME.test(name));
  if (wrong.length) showError(`Not a node's name (one folder of the entrance, like node-1): ${wrong.join(", ")}`);
  return names.filter((name) => NODE_NAME.test(name)).map((name) => ({ name, root: new URL(`${name}/`, ENTRANCE) }));
}

// Many tiles on one screen: each node's pictures as wide as the tiles they fill, all nodes' tiles alike.
const fleet = [];
const thumbnails = new ThumbnailWidth($("grid"), (px) => fleet.forEach((node) => node.subscribe(px)));
new WallView($("grid"), $("wall-controls"), { laidOut: () => thumbnails.settle() });
const listed = new URLSearchParams(location.search).has("nodes");
const map = new FleetMap(listed ? new URL(FLEET_MAP, ENTRANCE) : null, () =>
  fleet.forEach((node) => node.show(node.shown)),
);
for (const { name, root } of listedNodes()) {
  fleet.push(new FleetNode(name, root, $("grid"), $("fleet-nodes"), thumbnails, map));
}

// Whether a node besides `asking` took the page's token: then `asking` refuses what the rest take.
function tokenTakenBesides(asking) {
  return Boolean(pageToken || storedToken()) && fleet.some((node) => node !== asking && node.live);
}

// The token dialog names the node that asked: the person cannot tell it from the others otherwise, and
// one whose tokens were rotated without theirs refuses the token they take.
for (const node of fleet) {
  nameTokenAsker(node.root, () => ({ name: node.name, othersTook: tokenTakenBesides(node) }));
}

// One node's streams asked for every STATS_INTERVAL_MS / (number of nodes), in turn: each node once per
// STATS_INTERVAL_MS. Shown again after being hidden, the page asks every node at once.
function pollNodesWhileShown() {
  if (fleet.length === 0) return;
  let next = 0;
  setInterval(() => {
    if (document.hidden) return;
    fleet[next].refresh();
    next = (next + 1) % fleet.length;
  }, STATS_INTERVAL_MS / fleet.length);
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) fleet.forEach((node) => node.refresh());
  });
}

pollNodesWhileShown();
