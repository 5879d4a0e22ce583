// The WebSocket's JPEGs made pictures, as the grid's tiles, the stream view and the embed show them:
// one decoded at a time per picture (one arriving meanwhile is skipped: live, not complete), and a
// damaged one skipped too, said once per page rather than thrown at every frame that follows it.

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
