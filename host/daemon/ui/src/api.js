// The daemon's API as the page uses it: same origin, the session cookie
// (never the token), JSON in and out. Requests that change something carry
// the X-Plexus-UI header the daemon asks of cookie-authenticated writes.

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
  if (method !== 'GET') headers['X-Plexus-UI'] = '1';
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
    if (res.status === 401 && path !== '/v1/session') listeners.forEach((f) => f(false));
    throw new ApiError(res.status, json?.code || 'Unknown', json?.message || `${res.status} ${res.statusText}`, json?.details);
  }
  return json;
}

/** Exchange the token for a session cookie; the token is not kept anywhere. */
export function login(token) {
  return api('/v1/session', { method: 'POST', body: { token } });
}

/** End the session. */
export function logout() {
  return api('/v1/session', { method: 'DELETE' });
}

/** `?a=1&b=2` from an object, leaving out empty values. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') q.set(k, v);
  const s = q.toString();
  return s ? `?${s}` : '';
}

export const enc = encodeURIComponent;
