// The REST API (docs/protocol.md), as the viewer uses it. Errors carry the server's own message.

import { authHeaders, storeToken, withToken } from "./connection.js";

let asking = null; // one prompt at a time, however many requests were refused
let declined = false; // after a cancel, background polls stop asking; the person's own actions still do

// Ask the person for an access token after a 401, or a 403 that a stronger role would lift.
// Resolves true if they gave one; cancelling keeps the viewer as it is, with the server's message.
function askForToken(message) {
  asking ??= new Promise((resolve) => {
    setTimeout(() => {
      const token = window.prompt(`segcast: ${message}\n\nAccess token:`)?.trim();
      asking = null;
      declined = !token;
      if (token) storeToken(token);
      resolve(Boolean(token));
    });
  });
  return asking;
}

function needsToken(response, error, method) {
  const lowRole = response.status === 403 && / role/.test(error); // not a refusal of the request itself
  return (response.status === 401 || lowRole) && !(declined && method === "GET");
}

async function request(method, path, body, retry = true) {
  const options = { method, headers: authHeaders() };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(withToken(path), options);
  if (response.status === 204) return null;
  const data = await response.json().catch(() => ({}));
  if (retry && needsToken(response, data.error || "", method) && (await askForToken(data.error))) {
    return request(method, path, body, false);
  }
  if (!retry && response.status === 401) declined = true; // the token given was wrong: polls stop asking
  if (!response.ok) throw new Error(data.error || `${response.status} ${response.statusText}`);
  return data;
}

export const listStreams = () => request("GET", "/api/streams");
export const getStream = (id) => request("GET", `/api/streams/${encodeURIComponent(id)}`);
export const addStream = (body, persist) => request("POST", `/api/streams${persist ? "?persist=1" : ""}`, body);
export const removeStream = (id, persist) =>
  request("DELETE", `/api/streams/${encodeURIComponent(id)}${persist ? "?persist=1" : ""}`);
