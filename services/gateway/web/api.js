// The public API, from the same origin, and the session's token.
//
// The token lives in sessionStorage: it survives a reload of the tab but not the tab
// itself, is not sent with every request as a cookie would be (so no CSRF), and is
// not shared with other tabs or left behind on a shared computer. A script injected
// into the page could read it; the strict Content-Security-Policy and rendering
// every user text as text are what keep scripts out.

const TOKEN_KEY = "eventpost.token";

export class ApiError extends Error {
  constructor(status, body) {
    const error = (body && body.error) || {};
    super(error.message || `The server answered ${status}.`);
    this.status = status;
    this.code = error.code || "error";
    this.details = error.details || {};
  }
}

let onUnauthorized = () => {};

export function whenUnauthorized(handler) {
  onUnauthorized = handler;
}

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(value) {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

// keepSession: a 401 that means "wrong password", not "the token is no longer good"
export async function request(method, path, body, { auth = true, keepSession = false } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (auth && token()) headers.Authorization = `Bearer ${token()}`;
  let response;
  try {
    response = await fetch(path, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError(0, { error: { code: "offline", message: "The server could not be reached." } });
  }
  if (response.status === 204) return null;
  const payload = await response.json().catch(() => null);
  if (!response.ok) {
    const error = new ApiError(response.status, payload);
    if (response.status === 401 && auth && token() && !keepSession) onUnauthorized(error);
    throw error;
  }
  return payload;
}

export function query(params) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value === undefined || value === null || value === "") continue;
    for (const one of Array.isArray(value) ? value : [value]) search.append(name, one);
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

export const api = {
  get: (path, options) => request("GET", path, undefined, options),
  post: (path, body, options) => request("POST", path, body, options),
  patch: (path, body) => request("PATCH", path, body),
  delete: (path) => request("DELETE", path),
};
