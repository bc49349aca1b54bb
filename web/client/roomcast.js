// roomcast.js — the roomcast live-room client (R17, R22). One file, no
// dependencies, usable without the roomcast pages. See docs/client-js.md.
//
//   import { RoomClient } from '/client/roomcast.js';
//   const c = new RoomClient({ room: 'show', token });
//   c.on('messages', (msgs) => msgs.forEach(render));
//   c.on('online', (n) => …);
//   c.start();
//   await c.chat('hello');
//
// It asks the route service which transport to use (GET /api/route), holds a
// WebSocket with heartbeats and resumes it with its cursor after a drop, falls
// back to short polling (at the server's poll_after_ms) after three failed
// connects, and goes back to the WebSocket when the route service allows it.
// Messages are handed out once: duplicates are dropped by seq.

const DEFAULTS = {
  base: '',             // server origin, e.g. 'https://live.example.com'; '' = this page's
  token: '',            // a roomcast token (JWT); '' = read-only
  uid: '',              // route-service hints (allow/deny lists, rollout)
  device: '',
  version: 'js-1',
  limit: 15,            // poll page size (server caps at 100)
  heartbeatMs: 20000,   // ping period; the server closes connections silent for 2 of its periods
  maxFailures: 3,       // failed WebSocket connects before falling back to polling
  routeCheckMs: 30000,  // how often to ask the route service again
  sendTimeoutMs: 8000,  // WebSocket send → ack timeout
  format: 'json',       // WebSocket encoding: 'json' or 'proto' (protobuf, roomcast.v1.proto; loads roomcast-proto.js)
  WebSocket: globalThis.WebSocket,
  fetch: (...a) => globalThis.fetch(...a),
};

/** An error answered by the server: code (e.g. "rate_limited"), status, retryAfterMs. */
export class RoomcastError extends Error {
  constructor(code, message, status = 0, retryAfterMs = 0) {
    super(message || code);
    this.name = 'RoomcastError';
    this.code = code;
    this.status = status;
    this.retryAfterMs = retryAfterMs;
  }
}

/** The JSON claims of a token (not verified; for display only). */
export function tokenClaims(token) {
  try {
    const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const json = decodeURIComponent(Array.from(atob(part), (c) => '%' + c.charCodeAt(0).toString(16).padStart(2, '0')).join(''));
    return JSON.parse(json);
  } catch {
    return null;
  }
}

let clientSeq = 0;

export class RoomClient {
  #o;
  #handlers = new Map();
  #route = null;          // last answer of GET /api/route
  #transport = null;      // 'ws' | 'poll' | null
  #state = 'idle';
  #closed = false;
  #cursor = null;         // last seq considered (null: none yet → warm start)
  #epoch = null;          // the timeline epoch #cursor counts in (sent back with it)
  #seen = new Set();      // seqs (and ids of unsequenced messages) already handed out
  #floor = 0;             // seqs ≤ floor count as seen (pruned from #seen)
  #sid;                   // poll session id (presence)
  #userCursor = null;     // ts of the last user-scoped message received by polling
  #moveTo = null;         // a better node for this room (R14), followed at the next (re)connect
  // WebSocket state.
  #ws = null;
  #wsOpenAt = 0;
  #wsLastFrame = 0;
  #wsAuthed = false;
  #failures = 0;          // consecutive failed connects
  #probeBackoff = 0;      // while polling: wait before trying the WebSocket again
  #nextProbeAt = 0;
  #pending = new Map();   // send id → {resolve, reject, timer}
  #codec = null;          // ProtoCodec with format 'proto', once loaded
  #subprotocol = '';
  // Timers.
  #hbTimer = 0;
  #reconnectTimer = 0;
  #pollTimer = 0;
  #pollAbort = null;
  #routeTimer = 0;
  #pollErrors = 0;        // consecutive failed polls (backoff)
  #online = -1;
  #likes = -1;
  #onBrowserOnline = () => this.#wakeUp();

  /** @param {object} opts  room (required) and the DEFAULTS above */
  constructor(opts) {
    if (!opts || !opts.room) throw new TypeError('RoomClient: room is required');
    this.#o = { ...DEFAULTS, ...opts };
    this.room = String(opts.room);
    this.#sid = 's' + Math.random().toString(36).slice(2, 10) + (++clientSeq);
  }

  /** Subscribe to an event; returns a function that unsubscribes.
   *  Events: messages (array), online (count), likes (total), reset,
   *  transport ({transport, reason}), state (name), auth ({user}),
   *  kicked ({reason}), error (RoomcastError). */
  on(type, fn) {
    if (!this.#handlers.has(type)) this.#handlers.set(type, new Set());
    this.#handlers.get(type).add(fn);
    return () => this.#handlers.get(type)?.delete(fn);
  }

  get transport() { return this.#transport; }
  get state() { return this.#state; }
  get cursor() { return this.#cursor; }
  get epoch() { return this.#epoch; }
  get token() { return this.#o.token; }

  /** Starts receiving. */
  start() {
    if (this.#closed || this.#state !== 'idle') return this;
    this.#setState('connecting');
    globalThis.addEventListener?.('online', this.#onBrowserOnline);
    this.#decide('start');
    return this;
  }

  /** Stops everything; the client cannot be restarted. */
  close() {
    if (this.#closed) return;
    this.#closed = true;
    globalThis.removeEventListener?.('online', this.#onBrowserOnline);
    this.#stopWS(1000, 'client closed');
    this.#stopPolling();
    clearTimeout(this.#routeTimer);
    for (const [, p] of this.#pending) { clearTimeout(p.timer); p.reject(new RoomcastError('closed', 'client closed')); }
    this.#pending.clear();
    this.#setState('closed');
  }

  /** Uses another token from now on (e.g. after the host app signs in). */
  setToken(token) {
    this.#o.token = token || '';
    this.#wsAuthed = false;
    if (this.#ws && this.#ws.readyState === 1 && token) this.#authFrame();
  }

  /** Sends a message: {kind:'chat', text} or {kind:'gift', gift:{id, count}} or {kind:'like'}.
   *  Resolves with {seq, id, likes?}; rejects with a RoomcastError. Over the
   *  WebSocket when it is open and signed in, else over HTTP. Every send
   *  carries a client_msg_id (generated unless req has one): sending the
   *  same req again after a timeout or network error cannot post it twice,
   *  it gets the first send's {seq, id}. */
  send(req) {
    if (!this.#o.token) return Promise.reject(new RoomcastError('unauthorized', 'sending needs a token'));
    if (req.kind !== 'like' && !req.client_msg_id) req.client_msg_id = 'm' + Date.now().toString(36) + Math.random().toString(36).slice(2, 12);
    const ws = this.#ws;
    if (ws && ws.readyState === 1 && this.#wsAuthed) return this.#wsRequest({ ...req, type: 'send' }, (a) => a);
    return this.#http('POST', `/api/rooms/${encodeURIComponent(this.room)}/messages`, req);
  }

  /** A red-packet grab of taps taps (1–20, gathered by the caller) at rain
   *  k of activity: resolves with {amount_cents, reason?, packets, taps,
   *  admitted} (docs/api.md); rejects with a RoomcastError. Over the
   *  WebSocket when it is open and signed in (a grab frame), else over
   *  HTTP. */
  grab(activity, k, taps = 1) {
    if (!this.#o.token) return Promise.reject(new RoomcastError('unauthorized', 'grabbing needs a token'));
    const ws = this.#ws;
    if (ws && ws.readyState === 1 && this.#wsAuthed) {
      return this.#wsRequest({ type: 'grab', activity, rain: k, taps }, (f) => {
        const out = { amount_cents: f.amount_cents, packets: f.packets, taps: f.taps, admitted: f.admitted };
        if (f.reason) out.reason = f.reason;
        return out;
      });
    }
    return this.#http('POST', `/api/activities/${encodeURIComponent(activity)}/rains/${k}/grab`, { taps });
  }

  // #wsRequest sends frame f with a fresh id and resolves with ok(answer)
  // when its answer comes (an error frame rejects).
  #wsRequest(f, ok) {
    const id = 'c' + Math.random().toString(36).slice(2, 10);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new RoomcastError('timeout', 'no answer from the server'));
      }, this.#o.sendTimeoutMs);
      this.#pending.set(id, { resolve: (a) => resolve(ok(a)), reject, timer });
      this.#wsSend({ ...f, id });
    });
  }

  chat(text) { return this.send({ kind: 'chat', text }); }
  gift(id, count = 1) { return this.send({ kind: 'gift', gift: { id, count } }); }
  like() { return this.send({ kind: 'like' }); }

  // ---- transport decision -------------------------------------------------

  async #askRoute() {
    const q = new URLSearchParams({ room: this.room, version: this.#o.version });
    if (this.#o.uid) q.set('uid', this.#o.uid);
    if (this.#o.device) q.set('device', this.#o.device);
    try {
      const res = await this.#o.fetch(this.#url('/api/route?' + q), { cache: 'no-store' });
      if (!res.ok) throw new Error('route ' + res.status);
      this.#route = await res.json();
    } catch {
      // No route service: assume the WebSocket on this server.
      if (!this.#route) {
        const u = new URL(this.#url('/ws?room=' + encodeURIComponent(this.room)), globalThis.location?.href);
        u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
        this.#route = { transport: 'ws', ws_url: u.href, poll_url: this.#url(`/api/rooms/${encodeURIComponent(this.room)}/messages`), poll_after_ms: 2000 };
      }
    }
    return this.#route;
  }

  async #decide(why) {
    const r = await this.#askRoute();
    if (this.#closed) return;
    this.#scheduleRouteCheck();
    if (r.transport === 'poll') {
      this.#stopWS(1000, 'route: poll');
      this.#startPolling('route');
    } else if (this.#transport !== 'ws' && !this.#ws) {
      if (this.#transport === 'poll') {
        // Polling after failed connects: probe the WebSocket now and then,
        // and keep polling until one opens.
        if (Date.now() >= this.#nextProbeAt) this.#connect(true);
      } else {
        this.#connect(false);
      }
    }
    void why;
  }

  #scheduleRouteCheck() {
    clearTimeout(this.#routeTimer);
    this.#routeTimer = setTimeout(() => this.#decide('recheck'), this.#o.routeCheckMs);
  }

  #wakeUp() { // the browser is back online
    if (this.#closed) return;
    if (this.#transport === 'poll') { this.#pollNow(); return; }
    if (!this.#ws) { clearTimeout(this.#reconnectTimer); this.#connect(false); }
  }

  // ---- WebSocket ------------------------------------------------------------

  #connect(probe) {
    if (this.#closed || this.#ws) return;
    clearTimeout(this.#reconnectTimer);
    if (this.#o.format === 'proto' && !this.#codec) { // load the protobuf codec first
      import('./roomcast-proto.js').then((m) => {
        this.#codec ??= new m.ProtoCodec();
        this.#subprotocol = m.SUBPROTOCOL;
        this.#connect(probe);
      }, (e) => {
        this.#emit('error', new RoomcastError('proto_unavailable', 'cannot load the protobuf codec: ' + e));
        this.#onWSClose(null, { code: 1006 });
      });
      return;
    }
    this.#follow();
    const u = new URL(this.#route.ws_url, globalThis.location?.href);
    if (!u.searchParams.get('room')) u.searchParams.set('room', this.room);
    if (this.#cursor !== null) u.searchParams.set('cursor', String(this.#cursor));
    if (this.#epoch !== null) u.searchParams.set('epoch', this.#epoch);
    let ws;
    try {
      ws = this.#codec ? new this.#o.WebSocket(u.href, [this.#subprotocol]) : new this.#o.WebSocket(u.href);
      if (this.#codec) ws.binaryType = 'arraybuffer';
    } catch {
      this.#ws = null;
      this.#onWSClose(null, { code: 1006 });
      return;
    }
    this.#ws = ws;
    this.#wsAuthed = false;
    let opened = false;
    ws.onopen = () => {
      opened = true;
      this.#wsOpenAt = this.#wsLastFrame = Date.now();
      this.#failures = 0;
      this.#probeBackoff = 0;
      if (this.#o.token) this.#authFrame();
      this.#stopPolling();
      this.#setTransport('ws', probe ? 'websocket allowed again' : 'connected');
      this.#setState('open');
      this.#startHeartbeat();
    };
    ws.onmessage = (ev) => {
      this.#wsLastFrame = Date.now();
      let frames;
      try {
        frames = this.#codec ? this.#codec.decode(ev.data) : [JSON.parse(ev.data)];
      } catch { return; }
      for (const f of frames) this.#onFrame(f);
    };
    ws.onerror = () => {}; // onclose follows
    ws.onclose = (ev) => this.#onWSClose(ws, ev, opened);
  }

  #onWSClose(ws, ev, opened = false) {
    if (ws && this.#ws !== ws) return; // an old socket
    this.#ws = null;
    this.#wsAuthed = false;
    this.#codec?.reset();
    clearInterval(this.#hbTimer);
    for (const [, p] of this.#pending) { clearTimeout(p.timer); p.reject(new RoomcastError('disconnected', 'connection lost')); }
    this.#pending.clear();
    if (this.#closed) return;
    if (ev.code === 4003) { // kicked
      this.#emit('kicked', { reason: ev.reason || 'kicked' });
      this.close();
      return;
    }
    // A connect fails when it never opens, or dies before it proved itself.
    const failed = !opened || Date.now() - this.#wsOpenAt < 3000;
    if (failed) this.#failures++; else this.#failures = 0;
    if (this.#transport === 'poll') {
      // A probe made while polling failed: keep polling, try again later.
      this.#probeBackoff = Math.min(600000, Math.max(this.#o.routeCheckMs, this.#probeBackoff * 2));
      this.#nextProbeAt = Date.now() + this.#probeBackoff;
      return;
    }
    if (this.#failures >= this.#o.maxFailures) {
      this.#probeBackoff = this.#o.routeCheckMs;
      this.#nextProbeAt = Date.now() + this.#probeBackoff;
      this.#startPolling(`${this.#failures} failed connects`);
      return;
    }
    this.#setState('connecting');
    // Back off 0.25 s, 0.5 s, 1 s … with jitter; a long-lived connection reconnects at once.
    const delay = this.#failures === 0 ? 100 + Math.random() * 200 : 250 * 2 ** (this.#failures - 1) * (0.8 + Math.random() * 0.4);
    this.#reconnectTimer = setTimeout(() => this.#connect(false), delay);
  }

  #stopWS(code, reason) {
    clearInterval(this.#hbTimer);
    clearTimeout(this.#reconnectTimer);
    const ws = this.#ws;
    if (!ws) return;
    this.#ws = null;
    this.#wsAuthed = false;
    for (const [, p] of this.#pending) { clearTimeout(p.timer); p.reject(new RoomcastError('disconnected', reason)); }
    this.#pending.clear();
    ws.onclose = ws.onmessage = ws.onopen = null;
    try { ws.close(code, reason); } catch { /* already closed */ }
  }

  #authFrame() {
    this.#wsSend({ type: 'auth', id: 'auth', token: this.#o.token });
  }

  // #wsSend writes a client frame in the connection's encoding.
  #wsSend(f, ws = this.#ws) {
    ws.send(this.#codec ? this.#codec.encode(f) : JSON.stringify(f));
  }

  #startHeartbeat() {
    clearInterval(this.#hbTimer);
    const hb = this.#o.heartbeatMs;
    this.#hbTimer = setInterval(() => {
      const ws = this.#ws;
      if (!ws || ws.readyState !== 1) return;
      if (Date.now() - this.#wsLastFrame > 2 * hb + 5000) { // a zombie: nothing heard, not even pongs
        ws.close(4000, 'heartbeat timeout');
        return;
      }
      this.#wsSend({ type: 'ping' }, ws);
    }, hb);
  }

  #onFrame(f) {
    switch (f.type) {
      case 'batch': {
        const msgs = f.messages || [];
        if (typeof f.move === 'string' && f.move) this.#moveTo = f.move;
        if (f.reset) this.#reset();
        this.#deliver(msgs);
        // A batch of user-scoped messages only (seq 0) does not move the cursor.
        if (!msgs.length || msgs.some((m) => m.seq > 0) || f.reset) this.#advance(f.cursor, f.epoch, f.reset);
        break;
      }
      case 'online':
        this.#setOnline(f.count);
        break;
      case 'likes':
        this.#setLikes(f.total);
        break;
      case 'auth_ok':
        this.#wsAuthed = true;
        this.#emit('auth', { user: f.user });
        break;
      case 'ack': {
        const p = this.#pending.get(f.id);
        if (p) {
          this.#pending.delete(f.id);
          clearTimeout(p.timer);
          const out = { seq: f.seq, id: f.msg_id };
          if (f.likes !== undefined) { out.likes = f.likes; this.#setLikes(f.likes); }
          p.resolve(out);
        }
        break;
      }
      case 'grab_ok': {
        const p = this.#pending.get(f.id);
        if (p) {
          this.#pending.delete(f.id);
          clearTimeout(p.timer);
          p.resolve(f);
        }
        break;
      }
      case 'error': {
        const e = f.error || {};
        const err = new RoomcastError(e.code || 'error', e.message, 0, e.retry_after_ms || 0);
        const p = this.#pending.get(f.id);
        if (p) {
          this.#pending.delete(f.id);
          clearTimeout(p.timer);
          p.reject(err);
        } else if (f.id === 'auth' && e.code === 'kicked') {
          this.#emit('kicked', { reason: e.message });
          this.close();
        } else {
          this.#emit('error', err);
        }
        break;
      }
      default: // pong and future frames
    }
  }

  // ---- polling --------------------------------------------------------------

  #startPolling(reason) {
    if (this.#closed) return;
    if (this.#transport !== 'poll') {
      this.#setTransport('poll', reason);
      this.#setState('polling');
    }
    if (!this.#pollTimer && !this.#pollAbort) this.#pollNow();
  }

  #stopPolling() {
    clearTimeout(this.#pollTimer);
    this.#pollTimer = 0;
    this.#pollAbort?.abort();
    this.#pollAbort = null;
  }

  #pollNow() {
    clearTimeout(this.#pollTimer);
    this.#pollTimer = 0;
    this.#pollOnce();
  }

  async #pollOnce() {
    if (this.#closed || this.#transport !== 'poll' || this.#pollAbort) return;
    this.#follow();
    const base = this.#route?.poll_url || this.#url(`/api/rooms/${encodeURIComponent(this.room)}/messages`);
    const u = new URL(base.replace('{room}', encodeURIComponent(this.room)), globalThis.location?.href);
    u.searchParams.set('limit', String(this.#o.limit));
    u.searchParams.set('sid', this.#sid);
    if (this.#cursor !== null) u.searchParams.set('cursor', String(this.#cursor));
    if (this.#epoch !== null) u.searchParams.set('epoch', this.#epoch);
    if (this.#userCursor !== null) u.searchParams.set('user_cursor', String(this.#userCursor));
    const ac = new AbortController();
    this.#pollAbort = ac;
    let wait = this.#route?.poll_after_ms || 2000;
    try {
      const headers = this.#o.token ? { Authorization: 'Bearer ' + this.#o.token } : {};
      const res = await this.#o.fetch(u.href, { headers, cache: 'no-store', signal: ac.signal });
      const body = await res.json().catch(() => ({}));
      if (!res.ok) {
        const e = body.error || {};
        if (res.status === 403 && e.code === 'kicked') { this.#emit('kicked', { reason: e.message }); this.close(); return; }
        wait = Math.max(this.#pollBackoff(wait), e.retry_after_ms || 0);
      } else {
        this.#pollErrors = 0;
        if (typeof body.move === 'string' && body.move) this.#moveTo = body.move;
        if (body.reset) this.#reset();
        this.#deliver(body.messages || []);
        this.#advance(body.cursor, body.epoch, body.reset);
        if (typeof body.user_cursor === 'number') this.#userCursor = body.user_cursor;
        if (typeof body.online === 'number') this.#setOnline(body.online);
        if (typeof body.likes === 'number') this.#setLikes(body.likes);
        if (body.poll_after_ms > 0) wait = body.poll_after_ms;
      }
    } catch {
      if (ac.signal.aborted) return;
      wait = this.#pollBackoff(wait);
    } finally {
      if (this.#pollAbort === ac) this.#pollAbort = null;
    }
    if (this.#closed || this.#transport !== 'poll') return;
    this.#pollTimer = setTimeout(() => { this.#pollTimer = 0; this.#pollOnce(); }, wait);
  }

  #pollBackoff(base) { // 2×, 4×, 8× … the interval after failures, at most 10 s
    this.#pollErrors++;
    return Math.min(10000, Math.max(base, 500) * 2 ** this.#pollErrors);
  }

  // ---- delivery ---------------------------------------------------------------

  #deliver(msgs) {
    const fresh = [];
    for (const m of msgs) {
      const key = m.seq > 0 ? m.seq : 'id:' + m.id;
      if ((m.seq > 0 && m.seq <= this.#floor) || this.#seen.has(key)) continue;
      this.#seen.add(key);
      fresh.push(m);
    }
    if (this.#seen.size > 4096) { // forget the oldest quarter
      let n = 1024;
      for (const k of this.#seen) {
        if (n-- === 0) break;
        this.#seen.delete(k);
        if (typeof k === 'number' && k > this.#floor) this.#floor = k;
      }
    }
    if (fresh.length) this.#emit('messages', fresh);
  }

  #advance(cursor, epoch, reset) {
    if (typeof cursor !== 'number') return;
    // A cursor counts within its epoch: a new epoch (after a reset, or the
    // room's first messages after cursor 0) replaces both.
    const newEpoch = typeof epoch === 'string' && epoch !== this.#epoch;
    if (reset || newEpoch || this.#cursor === null || cursor > this.#cursor) this.#cursor = cursor;
    if (typeof epoch === 'string') this.#epoch = epoch;
  }

  #reset() { // the server started us over (too far behind, or a new epoch)
    this.#seen.clear();
    this.#floor = 0;
    this.#emit('reset');
  }

  #setOnline(n) { if (n !== this.#online) { this.#online = n; this.#emit('online', n); } }
  #setLikes(n) { if (n > this.#likes) { this.#likes = n; this.#emit('likes', n); } }

  #setTransport(t, reason) {
    if (t === this.#transport) return;
    this.#transport = t;
    this.#emit('transport', { transport: t, reason });
  }

  #setState(s) {
    if (s === this.#state) return;
    this.#state = s;
    this.#emit('state', s);
  }

  #emit(type, v) {
    const hs = this.#handlers.get(type);
    if (!hs) return;
    for (const fn of [...hs]) {
      try { fn(v); } catch (e) { queueMicrotask(() => { throw e; }); } // report, keep going
    }
  }

  #url(p) { return this.#o.base.replace(/\/$/, '') + p; }

  // #follow moves to the node the server named ("move", R14): from now on
  // the route service, sends, polls and the WebSocket use that node. The
  // open connection is not dropped for it; the move happens at the next
  // (re)connect or poll, with the cursor, so nothing is missed.
  #follow() {
    const to = this.#moveTo;
    this.#moveTo = null;
    if (!to || !/^https?:\/\//.test(to)) return;
    const base = to.replace(/\/$/, '');
    this.#o.base = base;
    const room = encodeURIComponent(this.room);
    this.#route = { ...(this.#route || {}), ws_url: 'ws' + base.slice(4) + '/ws?room=' + room,
      poll_url: base + '/api/rooms/' + room + '/messages' };
  }

  async #http(method, p, body) {
    const res = await this.#o.fetch(this.#url(p), {
      method,
      headers: { Authorization: 'Bearer ' + this.#o.token, 'Content-Type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const out = await res.json().catch(() => ({}));
    if (!res.ok) {
      const e = out.error || {};
      throw new RoomcastError(e.code || 'http_' + res.status, e.message || res.statusText, res.status, e.retry_after_ms || out.retry_after_ms || 0);
    }
    if (typeof out.likes === 'number') this.#setLikes(out.likes);
    return out;
  }
}
