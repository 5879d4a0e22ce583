// One WebSocket to segcast (docs/protocol.md), reconnecting by itself when the server goes away.
// A "frame" text message carries "image" when a JPEG follows; the next binary message is that JPEG.

// Each wait before another attempt is drawn at random from RECONNECT_MIN_MS to a longest that starts at
// RECONNECT_FIRST_MAX_MS and doubles with each socket lost, up to RECONNECT_MAX_MS ("full jitter"): the
// pages of a dashboard that lost the server together call back spread over the whole of that time, not
// all at once (a wait shortened by a fifth at most kept them within ~100 ms of each other).
const RECONNECT_MIN_MS = 500;
const RECONNECT_FIRST_MAX_MS = 1000;
const RECONNECT_MAX_MS = 5000;
// The waits start again from the first ones only once a socket has stayed up this long after its hello:
// a server or a proxy that takes each socket and closes it at once (over a limit, too slow, failing to
// send) would otherwise be called back every half second for ever, and asked over HTTP why each time.
const HEALTHY_AFTER_HELLO_MS = 5000;
// Closes that say trying again soon will not help: 1008, a client over one of the server's limits, and
// 1013, "try again later" (docs/protocol.md). The next attempt waits at least TRY_LATER_MS.
const TRY_LATER_CODES = [1008, 1013];
const TRY_LATER_MS = 5000;
export const PROTOCOL_VERSION = 1;
// A network that drops without a word (Wi-Fi gone, a NAT that forgot the connection) closes nothing:
// the socket stays open over a frozen picture, and even close() on it is not heard of for ~40 s. The
// server sends a keepalive when it has sent nothing else for `keepalive_s` (its hello says how long),
// so a socket silent for this many of them is given up on and a new one opened.
const SILENT_KEEPALIVES = 2.5;
const KEEPALIVE_DEFAULT_S = 5; // until a hello says otherwise (docs/protocol.md)
// A request the network swallowed is given up on after this, so that the next one can be made.
export const REQUEST_TIMEOUT_MS = 10000;
// A JPEG's message arrives whole or not at all, and a big one over a slow link takes long: while one
// is on its way, the silence allowed grows by its size at this rate (4 kB/s), up to the most.
const SLOWEST_BYTES_PER_MS = 4;
const MAX_PICTURE_WAIT_MS = 60000;
// A frame's metadata at most this often (the protocol's least max_fps) while the page is hidden.
const HIDDEN_MAX_FPS = 0.01;

/** An AbortSignal that aborts after `ms` (AbortSignal.timeout where the browser has it: Safari 16+). */
export function timeoutSignal(ms) {
  if (AbortSignal.timeout) return AbortSignal.timeout(ms);
  const controller = new AbortController();
  setTimeout(() => controller.abort(new DOMException("timed out", "TimeoutError")), ms);
  return controller.signal;
}

// The answer's JSON object, or null where the body is none (another site's page, or cut off).
export async function answerOf(response) {
  const data = await response.json().catch(() => null);
  return typeof data === "object" && !Array.isArray(data) ? data : null;
}

// What a page says of an answer that is not segcast's, though it says OK.
export function notSegcast(response) {
  const type = response.headers.get("Content-Type") || "no type";
  return (
    `${response.status} ${response.statusText}, but not segcast's answer (${type}): a Wi-Fi sign-in page ` +
    "or a proxy in between may have answered instead"
  );
}

// Where segcast's routes start: the folder above the static/ this module is served from. A page of
// this version loads it from static/<tag>/ (server/http/pages.py), a page of another segcast (a node
// of another version behind the entrance's all/static/) from static/ itself. Behind a reverse proxy
// that serves segcast under a path (https://entrance/node-1/ -> a node's /), that path is part of it,
// so every URL the viewer builds with appUrl() stays under the prefix. Never write "/api/..." instead.
// A page that talks to several nodes (fleet.js) passes each node's own root as `base` instead.
const MODULE_FOLDER = new URL("./", import.meta.url);
export const APP_ROOT = new URL(MODULE_FOLDER.pathname.endsWith("/static/") ? "../" : "../../", MODULE_FOLDER);

const TOKEN_KEY = "segcast.token";
const SIGNED_TTL_S = 3600;
const SIGNED_RENEW_MS = 5 * 60 * 1000; // mint a new URL token this long before the old one expires
// The server closes a WebSocket with this when the signed token it was opened with expires.
export const TOKEN_EXPIRED = 4401;

// Access tokens (see README, Security). A page may be given a signed token in its URL (?token=...),
// which then goes onto every URL it loads. Otherwise the person is asked once for an access token,
// kept in localStorage: fetch() sends it as a bearer header, and the URLs a header cannot reach
// (the WebSocket, <img>) get a short-lived signed token minted with it. A minted token is kept until
// shortly before it expires, unless the server refuses it first: after a restart of a server whose
// signing key is random (viewer tokens only) or once the tokens are rotated, it is minted again.
// A token the person gives replaces the page's own, which was refused or is too weak (dropPageToken).
// Minted tokens are kept per node (by its root): a node with viewer tokens only signs with a random
// key of its own, so what one node minted another may refuse.
export let pageToken = new URLSearchParams(location.search).get("token"); // importers see it dropped
const signed = new Map(); // root href -> {token, renewAt}
// The Connection opening or holding a socket to each node, by the node's root href (socketFor).
const connections = new Map();
// What the token dialog calls each node that asks, by its root href (nameTokenAsker): a page of several
// nodes names each, as one may refuse the token the others take; a page of one server names none.
const tokenAskers = new Map();
// How long a play offer waits for the hello of a socket still opening (the page's first offer
// usually goes out before it), to name that socket rather than none.
const HELLO_WAIT_MS = 3000;

/**
 * The id the page's WebSocket to the node at `base` was told in its hello, for a WebRTC play offer to
 * name: the server closes that player as soon as this socket closes (the page went away), rather than
 * ~30 s later. Waits for the hello of a socket still opening; undefined if none comes, or none is
 * open (a server that is down): an offer then names none, and its player is not bound. A socket whose
 * id was handed out says "down" whenever it closes, as its players closed with it, so that the page
 * offers again, bound to the next socket, once that one says hello.
 */
export async function socketFor(base = APP_ROOT) {
  const connection = connections.get(base.href);
  if (!connection) return undefined;
  if (!connection.socketId) await connection.greeting(HELLO_WAIT_MS);
  if (!connection.socketId) return undefined;
  connection.socketBound = true;
  return connection.socketId;
}

/**
 * Have the token dialog name the node at `base` when that node asks (All cameras: which of its nodes
 * refused). `asker()` is called as the dialog opens, and says {name, othersTook}: the node's name, and
 * whether the page's other nodes took the token it has, which tells a node whose tokens were changed
 * without the others' (a rotation half done) from a token mistyped.
 */
export function nameTokenAsker(base, asker) {
  tokenAskers.set(base.href, asker);
}

/** The node at `base` as the token dialog names it ({name, othersTook}); null for a page of one server. */
export function tokenAsker(base = APP_ROOT) {
  return tokenAskers.get(base.href)?.() ?? null;
}

/** Stop using the page's own token, and take it out of the address so that a reload does not bring it back. */
export function dropPageToken() {
  if (!pageToken) return;
  pageToken = null;
  const url = new URL(location.href);
  url.searchParams.delete("token");
  history.replaceState(history.state, "", url);
}

export function storedToken() {
  try {
    return localStorage.getItem(TOKEN_KEY);
  } catch {
    return null; // storage disabled: the person is asked again after a reload
  }
}

export function storeToken(token) {
  signed.clear();
  try {
    if (token) localStorage.setItem(TOKEN_KEY, token);
    else localStorage.removeItem(TOKEN_KEY);
  } catch {
    // nothing to do: the token lives as long as the page
  }
}

// Headers for fetch(): the stored token as a bearer, unless the page came with a signed token.
export function authHeaders() {
  const token = storedToken();
  return token && !pageToken ? { Authorization: `Bearer ${token}` } : {};
}

// The absolute URL of one of segcast's routes, given relative to segcast's root ("api/streams"), of
// this page's node or of the node whose root is `base`.
export function appUrl(path, base = APP_ROOT) {
  return new URL(path, base);
}

// A signed token for URLs to the node at `base`: the page's own, or one minted there with the stored
// token (null if neither).
export async function urlToken(base = APP_ROOT) {
  if (pageToken) return pageToken;
  if (!storedToken()) return null;
  const kept = signed.get(base.href);
  if (kept && Date.now() < kept.renewAt) return kept.token;
  const response = await fetch(appUrl("api/tokens", base), {
    method: "POST",
    headers: { ...authHeaders(), "Content-Type": "application/json" },
    body: JSON.stringify({ role: "viewer", ttl_s: SIGNED_TTL_S }),
    signal: timeoutSignal(REQUEST_TIMEOUT_MS),
  }).catch(() => null);
  if (!response?.ok) return null;
  const answer = await response.json().catch(() => null); // the body too may be cut off
  if (!answer) return null;
  const { token, ttl_s: ttl } = answer;
  signed.set(base.href, { token, renewAt: Date.now() + ttl * 1000 - SIGNED_RENEW_MS });
  return token;
}

// appUrl(path, base) with the newest URL token on it (the page's, or the last urlToken(base) minted).
export function withToken(path, base = APP_ROOT) {
  const url = appUrl(path, base);
  const token = pageToken || signed.get(base.href)?.token;
  if (token) url.searchParams.set("token", token);
  return url.href;
}

/**
 * Keep the page's own token on `link`, a link to another of segcast's pages: that page has no other
 * way to get it. Set now and again as the link is followed, so a token dropped meanwhile is not taken.
 */
export function carryToken(link) {
  const target = new URL(link.getAttribute("href"), location.href);
  const update = () => {
    if (pageToken) target.searchParams.set("token", pageToken);
    else target.searchParams.delete("token");
    link.href = target.href;
  };
  update();
  link.addEventListener("click", update);
}

export class Connection {
  // handlers: {hello(msg), frame(meta, jpegOrNull), event(msg), state("live"|"down", why)}; `why`, with
  // "down": {unanswered: true} where a socket's handshake got no answer at all (given up on, not
  // refused), {error} where `answering` failed and no socket was opened, {code} where the socket
  // closed with that code (TOKEN_EXPIRED: the signed token it was opened with expired). A handler
  // may close() the connection as it hears "down": nothing is tried again then.
  // base: the root of the node to connect to (another node behind the same entrance); this page's own by default.
  // answering: for a page of several nodes behind one host (fleet.js), resolves once the node answers over
  // HTTP, rejects with why it does not; each socket waits for it. A browser opens one WebSocket at a time
  // per host (RFC 6455 4.1): a handshake to a node that accepts and never answers would hold every other
  // node's back until it is given up on.
  constructor(handlers, { base = APP_ROOT, answering = null } = {}) {
    this.handlers = handlers;
    this.base = base;
    this.answering = answering;
    this.subscription = null;
    this.socket = null; // the one socket listened to; one given up on is never heard from again
    this.pending = null;
    this.delay = RECONNECT_FIRST_MAX_MS; // the longest the next wait may be
    this.holdOffMs = 0; // the least wait before the next attempt (holdOff), until a socket opens
    this.retry = null; // the timer of the next attempt
    this.silenceMs = SILENT_KEEPALIVES * KEEPALIVE_DEFAULT_S * 1000;
    this.heardAt = 0; // performance.now() when the socket last brought anything (or was opened)
    this.watchdog = null;
    this.closed = false; // for good (close): nothing more is opened
    this.socketId = null; // the open socket's id, from its hello (socketFor)
    this.socketBound = false; // a WebRTC player was offered bound to that socket
    this.greeters = []; // what waits for the hello of the socket opening (greeting)
    this.trusted = null; // the timer that makes the open socket healthy (HEALTHY_AFTER_HELLO_MS)
    // Aborted by close(): a page makes a Connection per published camera, and each must leave nothing behind.
    this.listening = new AbortController();
    document.addEventListener("visibilitychange", () => this.sendSubscription(), { signal: this.listening.signal });
    this.open();
  }

  async open() {
    this.retry = null;
    connections.set(this.base.href, this);
    await urlToken(this.base).catch(() => null); // without one the socket is refused, and tried again
    if (this.closed) return; // closed while the token was on its way
    if (this.answering) {
      const error = await this.answering().then(
        () => null,
        (failure) => failure ?? new Error("no answer"),
      );
      if (this.closed) return;
      if (error !== null) {
        this.lost(undefined, { error });
        return;
      }
    }
    const url = new URL(withToken("ws", this.base));
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    const socket = new WebSocket(url);
    socket.binaryType = "arraybuffer";
    this.socket = socket;
    this.heard(); // an opening handshake that goes unanswered is given up on like a silent socket
    const listened = () => this.socket === socket;
    let opened = false;
    socket.addEventListener("open", () => {
      if (!listened()) return;
      opened = true;
      this.holdOffMs = 0;
      this.heard();
      this.handlers.state?.("live");
      this.sendSubscription();
    });
    socket.addEventListener("message", (event) => {
      if (!listened()) return;
      this.heard();
      this.receive(event.data);
    });
    socket.addEventListener("close", (event) => {
      if (!listened()) return;
      const expired = event.code === TOKEN_EXPIRED;
      // A browser does not say why a socket was refused; a minted token may be why (see urlToken).
      if (!opened || expired) signed.delete(this.base.href);
      if (expired && !pageToken && storedToken() && !this.socketBound) {
        this.forget();
        this.open(); // a fresh token is a request away: nothing to show the person
        return;
      }
      this.lost(event.code);
    });
  }

  // Close for good, for a page whose socket lives only as long as something on it (a published
  // camera): no more messages, no attempt again, and the server sees the socket closed.
  close() {
    this.closed = true;
    this.listening.abort();
    clearTimeout(this.retry);
    this.retry = null;
    const { socket } = this;
    this.forget();
    socket?.close();
  }

  // Stop listening to the socket: its messages, its close, its silence.
  forget() {
    this.socket = null;
    this.pending = null;
    if (connections.get(this.base.href) === this) connections.delete(this.base.href);
    this.socketId = null;
    this.socketBound = false;
    this.greeted();
    clearTimeout(this.watchdog);
    this.watchdog = null;
    clearTimeout(this.trusted);
    this.trusted = null;
  }

  // The socket closed (with `code`) or went silent, or none was opened (`why`, as the state handler
  // has it): say so, and try again after a while, which grows with each socket lost before it was healthy.
  lost(code, why = {}) {
    this.forget();
    this.handlers.state?.("down", code === undefined ? why : { ...why, code });
    if (this.closed) return;
    const least = TRY_LATER_CODES.includes(code) ? TRY_LATER_MS : 0;
    const jittered = RECONNECT_MIN_MS + Math.random() * (this.delay - RECONNECT_MIN_MS);
    const wait = Math.max(jittered, this.holdOffMs, least);
    this.retry = setTimeout(() => this.open(), wait);
    this.delay = Math.min(this.delay * 2, RECONNECT_MAX_MS);
  }

  /**
   * Wait at least `ms` before each further attempt until a socket opens: for a refusal that trying
   * again soon will not cure (a token the server turned down). An attempt already due waits too.
   */
  holdOff(ms) {
    this.holdOffMs = ms;
    if (this.retry === null) return;
    clearTimeout(this.retry);
    this.retry = setTimeout(() => this.open(), ms);
  }

  heard() {
    this.heardAt = performance.now();
    if (this.watchdog === null) this.watch();
  }

  // The silence allowed now: more while a JPEG announced by a frame message is on its way.
  allowedSilenceMs() {
    const bytes = this.pending?.image?.bytes ?? 0;
    return this.silenceMs + Math.min(bytes / SLOWEST_BYTES_PER_MS, MAX_PICTURE_WAIT_MS);
  }

  // Check for silence when the socket would have been silent for long enough, and again from then on.
  watch() {
    const left = this.heardAt + this.allowedSilenceMs() - performance.now();
    this.watchdog = setTimeout(() => {
      this.watchdog = null;
      const silentMs = performance.now() - this.heardAt;
      if (silentMs < this.allowedSilenceMs()) {
        this.watch();
        return;
      }
      console.info(`segcast: nothing from the server for ${Math.round(silentMs / 1000)} s; connecting again`);
      const silent = this.socket;
      this.lost(undefined, { unanswered: silent.readyState === WebSocket.CONNECTING });
      silent.close(); // nothing waits for its close: on a dead network that is not heard of for long
    }, Math.max(left, 0));
  }

  receive(data) {
    if (typeof data !== "string") {
      const meta = this.pending;
      this.pending = null;
      if (meta) this.handlers.frame?.(meta, data);
      return;
    }
    const message = parseMessage(data);
    if (message === null) {
      // Not the protocol's (something in between that rewrites messages): skipped, said, not thrown.
      console.warn("segcast: a message that is not the protocol's JSON was skipped:", data.slice(0, 80));
      return;
    }
    if (message.v > PROTOCOL_VERSION) console.warn(`segcast: server speaks protocol v${message.v}`);
    if (message.type === "frame") {
      if (message.image) this.pending = message;
      else this.handlers.frame?.(message, null);
    } else if (message.type === "hello") {
      if (message.keepalive_s > 0) this.expectKeepalives(message.keepalive_s);
      this.socketId = message.socket ?? null; // a server before it sends none
      this.trustLater();
      this.greeted();
      this.handlers.hello?.(message);
    } else if (message.type !== "keepalive") {
      this.handlers.event?.(message);
    }
  }

  // The socket that said hello is healthy once it has stayed up HEALTHY_AFTER_HELLO_MS (forget() stops
  // the timer): the next loss is tried again within RECONNECT_FIRST_MAX_MS.
  trustLater() {
    clearTimeout(this.trusted);
    this.trusted = setTimeout(() => {
      this.trusted = null;
      this.delay = RECONNECT_FIRST_MAX_MS;
    }, HEALTHY_AFTER_HELLO_MS);
  }

  // Resolves once the socket opening says hello, or is given up on, or after `ms`.
  greeting(ms) {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.greeters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  greeted() {
    const greeters = this.greeters;
    this.greeters = [];
    greeters.forEach((wake) => wake());
  }

  expectKeepalives(intervalS) {
    this.silenceMs = SILENT_KEEPALIVES * intervalS * 1000;
    clearTimeout(this.watchdog);
    this.watch();
  }

  // Replace what this socket receives: {streams: [...], image, max_width, max_fps} (see the protocol).
  // Sent as given while the page is shown; while it is hidden, without pictures (sendSubscription).
  subscribe(subscription) {
    this.subscription = subscription;
    this.sendSubscription();
  }

  /**
   * A page in the background (document.hidden: a dashboard left in another tab, an embed in it) shows
   * no picture, so its socket asks for none: JPEGs encoded and sent for it would be seen by no one.
   * It keeps the same streams with "image": "none", not an empty list: their track and analytics
   * events go only to a stream's subscribers, and the stream view's event list must stay complete;
   * status, added, removed and inference come whatever is subscribed. A frame's metadata alone draws
   * nothing on any page, so it comes at the protocol's slowest. Shown again, the page's own
   * subscription goes out at once, and the server answers it with each stream's newest frame.
   */
  sendSubscription() {
    if (!this.subscription || this.socket?.readyState !== WebSocket.OPEN) return;
    const wanted = document.hidden ? withoutPictures(this.subscription) : this.subscription;
    this.socket.send(JSON.stringify({ type: "subscribe", ...wanted }));
  }
}

// A text message as the protocol has it (a JSON object with a type), or null.
function parseMessage(data) {
  try {
    const message = JSON.parse(data);
    return typeof message?.type === "string" ? message : null;
  } catch {
    return null;
  }
}

// `subscription`'s streams with no pictures, and their metadata as seldom as the protocol allows.
function withoutPictures(subscription) {
  const streams = subscription.streams.map((entry) => (typeof entry === "string" ? entry : entry.id));
  return { streams, image: "none", max_fps: HIDDEN_MAX_FPS };
}
