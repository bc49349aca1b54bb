// Small helpers shared by the pages. Everything a user wrote goes into the
// DOM through textContent (el's text option), never parsed as markup.

import { RoomcastError, tokenClaims } from '/client/roomcast.js';

export { tokenClaims };

/** el('li', {class: 'x', text: userText, title, data: {id}}, child, …) */
export function el(tag, opts = {}, ...children) {
  const n = document.createElement(tag);
  if (opts.class) n.className = opts.class;
  if (opts.text !== undefined && opts.text !== null) n.textContent = String(opts.text);
  if (opts.title) n.title = String(opts.title);
  if (opts.href) n.href = opts.href;
  if (opts.type) n.type = opts.type;
  if (opts.data) for (const [k, v] of Object.entries(opts.data)) n.dataset[k] = String(v);
  if (opts.attrs) for (const [k, v] of Object.entries(opts.attrs)) n.setAttribute(k, String(v));
  if (opts.on) for (const [k, fn] of Object.entries(opts.on)) n.addEventListener(k, fn);
  for (const c of children) if (c !== null && c !== undefined && c !== false) n.append(c);
  return n;
}

export const $ = (sel, root = document) => root.querySelector(sel);

/** Calls the API; resolves with the JSON body, rejects with a RoomcastError. */
export async function api(path, { method = 'GET', token = '', body } = {}) {
  const headers = {};
  if (token) headers.Authorization = 'Bearer ' + token;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let res;
  try {
    res = await fetch(path, { method, headers, cache: 'no-store', body: body === undefined ? undefined : JSON.stringify(body) });
  } catch {
    throw new RoomcastError('network', 'the server cannot be reached');
  }
  const out = await res.json().catch(() => ({}));
  if (!res.ok) {
    const e = out.error || {};
    throw new RoomcastError(e.code || 'http_' + res.status, e.message || res.statusText, res.status, e.retry_after_ms || 0);
  }
  return out;
}

/** A short human message for an API error. */
export function errorText(err) {
  if (!(err instanceof RoomcastError)) return 'Something went wrong.';
  switch (err.code) {
    case 'rate_limited': return `Slow down — try again in ${Math.ceil((err.retryAfterMs || 1000) / 1000)} s.`;
    case 'muted': return 'You are muted in this room.';
    case 'kicked': return 'You were removed from this room.';
    case 'unauthorized': return 'Sign in to do that.';
    case 'network': return 'The server cannot be reached.';
    default: return err.message || err.code;
  }
}

export function fmtCount(n) {
  if (n >= 1e6) return (n / 1e6).toFixed(n >= 1e7 ? 0 : 1) + 'M';
  if (n >= 1e4) return (n / 1e3).toFixed(n >= 1e5 ? 0 : 1) + 'k';
  return String(n);
}

export function fmtDuration(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), ss = s % 60;
  const two = (x) => String(x).padStart(2, '0');
  return h > 0 ? `${h}:${two(m)}:${two(ss)}` : `${m}:${two(ss)}`;
}

export function fmtTime(ms) {
  return new Date(ms).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

/** Room status as a badge: live, offline (idle) or ended. */
export function statusBadge(room) {
  const live = room.live || room.status === 'live';
  const label = live ? 'LIVE' : room.status === 'ended' ? 'Ended' : 'Offline';
  return el('span', { class: 'badge ' + (live ? 'badge-live' : 'badge-off'), text: label });
}

export function validRoomID(id) {
  return /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/.test(id);
}

/** Whether a token is expired (or unreadable). */
export function tokenExpired(token, slackMs = 60000) {
  const c = tokenClaims(token);
  return !c || (c.exp && c.exp * 1000 < Date.now() + slackMs);
}

/** Copies text to the clipboard, also on plain-http pages. */
export async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    const ta = el('textarea', { class: 'offscreen' });
    ta.value = text;
    document.body.append(ta);
    ta.select();
    let ok = false;
    try { ok = document.execCommand('copy'); } catch { ok = false; }
    ta.remove();
    return ok;
  }
}
