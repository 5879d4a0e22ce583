// Pairing a WebRTC player's frames with their metadata (webrtc.js playStream).
//
// Playback metadata arrives on the "meta" data channel, one "frame" message per video frame, each
// with the frame's `pts` on the 90 kHz video clock. The browser reports each shown frame's RTP
// timestamp, which is that pts plus an offset the sender chose at random; the offset is learnt from
// the first frames and then every frame is paired with its own metadata by timestamp. Its own module:
// the pairing is arithmetic on two clocks with no part in signalling or in the connection's life.

const META_KEPT = 120; // metadata of the last few seconds, waiting for their frames
const PTS_TOLERANCE = 2; // ticks of the 90 kHz clock lost to rounding on the way
const UNPAIRED_BEFORE_RESYNC = 30; // frames without metadata before the offset is learnt again
// Frames that must pair under a candidate offset, after the one it was taken from, before it is adopted
// alone: with pts from capture times a wrong one pairs a frame only by chance, and rarely two.
const OFFSET_EVIDENCE_FRAMES = 2;
// Frames after which, of several candidates that paired every one (pts evenly spaced), one is adopted.
const OFFSET_LEARN_FRAMES = 15;
const UINT32 = 2 ** 32;
const mod32 = (value) => ((value % UINT32) + UINT32) % UINT32;

// A "meta" data channel message as the protocol has it (a JSON object with a numeric pts), or null.
export function parseMeta(data) {
  try {
    const meta = JSON.parse(data);
    return Number.isFinite(meta?.pts) ? meta : null;
  } catch {
    return null;
  }
}

// Pairs each shown video frame with the metadata of exactly that frame, by RTP timestamp. Exported for
// tests/test_viewer_webrtc_pairing.py, which feeds it frames and metadata; the viewer uses it through
// playStream (webrtc.js).
export class MetaPairing {
  constructor(onMeta) {
    this.onMeta = onMeta;
    this.metas = new Map(); // pts mod 2^32 -> meta
    this.offset = null; // RTP timestamp minus pts, mod 2^32
    this.candidates = null; // offsets it may be, while it is learnt
    this.evidence = 0; // frames the candidates were sorted by
    this.unpaired = 0;
    this.latest = null;
    this.video = null;
  }

  add(meta) {
    this.latest = meta;
    this.metas.set(mod32(meta.pts), meta);
    if (this.metas.size > META_KEPT) this.metas.delete(this.metas.keys().next().value);
    // Without per-frame callbacks, the newest metadata is the best guess for the newest picture.
    if (!this.video?.requestVideoFrameCallback) this.onMeta?.(meta);
  }

  watch(video) {
    if (!video.requestVideoFrameCallback) return;
    this.video = video;
    const onFrame = (_now, frame) => {
      if (this.video !== video) return;
      this.show(frame.rtpTimestamp);
      video.requestVideoFrameCallback(onFrame);
    };
    video.requestVideoFrameCallback(onFrame);
  }

  stop() {
    this.video = null;
  }

  show(rtpTimestamp) {
    if (!this.onMeta) return;
    if (rtpTimestamp === undefined) {
      // A browser that does not report timestamps: the newest metadata is the best guess.
      if (this.latest) this.onMeta(this.latest);
      return;
    }
    if (this.offset === null) this.learn(rtpTimestamp);
    const meta = this.offset === null ? null : this.metaAt(rtpTimestamp, this.offset);
    if (meta) {
      this.unpaired = 0;
      this.onMeta(meta);
      return;
    }
    if (this.offset === null) return;
    this.unpaired += 1;
    // A new sender (another offset): learnt again, from the frames shown, as at the start.
    if (this.unpaired >= UNPAIRED_BEFORE_RESYNC) {
      this.offset = null;
      this.unpaired = 0;
    }
  }

  // The kept metadata of the frame shown at `rtpTimestamp`, were the offset `offset`; null if none.
  metaAt(rtpTimestamp, offset) {
    const pts = mod32(rtpTimestamp - offset);
    for (let delta = 0; delta <= PTS_TOLERANCE; delta += 1) {
      const meta = this.metas.get(mod32(pts + delta)) || this.metas.get(mod32(pts - delta));
      if (meta) return meta;
    }
    return null;
  }

  // Learns the offset from the frames shown, not from one guess: a frame is shown a few frames after its
  // metadata arrived (the jitter buffer), so the newest metadata is a later frame's, and a guess from it
  // pairs frames with others' metadata, or (pts unevenly spaced) with none. A frame's own metadata is
  // among those kept, so the offset is one of those they give; each frame shown next keeps only those
  // under which it pairs. Until one is adopted no metadata is shown: a pairing not confirmed may be wrong.
  learn(rtpTimestamp) {
    if (this.candidates !== null) {
      this.candidates = this.candidates.filter((offset) => this.metaAt(rtpTimestamp, offset));
      this.evidence += 1;
    }
    if (!this.candidates?.length) {
      // None paired this frame (its metadata was not in when they were taken, or was lost): from this one.
      this.candidates = [...this.metas.keys()].map((pts) => mod32(rtpTimestamp - pts));
      this.evidence = 0;
      return;
    }
    const alone = this.candidates.length === 1 && this.evidence >= OFFSET_EVIDENCE_FRAMES;
    if (!alone && this.evidence < OFFSET_LEARN_FRAMES) return;
    // Several left only where frames are evenly spaced: the one pairing the newest metadata (the metadata
    // kept in arrival order) pairs frames with metadata a few frames ahead at most.
    this.offset = this.candidates.at(-1);
    this.candidates = null;
  }
}
