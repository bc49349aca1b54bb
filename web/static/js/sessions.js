// The list of a room's sessions (issue 10), shared by the room page and the
// studio: each past session with its length and message count, linking to
// its replay (/replay/{sid}).

import { api, el, fmtDuration } from './ui.js';

/** Fills list (an <ol>) with room's sessions, newest first. */
export async function renderSessions(list, roomID, limit = 20) {
  let out;
  try {
    out = await api(`/api/rooms/${encodeURIComponent(roomID)}/sessions?limit=${limit}`);
  } catch {
    return; // an older server, or a hiccup: the list keeps what it had
  }
  const items = (out.sessions || []).map((s) => {
    const when = new Date(s.started_at).toLocaleString([], { dateStyle: 'medium', timeStyle: 'short' });
    const what = `${fmtDuration(s.duration_ms)} · ${s.messages} message${s.messages === 1 ? '' : 's'}` +
      (s.live ? ' · live now' : s.recorded ? '' : ' · chat only');
    return el('li', { class: 'session', data: { sid: s.id } },
      el('a', { href: '/replay/' + encodeURIComponent(s.id), text: when }),
      el('span', { class: 'muted small', text: ' ' + what }));
  });
  list.replaceChildren(...items);
  list.closest('[data-sessions]')?.toggleAttribute('hidden', items.length === 0);
}
