// The stream view's live track table (web/stream.js): a row per track, oldest first, updated in place
// frame by frame. It is an ARIA grid (index.html) and one tab stop, the arrow keys, Home and End moving
// between its rows; Enter or Space pins a row's track as a click does. The row the keyboard is on stays
// the tab stop while its track lives, and when that track ends under the focus the focus passes to a
// row beside it, so the keyboard carries on there rather than at the page's top.
//
// Which track is hovered, pinned or had the keyboard last is the view's to keep (the picture hovers and
// pins too): each function here is handed those as `marks`: {highlighted, pinned, keyboard}, track ids
// or null. The publish page's plain table (id, class, conf) is updated in place the same way.

import { reconcile } from "./dom.js";
import { trackColor } from "./overlay.js";

const TRACK_COLUMNS = 5; // id, class, conf, age, zones
const PLAIN_COLUMNS = 3; // the publish page's: id, class, conf

// The keys that move the keyboard between the track table's rows: the row each picks of `rows`, from
// the one at index `at` (-1: the table itself has the focus).
const ROW_KEYS = new Map([
  ["ArrowDown", (rows, at) => rows[Math.min(at + 1, rows.length - 1)]],
  ["ArrowUp", (rows, at) => rows[Math.max(at - 1, 0)]],
  ["Home", (rows) => rows[0]],
  ["End", (rows) => rows.at(-1)],
]);

// What a track's row says, column by column: the plain table shows the first PLAIN_COLUMNS.
function cellTexts(track) {
  const age = `${(track.age ?? 0).toFixed(1)} s`;
  return [track.id, track.class, track.conf.toFixed(2), age, (track.zones ?? []).join(", ")];
}

// A row of `columns` cells for track `id`, their text filled in by showRows().
function plainRow(id, columns) {
  const row = document.createElement("tr");
  row.dataset.track = id;
  for (let index = 0; index < columns; index += 1) row.insertCell().append(document.createTextNode(""));
  return row;
}

// A row of the viewer's track table: its colour's swatch first. aria-selected says which row is
// pinned, so that a screen reader says so.
function trackRow(id) {
  const row = plainRow(id, TRACK_COLUMNS);
  row.tabIndex = -1; // focusable; Enter or Space pins it, as a click does; keepTabStop() picks the tab stop
  row.setAttribute("aria-selected", "false");
  const swatch = document.createElement("span");
  swatch.className = "swatch";
  swatch.style.background = trackColor(id);
  row.cells[0].prepend(swatch);
  return row;
}

// `body`'s rows made a row per track of `tracks`, oldest first (ids count up), each with as many of
// its cellTexts() as it has cells; a track's row stays in its place while the track lives and has
// only its text that changed rewritten. `newRow(id)` makes the row of a track not shown yet.
function showRows(body, tracks, newRow) {
  const rows = new Map([...body.rows].map((row) => [Number(row.dataset.track), row]));
  const sorted = [...tracks].sort((a, b) => a.id - b.id);
  reconcile(
    body,
    sorted.map((track) => {
      const row = rows.get(track.id) ?? newRow(track.id);
      const texts = cellTexts(track);
      for (const [index, cell] of [...row.cells].entries()) {
        const text = cell.lastChild;
        if (text.data !== String(texts[index])) text.data = String(texts[index]);
      }
      return row;
    }),
  );
}

// The track table is one tab stop, as the ARIA grid pattern has it, and the arrow keys move within:
// the first row of `ids` (track ids, most wanted first) still in the table has tabIndex 0, else the
// first row; every other row -1.
function keepTabStop(body, ids) {
  const rows = [...body.rows];
  const stop = ids.map((id) => rows.find((row) => Number(row.dataset.track) === id)).find(Boolean) ?? rows[0];
  for (const row of rows) {
    const index = row === stop ? 0 : -1;
    if (row.tabIndex !== index) row.tabIndex = index;
  }
}

// The row with the keyboard's focus went with its track (`id`): the focus goes to the row after it,
// else the one before, else the table (until the focus leaves it); the row focused becomes the table's
// tab stop (focusin, listenToTrackTable()).
function passFocus(body, id) {
  const rows = [...body.rows];
  const next = rows.find((row) => Number(row.dataset.track) > id) ?? rows.at(-1);
  if (next) {
    next.focus({ preventScroll: true });
    return;
  }
  const table = body.closest("table");
  table.tabIndex = -1;
  table.focus({ preventScroll: true });
}

/**
 * The table whose rows are in `body` tells `on` what the mouse and the keyboard do there: hover(id) as
 * the mouse goes over a row (null: off the table), pin(id) on a click, Enter or Space, keyboard(id) as
 * a row takes the focus (it is made the tab stop at once). Ids come as the rows' data-track strings.
 */
export function listenToTrackTable(body, on) {
  const rowTrack = (event) => event.target.closest("tr[data-track]")?.dataset.track;
  body.addEventListener("mouseover", (event) => on.hover(rowTrack(event)));
  body.addEventListener("mouseleave", () => on.hover(null));
  body.addEventListener("click", (event) => on.pin(rowTrack(event)));
  body.addEventListener("focusin", (event) => {
    if (!event.target.matches("tr[data-track]")) return;
    const id = Number(event.target.dataset.track);
    on.keyboard(id);
    keepTabStop(body, [id]);
  });
  const table = body.closest("table");
  table.addEventListener("keydown", (event) => {
    const row = event.target.matches("tr[data-track]") ? event.target : null;
    if ((event.key === "Enter" || event.key === " ") && row) {
      event.preventDefault(); // Space would scroll the page
      on.pin(row.dataset.track);
    } else if (ROW_KEYS.has(event.key) && (row || event.target === table)) {
      event.preventDefault(); // the arrows would scroll the page
      const rows = [...body.rows];
      ROW_KEYS.get(event.key)(rows, rows.indexOf(row))?.focus();
    }
  });
  // Made focusable by passFocus() only to hold the focus while it has no rows: out of the tab order again after.
  table.addEventListener("blur", () => table.removeAttribute("tabindex"));
}

/**
 * Show `tracks` (a frame's metadata's) in `body`, oldest first (ids count up): a row stays in its place
 * while its track lives. Rows are updated in place, never rebuilt, so a click on one is not lost to the
 * frame that came between its press and its release.
 */
export function showTrackRows(body, tracks, marks) {
  const focused = body.contains(document.activeElement) ? Number(document.activeElement.dataset.track) : null;
  showRows(body, tracks, trackRow);
  if (focused !== null && !body.contains(document.activeElement)) passFocus(body, focused);
  markTrackRows(body, marks);
}

/** The publish page's plain table (id, class, conf) of `tracks`, in `body`, updated in place as the viewer's is. */
export function showPlainTrackRows(body, tracks) {
  showRows(body, tracks, (id) => plainRow(id, PLAIN_COLUMNS));
}

/** The rows in `body` marked anew: the highlighted one, the pinned one (aria-selected), the tab stop. */
export function markTrackRows(body, marks) {
  for (const row of body.rows) {
    const id = Number(row.dataset.track);
    row.classList.toggle("highlight", id === marks.highlighted);
    row.setAttribute("aria-selected", String(id === marks.pinned));
  }
  keepTabStop(body, [marks.keyboard, marks.pinned]);
}
