// What the page says to a screen reader besides what it shows: visually hidden live regions, summaries
// said at most so often, so that a busy scene or a flapping camera does not speak without a pause, and
// which form field an error is about.

/**
 * A visually hidden `<p role="status">` with `classes` besides, for the caller to put in the page before
 * it has anything to say: a live region added with its words is not always spoken.
 */
export function liveRegion(...classes) {
  const region = document.createElement("p");
  region.className = [...classes, "visually-hidden"].join(" ");
  region.setAttribute("role", "status");
  return region;
}

/**
 * Says in `region` what `words()` returns, at most once every `minMs` and `gatherMs` after the first
 * note() at the soonest (what comes meanwhile is one summary). `words()` returning null says nothing,
 * and the next summary may then come without waiting out `minMs`.
 */
export class ThrottledAnnouncer {
  constructor(region, words, { minMs, gatherMs = 0 }) {
    this.region = region;
    this.words = words;
    this.minMs = minMs;
    this.gatherMs = gatherMs;
    this.timer = null;
    this.saidAt = -Infinity; // performance.now() of the last summary
  }

  /** Something to say: a summary comes when it may, one for all noted before it. */
  note() {
    if (this.timer !== null) return;
    const wait = Math.max(this.gatherMs, this.saidAt + this.minMs - performance.now());
    this.timer = setTimeout(() => this.flush(), wait);
  }

  flush() {
    this.timer = null;
    const text = this.words();
    if (text === null) return;
    this.region.textContent = text;
    this.saidAt = performance.now();
  }

  /** Nothing waits to be said, and the region says nothing. */
  clear() {
    clearTimeout(this.timer);
    this.timer = null;
    this.region.textContent = "";
  }
}

/**
 * `field` marked invalid, and described by the error's element (`errorId`) besides what describes it
 * already (its hint), so that a screen reader says what is wrong with it and still how to fill it in.
 */
export function markInvalid(field, errorId = null) {
  field.setAttribute("aria-invalid", "true");
  if (errorId === null) return;
  const hints = (field.getAttribute("aria-describedby") ?? "").split(" ").filter((id) => id && id !== errorId);
  field.setAttribute("aria-describedby", [...hints, errorId].join(" "));
}

/** `field` no longer marked invalid: the error's description (`errorId`) goes, its own hint stays. */
export function unmarkInvalid(field, errorId = null) {
  if (!field.hasAttribute("aria-invalid")) return;
  field.removeAttribute("aria-invalid");
  const hints = (field.getAttribute("aria-describedby") ?? "").split(" ").filter((id) => id && id !== errorId);
  if (hints.length) field.setAttribute("aria-describedby", hints.join(" "));
  else field.removeAttribute("aria-describedby");
}
