// Red-packet rain, gift rankings and "my prizes" (issue 13). The viewer's
// rain overlay: falling packets for the rain's duration, a tap target whose
// taps count at most 5 × throttle times a second (the server's share) and
// go to the server together — one grab of N taps at most every FRAME_MS
// (over the WebSocket when it is open) — and a win shows its amount. The rankings panel and the prizes list read the
// HTTP pages. The studio's rain console starts rains and shows paid/left
// live. Everything shown goes through textContent (el).

import { $, api, el, errorText } from './ui.js';

const TAPS_PER_SECOND = 5; // at throttle 1 (the server's TapsPerSecond)
// A tap goes at once when the last grab left FRAME_MS ago; the taps after
// it wait for that window to close and go in one grab (bench rain's
// --frame-ms mirrors this).
export const FRAME_MS = 500;
const MAX_TAPS = 20; // per grab (the server's quiz.MaxGrabTaps)

export const fmtCents = (c) => (c / 100).toFixed(2);

export class RainOverlay {
  /**
   * @param {HTMLElement} root the overlay element (inside the stage)
   * @param {{token: () => string, grab?: (activity: string, k: number, taps: number) => Promise<object>}} o
   *   grab: the room client's (a WebSocket frame when it can); default HTTP
   */
  constructor(root, o) {
    this.root = root;
    this.o = o;
    this.rain = null;
    this.lastTap = 0;
    this.timer = 0;
    this.won = 0;
    this.grabs = 0;     // grabs sent (each carrying this.lastTaps taps)
    this.taps = 0;      // taps counted
    this.pending = 0;   // taps waiting for the window to close
    this.lastSent = -Infinity;
    this.flushTimer = 0;
    this.lastTaps = 0;
    root.hidden = true;
  }

  /** onMessages hook: red_packet_rain. */
  onMessage(m) {
    let d;
    try { d = typeof m.data === 'string' ? JSON.parse(m.data) : m.data; } catch { return; }
    if (!d || m.kind !== 'red_packet_rain' || Date.now() > d.ends_at) return;
    this.rain = d;
    this.won = 0;
    this.grabs = 0;
    this.taps = 0;
    this.pending = 0;
    clearTimeout(this.flushTimer);
    this.flushTimer = 0;
    this.#show();
  }

  /** The minimum gap between two grabs: 1 / (5 × throttle) s. */
  gapMs() {
    const t = Math.min(1, Math.max(0.001, Number(this.rain && this.rain.throttle) || 1));
    return 1000 / (TAPS_PER_SECOND * t);
  }

  #show() {
    const r = this.rain;
    const drops = el('div', { class: 'rain-drops', attrs: { 'aria-hidden': 'true' } });
    for (let i = 0; i < 14; i++) {
      const p = el('span', { class: 'rain-packet', text: '🧧' });
      p.style.left = `${(i * 7 + 3) % 96}%`;
      p.style.animationDelay = `${(i % 7) * 0.3}s`;
      drops.appendChild(p);
    }
    const btn = el('button', { class: 'rain-tap', type: 'button', text: 'Tap!' });
    btn.addEventListener('click', () => this.tap());
    this.root.replaceChildren(drops, el('div', { class: 'rain-box' }, el('p', { class: 'rain-title', text: 'Red-packet rain!' }),
      btn, el('p', { class: 'rain-note', text: '' }), el('p', { class: 'rain-won', text: '' })));
    this.root.hidden = false;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.#end(), Math.max(0, r.ends_at - Date.now()));
  }

  /** A tap: counted if the throttled gap has passed (otherwise ignored),
   *  and sent with the others of its window. */
  tap() {
    const r = this.rain;
    if (!r || Date.now() > r.ends_at) return;
    const now = performance.now();
    if (now - this.lastTap < this.gapMs()) return;
    this.lastTap = now;
    if (!this.o.token()) { $('.rain-note', this.root).textContent = 'Sign in to grab.'; return; }
    this.taps++;
    this.pending++;
    if (this.flushTimer) {
      if (this.pending >= MAX_TAPS) { clearTimeout(this.flushTimer); this.flushTimer = 0; this.#flush(); }
      return;
    }
    const wait = this.lastSent + FRAME_MS - now;
    if (wait <= 0) { this.#flush(); return; }
    this.flushTimer = setTimeout(() => { this.flushTimer = 0; this.#flush(); }, wait);
  }

  /** Sends the taps gathered as one grab and shows its answer. */
  async #flush() {
    const r = this.rain;
    const n = Math.min(this.pending, MAX_TAPS);
    this.pending = 0;
    if (!r || n === 0 || Date.now() > r.ends_at) return;
    this.lastSent = performance.now();
    this.grabs++;
    this.lastTaps = n;
    const note = $('.rain-note', this.root);
    try {
      const g = this.o.grab ? await this.o.grab(r.activity, r.rain, n)
        : await api(`/api/activities/${encodeURIComponent(r.activity)}/rains/${r.rain}/grab`, { method: 'POST', token: this.o.token(), body: { taps: n } });
      if (this.rain !== r) return;
      if (g.amount_cents > 0) {
        this.won += g.amount_cents;
        note.textContent = `+${fmtCents(g.amount_cents)}!`;
        note.classList.add('rain-win');
        $('.rain-won', this.root).textContent = `You won ${fmtCents(this.won)}`;
      } else {
        note.classList.remove('rain-win');
        note.textContent = { empty: 'All packets are taken.', limit: 'You have your packets.', ended: 'The rain is over.', throttled: 'Busy — keep tapping!' }[g.reason] || '';
      }
    } catch (e) { note.textContent = errorText(e); }
  }

  #end() {
    clearTimeout(this.flushTimer);
    this.flushTimer = 0;
    this.pending = 0;
    const text = this.won > 0 ? `The rain is over — you won ${fmtCents(this.won)}.` : 'The rain is over.';
    this.root.replaceChildren(el('div', { class: 'rain-box' }, el('p', { class: 'rain-title', text })));
    this.rain = null;
    setTimeout(() => { if (!this.rain) this.root.hidden = true; }, 4000);
  }
}

/** The room's gift rankings (refreshed every 10 s). */
export class RankingsPanel {
  constructor(root, room) {
    this.root = root;
    this.room = room;
    this.period = 'session';
    root.querySelectorAll('[data-period]').forEach((b) => b.addEventListener('click', () => {
      this.period = b.dataset.period;
      root.querySelectorAll('[data-period]').forEach((x) => x.classList.toggle('on', x === b));
      this.load();
    }));
    this.load();
    this.timer = setInterval(() => this.load(), 10000);
  }

  async load() {
    const list = $('.rank-list', this.root);
    try {
      const r = await api(`/api/rooms/${encodeURIComponent(this.room)}/rankings?period=${this.period}&limit=10`);
      list.replaceChildren(...r.rankings.map((e, i) => el('li', {},
        el('span', { class: 'rank-n', text: String(i + 1) }), el('span', { class: 'rank-name', text: e.name || e.user }),
        el('span', { class: 'rank-value', text: `${fmtCents(e.value_cents)} · ${e.gifts} gifts` }))));
      if (!r.rankings.length) list.replaceChildren(el('li', { class: 'muted', text: 'No gifts yet.' }));
    } catch { /* next refresh */ }
  }
}

/** "My prizes": the caller's quiz winnings and rain packets. */
export async function showPrizes(root, token) {
  if (!token) { root.replaceChildren(el('p', { class: 'muted', text: 'Sign in to see your prizes.' })); return; }
  try {
    const [me, p] = await Promise.all([api('/api/me', { token }), api('/api/me/prizes', { token })]);
    root.replaceChildren(el('p', { class: 'prizes-total', text: `Total ${fmtCents(me.prizes_total_cents || 0)} · revival cards ${me.cards}` }),
      el('ol', { class: 'prizes-list' }, ...p.prizes.map((x) => el('li', {
        text: `${new Date(x.at).toLocaleString()} — ${x.kind === 'rain' ? `red packet (rain ${x.rain})` : 'quiz prize'} — ${fmtCents(x.amount_cents)} · ${x.activity}`,
      }))));
  } catch (e) { root.replaceChildren(el('p', { class: 'error', text: errorText(e) })); }
}

/** The studio's rain console for the quiz console's activity. */
export class RainConsole {
  constructor(root, { token, activity }) {
    this.root = root;
    this.token = token;
    this.activity = activity; // () → the current activity view (or null)
    this.shown = '';
    this.timer = setInterval(() => this.tick(), 1000);
  }

  async tick() {
    const a = this.activity();
    const list = $('#rain-list', this.root);
    if (!a || !a.rains || !a.rains.length) {
      if (this.shown !== '') { list.replaceChildren(); this.shown = ''; }
      $('#rain-empty', this.root).hidden = false;
      return;
    }
    $('#rain-empty', this.root).hidden = true;
    if (this.shown !== a.id) {
      this.shown = a.id;
      list.replaceChildren(...a.rains.map((r) => {
        const b = el('button', { class: 'btn', type: 'button', text: `Start rain ${r.rain}` });
        b.addEventListener('click', () => this.start(a.id, r.rain));
        return el('li', { data: { rain: r.rain } }, el('span', { text: `${fmtCents(r.budget_cents)} in ${r.packets} packets · ` }), b,
          el('span', { class: 'rain-live small', text: '' }));
      }));
    }
    for (const r of a.rains) {
      try {
        const s = await api(`/api/activities/${encodeURIComponent(a.id)}/rains/${r.rain}`);
        const li = list.querySelector(`li[data-rain="${r.rain}"]`);
        if (!li) continue;
        li.querySelector('.rain-live').textContent = ` ${s.status} · paid ${fmtCents(s.paid_cents)} · left ${s.packets_left} packets · ${s.winners} winners · ${s.grabs} grabs`;
        li.querySelector('button').disabled = s.status !== 'scheduled';
      } catch { /* next second */ }
    }
  }

  async start(id, k) {
    const st = $('#rain-status', this.root);
    try {
      await api(`/api/activities/${encodeURIComponent(id)}/rains/${k}/start`, { method: 'POST', token: this.token });
      st.textContent = `Rain ${k} started.`;
      st.classList.remove('error');
    } catch (e) { st.textContent = errorText(e); st.classList.add('error'); }
  }
}
