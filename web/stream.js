// The stream view: the clean frame with overlays drawn here from its metadata, the live track table,
// stats and the embed snippet. Hovering or clicking a track (in the table or on the video) highlights it.

import { drawOverlay, trackAt, trackColor } from "./overlay.js";

export class StreamView {
  constructor(elements) {
    this.el = elements;
    this.context = elements.canvas.getContext("2d");
    this.streamId = null;
    this.meta = null;
    this.bitmap = null;
    this.decoding = false;
    this.hoverId = null;
    this.pinnedId = null;
    this.show = {};
    this.paused = false;
    elements.pause.addEventListener("click", () => this.setPaused(!this.paused));
    for (const input of elements.toggles.querySelectorAll("input")) {
      this.show[input.name] = input.checked;
      input.addEventListener("change", () => {
        this.show[input.name] = input.checked;
        this.redraw();
      });
    }
    const rowTrack = (event) => event.target.closest("tr[data-track]")?.dataset.track;
    elements.trackBody.addEventListener("mouseover", (event) => this.hover(rowTrack(event)));
    elements.trackBody.addEventListener("mouseleave", () => this.hover(null));
    elements.trackBody.addEventListener("click", (event) => this.pin(rowTrack(event)));
    elements.canvas.addEventListener("mousemove", (event) => this.hover(this.trackUnder(event)?.id));
    elements.canvas.addEventListener("mouseleave", () => this.hover(null));
    elements.canvas.addEventListener("click", (event) => this.pin(this.trackUnder(event)?.id));
  }

  subscription() {
    return { streams: [{ id: this.streamId, image: "clean" }] };
  }

  // While paused the last frame stays, so its tracks can be inspected with any overlay.
  setPaused(paused) {
    this.paused = paused;
    this.el.pause.textContent = paused ? "Resume" : "Pause";
    this.el.pause.setAttribute("aria-pressed", String(paused));
  }

  open(streamId) {
    if (streamId !== this.streamId) {
      this.setPaused(false);
      this.streamId = streamId;
      this.meta = null;
      this.bitmap?.close();
      this.bitmap = null;
      this.pinnedId = null;
      this.el.trackBody.replaceChildren();
      this.context.clearRect(0, 0, this.el.canvas.width, this.el.canvas.height);
    }
    this.el.title.textContent = streamId;
    const embed = `${location.origin}/embed/${encodeURIComponent(streamId)}`;
    this.el.embedCode.value = `<iframe src="${embed}" width="640" height="384" style="border:0"></iframe>`;
  }

  setState(state, error) {
    this.el.state.textContent = state;
    this.el.state.className = `badge state-${state}`;
    this.el.error.textContent = error || "";
  }

  setStats(stream) {
    const value = (v, unit) => (v === null || v === undefined ? "–" : `${v}${unit}`);
    const rows = [
      ["input", value(stream.input_fps, " fps")],
      ["processed", value(stream.processed_fps, " fps")],
      ["latency", value(stream.latency_ms, " ms")],
      ["dropped", value(stream.frames_dropped, "")],
      ["viewers", value(stream.viewers, "")],
      ["source", stream.source],
    ];
    this.el.stats.replaceChildren(
      ...rows.flatMap(([name, text]) => {
        const term = document.createElement("dt");
        term.textContent = name;
        const detail = document.createElement("dd");
        detail.textContent = text;
        detail.dataset.stat = name;
        return [term, detail];
      }),
    );
    this.setState(stream.state, stream.error);
  }

  async frame(meta, jpeg) {
    if (meta.stream !== this.streamId || !jpeg || this.paused) return;
    // A frame that arrives while the previous one is still decoding is skipped: stay live, not complete.
    if (this.decoding) return;
    this.decoding = true;
    try {
      const bitmap = await createImageBitmap(new Blob([jpeg], { type: "image/jpeg" }));
      if (meta.stream !== this.streamId) {
        bitmap.close();
        return;
      }
      this.bitmap?.close();
      this.bitmap = bitmap;
      this.meta = meta;
      this.redraw();
      this.showTracks(meta);
      // What is on screen, for people with developer tools and for the browser tests.
      this.el.canvas.dataset.seq = meta.seq;
      this.el.canvas.dataset.tracks = meta.tracks.map((t) => t.id).join(",");
    } finally {
      this.decoding = false;
    }
  }

  redraw() {
    const { canvas } = this.el;
    if (!this.meta || !this.bitmap) return;
    // The canvas is in frame pixels, so metadata coordinates apply whatever size the JPEG was sent at.
    if (canvas.width !== this.meta.width || canvas.height !== this.meta.height) {
      canvas.width = this.meta.width;
      canvas.height = this.meta.height;
    }
    this.context.drawImage(this.bitmap, 0, 0, canvas.width, canvas.height);
    drawOverlay(this.context, this.meta, this.show, this.highlighted());
  }

  highlighted() {
    return this.hoverId ?? this.pinnedId;
  }

  showTracks(meta) {
    const highlighted = this.highlighted();
    this.el.trackCount.textContent = `(${meta.tracks.length})`;
    this.el.trackBody.replaceChildren(
      ...meta.tracks.map((track) => {
        const row = document.createElement("tr");
        row.dataset.track = track.id;
        if (track.id === highlighted) row.className = "highlight";
        const swatch = document.createElement("span");
        swatch.className = "swatch";
        swatch.style.background = trackColor(track.id);
        const cells = [track.id, track.class, track.conf.toFixed(2), `${(track.age ?? 0).toFixed(1)} s`];
        cells.forEach((value, index) => {
          const cell = document.createElement("td");
          if (index === 0) cell.append(swatch);
          cell.append(String(value));
          row.append(cell);
        });
        return row;
      }),
    );
  }

  hover(id) {
    const value = id === null || id === undefined ? null : Number(id);
    if (value === this.hoverId) return;
    this.hoverId = value;
    this.refreshHighlight();
  }

  pin(id) {
    const value = id === null || id === undefined ? null : Number(id);
    this.pinnedId = value === this.pinnedId ? null : value;
    this.refreshHighlight();
  }

  refreshHighlight() {
    const highlighted = this.highlighted();
    for (const row of this.el.trackBody.rows) {
      row.classList.toggle("highlight", Number(row.dataset.track) === highlighted);
    }
    this.redraw();
  }

  trackUnder(event) {
    if (!this.meta) return null;
    const rect = this.el.canvas.getBoundingClientRect();
    const x = ((event.clientX - rect.left) / rect.width) * this.meta.width;
    const y = ((event.clientY - rect.top) / rect.height) * this.meta.height;
    return trackAt(this.meta, x, y);
  }
}
