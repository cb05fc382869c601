// Listening to a live stream: the daemon sends raw big-endian PCM16 (audio/L16) as it arrives; each chunk is
// scheduled on a Web Audio clock right after the previous one, so it plays gap-free about a quarter second
// behind. With the privacy filter on, the server sends only judged audio, private stretches silent.
const START_DELAY_S = 0.25, MAX_LATENCY_S = 3;

export class Listener {
  constructor(button) { this.button = button; this.stream = null; this.abort = null; this.ctx = null; }

  get playing() { return this.abort !== null; }

  async start(stream) {
    this.stop();
    const abort = this.abort = new AbortController();
    this.stream = stream;
    const ctx = this.ctx = new AudioContext();  // made in the click, so the browser lets it play
    const d = this.button.dataset;
    d.receivedS = "0"; d.peak = "0"; d.state = "starting";
    this.button.textContent = "Stop listening";
    let next = 0, carry = null, received = 0, peak = 0;
    try {
      const res = await fetch(`/api/live/audio?stream=${encodeURIComponent(stream)}`,
                              {signal: abort.signal, credentials: "same-origin"});
      if (!res.ok) throw new Error((await res.json().catch(() => ({}))).error || `HTTP ${res.status}`);
      const rate = Number(res.headers.get("X-Sample-Rate")) || 16000;
      const reader = res.body.getReader();
      d.state = "playing";
      for (;;) {
        const {value, done} = await reader.read();
        if (done) break;
        let bytes = value;
        if (carry) { bytes = new Uint8Array(carry.length + value.length); bytes.set(carry); bytes.set(value, carry.length); }
        const n = bytes.length >> 1;
        carry = bytes.length & 1 ? bytes.slice(-1) : null;
        if (!n) continue;
        const view = new DataView(bytes.buffer, bytes.byteOffset, n * 2), samples = new Float32Array(n);
        for (let i = 0; i < n; i++) { samples[i] = view.getInt16(2 * i, false) / 32768; peak = Math.max(peak, Math.abs(samples[i])); }
        received += n / rate;
        d.receivedS = received.toFixed(2); d.peak = peak.toFixed(4); d.playedS = ctx.currentTime.toFixed(2);
        if (next - ctx.currentTime > MAX_LATENCY_S) continue;  // fell behind (a tab in the background): catch up
        const buffer = ctx.createBuffer(1, n, rate);
        buffer.copyToChannel(samples, 0);
        const source = ctx.createBufferSource();
        source.buffer = buffer; source.connect(ctx.destination);
        next = Math.max(next, ctx.currentTime + START_DELAY_S);
        source.start(next);
        next += n / rate;
      }
    } catch (e) {
      if (abort.signal.aborted) return;
      d.state = "error: " + e.message;
    }
    if (this.abort === abort) this.stop();
  }

  stop() {
    if (this.abort) this.abort.abort();
    if (this.ctx) this.ctx.close();
    this.abort = null; this.ctx = null;
    this.button.textContent = "Listen";
    if (this.button.dataset.state === "playing" || this.button.dataset.state === "starting") this.button.dataset.state = "stopped";
  }
}
