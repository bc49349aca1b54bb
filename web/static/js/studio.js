// The anchor's studio (/studio): sign in with an anchor token, create or
// open the anchor's room, OBS settings (RTMP server, stream key: copy,
// show, reset), a live preview, live charts (viewers, messages/s, bitrate)
// and moderation (remove a message, mute, kick).

import { RoomClient, tokenClaims } from '/client/roomcast.js';
import { $, api, copyText, el, errorText, fmtCount, fmtDuration, statusBadge, tokenExpired, validRoomID } from './ui.js';
import { LineChart } from './chart.js';
import { Player } from './player.js';
import { renderSessions } from './sessions.js';
import { QuizConsole } from './quiz.js';
import { RainConsole } from './rain.js';

const KEY = 'roomcast.anchor';
const store = {
  get(k) { try { return localStorage.getItem(k); } catch { return null; } },
  set(k, v) { try { localStorage.setItem(k, v); } catch { /* private mode */ } },
  del(k) { try { localStorage.removeItem(k); } catch { /* private mode */ } },
};

let token = '';
let claims = null;
let room = null;
let roomFetchedAt = 0;
let status = '';
let client = null;
let player = null;
let online = 0;
let bitrate = 0;
let lastCursor = null;
let lastSampleAt = 0;
const timers = [];

function show(section) {
  for (const id of ['signin', 'admin', 'create', 'dash']) $('#' + id).hidden = id !== section;
}

// A token (from a host app) or a one-time sign-in code (from the link the
// server printed) in the URL; either is removed from the address bar.
function takeURL() {
  const q = new URLSearchParams(location.search), h = new URLSearchParams(location.hash.slice(1));
  const t = q.get('token') || h.get('token') || '';
  const code = q.get('code') || h.get('code') || '';
  if (t || code) history.replaceState(null, '', location.pathname);
  return { t, code };
}

// Exchanges a sign-in code or the admin key for a studio session (an admin
// token), then signs in with it.
async function exchange(body) {
  const err = $('#signin-error');
  try {
    const out = await api('/api/signin', { method: 'POST', body });
    await signIn(out.token, true);
  } catch (e) {
    show('signin');
    err.textContent = errorText(e);
    err.hidden = false;
  }
}

// ---- sign in ------------------------------------------------------------------

async function signIn(t, fromForm) {
  const err = $('#signin-error');
  err.hidden = true;
  const c = tokenClaims(t);
  const fail = (msg) => {
    store.del(KEY);
    show('signin');
    err.textContent = msg;
    err.hidden = !fromForm && !msg;
  };
  if (!c) return fail('That is not a roomcast token.');
  if (tokenExpired(t, 0)) return fail('This token has expired. Sign a new one.');
  if (c.role !== 'anchor' && c.role !== 'admin') return fail(`This token's role is “${c.role || 'viewer'}”; the studio needs an anchor token.`);
  token = t;
  claims = c;
  store.set(KEY, t);
  $('#who').textContent = (c.name || c.sub) + ' · ' + c.role;
  $('#signout').hidden = false;
  let rooms;
  try {
    rooms = (await api('/api/rooms')).rooms || [];
  } catch (e) {
    return fail(errorText(e));
  }
  if (c.role === 'admin') {
    const want = new URLSearchParams(location.search).get('room');
    if (want && rooms.some((r) => r.id === want)) return openRoom(want, fail);
    return showAdmin(rooms);
  }
  const mine = rooms.find((r) => r.anchor_id === c.sub);
  if (!mine) {
    show('create');
    $('#create-title').focus();
    return;
  }
  await openRoom(mine.id, fail);
}

async function openRoom(id, fail) {
  try {
    room = await api('/api/rooms/' + encodeURIComponent(id), { token });
  } catch (e) {
    return fail(errorText(e));
  }
  if (!room.stream_key) return fail('The server did not accept this token (wrong server, or signed with another secret).');
  roomFetchedAt = Date.now();
  show('dash');
  startDashboard();
}

$('#signin-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const t = $('#token-input').value.trim();
  if (!t) return;
  if (tokenClaims(t)) signIn(t, true);
  else exchange({ admin_key: t }); // not a token: the admin key
});

$('#signout').addEventListener('click', () => {
  store.del(KEY);
  location.href = '/studio';
});

// ---- admin: every room, create one for an anchor ----------------------------------

function showAdmin(rooms) {
  show('admin');
  $('#admin-rooms').replaceChildren(...rooms.map((r) => el('tr', { data: { room: r.id } },
    el('td', {}, el('b', { text: r.title || r.id }), el('div', { class: 'muted small', text: r.id })),
    el('td', { text: r.anchor_id }),
    el('td', {}, statusBadge(r)),
    el('td', {}, el('a', { class: 'btn btn-xs', href: '/studio?room=' + encodeURIComponent(r.id), text: 'Open' })))));
}

$('#admin-create-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const err = $('#admin-error');
  err.hidden = true;
  const anchor = $('#admin-anchor').value.trim(), title = $('#admin-title').value.trim(), id = $('#admin-room-id').value.trim();
  if (id && !validRoomID(id)) {
    err.textContent = 'The id may have letters, digits, - and _ (up to 64), starting with a letter or digit.';
    err.hidden = false;
    return;
  }
  try {
    const r = await api('/api/rooms', { method: 'POST', token, body: { title, anchor, id: id || undefined } });
    history.replaceState(null, '', '/studio?room=' + encodeURIComponent(r.id));
    await openRoom(r.id, (msg) => { err.textContent = msg; err.hidden = false; });
  } catch (e) {
    err.textContent = errorText(e);
    err.hidden = false;
  }
});

// ---- create -----------------------------------------------------------------------

$('#create-id').addEventListener('input', () => {
  $('#create-preview').textContent = $('#create-id').value.trim() || 'generated-id';
});

$('#create-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const title = $('#create-title').value.trim();
  const id = $('#create-id').value.trim();
  const err = $('#create-error');
  err.hidden = true;
  if (id && !validRoomID(id)) {
    err.textContent = 'The id may have letters, digits, - and _ (up to 64), starting with a letter or digit.';
    err.hidden = false;
    return;
  }
  try {
    const r = await api('/api/rooms', { method: 'POST', token, body: { title, id: id || undefined } });
    await openRoom(r.id, (msg) => { err.textContent = msg; err.hidden = false; });
  } catch (e) {
    err.textContent = errorText(e);
    err.hidden = false;
  }
});

// ---- dashboard ------------------------------------------------------------------------

let charts;

function startDashboard() {
  renderRoom();
  setupOBS();
  charts = {
    viewers: new LineChart($('#chart-viewers'), { label: 'Viewers', color: '#4cc2ff' }),
    rate: new LineChart($('#chart-rate'), { label: 'Messages/s', color: '#ffb547', format: (v) => (v < 10 ? v.toFixed(1) : String(Math.round(v))) }),
    bitrate: new LineChart($('#chart-bitrate'), { label: 'Bitrate', unit: 'kbps', color: '#7ee081' }),
  };
  player = new Player($('#preview'), { room: room.id, onState: onPreviewState });
  client = new RoomClient({ room: room.id, token, uid: claims.sub, version: 'studio-1' });
  client.on('messages', onMessages);
  client.on('online', (n) => { online = n; $('#room-online').textContent = fmtCount(n); });
  client.on('kicked', () => {});
  client.start();
  online = room.online || 0;
  setStatus(room.live ? 'live' : room.status);
  sample();
  timers.push(setInterval(sample, 1000));
  timers.push(setInterval(refreshRoom, 5000));
  timers.push(setInterval(refreshStream, 2000));
  timers.push(setInterval(refreshAudience, 5000));
  refreshStream();
  refreshAudience();
  setupRecording();
  timers.push(setInterval(() => renderSessions($('#sessions'), room.id), 15000));
  const quiz = new QuizConsole($('#quiz-panel'), { room: room.id, token });
  const rain = new RainConsole($('#rain-panel'), { token, activity: () => quiz.act });
  window.roomcastStudio = { client, charts, player, quiz, rain };
}

// The recording switch (PUT /api/rooms/{id}/recording) and the sessions.
async function setupRecording() {
  const box = $('#rec-toggle');
  try {
    box.checked = (await api(`/api/rooms/${encodeURIComponent(room.id)}/recording`)).enabled;
  } catch { box.disabled = true; }
  box.onchange = async () => {
    try {
      const r = await api(`/api/rooms/${encodeURIComponent(room.id)}/recording`, { method: 'PUT', token, body: { enabled: box.checked } });
      box.checked = r.enabled;
      $('#rec-status').textContent = r.enabled ? 'Recording from the next key frame.' : 'Not recording.';
    } catch (e) {
      box.checked = !box.checked;
      $('#rec-status').textContent = errorText(e);
    }
  };
  renderSessions($('#sessions'), room.id);
}

function renderRoom() {
  $('#room-title').textContent = room.title || room.id;
  document.title = (room.title || room.id) + ' · Studio · roomcast';
  $('#room-online').textContent = fmtCount(room.online || 0);
  $('#room-link').href = '/room/' + encodeURIComponent(room.id);
  $('#stream-key').value = room.stream_key || '';
  $('#all-rooms').hidden = !claims || claims.role !== 'admin';
  $('#anchor-link-box').hidden = !claims || claims.role !== 'admin';
}

// An admin hands the anchor a one-time sign-in link with the stream key.
$('#anchor-link-make').addEventListener('click', async () => {
  try {
    const out = await api(`/api/rooms/${encodeURIComponent(room.id)}/signin-link`, { method: 'POST', token });
    $('#anchor-link').value = out.url;
  } catch (e) {
    setupNote(errorText(e), true);
  }
});

async function refreshRoom() {
  try {
    const r = await api('/api/rooms/' + encodeURIComponent(room.id), { token });
    room = { ...room, ...r };
    roomFetchedAt = Date.now();
    setStatus(r.live ? 'live' : r.status);
  } catch { /* keep the last state */ }
}

function setStatus(s) {
  const b = $('#room-status');
  b.textContent = s === 'live' ? 'LIVE' : s === 'ended' ? 'Ended' : 'Offline';
  b.className = 'badge ' + (s === 'live' ? 'badge-live' : 'badge-off');
  if (s === status) return;
  status = s;
  document.body.dataset.status = s;
  if (s === 'live') {
    previewOverlay('Connecting…', '');
    player.start();
  } else {
    player.stop();
    previewOverlay(s === 'ended' ? 'Ended' : 'Offline', s === 'ended' ? 'Stream again from OBS to go live again.' : 'Start streaming from OBS; the preview starts by itself.');
  }
}

function onPreviewState(state) {
  if (status !== 'live') return;
  if (state === 'playing') previewOverlay(null);
  else if (state === 'error') previewOverlay('Reconnecting…', '');
}

function previewOverlay(title, text = '') {
  const o = $('#preview-overlay');
  o.hidden = title === null;
  if (title !== null) {
    $('#preview-title').textContent = title;
    $('#preview-text').textContent = text;
  }
}

// One sample a second for each chart.
function sample() {
  const now = Date.now();
  const cur = client.cursor;
  let rate = 0;
  if (cur !== null && lastCursor !== null && lastSampleAt) rate = Math.max(0, (cur - lastCursor) * 1000 / (now - lastSampleAt));
  if (cur !== null) lastCursor = cur;
  lastSampleAt = now;
  charts.viewers.push(online);
  charts.rate.push(rate);
  charts.bitrate.push(bitrate);
  const live = status === 'live' && room.uptime_ms !== undefined;
  $('#room-uptime-wrap').hidden = !live;
  if (live) $('#room-uptime').textContent = fmtDuration(room.uptime_ms + now - roomFetchedAt);
}

async function refreshStream() {
  let s;
  try {
    s = await api('/api/rooms/' + encodeURIComponent(room.id) + '/stream');
  } catch {
    return;
  }
  bitrate = s.live ? Math.round((s.bitrate_in || 0) / 1000) : 0;
  const rows = [];
  if (s.live) {
    const v = s.viewers || {};
    rows.push(['Video', [s.codec, s.resolution, s.fps ? s.fps.toFixed(0) + ' fps' : ''].filter(Boolean).join(' · ')]);
    rows.push(['Audio', [s.audio_codec, s.sample_rate ? s.sample_rate + ' Hz' : ''].filter(Boolean).join(' · ')]);
    rows.push(['Bitrate', `in ${fmtCount(Math.round((s.bitrate_in || 0) / 1000))} kbps · out ${fmtCount(Math.round((s.bitrate_out || 0) / 1000))} kbps`]);
    rows.push(['Players', `FLV ${v.flv || 0} · HLS ${v.hls || 0} · RTMP ${v.rtmp || 0}`]);
    if (s.uptime) rows.push(['Uptime', fmtDuration(s.uptime * 1000)]);
    if (status !== 'live') refreshRoom();
  }
  $('#stream-stats').replaceChildren(...rows.flatMap(([k, v]) => [el('dt', { text: k }), el('dd', { text: v || '—' })]));
}

// ---- OBS setup -------------------------------------------------------------------------

async function setupOBS() {
  let cfg = { rtmp: false };
  try { cfg = await api('/web/config.json'); } catch { /* older server */ }
  const note = $('#setup-note');
  if (cfg.rtmp) {
    const url = `rtmp://${location.hostname}:${cfg.rtmp_port}/${cfg.rtmp_app || 'live'}`;
    $('#rtmp-url').value = url;
    $('#ffmpeg-url').textContent = url;
  } else {
    $('#rtmp-url').value = '';
    $('#rtmp-url').placeholder = 'RTMP ingest is off on this server (--rtmp)';
    note.textContent = 'RTMP ingest is off on this server: start it with --rtmp :1935.';
    note.hidden = false;
  }
}

for (const b of document.querySelectorAll('[data-copy]')) {
  b.addEventListener('click', async () => {
    const v = $('#' + b.dataset.copy).value;
    if (!v) return;
    const ok = await copyText(v);
    const old = 'Copy';
    b.textContent = ok ? 'Copied' : 'Copy failed';
    setTimeout(() => { b.textContent = old; }, 1500);
  });
}

$('#key-show').addEventListener('click', () => {
  const k = $('#stream-key');
  k.type = k.type === 'password' ? 'text' : 'password';
  $('#key-show').textContent = k.type === 'password' ? 'Show' : 'Hide';
});

let resetArmed = 0;
$('#key-reset').addEventListener('click', async () => {
  const b = $('#key-reset');
  if (!resetArmed) { // two clicks: no dialog, no accident
    b.textContent = 'Really reset?';
    resetArmed = setTimeout(() => { resetArmed = 0; b.textContent = 'Reset'; }, 3000);
    return;
  }
  clearTimeout(resetArmed);
  resetArmed = 0;
  b.textContent = 'Reset';
  try {
    const out = await api(`/api/rooms/${encodeURIComponent(room.id)}/key/reset`, { method: 'POST', token });
    room.stream_key = out.stream_key;
    $('#stream-key').value = out.stream_key;
    setupNote('New stream key. Paste it into OBS; the old one no longer works.');
  } catch (e) {
    setupNote(errorText(e), true);
  }
});

function setupNote(text, isError = false) {
  const n = $('#setup-note');
  n.textContent = text;
  n.classList.toggle('error', isError);
  n.hidden = false;
}

// ---- moderation --------------------------------------------------------------------------

const MAX_MOD_LINES = 100;

function onMessages(msgs) {
  const list = $('#mod-chat');
  for (const m of msgs) {
    if (m.kind === 'retract') {
      for (const li of list.querySelectorAll('li')) if (li.dataset.id === m.ref) li.remove();
      continue;
    }
    if (m.kind === 'system') {
      const ev = (m.data && m.data.event) || m.text;
      if (ev === 'live_start' || ev === 'live_end') refreshRoom();
      continue;
    }
    if (m.kind !== 'chat' && m.kind !== 'gift') continue;
    const u = m.user || {};
    const text = m.kind === 'gift' ? `sent ${(m.gift && (m.gift.name || m.gift.id)) || ''}${m.gift && m.gift.count > 1 ? ' ×' + m.gift.count : ''}` : m.text;
    const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
    list.append(el('li', { class: 'line kind-' + m.kind, data: { id: m.id, user: u.id || '' } },
      el('span', { class: 'name', text: u.name || u.id || '?', title: u.id }),
      el('span', { class: 'text', text }),
      el('span', { class: 'mod-actions' },
        modButton('Remove', () => act('remove', { msg: m.id })),
        u.id && u.id !== claims.sub ? modButton('Mute', () => act('mute', { user: u.id })) : null,
        u.id && u.id !== claims.sub ? modButton('Kick', () => act('kick', { user: u.id }), true) : null,
      )));
    while (list.childElementCount > MAX_MOD_LINES) list.firstElementChild.remove();
    if (atBottom) list.scrollTop = list.scrollHeight;
  }
}

function modButton(label, fn, danger = false) {
  return el('button', { type: 'button', class: 'btn btn-xs' + (danger ? ' btn-danger' : ''), text: label, on: { click: fn } });
}

async function act(what, { user = '', msg = '' }) {
  const rid = encodeURIComponent(room.id);
  const duration = Number($('#mod-duration').value) || 600;
  const st = $('#mod-status');
  try {
    if (what === 'remove') await api(`/api/rooms/${rid}/messages/${encodeURIComponent(msg)}`, { method: 'DELETE', token });
    else if (what === 'mute') await api(`/api/rooms/${rid}/mute`, { method: 'POST', token, body: { user, duration_s: duration } });
    else if (what === 'unmute') await api(`/api/rooms/${rid}/mute/${encodeURIComponent(user)}`, { method: 'DELETE', token });
    else if (what === 'kick') await api(`/api/rooms/${rid}/kick`, { method: 'POST', token, body: { user, duration_s: duration } });
    st.classList.remove('error');
    st.textContent = { remove: 'Message removed.', mute: `Muted ${user}.`, unmute: `Unmuted ${user}.`, kick: `Kicked ${user}.` }[what];
    if (what === 'kick') refreshAudience();
  } catch (e) {
    st.classList.add('error');
    st.textContent = errorText(e);
  }
}

for (const b of document.querySelectorAll('#mod-form [data-act]')) {
  b.addEventListener('click', () => {
    const user = $('#mod-user').value.trim();
    if (!user) { $('#mod-user').focus(); return; }
    act(b.dataset.act, { user });
  });
}
$('#mod-form').addEventListener('submit', (ev) => ev.preventDefault());

async function refreshAudience() {
  let out;
  try { out = await api(`/api/rooms/${encodeURIComponent(room.id)}/audience?limit=50`); } catch { return; }
  const list = $('#audience');
  list.replaceChildren(...(out.audience || []).filter((a) => a.user_id || a.id).map((a) => {
    const uid = a.user_id || a.id;
    return el('li', { class: 'aud' },
      a.level > 0 ? el('span', { class: 'lv', text: 'Lv' + a.level }) : null,
      el('span', { class: 'name', text: a.name || uid, title: uid }),
      uid !== claims.sub ? el('span', { class: 'mod-actions' },
        modButton('Mute', () => act('mute', { user: uid })),
        modButton('Kick', () => act('kick', { user: uid }), true)) : null);
  }));
}

// ---- start -------------------------------------------------------------------------------

const fromURL = takeURL();
const initial = fromURL.t || store.get(KEY) || '';
if (fromURL.code) exchange({ code: fromURL.code });
else if (initial) signIn(initial, true);
else show('signin');
