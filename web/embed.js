// /embed/<stream>: one stream, no chrome, scaled to fill its frame. The server draws the overlay
// (annotated variant), so the page is a canvas and nothing else. ?image=clean shows the bare video.

import { Connection } from "./connection.js";

const canvas = document.getElementById("video");
const context = canvas.getContext("2d");
const stateLine = document.getElementById("embed-state");
const streamId = decodeURIComponent(location.pathname.split("/").pop());
const params = new URLSearchParams(location.search);
let drawing = false;

const connection = new Connection({
  hello() {},
  async frame(meta, jpeg) {
    if (meta.stream !== streamId || !jpeg || drawing) return;
    drawing = true;
    try {
      const bitmap = await createImageBitmap(new Blob([jpeg], { type: "image/jpeg" }));
      if (canvas.width !== bitmap.width || canvas.height !== bitmap.height) {
        canvas.width = bitmap.width;
        canvas.height = bitmap.height;
      }
      context.drawImage(bitmap, 0, 0);
      bitmap.close();
      canvas.dataset.seq = meta.seq;
      stateLine.hidden = true;
    } finally {
      drawing = false;
    }
  },
  event(message) {
    if (message.type === "status" && message.stream === streamId && message.state !== "live") {
      stateLine.textContent = message.error ? `${message.state}: ${message.error}` : message.state;
      stateLine.hidden = false;
    }
  },
  state(state) {
    if (state !== "live") {
      stateLine.textContent = "reconnecting…";
      stateLine.hidden = false;
    }
  },
});

const subscription = { streams: [streamId], image: params.get("image") === "clean" ? "clean" : "annotated" };
const maxWidth = Number(params.get("max_width"));
if (maxWidth) subscription.max_width = maxWidth;
connection.subscribe(subscription);
