// /embed/<stream>: one stream, no chrome, scaled to fill its frame. The server draws the overlay
// (annotated variant), so the page is a canvas and nothing else. ?image=clean shows the bare video.
//
// Whatever keeps the picture from showing is said in the frame, since a dashboard's visitor has no
// other place to look: a stream that is not live (with its reason and the next attempt), an id this
// server does not have, a token that is missing or refused, a server that cannot be reached, a
// subscription the server cannot use.

import { getStream } from "./api.js";
import { Connection, pageToken } from "./connection.js";
import { OFFLINE_NOTICE, StatusPanel, streamNotice } from "./status.js";

const POLL_MS = 2000;
// After a refused token, how long between attempts: the address will not change by itself, but the
// server's tokens may (a restart that brings the token's key back), so it is tried now and then.
const REFUSED_RETRY_MS = 60000;
// The shape of a signed token (server/http/auth.py), good or not: "s1.<role>.<expiry>.<signature>".
const SIGNED_TOKEN = /^s1\.[^.]+\.[^.]+\.[^.]+$/;
const MIN_WIDTH_PX = 32; // what a subscription's max_width may be (docs/protocol.md)
const MAX_WIDTH_PX = 7680;

const canvas = document.getElementById("video");
const context = canvas.getContext("2d");
const panel = new StatusPanel(canvas.parentElement);
const streamId = decodeURIComponent(location.pathname.split("/").pop());
const params = new URLSearchParams(location.search);
let drawing = false;
let online = false; // whether the WebSocket is open
let status; // {state, error, next_attempt_at}; null: no such stream; undefined: not known yet
let inference = null; // the server's {state, error, next_attempt_at}: whether frames are inferred
let problem = null; // why segcast refused to say more (a token), or that it cannot be reached
let refusal = null; // what segcast could not use of this socket's subscription (its `error` message)
let poller = null;

const notice = (state, title, reason) => ({ state, title, reason, nextAttemptAt: null });
const MISSING = notice(
  "missing",
  "No such stream",
  `This server has no stream “${streamId}”. Check the id in the embed's address.`,
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

const refused = (message) => notice("refused", "segcast cannot show this embed as its address asks", message);

function render() {
  if (problem) panel.show(problem);
  else if (status === undefined) panel.show(CONNECTING);
  else if (status === null) panel.show(MISSING);
  else if (refusal) panel.show(refused(refusal));
  else panel.show(streamNotice(status, inference) ?? (online ? null : OFFLINE_NOTICE));
  // While reconnecting, the next attempt's time is only in the API, not in status messages.
  const polling = status?.state === "reconnecting";
  if (polling && poller === null) poller = setInterval(refresh, POLL_MS);
  if (!polling && poller !== null) {
    clearInterval(poller);
    poller = null;
  }
}

function setStatus(stream) {
  status = stream && { state: stream.state, error: stream.error, next_attempt_at: stream.next_attempt_at ?? null };
  render();
}

// The WebSocket cannot tell a page why it was refused; the same question over HTTP can.
async function refresh() {
  try {
    const stream = await getStream(streamId, { interactive: false });
    problem = null;
    setStatus(stream);
  } catch (error) {
    if (error.status === 404) {
      problem = null;
      setStatus(null);
      return;
    }
    if (error.status === 401) {
      problem = refusedToken();
      connection.holdOff(REFUSED_RETRY_MS); // the socket is refused the same: ask once a minute
    } else if (error.status === 403) {
      problem = notice("unauthorized", "Not allowed", error.message);
    } else {
      problem = online ? null : OFFLINE_NOTICE; // not reachable; with the socket open, a hiccup
    }
    render();
  }
}

const connection = new Connection({
  hello(message) {
    refusal = null; // a new socket: the subscription is sent, and judged, again
    inference = message.inference ?? null;
    setStatus(message.streams.find((stream) => stream.id === streamId) ?? null);
  },
  async frame(meta, jpeg) {
    if (meta.stream !== streamId || !jpeg || drawing) return;
    drawing = true;
    try {
      const bitmap = await createImageBitmap(new Blob([jpeg], { type: "image/jpeg" }));
      if (canvas.width !== bitmap.width || canvas.height !== bitmap.height) {
        canvas.width = bitmap.width;
        canvas.height = bitmap.height;
      }
      context.drawImage(bitmap, 0, 0);
      bitmap.close();
      canvas.dataset.seq = meta.seq;
    } finally {
      drawing = false;
    }
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
      setStatus({ ...message, next_attempt_at: same ? status.next_attempt_at : null });
      if (message.state === "reconnecting" && !same) refresh(); // for the next attempt's time
    } else if (message.type === "added") {
      refusal = null; // the server's word that it has no stream by this id no longer holds
      setStatus({ state: "starting", error: null });
    } else if (message.type === "removed") {
      setStatus(null);
    }
  },
  state(state) {
    online = state === "live";
    if (online) problem = null;
    render();
    if (!online) refresh();
  },
});

render();
const subscription = { streams: [streamId], image: params.get("image") === "clean" ? "clean" : "annotated" };
// Any width asked for is brought within what the protocol takes, rather than refused for it.
const maxWidth = Math.round(Number(params.get("max_width")));
if (maxWidth) subscription.max_width = Math.min(MAX_WIDTH_PX, Math.max(MIN_WIDTH_PX, maxWidth));
connection.subscribe(subscription);
