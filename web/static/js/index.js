// The list of rooms (/): live rooms first, busiest first; refreshes itself
// from GET /api/rooms and ticks the uptimes every second.

import { $, api, el, fmtCount, fmtDuration, statusBadge } from './ui.js';

const REFRESH_MS = 5000;
let fetchedAt = 0;
let rooms = [];

function card(r, big) {
  const live = r.live || r.status === 'live';
  const initial = (r.title || r.id || '?').trim().charAt(0).toUpperCase();
  const uptime = el('span', { class: 'uptime', data: { uptime: r.uptime_ms || 0 } });
  return el('li', { class: 'card' + (live ? ' is-live' : ''), data: { room: r.id } },
    el('a', { href: '/room/' + encodeURIComponent(r.id), class: 'card-link' },
      el('div', { class: 'thumb' + (big ? '' : ' thumb-small'), attrs: { 'aria-hidden': 'true' } },
        el('span', { class: 'thumb-initial', text: initial }),
        r.thumbnail_url ? picture(r.thumbnail_url) : null,
        statusBadge(r),
        live ? uptime : null,
      ),
      el('div', { class: 'card-body' },
        el('h3', { class: 'card-title', text: r.title || r.id, title: r.title }),
        el('div', { class: 'card-meta' },
          el('span', { class: 'anchor', text: r.anchor_id, title: 'anchor' }),
          el('span', { class: 'online', title: 'online now' }, el('i', { class: 'ico ico-eye' }), ' ' + fmtCount(r.online || 0)),
        ),
      ),
    ),
  );
}

// The room's picture (a recent frame while live, the cover after); the
// initial stays underneath until it has loaded.
function picture(url) {
  const old = document.querySelector(`img.thumb-img[src="${CSS.escape(url)}"]`);
  if (old && old.complete) return old.cloneNode();
  const img = el('img', { class: 'thumb-img', attrs: { src: url, alt: '', decoding: 'async' } });
  img.addEventListener('error', () => img.remove());
  return img;
}

function render() {
  const live = rooms.filter((r) => r.live || r.status === 'live').sort((a, b) => (b.online || 0) - (a.online || 0));
  const other = rooms.filter((r) => !(r.live || r.status === 'live'));
  $('#live').replaceChildren(...live.map((r) => card(r, true)));
  $('#other').replaceChildren(...other.map((r) => card(r, false)));
  $('#empty').hidden = live.length > 0;
  $('#other-head').hidden = other.length === 0;
  const viewers = live.reduce((s, r) => s + (r.online || 0), 0);
  $('#summary').textContent = live.length ? `${live.length} live · ${fmtCount(viewers)} watching` : '';
  tick();
}

function tick() {
  const dt = Date.now() - fetchedAt;
  for (const u of document.querySelectorAll('.uptime')) {
    u.textContent = fmtDuration(Number(u.dataset.uptime) + dt);
  }
}

async function refresh() {
  try {
    const out = await api('/api/rooms');
    rooms = out.rooms || [];
    fetchedAt = Date.now();
    $('#error').hidden = true;
    render();
  } catch (e) {
    $('#error').textContent = 'Cannot load the rooms: ' + (e.message || e);
    $('#error').hidden = false;
  }
}

refresh();
setInterval(() => { if (document.visibilityState === 'visible') refresh(); }, REFRESH_MS);
document.addEventListener('visibilitychange', () => { if (document.visibilityState === 'visible') refresh(); });
setInterval(tick, 1000);
