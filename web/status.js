// What is wrong with a stream, shown over its picture: the state, the reason and, while segcast
// retries, the countdown to the next attempt. Over the picture rather than in a tooltip, so that a
// phone (no hover) shows it too. The grid's tiles, the stream view and the embed page share it.

import { liveRegion } from "./announce.js";
import { serverNow } from "./api.js";

const COUNTDOWN_TICK_MS = 250;

// Only a stream without loop ends (a looping one plays again), and its frozen last frame says nothing of
// how to see it again: a PATCH of its settings as they are opens it again once, its counts from zero; one
// of loop plays it over and over, its counts adding up pass after pass, which the config key keeps so
// (README, --loop). For the operator, not a dashboard's visitor: the embed page hides it (style.css).
const REPLAY_HINT =
  'To play it again, counts from zero: PATCH {"loop": false}. Over and over, counts adding up: ' +
  'PATCH {"loop": true}, or loop = true in the config file (--loop).';

const TITLES = {
  starting: "Starting…",
  reconnecting: "Reconnecting",
  ended: "Ended",
  failed: "Failed",
};

/**
 * What a panel should say about `stream` ({state, error, next_attempt_at} as the API has them), or
 * null when there is nothing to say (live). `inference` ({state, error, next_attempt_at}, as in the
 * hello and inference messages) says whether frames are inferred: a model on a Triton server is not
 * while that server is down, and a live camera's pictures then come as they are, without tracks
 * (frames with `analysed: false`), which the notice says why in a strip along the top (`strip`).
 */
export function streamNotice(stream, inference = null) {
  if (stream?.state === "live" && inference?.state === "unavailable") {
    return {
      state: "no-inference",
      title: "Inference unavailable",
      reason: inference.error ? `Shown without analysis: ${inference.error}` : "Shown without analysis",
      nextAttemptAt: inference.next_attempt_at ?? null,
      strip: true,
    };
  }
  if (!stream?.state || stream.state === "live") return null;
  const ended = stream.state === "ended";
  const reason = stream.error || (ended ? "the video reached its end" : "");
  const nextAttemptAt = stream.state === "reconnecting" ? (stream.next_attempt_at ?? null) : null;
  const hint = ended ? REPLAY_HINT : "";
  return { state: stream.state, title: TITLES[stream.state] ?? stream.state, reason, hint, nextAttemptAt };
}

/** A notice of a page's own, for StatusPanel.show(), with no countdown. */
export const notice = (state, title, reason) => ({ state, title, reason, nextAttemptAt: null });

/** The notice for a page that has lost its connection to segcast: its pictures are frozen. */
export const OFFLINE_NOTICE = {
  state: "offline",
  title: "No connection to segcast",
  reason: "This is the last picture received. Reconnecting…",
  nextAttemptAt: null,
};

/** The same for a page that has no picture yet: there is no last one to speak of. */
export const OFFLINE_BEFORE_PICTURE_NOTICE = {
  ...OFFLINE_NOTICE,
  reason: "No picture has been received yet. Reconnecting…",
};

/**
 * The notice for a page whose HTTP requests segcast answers while its live connection (the WebSocket)
 * keeps failing before segcast's hello: segcast refuses it, or something in between cannot upgrade it.
 * Behind a reverse proxy that is the proxy's doing nearly always, and the page is the only place a
 * dashboard's visitor looks.
 */
export const LIVE_REFUSED_NOTICE = {
  state: "refused",
  title: "segcast answers, but its live connection does not open",
  reason:
    "segcast refuses or cannot upgrade this page's WebSocket: it may have as many viewers as it " +
    "takes (max_viewers, max_viewers_per_address), or a reverse proxy in between does not pass " +
    "WebSocket upgrades and the Host header on (README, “A phone on the same Wi-Fi”, has an nginx " +
    "example). Trying again…",
  nextAttemptAt: null,
};

/**
 * What `notice`, said while a page's connection is down, says over a picture that never came: one
 * that calls the picture shown the last received (OFFLINE_NOTICE, or a page's own notice that
 * carries a `beforePicture` variant) is not true of a canvas that has had none.
 */
export function noticeWithoutPicture(notice) {
  if (notice === OFFLINE_NOTICE) return OFFLINE_BEFORE_PICTURE_NOTICE;
  return notice.beforePicture ?? notice;
}

// How many sockets in a row must fail before their hello, each while the HTTP API answers, for a page
// to blame the live connection: one alone may be a server that was restarting as it tried.
const REFUSED_SOCKETS_BEFORE_BLAME = 2;

/**
 * Tells when LIVE_REFUSED_NOTICE is true of a page's connection: its sockets keep failing before
 * their hello while the same server answers the page's HTTP requests. A browser does not say why a
 * socket closed or was refused, so each loss is put to the API: `ask()` makes the page's own request,
 * and `judged(error, answer)` hears how it went (`error` null where it was answered) once the loss is
 * counted, for the page to say what it means: a token wanted, a server out of reach, a live connection
 * refused (`blamed`). One question at a time: sockets lost while one is on its way are judged by the
 * next, so that every loss counts and a server that keeps closing sockets is not asked more often than
 * it answers. The page calls hello() on each hello, and lost() as a socket closes or fails to open.
 */
export class LiveRefusals {
  constructor(ask, judged) {
    this.ask = ask;
    this.judged = judged;
    this.greeted = false; // the socket open now said hello
    this.inARow = 0; // sockets in a row that failed before their hello while the API answered
    this.unjudged = []; // the sockets lost since the last question went out: whether each was before its hello
    this.asking = false; // a question is on its way
  }

  hello() {
    this.greeted = true;
    this.inARow = 0;
  }

  /** The server did not answer over HTTP either (no socket was tried): an outage ends a run of refusals. */
  outage() {
    this.inARow = 0;
    this.unjudged = [];
  }

  /**
   * The socket closed or failed to open: the API is asked why. `unanswered`: its handshake was given up
   * on without an answer, no refusal (a browser holds back a host's sockets behind one still opening).
   */
  lost({ unanswered = false } = {}) {
    this.unjudged.push(!this.greeted && !unanswered);
    this.greeted = false;
    this.askWhy();
  }

  async askWhy() {
    if (this.asking) return; // judged by the question asked after the one on its way
    this.asking = true;
    try {
      while (this.unjudged.length > 0) {
        const losses = this.unjudged.splice(0);
        const [error, answer] = await this.ask().then(
          (answered) => [null, answered],
          (failure) => [failure, null],
        );
        for (const early of losses) this.inARow = early && error === null ? this.inARow + 1 : 0;
        this.judged(error, answer);
      }
    } finally {
      this.asking = false;
    }
  }

  /** Whether the live connection, not the server or the network, is why the page is offline. */
  get blamed() {
    return this.inARow >= REFUSED_SOCKETS_BEFORE_BLAME;
  }
}

const counting = new Set(); // panels showing a countdown
let ticker = null;

function tick() {
  for (const panel of counting) panel.renderCountdown();
  if (counting.size === 0) {
    clearInterval(ticker);
    ticker = null;
  }
}

function countdownText(nextAttemptAt) {
  const remaining = nextAttemptAt - serverNow();
  return remaining >= 0.5 ? `next attempt in ${Math.round(remaining)} s` : "trying again now…";
}

/**
 * A notice laid over a picture; `container` is the positioned element that holds the picture. `live`:
 * whether a screen reader speaks its changes (role="status"), as the one panel of a page should; a
 * grid's tiles are not, or an outage would have every tile speak at once. Its countdown is never
 * spoken as it ticks (it would be, every second): it is read where the reader reaches it. A live
 * panel whose notice clears says "Live" once, in a visually hidden status of its own (the panel is
 * hidden then, and a hidden live region is not spoken), so that a listener hears the stream came
 * back; not as a page's first "Connecting…" clears, which only says the page has just opened.
 */
export class StatusPanel {
  constructor(container, { live = true } = {}) {
    this.container = container;
    this.element = document.createElement("div");
    this.element.className = "status-panel";
    // The state and why, spoken as they change; the countdown beside them, outside the live region.
    this.says = document.createElement("div");
    this.says.className = "status-says";
    if (live) this.says.setAttribute("role", "status");
    this.title = document.createElement("strong");
    this.reason = document.createElement("span");
    this.reason.className = "status-reason";
    this.hint = document.createElement("span"); // what a person can do about it, where there is a way
    this.hint.className = "status-hint";
    this.says.append(this.title, this.reason, this.hint);
    this.countdown = document.createElement("span");
    this.countdown.className = "status-countdown";
    this.element.append(this.says, this.countdown);
    this.element.hidden = true;
    this.notice = null;
    container.append(this.element);
    // In the page, empty, before it has anything to say: a live region added with its words is not always spoken.
    this.cleared = null;
    if (live) {
      this.cleared = liveRegion("status-cleared");
      container.append(this.cleared);
    }
  }

  /** Show `notice` (from streamNotice, one of the notices above or the page's own), or hide the panel for null. */
  show(notice) {
    const before = this.notice;
    this.notice = notice;
    this.element.hidden = notice === null;
    this.container.classList.toggle("has-status", notice !== null);
    this.container.classList.toggle("status-strip", notice?.strip === true);
    this.element.dataset.state = notice?.state ?? "";
    if (notice === null) {
      counting.delete(this);
      if (this.cleared && before !== null && before.state !== "connecting") this.cleared.textContent = "Live";
      return;
    }
    if (this.cleared?.textContent) this.cleared.textContent = "";
    // A page shows its notice again on every poll: a live region rewritten with the same words may be
    // spoken again, so they are left as they are, and only the countdown (never spoken) is brought up to date.
    const hint = notice.hint ?? "";
    const same =
      before?.state === notice.state &&
      before.title === notice.title &&
      before.reason === notice.reason &&
      (before.hint ?? "") === hint;
    if (!same) {
      this.title.textContent = notice.title;
      this.reason.textContent = notice.reason;
      this.reason.title = notice.reason;
      this.reason.hidden = !notice.reason;
      this.hint.textContent = hint;
      this.hint.hidden = !hint;
    }
    if (notice.nextAttemptAt !== null) {
      counting.add(this);
      ticker ??= setInterval(tick, COUNTDOWN_TICK_MS);
    } else {
      counting.delete(this);
    }
    this.renderCountdown();
  }

  renderCountdown() {
    const at = this.notice?.nextAttemptAt ?? null;
    this.countdown.hidden = at === null;
    this.countdown.textContent = at === null ? "" : countdownText(at);
    this.countdown.dataset.at = at ?? ""; // the server's own figure, for tools and tests
  }
}
