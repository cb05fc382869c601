// Activity: per label, an hour-of-day x day heatmap and the events per day (rejected events left out).
import {api, el, toast} from "./api.js";
import {drawBars, drawHeatmap} from "./charts.js";

export function activityPage(main) {
  const days = el("select", {id: "activity-days"}, el("option", {value: 7}, "last 7 days"),
                  el("option", {value: 30}, "last 30 days"));
  const out = el("div", {id: "activity-labels"});
  main.append(el("h2", {}, "Activity"), el("div", {class: "panel"}, el("label", {}, "Range", days),
              el("p", {class: "muted"}, "each event counted once, at its start, in this browser's time zone; events a reviewer rejected are left out")), out);
  async function load() {
    let data;
    try {
      data = await api(`/api/activity?days=${days.value}&tz_offset_min=${-new Date().getTimezoneOffset()}`);
    } catch (e) { out.replaceChildren(el("p", {class: "muted"}, e.message)); return; }
    const labels = Object.entries(data.labels);
    if (!labels.length) { out.replaceChildren(el("p", {class: "muted"}, "no events in this range")); return; }
    out.replaceChildren(...labels.map(([label, d]) => {
      const heat = el("canvas", {class: "heatmap", "data-label": label});
      const bars = el("canvas", {class: "per-day"});
      const panel = el("div", {class: "panel activity-label", "data-label": label, "data-total": d.total},
                       el("h3", {}, `${label} · ${d.total} events`), heat, bars);
      requestAnimationFrame(() => {
        drawHeatmap(heat, data.days, d.cells);
        drawBars(bars, data.days, data.days.map(day => d.per_day[day] || 0));
      });
      return panel;
    }));
  }
  days.addEventListener("change", () => load().catch(e => toast(e.message)));
  load();
}
