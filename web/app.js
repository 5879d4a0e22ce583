// The live viewer: one WebSocket, one subscribed stream, frames drawn on a canvas as they arrive.
// Protocol (docs/protocol.md): a JSON "frame" message is followed by the JPEG of exactly that frame.

const picker = document.getElementById("stream-picker");
const canvas = document.getElementById("video");
const context = canvas.getContext("2d");
const trackBody = document.querySelector("#tracks tbody");
const connection = document.getElementById("connection");
const streamStatus = document.getElementById("stream-status");

const RECONNECT_DELAY_MS = 1000;
let socket = null;
let pendingMeta = null;
let decoding = false;

function wsUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/ws`;
}

function setStreams(streams) {
  const current = picker.value || new URLSearchParams(location.search).get("stream");
  picker.replaceChildren(
    ...streams.map((s) => new Option(`${s.id} (${s.state})`, s.id)),
  );
  if (streams.some((s) => s.id === current)) picker.value = current;
  subscribe();
}

function subscribe() {
  if (socket?.readyState === WebSocket.OPEN && picker.value) {
    socket.send(JSON.stringify({ type: "subscribe", streams: [picker.value] }));
  }
}

function showTracks(meta) {
  trackBody.replaceChildren(
    ...meta.tracks.map((t) => {
      const row = document.createElement("tr");
      for (const value of [t.id, t.class, t.conf.toFixed(2)]) {
        const cell = document.createElement("td");
        cell.textContent = value;
        row.append(cell);
      }
      return row;
    }),
  );
}

async function drawFrame(meta, jpeg) {
  // A frame that arrives while the previous one is still decoding is skipped: stay live, not complete.
  if (decoding) return;
  decoding = true;
  try {
    const bitmap = await createImageBitmap(new Blob([jpeg], { type: "image/jpeg" }));
    if (canvas.width !== bitmap.width || canvas.height !== bitmap.height) {
      canvas.width = bitmap.width;
      canvas.height = bitmap.height;
    }
    context.drawImage(bitmap, 0, 0);
    bitmap.close();
    showTracks(meta);
    canvas.dataset.seq = meta.seq;
  } finally {
    decoding = false;
  }
}

function onMessage(event) {
  if (typeof event.data !== "string") {
    if (pendingMeta?.stream === picker.value) drawFrame(pendingMeta, event.data);
    pendingMeta = null;
    return;
  }
  const message = JSON.parse(event.data);
  if (message.type === "hello") setStreams(message.streams);
  else if (message.type === "frame") pendingMeta = message;
  else if (message.type === "status" && message.stream === picker.value) {
    streamStatus.textContent = message.error ? `${message.state}: ${message.error}` : message.state;
  } else if (message.type === "error") console.warn("segcast:", message.message);
}

function connect() {
  socket = new WebSocket(wsUrl());
  socket.binaryType = "arraybuffer";
  socket.addEventListener("open", () => {
    connection.textContent = "live";
    connection.className = "badge live";
  });
  socket.addEventListener("message", onMessage);
  socket.addEventListener("close", () => {
    connection.textContent = "reconnecting…";
    connection.className = "badge down";
    setTimeout(connect, RECONNECT_DELAY_MS);
  });
}

picker.addEventListener("change", () => {
  const url = new URL(location.href);
  url.searchParams.set("stream", picker.value);
  history.replaceState(null, "", url);
  subscribe();
});

connect();
