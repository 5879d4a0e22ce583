// This page: publish the camera, then watch it come back segmented (WebRTC, else MJPEG). A camera
// whose connection was lost is published again under its id by itself, a few times with growing
// waits, until Stop; one the server cannot keep up with says so, in the viewer's words. Hidden (a
// phone's camera page in the background) it goes on publishing, but stops playing back until shown.
// Which camera it sends is the person's choice (a phone's back or front, or one camera by name),
// kept for the next visit; a choice changed while publishing switches the camera on the same stream.
import { getStream, mintToken } from "./api.js";
import { Connection, TOKEN_EXPIRED as TOKEN_EXPIRED_CLOSE, carryToken, pageToken, withToken } from "./connection.js";
import { behindAdvice, behindRate } from "./grid.js";
import { showPlainTrackRows } from "./track_table.js";
import { SignallingError, canPublish, playWithFallback, publishCamera, publishedHere } from "./webrtc.js";

// After a lost connection the camera is published again after this, doubling up to the most, and
// at most this many times in a row (about a minute in all) before the page gives up.
const REPUBLISH_FIRST_MS = 1000;
const REPUBLISH_MAX_MS = 16000;
const REPUBLISH_ATTEMPTS = 6;
// How often the page asks whether the server keeps up with the camera (it judges over seconds).
const PACE_POLL_MS = 2000;
// The connection's states (RTCPeerConnection.connectionState) in words; the badge's data-state has the state.
const STATE_WORDS = {
  new: "connecting…",
  connecting: "connecting…",
  connected: "publishing",
  disconnected: "connection lost",
  failed: "connection lost",
};
const LOST = "Connection to segcast lost";
// Why segcast ends a camera whose access token expired (server/webrtc/peers.py): a token that
// expired refuses every publish after it too, so the camera is not published again.
const TOKEN_EXPIRED = "its access token expired";
const FRESH_TOKEN = "Reload the page with a fresh access token to publish it again.";
const NEEDS_ADMIN =
  "Publishing a camera needs an admin token: press Use my camera to give one, or open this page with " +
  "?token= and a signed admin token (POST /api/tokens; see the README, “Security”).";
// The close code of the page's WebSocket as segcast stops (server/app.py: going away, at shutdown).
const GOING_AWAY_CLOSE = 1001;
const SERVER_STOPPING = "segcast is stopping or restarting: this page publishes the camera again once it is back.";
// The camera chosen last, kept for the next visit as the choice's {value, label}.
const CAMERA_KEY = "segcast.camera";
// Said after the name of a kept camera the browser no longer lists (unplugged, or another browser's).
const NOT_FOUND = "(not found)";
// The sides of a phone a camera may face (InputDeviceInfo.getCapabilities().facingMode), in words.
const FACING_WORDS = { environment: "Back camera", user: "Front camera" };
// Said after a camera chosen while publishing could not be opened.
const KEPT_CAMERA = "This page goes on with the camera it had.";
const WAITING =
  `${LOST}: waiting for it to come back. If no video reaches the server for a few seconds it ends ` +
  "the camera, which this page then publishes again by itself.";

for (const link of document.querySelectorAll(".topbar a")) carryToken(link);

const form = document.getElementById("publish-form");
const useButton = document.getElementById("use-camera");
const status = document.getElementById("publish-status");
const error = document.getElementById("publish-error");
const stopButton = document.getElementById("stop-camera");
const fallbackImage = document.getElementById("annotated-fallback");
const viewerLink = document.getElementById("open-viewer");
const pace = document.getElementById("publish-pace");
const trackBody = document.querySelector("#tracks tbody");
const cameraChoice = document.getElementById("camera-choice");
// What the person asked for, from "Use my camera" until Stop or an end that trying again cannot
// cure: {streamId (set by the first publish), recovering (from a lost connection until one is up
// again), wasUp (a connection of it was up once: one that does not come up again is the network still
// out, not one that needs TURN), attempt (of publishing again), heldRetried (once for an id still held),
// timer (of the next attempt)}. The last three are reset only once a connection is up (showState).
let wanted = null;
// The camera on now: {want, published, playback (aborted to stop its playback), video, paceTimer, camera
// (the choice it sends), switching (to the choice made since)}; null while it is off.
let session = null;
let server = null; // while the camera is on: the WebSocket that says when the server ends its stream

// The server ends a published camera for reasons of its own (removed through the API, failed,
// no video, its access token expired) and closes its peer: the browser only notices that as a
// connection timing out, ~20 s later and with no reason. The WebSocket's "status" and
// "removed" messages (docs/protocol.md, sent to every client) say it at once, and why. One that
// ended is published again (a lost connection is the usual cause); a removed or failed one is not,
// nor one whose access token expired. The page's own signed token expiring ends the camera and closes
// this socket at once, before segcast can say so on it: the close's code says it instead, and neither
// the socket nor the camera is tried again with a token every attempt would be refused for. segcast
// stopping closes this socket as "going away" at once, while the camera's connection notices nothing
// for ~8 s: the close says it, and the camera is published again as after a lost connection.
function watchServer() {
  server ??= new Connection({
    state: (state, why) => {
      if (state === "down" && why.code === TOKEN_EXPIRED_CLOSE && pageToken) {
        giveUp(`The server ended this camera: ${TOKEN_EXPIRED}. ${FRESH_TOKEN}`);
      } else if (state === "down" && why.code === GOING_AWAY_CLOSE) {
        lost(SERVER_STOPPING);
      }
    },
    hello: (message) => {
      // The first hello lists the stream (added before the answer came); a later one, after the
      // socket was down, may not: the same outage cut its video for longer than segcast waits.
      if (session && !message.streams.some((s) => s.id === session.published.streamId)) {
        lost(`${LOST}: the server ended this camera meanwhile, as no video reached it.`);
      }
    },
    event: (message) => {
      if (!session || message.stream !== session.published.streamId) return;
      if (message.type === "removed") giveUp("The server ended this camera: it was removed.");
      else if (message.type === "status" && message.state === "failed") {
        giveUp(`The server ended this camera: ${message.error || "it failed"}.`);
      } else if (message.type === "status" && message.state === "ended" && message.error === TOKEN_EXPIRED) {
        giveUp(`The server ended this camera: ${TOKEN_EXPIRED}. ${FRESH_TOKEN}`);
      } else if (message.type === "status" && message.state === "ended") {
        lost(endedReason(message.error, session.want));
      }
    },
  });
}

// Why segcast ended the camera, from its `error` (server/webrtc: a lost connection's is "connection
// lost: no video for 5 s", one that never came up's "not connected within 5 s"; none where its
// connection closed without a word), in plain words. A connection that never came up for a camera
// whose connection was up before (`want`) is the network not back yet, which TURN would not cure.
function endedReason(said, want) {
  const noVideo = said?.match(/^connection lost: no video for (.+) s$/);
  if (noVideo) return `${LOST}: the server ended this camera, as no video reached it for ${noVideo[1]} s.`;
  const notConnected = said?.match(/^not connected within (.+) s$/);
  if (notConnected && want.wasUp) {
    return `${LOST}, and it could not reconnect yet: the connection did not come up within ${notConnected[1]} s.`;
  }
  if (notConnected) {
    return (
      `The camera's connection to segcast did not come up within ${notConnected[1]} s: a network that ` +
      "blocks UDP between them needs a TURN server (README, “Networks”)."
    );
  }
  return said ? `The server ended this camera: ${said}.` : `${LOST}: the server ended this camera.`;
}

// A browser gives a camera to secure pages only: off here, the button is too, and the README says how.
if (!canPublish()) {
  useButton.disabled = true;
  cameraChoice.disabled = true;
  error.textContent =
    "The camera needs a secure page: open segcast over https:// (or on localhost). " +
    "See the README, “A phone on the same Wi-Fi”.";
}

// The camera choice as getUserMedia's video constraints: "" is the browser's own choice, "facing:<mode>"
// a side of a phone, "device:<id>" one camera. Exact: a camera that is not there is said, not swapped.
function cameraConstraints(value) {
  const [, kind, what] = /^(facing|device):(.+)$/.exec(value) ?? [];
  if (kind === "facing") return { facingMode: { exact: what } };
  if (kind === "device") return { deviceId: { exact: what } };
  return {};
}

function keptCamera() {
  try {
    const kept = JSON.parse(localStorage.getItem(CAMERA_KEY) ?? "null");
    return typeof kept?.value === "string" && typeof kept.label === "string" ? kept : null;
  } catch {
    return null; // storage disabled, or not our choice: the browser's own camera
  }
}

// Kept under the camera's own name (an option's data-label), never the words listCameras adds to it.
function keepCamera() {
  const value = cameraChoice.value;
  const option = cameraChoice.selectedOptions[0];
  const label = option.dataset.label ?? option.text;
  try {
    localStorage.setItem(CAMERA_KEY, JSON.stringify({ value, label }));
  } catch {
    // storage disabled: the next visit starts with the browser's own camera
  }
}

/**
 * Offer the cameras the browser lists, and each side of a phone one of them faces. Until the camera is
 * allowed the browser lists them without ids or names: filled at load (allowed on an earlier visit), once
 * the camera was asked for, and as cameras come and go. The kept choice stays chosen: offered under its
 * name until the cameras are listed, and once they are, one they do not list as its name "(not found)".
 * Publishing then asks for it exactly and says it was not found, rather than sending another camera the
 * person did not choose; choosing another keeps that one instead, and a camera plugged back is offered.
 */
async function listCameras() {
  const devices = await navigator.mediaDevices.enumerateDevices().catch(() => []);
  const cameras = devices.filter((device) => device.kind === "videoinput" && device.deviceId);
  const facing = new Set(cameras.flatMap((camera) => camera.getCapabilities?.().facingMode ?? []));
  const choices = [["", "Default camera"]];
  for (const [mode, words] of Object.entries(FACING_WORDS)) {
    if (facing.has(mode)) choices.push([`facing:${mode}`, words]);
  }
  cameras.forEach((camera, at) => choices.push([`device:${camera.deviceId}`, camera.label || `Camera ${at + 1}`]));
  const kept = keptCamera();
  const offered = (value) => choices.some(([choice]) => choice === value);
  if (kept && !offered(kept.value)) {
    const words = cameras.length === 0 ? kept.label : `${kept.label} ${NOT_FOUND}`;
    choices.push([kept.value, kept.label, words]);
  }
  const chosen = kept?.value ?? cameraChoice.value;
  const options = choices.map(([value, label, words = label]) => {
    const option = new Option(words, value);
    option.dataset.label = label;
    return option;
  });
  cameraChoice.replaceChildren(...options);
  cameraChoice.value = offered(chosen) ? chosen : "";
}

/**
 * Send the camera chosen now in place of `current`'s, over its connection, one switch at a time: a choice
 * made during one is followed once it is done. One that cannot be opened says why, and the choice goes
 * back to the camera sent before (opened again); where neither opens, the camera is off, saying why.
 */
async function followChoice(current) {
  if (current.switching) return;
  current.switching = true;
  while (session === current && cameraChoice.value !== current.camera) {
    const before = current.camera;
    current.camera = cameraChoice.value;
    try {
      await current.published.switchCamera(cameraConstraints(current.camera));
      if (error.textContent.endsWith(KEPT_CAMERA)) error.textContent = "";
    } catch (reason) {
      if (reason.cameraOff && session === current) giveUp(reason.message);
      else if (session === current) {
        current.camera = cameraChoice.value = before;
        keepCamera();
        error.textContent = `${reason.message} ${KEPT_CAMERA}`;
      }
    }
    if (session === current) document.getElementById("preview").srcObject = current.published.stream;
  }
  current.switching = false;
}

function showTracks(meta) {
  showPlainTrackRows(trackBody, meta.tracks);
  trackBody.dataset.count = meta.tracks.length;
}

// Each camera plays back into a video of its own: the player of a camera turned off while it
// connected must not take over the next camera's picture, nor blank it as it stops.
function freshVideo() {
  const old = document.getElementById("annotated");
  const video = old.cloneNode(false);
  old.replaceWith(video);
  return video;
}

// Nothing of a camera's playback stays once it is off, nor before the next one plays.
function hidePlayback() {
  document.getElementById("annotated").hidden = true;
  fallbackImage.hidden = true;
  fallbackImage.removeAttribute("src");
  document.getElementById("play-mode").textContent = "";
  showTracks({ tracks: [] });
  showPace(null);
}

function showWebRTC(video) {
  video.hidden = false;
  fallbackImage.hidden = true;
  document.getElementById("play-mode").textContent = "(WebRTC)";
}

function showFallback(streamId) {
  document.getElementById("annotated").hidden = true;
  fallbackImage.src = withToken(`api/streams/${encodeURIComponent(streamId)}/mjpeg`);
  fallbackImage.hidden = false;
  document.getElementById("play-mode").textContent = "(MJPEG)";
  return () => { fallbackImage.removeAttribute("src"); };
}

// Whether the server keeps up with the camera, in the viewer's words (web/grid.js): "behind: 3.7 of
// 15 fps", and what to do. `stream` as GET /api/streams/<id> has it; null says nothing.
function showPace(stream) {
  const behind = stream?.behind === true;
  pace.hidden = !behind;
  if (!behind) {
    pace.replaceChildren();
    return;
  }
  const words = Object.assign(document.createElement("strong"), { textContent: `behind: ${behindRate(stream)}` });
  const advice = Object.assign(document.createElement("small"), {
    className: "pace-advice",
    textContent: behindAdvice(stream),
  });
  pace.replaceChildren(words, advice);
}

// Ask for the camera's pace now and every PACE_POLL_MS while `current` is on, one question at a time.
async function watchPace(current) {
  const stream = await getStream(current.published.streamId, { interactive: false }).catch(() => null);
  if (session !== current) return;
  if (stream) showPace(stream);
  current.paceTimer = setTimeout(() => watchPace(current), PACE_POLL_MS);
}

// Links away from the page would end the camera ("pagehide" turns it off): while one is on or
// coming back, they open in a new tab (the viewer's link always does).
function keepLinksInNewTabs(keep) {
  for (const link of document.querySelectorAll(".topbar a")) {
    if (keep) Object.assign(link, { target: "_blank", rel: "noopener" });
    else {
      link.removeAttribute("target");
      link.removeAttribute("rel");
    }
  }
}

function showState(current, state) {
  const negotiating = current.published === null && wanted === current.want;
  if (session !== current && !negotiating) return; // a camera since turned off
  status.textContent = STATE_WORDS[state] ?? state;
  status.dataset.state = state;
  if (state === "disconnected") error.textContent = WAITING;
  else if (state === "connected" && error.textContent === WAITING) error.textContent = "";
  // Back for real only once connected: an answered offer whose connection never comes up (UDP
  // blocked, no TURN) counts as a failed attempt, or the page would publish it again for ever.
  if (state === "connected") {
    Object.assign(current.want, { recovering: false, wasUp: true, attempt: 0, heldRetried: false });
  }
  // publishCamera turns the camera off with a connection that failed: the page publishes it again.
  if (session === current && (state === "failed" || state === "closed")) lost(`${LOST}.`);
}

/**
 * Resolves once this page may publish (an admin, or a server without tokens), the person asked for a
 * token as the viewer asks where it may not; throws NEEDS_ADMIN where none that may is given. Asked
 * before the camera: a page without a token had the browser ask for the camera, then was refused in the
 * API's words. Minting an admin token is allowed to an admin alone and changes nothing, so the page asks
 * for one it does not use. Any other answer, or none, is left to publishing, which says what it means.
 */
async function adminAccess() {
  try {
    await mintToken("admin", 1);
  } catch (reason) {
    const lowRole = reason.status === 403 && / role/.test(reason.message); // not a cross-site page's or a host's
    if (reason.status === 401 || lowRole) throw new Error(NEEDS_ADMIN);
  }
}

// Publish the camera for `want`: at a press of "Use my camera", or again after a lost connection.
async function start(want) {
  status.textContent = want.recovering ? "publishing again…" : "asking for the camera…";
  delete status.dataset.state;
  if (!want.recovering) await adminAccess();
  const camera = cameraChoice.value;
  const current = { want, published: null, playback: null, video: null, paceTimer: null, camera, switching: false };
  const onState = (state) => showState(current, state);
  const asked = publishCamera({ streamId: want.streamId, camera: cameraConstraints(camera), onState });
  // Asked for, the camera may have been allowed whatever came of it: the browser names the cameras now.
  const published = await asked.finally(() => {
    listCameras();
  });
  if (wanted !== want) {
    published.stop(); // Stop was pressed while it was asked for
    return;
  }
  current.published = published;
  session = current;
  want.streamId = published.streamId;
  if (status.dataset.state === undefined) status.textContent = STATE_WORDS.connecting;
  error.textContent = "";
  watchServer();
  watchPace(current);
  document.getElementById("preview").srcObject = published.stream;
  followChoice(current); // a camera chosen while this one was asked for
  status.dataset.stream = published.streamId;
  viewerLink.href = withToken(`#/stream/${encodeURIComponent(published.streamId)}`);
  viewerLink.hidden = false;
  hidePlayback();
  current.video = freshVideo();
  current.video.hidden = false;
  // A camera turned off meanwhile hears nothing of its playback: its refusal (its stream is gone)
  // must not show the MJPEG fallback, nor its metadata the next camera's tracks. The playback stops
  // while the page is hidden and plays anew as it is shown, over WebRTC or MJPEG as it can then.
  // Its stop is in `current` before it connects: turned off meanwhile, its player gives up at once.
  current.playback = new AbortController();
  await playWithFallback(published.streamId, {
    video: current.video,
    signal: current.playback.signal,
    onMeta: (meta) => session === current && showTracks(meta),
    onState: (state) => state === "connected" && session === current && showWebRTC(current.video),
    fallback: () => (session === current ? showFallback(published.streamId) : undefined),
  });
}

// Turn the camera on for `want` (wanted now), and make sense of a failure to.
function begin(want) {
  start(want).catch((reason) => {
    if (wanted === want) failedToStart(want, reason);
  });
}

// A publish that failed: tried again where waiting can cure it, else the camera stays off, saying why.
function failedToStart(want, reason) {
  const signalling = reason instanceof SignallingError;
  // The id is still held by this browser's own camera of before (its page crashed, or its
  // connection was lost): segcast frees it after the time it says. Once, for a fresh press. While
  // recovering the page knows the id is its own; the browser may remember nothing (storage blocked).
  const held =
    signalling &&
    reason.status === 409 &&
    reason.retryAfterS !== null &&
    (want.recovering || publishedHere(want.streamId));
  if (held && !want.recovering && !want.heldRetried) {
    want.heldRetried = true;
    retryLater(want, `${reason.message}.`, reason.retryAfterS * 1000);
    return;
  }
  // While it comes back from a lost connection: no answer, a server busy or restarting, its id held.
  const passing = signalling && (reason.status === 0 || reason.status >= 500 || held);
  if (want.recovering && passing) {
    retryLater(want, `Publishing again failed: ${reason.message}.`, reason.retryAfterS * 1000 || backoffMs(want));
    return;
  }
  // Its access token expired while it was on (the server ended it for that, unheard: the page's
  // WebSocket closed with the token): only a fresh token cures that.
  if (want.recovering && signalling && reason.status === 401) {
    giveUp(`${LOST}, and publishing it again was refused: ${reason.message}. ${FRESH_TOKEN}`);
    return;
  }
  giveUp(reason.message);
}

// The camera's connection was lost (`reason`): off now, and published again in a while.
function lost(reason) {
  const want = wanted;
  if (!session || !want) return;
  endSession();
  want.recovering = true;
  retryLater(want, reason, backoffMs(want));
}

const backoffMs = (want) => Math.min(REPUBLISH_FIRST_MS * 2 ** want.attempt, REPUBLISH_MAX_MS);

// Publish `want` again after `delayMs`, saying why and when; or give up after REPUBLISH_ATTEMPTS.
function retryLater(want, reason, delayMs) {
  if (want.recovering && want.attempt >= REPUBLISH_ATTEMPTS) {
    giveUp(
      `${reason} Gave up after ${REPUBLISH_ATTEMPTS} attempts to publish it again: ` +
        "press Use my camera to try once more.",
    );
    return;
  }
  const count = want.recovering ? ` (attempt ${(want.attempt += 1)} of ${REPUBLISH_ATTEMPTS})` : "";
  const seconds = Math.ceil(delayMs / 1000);
  error.textContent = `${reason} Trying again as “${want.streamId}” in ${seconds} s${count}.`;
  status.textContent = "waiting to publish again";
  status.dataset.state = "waiting";
  want.timer = setTimeout(() => {
    want.timer = null;
    if (wanted === want) begin(want);
  }, delayMs);
}

// Turn the camera of `session` off: its playback, its peer, its WebSocket, its pace, its picture.
function endSession() {
  const current = session;
  if (!current) return;
  session = null;
  clearTimeout(current.paceTimer);
  current.playback?.abort();
  current.published.stop();
  server?.close();
  server = null;
  hidePlayback();
}

// No camera wanted any more (Stop, or an end that trying again cannot cure): off, saying `reason`.
function giveUp(reason) {
  endSession();
  clearTimeout(wanted?.timer);
  wanted = null;
  handOverFocus(stopButton, useButton, () => {
    stopButton.hidden = true;
    useButton.disabled = false;
  });
  viewerLink.hidden = true;
  keepLinksInNewTabs(false);
  status.textContent = "camera off";
  delete status.dataset.state;
  if (reason !== undefined) error.textContent = reason;
}

// `from` turned off or hidden by `change()`: where it had the keyboard's focus, `to` takes it, rather than
// the page's top (where a button that goes leaves it).
function handOverFocus(from, to, change) {
  const focused = document.activeElement === from;
  change();
  if (focused) to.focus();
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  // One camera at a time: a second press (a double click, Enter twice) while the first is still
  // asking for the camera or negotiating would open it twice and publish two streams.
  if (useButton.disabled) return;
  handOverFocus(useButton, stopButton, () => {
    useButton.disabled = true;
    stopButton.hidden = false;
  });
  error.textContent = "";
  keepLinksInNewTabs(true);
  const streamId = new FormData(form).get("stream") || undefined;
  wanted = { streamId, recovering: false, wasUp: false, attempt: 0, heldRetried: false, timer: null };
  begin(wanted);
});
stopButton.addEventListener("click", () => giveUp(""));
cameraChoice.addEventListener("change", () => {
  keepCamera();
  if (session) followChoice(session);
});
if (canPublish()) {
  listCameras();
  navigator.mediaDevices.addEventListener("devicechange", listCameras);
}
