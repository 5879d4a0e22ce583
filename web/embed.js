// /embed/<stream>: one stream, no chrome, scaled to fill its frame. The server draws the overlay
// (annotated variant), so the page is a canvas and nothing else. ?image=clean shows the bare video,
// ?max_width=N has it sent smaller, ?max_fps=F thins it to at most F frames a second. Hidden (an embed
// in a dashboard's background tab, not one merely scrolled out of view) it is sent none (connection.js).
//
// Whatever keeps the picture from showing is said in the frame, since a dashboard's visitor has no
// other place to look: a stream that is not live (with its reason and the next attempt), an id this
// server does not have, a token that is missing or refused, a server that cannot be reached, a live
// connection refused while the server answers (a proxy that drops the WebSocket or the Host header),
// an address or a subscription the server cannot use.

import { getStream } from "./api.js";
import { Connection, pageToken } from "./connection.js";
import { JpegDecoder, drawPicture } from "./picture.js";
import {
  LIVE_REFUSED_NOTICE,
  LiveRefusals,
  OFFLINE_BEFORE_PICTURE_NOTICE,
  OFFLINE_NOTICE,
  StatusPanel,
  notice,
  streamNotice,
} from "./status.js";

const POLL_MS = 2000;
// After a refused token, how long between attempts: the address will not change by itself, but the
// server's tokens may (a restart that brings the token's key back), so it is tried now and then.
const REFUSED_RETRY_MS = 60000;
// The shape of a signed token (server/http/access/tokens.py), good or not: "s1.<role>.<expiry>.<signature>",
// or scoped (a link for its camera alone) "s2.<role>.<expiry>.<scope>.<signature>".
const SIGNED_TOKEN = /^(s1(\.[^.]+){3}|s2(\.[^.]+){4})$/;
const MIN_WIDTH_PX = 32; // what a subscription's max_width may be (docs/protocol.md)
const MAX_WIDTH_PX = 7680;
const MIN_FPS = 0.01; // what a subscription's max_fps may be (docs/protocol.md)
const MAX_FPS = 60;

const canvas = document.getElementById("video");
const panel = new StatusPanel(canvas.parentElement);
const streamId = decodeURIComponent(location.pathname.split("/").pop());
// Named by its stream: a dashboard of several embeds is a list of frames a screen reader tells apart by name.
document.title = `${streamId} · segcast`;
canvas.setAttribute("aria-label", `live video of ${streamId}`);
const params = new URLSearchParams(location.search);
const decoder = new JpegDecoder();
let online = false; // whether the WebSocket is open
let status; // {state, error, next_attempt_at}; null: no such stream; undefined: not known yet
let source = null; // the stream's source, as the hello or the API last told it
let endedCamera = null; // {error}: the stream was a browser's published camera that ended, then went
let inference = null; // the server's {state, error, next_attempt_at}: whether frames are inferred
let problem = null; // why segcast refused to say more (a token), or cannot be reached, or live refused
let refusal = null; // what segcast could not use of this socket's subscription (its `error` message)
// Why the socket closed, as the API tells of the stream (a socket counts towards blaming the live
// connection only while the API answers, so a server or network that was away is not taken for it).
const askStream = () => getStream(streamId, { interactive: false });
// How many messages that tell the stream's state (hello, status, added, removed) the socket has brought:
// an answer of the API asked before the latest of them is older than what the page shows, and dropped.
let stateMessages = 0;
let refusalAsked = 0; // stateMessages as the refusals' question on its way was asked (one at a time)
const refusals = new LiveRefusals(
  () => {
    refusalAsked = stateMessages;
    return askStream();
  },
  (error, stream) => showAnswer(error, stream, refusalAsked),
);
// While reconnecting, the stream is asked for POLL_MS after each answer: one question at a time, however
// slow the server is to answer (a GET gives up after 10 s), so that polls never pile up on it.
let asking = false; // a question of refresh() is on its way
let nextPoll = null; // the timer of the next one

// Said of an id the server has no stream by: one just removed too, whose embed's address is right.
const MISSING = notice(
  "missing",
  "No such stream",
  `No stream “${streamId}” on this server now (removed, or a wrong id in the embed's address): this embed ` +
    "shows it by itself once it is added.",
);
// The source a browser's published camera has (server/webrtc/source.py: "webrtc:<address>").
const PUBLISHED_SOURCE = "webrtc:";
// A browser's published camera is removed as it ends (its tab closed, its connection lost): "No such
// stream" would say neither that it ended, and why, nor how its browser publishes it again.
const endedCameraNotice = (error) =>
  notice(
    "ended",
    error ? `This camera ended: ${error}` : "This camera ended",
    `Its browser can publish it again as “${streamId}”: its page does so by itself after a lost ` +
      "connection, or press Use my camera there with this stream id. This embed then shows it again by itself.",
  );
const CONNECTING = notice("connecting", "Connecting to segcast…", "");
const TOKEN_MISSING = notice(
  "unauthorized",
  "This stream needs an access token",
  "Add ?token= with a signed viewer token (POST /api/tokens) to the embed's address.",
);
const TOKEN_REFUSED = notice(
  "unauthorized",
  "The access token in this address was refused",
  "It may have expired: put a new signed viewer token (POST /api/tokens) in the embed's address.",
);
const TOKEN_NOT_SIGNED = notice(
  "unauthorized",
  "The token in this address is not a signed token",
  "Only a signed viewer token from POST /api/tokens works in an address; an access token as configured " +
    "on the server works only as a bearer header. Put a signed one after ?token= in the embed's address.",
);

function refusedToken() {
  if (!pageToken) return TOKEN_MISSING;
  return SIGNED_TOKEN.test(pageToken) ? TOKEN_REFUSED : TOKEN_NOT_SIGNED;
}

// The server's refusal of a camera its link does not open (server/http/ws.py, beyond_scope) is worded for the
// person who opened the link, naming the camera to ask a link for: it goes under a title of its own.
const OUTSIDE_LINK = /^this link opens /;
const REFUSED_TITLE = "segcast cannot show this embed as its address asks";
const refused = (message) =>
  notice("refused", OUTSIDE_LINK.test(message) ? "This link is for another camera" : REFUSED_TITLE, message);

// What the address asks that no subscription could take; the embed then subscribes to nothing.
function addressError() {
  const asked = params.get("max_fps");
  if (asked === null) return null;
  const fps = Number(asked);
  if (fps >= MIN_FPS && fps <= MAX_FPS) return null;
  const range = `from ${MIN_FPS} to ${MAX_FPS}`;
  return `max_fps in the embed's address: expected a number of frames per second ${range}, got “${asked}”.`;
}
const wrongAddress = addressError();

// Lost the connection: the picture on the canvas is the last one received, if one ever was.
const offline = () => (canvas.dataset.seq === undefined ? OFFLINE_BEFORE_PICTURE_NOTICE : OFFLINE_NOTICE);
// The server answers over HTTP, yet its WebSocket keeps failing before the hello: segcast refuses it
// (a cross-site refusal, behind a proxy that drops the Host header) or it cannot be upgraded on the way.
const liveRefused = () => !online && refusals.blamed;

// The stream is gone (removed, or this server has none by the id) or the token is refused: nothing of
// it may stay on screen, as in the stream view (StreamView.forget). A server merely out of reach keeps
// its last picture, which the offline notice calls the last one received.
const pictureWithheld = () => status === null || problem?.state === "unauthorized";

function forgetPicture() {
  canvas.getContext("2d").clearRect(0, 0, canvas.width, canvas.height);
  delete canvas.dataset.seq;
}

function render() {
  if (pictureWithheld()) forgetPicture();
  if (problem) panel.show(problem);
  else if (wrongAddress) panel.show(refused(wrongAddress));
  else if (refusal) panel.show(refused(refusal)); // a link for another camera: its hello lists no stream by this id
  else if (status === undefined) panel.show(CONNECTING);
  else if (status === null) panel.show(endedCamera ? endedCameraNotice(endedCamera.error) : MISSING);
  else panel.show(streamNotice(status, inference) ?? (online ? null : offline()));
  // While reconnecting, the next attempt's time is only in the API, not in status messages.
  const polling = status?.state === "reconnecting";
  if (polling && nextPoll === null && !asking) nextPoll = setTimeout(refresh, POLL_MS);
  if (!polling) {
    clearTimeout(nextPoll);
    nextPoll = null;
  }
}

function setStatus(stream) {
  status = stream && { state: stream.state, error: stream.error, next_attempt_at: stream.next_attempt_at ?? null };
  if (stream) endedCamera = null;
  if (stream?.source !== undefined) source = stream.source;
  render();
}

// A stream's state as the socket tells it: newer than any answer of the API asked before it.
function heardState(stream) {
  stateMessages += 1;
  setStatus(stream);
}

// The stream as GET /api/streams/<id> gave it, or the `error` that request failed with: the WebSocket
// cannot tell a page why it was refused, the same question over HTTP can. `asked`: stateMessages as the
// question was asked. Returns whether the answer was used (false: a state message came since).
function showAnswer(error, stream, asked) {
  if (asked !== stateMessages) return false;
  if (error === null) {
    problem = liveRefused() ? LIVE_REFUSED_NOTICE : null;
    setStatus(stream);
  } else if (error.status === 404) {
    problem = null;
    setStatus(null);
  } else {
    if (error.status === 401) {
      problem = refusedToken();
      connection.holdOff(REFUSED_RETRY_MS); // the socket is refused the same: ask once a minute
    } else if (error.status === 403) {
      problem = notice("unauthorized", "Not allowed", error.message);
    } else {
      problem = online ? null : offline(); // not reachable; with the socket open, a hiccup
    }
    render();
  }
  return true;
}

// Ask for the stream now, unless a question is on its way: the one after it is POLL_MS after its answer
// (render), or at once where the answer was dropped for a newer state message that still reconnects,
// whose next attempt's time only the API tells.
async function refresh() {
  clearTimeout(nextPoll);
  nextPoll = null;
  if (asking) return;
  asking = true;
  const asked = stateMessages;
  const [error, stream] = await askStream().then(
    (answer) => [null, answer],
    (failure) => [failure, null],
  );
  asking = false;
  if (showAnswer(error, stream, asked)) return;
  if (status?.state === "reconnecting") refresh();
  else render();
}

// The source of a stream just added, which only the API says: whether it is a browser's camera.
async function learnSource() {
  const stream = await askStream().catch(() => null);
  if (stream && source === null && status) source = stream.source;
}

const connection = new Connection({
  hello(message) {
    refusals.hello();
    refusal = null; // a new socket: the subscription is sent, and judged, again
    inference = message.inference ?? null;
    heardState(message.streams.find((stream) => stream.id === streamId) ?? null);
  },
  async frame(meta, jpeg) {
    if (meta.stream !== streamId || !jpeg) return;
    const bitmap = await decoder.decode(jpeg);
    if (!bitmap) return;
    if (pictureWithheld()) {
      bitmap.close(); // decoded as the stream went or the token was refused: not to be shown
      return;
    }
    drawPicture(canvas, bitmap);
    canvas.dataset.seq = meta.seq;
  },
  event(message) {
    if (message.type === "inference") {
      inference = message;
      render();
      return;
    }
    if (message.type === "error") {
      refusal = message.message;
      render();
      return;
    }
    if (message.stream !== streamId) return;
    if (message.type === "status") {
      const same = status?.state === message.state && status?.error === message.error;
      heardState({ ...message, next_attempt_at: same ? status.next_attempt_at : null });
      if (message.state === "reconnecting" && !same) refresh(); // for the next attempt's time
    } else if (message.type === "added") {
      refusal = null; // the server's word that it has no stream by this id no longer holds
      source = null; // a new stream under this id, of a source the message does not say
      heardState({ state: "starting", error: null });
      learnSource();
    } else if (message.type === "removed") {
      const ended = source?.startsWith(PUBLISHED_SOURCE) && status?.state === "ended";
      endedCamera = ended ? { error: status.error } : null;
      heardState(null);
    }
  },
  state(state) {
    online = state === "live";
    if (online) problem = null;
    render();
    if (!online) refusals.lost();
  },
});

render();
const subscription = { streams: [streamId], image: params.get("image") === "clean" ? "clean" : "annotated" };
// Any width asked for is brought within what the protocol takes, rather than refused for it.
const maxWidth = Math.round(Number(params.get("max_width")));
if (maxWidth) subscription.max_width = Math.min(MAX_WIDTH_PX, Math.max(MIN_WIDTH_PX, maxWidth));
if (params.has("max_fps")) subscription.max_fps = Number(params.get("max_fps"));
if (!wrongAddress) connection.subscribe(subscription);
