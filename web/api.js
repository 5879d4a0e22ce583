// The REST API (docs/protocol.md), as the viewer uses it. Errors carry the server's own message.

import { withToken } from "./connection.js";

async function request(method, path, body) {
  const options = { method, headers: {} };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(withToken(path), options);
  if (response.status === 204) return null;
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.error || `${response.status} ${response.statusText}`);
  return data;
}

export const listStreams = () => request("GET", "/api/streams");
export const getStream = (id) => request("GET", `/api/streams/${encodeURIComponent(id)}`);
export const addStream = (body, persist) => request("POST", `/api/streams${persist ? "?persist=1" : ""}`, body);
export const removeStream = (id, persist) =>
  request("DELETE", `/api/streams/${encodeURIComponent(id)}${persist ? "?persist=1" : ""}`);
