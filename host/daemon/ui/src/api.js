// The daemon's API as the page uses it: same origin, the session cookie
// (never the token), JSON in and out. Requests that change something carry
// the session's write key (the login's answer) in the X-Plexus-UI header;
// the key is kept in this origin's localStorage (browsers keep it per
// origin, port included), the cookie by the browser.

const WRITE_KEY = 'plexus.writeKey';

/** The session's write key, if this browser logged in here. */
export function writeKey() {
  try {
    return localStorage.getItem(WRITE_KEY);
  } catch {
    return null;
  }
}

function setWriteKey(key) {
  try {
    if (key) localStorage.setItem(WRITE_KEY, key);
    else localStorage.removeItem(WRITE_KEY);
  } catch {
    // Storage refused (a private window's quota): writes will be refused, reads work.
  }
}

/** An answer that was not 2xx: `status` (HTTP), `code` and `message` from the daemon's error body. */
export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details || [];
  }
}

const listeners = new Set();

/** Calls `f(false)` whenever an answer says the session is gone (401). */
export function onUnauthorized(f) {
  listeners.add(f);
  return () => listeners.delete(f);
}

/**
 * `method` `path` with an optional JSON `body`; resolves to the JSON answer
 * (or null for 204), rejects with an ApiError.
 */
export async function api(path, { method = 'GET', body } = {}) {
  const headers = { Accept: 'application/json' };
  if (method !== 'GET') headers['X-Plexus-UI'] = writeKey() || '';
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let res;
  try {
    res = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'same-origin',
    });
  } catch (e) {
    throw new ApiError(0, 'Unreachable', `the daemon did not answer (${e.message})`);
  }
  if (res.status === 204) return null;
  const text = await res.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = null;
  }
  if (!res.ok) {
    // Logged out, or (403) a session without its write key: log in again.
    if ((res.status === 401 || res.status === 403) && path !== '/v1/session') listeners.forEach((f) => f(false));
    throw new ApiError(res.status, json?.code || 'Unknown', json?.message || `${res.status} ${res.statusText}`, json?.details);
  }
  return json;
}

/** Exchange the token for a session cookie and its write key; the token is not kept anywhere. */
export async function login(token) {
  const session = await api('/v1/session', { method: 'POST', body: { token } });
  setWriteKey(session.write_key);
}

/** End the session. */
export async function logout() {
  setWriteKey(null);
  await api('/v1/session', { method: 'DELETE' });
}

/** `?a=1&b=2` from an object, leaving out empty values. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') q.set(k, v);
  const s = q.toString();
  return s ? `?${s}` : '';
}

export const enc = encodeURIComponent;
