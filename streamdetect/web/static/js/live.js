// Live: every stream's current top labels (and "sounds like"), pushed by server-sent events; for the chosen
// stream a scrolling spectrogram, a strip of each label's score against its threshold, and "Listen".
import {decode, el, fmtScore, state} from "./api.js";
import {COLOURS, LiveSpectrogram, drawLines} from "./charts.js";
import {Listener} from "./listen.js";

export function livePage(main) {
  const picker = el("select", {id: "live-source"});
  const cards = el("div", {class: "grid", id: "live-streams"});
  const specCanvas = el("canvas", {id: "live-spectrogram"});
  const strips = el("div", {id: "live-strips"});
  const status = el("span", {class: "muted", id: "live-status"}, "connecting…");
  const listenBtn = el("button", {id: "live-listen", class: "secondary", title: "play this stream's audio"}, "Listen");
  const listenNote = el("span", {class: "muted", id: "live-listen-note"}, state.session.privacy
    ? "privacy filter on: audio plays once judged (a few seconds late), speech is silent"
    : "16 kHz mono, 32 KB/s");
  main.append(el("h2", {}, "Live ", status),
              el("div", {class: "panel actions"}, el("label", {}, "Source", picker), listenBtn, listenNote), cards,
              el("div", {class: "panel"}, el("h3", {}, "Spectrogram (last 30 s)"), specCanvas),
              el("div", {class: "panel"}, el("h3", {}, "Scores (dashed: threshold)"), strips));
  const spectrogram = new LiveSpectrogram(specCanvas, 30);
  const streams = new Map();  // name -> {summary, receivedAt}
  let history = [], thresholds = {}, source = null, selected = state.session.streams[0] || null;
  const messages = {count: 0};

  function connect() {
    if (source) source.close();
    history = []; spectrogram.cols = [];
    source = new EventSource(`/api/live/stream${selected ? "?stream=" + encodeURIComponent(selected) : ""}`);
    source.onmessage = (e) => onMessage(JSON.parse(e.data));
    source.onerror = () => { status.textContent = "reconnecting…"; };
  }

  function onMessage(msg) {
    messages.count++;
    status.textContent = `updated ${new Date().toLocaleTimeString()}`;
    main.dataset.messages = messages.count;
    const now = performance.now();
    for (const s of msg.streams) streams.set(s.name, {summary: s, receivedAt: now});
    if (!selected && streams.size) { selected = [...streams.keys()][0]; connect(); return; }
    const names = [...streams.keys()].sort();
    if (picker.options.length !== names.length) {
      picker.replaceChildren(...names.map(n => el("option", {value: n, selected: n === selected}, n)));
    }
    if (msg.spectrogram) spectrogram.push(msg.spectrogram, decode(msg.spectrogram.columns));
    if (msg.windows && msg.windows.length) {
      history.push(...msg.windows);
      const cut = history[history.length - 1].t - 300;
      while (history.length && history[0].t < cut) history.shift();
    }
    const sel = streams.get(selected);
    if (sel && sel.summary.thresholds) thresholds = sel.summary.thresholds;
    renderCards(); renderStrips();
  }

  function renderCards() {
    const now = performance.now();
    cards.replaceChildren(...[...streams.values()].map(({summary: s, receivedAt}) => {
      const age = s.age_s === null ? null : s.age_s + (now - receivedAt) / 1000;
      const stale = age === null || age > (state.session.stale_after_s || 10);
      const rows = (s.top || []).map(([label, score]) => {
        const th = (s.thresholds || {})[label];
        // bars are relative to the threshold (at two thirds of the bar) when there is one
        const rel = th !== undefined && th > 0 ? score / (1.5 * th) : (score + 1) / 2;
        const pct = Math.max(0, Math.min(100, 100 * rel));
        return el("div", {class: "score-row"}, el("span", {}, label), el("span", {}, fmtScore(score)),
                  el("div", {class: "bar" + (th !== undefined && score >= th ? " over" : "")},
                     barSpan(pct)));
      });
      const like = (s.sounds_like || []).length
        ? el("p", {class: "muted sounds-like"}, "sounds like: ", s.sounds_like.map(([n, v]) => `${n} ${fmtScore(v)}`).join(", "))
        : "";
      return el("div", {class: "panel stream-card" + (stale ? " stale" : ""), "data-stream": s.name},
                el("h3", {}, s.name, " ", stale ? el("span", {class: "badge stale"}, age === null ? "no audio" : `stale ${Math.round(age)} s`) : ""),
                ...rows, like, el("p", {class: "muted windows"}, `${s.windows} windows${s.gated ? " · quiet (gated)" : ""}`));
    }));
  }

  function barSpan(pct) { const s = el("span"); s.style.width = pct + "%"; return s; }

  function renderStrips() {
    const labels = Object.keys(thresholds);
    if (strips.children.length !== labels.length || strips.dataset.labels !== labels.join("|")) {
      strips.replaceChildren(...labels.map((l, i) => el("div", {}, el("span", {class: "legend"}, el("span", {}, l)),
                                                         el("canvas", {class: "strip", "data-label": l, "data-i": i}))));
      strips.dataset.labels = labels.join("|");
    }
    if (!history.length) return;
    const tmax = history[history.length - 1].t, tmin = tmax - 300;
    for (const c of strips.querySelectorAll("canvas")) {
      const label = c.dataset.label, colour = COLOURS[c.dataset.i % COLOURS.length];
      const points = history.filter(w => label in w.scores).map(w => [w.t, w.scores[label]]);
      drawLines(c, [{points, colour}], {height: 90, tmin, tmax,
                                        thresholds: [{value: thresholds[label], colour: "#f5b942"}]});
    }
  }

  const listener = new Listener(listenBtn);
  listenBtn.addEventListener("click", () => {
    if (listener.playing) listener.stop(); else if (selected) listener.start(selected);
  });
  picker.addEventListener("change", () => {
    selected = picker.value; connect();
    if (listener.playing) listener.start(selected);
  });
  const timer = setInterval(renderCards, 1000);
  connect();
  return () => { clearInterval(timer); if (source) source.close(); listener.stop(); };
}
