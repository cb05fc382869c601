// Prompt playground: a typed prompt's score over the last minutes of every stream, the past windows that match
// it best (with their clips where an event kept one), a threshold picked on the curve, "add as event"; and
// text search over the embedding log.
import {api, el, fmtScore, fmtTime, isAdmin, toast} from "./api.js";
import {COLOURS, drawLines} from "./charts.js";

export function playgroundPage(main) {
  const prompt = el("input", {id: "pg-prompt", placeholder: "e.g. a smoke alarm beeping", size: 30});
  const canvas = el("canvas", {id: "pg-curve"});
  const legend = el("div", {class: "legend", id: "pg-legend"});
  const best = el("div", {id: "pg-best"});
  const label = el("input", {id: "pg-label", placeholder: "label", size: 12});
  const threshold = el("input", {id: "pg-threshold", type: "number", step: "any", size: 8});
  const add = el("button", {id: "pg-add", disabled: !isAdmin()}, "Add as event");
  const since = el("select", {id: "search-since"}, ...[["1h", "last hour"], ["1d", "last day"], ["7d", "last week"],
    ["30d", "last 30 days"]].map(([v, t]) => el("option", {value: v, selected: v === "7d"}, t)));
  const searchText = el("input", {id: "search-q", placeholder: "chainsaw", size: 24});
  const searchOut = el("div", {id: "search-results"});
  const note = el("p", {class: "muted", id: "pg-note"});
  main.append(el("h2", {}, "Prompt playground"),
    el("div", {class: "panel"}, el("form", {class: "filters", id: "pg-form"}, el("label", {}, "Prompt", prompt),
       el("button", {type: "submit"}, "Score")), note, canvas, legend,
       el("p", {class: "muted"}, "click the curve to pick a threshold"),
       el("div", {class: "filters"}, el("label", {}, "Label", label), el("label", {}, "Threshold", threshold), add)),
    el("div", {class: "panel"}, el("h3", {}, "Best matching windows"), best),
    el("div", {class: "panel"}, el("h3", {}, "Search past audio (embedding log)"),
       el("form", {class: "filters", id: "search-form"}, el("label", {}, "Text", searchText), el("label", {}, "Since", since),
          el("button", {type: "submit"}, "Search")), searchOut));
  let chart = null, last = null;

  function draw() {
    if (!last) return;
    const series = Object.entries(last.curves).map(([name, points], i) => ({points, colour: COLOURS[i % COLOURS.length], name}));
    if (!series.length) { note.textContent = "no windows analysed in the last minutes"; return; }
    const th = threshold.value === "" ? [] : [{value: Number(threshold.value), colour: "#f5b942"}];
    chart = drawLines(canvas, series, {height: 180, thresholds: th});
    canvas.dataset.points = series.reduce((n, s) => n + s.points.length, 0);
    legend.replaceChildren(...series.map(s => { const sp = el("span", {}, "■ " + s.name); sp.style.color = s.colour; return sp; }));
  }

  function hits(target, list) {
    target.replaceChildren(...(list.length ? list.map(h => el("div", {class: "hit"},
      el("p", {}, `${fmtScore(h.score)} · ${h.stream} · ${fmtTime(h.time_from)} – ${new Date(h.time_to).toLocaleTimeString()} (${h.windows} windows)`,
         ...h.events.map(id => el("a", {href: `#/event/${id}`, class: "hit-event"}, " ▶ event")),
         ...(h.events.length ? [] : [el("span", {class: "muted"}, " no clip kept")])))) : [el("p", {class: "muted"}, "nothing found")]));
  }

  main.querySelector("#pg-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const t0 = performance.now();
    try { last = await api("/api/playground?q=" + encodeURIComponent(prompt.value)); }
    catch (err) { toast(err.message); return; }
    note.textContent = `${last.windows} windows scored in ${Math.round(performance.now() - t0)} ms`;
    if (!label.value) label.value = prompt.value.trim().split(/\s+/).slice(-2).join("_").toLowerCase().replace(/[^a-z0-9_]/g, "");
    draw(); hits(best, last.best);
  });
  canvas.addEventListener("click", (e) => {
    if (!chart) return;
    const r = canvas.getBoundingClientRect();
    threshold.value = chart.valueAt(e.clientY - r.top).toFixed(4);
    draw();
  });
  threshold.addEventListener("change", draw);
  add.addEventListener("click", async () => {
    try {
      const r = await api("/api/playground/add", {method: "POST", body: {label: label.value, prompt: prompt.value,
                                                                        threshold: Number(threshold.value)}});
      toast(`${r.status}: events now ${r.events.join(", ")}`);
      note.textContent = `added ${label.value}: events now ${r.events.join(", ")}`;
    } catch (e) {
      toast(e.data && e.data.problems ? e.data.problems.map(p => `${p.key}: ${p.message}`).join("; ") : e.message);
    }
  });
  main.querySelector("#search-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      const r = await api(`/api/search?q=${encodeURIComponent(searchText.value)}&since=${since.value}`);
      hits(searchOut, r.best);
    } catch (err) { toast(err.message); }
  });
}
