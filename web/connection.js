// One WebSocket to segcast (docs/protocol.md), reconnecting by itself when the server goes away.
// A "frame" text message carries "image" when a JPEG follows; the next binary message is that JPEG.

const RECONNECT_MIN_MS = 500;
const RECONNECT_MAX_MS = 5000;
export const PROTOCOL_VERSION = 1;

// Where segcast's routes start: the folder above this module's own /static/. Behind a reverse proxy
// that serves segcast under a path (https://entrance/node-1/ -> a node's /), that path is part of it,
// so every URL the viewer builds with appUrl() stays under the prefix. Never write "/api/..." instead.
const APP_ROOT = new URL("../", import.meta.url);

const TOKEN_KEY = "segcast.token";
const SIGNED_TTL_S = 3600;
const SIGNED_RENEW_MS = 5 * 60 * 1000; // mint a new URL token this long before the old one expires
// The server closes a WebSocket with this when the signed token it was opened with expires.
const TOKEN_EXPIRED = 4401;

// Access tokens (see README, Security). A page may be given a signed token in its URL (?token=...),
// which then goes onto every URL it loads. Otherwise the person is asked once for an access token,
// kept in localStorage: fetch() sends it as a bearer header, and the URLs a header cannot reach
// (the WebSocket, <img>) get a short-lived signed token minted with it. A minted token is kept until
// shortly before it expires, unless the server refuses it first: after a restart of a server whose
// signing key is random (viewer tokens only) or once the tokens are rotated, it is minted again.
// A token the person gives replaces the page's own, which was refused or is too weak (dropPageToken).
export let pageToken = new URLSearchParams(location.search).get("token"); // importers see it dropped
let signed = null; // {token, renewAt}

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
  signed = null;
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

// The absolute URL of one of segcast's routes, given relative to segcast's root ("api/streams").
export function appUrl(path) {
  return new URL(path, APP_ROOT);
}

// A signed token for URLs: the page's own, or one minted with the stored token (null if neither).
export async function urlToken() {
  if (pageToken) return pageToken;
  if (!storedToken()) return null;
  if (signed && Date.now() < signed.renewAt) return signed.token;
  const response = await fetch(appUrl("api/tokens"), {
    method: "POST",
    headers: { ...authHeaders(), "Content-Type": "application/json" },
    body: JSON.stringify({ role: "viewer", ttl_s: SIGNED_TTL_S }),
  }).catch(() => null);
  if (!response?.ok) return null;
  const { token, ttl_s: ttl } = await response.json();
  signed = { token, renewAt: Date.now() + ttl * 1000 - SIGNED_RENEW_MS };
  return token;
}

// appUrl(path) with the newest URL token on it (the page's, or the last one minted by urlToken()).
export function withToken(path) {
  const url = appUrl(path);
  const token = pageToken || signed?.token;
  if (token) url.searchParams.set("token", token);
  return url.href;
}

export class Connection {
  // handlers: {hello(msg), frame(meta, jpegOrNull), event(msg), state("live"|"down")}
  constructor(handlers) {
    this.handlers = handlers;
    this.subscription = null;
    this.socket = null;
    this.pending = null;
    this.delay = RECONNECT_MIN_MS;
    this.open();
  }

  async open() {
    await urlToken();
    const url = new URL(withToken("ws"));
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    const socket = new WebSocket(url);
    socket.binaryType = "arraybuffer";
    this.socket = socket;
    let opened = false;
    socket.addEventListener("open", () => {
      opened = true;
      this.delay = RECONNECT_MIN_MS;
      this.handlers.state?.("live");
      this.sendSubscription();
    });
    socket.addEventListener("message", (event) => this.receive(event.data));
    socket.addEventListener("close", (event) => {
      this.pending = null;
      const expired = event.code === TOKEN_EXPIRED;
      // A browser does not say why a socket was refused; a minted token may be why (see urlToken).
      if (!opened || expired) signed = null;
      if (expired && !pageToken && storedToken()) {
        this.open(); // a fresh token is a request away: nothing to show the person
        return;
      }
      this.handlers.state?.("down");
      setTimeout(() => this.open(), this.delay);
      this.delay = Math.min(this.delay * 2, RECONNECT_MAX_MS);
    });
  }

  receive(data) {
    if (typeof data !== "string") {
      const meta = this.pending;
      this.pending = null;
      if (meta) this.handlers.frame?.(meta, data);
      return;
    }
    const message = JSON.parse(data);
    if (message.v > PROTOCOL_VERSION) console.warn(`segcast: server speaks protocol v${message.v}`);
    if (message.type === "frame") {
      if (message.image) this.pending = message;
      else this.handlers.frame?.(message, null);
    } else if (message.type === "hello") {
      this.handlers.hello?.(message);
    } else {
      this.handlers.event?.(message);
    }
  }

  // Replace what this socket receives: {streams: [...], image, max_width, max_fps} (see the protocol).
  subscribe(subscription) {
    this.subscription = subscription;
    this.sendSubscription();
  }

  sendSubscription() {
    if (this.subscription && this.socket?.readyState === WebSocket.OPEN) {
      this.socket.send(JSON.stringify({ type: "subscribe", ...this.subscription }));
    }
  }
}
