// The grid: every stream as a small live picture with its state badge; a click opens the stream view.

const THUMB_WIDTH_PX = 480;
const THUMB_FPS = 4;

export const gridSubscription = { streams: ["*"], image: "annotated", max_width: THUMB_WIDTH_PX, max_fps: THUMB_FPS };

export class GridView {
  constructor(root, empty) {
    this.root = root;
    this.empty = empty;
    this.cards = new Map();
  }

  setStreams(streams) {
    const ids = new Set(streams.map((s) => s.id));
    for (const [id, card] of this.cards) {
      if (!ids.has(id)) {
        card.element.remove();
        this.cards.delete(id);
      }
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
    if (stream.state) this.setState(stream.id, stream.state, stream.error);
    if (stream.processed_fps !== undefined) {
      const fps = stream.processed_fps ? `${stream.processed_fps.toFixed(1)} fps` : "";
      card.info.textContent = [fps, stream.viewers ? `${stream.viewers} watching` : ""].filter(Boolean).join(" · ");
    }
    this.empty.hidden = true;
  }

  createCard(id) {
    const element = document.createElement("a");
    element.className = "card";
    element.href = `#/stream/${encodeURIComponent(id)}`;
    element.dataset.stream = id;
    const picture = document.createElement("canvas");
    picture.width = 320;
    picture.height = 180;
    const caption = document.createElement("div");
    caption.className = "card-caption";
    const name = document.createElement("strong");
    name.textContent = id;
    const badge = document.createElement("span");
    badge.className = "badge";
    const info = document.createElement("small");
    info.className = "muted";
    caption.append(name, badge, info);
    element.append(picture, caption);
    return { element, picture, badge, info, drawing: false };
  }

  setState(id, state, error) {
    const card = this.cards.get(id);
    if (!card) return;
    card.badge.textContent = state;
    card.badge.className = `badge state-${state}`;
    card.badge.title = error || "";
  }

  remove(id) {
    this.cards.get(id)?.element.remove();
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
