// The live player: HTTP-FLV through mpegts.js (low latency) where the
// browser has Media Source Extensions, hls.js as the fallback, and native
// HLS where there is no MSE (Safari on iPhone). The vendored players are
// loaded only when needed. ?player=flv|hls|native on the page forces one.

export const VENDOR = {
  mpegts: '/static/vendor/mpegts.min.js',
  hls: '/static/vendor/hls.min.js',
};

const loading = new Map();
export function loadScript(src) {
  if (!loading.has(src)) {
    loading.set(src, new Promise((resolve, reject) => {
      const s = document.createElement('script');
      s.src = src;
      s.async = true;
      s.onload = resolve;
      s.onerror = () => { loading.delete(src); reject(new Error('cannot load ' + src)); };
      document.head.append(s);
    }));
  }
  return loading.get(src);
}

function hasMSE() {
  const MS = window.MediaSource || window.ManagedMediaSource;
  return !!MS && typeof MS.isTypeSupported === 'function' && MS.isTypeSupported('video/mp4; codecs="avc1.42E01E,mp4a.40.2"');
}

function hasNativeHLS(video) {
  return !!video.canPlayType('application/vnd.apple.mpegurl');
}

/** The order in which to try the players on this browser. */
export function playerOrder(video, forced = '') {
  if (['flv', 'hls', 'native'].includes(forced)) return [forced];
  if (hasMSE()) return hasNativeHLS(video) ? ['flv', 'hls', 'native'] : ['flv', 'hls'];
  return hasNativeHLS(video) ? ['native'] : [];
}

export class Player {
  /**
   * @param {HTMLVideoElement} video
   * @param {{room: string, base?: string, forced?: string, onState?: (state: string, detail?: string) => void}} o
   *   states: loading, playing, stalled, error, stopped
   *   onCue(name, data, delayMs): a cue in the stream (the quiz's onQuizQuestion {activity, n}),
   *   due on screen in delayMs — FLV script data (mpegts.js) or an HLS date range (hls.js)
   */
  constructor(video, o) {
    this.video = video;
    this.o = { base: '', forced: '', onState: () => {}, onCue: () => {}, ...o };
    this.kind = '';
    this.impl = null;
    this.order = [];
    this.attempt = 0;
    this.retries = 0;
    this.running = false;
    this.retryTimer = 0;
    this.stallTimer = 0;
    this.onPlaying = () => { this.retries = 0; this.o.onState('playing', this.kind); };
    this.onWaiting = () => this.o.onState('stalled', this.kind);
    video.addEventListener('playing', this.onPlaying);
    video.addEventListener('waiting', this.onWaiting);
  }

  get flvURL() { return `${this.o.base}/live/${encodeURIComponent(this.o.room)}.flv`; }
  get hlsURL() { return `${this.o.base}/live/${encodeURIComponent(this.o.room)}.m3u8`; }

  /** Starts (or restarts) playback with the best player. */
  start() {
    this.stop();
    this.running = true;
    this.order = playerOrder(this.video, this.o.forced);
    this.attempt = 0;
    if (!this.order.length) {
      this.o.onState('error', 'This browser cannot play live video.');
      return;
    }
    this.#open();
  }

  /** Stops playback and frees the player. */
  stop() {
    this.running = false;
    clearTimeout(this.retryTimer);
    this.#destroy();
    this.o.onState('stopped');
  }

  async #open() {
    if (!this.running) return;
    const kind = this.order[this.attempt];
    this.kind = kind;
    this.o.onState('loading', kind);
    try {
      if (kind === 'flv') await this.#openFLV();
      else if (kind === 'hls') await this.#openHLS();
      else this.#openNative();
    } catch (e) {
      this.#fail(String(e && e.message || e));
      return;
    }
    this.video.play().catch(() => { /* autoplay policy: muted videos play; else the user clicks play */ });
  }

  async #openFLV() {
    await loadScript(VENDOR.mpegts);
    const mpegts = window.mpegts;
    mpegts.LoggingControl.enableVerbose = false;
    mpegts.LoggingControl.enableDebug = false;
    mpegts.LoggingControl.enableInfo = false;
    mpegts.LoggingControl.enableWarn = false;
    const p = mpegts.createPlayer({ type: 'flv', isLive: true, hasAudio: true, hasVideo: true, url: this.flvURL }, {
      enableWorker: false,
      enableStashBuffer: false,     // hand data to MSE at once: lowest latency
      stashInitialSize: 128 * 1024,
      lazyLoad: false,
      autoCleanupSourceBuffer: true,
      liveBufferLatencyChasing: true, // skip ahead when behind
      liveBufferLatencyMaxLatency: 3,
      liveBufferLatencyMinRemain: 0.5,
    });
    p.on(mpegts.Events.ERROR, (type, detail) => this.#fail(`${type}: ${detail}`));
    // Script data is handed over as soon as it is demuxed, at the live edge
    // of the buffer: it is on screen once the playhead has caught up.
    p.on(mpegts.Events.SCRIPTDATA_ARRIVED, (d) => {
      for (const name of Object.keys(d || {})) if (name !== 'onMetaData') this.o.onCue(name, d[name], this.#aheadMs());
    });
    p.on(mpegts.Events.LOADING_COMPLETE, () => this.#fail('stream ended'));
    p.attachMediaElement(this.video);
    p.load();
    this.impl = { destroy: () => { try { p.pause(); p.unload(); p.detachMediaElement(); p.destroy(); } catch { /* gone */ } } };
  }

  async #openHLS() {
    await loadScript(VENDOR.hls);
    const Hls = window.Hls;
    if (!Hls.isSupported()) throw new Error('hls.js not supported');
    const h = new Hls({ lowLatencyMode: true, liveSyncDurationCount: 2, enableWorker: true, debug: false });
    h.on(Hls.Events.ERROR, (_, data) => { if (data.fatal) this.#fail(`hls: ${data.type} ${data.details}`); });
    const seen = new Set(); // EXT-X-DATERANGE cues, due when playback reaches their START-DATE
    h.on(Hls.Events.LEVEL_UPDATED, (_, data) => {
      const ranges = (data.details && data.details.dateRanges) || {};
      for (const id of Object.keys(ranges)) {
        const r = ranges[id], a = r.attr || {};
        if (seen.has(id) || !a['X-NAME'] || !r.startDate) continue;
        seen.add(id);
        const playing = h.playingDate;
        this.o.onCue(a['X-NAME'], { activity: a['X-ACTIVITY'], n: Number(a['X-N']) }, playing ? r.startDate - playing : 0);
      }
    });
    h.loadSource(this.hlsURL);
    h.attachMedia(this.video);
    this.impl = { destroy: () => h.destroy() };
  }

  #openNative() {
    const v = this.video;
    const onErr = () => this.#fail('native HLS error');
    v.addEventListener('error', onErr, { once: true });
    v.src = this.hlsURL;
    this.impl = { destroy: () => { v.removeEventListener('error', onErr); v.removeAttribute('src'); v.load(); } };
  }

  // How far the buffered media runs ahead of the playhead, in ms.
  #aheadMs() {
    const v = this.video, b = v.buffered;
    return b.length ? Math.max(0, (b.end(b.length - 1) - v.currentTime) * 1000) : 0;
  }

  #destroy() {
    if (this.impl) {
      const impl = this.impl;
      this.impl = null;
      impl.destroy();
    }
  }

  // A player failed: retry the same one a few times (a live stream can have
  // gaps), then fall back to the next in order.
  #fail(why) {
    if (!this.running) return;
    this.#destroy();
    this.retries++;
    if (this.retries > 2 && this.attempt + 1 < this.order.length) {
      this.attempt++;
      this.retries = 0;
    }
    this.o.onState('error', why);
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.#open(), Math.min(8000, 1000 * this.retries + 500));
  }
}
