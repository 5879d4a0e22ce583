// The stream view: the clean frame with overlays drawn here from its metadata, the live track table,
// stats and the embed snippet. Hovering or clicking a track (in the table or on the video) highlights it.
//
// The frames come over WebRTC where it works: a video track of clean frames, each paired with its own
// metadata from the "meta" data channel by timestamp (web/webrtc.js, WebRTCTransport). Until the first
// of them is shown, and whenever WebRTC fails (no RTCPeerConnection, a refused offer, nothing within a
// few seconds, a connection that fails, closes or stays disconnected later, or whose frames stall more
// than 2 s behind those the WebSocket's metadata tells of), they come over the
// WebSocket as JPEGs instead; WebRTC is tried again when the WebSocket comes back after an outage
// (reconnected), and a WebRTC connection lost while the WebSocket stayed up after 10 s, then 20, 40 and
// every 60 s until it plays. WebRTC is offered only for a stream the server is known to have: it starts
// once the stream list or a status message shows the open stream, and again when a stream that went
// missing comes back. Either way the picture is copied to the canvas with its metadata, so overlays,
// highlights and pause work the same. A page hidden for 10 s (a tab left in the background) closes its
// WebRTC player; shown again, it plays again at once, on the WebSocket's newest picture until then.
// A browser's published camera that ends is removed: the view says it ended and why, not "No such
// stream", and shows it again when it is published again under its id.
// The track table's rows, its keys and its focus are web/track_table.js's; which track is hovered,
// pinned or had the keyboard last is kept here, as the picture hovers and pins too.
// ?transport=ws, or localStorage "segcast.transport" = "ws", keeps the view on the WebSocket.
// Zones and lines are drawn and edited over the picture by web/zones.js; their events are listed by
// web/events.js, and the stream's detection settings shown and changed by web/detection_panel.js.
// Where the server asks for tokens, the embed snippet's frame needs one in its address, as it cannot send
// the page's own: the Embed panel mints a long-lived viewer token for it when asked, and says who can watch.

import { ThrottledAnnouncer } from "./announce.js";
import { mintToken } from "./api.js";
import { appUrl, pageToken, storedToken } from "./connection.js";
import { DetectionPanel } from "./detection_panel.js";
import { EventList } from "./events.js";
import { behindAdvice, wantedRate } from "./grid.js";
import { drawOverlay, pictureRect, trackAt } from "./overlay.js";
import { JpegDecoder, ShownCanvas } from "./picture.js";
import { OFFLINE_NOTICE, StatusPanel, notice, noticeWithoutPicture, streamNotice } from "./status.js";
import { listenToTrackTable, markTrackRows, showTrackRows } from "./track_table.js";
import { WebRTCTransport, canPlay } from "./webrtc.js";
import { ZoneEditor } from "./zones.js";

const TRANSPORT_KEY = "segcast.transport";
// The embed snippet's frame: this wide, as tall as the stream's frames are for it (16:9 until one came).
const EMBED_WIDTH_PX = 640;
const EMBED_ASPECT = 16 / 9;
// How long the snippet's viewer token holds: the longest a viewer token may (README, Security), as a
// dashboard's frame is pasted once; asked with a signed token, the server gives no more than it has left.
const EMBED_TOKEN_TTL_S = 366 * 24 * 3600;
// New events are summed up for a screen reader at most this often: the list itself is no live region,
// as a busy scene (85 events a minute on the demo) would have it speak without a pause.
const EVENT_SUMMARY_MS = 10000;

function webrtcWanted() {
  let asked = new URLSearchParams(location.search).get("transport");
  try {
    asked ??= localStorage.getItem(TRANSPORT_KEY);
  } catch {
    // storage disabled: only the URL can ask
  }
  return asked !== "ws" && canPlay();
}

// What the view says of an id the server has no stream by.
const missingNotice = (streamId) =>
  notice(
    "missing",
    "No such stream",
    `This server has no stream “${streamId}” now. Pick one under All streams, or add it there.`,
  );

// The source a browser's published camera has (server/webrtc/source.py: "webrtc:<address>").
const PUBLISHED_SOURCE = "webrtc:";

// What the view says of a browser's published camera that ended and so was removed: why (`error`, the
// last it was told), and that it is back here by itself once its page publishes it again under its id.
const endedCameraNotice = (streamId, error) =>
  notice(
    "ended",
    error ? `This camera ended: ${error}` : "This camera ended",
    `Its browser can publish it again as “${streamId}”: its page does so by itself after a lost ` +
      "connection, or press Use my camera there with this stream id. This view then shows it again by itself.",
  );

// Held sideways, the picture is kept above the fold (style.css): its top in the page, below the top bar and
// the view's head, whose heights change as they wrap (a long id, a badge come, a turned phone), is told to
// the style sheet as --picture-top on its frame `wrap`.
function tellPictureTop(wrap) {
  const tell = () => wrap.style.setProperty("--picture-top", `${wrap.getBoundingClientRect().top + scrollY}px`);
  const above = [document.querySelector(".topbar"), wrap.parentElement.querySelector(".player-head")];
  const watcher = new ResizeObserver(tell);
  for (const element of above) if (element) watcher.observe(element);
}

/** The stream the page's address shows (null: the grid, also for an address that names none). */
export function routedStream() {
  const match = location.hash.match(/^#\/stream\/(.+)$/);
  try {
    return match ? decodeURIComponent(match[1]) : null;
  } catch {
    return null; // not an id percent-encoded (#/stream/%E0): the grid, where every stream is
  }
}

export class StreamView {
  // `subscribe(subscription)` sends the view's subscription() to the page's WebSocket as it changes.
  constructor(elements, { subscribe }) {
    this.el = elements;
    this.subscribe = subscribe;
    this.context = elements.canvas.getContext("2d");
    // Drawn again as the picture is shown at another size: a paused one gets no new frame to be redrawn with.
    this.shownCanvas = new ShownCanvas(elements.canvas, () => this.redraw());
    this.streamId = null;
    this.meta = null;
    this.bitmap = null;
    this.decoder = new JpegDecoder();
    this.hoverId = null;
    this.pinnedId = null;
    this.keyboardId = null; // the track whose row the keyboard was last on: the table's tab stop while it lives
    this.show = {};
    this.paused = false;
    this.transport = "websocket"; // what the frames on the canvas come over: "websocket" or "webrtc"
    this.rtc = null; // the WebRTCTransport of the open stream, once it started
    // WebRTC is wanted for the open stream once the server is seen to have it: an offer for a stream it
    // has not (yet) is refused, and nothing would offer again when it is added.
    this.rtcAwaitsStream = false;
    this.frameCopy = document.createElement("canvas"); // the WebRTC frame shown, kept while paused
    this.badge = elements.transport ?? document.getElementById("stream-transport");
    this.panel = new StatusPanel(elements.canvas.parentElement);
    this.status = null; // {state, error, next_attempt_at} of the open stream
    this.missing = false; // the server has no stream by the open id (now)
    this.source = null; // the open stream's source, as its stats last said
    this.endedCamera = null; // {error}: the open id was a published camera that ended, then went (setMissing)
    this.removing = false; // this page asked for the open stream's removal (setRemoving)
    // Live events heard since the last summary (eventHeard), the newest in the list's words, and what
    // sums them up (none where the page has no place for it).
    this.eventsHeard = 0;
    this.newestEvent = "";
    this.eventSummary = elements.eventsSummary
      ? new ThrottledAnnouncer(elements.eventsSummary, () => this.eventWords(), { minMs: EVENT_SUMMARY_MS })
      : null;
    this.online = true;
    this.offline = OFFLINE_NOTICE; // what the view says while the connection is down (setOnline)
    this.inference = null; // the server's {state, error, next_attempt_at}
    const size = () => (this.meta && this.bitmap ? { width: this.meta.width, height: this.meta.height } : null);
    const reveal = () => {
      const toggle = elements.toggles.querySelector("input[name=zones]");
      if (toggle && !toggle.checked) toggle.click();
    };
    // The shape panel's class filter, loiter time and live status (app.js hands over its other parts).
    const byId = (id) => document.getElementById(id);
    const shapeSettings = {
      settings: byId("shape-settings"),
      classes: byId("shape-classes"),
      loiter: byId("shape-loiter"),
      loiterField: byId("shape-loiter-field"),
      status: byId("shape-status"), // what the picture's keys did, for a screen reader
      unfiled: byId("shape-unfiled"), // changes here not in the config file (gone at a restart)
      transient: byId("shape-transient"), // a stream no config file keeps: its shapes go when segcast stops
    };
    this.embedToken = null; // the signed viewer token in the snippet's address, once minted for it
    this.embedTokenButton = byId("embed-token");
    this.embedTokenState = byId("embed-token-state");
    this.embedTokenButton.textContent = `Add a viewer token (valid ${EMBED_TOKEN_TTL_S / 86400} days)`;
    this.embedTokenButton.addEventListener("click", () => this.addEmbedToken());
    this.zones = new ZoneEditor(
      { canvas: elements.canvas, size, redraw: () => this.redraw(), reveal },
      { ...shapeSettings, ...elements.zones },
    );
    this.detection = new DetectionPanel(byId("detection")); // the stream's conf, classes and class filters
    // A mouse plugged in or taken away: the drawing hint in its words (zones.js, touchOnly).
    matchMedia("(any-pointer: fine)").addEventListener("change", () => this.zones.render());
    tellPictureTop(elements.canvas.parentElement);
    this.events = new EventList(elements.events, elements.eventsEmpty, elements.eventsSummary);
    // Leaving the stream view ends its WebRTC player (app.js only tells the view which stream to open).
    window.addEventListener("hashchange", () => {
      if (this.streamId !== null && routedStream() !== this.streamId) this.close();
    });
    elements.pause.addEventListener("click", () => this.setPaused(!this.paused));
    for (const input of elements.toggles.querySelectorAll("input")) {
      this.show[input.name] = input.checked;
      input.addEventListener("change", () => {
        this.show[input.name] = input.checked;
        if (input.name === "zones") this.zones.setVisible(input.checked);
        this.redraw();
      });
    }
    listenToTrackTable(elements.trackBody, {
      hover: (id) => this.hover(id),
      pin: (id) => this.pin(id),
      keyboard: (id) => (this.keyboardId = id),
    });
    elements.canvas.addEventListener("mousemove", (event) => this.hover(this.trackUnder(event)?.id));
    elements.canvas.addEventListener("mouseleave", () => this.hover(null));
    elements.canvas.addEventListener("click", (event) => {
      if (!this.zones.takeClaim()) this.pin(this.trackUnder(event)?.id);
    });
    elements.copyEmbed.addEventListener("click", () => this.copyEmbed());
  }

  // Over WebRTC the socket still brings this stream's status, but no pictures.
  subscription() {
    return { streams: [{ id: this.streamId, image: this.transport === "webrtc" ? "none" : "clean" }] };
  }

  // The view's subscription() changed: its frames come over WebRTC now, or over the WebSocket again.
  resubscribe() {
    this.subscribe(this.subscription());
  }

  setTransport(transport) {
    this.transport = transport;
    this.el.canvas.dataset.transport = transport;
    if (this.badge) {
      this.badge.textContent = transport === "webrtc" ? "WebRTC" : "WebSocket";
      this.badge.title = `video over ${this.badge.textContent}`;
    }
  }

  // While paused the last frame stays, so its tracks can be inspected with any overlay. A toggle button
  // keeps its name and says whether it is pressed: renamed "Resume" as well, a screen reader said "Resume,
  // pressed", which reads as either state.
  setPaused(paused) {
    this.paused = paused;
    this.el.pause.setAttribute("aria-pressed", String(paused));
  }

  open(streamId) {
    if (streamId !== this.streamId) {
      this.close();
      this.setPaused(false);
      this.streamId = streamId;
      this.pinnedId = null;
      this.keyboardId = null;
      this.missing = false;
      this.source = null;
      this.endedCamera = null;
      this.removing = false;
      this.forget();
      this.setTransport("websocket");
      this.rtcAwaitsStream = webrtcWanted();
      this.zones.open(streamId);
      this.detection.open(streamId);
      this.events.open(streamId);
      this.embedToken = null; // minted for one snippet: another stream's is asked for again
      this.embedTokenState.textContent = "";
    }
    this.el.title.textContent = streamId;
    this.el.title.title = streamId;
    this.el.canvas.setAttribute("aria-label", `live video of ${streamId}, tracks listed below`);
    this.showEmbed();
    this.el.copyState.textContent = "";
  }

  // The snippet's frame has the stream's own shape, so the embed shows its picture without bars.
  showEmbed() {
    const url = appUrl(`embed/${encodeURIComponent(this.streamId)}`);
    if (this.embedToken) url.searchParams.set("token", this.embedToken);
    const embed = url.href;
    const aspect = this.meta ? this.meta.width / this.meta.height : EMBED_ASPECT;
    const height = Math.round(EMBED_WIDTH_PX / aspect);
    // Titled for a screen reader, which names a frame by its title (README's snippet is the same).
    const title = `segcast: ${this.streamId}`;
    const code = `<iframe src="${embed}" title="${title}" width="${EMBED_WIDTH_PX}" height="${height}" style="border:0"></iframe>`;
    if (this.el.embedCode.value !== code) this.el.embedCode.value = code;
  }

  // Nothing of the previous stream may stay on screen: its picture, tracks, counts, stats or state.
  forget() {
    const { canvas } = this.el;
    this.dropPicture();
    this.context.clearRect(0, 0, canvas.width, canvas.height);
    delete canvas.dataset.seq;
    delete canvas.dataset.tracks;
    delete canvas.dataset.frame;
    this.el.trackBody.replaceChildren();
    this.el.trackCount.textContent = "";
    this.el.stats.replaceChildren();
    this.el.error.textContent = "";
    this.status = null;
    this.render();
  }

  // A viewer token minted for the snippet, in its frame's address, scoped to this stream (whoever sees the
  // snippet can watch it, nothing else): the page's own token stays the page's.
  async addEmbedToken() {
    const { embedTokenButton: button, embedTokenState: state } = this;
    const streamId = this.streamId;
    button.disabled = true;
    try {
      const { token, ttl_s: ttlS } = await mintToken("viewer", EMBED_TOKEN_TTL_S, { streams: [streamId] });
      if (streamId !== this.streamId) return;
      this.embedToken = token;
      this.showEmbed();
      this.el.copyState.textContent = "";
      const until = new Date(Date.now() + ttlS * 1000).toLocaleDateString();
      state.textContent =
        `Token added. Anyone with this snippet can watch ${streamId} until it expires, on ${until}: the ` +
        "token opens this stream alone, none other of this server, nor its event history.";
    } catch (error) {
      if (streamId === this.streamId) state.textContent = `No token added: ${error.message}`;
    } finally {
      button.disabled = this.missing;
    }
  }

  async copyEmbed() {
    const { embedCode, copyState } = this.el;
    try {
      await navigator.clipboard.writeText(embedCode.value); // only on https:// or localhost
      copyState.textContent = "Copied";
    } catch {
      embedCode.select();
      copyState.textContent = document.execCommand("copy") ? "Copied" : "Selected: press Ctrl+C to copy";
    }
  }

  /**
   * The WebSocket is back after an outage; `streams` are the hello's. A WebRTC player of before may
   * be frozen on a peer the server no longer has, and one that fell back may work again: WebRTC is
   * tried anew, the WebSocket's frames shown until it plays. app.js sends subscription() after this.
   */
  reconnected(streams) {
    if (this.streamId === null || !webrtcWanted()) return;
    this.endWebRTC();
    this.setTransport("websocket");
    this.rtcAwaitsStream = true;
    if (streams.some((stream) => stream.id === this.streamId)) this.streamSeen();
  }

  // The server has the open stream (a stream list or a status message says so): WebRTC starts now if
  // it was waiting for that. Only then, so a view on WebSocket frames after a refused offer stays so.
  streamSeen() {
    if (!this.rtcAwaitsStream || this.streamId === null) return;
    this.rtcAwaitsStream = false;
    this.rtc ??= new WebRTCTransport(this.streamId, {
      beside: this.el.canvas,
      frame: (video, meta) => this.rtcFrame(video, meta),
      fellBack: (reason) => this.fellBack(reason),
    });
  }

  // No WebRTC player, attempt or retry is left of the open stream.
  endWebRTC() {
    this.rtc?.stop();
    this.rtc = null;
  }

  // Its frames come over the WebSocket again; `reason` is why (null: the page was hidden a while).
  fellBack(reason) {
    if (reason) console.info("segcast: video over the WebSocket, not WebRTC:", reason);
    if (this.transport !== "websocket") {
      this.setTransport("websocket");
      this.resubscribe();
    }
  }

  close() {
    this.endWebRTC();
    this.eventSummary?.clear();
    this.eventsHeard = 0;
    this.rtcAwaitsStream = false;
    this.streamId = null;
    this.zones.open(null);
    this.detection.open(null);
    this.events.open(null);
    this.dropPicture();
  }

  dropPicture() {
    this.meta = null;
    this.bitmap?.close?.();
    this.bitmap = null;
  }

  /**
   * The server has no stream by the open id: it was removed, the server came back without it, or
   * the address names none. Whatever was shown of it goes; a status message (it is added) or a stream
   * list that has it again brings it back, as the subscription to its id stays, and WebRTC with it:
   * none is offered meanwhile, as the server would refuse it. A browser's published camera is removed
   * as it ends: the view says it ended and why, which "No such stream" would not.
   */
  setMissing() {
    if (this.missing) return;
    this.missing = true;
    const ended = this.source?.startsWith(PUBLISHED_SOURCE) && this.status?.state === "ended";
    this.endedCamera = ended ? { error: this.status.error } : null;
    this.setPaused(false);
    this.forget();
    this.zones.setStream(null);
    this.detection.setStream(null);
    this.rtcAwaitsStream ||= webrtcWanted();
    this.endWebRTC();
    if (this.transport !== "websocket") {
      this.setTransport("websocket");
      this.resubscribe(); // its frames come over the WebSocket when it is back, until WebRTC plays
    }
  }

  // A WebRTC frame being shown in `video`, with its metadata: copy it, as the canvas keeps it while paused.
  rtcFrame(video, meta) {
    if (meta.stream !== this.streamId || this.missing) return;
    if (this.transport !== "webrtc") {
      this.setTransport("webrtc");
      this.resubscribe();
    }
    if (this.paused) return;
    const copy = this.frameCopy;
    if (copy.width !== meta.width || copy.height !== meta.height) {
      copy.width = meta.width;
      copy.height = meta.height;
    }
    copy.getContext("2d").drawImage(video, 0, 0, copy.width, copy.height);
    if (this.bitmap !== copy) this.bitmap?.close?.();
    this.bitmap = copy;
    this.present(meta);
  }

  /** A live event from the WebSocket: listed, and summed up for a screen reader with those heard in the
   * same EVENT_SUMMARY_MS ("4 new events, latest: #12 person crossed mid (in)"). */
  eventHeard(event) {
    // Its item where it was listed (not another stream's, nor known): on top, or below newer ones if it came late.
    const item = this.events.add(event);
    if (!this.eventSummary || item === null) return;
    this.eventsHeard += 1;
    this.newestEvent = item.lastChild.textContent; // what the list says after the time (events.js, eventItem)
    this.eventSummary.note();
  }

  eventWords() {
    const heard = this.eventsHeard;
    this.eventsHeard = 0;
    return heard === 1 ? `1 new event: ${this.newestEvent}` : `${heard} new events, latest: ${this.newestEvent}`;
  }

  // A status message: its state and error, not when the next attempt is (the next poll brings that).
  setState(state, error) {
    this.missing = false;
    this.endedCamera = null;
    const same = this.status?.state === state && this.status?.error === error;
    this.status = { state, error, next_attempt_at: same ? this.status.next_attempt_at : null };
    this.render();
    this.streamSeen();
  }

  // `offline`: why the connection is down where the page could tell (app.js: a token the server wants, a
  // live connection refused); by default it is out of reach, and the picture shown the last one received
  // (or none was: noticeWithoutPicture).
  setOnline(online, offline = OFFLINE_NOTICE) {
    this.online = online;
    this.offline = offline;
    this.render();
  }

  setInference(inference) {
    this.inference = inference;
    this.render();
  }

  // This page asked for the open stream's removal (app.js), or the server refused it: while it is on its
  // way, its going is no news, and "No such stream" would be said before the page's own "Removed".
  setRemoving(removing) {
    this.removing = removing;
    this.render();
  }

  render() {
    // A token given after the view opened (the page asked for one) brings the embed's token note too.
    this.el.embedNote.hidden = !(pageToken || storedToken());
    const state = this.online ? (this.status?.state ?? "") : this.offline.state;
    this.el.state.textContent = state;
    this.el.state.className = `badge state-${state}`;
    this.el.state.hidden = !state;
    // Nothing to pause, remove or embed while the server has no such stream: its controls are off.
    const controls = [this.el.pause, this.el.remove, this.el.copyEmbed, this.embedTokenButton];
    for (const control of controls) control.disabled = this.missing;
    if (!this.online) this.panel.show(this.bitmap ? this.offline : noticeWithoutPicture(this.offline));
    else if (this.endedCamera) this.panel.show(endedCameraNotice(this.streamId, this.endedCamera.error));
    else if (this.missing) {
      if (!this.removing) this.panel.show(missingNotice(this.streamId)); // else app.js says it was removed
    } else this.panel.show(streamNotice(this.status, this.inference));
  }

  // `askedAt`: performance.now() when the stream list was asked for. The processed rate is told against
  // the input's, and the process_fps it is capped at where that is lower ("4.9 of 30 fps, capped at 5");
  // `pace` says whether inference keeps up with what it wants: behind, in the warning colour, with what
  // to do beneath (not in a tooltip alone, which a phone or a keyboard never shows).
  setStats(stream, askedAt) {
    const value = (v, unit) => (v === null || v === undefined ? "–" : `${v}${unit}`);
    const wanted = wantedRate(stream);
    const cap = wanted.capped ? `, capped at ${wanted.fps}` : "";
    const processed = stream.input_fps > 0 ? ` of ${stream.input_fps} fps${cap}` : " fps";
    const rows = [
      ["input", value(stream.input_fps, " fps")],
      ["processed", value(stream.processed_fps, processed)],
      ["pace", pace(stream)],
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
    if (stream.behind === true) {
      const detail = this.el.stats.querySelector("[data-stat=pace]");
      const advice = document.createElement("small");
      advice.className = "pace-advice";
      advice.textContent = behindAdvice(stream);
      detail.classList.add("behind");
      detail.append(advice);
    }
    this.status = { state: stream.state, error: stream.error, next_attempt_at: stream.next_attempt_at };
    this.source = stream.source;
    this.missing = false;
    this.endedCamera = null;
    this.render();
    this.zones.setStream(stream, askedAt);
    this.detection.setStream(stream, askedAt);
    this.zones.showProblem(stream.analytics_error ?? "");
    this.streamSeen();
  }

  // A WebSocket frame: its metadata and the clean JPEG, or (over WebRTC) its metadata alone, which tells
  // the WebRTC player how far its picture is behind. A paused view compares nothing: its picture waits.
  async frame(meta, jpeg) {
    if (meta.stream === this.streamId && !this.paused) this.rtc?.heard(meta);
    if (meta.stream !== this.streamId || !jpeg || this.paused || this.transport !== "websocket") return;
    const bitmap = await this.decoder.decode(jpeg);
    if (!bitmap) return;
    if (meta.stream !== this.streamId || this.transport !== "websocket" || this.paused || this.missing) {
      bitmap.close();
      return;
    }
    this.bitmap?.close?.();
    this.bitmap = bitmap;
    this.present(meta);
  }

  present(meta) {
    const resized = meta.width !== this.meta?.width || meta.height !== this.meta?.height;
    this.meta = meta;
    if (resized) this.showEmbed();
    this.zones.fit();
    this.zones.setCounts(meta.counts);
    this.redraw();
    this.showTracks(meta);
    // What is on screen, for people with developer tools and for the browser tests: the frame's size
    // too, as the canvas has the size it is shown at (ShownCanvas).
    this.el.canvas.dataset.seq = meta.seq;
    this.el.canvas.dataset.tracks = meta.tracks.map((t) => t.id).join(",");
    this.el.canvas.dataset.frame = `${meta.width}x${meta.height}`;
  }

  redraw() {
    const { canvas } = this.el;
    if (!this.meta || !this.bitmap) return;
    // The canvas holds the whole frame at the size it is shown at in device pixels, or at its own where
    // that is larger (ShownCanvas), and the overlays map the metadata's frame pixels onto it, whatever
    // size the JPEG was sent at.
    this.shownCanvas.fit(this.meta.width, this.meta.height);
    this.context.drawImage(this.bitmap, 0, 0, canvas.width, canvas.height);
    // Zones and lines under the tracks, as the server draws them: no zone's fill tints a track's label.
    // Their tags, handles, the shape being drawn and the crosshair over everything: no track's mask
    // tints what the person reads and draws with.
    this.zones.draw(this.context, "under");
    drawOverlay(this.context, this.meta, this.show, this.highlighted());
    this.zones.draw(this.context, "over");
  }

  highlighted() {
    return this.hoverId ?? this.pinnedId;
  }

  showTracks(meta) {
    // A frame shown unanalysed (inference unavailable) has no tracks to count: "–", not "(0)".
    this.el.trackCount.textContent = meta.analysed === false ? "(–)" : `(${meta.tracks.length})`;
    const marks = { highlighted: this.highlighted(), pinned: this.pinnedId, keyboard: this.keyboardId };
    showTrackRows(this.el.trackBody, meta.tracks, marks);
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
    const marks = { highlighted: this.highlighted(), pinned: this.pinnedId, keyboard: this.keyboardId };
    markTrackRows(this.el.trackBody, marks);
    this.redraw();
  }

  trackUnder(event) {
    if (!this.meta) return null;
    const rect = pictureRect(this.el.canvas);
    if (!rect.width || !rect.height) return null;
    const x = ((event.clientX - rect.left) / rect.width) * this.meta.width;
    const y = ((event.clientY - rect.top) / rect.height) * this.meta.height;
    return trackAt(this.meta, x, y);
  }
}

// Whether inference keeps up with the frames the stream wants (its input's, or its cap's), over the
// server's last few seconds. "–": not judged now (server/inference/pace.py): not live, or inference
// unavailable; a #rate=max file, which processes every frame; its input paused (no new frame for a
// while); or under a whole window (10 s) since it could be judged again (came up or back, its input came
// again) or its cap changed.
function pace(stream) {
  if (typeof stream.processed_share !== "number") return "–";
  const of = wantedRate(stream).capped ? "of the frames its cap wants" : "of frames";
  const share = `${Math.round(stream.processed_share * 100)}% ${of} processed`;
  return stream.behind === true ? `behind: ${share}` : `keeps up: ${share}`;
}
