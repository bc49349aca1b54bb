// The viewer page (/room/{id}): player, danmaku, chat, gifts, likes,
// presence. Identity: a token handed in by a host app (#token=, ?token=,
// window.ROOMCAST_TOKEN or postMessage), else a guest token from
// POST /api/guest. See docs/client-js.md, "Embedding the viewer page".

import { RoomClient, tokenClaims } from '/client/roomcast.js';
import { $, api, el, errorText, fmtCount, fmtDuration, fmtTime, tokenExpired, validRoomID } from './ui.js';
import { Danmaku } from './danmaku.js';
import { Player } from './player.js';
import { renderSessions } from './sessions.js';
import { QuizOverlay } from './quiz.js';
import { RainOverlay, RankingsPanel, showPrizes } from './rain.js';

const roomID = decodeURIComponent(location.pathname.split('/')[2] || '');
const params = new URLSearchParams(location.search);
const hashParams = new URLSearchParams(location.hash.slice(1));
const embedded = window.parent !== window;
const hostOrigin = params.get('host_origin') || '';

const MAX_LINES = 200;
const HIGH_LEVEL = 30;   // "high-level" users are styled distinctly …
const TOP_LEVEL = 60;    // … and the very top even more

const store = {
  get(k) { try { return localStorage.getItem(k); } catch { return null; } },
  set(k, v) { try { localStorage.setItem(k, v); } catch { /* private mode, sandboxed iframe */ } },
};

const video = $('#video');
const danmaku = new Danmaku($('#danmaku'));
const gifts = new Map();
let me = { id: '', name: '', level: 0, guest: true };
let client = null;
let room = null;
let roomFetchedAt = 0;
let status = '';
let kicked = false;

const quiz = new QuizOverlay($('#quiz'), {
  token: () => (client ? client.token : ''),
  user: () => me.id,
  playing: () => !video.paused && video.readyState >= 2,
});
const rain = new RainOverlay($('#rain'), {
  token: () => (client ? client.token : ''),
  grab: (activity, k, taps) => client.grab(activity, k, taps), // a WebSocket grab frame when it can
});
const rankings = new RankingsPanel($('#rankings'), roomID);
$('#prizes-btn').addEventListener('click', () => {
  const box = $('#prizes');
  box.hidden = !box.hidden;
  if (!box.hidden) showPrizes(box, client ? client.token : '');
});
const player = new Player(video, { room: roomID, forced: params.get('player') || '', onState: onPlayerState,
  onCue: (name, data, delayMs) => { if (name === 'onQuizQuestion') quiz.onCue(data, delayMs); } });

// ---- identity ---------------------------------------------------------------

function takeURLToken() {
  const t = params.get('token') || hashParams.get('token') || '';
  if (t) { // keep it out of the address bar, history and shared links
    params.delete('token');
    hashParams.delete('token');
    const q = params.toString(), h = hashParams.toString();
    history.replaceState(null, '', location.pathname + (q ? '?' + q : '') + (h ? '#' + h : ''));
  }
  return t;
}

let hostToken = takeURLToken() || (typeof window.ROOMCAST_TOKEN === 'string' ? window.ROOMCAST_TOKEN : '');
let tokenWaiter = null;

window.addEventListener('message', (ev) => {
  if (!embedded || ev.source !== window.parent) return;
  if (hostOrigin && ev.origin !== hostOrigin) return;
  const d = ev.data;
  if (!d || d.type !== 'roomcast:token' || typeof d.token !== 'string') return;
  hostToken = d.token;
  if (tokenWaiter) tokenWaiter(d.token);
  else setIdentity(d.token, false);
});
if (embedded) window.parent.postMessage({ type: 'roomcast:ready', room: roomID }, hostOrigin || '*');

async function resolveToken() {
  if (hostToken) return { token: hostToken, guest: false };
  if (embedded) { // give the host app a moment to hand us its token
    const t = await new Promise((resolve) => {
      tokenWaiter = resolve;
      setTimeout(() => resolve(''), 600);
    });
    tokenWaiter = null;
    if (t) return { token: t, guest: false };
  }
  const saved = store.get('roomcast.guest');
  if (saved && !tokenExpired(saved)) return { token: saved, guest: true };
  try {
    const g = await api('/api/guest', { method: 'POST' });
    store.set('roomcast.guest', g.token);
    return { token: g.token, guest: true };
  } catch {
    return { token: '', guest: true }; // read-only
  }
}

function setIdentity(token, guest) {
  const c = token ? tokenClaims(token) : null;
  me = c ? { id: c.sub, name: c.name || c.sub, level: c.level || 0, guest } : { id: '', name: '', level: 0, guest };
  client?.setToken(token);
  const meLine = $('#me');
  if (!token) meLine.textContent = 'Read only: sending is off on this server.';
  else meLine.textContent = (guest ? 'You are ' : 'Signed in as ') + me.name + (guest ? ' (guest)' : '');
  $('#send-text').disabled = $('#send-btn').disabled = !token || kicked;
}

// ---- room state and player ------------------------------------------------

// The quality ladder (--transcode): Auto plays the room itself (on HLS the
// master playlist, so the player adapts); a rendition plays {room}_{name}.
async function setupQuality() {
  let cfg;
  try { cfg = await api('/web/config.json'); } catch { return; }
  const names = cfg.renditions || [];
  if (!names.length) return;
  const sel = $('#quality');
  for (const n of names) sel.append(el('option', { text: n, attrs: { value: n } }));
  const wanted = params.get('quality') || '';
  if (names.includes(wanted)) sel.value = wanted;
  sel.hidden = false;
  const apply = () => {
    const want = sel.value ? roomID + '_' + sel.value : roomID;
    if (player.o.room === want) return;
    player.o.room = want;
    if (status === 'live' && !kicked) { player.stop(); player.start(); }
  };
  sel.addEventListener('change', apply);
  apply();
}

function renderRoom() {
  $('#title').textContent = room.title || room.id;
  document.title = (room.title || room.id) + ' · roomcast';
  $('#anchor').textContent = room.anchor_id || '';
  setOnline(room.online || 0);
  if (room.thumbnail_url && video.getAttribute('poster') !== room.thumbnail_url) video.poster = room.thumbnail_url;
  setStatus(room.status === 'live' || room.live ? 'live' : room.status || 'idle');
}

async function refreshRoom() {
  try {
    room = await api('/api/rooms/' + encodeURIComponent(roomID));
    roomFetchedAt = Date.now();
    renderRoom();
  } catch (e) {
    if (e.code === 'room_not_found' || e.code === 'bad_request') {
      overlay('No such room', 'Check the address, or pick a room on the live page.');
      $('#title').textContent = 'No such room';
      setStatus('missing');
    }
  }
}

function setStatus(s) {
  if (s === status) return;
  status = s;
  const badge = $('#status');
  badge.textContent = s === 'live' ? 'LIVE' : s === 'ended' ? 'Ended' : s === 'missing' ? '—' : 'Offline';
  badge.className = 'badge ' + (s === 'live' ? 'badge-live' : 'badge-off');
  document.body.dataset.status = s;
  if (s === 'live' && !kicked) {
    overlay('Connecting…', '');
    player.start();
  } else {
    player.stop();
    if (s === 'ended') overlay('The stream has ended', 'Thanks for watching.');
    else if (s !== 'missing') overlay('Offline', 'The stream has not started. It will play here by itself when the anchor goes live.');
  }
  tickUptime();
  renderSessions($('#sessions'), roomID);
}

function onPlayerState(state, detail) {
  $('#player-kind').textContent = state === 'playing' ? ({ flv: 'HTTP-FLV', hls: 'HLS', native: 'HLS' }[detail] || '') : '';
  document.body.dataset.player = state;
  if (status !== 'live') return;
  if (state === 'playing') overlay(null);
  else if (state === 'error') {
    overlay('Reconnecting…', '');
    refreshRoom(); // maybe it ended
  }
}

function overlay(title, text = '') {
  const o = $('#overlay');
  o.hidden = title === null;
  if (title !== null) {
    $('#overlay-title').textContent = title;
    $('#overlay-text').textContent = text;
  }
}

function tickUptime() {
  const live = status === 'live' && room && room.uptime_ms !== undefined;
  $('#uptime-wrap').hidden = !live;
  if (live) $('#uptime').textContent = fmtDuration(room.uptime_ms + Date.now() - roomFetchedAt);
}

// ---- messages ---------------------------------------------------------------

function levelClass(level) {
  return level >= TOP_LEVEL ? ' lvl-top' : level >= HIGH_LEVEL ? ' lvl-hi' : '';
}

function userBits(u) {
  const bits = [];
  if (u && u.level > 0) bits.push(el('span', { class: 'lv' + levelClass(u.level), text: 'Lv' + u.level }));
  bits.push(el('span', { class: 'name', text: (u && (u.name || u.id)) || 'someone', title: u && u.id }));
  return bits;
}

function giftText(m) {
  const g = m.gift || {};
  const def = gifts.get(g.id);
  const icon = def && def.icon ? def.icon + ' ' : '';
  return `sent ${icon}${g.name || (def && def.name) || g.id}${g.count > 1 ? ' ×' + g.count : ''}`;
}

function addLine(li) {
  const chat = $('#chat');
  const atBottom = chat.scrollHeight - chat.scrollTop - chat.clientHeight < 40;
  chat.append(li);
  while (chat.childElementCount > MAX_LINES) chat.firstElementChild.remove();
  if (atBottom) chat.scrollTop = chat.scrollHeight;
}

function chatLine(m) {
  const u = m.user || {};
  const mine = u.id && u.id === me.id;
  const cls = 'line kind-' + m.kind + levelClass(u.level || 0) + (mine ? ' mine' : '');
  const text = m.kind === 'gift' ? giftText(m) : m.text;
  return el('li', { class: cls, data: { id: m.id, seq: m.seq, user: u.id || '' } },
    ...userBits(u), el('span', { class: 'text', text }));
}

function noticeLine(text, kind) {
  return el('li', { class: 'line notice notice-' + kind }, el('span', { class: 'text', text }));
}

function flyDanmaku(m) {
  const u = m.user || {};
  const gift = m.kind === 'gift';
  const cls = (gift ? 'dm-gift' : '') + levelClass(u.level || 0).replace('lvl-', 'dm-') + (u.id && u.id === me.id ? ' dm-mine' : '');
  const node = el('div', { class: cls.trim() },
    gift ? el('span', { class: 'dm-name', text: (u.name || u.id || '') + ' ' }) : null,
    el('span', { class: 'dm-text', text: gift ? giftText(m) : m.text }));
  danmaku.add(node, m.priority || 0, m.id);
}

function onMessages(msgs) {
  for (const m of msgs) {
    const data = (m.data && typeof m.data === 'object') ? m.data : {};
    switch (m.kind) {
      case 'chat':
      case 'gift':
        addLine(chatLine(m));
        flyDanmaku(m);
        break;
      case 'quiz_question':
      case 'quiz_reveal':
      case 'quiz_end':
        quiz.onMessage(m);
        break;
      case 'red_packet_rain':
        rain.onMessage(m);
        break;
      case 'enter':
        addLine(noticeLine(m.text || `${(m.user && m.user.name) || 'someone'} joined`, 'enter'));
        break;
      case 'leave':
        break; // counted in the online number; not worth a line
      case 'notice':
      case 'pk':
        addLine(noticeLine(m.text || '', m.kind));
        break;
      case 'retract':
        for (const li of document.querySelectorAll('#chat li')) if (li.dataset.id === m.ref) li.remove();
        danmaku.remove(m.ref);
        break;
      case 'mute':
        addLine(noticeLine(data.until ? `You are muted until ${fmtTime(data.until)}.` : (m.text || 'You are muted.'), 'system'));
        break;
      case 'kick':
        addLine(noticeLine(m.text || 'Someone was removed.', 'system'));
        if (data.user && data.user === me.id) onKicked();
        break;
      case 'system': {
        const ev = data.event || m.text;
        if (ev === 'live_start') {
          addLine(noticeLine('The stream started.', 'system'));
          refreshRoom();
          setStatus('live');
        } else if (ev === 'live_end') {
          addLine(noticeLine('The stream ended.', 'system'));
          setStatus('ended');
          refreshRoom();
        } else if (m.text) {
          addLine(noticeLine(m.text, 'system'));
        }
        break;
      }
      default:
        if (m.text) addLine(noticeLine(m.text, 'system'));
    }
  }
}

function setOnline(n) { $('#online').textContent = fmtCount(n); }
function setLikes(n) { $('#likes').textContent = fmtCount(n); }

function onKicked() {
  if (kicked) return;
  kicked = true;
  addLine(noticeLine('You were removed from this room.', 'system'));
  $('#send-text').disabled = $('#send-btn').disabled = true;
  player.stop();
  overlay('You were removed from this room', '');
}

// ---- sending ------------------------------------------------------------------

let noteTimer = 0;
function note(text, isError = true) {
  const n = $('#me');
  n.classList.toggle('error', isError);
  n.textContent = text;
  clearTimeout(noteTimer);
  noteTimer = setTimeout(() => { n.classList.remove('error'); setIdentity(client ? client.token : '', me.guest); }, 4000);
}

$('#send-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const input = $('#send-text');
  const text = input.value.trim();
  if (!text || !client) return;
  $('#send-btn').disabled = true;
  try {
    await client.chat(text);
    input.value = '';
  } catch (e) {
    note(errorText(e));
  } finally {
    $('#send-btn').disabled = kicked || !client.token;
    input.focus();
  }
});

$('#like').addEventListener('click', async () => {
  if (!client) return;
  const b = $('#like');
  b.classList.remove('pop');
  void b.offsetWidth; // restart the animation
  b.classList.add('pop');
  try { await client.like(); } catch (e) { note(errorText(e)); }
});

async function loadGifts() {
  try {
    const out = await api('/api/gifts');
    const box = $('#gifts');
    for (const g of out.gifts || []) {
      gifts.set(g.id, g);
      box.append(el('button', {
        class: 'gift', type: 'button', title: `${g.name} · ${(g.value_cents / 100).toFixed(2)}`,
        data: { gift: g.id },
        on: { click: async () => { try { await client?.gift(g.id, 1); } catch (e) { note(errorText(e)); } } },
      }, g.icon ? el('span', { class: 'gift-icon', text: g.icon }) : el('i', { class: 'ico ico-gift gift-icon' }), el('span', { class: 'gift-name', text: g.name })));
    }
  } catch { /* no gifts: the bar stays empty */ }
}

// ---- controls -------------------------------------------------------------------

const dmToggle = $('#dm-toggle');
dmToggle.checked = store.get('roomcast.danmaku') !== '0';
danmaku.setVisible(dmToggle.checked);
dmToggle.addEventListener('change', () => {
  danmaku.setVisible(dmToggle.checked);
  store.set('roomcast.danmaku', dmToggle.checked ? '1' : '0');
});

$('#unmute').addEventListener('click', () => {
  video.muted = !video.muted;
  $('#unmute i').className = 'ico ' + (video.muted ? 'ico-sound-off' : 'ico-sound-on');
  $('#unmute').title = video.muted ? 'Sound on' : 'Mute';
  if (!video.muted) video.play().catch(() => {});
});

$('#fullscreen').addEventListener('click', () => {
  const s = $('#stage');
  if (document.fullscreenElement) document.exitFullscreen();
  else s.requestFullscreen?.().catch(() => {});
});

// ---- start ------------------------------------------------------------------------

async function main() {
  if (!validRoomID(roomID)) {
    overlay('No such room', '');
    $('#title').textContent = 'No such room';
    return;
  }
  overlay('Loading…', '');
  loadGifts();
  setupQuality();
  await refreshRoom();
  if (status === 'missing') return;
  const id = await resolveToken();
  client = new RoomClient({ room: roomID, token: id.token, uid: tokenClaims(id.token)?.sub || '', version: 'web-1' });
  setIdentity(id.token, id.guest);
  client.on('messages', onMessages);
  client.on('online', setOnline);
  client.on('likes', setLikes);
  client.on('kicked', onKicked);
  client.on('reset', () => addLine(noticeLine('You were away for a while: older messages were skipped.', 'system')));
  client.on('transport', ({ transport, reason }) => {
    document.body.dataset.transport = transport;
    document.body.dataset.transportReason = reason;
    $('#transport').textContent = transport === 'ws' ? 'live' : 'polling';
    $('#transport').title = transport === 'ws' ? 'WebSocket' : 'short polling';
  });
  client.start();
  window.roomcastPage = { client, player, danmaku, quiz, rain, rankings };
  setInterval(() => { if (document.visibilityState === 'visible' || status !== 'live') refreshRoom(); }, 10000);
  setInterval(tickUptime, 1000);
}

main();
