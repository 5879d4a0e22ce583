// One WebSocket to segcast (docs/protocol.md), reconnecting by itself when the server goes away.
// A "frame" text message carries "image" when a JPEG follows; the next binary message is that JPEG.

const RECONNECT_MIN_MS = 500;
const RECONNECT_MAX_MS = 5000;
export const PROTOCOL_VERSION = 1;

// Where a `token` given to the page (?token=...) goes: onto every URL the page loads from segcast.
export function withToken(path) {
  const token = new URLSearchParams(location.search).get("token");
  if (!token) return path;
  const url = new URL(path, location.href);
  url.searchParams.set("token", token);
  return url.pathname + url.search;
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

  open() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const socket = new WebSocket(`${scheme}//${location.host}${withToken("/ws")}`);
    socket.binaryType = "arraybuffer";
    this.socket = socket;
    socket.addEventListener("open", () => {
      this.delay = RECONNECT_MIN_MS;
      this.handlers.state?.("live");
      this.sendSubscription();
    });
    socket.addEventListener("message", (event) => this.receive(event.data));
    socket.addEventListener("close", () => {
      this.pending = null;
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
