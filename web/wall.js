// The wall view of a grid (the viewer's and All cameras'): its tiles alone, laid out to fill the window
// with no scrolling, for a screen that shows the cameras all day (a wall screen, a kiosk). Each tile keeps
// its caption (which camera, whether it is live, its rate), its notices and its event mark: a person
// watching needs them. The page around the tiles (header, add form, notes) is hidden, not removed: leaving
// the wall shows it as it was. On from the Wall view button, or from the address (?wall=1, kept there so a
// reload or a kiosk browser given the address opens the wall); off from the button again or Escape.
// The window full screen is offered beside it (a wall screen wants both); leaving the wall leaves it too.
// The layout is worked out here, not by CSS: the column count that makes each picture largest depends on
// the window's shape, the number of tiles and the pictures' own shape, which CSS's grid cannot weigh. It is
// worked out again as the window resizes, tiles come and go, and pictures change shape. The wall's own
// controls (the top bar, floating at the top right) get room the tiles leave free, never a tile's corner:
// a strip across the top with them in a row, or a column down each side with them stacked, whichever
// leaves the pictures larger (a wide window's tiles often leave the sides free, a phone's the top).

// Below this width (CSS px) a tile's caption (id, state badge, rate) no longer fits its one line, and its
// picture is too small to make out from across a room: with more tiles than fit the window at this width,
// the wall keeps them this wide and scrolls, rather than shrink every camera into a thumbnail nobody can read.
const MIN_TILE_PX = 240;
// The shape (width / height) assumed where no picture's is known: a camera's usual 16:9. grid.js makes a
// tile's canvas 16:9 until its first picture, so such a tile counts as this shape; so does a wall of All
// cameras' placeholders alone (every node down).
const DEFAULT_ASPECT = 16 / 9;
const WALL_PARAM = "wall";
// What the layout counts as a tile: a camera's, and All cameras' placeholder of a node with none shown.
const TILES = ".card, .fleet-placeholder:not([hidden])";
// The top bar's class that stacks its controls in a column (style.css), for the room down the sides.
const COLUMN = "wall-column";

/** Whether `url` (the page's address) asks for the wall view: ?wall=1, or ?wall alone as a kiosk's may have it. */
export function wallAsked(url = location.href) {
  const value = new URL(url).searchParams.get(WALL_PARAM);
  return value !== null && value !== "0";
}

/**
 * The columns, and the picture's width in CSS px, that make each of `count` pictures of shape `aspect`
 * largest in a box `width` x `height`, tiles `gapPx` apart, each tile `chromeW` and `chromeH` larger than
 * its picture (borders, caption). Where that picture would be narrower than a tile of MIN_TILE_PX, as many
 * columns of at least that width as fit the box's width, and the rows below the box scroll.
 */
function wallLayout({ width, height, count, aspect, gapPx, chromeW, chromeH }) {
  let best = { columns: 1, pictureW: 0 };
  for (let columns = 1; columns <= count; columns++) {
    const rows = Math.ceil(count / columns);
    const byWidth = (width - (columns - 1) * gapPx) / columns - chromeW;
    const byHeight = ((height - (rows - 1) * gapPx) / rows - chromeH) * aspect;
    const pictureW = Math.floor(Math.min(byWidth, byHeight));
    if (pictureW > best.pictureW) best = { columns, pictureW };
  }
  if (best.pictureW + chromeW >= MIN_TILE_PX) return best;
  const columns = Math.max(1, Math.min(count, Math.floor((width + gapPx) / (MIN_TILE_PX + gapPx))));
  return { columns, pictureW: Math.floor((width - (columns - 1) * gapPx) / columns - chromeW) };
}

/** The shape the wall lays its tiles out for: the median of its pictures' (one of another shape is letterboxed). */
function pictureAspect(grid) {
  const aspects = [...grid.querySelectorAll(".card canvas")]
    .map((canvas) => canvas.width / canvas.height)
    .filter(Number.isFinite)
    .sort((a, b) => a - b);
  return aspects.length ? aspects[Math.floor(aspects.length / 2)] : DEFAULT_ASPECT;
}

/**
 * The wall view of `grid`, turned on and off by the Wall view button made in `controls` (with Full screen
 * beside it, where the page may go full screen). `laidOut()` is called after each layout (the tiles'
 * pictures are asked for as wide as they are shown: ThumbnailWidth).
 */
export class WallView {
  constructor(grid, controls, { laidOut = () => {} } = {}) {
    this.grid = grid;
    this.controls = controls;
    this.laidOut = laidOut;
    this.asked = wallAsked();
    this.gridShown = true; // the viewer's stream view hides the grid, and with it the wall (setGridShown)
    this.toggle = this.button("wall-toggle", "Wall view", "Only the cameras, filling the window; Escape leaves it");
    this.toggle.addEventListener("click", () => this.setAsked(!this.asked));
    this.fullScreen = document.fullscreenEnabled ? this.offerFullScreen() : null;
    new ResizeObserver(() => this.layOut()).observe(grid);
    // Tiles added or removed (a node's among them), a placeholder shown or hidden, a picture of a new shape.
    const watched = { childList: true, subtree: true, attributeFilter: ["width", "height", "hidden"] };
    new MutationObserver(() => this.layOut()).observe(grid, watched);
    window.addEventListener("keydown", (event) => this.keyDown(event));
    this.show();
  }

  button(id, text, title) {
    const button = document.createElement("button");
    button.id = id;
    button.type = "button";
    button.className = "quiet";
    button.textContent = text;
    button.title = title;
    button.setAttribute("aria-pressed", "false");
    this.controls.append(button);
    return button;
  }

  // The whole page full screen, not the grid alone: the wall's own controls stay within reach.
  offerFullScreen() {
    const button = this.button("wall-full-screen", "Full screen", "The wall on the whole screen; Escape leaves it");
    const page = document.documentElement;
    button.addEventListener("click", () => {
      const asked = document.fullscreenElement ? document.exitFullscreen() : page.requestFullscreen();
      asked.catch((error) => console.warn("segcast: full screen refused:", error.message));
    });
    document.addEventListener("fullscreenchange", () =>
      button.setAttribute("aria-pressed", String(document.fullscreenElement === page)),
    );
    return button;
  }

  /** Whether the page shows the grid (the viewer's stream view does not): the wall is only ever over the grid. */
  setGridShown(shown) {
    this.gridShown = shown;
    this.show();
  }

  // The wall on or off, in the address too (replaced, not pushed: Back leaves the page's view, not a display setting).
  setAsked(asked) {
    this.asked = asked;
    const url = new URL(location.href);
    if (asked) url.searchParams.set(WALL_PARAM, "1");
    else url.searchParams.delete(WALL_PARAM);
    history.replaceState(history.state, "", url);
    if (!asked && document.fullscreenElement === document.documentElement) {
      document.exitFullscreen().catch((error) => console.warn("segcast: full screen not left:", error.message));
    }
    this.show();
  }

  active() {
    return this.asked && this.gridShown;
  }

  show() {
    this.controls.hidden = !this.gridShown;
    this.toggle.setAttribute("aria-pressed", String(this.asked));
    if (this.fullScreen) this.fullScreen.hidden = !this.asked;
    document.body.classList.toggle("wall", this.active());
    if (!this.active()) this.bar().classList.remove(COLUMN);
    this.layOut();
  }

  // Escape leaves the wall; not one pressed in a dialog (the token's), nor the one that leaves full screen.
  keyDown(event) {
    if (event.key !== "Escape" || !this.active() || event.defaultPrevented || document.fullscreenElement) return;
    if (event.target.closest?.("dialog, input, textarea, select")) return;
    this.setAsked(false);
  }

  // What floats over the wall: the top bar the controls are in (All cameras' and the viewer's), else they alone.
  bar() {
    return this.controls.closest(".topbar") ?? this.controls;
  }

  layOut() {
    if (!this.active()) return;
    const count = this.grid.querySelectorAll(TILES).length;
    if (count === 0) return;
    const aspect = pictureAspect(this.grid);
    const chrome = this.tileChrome();
    const style = getComputedStyle(this.grid);
    const gapPx = parseFloat(style.columnGap) || 0;
    // The grid's box as the view gives it, before the room kept for the controls (its margins, set here).
    const side = parseFloat(style.marginRight) || 0;
    const top = parseFloat(style.marginTop) || 0;
    const rect = this.grid.getBoundingClientRect();
    const box = { top: rect.top - top, right: rect.right + side };
    const width = this.grid.clientWidth + 2 * side;
    const height = this.grid.clientHeight + top;
    const room = this.controlsRoom(box);
    const base = { count, aspect, gapPx, ...chrome };
    const strip = wallLayout({ ...base, width, height: height - room.top });
    const column = wallLayout({ ...base, width: width - 2 * room.side, height });
    const sides = column.pictureW > strip.pictureW;
    const { columns, pictureW } = sides ? column : strip;
    this.bar().classList.toggle(COLUMN, sides);
    this.grid.style.setProperty("--wall-top", `${sides ? 0 : room.top}px`);
    this.grid.style.setProperty("--wall-side", `${sides ? room.side : 0}px`);
    this.grid.style.setProperty("--wall-columns", String(columns));
    this.grid.style.setProperty("--wall-tile-width", `${pictureW + chrome.chromeW}px`);
    this.grid.style.setProperty("--wall-aspect", String(aspect));
    this.laidOut();
  }

  // The room (CSS px) the controls take from the top of the grid's `box` with them in a row, and from its
  // right side with them in a column (the top bar's padding is the gap they keep): none where they do not
  // reach into it.
  controlsRoom(box) {
    const bar = this.bar();
    const reach = (column) => {
      bar.classList.toggle(COLUMN, column);
      return bar.getBoundingClientRect();
    };
    const row = reach(false);
    const stacked = reach(true);
    if (row.width === 0) return { top: 0, side: 0 }; // nothing shown
    const room = (px) => Math.max(0, Math.ceil(px));
    return { top: room(row.bottom - box.top), side: room(box.right - stacked.left) };
  }

  // How much larger a tile is than its picture, across (borders) and down (borders, caption): from its parts,
  // not from the tile against its picture, as a layout that did not fit may have squeezed or cut either.
  tileChrome() {
    const card = this.grid.querySelector(".card");
    if (!card) return { chromeW: 0, chromeH: 0 };
    const caption = card.querySelector(".card-caption").getBoundingClientRect().height;
    return {
      chromeW: card.offsetWidth - card.clientWidth,
      chromeH: Math.ceil(card.offsetHeight - card.clientHeight + caption),
    };
  }
}
