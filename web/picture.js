// The WebSocket's JPEGs made pictures, as the grid's tiles, the stream view and the embed show them:
// one decoded at a time per picture (one arriving meanwhile is skipped: live, not complete), and a
// damaged one skipped too, said once per page rather than thrown at every frame that follows it. The
// stream view's canvas is kept at the size its picture is shown at (ShownCanvas), for a sharp overlay.

let damageSaid = false;

export class JpegDecoder {
  constructor() {
    this.busy = false;
  }

  /** `jpeg`'s picture, or null where it is skipped: another is still being decoded, or it is damaged. */
  async decode(jpeg) {
    if (this.busy) return null;
    this.busy = true;
    try {
      return await createImageBitmap(new Blob([jpeg], { type: "image/jpeg" }));
    } catch (error) {
      if (!damageSaid) console.warn("segcast: a picture that could not be decoded was skipped:", error.message);
      damageSaid = true;
      return null;
    } finally {
      this.busy = false;
    }
  }
}

/** Draw `bitmap` whole onto `canvas`, which takes its size, and free it. */
export function drawPicture(canvas, bitmap) {
  if (canvas.width !== bitmap.width || canvas.height !== bitmap.height) {
    canvas.width = bitmap.width;
    canvas.height = bitmap.height;
  }
  canvas.getContext("2d").drawImage(bitmap, 0, 0);
  bitmap.close();
}

/**
 * Keeps `canvas` holding a whole frame at the size it is shown at, in device pixels, so that what is drawn
 * onto it with the frame (the stream view's overlay) is as sharp as the screen: drawn in the frame's own
 * pixels and scaled up by CSS, the labels of a 320x240 substream shown 1280 px wide were blurred, and on
 * a HiDPI screen those of any frame. Never with fewer pixels than the frame, though: a frame larger than
 * it is shown is drawn whole, for the browser to shrink as it did before, never resampled twice, and at
 * no more cost than before. The element takes the frame's shape (aspect-ratio), so its layout never
 * depends on its backing store's rounded size; object-fit still letterboxes it (pictureRect).
 * `resized()` is called as the shown size changes (a window resized or zoomed, full screen, another
 * screen), for the picture to be drawn again: a paused one gets no new frame to be drawn with.
 */
export class ShownCanvas {
  constructor(canvas, resized) {
    this.canvas = canvas;
    this.shape = ""; // the aspect-ratio given the element
    this.shown = [0, 0]; // its content box in CSS pixels, as last observed (0: not laid out)
    new ResizeObserver(([entry]) => {
      this.shown = [entry.contentRect.width, entry.contentRect.height];
      resized();
    }).observe(canvas);
    watchPixelRatio(resized);
  }

  /**
   * Size the backing store for a frame of `width` x `height`: that frame scaled up to fit the element as
   * it is shown, in device pixels (the frame's own size while it is not laid out, or shown smaller).
   * Setting it clears the canvas and its context's state, so it is set only when it changes.
   */
  fit(width, height) {
    const { canvas } = this;
    const shape = `${width} / ${height}`;
    if (shape !== this.shape) {
      canvas.style.aspectRatio = shape;
      this.shape = shape;
    }
    const [shownWidth, shownHeight] = this.shown;
    const scale = Math.max(1, Math.min(shownWidth / width, shownHeight / height) * devicePixelRatio);
    const backingWidth = Math.max(1, Math.round(width * scale));
    const backingHeight = Math.max(1, Math.round(height * scale));
    if (canvas.width !== backingWidth || canvas.height !== backingHeight) {
      canvas.width = backingWidth;
      canvas.height = backingHeight;
    }
  }
}

// Calls `changed()` as the page moves to a screen of another pixel ratio, which changes no CSS size.
// (A ResizeObserver's device-pixel box would tell both at once, but Chromium's ignores an emulated ratio.)
function watchPixelRatio(changed) {
  const query = matchMedia(`(resolution: ${devicePixelRatio}dppx)`);
  query.addEventListener(
    "change",
    () => {
      watchPixelRatio(changed);
      changed();
    },
    { once: true },
  );
}
