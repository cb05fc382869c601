// A zoomable spectrogram with time and frequency axes (the event detail view): drag a box to zoom into it (a
// flat box zooms time only, a narrow one frequency only), the wheel zooms time around the pointer (over the
// frequency axis, or with Shift, frequency), the buttons zoom in, out and back, a double click resets and a
// click seeks the clip. The range shown is kept on the canvas as data-t0/t1/f0/f1 (seconds, Hz).
import {el} from "./api.js";
import {SPEC_BOTTOM, SPEC_LEFT, drawSpectrogram} from "./charts.js";

const MIN_S = 0.05, MIN_HZ = 50, WHEEL_STEP = 1.25;

export class ZoomableSpectrogram {
  constructor(canvas, spec, bytes, {height = 220, extent = null, onSeek = null} = {}) {
    Object.assign(this, {canvas, spec, bytes, height, extent, onSeek});
    this.duration = spec.duration_s || spec.frames * spec.hop_s;
    this.full = {t0: 0, t1: this.duration, f0: 0, f1: spec.max_hz};
    this.view = {...this.full};
    this.readout = el("span", {class: "muted zoom-range", id: `${canvas.id}-range`});
    const button = (text, title, action, id) => el("button", {class: "secondary", title, id, onclick: action}, text);
    this.controls = el("div", {class: "actions zoom-controls"},
      button("+", "zoom in (time)", () => this.zoomTime(1 / 2, 0.5)),
      button("−", "zoom out (time)", () => this.zoomTime(2, 0.5)),
      button("reset zoom", "show the whole clip", () => this.reset(), `${canvas.id}-reset`), this.readout,
      el("span", {class: "muted hide-narrow"}, "drag a box to zoom, wheel: time, Shift+wheel: frequency"));
    canvas.after(this.controls);
    this.listen();
    this.draw();
  }

  plot() {  // the plot area in CSS pixels
    const r = this.canvas.getBoundingClientRect();
    return {x: r.left + SPEC_LEFT, y: r.top, w: r.width - SPEC_LEFT, h: r.height - SPEC_BOTTOM};
  }

  at(event) {  // the time and frequency under the pointer, each 0..1 across the plot too
    const p = this.plot(), fx = (event.clientX - p.x) / p.w, fy = 1 - (event.clientY - p.y) / p.h;
    const v = this.view;
    return {fx, fy, t: v.t0 + fx * (v.t1 - v.t0), f: v.f0 + fy * (v.f1 - v.f0), onAxis: fx < 0};
  }

  set(view) {
    const clamp = (lo, hi, min, max, smallest) => {
      let a = Math.max(min, Math.min(lo, hi)), b = Math.min(max, Math.max(lo, hi));
      const least = Math.min(max - min, smallest);
      if (b - a < least) { const mid = (a + b) / 2; a = Math.max(min, mid - least / 2); b = Math.min(max, a + least); a = b - least; }
      return [a, b];
    };
    const [t0, t1] = clamp(view.t0, view.t1, 0, this.duration, MIN_S);
    const [f0, f1] = clamp(view.f0, view.f1, 0, this.spec.max_hz, MIN_HZ);
    this.view = {t0, t1, f0, f1};
    this.draw();
  }

  zoomTime(factor, around) {
    const v = this.view, c = v.t0 + around * (v.t1 - v.t0), span = (v.t1 - v.t0) * factor;
    this.set({...v, t0: c - around * span, t1: c + (1 - around) * span});
  }

  zoomFreq(factor, around) {
    const v = this.view, c = v.f0 + around * (v.f1 - v.f0), span = (v.f1 - v.f0) * factor;
    this.set({...v, f0: c - around * span, f1: c + (1 - around) * span});
  }

  reset() { this.view = {...this.full}; this.draw(); }

  draw() {
    drawSpectrogram(this.canvas, this.spec, this.bytes, {height: this.height, extent: this.extent, view: this.view});
    const v = this.view, d = this.canvas.dataset;
    d.t0 = v.t0.toFixed(3); d.t1 = v.t1.toFixed(3); d.f0 = Math.round(v.f0); d.f1 = Math.round(v.f1);
    this.readout.textContent = `${v.t0.toFixed(2)}–${v.t1.toFixed(2)} s · ${(v.f0 / 1000).toFixed(1)}–${(v.f1 / 1000).toFixed(1)} kHz`;
    if (this.box) this.drawBox();
  }

  drawBox() {
    const ctx = this.canvas.getContext("2d"), r = this.canvas.getBoundingClientRect(), b = this.box;
    ctx.strokeStyle = "#fff"; ctx.setLineDash([4, 3]); ctx.lineWidth = 1;
    ctx.strokeRect(b.x0 - r.left, b.y0 - r.top, b.x1 - b.x0, b.y1 - b.y0); ctx.setLineDash([]);
  }

  listen() {
    const c = this.canvas;
    c.style.cursor = "crosshair"; c.style.touchAction = "pan-y";
    c.addEventListener("wheel", e => {
      e.preventDefault();
      const p = this.at(e), factor = e.deltaY < 0 ? 1 / WHEEL_STEP : WHEEL_STEP;
      if (e.shiftKey || p.onAxis) this.zoomFreq(factor, Math.min(1, Math.max(0, p.fy)));
      else this.zoomTime(factor, Math.min(1, Math.max(0, p.fx)));
    }, {passive: false});
    c.addEventListener("pointerdown", e => {
      if (e.button !== 0) return;
      this.box = {x0: e.clientX, y0: e.clientY, x1: e.clientX, y1: e.clientY, start: this.at(e)};
      c.setPointerCapture(e.pointerId);
    });
    c.addEventListener("pointermove", e => {
      if (!this.box) return;
      this.box.x1 = e.clientX; this.box.y1 = e.clientY; this.draw();
    });
    c.addEventListener("pointerup", e => {
      const b = this.box; this.box = null;
      if (!b) return;
      const end = this.at(e), dx = Math.abs(e.clientX - b.x0), dy = Math.abs(e.clientY - b.y0);
      if (dx < 5 && dy < 5) {  // a click: seek the clip there
        this.draw();
        if (this.onSeek && !b.start.onAxis) this.onSeek(b.start.t);
        return;
      }
      const v = {...this.view};
      if (dx >= 5) { v.t0 = Math.min(b.start.t, end.t); v.t1 = Math.max(b.start.t, end.t); }
      if (dy >= 5 && dy > dx / 8) { v.f0 = Math.min(b.start.f, end.f); v.f1 = Math.max(b.start.f, end.f); }
      this.set(v);
    });
    c.addEventListener("dblclick", () => this.reset());
  }
}
