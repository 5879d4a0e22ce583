// The grid: every stream as a small live picture with its state badge; a click opens the stream view.
// A stream that is not live says why over its picture; so does every tile while the page has lost
// its connection to segcast, since their pictures and badges are then only the last ones received
// (a tile that has had no picture says it has none).
// A live stream whose pictures stopped coming (a camera whose encoder hung keeps its connection, so
// segcast still has it as live) says so too, from the time its tile last drew a picture: the badge is
// the server's word on the source, the note what the tile itself has seen.
// The tiles' notices are not live regions: in an outage every tile would speak at once, and the page's
// connection badge already says it. Streams going down are said instead in one short summary ("door:
// reconnecting", "3 streams down"), at most every DOWN_SUMMARY_MIN_MS, and nothing while the page's
// connection is down. A tile's link is named by its caption (id, state, rate) and described by its notice,
// without the countdown: named by all it holds, it read the notice and the countdown's second as its name.
// Removing the tile that has the keyboard focus hands it to a neighbour and says what happened, rather
// than dropping it on the page's top.
// The fleet page (fleet.js) has one GridView per node in one grid: its tiles name their node and open
// that node's own viewer.
// Tiles are sent pictures as wide as a tile is on the screen (ThumbnailWidth), not a fixed size: the
// server encodes and sends no more pixels than are shown.
// A stream whose inference cannot keep up with its camera (the server's `behind`) says so in its caption,
// "behind: 4.2 of 30 fps" (of a capped stream, of the rate it wants: "behind: 2.1 of 5 fps (capped)"), in
// the warning colour: its picture is fine, only slow, so it is no notice over the picture. What to do
// (behindAdvice) is the tile link's description, which a screen reader speaks with its name; the keyboard
// on the tile shows it over its picture, a pointer in its caption's title, and a tap opens the stream view,
// which shows it too.
// A zone or line event of a stream marks its tile for EVENT_SHOWN_MS after the last one: an outline, and
// the newest event's words and time over the foot of its picture ("person entered loading · 14:05:03"),
// so a person watching the grid sees where something happened without opening each camera. Over the
// picture rather than in the caption: a caption line that came and went would move every tile of its row.
// Not said to a screen reader as each comes (a busy yard has dozens a minute): it is the tile's
// description while it shows. A burst costs one text and one timer per tile, not an element per event.
// A tile whose stream is down says "0 fps" as it goes down, not the rate last polled, of pictures that stopped.

import { ThrottledAnnouncer, liveRegion } from "./announce.js";
import { carryToken } from "./connection.js";
import { JpegDecoder, drawPicture } from "./picture.js";
import { OFFLINE_NOTICE, StatusPanel, noticeWithoutPicture, streamNotice } from "./status.js";

const THUMB_FPS = 4;
// The widths the server scales a picture to (WIDTH_STEPS_PX in server/delivery/encode.py, which a test
// keeps equal to this list): it rounds a requested max_width down to one of them, so the grid asks for
// the one at or above a tile's width and is sent a picture at least as wide as the tile.
export const SERVER_WIDTH_STEPS_PX = [
  32, 48, 64, 96, 128, 160, 192, 240, 320, 384, 480, 640, 800, 960, 1280, 1600, 1920, 2560, 3840, 7680,
];
// A resize is acted on once the grid has kept its size this long: dragging a window's edge asks once.
const RESIZE_SETTLE_MS = 250;
// A tile is stale once its picture is older than this many frame intervals of what it is sent (the
// stream's rate, at most THUMB_FPS), and never sooner than STALE_MIN_S: late frames are not a stall.
const STALE_FRAME_INTERVALS = 4;
const STALE_MIN_S = 3;
const STALE_TICK_MS = 1000; // the stale note counts the seconds
// A tile's rate while the connection is down: the last figure received would read as live.
const RATE_UNKNOWN = "—";
// A down stream's rate, from its status message on: the last figure polled is of pictures that stopped.
const RATE_DOWN = "0 fps";
// Streams going down are summed up after DOWN_SUMMARY_GATHER_MS (several at once are one summary), at
// most once every DOWN_SUMMARY_MIN_MS: a camera that flaps is not said at every flap.
const DOWN_SUMMARY_GATHER_MS = 1000;
const DOWN_SUMMARY_MIN_MS = 10000;
const DOWN_STATES = new Set(["reconnecting", "failed", "ended"]);
const EVENT_SHOWN_MS = 10000;
let cardCount = 0; // the tiles made so far, for their parts' ids (a fleet page has a stream id per node)

/**
 * The rate a stream wants processed ({input_fps, options: {process_fps}} as the API has it): its input's,
 * or its process_fps where that is lower, which the server judges it by (inference/pace.py): `fps`, and
 * `capped`, whether it is the cap.
 */
export function wantedRate(stream) {
  const cap = stream.options?.process_fps;
  const capped = typeof cap === "number" && cap < stream.input_fps;
  return { fps: capped ? cap : stream.input_fps, capped };
}

/**
 * What to tell of a stream the server finds `behind` ({processed_share, ...} as the API has it): why its
 * picture is slow and what to do, in the order the server's log and the README give it (a process_fps
 * first: it frees inference for the other streams without a restart). The grid's tiles have it as their
 * description, the stream view shows it.
 */
export function behindAdvice(stream) {
  const share = typeof stream.processed_share === "number" ? `${Math.round(stream.processed_share * 100)}%` : "few";
  const frames = wantedRate(stream).capped ? "the frames this camera's process_fps wants" : "this camera's frames";
  return (
    `Inference takes ${share} of ${frames} and skips the rest: this server has more cameras than it can ` +
    "infer. Give the cameras that need fewer frames a process_fps, or a lower one (the inference they leave " +
    "goes to the others), on a CPU run a model exported for it rather than a .pt (segcast export), lower the " +
    "streams' imgsz (small and distant objects are missed first), run fewer cameras on this server, or use a " +
    "GPU or another node (README, “A node with more cameras than it can infer”)."
  );
}

// What the grid subscribes to: every stream's pictures, `maxWidthPx` wide at most (ThumbnailWidth).
export function gridSubscription(maxWidthPx) {
  return { streams: ["*"], image: "annotated", max_width: maxWidthPx, max_fps: THUMB_FPS };
}

/**
 * Where stream `a`'s tile goes against `b`'s (negative: before): natural and case-folded ("cam2" before
 * "cam10", "Yard" among the y's), as the server lists streams (`stream_order` in server/stream_info.py, which
 * says why; a test keeps the two equal). A tile added while the page is open goes where a reload puts it.
 */
export function compareStreamIds(a, b) {
  const [as, bs] = [a.toLowerCase().split(/([0-9]+)/), b.toLowerCase().split(/([0-9]+)/)];
  for (let i = 0; i < Math.min(as.length, bs.length); i++) {
    // Digit runs (odd places) by their value, exactly however long: without leading zeros, the longer is larger.
    const [x, y] = i % 2 ? [as[i].replace(/^0+/, ""), bs[i].replace(/^0+/, "")] : [as[i], bs[i]];
    if (i % 2 && x.length !== y.length) return x.length - y.length;
    if (x !== y) return x < y ? -1 : 1;
  }
  if (as.length !== bs.length) return as.length - bs.length;
  return a === b ? 0 : a < b ? -1 : 1;
}

// The server's width step at or above `devicePx` (the smallest for less, the largest for more: at or
// above a frame's own width the server sends it full size). A fraction of a pixel over a step is
// rounded away, so layout's sub-pixel widths do not ask for twice the pixels.
export function widthStepPx(devicePx) {
  const wanted = Math.round(devicePx);
  return SERVER_WIDTH_STEPS_PX.find((step) => step >= wanted) ?? SERVER_WIDTH_STEPS_PX.at(-1);
}

/**
 * The max_width a grid's tiles want: its widest column in device pixels, as a server width step.
 * `onChange(px)` is called when a resize or a zoom has settled on another step than the last one
 * given (by `px()` or `onChange`), and not otherwise; never while the grid is hidden.
 */
export class ThumbnailWidth {
  constructor(grid, onChange) {
    this.grid = grid;
    this.onChange = onChange;
    this.stepPx = null; // the last step given out
    this.timer = null;
    new ResizeObserver(() => this.settle()).observe(grid);
    this.watchResolution();
  }

  // The step for the grid as laid out now; while it is hidden, the last one (the smallest before any).
  px() {
    this.stepPx = this.measure() ?? this.stepPx ?? SERVER_WIDTH_STEPS_PX[0];
    return this.stepPx;
  }

  // The step of the widest column now, or null while the grid is not laid out (hidden).
  measure() {
    if (this.grid.getClientRects().length === 0) return null;
    const columns = getComputedStyle(this.grid)
      .gridTemplateColumns.split(" ")
      .filter((track) => track.endsWith("px"))
      .map(parseFloat);
    const widestCss = Math.max(0, ...columns) || this.grid.clientWidth;
    return widthStepPx(widestCss * devicePixelRatio);
  }

  settle() {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      const stepPx = this.measure();
      if (stepPx === null || stepPx === this.stepPx) return;
      this.stepPx = stepPx;
      this.onChange(stepPx);
    }, RESIZE_SETTLE_MS);
  }

  // A zoom, or the window moved to a screen of another density, changes the device pixels of a tile
  // whose CSS width may stay the same: the media query of the present ratio says when it no longer holds.
  watchResolution() {
    matchMedia(`(resolution: ${devicePixelRatio}dppx)`).addEventListener(
      "change",
      () => {
        this.settle();
        this.watchResolution();
      },
      { once: true },
    );
  }
}

export class GridView {
  // node: the name each tile shows beside its stream id (null: none). viewerRoot: the root of the node
  // whose viewer a tile opens, with the page's token (null: this page's own stream view, #/stream/<id>).
  // downChanged(): called when the number of streams down (downCount()) may have changed.
  constructor(root, empty, { node = null, viewerRoot = null, downChanged = () => {} } = {}) {
    this.root = root;
    this.empty = empty;
    this.node = node;
    this.viewerRoot = viewerRoot;
    this.downChanged = downChanged;
    this.offline = OFFLINE_NOTICE; // what every tile says while the connection is down
    this.cards = new Map();
    this.online = true;
    this.inference = null; // {state, error, next_attempt_at}: the server's, shared by every stream
    this.announcer = null; // where removals are said on a page without a #grid-note (made when needed)
    // Where streams going down are said: its own, since #grid-note is the page's (app.js). In the page
    // before it speaks, as a live region added with its words is not always spoken.
    const downNote = liveRegion();
    (this.root.closest(".grid") ?? this.root).before(downNote);
    this.downSummary = new ThrottledAnnouncer(downNote, () => this.downWords(), {
      minMs: DOWN_SUMMARY_MIN_MS,
      gatherMs: DOWN_SUMMARY_GATHER_MS,
    });
    this.wentDown = new Set(); // the ids of streams gone down since the last summary
    setInterval(() => this.checkStale(), STALE_TICK_MS);
    // Shown again, each stream's newest picture is on its way (connection.js): the tiles' time starts
    // again now, not at the last tick while hidden, which a background tab's timers make seldom.
    document.addEventListener("visibilitychange", () => this.restartStaleClocks());
  }

  /** The ids of the streams that have a tile. */
  streamIds() {
    return [...this.cards.keys()];
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
      // Put before the first tile that sorts after it: no other tile is moved, so none restarts its picture.
      const tiles = this.root.querySelectorAll(":scope > .card");
      const next = [...tiles].find((tile) => compareStreamIds(tile.dataset.stream, stream.id) > 0);
      this.root.insertBefore(card.element, next ?? null);
    }
    if (stream.state) {
      card.status = { state: stream.state, error: stream.error, next_attempt_at: stream.next_attempt_at };
      this.render(card);
    }
    if (typeof stream.processed_fps === "number") {
      // The rate that pictures were coming at: the server's figure falls to 0 once they stop.
      if (stream.processed_fps > 0) card.fps = stream.processed_fps;
      card.behind = stream.behind === true ? behindAdvice(stream) : "";
      // Pictures come unanalysed while inference is unavailable: "0 fps" under a moving picture reads as a dead camera.
      const idle = this.inference?.state === "unavailable" ? "not analysed" : "0 fps";
      const fps = stream.processed_fps > 0 ? `${stream.processed_fps.toFixed(1)} fps` : idle;
      card.rate = card.behind ? `behind: ${behindRate(stream)}` : fps;
      card.watching = stream.viewers ? `${stream.viewers} watching` : "";
      this.showRate(card);
    }
    this.empty.hidden = true;
  }

  createCard(id) {
    const number = ++cardCount;
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
    name.id = `card-name-${number}`;
    if (this.node !== null) {
      const node = document.createElement("span");
      node.className = "card-node muted";
      node.textContent = this.node;
      node.title = this.node;
      node.id = `card-node-${number}`;
      caption.append(node);
    }
    const badge = document.createElement("span");
    badge.className = "badge";
    badge.id = `card-state-${number}`;
    const info = document.createElement("small");
    info.className = "muted";
    info.id = `card-rate-${number}`;
    caption.append(name, badge, info);
    element.setAttribute("aria-labelledby", [...caption.children].map((part) => part.id).join(" "));
    // Out of the link's name (aria-hidden), which reads the caption: only its description, once behind.
    const advice = document.createElement("span");
    advice.className = "card-advice";
    advice.id = `card-advice-${number}`;
    advice.setAttribute("aria-hidden", "true");
    // Out of the link's name too: the newest event's words are its description while they show.
    const event = document.createElement("span");
    event.className = "card-event";
    event.id = `card-event-${number}`;
    event.setAttribute("aria-hidden", "true");
    event.hidden = true;
    frame.append(event, advice); // the advice, shown on the keyboard's focus, over it
    element.append(frame, caption);
    // drawnAt: performance.now() of its last picture drawn (null: none yet); fps: the stream's last
    // positive processed_fps (null: not known, and then the tile is never judged stale); rate: what its
    // caption says of the stream's rate while the connection is up and the stream not down ("": nothing
    // known yet), watching: what it says of its viewers; behind: what to do about its inference falling behind, as the
    // server last said ("": it keeps up); eventTimer: the timeout that clears its event mark (null: none).
    const panel = new StatusPanel(frame, { live: false });
    panel.says.id = `card-notice-${number}`;
    panel.countdown.setAttribute("aria-hidden", "true"); // read as part of the tile, it would be at every tick
    return {
      element,
      picture,
      badge,
      info,
      advice,
      event,
      panel,
      status: null,
      decoder: new JpegDecoder(),
      drawnAt: null,
      fps: null,
      rate: "",
      watching: "",
      behind: "",
      eventTimer: null,
      down: null, // whether its stream was down as last heard while online (null: not heard yet)
    };
  }

  // The caption's rate: the last one listed, but no figure while the connection or the stream is down; and
  // what to do about a stream behind, as the link's description and the caption's title.
  showRate(card) {
    const down = DOWN_STATES.has(card.status?.state);
    const behind = this.online && !down && card.behind !== "";
    const rate = down ? RATE_DOWN : card.rate;
    card.info.textContent = this.online
      ? [rate, card.watching].filter(Boolean).join(" · ")
      : card.rate && RATE_UNKNOWN;
    card.info.classList.toggle("behind", behind);
    card.info.title = behind ? card.behind : "";
    card.advice.textContent = behind ? card.behind : "";
    this.describe(card);
  }

  // The link's description: its notice, while one shows, what to do about a stream behind, and its newest event.
  describe(card) {
    const ids = [card.panel.notice !== null ? card.panel.says.id : "", card.advice.textContent ? card.advice.id : ""];
    if (!card.event.hidden) ids.push(card.event.id);
    const by = ids.filter(Boolean).join(" ");
    if (by) card.element.setAttribute("aria-describedby", by);
    else card.element.removeAttribute("aria-describedby");
  }

  // A status message: its state and error, not when the next attempt is (the next poll brings that).
  setState(id, state, error) {
    const card = this.cards.get(id);
    if (!card) return;
    const same = card.status?.state === state && card.status?.error === error;
    card.status = { state, error, next_attempt_at: same ? card.status.next_attempt_at : null };
    this.render(card);
    this.showRate(card);
  }

  /** A zone or line event (a WebSocket message of ANALYTICS_EVENTS, events.js) of a stream on the grid:
   * its tile is marked with it until EVENT_SHOWN_MS after the last. */
  eventHeard(event) {
    const card = this.cards.get(event.stream);
    if (!card) return;
    card.event.textContent = tileEventWords(event);
    card.event.hidden = false;
    card.element.classList.add("has-event");
    this.describe(card);
    clearTimeout(card.eventTimer);
    card.eventTimer = setTimeout(() => this.clearEvent(card), EVENT_SHOWN_MS);
  }

  clearEvent(card) {
    clearTimeout(card.eventTimer);
    card.eventTimer = null;
    card.event.hidden = true;
    card.event.textContent = "";
    card.element.classList.remove("has-event");
    this.describe(card);
  }

  /** How many streams are down (reconnecting, failed, ended) as last heard while the connection was up. */
  downCount() {
    return [...this.cards.values()].filter((card) => card.down).length;
  }

  // `offline`: the notice over every tile while the connection is down (a page of several nodes names the node).
  setOnline(online, offline = OFFLINE_NOTICE) {
    this.online = online;
    this.offline = offline;
    if (!online) this.wentDown.clear(); // the connection's badge says it: not every stream besides
    for (const card of this.cards.values()) {
      this.render(card);
      this.showRate(card);
    }
  }

  render(card) {
    const state = this.online ? (card.status?.state ?? "starting") : this.offline.state;
    card.badge.textContent = state;
    card.badge.className = `badge state-${state}`;
    card.panel.show(this.notice(card));
    this.describe(card);
    if (this.online && card.status) this.noteDown(card, DOWN_STATES.has(card.status.state));
  }

  // A stream heard to go down is kept for the next summary; one back up before it is left out of it.
  noteDown(card, down) {
    const id = card.element.dataset.stream;
    if (down && card.down === false) this.wentDown.add(id);
    if (!down) this.wentDown.delete(id);
    if (card.down !== down) {
      card.down = down;
      this.downChanged();
    }
    if (this.wentDown.size > 0) this.downSummary.note();
  }

  // The summary of the streams gone down and still here, or null for none (or the connection's loss).
  downWords() {
    const down = [...this.wentDown].filter((id) => this.cards.has(id));
    this.wentDown.clear();
    if (!this.online || down.length === 0) return null;
    const on = this.node === null ? "" : ` on ${this.node}`;
    const one = down.length === 1 && this.cards.get(down[0]);
    return one ? `${down[0]}${on}: ${one.status.state}` : `${down.length} streams down${on}`;
  }

  // What the tile's panel says: the connection's loss, else the stream's state, else a stale picture.
  notice(card) {
    if (!this.online) return card.drawnAt === null ? noticeWithoutPicture(this.offline) : this.offline;
    return streamNotice(card.status, this.inference) ?? staleNotice(card);
  }

  // Once a second: a tile whose picture has grown stale says so, and the seconds since its last one.
  // A tile out of sight (the stream view is open, or the page is hidden: connection.js) is sent no
  // pictures: its time starts again when shown.
  checkStale() {
    const now = performance.now();
    for (const card of this.cards.values()) {
      if (card.drawnAt === null) continue;
      if (document.hidden || card.element.getClientRects().length === 0) card.drawnAt = now; // not seen
      if (this.notice(card)?.state === "stale" || card.panel.notice?.state === "stale") this.render(card);
    }
  }

  restartStaleClocks() {
    const now = performance.now();
    for (const card of this.cards.values()) {
      if (card.drawnAt !== null) card.drawnAt = now;
    }
  }

  remove(id) {
    const card = this.cards.get(id);
    if (!card) return;
    const focused = card.element.contains(document.activeElement);
    if (focused) this.passFocus(card.element);
    card.panel.show(null);
    clearTimeout(card.eventTimer);
    card.element.remove();
    this.cards.delete(id);
    if (card.down) this.downChanged();
    this.empty.hidden = this.cards.size > 0;
    if (focused) this.announce(`“${id}”${this.node === null ? "" : ` on ${this.node}`} was removed.`);
  }

  // The focus of a tile about to go: to the tile after it in the grid (of any node), else the one
  // before, else the grid itself, so the keyboard carries on where it was.
  passFocus(element) {
    const grid = this.root.closest(".grid") ?? this.root;
    const cards = [...grid.querySelectorAll(".card")];
    const at = cards.indexOf(element);
    const next = cards[at + 1] ?? cards[at - 1];
    if (next) {
      next.focus();
      return;
    }
    if (!grid.hasAttribute("tabindex")) grid.tabIndex = -1;
    grid.focus();
  }

  // Said politely, in the viewer's note above the grid where the page has one (a visible status line),
  // else in a visually hidden live region of this view's own.
  announce(text) {
    let note = document.getElementById("grid-note");
    if (!note) {
      if (!this.announcer) {
        this.announcer = liveRegion();
        (this.root.closest(".grid") ?? this.root).before(this.announcer);
      }
      note = this.announcer;
    }
    note.textContent = text;
    note.hidden = false;
  }

  async frame(meta, jpeg) {
    const card = this.cards.get(meta.stream);
    if (!card || !jpeg) return;
    const bitmap = await card.decoder.decode(jpeg);
    if (!bitmap) return;
    drawPicture(card.picture, bitmap);
    card.picture.dataset.seq = meta.seq;
    card.drawnAt = performance.now();
    if (card.panel.notice?.state === "stale") this.render(card);
  }
}

// A stream behind's processed rate against the one it wants: its input's, or its cap's ("3.7 of 15 fps").
export function behindRate(stream) {
  const wanted = wantedRate(stream);
  const of = wanted.capped ? `${wanted.fps} fps (capped)` : `${Math.round(wanted.fps)} fps`;
  return `${stream.processed_fps.toFixed(1)} of ${of}`;
}

// A tile's short words for a zone or line event, after its time of day: the stream view's list (events.js)
// says more ("#3 person entered loading"), which a tile's width would cut; a narrow tile cuts the words'
// end, never the time.
function tileEventWords(event) {
  const where = {
    zone_enter: `entered ${event.zone}`,
    zone_exit: `left ${event.zone}`,
    loiter: `loitering in ${event.zone}`,
    line_cross: `crossed ${event.line} (${event.direction})`,
  }[event.type];
  const at = new Date(event.time * 1000);
  const words = `${event.class} ${where}`;
  return Number.isNaN(at.getTime()) ? words : `${at.toLocaleTimeString()} · ${words}`;
}

// The note over a live tile whose last picture is older than a few of its frame intervals, or null.
function staleNotice(card) {
  if (card.drawnAt === null || card.fps === null) return null;
  const ageS = (performance.now() - card.drawnAt) / 1000;
  const staleAfterS = Math.max(STALE_MIN_S, STALE_FRAME_INTERVALS / Math.min(card.fps, THUMB_FPS));
  if (ageS < staleAfterS) return null;
  return { state: "stale", title: `No new picture for ${Math.floor(ageS)} s`, reason: "", nextAttemptAt: null };
}
