// Danmaku: comments flying right to left over the video, in lanes, without
// overlapping. One requestAnimationFrame loop moves every item with a
// transform (no layout per frame); each item crosses in the same time, so a
// lane takes a new item only when its last one has fully entered and the new
// one (maybe faster) cannot catch it before it leaves.
//
// The server already applies the render budget (≈20 messages/s per viewer);
// here, what finds no lane waits a moment in a small queue, highest priority
// first, and is dropped if the screen stays full.

const CROSS_MS = 8000;   // time to cross the layer
const GAP = 24;          // px between items in a lane
const MAX_WAIT_MS = 2500;
const MAX_QUEUE = 60;

export class Danmaku {
  /** @param {HTMLElement} layer  positioned over the video */
  constructor(layer) {
    this.layer = layer;
    this.items = [];     // {node, lane, t0, w, v}
    this.queue = [];     // {node, prio, at, id}
    this.lanes = [];     // last item per lane
    this.width = 0;
    this.laneH = 30;
    this.visible = true;
    this.raf = 0;
    this.paused = 0;     // performance.now() when paused, else 0
    this.frame = (t) => this.#frame(t);
    this.#measure();
    if (window.ResizeObserver) new ResizeObserver(() => this.#measure()).observe(layer);
  }

  #measure() {
    this.width = this.layer.clientWidth;
    const lh = parseFloat(getComputedStyle(this.layer).getPropertyValue('--dm-lane')) || 30;
    this.laneH = lh;
    const n = Math.max(1, Math.floor((this.layer.clientHeight - 8) / lh));
    this.lanes.length = n;
  }

  /** Shows or hides the layer (hidden: nothing is added). */
  setVisible(on) {
    this.visible = on;
    this.layer.hidden = !on;
    if (!on) this.clear();
  }

  /** Freezes every item where it is (a paused replay). */
  pause() {
    if (this.paused) return;
    this.paused = performance.now();
    if (this.raf) cancelAnimationFrame(this.raf);
    this.raf = 0;
  }

  /** Continues after pause, from where the items stopped. */
  resume() {
    if (!this.paused) return;
    const d = performance.now() - this.paused;
    this.paused = 0;
    for (const it of this.items) it.t0 += d;
    for (const q of this.queue) q.at += d;
    if ((this.items.length || this.queue.length) && !this.raf) this.raf = requestAnimationFrame(this.frame);
  }

  clear() {
    for (const it of this.items) it.node.remove();
    for (const q of this.queue) q.node.remove();
    this.items = [];
    this.queue = [];
    this.lanes.fill(undefined);
  }

  /** Removes an item (a retracted message). */
  remove(id) {
    for (const it of this.items) if (it.id === id) it.node.remove();
    this.items = this.items.filter((it) => it.id !== id);
    this.queue = this.queue.filter((q) => q.id !== id);
  }

  /**
   * Adds one comment. node is a ready element (text set with textContent);
   * prio is the server's priority.
   */
  add(node, prio = 0, id = '') {
    if (!this.visible) return;
    node.classList.add('dm');
    this.queue.push({ node, prio, at: performance.now(), id });
    if (this.queue.length > MAX_QUEUE) {
      this.queue.sort((a, b) => b.prio - a.prio || a.at - b.at);
      this.queue.length = MAX_QUEUE;
    }
    if (!this.raf && !this.paused) this.raf = requestAnimationFrame(this.frame);
  }

  #frame(now) {
    this.raf = 0;
    if (this.paused) return;
    if (this.queue.length) this.#place(now);
    const W = this.width;
    let keep = 0;
    for (const it of this.items) {
      const x = W - (now - it.t0) * it.v;
      if (x + it.w < 0) {
        it.node.remove();
        if (this.lanes[it.lane] === it) this.lanes[it.lane] = undefined;
        continue;
      }
      it.node.style.transform = `translate3d(${x.toFixed(1)}px, ${it.lane * this.laneH}px, 0)`;
      this.items[keep++] = it;
    }
    this.items.length = keep;
    if (this.items.length || this.queue.length) this.raf = requestAnimationFrame(this.frame);
  }

  // Puts waiting items into free lanes: append all, measure all (one
  // layout), then place.
  #place(now) {
    const W = this.width;
    this.queue.sort((a, b) => b.prio - a.prio || a.at - b.at);
    const fresh = this.queue.filter((q) => !q.node.isConnected);
    for (const q of fresh) {
      q.node.style.transform = `translate3d(${W}px, -200px, 0)`;
      this.layer.append(q.node);
    }
    const waiting = [];
    for (const q of this.queue) {
      const w = q.w ?? (q.w = q.node.offsetWidth);
      const v = (W + w) / CROSS_MS;
      const lane = this.#freeLane(now, v);
      if (lane < 0) {
        if (now - q.at < MAX_WAIT_MS) waiting.push(q);
        else q.node.remove();
        continue;
      }
      const it = { node: q.node, lane, t0: now, w, v, id: q.id };
      this.lanes[lane] = it;
      this.items.push(it);
    }
    this.queue = waiting;
  }

  #freeLane(now, v) {
    const W = this.width;
    for (let i = 0; i < this.lanes.length; i++) {
      const last = this.lanes[i];
      if (!last) return i;
      const right = W - (now - last.t0) * last.v + last.w; // its tail
      if (right + GAP > W) continue;                        // not fully in yet
      if (v > last.v) {                                     // would the new one catch it?
        const exit = right / last.v;                        // ms until its tail leaves
        if (W - v * exit < GAP) continue;
      }
      return i;
    }
    return -1;
  }
}
