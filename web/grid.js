// The grid: every stream as a small live picture with its state badge; a click opens the stream view.
// A stream that is not live says why over its picture; so does every tile while the page has lost
// its connection to segcast, since their pictures and badges are then only the last ones received.
// The fleet page (fleet.js) has one GridView per node in one grid: its tiles name their node and open
// that node's own viewer.

import { carryToken } from "./connection.js";
import { OFFLINE_NOTICE, StatusPanel, streamNotice } from "./status.js";

const THUMB_WIDTH_PX = 480;
const THUMB_FPS = 4;

export const gridSubscription = { streams: ["*"], image: "annotated", max_width: THUMB_WIDTH_PX, max_fps: THUMB_FPS };

export class GridView {
  // node: the name each tile shows beside its stream id (null: none). viewerRoot: the root of the node
  // whose viewer a tile opens, with the page's token (null: this page's own stream view, #/stream/<id>).
  constructor(root, empty, { node = null, viewerRoot = null } = {}) {
    this.root = root;
    this.empty = empty;
    this.node = node;
    this.viewerRoot = viewerRoot;
    this.offline = OFFLINE_NOTICE; // what every tile says while the connection is down
    this.cards = new Map();
    this.online = true;
    this.inference = null; // {state, error, next_attempt_at}: the server's, shared by every stream
  }

  setInference(inference) {
    this.inference = inference;
    for (const card of this.cards.values()) this.render(card);
  }

  setStreams(streams) {
    const ids = new Set(streams.map((s) => s.id));
    for (const id of this.cards.keys()) {
      if (!ids.has(id)) this.remove(id);
    }
    for (const stream of streams) this.upsert(stream);
    this.empty.hidden = this.cards.size > 0;
  }

  upsert(stream) {
    let card = this.cards.get(stream.id);
    if (!card) {
      card = this.createCard(stream.id);
      this.cards.set(stream.id, card);
      this.root.append(card.element);
    }
    if (stream.state) {
      card.status = { state: stream.state, error: stream.error, next_attempt_at: stream.next_attempt_at };
      this.render(card);
    }
    if (stream.processed_fps !== undefined) {
      const fps = stream.processed_fps ? `${stream.processed_fps.toFixed(1)} fps` : "";
      card.info.textContent = [fps, stream.viewers ? `${stream.viewers} watching` : ""].filter(Boolean).join(" · ");
    }
    this.empty.hidden = true;
  }

  createCard(id) {
    const element = document.createElement("a");
    element.className = "card";
    const view = `#/stream/${encodeURIComponent(id)}`;
    element.href = this.viewerRoot ? new URL(view, this.viewerRoot).href : view;
    if (this.viewerRoot) carryToken(element);
    element.dataset.stream = id;
    if (this.node !== null) element.dataset.node = this.node;
    const frame = document.createElement("div");
    frame.className = "card-picture";
    const picture = document.createElement("canvas");
    picture.width = 320;
    picture.height = 180;
    frame.append(picture);
    const caption = document.createElement("div");
    caption.className = "card-caption";
    const name = document.createElement("strong");
    name.className = "stream-id";
    name.textContent = id;
    name.title = id;
    if (this.node !== null) {
      const node = document.createElement("span");
      node.className = "card-node muted";
      node.textContent = this.node;
      caption.append(node);
    }
    const badge = document.createElement("span");
    badge.className = "badge";
    const info = document.createElement("small");
    info.className = "muted";
    caption.append(name, badge, info);
    element.append(frame, caption);
    return { element, picture, badge, info, panel: new StatusPanel(frame), status: null, drawing: false };
  }

  // A status message: its state and error, not when the next attempt is (the next poll brings that).
  setState(id, state, error) {
    const card = this.cards.get(id);
    if (!card) return;
    const same = card.status?.state === state && card.status?.error === error;
    card.status = { state, error, next_attempt_at: same ? card.status.next_attempt_at : null };
    this.render(card);
  }

  // `offline`: the notice over every tile while the connection is down (a page of several nodes names the node).
  setOnline(online, offline = OFFLINE_NOTICE) {
    this.online = online;
    this.offline = offline;
    for (const card of this.cards.values()) this.render(card);
  }

  render(card) {
    const state = this.online ? (card.status?.state ?? "starting") : this.offline.state;
    card.badge.textContent = state;
    card.badge.className = `badge state-${state}`;
    card.panel.show(this.online ? streamNotice(card.status, this.inference) : this.offline);
  }

  remove(id) {
    const card = this.cards.get(id);
    if (!card) return;
    card.panel.show(null);
    card.element.remove();
    this.cards.delete(id);
    this.empty.hidden = this.cards.size > 0;
  }

  async frame(meta, jpeg) {
    const card = this.cards.get(meta.stream);
    if (!card || card.drawing || !jpeg) return;
    card.drawing = true;
    try {
      const bitmap = await createImageBitmap(new Blob([jpeg], { type: "image/jpeg" }));
      if (card.picture.width !== bitmap.width || card.picture.height !== bitmap.height) {
        card.picture.width = bitmap.width;
        card.picture.height = bitmap.height;
      }
      card.picture.getContext("2d").drawImage(bitmap, 0, 0);
      bitmap.close();
      card.picture.dataset.seq = meta.seq;
    } finally {
      card.drawing = false;
    }
  }
}
