// The live quiz (issue 12) on the viewer page: the question overlay shown
// when the player reaches the question's cue in the stream (FLV script data
// through mpegts.js, an HLS date range through hls.js), falling back to the
// question's arrival; a countdown; the answer (POST …/answers); at the
// reveal, the sealed result checked against key_hash and decrypted in the
// browser (WebCrypto AES-256-GCM); counts per option; out, revived, winnings.
// Everything shown goes through textContent (el).

import { $, api, el, errorText } from './ui.js';

const CUE_WAIT_MS = 4000; // a question whose cue has not come by then is shown anyway

const b64 = (s) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
const hex = (buf) => Array.from(new Uint8Array(buf), (b) => b.toString(16).padStart(2, '0')).join('');

/** Decrypts a sealed result (12-byte nonce ‖ AES-256-GCM ciphertext) with the revealed key. */
export async function openSealed(keyB64, keyHash, activity, n, sealedB64) {
  const key = b64(keyB64);
  if (hex(await crypto.subtle.digest('SHA-256', key)) !== keyHash) throw new Error('the revealed key does not match key_hash');
  const k = await crypto.subtle.importKey('raw', key, 'AES-GCM', false, ['decrypt']);
  const sealed = b64(sealedB64);
  const plain = await crypto.subtle.decrypt({ name: 'AES-GCM', iv: sealed.slice(0, 12), additionalData: new TextEncoder().encode(`${activity}:${n}`) },
    k, sealed.slice(12));
  return JSON.parse(new TextDecoder().decode(plain));
}

export class QuizOverlay {
  /**
   * @param {HTMLElement} root the overlay element (inside the stage)
   * @param {{token: () => string, user: () => string, playing: () => boolean}} o
   */
  constructor(root, o) {
    this.root = root;
    this.o = o;
    this.q = null;          // the question on screen or waiting for its cue
    this.cued = new Set();  // "activity:n" cues seen before their message
    this.sealed = new Map(); // "activity:n" → sealed result
    this.out = false;
    this.timer = 0;
    this.waitTimer = 0;
    root.hidden = true;
  }

  /** onMessages hook: the quiz kinds. */
  onMessage(m) {
    let d;
    try { d = typeof m.data === 'string' ? JSON.parse(m.data) : m.data; } catch { return; }
    if (!d) return;
    if (m.kind === 'quiz_question') this.#question(d);
    else if (m.kind === 'quiz_reveal') this.#reveal(d);
    else if (m.kind === 'quiz_end') this.#end(d);
  }

  /** A cue from the player: {activity, n}, due in delayMs (0: now). */
  onCue(data, delayMs = 0) {
    if (!data || !data.activity) return;
    const k = `${data.activity}:${data.n}`;
    setTimeout(() => {
      this.cued.add(k);
      if (this.q && this.q.key === k && !this.q.shown) this.#show('cue');
    }, Math.max(0, delayMs));
  }

  #question(d) {
    clearTimeout(this.waitTimer);
    this.q = { ...d, key: `${d.activity}:${d.n}`, shown: false, answered: -1 };
    if (this.cued.has(this.q.key) || !this.o.playing()) this.#show(this.o.playing() ? 'cue' : 'message');
    else this.waitTimer = setTimeout(() => this.#show('fallback'), CUE_WAIT_MS);
  }

  #show(why) {
    const q = this.q;
    if (!q || q.shown) return;
    q.shown = true;
    q.shownAt = performance.now();
    q.why = why;
    this.root.dataset.sync = why;
    this.root.hidden = false;
    this.root.replaceChildren(
      el('div', { class: 'quiz-head' }, el('span', { class: 'quiz-n', text: `Question ${q.n} of ${q.count}` }),
        el('span', { class: 'quiz-count', text: '' })),
      el('p', { class: 'quiz-text', text: q.text }),
      el('div', { class: 'quiz-options' }, ...q.options.map((o, i) => el('button', {
        class: 'quiz-opt', type: 'button', text: o, data: { i },
        on: { click: () => this.#answer(i) },
      }))),
      el('p', { class: 'quiz-note', text: this.out ? "You're out — watching." : '' }));
    if (this.out) this.root.querySelectorAll('.quiz-opt').forEach((b) => { b.disabled = true; });
    clearInterval(this.timer);
    const tick = () => {
      const left = Math.max(0, q.answer_ms - (performance.now() - q.shownAt));
      const c = this.root.querySelector('.quiz-count');
      if (c) c.textContent = `${Math.ceil(left / 1000)} s`;
      if (left <= 0) {
        clearInterval(this.timer);
        this.root.querySelectorAll('.quiz-opt').forEach((b) => { b.disabled = true; });
      }
    };
    tick();
    this.timer = setInterval(tick, 200);
  }

  async #answer(i) {
    const q = this.q;
    if (!q || q.answered >= 0 || this.out) return;
    q.answered = i;
    const buttons = this.root.querySelectorAll('.quiz-opt');
    buttons.forEach((b) => { b.disabled = true; b.classList.toggle('chosen', Number(b.dataset.i) === i); });
    const note = this.root.querySelector('.quiz-note');
    try {
      const r = await api(`/api/activities/${encodeURIComponent(q.activity)}/answers`, { method: 'POST', token: this.o.token(), body: { n: q.n, option: i } });
      this.sealed.set(q.key, r.sealed);
      note.textContent = 'Answer sealed — the result opens at the reveal.';
    } catch (e) {
      note.textContent = errorText(e);
      if (['eliminated', 'not_a_player', 'out_of_sequence'].includes(e.code)) this.out = true;
    }
  }

  async #reveal(d) {
    const key = `${d.activity}:${d.n}`;
    const q = this.q && this.q.key === key ? this.q : null;
    clearInterval(this.timer);
    if (q && !q.shown) this.#show('reveal');
    this.root.hidden = false;
    const total = d.counts.reduce((a, b) => a + b, 0) || 1;
    this.root.querySelectorAll('.quiz-opt').forEach((b) => {
      const i = Number(b.dataset.i);
      b.disabled = true;
      b.classList.toggle('right', i === d.answer);
      const bar = el('span', { class: 'quiz-bar', text: ` ${d.counts[i] || 0}` });
      bar.style.setProperty('--p', `${(100 * (d.counts[i] || 0)) / total}%`); // CSSOM: allowed by the page's CSP
      b.append(bar);
    });
    const c = this.root.querySelector('.quiz-count');
    if (c) c.textContent = `${d.alive} still in · ${d.eliminated} out`;
    const note = this.root.querySelector('.quiz-note') || this.root.appendChild(el('p', { class: 'quiz-note' }));
    const sealed = this.sealed.get(key);
    let result = null;
    if (sealed && q) {
      try { result = await openSealed(d.key, q.key_hash, d.activity, d.n, sealed); } catch (e) { note.textContent = 'Could not open the result: ' + e.message; }
    }
    this.root.dataset.result = '';
    if (result) {
      this.root.dataset.result = result.correct ? 'correct' : result.revived ? 'revived' : 'out';
      if (result.correct) note.textContent = 'Correct!';
      else if (result.revived) note.textContent = `Wrong — a revival card keeps you in (${result.cards_left} left).`;
      else note.textContent = "Wrong — you're out.";
      if (!result.alive) this.out = true;
    } else if (!this.out && q) {
      this.root.dataset.result = 'out';
      this.out = true;
      note.textContent = "No answer — you're out.";
    }
  }

  async #end(d) {
    this.root.hidden = false;
    let text = d.winners ? `${d.winners} winner${d.winners > 1 ? 's' : ''}, ${fmtCents(d.prize_each_cents)} each.` : 'No winners this time.';
    if (!this.out && d.winners) {
      try {
        const w = await waitWinners(d.activity);
        const mine = w.winners.find((x) => x.user === this.o.user());
        if (mine) text = `You won ${fmtCents(mine.amount_cents)}! ` + text;
      } catch { /* the list comes after the settlement */ }
    }
    this.root.dataset.result = this.root.dataset.result || '';
    this.root.replaceChildren(el('p', { class: 'quiz-text', text: 'The quiz is over' }), el('p', { class: 'quiz-note quiz-end', text }));
    setTimeout(() => { this.root.hidden = true; }, 15000);
  }
}

async function waitWinners(activity) {
  for (let i = 0; i < 10; i++) {
    try { return await api(`/api/activities/${encodeURIComponent(activity)}/winners`); } catch (e) {
      if (e.code !== 'not_ended') throw e;
    }
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new Error('no winners list');
}

export function fmtCents(c) { return (c / 100).toFixed(2); }

// ---- the studio's operator tab ------------------------------------------------

/** parseQuestions reads "text | option | option* | …" lines (* marks the answer). */
export function parseQuestions(text) {
  return text.split('\n').map((l) => l.trim()).filter(Boolean).map((l, i) => {
    const parts = l.split('|').map((p) => p.trim());
    const options = parts.slice(1);
    const answer = options.findIndex((o) => o.endsWith('*'));
    if (options.length < 2 || answer < 0) throw new Error(`line ${i + 1}: "question | option | right option* | …"`);
    return { text: parts[0], options: options.map((o) => o.replace(/\*$/, '').trim()), answer };
  });
}

export class QuizConsole {
  /** @param {HTMLElement} root the studio's quiz panel; token: the operator's */
  constructor(root, { room, token }) {
    this.root = root;
    this.room = room;
    this.token = token;
    this.act = null;
    this.poll = 0;
    $('#quiz-create', root).addEventListener('submit', (e) => { e.preventDefault(); this.#create(); });
    $('#quiz-start', root).addEventListener('click', () => this.#step('start'));
    $('#quiz-push', root).addEventListener('click', () => this.#step('push'));
    $('#quiz-reveal', root).addEventListener('click', () => this.#step('reveal'));
    this.#loadLatest();
  }

  async #loadLatest() {
    try {
      const r = await api(`/api/rooms/${encodeURIComponent(this.room)}/activities`);
      const open = r.activities.filter((a) => a.status !== 'settled').pop() || r.activities.pop();
      if (open) await this.#refresh(open.id);
    } catch { /* none yet */ }
  }

  #say(text, isError = false) {
    const s = $('#quiz-status', this.root);
    s.textContent = text;
    s.classList.toggle('error', isError);
  }

  async #create() {
    let body;
    try {
      const json = $('#quiz-json', this.root).value.trim();
      if (json) body = JSON.parse(json);
      else {
        body = { title: $('#quiz-title', this.root).value.trim(), prize_cents: Math.round(Number($('#quiz-prize', this.root).value) * 100),
          answer_ms: Number($('#quiz-answer-ms', this.root).value) || 10000, questions: parseQuestions($('#quiz-questions', this.root).value) };
      }
      body.room = this.room;
      body.starts_at = body.starts_at || new Date().toISOString().replace(/\.\d+Z$/, 'Z');
      const a = await api('/api/activities', { method: 'POST', token: this.token, body });
      this.#say(`Created ${a.id}.`);
      await this.#refresh(a.id);
    } catch (e) { this.#say(errorText(e) || String(e.message || e), true); }
  }

  async #step(what) {
    if (!this.act) return this.#say('Create an activity first.', true);
    const a = this.act;
    const path = what === 'start' ? 'start'
      : what === 'push' ? `questions/${a.current + 1}/push` : `questions/${a.current}/reveal`;
    try {
      this.act = await api(`/api/activities/${encodeURIComponent(a.id)}/${path}`, { method: 'POST', token: this.token });
      this.#say(`${what} done.`);
      this.#render();
    } catch (e) { this.#say(errorText(e), true); }
  }

  async #refresh(id) {
    this.act = await api(`/api/activities/${encodeURIComponent(id)}`, { token: this.token });
    this.#render();
    clearInterval(this.poll);
    this.poll = setInterval(() => this.#tick(), 1000);
  }

  async #tick() {
    const a = this.act;
    if (!a) return;
    try {
      this.act = await api(`/api/activities/${encodeURIComponent(a.id)}`, { token: this.token });
      if (this.act.current > 0 && this.act.status === 'running') {
        const c = await api(`/api/activities/${encodeURIComponent(a.id)}/questions/${this.act.current}/counts`, { token: this.token });
        $('#quiz-counts', this.root).textContent = `answers ${c.answers}: ` + c.counts.map((n, i) => `${String.fromCharCode(65 + i)} ${n}`).join(' · ');
      }
      if (this.act.status === 'settled' && !this.winners) {
        this.winners = await api(`/api/activities/${encodeURIComponent(a.id)}/winners`);
        $('#quiz-winners', this.root).replaceChildren(...this.winners.winners.map((w) => el('li', { text: `${w.user} — ${fmtCents(w.amount_cents)}` })));
        clearInterval(this.poll);
      }
      this.#render();
    } catch { /* next second */ }
  }

  #render() {
    const a = this.act;
    $('#quiz-state', this.root).textContent = `${a.title} · ${a.status} · question ${a.current}/${a.count} (revealed ${a.revealed}) · players ${a.players} · alive ${a.alive} · out ${a.players - a.alive}`;
    $('#quiz-start', this.root).disabled = a.status !== 'scheduled';
    $('#quiz-push', this.root).disabled = a.status !== 'running' || a.current !== a.revealed || a.current >= a.count;
    $('#quiz-reveal', this.root).disabled = a.status !== 'running' || a.current === a.revealed;
    const q = a.questions[a.current - 1];
    $('#quiz-current', this.root).textContent = q ? `Q${q.n}: ${q.text} — answer: ${q.options[q.answer]}` : '';
  }
}
