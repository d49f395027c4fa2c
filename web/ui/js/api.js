// The API client: every request goes through api(), which sends the stored token,
// keeps the server's clock, and turns the JSON error shape into an APIError.
import { setServerNow } from "./format.js";

const TOKEN_KEY = "flagwarden.token";

export class APIError extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
}

export function token() { return localStorage.getItem(TOKEN_KEY) || ""; }
export function saveToken(v) { localStorage.setItem(TOKEN_KEY, v); }
export function forgetToken() { localStorage.removeItem(TOKEN_KEY); }

export async function api(path, opts = {}) {
  const headers = { Accept: "application/json" };
  if (token()) headers.Authorization = "Bearer " + token();
  if (opts.body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch("/api/v1" + path, {
    method: opts.method || "GET", headers,
    body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
  });
  const serverNow = Date.parse(res.headers.get("X-Flagwarden-Now") || "");
  if (!Number.isNaN(serverNow)) setServerNow(serverNow);
  let data = null;
  try { data = await res.json(); } catch (_) { /* an empty or non-JSON body */ }
  if (!res.ok) {
    const e = (data && data.error) || {};
    throw new APIError(res.status, e.code || "http_" + res.status, e.message || res.statusText);
  }
  return data;
}

// optional turns "component disabled" (503 disabled) into null so a page can say so.
export async function optional(p) {
  try { return await p; } catch (e) {
    if (e instanceof APIError && e.code === "disabled") return null;
    throw e;
  }
}
