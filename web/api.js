// The REST API (docs/protocol.md), as the viewer uses it. Errors carry the server's own message and
// the HTTP status, so a page can explain a refusal in its own words.

import {
  APP_ROOT,
  REQUEST_TIMEOUT_MS,
  answerOf,
  appUrl,
  authHeaders,
  dropPageToken,
  notSegcast,
  pageToken,
  storeToken,
  storedToken,
  timeoutSignal,
  tokenAsker,
  withToken,
} from "./connection.js";
import { askForToken, markTokenRefused } from "./token.js";

// The server's clock minus this browser's, in seconds, learnt from each answer's Date header.
// The header has a resolution of one second, so a browser whose clock agrees within that is trusted
// as it is; only a clock that is plainly off (a phone set by hand) is corrected.
let clockOffsetS = 0;

let asking = null; // one question at a time, however many requests were refused
let declined = false; // after a cancel, background polls stop asking; the person's own actions still do

export class ApiError extends Error {
  constructor(message, status, body = {}) {
    super(message);
    this.status = status;
    // A change made though the request failed (in effect, not saved to the config file) comes with
    // the stream as it now is: a page must show that, not what it had before.
    this.stream = body?.stream ?? null;
  }
}

/** Now on the server's clock, in Unix seconds: what `next_attempt_at` and friends are counted in. */
export function serverNow() {
  return Date.now() / 1000 + clockOffsetS;
}

function noteServerDate(header) {
  const serverS = Date.parse(header ?? "") / 1000;
  if (Number.isNaN(serverS)) return;
  const localS = Date.now() / 1000;
  // The server's true time lies in [serverS, serverS + 1); add a second for the answer's journey.
  const agrees = localS >= serverS - 0.5 && localS <= serverS + 2;
  clockOffsetS = agrees ? 0 : serverS + 0.5 - localS;
}

function ask(response, base) {
  const reason = response.status === 403 ? "role" : pageToken || storedToken() ? "refused" : "missing";
  asking ??= askForAcceptedToken(reason, base).then((token) => {
    asking = null;
    declined = !token;
    return Boolean(token);
  });
  return asking;
}

/**
 * Ask the person for a token until `base` accepts one (one GET each) or they decline; the accepted one
 * is stored, and resolves; null where they declined. A refused token is never kept: the dialog opens
 * again saying so, its field marked invalid, with the focus in it. A token that could not be checked
 * (the server away) is kept as before: it is tried with the next request.
 */
export async function askForAcceptedToken(reason, base = APP_ROOT) {
  let refused = false;
  for (;;) {
    const asked = askForToken(refused ? "refused" : reason, tokenAsker(base));
    markTokenRefused(refused);
    const token = await asked;
    if (!token) return null;
    refused = await tokenRefused(token, base);
    if (!refused) {
      // Only the page's token is sent while it has one: the person's must replace it to be used at all.
      dropPageToken();
      storeToken(token);
      return token;
    }
  }
}

async function tokenRefused(token, base) {
  try {
    const response = await fetch(appUrl("api/streams", base), {
      headers: { Authorization: `Bearer ${token}` },
      signal: timeoutSignal(REQUEST_TIMEOUT_MS),
    });
    return response.status === 401;
  } catch {
    return false; // not answered: not refused either
  }
}

function needsToken(response, error, method) {
  const lowRole = response.status === 403 && / role/.test(error); // not a refusal of the request itself
  return (response.status === 401 || lowRole) && !(declined && method === "GET");
}

// `interactive`: whether a refusal may ask the person for a token (never in an embedded frame).
// `base`: the root of the node asked (fleet.js asks several); this page's own by default. One question
// is asked for all of them, as the nodes of one deployment share their tokens.
// A read the network swallowed fails after REQUEST_TIMEOUT_MS, so polls do not pile up unanswered; a
// change is waited for however long it takes, as it may well be made even if its answer is late.
// `timed`: whether it fails after REQUEST_TIMEOUT_MS (reads, and a request that changes nothing).
async function request(
  method,
  path,
  body,
  { interactive = true, retry = true, headers = {}, base = APP_ROOT, timed = method === "GET" } = {},
) {
  const sent = authHeaders().Authorization;
  const options = { method, headers: { ...authHeaders(), ...headers } };
  if (timed) options.signal = timeoutSignal(REQUEST_TIMEOUT_MS);
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(withToken(path, base), options);
  noteServerDate(response.headers.get("Date"));
  if (response.status === 204) return null;
  const data = await answerOf(response);
  options.signal?.throwIfAborted(); // a body cut off by the time-out is no answer
  // Something other than segcast answered (a captive portal's sign-in page, a proxy's): not an answer.
  if (response.ok && data === null) throw new ApiError(notSegcast(response), response.status);
  const error = data?.error || `${response.status} ${response.statusText}`;
  // A token given since this request went out (the answer to another's refusal: another node's, on
  // the All cameras page) is tried before the person is asked again.
  const answered = authHeaders().Authorization !== sent;
  if (interactive && retry && needsToken(response, error, method) && (answered || (await ask(response, base)))) {
    return request(method, path, body, { interactive, retry: false, headers, base, timed });
  }
  if (!retry && response.status === 401) declined = true; // the token given was wrong: polls stop asking
  if (!response.ok) throw new ApiError(error, response.status, data);
  return data;
}

const streamPath = (id) => `api/streams/${encodeURIComponent(id)}`;

export const listStreams = ({ base = APP_ROOT } = {}) => request("GET", "api/streams", undefined, { base });
export const getStream = (id, { interactive = true } = {}) =>
  request("GET", streamPath(id), undefined, { interactive });
export const addStream = (body, persist) => request("POST", `api/streams${persist ? "?persist=1" : ""}`, body);
export const removeStream = (id, persist) => request("DELETE", `${streamPath(id)}${persist ? "?persist=1" : ""}`);
// The stream's counts as they stand, with when each line's totals began (`since`). Asked in the background:
// a refusal asks the person for no token.
export const streamCounts = (id) => request("GET", `${streamPath(id)}/counts`, undefined, { interactive: false });
export const viewerSettings = () => request("GET", "api/viewer");
// The shape of a link's token (server/http/access/tokens.py): signed, scoped to its cameras, "s2.viewer.<expiry>.
// streams~<id>~<id>.<signature>". It opens its cameras' routes alone, not the node's (GET /api/viewer).
const LINK_TOKEN = /^s2\.viewer\.\d+\.streams~[^.]+\.[^.]+$/;

/** Whether the token this page sends is a link's, limited to its cameras: the page then asks nothing of the node. */
export function sendsLinkToken() {
  return LINK_TOKEN.test(pageToken ?? storedToken() ?? "");
}

// A signed token of `role` for `ttl_s` seconds (POST /api/tokens): allowed to that role or a higher one;
// `scope` ({streams: [ids]} or {event_snapshots: true}) limits a viewer token to what it names.
// It changes nothing, so a server that does not answer is not waited for.
export const mintToken = (role, ttlS, scope) =>
  request("POST", "api/tokens", { role, ttl_s: ttlS, ...(scope && { scope }) }, { timed: true });
// `etag`: the stream's, as read with the settings the change is made over; refused (412) if they changed since.
export const changeStream = (id, body, persist, etag) =>
  request("PATCH", `${streamPath(id)}${persist ? "?persist=1" : ""}`, body, {
    headers: etag ? { "If-Match": etag } : {},
  });
export const eventOutputs = ({ interactive = true } = {}) =>
  request("GET", "api/events/outputs", undefined, { interactive });
// `filters`: {stream, type, zone, line, class, since, until, limit}, as GET /api/events takes them.
export const listEvents = (filters, { interactive = true } = {}) =>
  request("GET", `api/events?${new URLSearchParams(filters)}`, undefined, { interactive });
