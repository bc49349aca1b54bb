// The replay page (/replay/{sid}, issue 10): the session's recording (HLS
// through hls.js, native HLS on Safari) with its danmaku flying and its chat
// scrolling in step with the player: a message appears when the playhead
// passes its video_ms; a seek clears the screen and refills the chat panel
// with what was said just before (…/messages/around); pausing freezes
// both. The archive is read in windows of WINDOW_MS ahead of the playhead.
// While the session is still live, "Back to live" jumps to the live edge.

import { $, api, el, fmtDuration } from './ui.js';
import { Danmaku } from './danmaku.js';
import { loadScript, VENDOR } from './player.js';

const sid = decodeURIComponent(location.pathname.split('/')[2] || '');
const WINDOW_MS = 30000;     // archive read ahead of the playhead
const MAX_LINES = 200;
const JUMP_MS = 1500;        // a playhead move larger than this is a seek

const video = $('#video');
const danmaku = new Danmaku($('#danmaku'));
let session = null;
let hls = null;
let buf = [];                // fetched messages, by video_ms then seq
let bufFrom = 0, bufTo = -1; // window of video_ms covered by buf
let fetching = null;
let last = -1;               // video_ms up to which messages were shown
let gen = 0;                 // bumps on every seek, so stale fetches are dropped

function overlay(title, text = '') {
  const o = $('#overlay');
  o.hidden = title === null;
  if (title !== null) {
    $('#overlay-title').textContent = title;
    $('#overlay-text').textContent = text;
  }
}

function lineFor(m) {
  const u = m.user || {};
  const t = el('span', { class: 'muted small', text: fmtDuration(m.video_ms) + ' ' });
  if (m.kind === 'chat' || m.kind === 'gift') {
    const text = m.kind === 'gift' ? `sent ${(m.gift && (m.gift.name || m.gift.id)) || 'a gift'}${m.gift && m.gift.count > 1 ? ' ×' + m.gift.count : ''}` : m.text;
    return el('li', { class: 'line kind-' + m.kind, data: { id: m.id, ms: m.video_ms } },
      t, el('span', { class: 'name', text: u.name || u.id || 'someone' }), el('span', { class: 'text', text }));
  }
  if (m.kind === 'system' || m.kind === 'notice' || m.kind === 'enter') {
    const text = m.text === 'live_start' ? 'The stream started' : m.text === 'live_end' ? 'The stream stopped' : m.text;
    if (!text) return null;
    return el('li', { class: 'line notice notice-' + m.kind, data: { id: m.id, ms: m.video_ms } }, t, el('span', { class: 'text', text }));
  }
  return null;
}

function addLine(m) {
  const li = lineFor(m);
  if (!li) return;
  const chat = $('#chat');
  chat.append(li);
  while (chat.childElementCount > MAX_LINES) chat.firstElementChild.remove();
  chat.scrollTop = chat.scrollHeight;
}

function fly(m) {
  if (m.kind !== 'chat' && m.kind !== 'gift') return;
  const u = m.user || {};
  const text = m.kind === 'gift' ? `${u.name || u.id || ''} sent ${(m.gift && (m.gift.name || m.gift.id)) || 'a gift'}` : m.text;
  const node = el('div', { class: m.kind === 'gift' ? 'dm-gift' : '', data: { id: m.id, ms: m.video_ms } }, el('span', { class: 'dm-text', text }));
  danmaku.add(node, m.priority || 0, m.id);
}

function retract(m) {
  for (const li of document.querySelectorAll('#chat li')) if (li.dataset.id === m.ref) li.remove();
  danmaku.remove(m.ref);
}

// fetchWindow loads the messages with video_ms in [from, from+WINDOW_MS].
async function fetchWindow(from) {
  const g = gen;
  const to = from + WINDOW_MS;
  const out = [];
  let next = from;
  while (next !== null && next <= to) {
    const page = await api(`/api/sessions/${encodeURIComponent(sid)}/messages?from_ms=${next}&to_ms=${to}&limit=5000`);
    out.push(...page.messages);
    next = page.next_from_ms;
  }
  if (g !== gen) return;
  buf = out;
  bufFrom = from;
  bufTo = to;
}

function ensureWindow(ms) {
  if (fetching) return;
  if (ms >= bufFrom && ms + 5000 <= bufTo) return;
  const from = Math.max(0, Math.floor(ms));
  fetching = fetchWindow(from).catch(() => {}).finally(() => { fetching = null; });
}

// seekTo resets the screen for a playhead at ms: the chat panel gets what
// was said just before, the danmaku layer is cleared.
async function seekTo(ms) {
  gen++;
  const g = gen;
  last = ms;
  danmaku.clear();
  buf = [];
  bufFrom = 0;
  bufTo = -1;
  document.body.dataset.seeks = String(Number(document.body.dataset.seeks || 0) + 1);
  try {
    const a = await api(`/api/sessions/${encodeURIComponent(sid)}/messages/around?t_ms=${Math.floor(ms) + 1}&count=50`);
    if (g !== gen) return;
    $('#chat').replaceChildren();
    for (const m of a.messages) addLine(m);
  } catch { /* the panel stays empty; flying goes on */ }
  ensureWindow(ms);
}

// tick emits the messages the playhead passed since the last tick.
function tick() {
  requestAnimationFrame(tick);
  if (!session) return;
  const now = video.currentTime * 1000;
  $('#clock').textContent = fmtDuration(now);
  if (video.paused || video.seeking) return;
  if (last < 0 || now < last || now - last > JUMP_MS) {
    seekTo(now);
    return;
  }
  ensureWindow(now);
  if (now < bufFrom || now > bufTo) return; // waiting for the window
  for (const m of buf) {
    if (m.video_ms > last && m.video_ms <= now) {
      if (m.kind === 'retract') retract(m);
      else {
        addLine(m);
        fly(m);
      }
    }
  }
  last = now;
}

video.addEventListener('seeking', () => { last = -1; danmaku.clear(); });
video.addEventListener('pause', () => { danmaku.pause(); document.body.dataset.replay = 'paused'; });
video.addEventListener('play', () => danmaku.resume());
video.addEventListener('playing', () => { danmaku.resume(); overlay(null); document.body.dataset.replay = 'playing'; });
$('#dm-toggle').addEventListener('change', (ev) => danmaku.setVisible(ev.target.checked));
$('#to-live').addEventListener('click', () => {
  const edge = hls && hls.liveSyncPosition ? hls.liveSyncPosition
    : video.seekable.length ? video.seekable.end(video.seekable.length - 1) : video.duration;
  if (Number.isFinite(edge)) video.currentTime = Math.max(0, edge - 1);
  video.play().catch(() => {});
});

async function play(url) {
  if (window.MediaSource || window.ManagedMediaSource) {
    await loadScript(VENDOR.hls);
    if (window.Hls && window.Hls.isSupported()) {
      hls = new window.Hls({ enableWorker: true, startPosition: 0 });
      hls.on(window.Hls.Events.ERROR, (_, d) => { if (d.fatal) overlay('Cannot play the recording', d.details || ''); });
      hls.loadSource(url);
      hls.attachMedia(video);
      return;
    }
  }
  if (video.canPlayType('application/vnd.apple.mpegurl')) {
    video.src = url;
    return;
  }
  overlay('This browser cannot play the recording', '');
}

async function main() {
  try {
    session = await api('/api/sessions/' + encodeURIComponent(sid));
  } catch (e) {
    overlay(e.code === 'not_found' ? 'No such session' : 'Cannot load the session', e.message || '');
    document.body.dataset.replay = 'missing';
    return;
  }
  document.title = 'Replay · ' + session.room + ' · roomcast';
  $('#title').textContent = 'Replay of ' + session.room;
  $('#room-link').href = '/room/' + encodeURIComponent(session.room);
  $('#room-link').textContent = session.live ? 'Watch live' : 'Room';
  $('#length').textContent = fmtDuration(session.duration_ms);
  $('#count').textContent = String(session.messages);
  $('#status').textContent = session.live ? 'LIVE · replay' : 'Replay';
  $('#status').className = 'badge ' + (session.live ? 'badge-live' : 'badge-off');
  $('#to-live').hidden = !session.live;
  $('#export').href = `/api/sessions/${encodeURIComponent(sid)}/messages?format=bilibili&limit=5000`;
  if (!session.recorded) {
    overlay('No recording', 'This session was not recorded (or its recording was deleted); its chat is below.');
    document.body.dataset.replay = 'unrecorded';
    seekTo(session.duration_ms + 1);
    return;
  }
  $('#mp4').href = '/vod/' + encodeURIComponent(sid) + '.mp4';
  $('#mp4').hidden = false;
  overlay('Loading…', '');
  document.body.dataset.replay = 'loading';
  await play(session.vod);
  video.muted = true; // autoplay policies allow muted playback; the controls unmute
  video.play().catch(() => overlay('Press play', ''));
  requestAnimationFrame(tick);
}

main();
