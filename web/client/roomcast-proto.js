// roomcast-proto.js — the protobuf encoding of roomcast.js ({format: 'proto'},
// issue 11). roomcast.js loads it only in that mode. It translates between
// the JSON protocol's frame objects, which RoomClient handles, and
// length-prefixed roomcast.v1.Frame messages, using the codec generated from
// proto/roomcast/v1/roomcast.proto (roomcast.pb.js) on protobuf.js's minimal
// runtime. See docs/protocol.md for the encoding.
import { roomcast } from './roomcast.pb.js';

const { Frame, Kind, SendRequest, SendAck, Heartbeat, Batch, GrabRequest, GrabAck } = roomcast.v1;
const $protobuf = globalThis.protobuf;
const utf8In = new TextEncoder();
const utf8Out = new TextDecoder();

/** The WebSocket subprotocol that selects protobuf on /ws. */
export const SUBPROTOCOL = 'roomcast.v1.proto';

const num = (v) => (typeof v === 'number' ? v : Number(v || 0)); // int64s are numbers without Long

/** A message of a batch in the JSON envelope's shape (see docs/api.md). */
function envelope(m) {
  const o = { seq: num(m.seq), id: m.id, room: m.room, kind: m.kind, scope: m.scope };
  if (m.to) o.to = m.to;
  if (m.user) o.user = { id: m.user.id, name: m.user.name, level: m.user.level };
  if (m.text) o.text = m.text;
  if (m.gift) o.gift = { id: m.gift.id, name: m.gift.name, value_cents: num(m.gift.valueCents), count: m.gift.count };
  o.priority = m.priority;
  o.ts = num(m.ts);
  if (m.videoMs != null) o.video_ms = num(m.videoMs);
  if (m.ref) o.ref = m.ref;
  if (m.data && m.data.length) {
    try { o.data = JSON.parse(utf8Out.decode(m.data)); } catch { /* not JSON: left out, as the JSON encoding does */ }
  }
  return o;
}

export class ProtoCodec {
  #seq = 0;
  #ids = new Map(); // request seq → the JSON frame's id, until its RESPONSE

  /** Forgets requests in flight (the connection they were sent on ended). */
  reset() { this.#ids.clear(); }

  /** Encodes a client frame object ({type:'send'|'auth'|'ping', …}) as one binary message. */
  encode(f) {
    this.#seq = (this.#seq % 0xffffffff) + 1;
    const seq = this.#seq;
    if (this.#ids.size >= 4096) this.#ids.clear(); // answers never came: do not grow
    this.#ids.set(seq, f.id ?? '');
    let frame;
    switch (f.type) {
      case 'ping': frame = { type: -1, seq }; break;
      case 'auth': frame = { type: 0, seq, token: f.token || '' }; break;
      case 'send': {
        const req = { kind: f.kind || '', text: f.text || '', scope: f.scope || '', to: f.to || '' };
        if (f.gift) { req.giftId = f.gift.id || ''; req.count = f.gift.count || 0; }
        if (f.data !== undefined) req.data = utf8In.encode(JSON.stringify(f.data));
        if (f.client_msg_id) req.clientMsgId = String(f.client_msg_id);
        if (f.video_ms != null) req.videoMs = f.video_ms;
        frame = { type: 1, seq, body: SendRequest.encode(SendRequest.create(req)).finish() };
        break;
      }
      case 'grab': {
        const req = { activity: String(f.activity || ''), rain: f.rain | 0 };
        if (f.taps != null) req.taps = f.taps | 0;
        frame = { type: 4, seq, body: GrabRequest.encode(GrabRequest.create(req)).finish() };
        break;
      }
      default: throw new TypeError('roomcast: no protobuf form for frame type ' + f.type);
    }
    return Frame.encodeDelimited(Frame.create(frame)).finish();
  }

  /** Decodes one binary message into the JSON protocol's frame objects. */
  decode(buf) {
    const r = $protobuf.Reader.create(new Uint8Array(buf));
    const out = [];
    while (r.pos < r.len) out.push(this.#frame(Frame.decodeDelimited(r)));
    return out;
  }

  #frame(f) {
    if (f.kind === Kind.NOTIFY) {
      if (f.type !== 2) return { type: 'notify', code: f.type };
      const b = Batch.decode(f.body);
      if (b.online != null) return { type: 'online', room: b.room, count: num(b.online) };
      if (b.likes != null) return { type: 'likes', room: b.room, total: num(b.likes) };
      const o = { type: 'batch', room: b.room, messages: b.messages.map(envelope), cursor: num(b.cursor) };
      if (b.reset) o.reset = true;
      if (b.move) o.move = b.move;
      if (b.epoch) o.epoch = b.epoch;
      return o;
    }
    const id = this.#ids.get(f.seq) ?? '';
    this.#ids.delete(f.seq);
    if (f.code !== 0) {
      const error = { code: f.errorCode || String(f.code), message: f.error, number: f.code };
      if (num(f.retryAfterMs) > 0) error.retry_after_ms = num(f.retryAfterMs);
      return { type: 'error', id, error };
    }
    switch (f.type) {
      case -1: return { type: 'pong', online: num(Heartbeat.decode(f.body).online) };
      case 0: return { type: 'auth_ok', id, user: f.userId };
      case 1: {
        const a = SendAck.decode(f.body);
        const o = { type: 'ack', id, seq: num(a.seq), msg_id: a.id };
        if (num(a.likes) > 0) o.likes = num(a.likes);
        if (a.videoMs != null) o.video_ms = num(a.videoMs);
        return o;
      }
      case 4: {
        const a = GrabAck.decode(f.body);
        const o = { type: 'grab_ok', id, activity: a.activity, rain: a.rain, amount_cents: num(a.amountCents) };
        if (a.reason) o.reason = a.reason;
        if (a.taps > 0) { o.packets = a.packets; o.taps = a.taps; o.admitted = a.admitted; }
        return o;
      }
      default: return { type: 'response', id, code: f.type };
    }
  }
}
