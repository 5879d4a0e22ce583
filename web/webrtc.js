// WebRTC with segcast: publish this browser's camera as a stream, or play a stream's annotated video.
//
// Signalling is one HTTP round trip (POST api/webrtc/publish or api/webrtc/play/<id>, see
// server/webrtc/routes.py): the offer is sent once all local ICE candidates are in it, and the
// server's answer already holds all of its own. ICE servers come from GET /api/webrtc/config (none on
// a LAN by default).
//
// Playback metadata arrives on the "meta" data channel, one message per video frame, and each frame
// shown is paired with its own (webrtc_pairing.js).
//
// A play offer names the page's open WebSocket (connection.js socketFor): a page closed or a browser
// quit tells its player nothing, but its socket closes at once, and the server closes the player with
// it. The page's socket reconnecting closes the player too; the page offers again once it is back.
//
// A player's picture is seen only while its page is: playWithFallback and WebRTCTransport (the
// viewer's stream view, web/stream.js) stop a player whose page has been hidden for
// HIDDEN_PLAYER_CLOSE_MS (a tab left in the background), and play again as it is shown (whileShown).
// Publishing goes on while hidden: a phone's camera page in the background keeps its camera on air.

import { answerOf, authHeaders, notSegcast, socketFor, withToken } from "./connection.js";
import { MetaPairing, parseMeta } from "./webrtc_pairing.js";

const ICE_GATHERING_TIMEOUT_MS = 3000;
// From the answer: peers that can reach each other connect well within it. An address the browser cannot
// reach (a container's, behind `docker run -p`) never connects; the caller should fall back at once.
const CONNECT_TIMEOUT_MS = 3000;
// A page hidden this long closes its players: the server stops encoding and sending H.264 for a picture
// no one sees (its peer and encoder freed). A glance at another tab or window is shorter, and keeps
// them: a new player costs an offer, ICE and a second or so (~5 s behind an ICE server that does not
// answer). A background tab's timers still fire within about a second of their time.
const HIDDEN_PLAYER_CLOSE_MS = 10000;
// WebRTCTransport: an attempt that shows nothing this long after the answer is given up on.
const FIRST_FRAME_TIMEOUT_MS = 5000;
// A connection "disconnected" this long is given up on: its picture is frozen meanwhile, and the browser
// may take ~15 s more to call it failed (a server that went away without closing it).
const DISCONNECTED_TIMEOUT_MS = 3000;
// A player whose shown frames fall this far behind those the page's WebSocket tells of, by the frames'
// own media time, is given up on as lost: with its network cut, the browser still calls the connection
// connected for ~5 s, then disconnected for DISCONNECTED_TIMEOUT_MS, its picture frozen all along. A
// playing one's frames are a few hundred ms behind the metadata (encoding, the jitter buffer).
const STALLED_BEHIND_S = 2;
// After a connection was lost (not refused), WebRTC is tried again after this, doubling up to the most
// while no attempt plays: a blip on the network shorter than it takes the view's other transport to be
// given up on would otherwise leave the view on that one for good.
const RETRY_FIRST_MS = 10000;
const RETRY_MAX_MS = 60000;
// getUserMedia's refusals, by DOMException name, in words that say what to do: the browser's own
// messages ("Permission denied", "Requested device not found") do not.
const CAMERA_ERRORS = {
  NotAllowedError: "Camera access was refused: allow it in the site settings, then try again.",
  NotFoundError: "No camera found: connect one, then try again.",
  NotReadableError: "The camera is in use by another program: close it, then try again.",
  OverconstrainedError: "The chosen camera was not found: choose another under Camera, then try again.",
};
// The stream ids this browser last published its camera under (publishedHere): this many, newest last.
const PUBLISHED_KEY = "segcast.published";
const PUBLISHED_KEPT = 20;

/**
 * A signalling request segcast refused or never answered: `status` is the HTTP status (0: no answer,
 * the network or the server is down), `retryAfterS` the wait its Retry-After header asks for (null:
 * none), so that a caller can tell a refusal from an outage and try again when that can help.
 */
export class SignallingError extends Error {
  constructor(message, { status = 0, retryAfterS = null, cause } = {}) {
    super(message, { cause });
    this.status = status;
    this.retryAfterS = retryAfterS;
  }
}

/** True where the camera can be asked for: https://, or http://localhost. */
export function canPublish() {
  return Boolean(window.isSecureContext && navigator.mediaDevices?.getUserMedia);
}

/**
 * Whether this browser published its camera under `streamId` (it remembers its last few): after its page
 * crashed or lost its connection, the server holds that id a few seconds more, and a page may wait for it.
 */
export function publishedHere(streamId) {
  return streamId !== undefined && publishedIds().includes(streamId);
}

function publishedIds() {
  try {
    const ids = JSON.parse(localStorage.getItem(PUBLISHED_KEY) ?? "[]");
    return Array.isArray(ids) ? ids : [];
  } catch {
    return []; // storage disabled, or not our list: nothing remembered
  }
}

function rememberPublished(streamId) {
  const ids = [...publishedIds().filter((id) => id !== streamId), streamId].slice(-PUBLISHED_KEPT);
  try {
    localStorage.setItem(PUBLISHED_KEY, JSON.stringify(ids));
  } catch {
    // storage disabled: a page after a crash then waits for no held id
  }
}

/** True where WebRTC playback can be tried at all. */
export function canPlay() {
  return typeof RTCPeerConnection === "function";
}

/**
 * Ask for the camera and publish it as a stream. `camera`: which one, as video constraints
 * ({deviceId: {exact}} or {facingMode: {exact}}; none: the browser's choice). Resolves once the server
 * has answered, with { streamId, stream (the MediaStream sent now, for a preview), pc, stop(),
 * switchCamera(camera) }. `onState` hears the connection's states ("connecting", "connected", "failed",
 * "closed"...). The camera is turned off whenever publishing ends: on a refusal or any other error (the
 * promise rejects; a SignallingError where segcast refused the offer or did not answer it), on stop(),
 * and when the connection fails or closes (after onState has heard it). The id it was published under
 * is remembered (publishedHere).
 *
 * switchCamera sends another camera over the same connection (RTCRtpSender.replaceTrack: the stream and
 * its id go on), one switch at a time. A phone opens one camera at a time, so the one sent is closed
 * first. Where the other cannot be opened it rejects with why, the camera of before opened again; where
 * neither opens, publishing ends (stop()) and the error has `cameraOff: true`.
 */
export async function publishCamera({
  streamId,
  camera = {},
  width = 1280,
  height = 720,
  frameRate = 30,
  onState,
} = {}) {
  if (!canPublish()) {
    throw new Error(
      "the camera is only available on a secure page: open segcast over https:// (or on localhost)",
    );
  }
  const size = { width: { ideal: width }, height: { ideal: height }, frameRate: { ideal: frameRate } };
  let sent = camera;
  let media = await openCamera({ ...camera, ...size });
  let pc = null;
  let sender = null;
  let stopped = false;
  const stop = () => {
    stopped = true;
    pc?.close();
    media.getTracks().forEach((t) => t.stop());
    window.removeEventListener("pagehide", stop);
  };
  let answer;
  try {
    const [track] = media.getVideoTracks();
    // Under load, send fewer frames rather than smaller ones: a tracker needs a steady image size.
    track.contentHint = "detail";
    pc = await newPeer(onState);
    ({ sender } = pc.addTransceiver(track, { direction: "sendonly", streams: [media] }));
    const settings = track.getSettings();
    const body = { stream: streamId || undefined, fps: settings.frameRate || frameRate };
    // The camera's size: the browser sends less at first and steps up as its bandwidth estimate
    // grows; knowing the size it heads for, the server scales those first frames up instead of
    // restarting every track at each step.
    if (Number.isInteger(settings.width) && Number.isInteger(settings.height)) {
      Object.assign(body, { width: settings.width, height: settings.height });
    }
    answer = await negotiate(pc, "api/webrtc/publish", body);
  } catch (error) {
    stop();
    throw error;
  }
  // A connection that failed sends nothing more: the camera is not left on for nothing.
  pc.addEventListener("connectionstatechange", () => {
    if (pc.connectionState === "failed" || pc.connectionState === "closed") stop();
  });
  // Closing the tab closes the connection anyway; saying so at once ends the stream without delay.
  window.addEventListener("pagehide", stop);
  rememberPublished(answer.stream);
  const switchCamera = async (next) => {
    media.getTracks().forEach((t) => t.stop());
    let refusal = null;
    const opened = await openCamera({ ...next, ...size }).catch((error) => {
      refusal = error;
      return openCamera({ ...sent, ...size }).catch(() => null);
    });
    if (stopped || opened === null) {
      opened?.getTracks().forEach((t) => t.stop());
      if (stopped) return;
      stop();
      throw Object.assign(refusal, { cameraOff: true });
    }
    media = opened; // what stop() turns off, from now
    const [track] = opened.getVideoTracks();
    track.contentHint = "detail";
    await sender.replaceTrack(track);
    if (refusal) throw refusal;
    sent = next;
  };
  return {
    streamId: answer.stream,
    get stream() {
      return media;
    },
    pc,
    stop,
    switchCamera,
  };
}

// The camera for the `video` constraints; refused, an Error in words that say what to do.
async function openCamera(video) {
  try {
    return await navigator.mediaDevices.getUserMedia({ video, audio: false });
  } catch (error) {
    throw new Error(CAMERA_ERRORS[error?.name] || error.message, { cause: error });
  }
}

/**
 * Play `streamId` over WebRTC into `video`. Resolves once connected, with { pc, stop() }; rejects
 * if it cannot (no WebRTC, refused, no connection within 3 s of the answer), so the caller can fall back.
 * `onMeta(meta)` gets each shown frame's metadata (the protocol's "frame" message, plus `pts`).
 * `image: "clean"` asks for the frames without the server's overlay, to draw one from `onMeta`.
 * `onAnswer()` is called once the server has answered: the answer may take seconds (the server gathers
 * its ICE candidates first, ~5 s with a STUN server that does not answer), so time the video from then.
 * Aborting `signal` while it connects gives up (the promise rejects); stop() ends it afterwards.
 */
export async function playStream(
  streamId,
  { video, onMeta, onState, onAnswer, image = "annotated", signal } = {},
) {
  if (!canPlay()) throw new Error("this browser has no WebRTC");
  const pc = await newPeer(onState, signal);
  pc.addTransceiver("video", { direction: "recvonly" });
  const channel = pc.createDataChannel("meta");
  const pairing = new MetaPairing(onMeta);
  channel.addEventListener("message", (event) => {
    const meta = parseMeta(event.data);
    if (meta === null) {
      // Not the protocol's (a server of another version, something in between): skipped, said, not thrown.
      console.warn("segcast: frame metadata that is not the protocol's was skipped:", String(event.data).slice(0, 80));
      return;
    }
    pairing.add(meta);
  });
  const playing = new Promise((resolve, reject) => {
    pc.addEventListener("track", (event) => {
      video.srcObject = event.streams[0] || new MediaStream([event.track]);
      video.muted = true;
      video.play().catch(() => {}); // autoplay of a muted video is allowed; a refusal shows controls
    });
    pc.addEventListener("connectionstatechange", () => {
      if (pc.connectionState === "connected") resolve();
      if (pc.connectionState === "failed") reject(new Error("the WebRTC connection failed"));
    });
    signal?.addEventListener("abort", () => reject(signal.reason));
  });
  playing.catch(() => {}); // awaited below unless negotiating failed first: not an unhandled rejection
  let timer;
  try {
    const body = async () => ({ image, socket: await socketFor() });
    await negotiate(pc, `api/webrtc/play/${encodeURIComponent(streamId)}`, body, signal);
    onAnswer?.();
    const late = new Promise((_, reject) => {
      const reason = `no WebRTC connection within ${CONNECT_TIMEOUT_MS / 1000} s`;
      timer = setTimeout(() => reject(new Error(reason)), CONNECT_TIMEOUT_MS);
    });
    await Promise.race([playing, late]);
  } catch (error) {
    pc.close();
    throw error;
  } finally {
    clearTimeout(timer);
  }
  pairing.watch(video);
  return {
    pc,
    stop() {
      pairing.stop();
      pc.close();
      video.srcObject = null;
    },
  };
}

/**
 * Play over WebRTC where possible, else call `fallback()` (e.g. the WebSocket or MJPEG view), and
 * also when an established connection fails later; only while the page is seen: a page hidden now
 * plays once it is shown; hidden for HIDDEN_PLAYER_CLOSE_MS, whichever plays is stopped (a player still
 * connecting gives up: its offer is aborted, its peer closed), and shown again it plays anew, WebRTC
 * first (`onState` hears its "connected"; `fallback()` is called again where it cannot). Aborting
 * `signal` ends it for good, whenever: while its first play still connects too, which is why a caller
 * that must be able to stop it from the start passes one. Ended, the fallback stops too where
 * `fallback()` returned a function that stops it. Resolves once the first play has settled, with
 * { mode: "webrtc"|"fallback"|"stopped" (ended before it played), stop }; stop() ends it as `signal` does.
 */
export async function playWithFallback(streamId, { signal, ...options } = {}) {
  const player = whileShown((playing) => playOnce(streamId, { ...options, signal: playing }));
  if (signal?.aborted) player.stop();
  else signal?.addEventListener("abort", player.stop, { once: true });
  const first = await player.first;
  return { mode: first?.mode ?? "stopped", stop: player.stop };
}

// One play: resolves with { mode, stop() }, or null where `signal` aborted before it played (no
// fallback then: nothing is wanted any more).
async function playOnce(streamId, { video, onMeta, fallback, onState, image, signal }) {
  let player = null;
  let stopFallback = () => {};
  const fallBack = () => {
    const stop = fallback();
    if (typeof stop === "function") stopFallback = stop;
  };
  try {
    player = await playStream(streamId, {
      video,
      onMeta,
      image,
      signal,
      onState: (state) => {
        onState?.(state);
        if (state === "failed" && player) {
          player.stop();
          fallBack();
        }
      },
    });
    return {
      mode: "webrtc",
      stop: () => {
        player.stop();
        stopFallback();
      },
    };
  } catch (error) {
    if (signal.aborted) return null;
    console.info("segcast: WebRTC playback unavailable, using the fallback:", error.message);
    fallBack();
    return { mode: "fallback", stop: () => stopFallback() };
  }
}

/**
 * A stream's clean frames over WebRTC, for a view that draws them itself with their metadata and has
 * another way to get them (the stream view: the WebSocket's JPEGs). `frame(video, meta)` hears each
 * frame shown in `video` (an unseen <video> put after `beside`), the first of a play included;
 * `fellBack(reason)` that they do not come over WebRTC now: an attempt could not play (refused, no
 * connection or no video in time), or a connection was lost or its video stalled (`reason` says which),
 * or the page has been hidden a while (`reason` null). The view tells it of the WebSocket's frames
 * (heard), by which it knows of a stall the browser reports seconds later, if at all. A connection lost
 * or stalled once it was up is tried again after 10 s, then 20, 40 and every 60 s while no attempt
 * plays; a first attempt that cannot play is the last until the page is shown again after a while hidden.
 * Only while the page is seen (whileShown): closed once it has been hidden for HIDDEN_PLAYER_CLOSE_MS,
 * played again at once as it is shown. stop() ends it for good.
 */
export class WebRTCTransport {
  constructor(streamId, { beside, frame, fellBack }) {
    this.streamId = streamId;
    this.beside = beside;
    this.frameShown = frame;
    this.fellBack = fellBack;
    this.attempt = null; // the attempt or player now (start)
    this.playing = false; // the attempt's frames are shown
    this.recovering = false; // a connection was lost and no attempt has played since: a failed one is retried
    this.retryMs = RETRY_FIRST_MS; // the wait before the next attempt while recovering
    this.retry = null; // its timer
    this.stopped = false; // for good (stop): the view has its frames from elsewhere already
    // Shown again, its video presents frames again only after a moment: heard() starts counting afresh.
    this.listening = new AbortController();
    const shownAgain = () => {
      if (this.attempt) this.attempt.shownUpTo = null;
    };
    document.addEventListener("visibilitychange", shownAgain, { signal: this.listening.signal });
    this.player = whileShown(async () => {
      this.start();
      return { stop: () => this.halt() };
    });
  }

  /** End it for good: no attempt, player or retry is left, and `fellBack` is not told. */
  stop() {
    this.stopped = true;
    this.listening.abort();
    this.player.stop();
  }

  /**
   * The view's WebSocket told of a frame (`meta`, the protocol's "frame" message, of this stream): a
   * player whose frames shown are STALLED_BEHIND_S behind it, by media time, is given up on as a
   * connection lost is, and tried again later. Not while the page is hidden (its video shows nothing).
   */
  heard(meta) {
    const { attempt } = this;
    if (!this.playing || !Number.isFinite(meta.media_time)) return;
    if (document.hidden || attempt.shownUpTo === null) {
      attempt.shownUpTo = document.hidden ? null : meta.media_time;
      return;
    }
    if (meta.media_time - attempt.shownUpTo <= STALLED_BEHIND_S) return;
    this.giveUp(attempt, `its video stalled: more than ${STALLED_BEHIND_S} s behind the WebSocket's frames`, true);
  }

  // A new attempt, unless stop() ended it for good: nothing started after that would ever be stopped.
  start() {
    if (this.stopped) return;
    const video = document.createElement("video");
    video.className = "rtc-source";
    video.muted = true;
    video.playsInline = true;
    video.setAttribute("aria-hidden", "true"); // the canvas shows its frames, and is named for them
    // In the document, though unseen, so that the browser presents (and reports) each of its frames.
    this.beside.after(video);
    const attempt = {
      video,
      player: null,
      abort: new AbortController(),
      connected: false, // it was up: failing now, it was lost
      firstFrame: null, // the timer that gives it up without a picture
      lost: null, // the one that gives it up disconnected
      shownUpTo: null, // the media time of its last frame shown (heard: of the WebSocket's, once shown again)
    };
    this.attempt = attempt;
    playStream(this.streamId, {
      video,
      image: "clean",
      signal: attempt.abort.signal,
      // From the answer, not the offer: the server may take seconds to answer (an ICE server that does
      // not answer costs ~5 s), and how long ICE may take after it is playStream's own time-out.
      onAnswer: () => {
        if (this.attempt !== attempt) return;
        const reason = `no video within ${FIRST_FRAME_TIMEOUT_MS / 1000} s`;
        attempt.firstFrame = setTimeout(() => this.giveUp(attempt, reason), FIRST_FRAME_TIMEOUT_MS);
      },
      // Only a frame with its metadata is drawn: one without leaves the picture as it was, and a pairing
      // never learnt again is a stall (heard) the WebSocket's frames make good.
      onMeta: (meta) => this.shown(attempt, meta),
      onState: (state) => {
        attempt.connected ||= state === "connected";
        // Lost once it was up (not refused): tried again, as one lost for a while below.
        const ended = state === "failed" || state === "closed";
        if (ended) this.giveUp(attempt, `the connection ${state}`, attempt.connected);
        clearTimeout(attempt.lost);
        if (state !== "disconnected") return;
        const reason = `the connection was lost for ${DISCONNECTED_TIMEOUT_MS / 1000} s`;
        attempt.lost = setTimeout(() => this.giveUp(attempt, reason, true), DISCONNECTED_TIMEOUT_MS);
      },
    }).then(
      (player) => {
        if (this.attempt === attempt) attempt.player = player;
        else player.stop(); // given up on, or stopped, while it connected
      },
      (error) => this.giveUp(attempt, error.message),
    );
  }

  // A frame of `attempt` shown, with its metadata: the first one makes it the one playing.
  shown(attempt, meta) {
    const { video } = attempt;
    if (this.attempt !== attempt || video.readyState < HTMLMediaElement.HAVE_CURRENT_DATA || !video.videoWidth) return;
    if (Number.isFinite(meta.media_time)) attempt.shownUpTo = meta.media_time;
    if (!this.playing) {
      clearTimeout(attempt.firstFrame);
      this.playing = true;
      this.recovering = false;
      this.retryMs = RETRY_FIRST_MS; // it plays: a later loss starts the retries afresh
    }
    this.frameShown(video, meta);
  }

  // `attempt` shows no picture, for `reason`: tried again later where its connection was `lost`, or
  // while recovering from a loss, until an attempt plays.
  giveUp(attempt, reason, lost = false) {
    if (this.attempt !== attempt) return;
    this.end();
    this.fellBack(reason);
    this.recovering ||= lost;
    if (!this.recovering) return;
    this.retry = setTimeout(() => {
      this.retry = null;
      this.start();
    }, this.retryMs);
    this.retryMs = Math.min(this.retryMs * 2, RETRY_MAX_MS);
  }

  // The page has been hidden a while (whileShown), or stop(): no attempt, player or retry is left. A view
  // that showed its frames is told it has them no more, unless it stopped them itself.
  halt() {
    clearTimeout(this.retry);
    this.retry = null;
    const played = this.playing;
    this.end();
    if (played && !this.stopped) this.fellBack(null);
  }

  // No attempt or player is left (a retry may be).
  end() {
    const { attempt } = this;
    this.attempt = null;
    this.playing = false;
    if (!attempt) return;
    clearTimeout(attempt.firstFrame);
    clearTimeout(attempt.lost);
    attempt.abort.abort(new Error("no longer wanted"));
    attempt.player?.stop();
    attempt.video.remove();
  }
}

// Keeps `play(signal)`'s player (a promise of its { stop() }, or of null: nothing played) on only
// while the page is seen: played once it is shown (now where it is), stopped once the page has been
// hidden for HIDDEN_PLAYER_CLOSE_MS, played again as it is shown, once the one before has stopped (so
// that two never share a video). Each play's `signal` aborts as that play is stopped: one still
// connecting gives up, and one still waiting for the one before never starts, so none starts after
// stop(). A play that throws is logged and counts as none played: the next showing plays again.
// `first`: the promise of the first play's player (null where stop() came before any played).
function whileShown(play) {
  let player = null; // the current play: { playing (its AbortController), on (the promise of its player) }
  let stopped = Promise.resolve(); // settled once the player before has stopped; never rejects
  let hiddenClose = null;
  let firstPlayed;
  const first = new Promise((resolve) => {
    firstPlayed = resolve;
  });
  const resume = () => {
    const playing = new AbortController();
    const on = stopped.then(() => (playing.signal.aborted ? null : play(playing.signal))).catch(playFailed);
    player = { playing, on };
    firstPlayed(on); // the first one only: a settled promise ignores the rest
  };
  const pause = () => {
    clearTimeout(hiddenClose);
    if (player === null) return;
    player.playing.abort();
    stopped = player.on.then((it) => it?.stop()).catch(playFailed);
    player = null;
  };
  const visibilityChanged = () => {
    clearTimeout(hiddenClose);
    if (document.hidden) hiddenClose = setTimeout(pause, HIDDEN_PLAYER_CLOSE_MS);
    else if (player === null) resume();
  };
  document.addEventListener("visibilitychange", visibilityChanged);
  if (!document.hidden) resume();
  return {
    first,
    stop() {
      document.removeEventListener("visibilitychange", visibilityChanged);
      pause();
      firstPlayed(null);
    },
  };
}

function playFailed(error) {
  console.error("segcast: playback failed:", error);
  return null;
}

async function newPeer(onState, signal) {
  const config = await fetchJson("api/webrtc/config", { signal });
  const pc = new RTCPeerConnection({ iceServers: config.ice_servers });
  pc.addEventListener("connectionstatechange", () => onState?.(pc.connectionState));
  return pc;
}

// `body`: the offer's other keys, or an async function giving them as the offer is sent.
async function negotiate(pc, path, body, signal) {
  await pc.setLocalDescription(await pc.createOffer());
  await gatheringComplete(pc);
  const keys = typeof body === "function" ? await body() : body;
  signal?.throwIfAborted();
  const answer = await fetchJson(path, {
    signal,
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ ...keys, type: "offer", sdp: pc.localDescription.sdp }),
  });
  await pc.setRemoteDescription({ type: answer.type, sdp: answer.sdp });
  return answer;
}

function gatheringComplete(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      if (pc.iceGatheringState !== "complete") return;
      pc.removeEventListener("icegatheringstatechange", done);
      clearTimeout(timer);
      resolve();
    };
    // A STUN server that does not answer must not hold the offer back: send what we have.
    const timer = setTimeout(resolve, ICE_GATHERING_TIMEOUT_MS);
    pc.addEventListener("icegatheringstatechange", done);
  });
}

async function fetchJson(path, options) {
  let response;
  try {
    response = await fetch(withToken(path), { ...options, headers: { ...authHeaders(), ...options?.headers } });
  } catch (error) {
    if (options?.signal?.aborted) throw error; // given up on by the caller: no outage to report
    throw new SignallingError(`no answer from segcast (${error.message})`, { cause: error });
  }
  const data = await answerOf(response);
  options?.signal?.throwIfAborted(); // a body cut off by the caller giving up is no answer
  // Something other than segcast answered (a Wi-Fi sign-in page, a proxy's): no answer to negotiate with.
  if (response.ok && data === null) throw new SignallingError(notSegcast(response), { status: response.status });
  if (!response.ok) {
    const retryAfterS = Number.parseFloat(response.headers.get("Retry-After"));
    throw new SignallingError(data?.error || `${response.status} ${response.statusText}`, {
      status: response.status,
      retryAfterS: Number.isFinite(retryAfterS) ? retryAfterS : null,
    });
  }
  return data;
}
