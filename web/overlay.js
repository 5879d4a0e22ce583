// Client-side overlays: the server sends the clean frame and the metadata of exactly that frame, and
// the viewer draws masks, boxes, labels, trails and zone membership itself, so toggles and highlights
// cost no round trip.

const GOLDEN_RATIO = 0.618033988749895;
const MASK_OPACITY = 0.45;
const DIMMED_OPACITY = 0.25;
const REFERENCE_HEIGHT_PX = 720; // frame pixels: lines are 2 px wide on a frame this tall
// Track labels grow with the picture as it is shown (16 CSS px on one shown 720 px tall), and are never
// under LABEL_MIN_CSS_PX: a phone shows the picture ~220 px tall.
const LABEL_SHARE_OF_SHOWN_HEIGHT = 16 / 720;
const LABEL_MIN_CSS_PX = 12;

// The same colour per track id as the server's own annotation (server/delivery/annotate.py).
export function trackColor(id) {
  return `hsl(${trackHue(id)} 100% 57.5%)`; // HSV(hue, 0.85, 1) as HSL
}

function trackHue(id) {
  return Math.round(((id * GOLDEN_RATIO) % 1) * 360);
}

// Black or white, whichever contrasts more with the track's colour (WCAG 2 relative luminance): at
// least 4.58:1 either way, where one dark ink on every colour left a blue label at 2.6:1. The server
// picks its labels' ink between the two as well (annotate.py).
function labelInk(id) {
  const channel = (n) => {
    const k = (n + trackHue(id) / 30) % 12;
    const c = 0.575 - 0.425 * Math.max(-1, Math.min(k - 3, 9 - k, 1)); // HSL(hue, 100%, 57.5%), 0..1
    return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
  };
  const luminance = 0.2126 * channel(0) + 0.7152 * channel(8) + 0.0722 * channel(4);
  return (luminance + 0.05) / 0.05 >= 1.05 / (luminance + 0.05) ? "#000000" : "#ffffff";
}

// In passes, as the server draws: every track's mask, then trails, boxes and zone frames, then every
// label last, so no other track's mask, trail or box covers a label. `context`'s canvas holds the whole
// frame at any size (the stream view's: as it is shown in device pixels, or the frame's own if larger), so
// the metadata's frame pixels are scaled onto it, and labels are drawn in its own pixels, as sharp as it
// is. Returns the labels' rectangles ({left, top, width, height}, the canvas' pixels), in the order of
// meta.tracks.
export function drawOverlay(context, meta, show, highlightId) {
  const scale = Math.max(meta.height / REFERENCE_HEIGHT_PX, 0.4);
  const line = Math.max(1, Math.round(2 * scale));
  const [perFrameX, perFrameY] = [context.canvas.width / meta.width, context.canvas.height / meta.height];
  const label = labelSize(context.canvas);
  const pen = (track) => {
    const highlighted = track.id === highlightId;
    context.globalAlpha = highlightId == null || highlighted ? 1 : DIMMED_OPACITY;
    const color = trackColor(track.id);
    context.strokeStyle = color;
    context.fillStyle = color;
    context.lineWidth = highlighted ? line * 2 : line;
    return color;
  };
  context.save();
  context.scale(perFrameX, perFrameY); // masks, trails, boxes and zone frames in frame pixels
  for (const track of meta.tracks) {
    if (!show.masks || !track.polygon || track.polygon.length < 6) continue;
    pen(track);
    context.globalAlpha *= MASK_OPACITY;
    context.beginPath();
    context.moveTo(track.polygon[0], track.polygon[1]);
    for (let i = 2; i < track.polygon.length; i += 2) context.lineTo(track.polygon[i], track.polygon[i + 1]);
    context.closePath();
    context.fill();
  }
  for (const track of meta.tracks) {
    pen(track);
    if (show.trails && track.trail.length > 1) {
      context.beginPath();
      context.moveTo(track.trail[0][0], track.trail[0][1]);
      for (const [x, y] of track.trail.slice(1)) context.lineTo(x, y);
      context.stroke();
    }
    const [x1, y1, x2, y2] = track.box;
    if (show.boxes) context.strokeRect(x1, y1, x2 - x1, y2 - y1);
    if (show.zones && track.zones?.length) drawInZone(context, track.box, line);
  }
  context.restore();
  const labels = [];
  for (const track of show.labels ? meta.tracks : []) {
    const text = `${track.id} ${track.class} ${track.conf.toFixed(2)}`;
    const [x, y] = [track.box[0] * perFrameX, track.box[1] * perFrameY];
    labels.push(drawLabel(context, text, [x, y], pen(track), labelInk(track.id), label));
  }
  context.globalAlpha = 1;
  return labels;
}

// A track inside one of the stream's zones: a white dashed frame around its box, in any colour.
function drawInZone(context, [x1, y1, x2, y2], line) {
  const gap = line * 2;
  context.save();
  context.strokeStyle = "#ffffff";
  context.lineWidth = line;
  context.setLineDash([line * 4, line * 3]);
  context.strokeRect(x1 - gap, y1 - gap, x2 - x1 + 2 * gap, y2 - y1 + 2 * gap);
  context.restore();
}

// A label's font size in the canvas' pixels: by the size the picture is shown at, as the zone tags are
// (shape_drawing.js), so it is as readable on a phone as on a desktop, whatever the frame's size.
function labelSize(canvas) {
  const shown = pictureRect(canvas).height || canvas.height;
  const css = Math.max(LABEL_MIN_CSS_PX, LABEL_SHARE_OF_SHOWN_HEIGHT * shown);
  return Math.round((css * canvas.height) / shown);
}

// `size`: the font's, and [x, y] the box's top-left corner, in the canvas' pixels; the box around the text
// grows with the font. Above that corner (inside the box where it touches the top), and kept within the
// picture: on a phone the smallest readable label is wide for the frame, and one by a box at the right
// edge ran off it. Returns its rectangle.
function drawLabel(context, text, [x, y], color, ink, size) {
  const { width: pictureWidth, height: pictureHeight } = context.canvas;
  context.font = `${size}px system-ui, sans-serif`;
  const pad = Math.round(size / 5);
  const width = context.measureText(text).width + 2 * pad;
  const height = size + 2 * pad;
  const left = Math.max(0, Math.min(x, pictureWidth - width));
  const top = Math.max(0, Math.min(y - height >= 0 ? y - height : y, pictureHeight - height));
  context.fillStyle = color;
  context.fillRect(left, top, width, height);
  context.fillStyle = ink;
  context.textBaseline = "top";
  context.fillText(text, left + pad, top + pad);
  return { left, top, width, height };
}

// The rectangle the picture fills on screen: object-fit: contain letterboxes it when the canvas is
// capped in height (or pillarboxes it when its box is wider), so the element's own rectangle is not
// the picture's. Pointers are mapped to frame pixels through this.
export function pictureRect(canvas) {
  const rect = canvas.getBoundingClientRect();
  const scale = Math.min(rect.width / canvas.width, rect.height / canvas.height);
  const width = canvas.width * scale;
  const height = canvas.height * scale;
  return { left: rect.left + (rect.width - width) / 2, top: rect.top + (rect.height - height) / 2, width, height };
}

// The track under a point in frame pixels, smallest box first (so a small object inside a large one wins).
export function trackAt(meta, x, y) {
  const hits = meta.tracks.filter(({ box: [x1, y1, x2, y2] }) => x >= x1 && x <= x2 && y >= y1 && y <= y2);
  hits.sort((a, b) => area(a.box) - area(b.box));
  return hits[0] ?? null;
}

function area([x1, y1, x2, y2]) {
  return (x2 - x1) * (y2 - y1);
}
