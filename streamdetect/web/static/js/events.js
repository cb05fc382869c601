// Events: the store's events newest first with filters and pages; one event's clip, spectrogram, score
// curve and the review buttons (confirm / reject / relabel, and "refine now").
import {api, decode, el, fmtScore, fmtTime, isAdmin, state, toast} from "./api.js";
import {drawLines, drawSpectrogram} from "./charts.js";
import {ZoomableSpectrogram} from "./zoom.js";

function presetRange(name) {
  const now = new Date(), day = new Date(now.getFullYear(), now.getMonth(), now.getDate());
  const at = (d, h) => new Date(d.getFullYear(), d.getMonth(), d.getDate(), h);
  const yesterday = new Date(day.getTime() - 86400e3);
  switch (name) {
    case "hour": return [new Date(now - 3600e3), null];
    case "today": return [day, null];
    case "night": return now.getHours() >= 18 ? [at(day, 18), null] : [at(yesterday, 18), at(day, 6)];
    case "24h": return [new Date(now - 86400e3), null];
    case "7d": return [new Date(now - 7 * 86400e3), null];
    default: return [null, null];
  }
}

export function eventsPage(main) {
  const f = {};
  const field = (key, node, text) => { f[key] = node; return el("label", {}, text, node); };
  const form = el("form", {class: "filters panel", id: "event-filters"},
    field("label", el("select", {name: "label"}, el("option", {value: ""}, "any")), "Label"),
    field("stream", el("select", {name: "stream"}, el("option", {value: ""}, "any")), "Stream"),
    field("preset", el("select", {name: "preset"}, ...[["", "any time"], ["hour", "last hour"], ["today", "today"],
      ["night", "last night (18-06)"], ["24h", "last 24 h"], ["7d", "last 7 days"], ["custom", "custom"]]
      .map(([v, t]) => el("option", {value: v}, t))), "Time"),
    field("since", el("input", {type: "datetime-local", name: "since"}), "From"),
    field("until", el("input", {type: "datetime-local", name: "until"}), "To"),
    field("min_score", el("input", {type: "number", step: "any", name: "min_score", size: 6}), "Min score"),
    field("max_score", el("input", {type: "number", step: "any", name: "max_score", size: 6}), "Max score"),
    field("review", el("select", {name: "review"}, ...["any", "unreviewed", "reviewed", "confirmed", "rejected"]
      .map(v => el("option", {value: v}, v))), "Review"),
    el("button", {type: "submit"}, "Filter"));
  const body = el("tbody", {id: "events-body"});
  const more = el("button", {class: "secondary hidden", id: "events-more"}, "Older events");
  const count = el("span", {class: "muted", id: "events-count"});
  const refine = el("button", {id: "refine-now", disabled: !isAdmin()}, "Refine now");
  main.append(el("h2", {}, "Events ", count), form,
              el("div", {class: "actions"}, refine, el("span", {class: "muted"},
                 "refine moves each prompt toward confirmed and away from rejected events, and applies it live")),
              el("table", {class: "panel"}, el("thead", {}, el("tr", {}, el("th", {}, "Spectrogram"),
                 el("th", {}, "Time"), el("th", {}, "Label"), el("th", {class: "hide-narrow"}, "Stream"),
                 el("th", {}, "Peak"), el("th", {}, "Duration"), el("th", {class: "hide-narrow"}, "Sounds like"),
                 el("th", {}, "Review"))), body), more);
  let next = null, shown = 0;

  function query() {
    const q = new URLSearchParams();
    for (const k of ["label", "stream", "min_score", "max_score", "review"]) if (f[k].value) q.set(k, f[k].value);
    if (f.preset.value && f.preset.value !== "custom") {
      const [a, b] = presetRange(f.preset.value);
      if (a) q.set("since", a.toISOString());
      if (b) q.set("until", b.toISOString());
    } else {
      if (f.since.value) q.set("since", new Date(f.since.value).toISOString());
      if (f.until.value) q.set("until", new Date(f.until.value).toISOString());
    }
    return q;
  }

  async function load(append) {
    const q = query();
    if (append && next) q.set("before", next);
    let data;
    try { data = await api("/api/events?" + q); } catch (e) { toast(e.message); body.replaceChildren(el("tr", {}, el("td", {colspan: 8}, e.message))); return; }
    if (!append) {
      body.replaceChildren(); shown = 0;
      fill(f.label, data.labels); fill(f.stream, data.streams);
    }
    for (const ev of data.events) body.append(row(ev));
    shown += data.events.length;
    count.textContent = `${shown} shown`;
    next = data.next;
    more.classList.toggle("hidden", !next);
  }

  function fill(select, values) {
    const current = select.value;
    if (select.options.length === values.length + 1) return;
    select.replaceChildren(el("option", {value: ""}, "any"), ...values.map(v => el("option", {value: v, selected: v === current}, v)));
  }

  function row(ev) {
    const thumb = el("canvas", {class: "thumb"});
    const duration = ev.end_s === null ? "open" : `${(ev.end_s - ev.start_s).toFixed(1)} s`;
    const tr = el("tr", {class: "event-row", "data-id": ev.id, onclick: () => { location.hash = `#/event/${ev.id}`; }},
      el("td", {}, thumb), el("td", {}, fmtTime(ev.time)), el("td", {}, ev.label),
      el("td", {class: "hide-narrow"}, ev.stream), el("td", {}, fmtScore(ev.peak_score)), el("td", {}, duration),
      el("td", {class: "hide-narrow"}, (ev.sounds_like || []).map(s => s.label).join(", ")),
      el("td", {}, reviewBadge(ev), " ", state.session.has_clips && ev.end_s !== null
        ? el("a", {href: `/api/events/${ev.id}/clip?download=1`, class: "download", title: "download the clip",
                   onclick: (e) => e.stopPropagation()}, "⤓") : ""));
    if (state.session.has_clips && ev.end_s !== null) {
      api(`/api/events/${ev.id}/spectrogram?thumb=1`).then(s => drawSpectrogram(thumb, s, decode(s.columns),
        {height: 40, axes: false, extent: s.extent_s})).catch(() => thumb.classList.add("hidden"));
    }
    return tr;
  }

  form.addEventListener("submit", (e) => { e.preventDefault(); load(false); });
  more.addEventListener("click", () => load(true));
  refine.addEventListener("click", async () => {
    refine.disabled = true;
    try {
      const r = await api("/api/refine", {method: "POST", body: {}});
      toast("refined: " + r.labels.map(l => l.version ? `${l.label} v${l.version}` : `${l.label} unchanged`).join(", "));
    } catch (e) { toast(e.message); }
    refine.disabled = false;
  });
  load(false);
}

export function reviewBadge(ev) {
  if (!ev.feedback) return el("span", {class: "badge"}, "unreviewed");
  const text = ev.relabel ? `relabelled: ${ev.relabel}` : ev.feedback;
  return el("span", {class: "badge " + ev.feedback}, text);
}

export function eventPage(main, id) {
  const info = el("div", {class: "panel", id: "event-info"}, "loading…");
  const audio = el("audio", {controls: true, preload: "metadata", id: "clip-player"});
  const spec = el("canvas", {id: "event-spectrogram"});
  const curve = el("canvas", {id: "event-curve"});
  const curveNote = el("p", {class: "muted"});
  const review = el("div", {class: "actions", id: "review-actions"});
  main.append(el("h2", {}, el("a", {href: "#/events"}, "Events"), " › event"), info, review,
              el("div", {class: "panel"}, el("h3", {}, "Clip (with pre- and post-roll)"), audio,
                 el("p", {}, el("a", {id: "clip-download", class: "hidden"}, "download")), spec),
              el("div", {class: "panel"}, el("h3", {}, "Score around the event"), curve, curveNote));
  async function load() {
    let ev;
    try { ev = await api(`/api/events/${id}`); } catch (e) { info.textContent = e.message; return; }
    info.replaceChildren(
      el("p", {}, el("strong", {id: "event-label"}, ev.label), ` on ${ev.stream} · ${fmtTime(ev.time)}`),
      el("p", {}, `peak ${fmtScore(ev.peak_score)} · ${ev.end_s === null ? "still open" : `${(ev.end_s - ev.start_s).toFixed(1)} s`}`,
         " · ", el("span", {id: "event-review"}, reviewBadge(ev))),
      (ev.sounds_like || []).length ? el("p", {class: "muted"}, "sounds like: " + ev.sounds_like.map(s => `${s.label} ${fmtScore(s.score)}`).join(", ")) : "",
      el("p", {class: "muted"}, "top labels: " + (ev.top || []).map(t => `${t.label} ${fmtScore(t.score)}`).join(", ")));
    renderReview(ev);
    if (ev.clip) {
      audio.src = ev.clip.url;
      const dl = document.getElementById("clip-download");
      dl.href = ev.clip.url + "?download=1"; dl.classList.remove("hidden");
      dl.after(" ", el("button", {id: "as-example-btn", class: "secondary", disabled: !isAdmin(),
        title: "store the event's sound as an audio example of its label (applied live, saved to the config)",
        onclick: async () => {
          try {
            const r = await api(`/api/events/${id}/as-example`, {method: "POST", body: {}});
            toast(`added as an example of ${ev.relabel || ev.label}` + (r.saved_to ? `, saved to ${r.saved_to}` : ""));
          } catch (e) { toast(e.data && e.data.problems ? e.data.problems.map(p => p.message).join("; ") : e.message); }
        }}, "Use as example"));
      api(`/api/events/${id}/spectrogram`).then(s => {
        spec.zoom = new ZoomableSpectrogram(spec, s, decode(s.columns), {height: 220, extent: s.extent_s,
          onSeek: t => { audio.currentTime = t; }});
      }).catch(e => { spec.replaceWith(el("p", {class: "muted"}, e.message)); });
    } else {
      audio.replaceWith(el("p", {class: "muted"}, "no clip for this event (add a clips sink)"));
    }
    api(`/api/events/${id}/curve`).then(c => {
      if (!c.points.length) { curveNote.textContent = "no windows around this event in memory or in the embedding log"; return; }
      drawLines(curve, [{points: c.points, colour: "#4fb3ff"}], {height: 150, band: c.event,
        thresholds: c.threshold === null ? [] : [{value: c.threshold, colour: "#f5b942"}]});
      curveNote.textContent = `cosine of "${c.label}"'s prompt vector per window; dashed: threshold`;
    }).catch(e => { curveNote.textContent = e.message; });
  }
  function renderReview(ev) {
    const disabled = !isAdmin();
    const relabel = el("input", {id: "relabel-input", placeholder: "new label", list: "label-list", size: 12, disabled});
    const send = async (verdict, label) => {
      try {
        const r = await api(`/api/events/${ev.id}/feedback`, {method: "POST", body: {verdict, label}});
        ev.feedback = r.verdict; ev.relabel = r.relabel;
        document.getElementById("event-review").replaceChildren(reviewBadge(ev));
        toast(`${r.label} event ${r.verdict}${r.relabel ? " as " + r.relabel : ""}`);
      } catch (e) { toast(e.message); }
    };
    review.replaceChildren(
      el("button", {id: "confirm-btn", disabled, onclick: () => send("confirmed")}, "Confirm"),
      el("button", {id: "reject-btn", class: "danger", disabled, onclick: () => send("rejected")}, "Reject"),
      relabel, el("datalist", {id: "label-list"}, ...state.session.labels.map(l => el("option", {value: l}))),
      el("button", {id: "relabel-btn", class: "secondary", disabled, onclick: () => send("relabel", relabel.value)}, "Relabel"),
      disabled ? el("span", {class: "muted"}, "viewers cannot review") : "");
  }
  load();
}
