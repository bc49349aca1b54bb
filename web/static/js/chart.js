// A small live line chart on a canvas: the last N samples, an area under
// the line, a y axis scaled to a round maximum, and the current value.
// The canvas carries data-last (latest value) and data-samples for tests and
// tools.

export class LineChart {
  /**
   * @param {HTMLCanvasElement} canvas
   * @param {{label: string, unit?: string, color?: string, samples?: number, format?: (v: number) => string}} o
   */
  constructor(canvas, o) {
    this.c = canvas;
    this.o = { unit: '', color: '#4cc2ff', samples: 120, format: (v) => String(Math.round(v)), ...o };
    this.values = [];
    this.draw();
    if (window.ResizeObserver) new ResizeObserver(() => this.draw()).observe(canvas);
  }

  push(v) {
    this.values.push(Number.isFinite(v) ? v : 0);
    if (this.values.length > this.o.samples) this.values.shift();
    this.c.dataset.last = String(this.values[this.values.length - 1]);
    this.c.dataset.samples = String(this.values.length);
    this.draw();
  }

  draw() {
    const c = this.c;
    const dpr = window.devicePixelRatio || 1;
    const cw = c.clientWidth || 300, ch = c.clientHeight || 120;
    if (c.width !== Math.round(cw * dpr) || c.height !== Math.round(ch * dpr)) {
      c.width = Math.round(cw * dpr);
      c.height = Math.round(ch * dpr);
    }
    const g = c.getContext('2d');
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, cw, ch);
    const padL = 8, padR = 40, padT = 24, padB = 8; // the scale sits in the right margin
    const w = cw - padL - padR, h = ch - padT - padB;
    const vals = this.values;
    const max = niceMax(Math.max(1, ...vals));

    // Grid and scale.
    g.strokeStyle = 'rgba(255,255,255,0.08)';
    g.lineWidth = 1;
    g.fillStyle = 'rgba(255,255,255,0.45)';
    g.font = '11px system-ui, sans-serif';
    g.textAlign = 'right';
    g.textBaseline = 'middle';
    for (let i = 0; i <= 2; i++) {
      const y = padT + (h * i) / 2;
      g.beginPath();
      g.moveTo(padL, Math.round(y) + 0.5);
      g.lineTo(padL + w, Math.round(y) + 0.5);
      g.stroke();
      g.fillText(axisLabel((max * (2 - i)) / 2), cw - 6, y);
    }
    g.textBaseline = 'alphabetic';

    // Title and current value.
    g.textAlign = 'left';
    g.fillStyle = 'rgba(255,255,255,0.7)';
    g.font = '12px system-ui, sans-serif';
    g.fillText(this.o.label, padL, 15);
    if (vals.length) {
      const cur = this.o.format(vals[vals.length - 1]) + (this.o.unit ? ' ' + this.o.unit : '');
      g.fillStyle = this.o.color;
      g.font = 'bold 13px system-ui, sans-serif';
      g.fillText(cur, padL + g.measureText(this.o.label).width + 10, 15);
    }
    if (vals.length < 2) return;

    // The line, right-aligned: the newest sample at the right edge.
    const step = w / (this.o.samples - 1);
    const x0 = padL + w - step * (vals.length - 1);
    const y = (v) => padT + h - (h * v) / max;
    g.beginPath();
    vals.forEach((v, i) => (i ? g.lineTo(x0 + i * step, y(v)) : g.moveTo(x0, y(v))));
    g.strokeStyle = this.o.color;
    g.lineWidth = 2;
    g.lineJoin = 'round';
    g.stroke();
    g.lineTo(x0 + (vals.length - 1) * step, padT + h);
    g.lineTo(x0, padT + h);
    g.closePath();
    const grad = g.createLinearGradient(0, padT, 0, padT + h);
    grad.addColorStop(0, hexAlpha(this.o.color, 0.35));
    grad.addColorStop(1, hexAlpha(this.o.color, 0));
    g.fillStyle = grad;
    g.fill();
  }
}

function axisLabel(v) {
  if (v >= 1e6) return (v / 1e6).toFixed(v % 1e6 ? 1 : 0) + 'M';
  if (v >= 1e4) return (v / 1e3).toFixed(0) + 'k';
  return Number.isInteger(v) ? String(v) : v.toFixed(1);
}

/** 1, 2, 5 × 10^n at or above v. */
export function niceMax(v) {
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function hexAlpha(hex, a) {
  const n = parseInt(hex.slice(1), 16);
  return `rgba(${(n >> 16) & 255},${(n >> 8) & 255},${n & 255},${a})`;
}
