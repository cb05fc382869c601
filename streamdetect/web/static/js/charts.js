// Canvas drawing shared by the pages: spectrograms with axes, line strips with thresholds, heatmaps, bars.
const STOPS = [[0, [8, 8, 30]], [0.35, [60, 20, 110]], [0.6, [200, 60, 80]], [0.8, [250, 160, 40]], [1, [252, 250, 190]]];
const PALETTE = (() => {
  const out = new Uint8ClampedArray(256 * 3);
  for (let i = 0; i < 256; i++) {
    const x = i / 255;
    let k = 0;
    while (k < STOPS.length - 2 && x > STOPS[k + 1][0]) k++;
    const [x0, c0] = STOPS[k], [x1, c1] = STOPS[k + 1];
    const f = (x - x0) / (x1 - x0);
    for (let j = 0; j < 3; j++) out[i * 3 + j] = c0[j] + f * (c1[j] - c0[j]);
  }
  return out;
})();
export const COLOURS = ["#4fb3ff", "#3ecf8e", "#f5b942", "#ff6b6b", "#c77dff", "#7ee0e0", "#ff9f6b", "#b0d46b"];

export function fit(canvas, cssHeight) {
  const dpr = window.devicePixelRatio || 1;
  const w = Math.max(50, canvas.clientWidth || canvas.parentElement.clientWidth || 300);
  canvas.style.height = cssHeight + "px";
  canvas.width = Math.round(w * dpr);
  canvas.height = Math.round(cssHeight * dpr);
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  return {ctx, w, h: cssHeight};
}

function image(bytes, frames, bins) {
  // columns are time, rows frequency (low at the bottom)
  const off = document.createElement("canvas");
  off.width = Math.max(1, frames); off.height = bins;
  const octx = off.getContext("2d");
  const img = octx.createImageData(off.width, bins);
  for (let f = 0; f < frames; f++) {
    for (let b = 0; b < bins; b++) {
      const v = bytes[f * bins + b], p = ((bins - 1 - b) * off.width + f) * 4;
      img.data[p] = PALETTE[v * 3]; img.data[p + 1] = PALETTE[v * 3 + 1]; img.data[p + 2] = PALETTE[v * 3 + 2];
      img.data[p + 3] = 255;
    }
  }
  octx.putImageData(img, 0, 0);
  return off;
}

export const SPEC_LEFT = 42, SPEC_BOTTOM = 18;  // px of the frequency and time axes

export function drawSpectrogram(canvas, spec, bytes, {height = 200, axes = true, extent = null, ago = false,
                                                      view = null} = {}) {
  // `view` {t0, t1, f0, f1} (seconds, Hz) draws that part only, axes included (the zoom of the detail view)
  const {ctx, w, h} = fit(canvas, height);
  const left = axes ? SPEC_LEFT : 0, bottom = axes ? SPEC_BOTTOM : 0;
  const pw = w - left, ph = h - bottom;
  const duration = spec.duration_s || spec.frames * spec.hop_s;
  const {t0, t1, f0, f1} = view || {t0: 0, t1: duration, f0: 0, f1: spec.max_hz};
  ctx.fillStyle = "#000"; ctx.fillRect(0, 0, w, h);
  ctx.imageSmoothingEnabled = false;
  const img = image(bytes, spec.frames, spec.bins);
  const sx = img.width * t0 / duration, sw = img.width * (t1 - t0) / duration;
  const sy = spec.bins * (1 - f1 / spec.max_hz), sh = spec.bins * (f1 - f0) / spec.max_hz;
  ctx.drawImage(img, sx, sy, Math.max(sw, 1e-3), Math.max(sh, 1e-3), left, 0, pw, ph);
  const X = t => left + pw * (t - t0) / (t1 - t0);
  if (extent && extent[1] > t0 && extent[0] < t1) {
    const x0 = Math.max(left, X(extent[0])), x1 = Math.min(w, X(extent[1]));
    ctx.fillStyle = "rgba(79,179,255,0.15)"; ctx.fillRect(x0, 0, Math.max(1, x1 - x0), ph);
    ctx.strokeStyle = "#4fb3ff"; ctx.lineWidth = 2; ctx.beginPath();
    if (extent[0] >= t0) { ctx.moveTo(X(extent[0]), 0); ctx.lineTo(X(extent[0]), ph); }
    if (extent[1] <= t1) { ctx.moveTo(X(extent[1]), 0); ctx.lineTo(X(extent[1]), ph); }
    ctx.stroke();
  }
  if (!axes) return;
  ctx.fillStyle = "#000"; ctx.fillRect(0, 0, left, h); ctx.fillRect(0, ph, w, bottom);
  ctx.fillStyle = "#8a96a3"; ctx.strokeStyle = "#8a96a3"; ctx.font = "11px system-ui"; ctx.lineWidth = 1;
  const stepHz = niceStep((f1 - f0) / Math.max(2, ph / 28));
  for (let f = Math.ceil(f0 / stepHz) * stepHz; f <= f1 + 1e-6; f += stepHz) {
    const y = ph - ph * (f - f0) / (f1 - f0);
    ctx.fillText(f >= 1000 ? `${+(f / 1000).toFixed(2)}k` : `${Math.round(f)}`, 4, Math.max(10, y + 4));
    ctx.beginPath(); ctx.moveTo(left - 4, y); ctx.lineTo(left, y); ctx.stroke();
  }
  ctx.fillText("Hz", 4, h - 4);  // the corner under the frequency axis
  const stepS = niceStep((t1 - t0) / Math.max(2, pw / 70));
  for (let t = Math.ceil(t0 / stepS - 1e-9) * stepS; t <= t1 + 1e-9; t += stepS) {
    const label = ago ? (duration - t < 1e-6 ? "now" : `-${+(duration - t).toFixed(2)}s`) : `${+t.toFixed(2)}s`;
    ctx.fillText(label, Math.min(X(t) - 8, w - 30), h - 4);
    ctx.beginPath(); ctx.moveTo(X(t), ph); ctx.lineTo(X(t), ph + 4); ctx.stroke();
  }
}

export function niceStep(raw) {
  const p = Math.pow(10, Math.floor(Math.log10(Math.max(raw, 1e-9))));
  for (const m of [1, 2, 5, 10]) if (raw <= m * p) return m * p;
  return 10 * p;
}

export class LiveSpectrogram {
  // A scrolling waterfall: a ring of the last `seconds` of columns, newest at the right.
  constructor(canvas, seconds = 30) { this.canvas = canvas; this.seconds = seconds; this.cols = []; this.bins = 64; }
  push(spec, bytes) {
    this.bins = spec.bins; this.maxHz = spec.max_hz;
    const keep = Math.round(this.seconds * spec.columns_per_s);
    for (let f = 0; f < spec.frames; f++) this.cols.push(bytes.subarray(f * spec.bins, (f + 1) * spec.bins));
    if (this.cols.length > keep) this.cols.splice(0, this.cols.length - keep);
    this.keep = keep;
    this.draw();
  }
  draw() {
    const n = this.keep || this.cols.length, bytes = new Uint8Array(n * this.bins);
    const offset = n - this.cols.length;
    this.cols.forEach((c, i) => bytes.set(c, (offset + i) * this.bins));
    drawSpectrogram(this.canvas, {frames: n, bins: this.bins, duration_s: this.seconds, max_hz: this.maxHz || 24000},
                    bytes, {height: 160, ago: true});
  }
}

export function drawLines(canvas, series, {height = 140, tmin, tmax, ymin, ymax, thresholds = [], band = null,
                                            timeAxis = true} = {}) {
  const {ctx, w, h} = fit(canvas, height);
  const left = 42, bottom = 18, pw = w - left - 4, ph = h - bottom - 4;
  const all = series.flatMap(s => s.points);
  if (tmin === undefined) tmin = Math.min(...all.map(p => p[0]));
  if (tmax === undefined) tmax = Math.max(...all.map(p => p[0]));
  const vals = all.map(p => p[1]).concat(thresholds.map(t => t.value));
  if (ymin === undefined) ymin = Math.min(...vals);
  if (ymax === undefined) ymax = Math.max(...vals);
  if (!isFinite(ymin) || !isFinite(ymax)) { ymin = 0; ymax = 1; }
  if (ymax - ymin < 1e-6) { ymin -= 0.01; ymax += 0.01; }
  const pad = (ymax - ymin) * 0.08; ymin -= pad; ymax += pad;
  if (!(tmax > tmin)) tmax = tmin + 1;
  const X = t => left + pw * (t - tmin) / (tmax - tmin), Y = v => 4 + ph - ph * (v - ymin) / (ymax - ymin);
  ctx.fillStyle = "#0c0f12"; ctx.fillRect(0, 0, w, h);
  if (band) { ctx.fillStyle = "rgba(79,179,255,0.15)"; ctx.fillRect(X(band[0]), 4, Math.max(2, X(band[1]) - X(band[0])), ph); }
  ctx.font = "11px system-ui"; ctx.fillStyle = "#8a96a3"; ctx.strokeStyle = "#2a323b"; ctx.lineWidth = 1;
  const ys = niceStep((ymax - ymin) / 4);
  for (let v = Math.ceil(ymin / ys) * ys; v <= ymax; v += ys) {
    ctx.beginPath(); ctx.moveTo(left, Y(v)); ctx.lineTo(w - 4, Y(v)); ctx.stroke();
    ctx.fillText(v.toFixed(Math.max(0, -Math.floor(Math.log10(ys)))), 2, Y(v) + 4);
  }
  if (timeAxis) {
    const ts = niceStep((tmax - tmin) / Math.max(2, pw / 90));
    for (let t = Math.ceil(tmin / ts) * ts; t <= tmax; t += ts) {
      const label = new Date(t * 1000).toLocaleTimeString([], {hour: "2-digit", minute: "2-digit", second: "2-digit"});
      ctx.fillText(label, Math.min(X(t) - 20, w - 50), h - 4);
    }
  }
  for (const t of thresholds) {
    ctx.strokeStyle = t.colour; ctx.setLineDash([5, 4]);
    ctx.beginPath(); ctx.moveTo(left, Y(t.value)); ctx.lineTo(w - 4, Y(t.value)); ctx.stroke();
    ctx.setLineDash([]);
  }
  for (const s of series) {
    ctx.strokeStyle = s.colour; ctx.lineWidth = 1.5; ctx.beginPath();
    s.points.forEach((p, i) => (i ? ctx.lineTo(X(p[0]), Y(p[1])) : ctx.moveTo(X(p[0]), Y(p[1]))));
    ctx.stroke();
  }
  return {valueAt: y => ymin + (4 + ph - y) / ph * (ymax - ymin)};
}

export function drawHeatmap(canvas, days, cells, {height} = {}) {
  const rowH = 16, top = 16, left = 78;
  const {ctx, w, h} = fit(canvas, height || top + rowH * days.length + 4);
  const cw = (w - left) / 24, max = Math.max(1, ...cells.map(c => c[2]));
  const row = Object.fromEntries(days.map((d, i) => [d, i]));
  ctx.fillStyle = "#0c0f12"; ctx.fillRect(0, 0, w, h);
  ctx.font = "11px system-ui"; ctx.fillStyle = "#8a96a3";
  for (let hr = 0; hr < 24; hr += 3) ctx.fillText(String(hr).padStart(2, "0"), left + hr * cw, 11);
  days.forEach((d, i) => ctx.fillText(d.slice(5), 4, top + i * rowH + 12));
  for (const [day, hour, n] of cells) {
    if (!(day in row)) continue;
    const v = Math.round(40 + 215 * n / max);
    ctx.fillStyle = `rgb(${PALETTE[v * 3]},${PALETTE[v * 3 + 1]},${PALETTE[v * 3 + 2]})`;
    ctx.fillRect(left + hour * cw + 1, top + row[day] * rowH + 1, cw - 2, rowH - 2);
  }
}

export function drawBars(canvas, labels, values, {height = 90, colour = "#4fb3ff"} = {}) {
  const {ctx, w, h} = fit(canvas, height);
  const bw = w / Math.max(1, values.length), max = Math.max(1, ...values);
  ctx.fillStyle = "#0c0f12"; ctx.fillRect(0, 0, w, h);
  ctx.font = "10px system-ui";
  values.forEach((v, i) => {
    const bh = (h - 28) * v / max;
    ctx.fillStyle = colour; ctx.fillRect(i * bw + 2, h - 14 - bh, bw - 4, bh);
    ctx.fillStyle = "#8a96a3";
    if (v) ctx.fillText(String(v), i * bw + 3, h - 16 - bh);
    if (values.length <= 10 || i % 5 === 0) ctx.fillText(labels[i].slice(5), i * bw + 2, h - 3);
  });
}
