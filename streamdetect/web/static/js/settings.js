// Settings: the detection keys as a form; the schema's errors appear next to their field; a save is applied
// live and written to the YAML file (comments kept).
import {api, el, isAdmin, toast} from "./api.js";

const FIELDS = [["label", "text"], ["prompts", "lines"], ["negatives", "lines"], ["threshold", "number"],
                ["min_windows", "number"], ["hysteresis", "number"], ["cooldown_s", "number"]];

export function settingsPage(main) {
  const list = el("div", {id: "settings-events"});
  const gate = el("input", {id: "gate-min_dbfs", type: "number", step: "any", placeholder: "off"});
  const gateError = el("div", {class: "field-error", "data-key": "gate.min_dbfs"});
  const save = el("button", {id: "settings-save", disabled: !isAdmin()}, "Apply and save");
  const addBtn = el("button", {class: "secondary", id: "settings-add", disabled: !isAdmin()}, "Add event");
  const info = el("p", {class: "muted", id: "settings-info"});
  main.append(el("h2", {}, "Settings"), info, list, el("div", {class: "panel"}, el("h3", {}, "Energy gate"),
              el("label", {}, "gate.min_dbfs (windows quieter than this are not analysed)", gate), gateError),
              el("div", {class: "actions"}, addBtn, save));

  function eventForm(ev, i) {
    const box = el("div", {class: "panel event-form", "data-index": i});
    for (const [key, kind] of FIELDS) {
      const value = ev[key];
      const input = kind === "lines" ? el("textarea", {rows: 2, "data-field": key}, (value || []).join("\n"))
        : el("input", {"data-field": key, type: kind === "number" ? "number" : "text", step: "any",
                       value: value === undefined || value === null ? "" : value});
      box.append(el("label", {}, key, input, el("div", {class: "field-error", "data-key": `events[${i}].${key}`})));
    }
    box.append(el("button", {class: "secondary", disabled: !isAdmin(), onclick: () => { box.remove(); }}, "Remove"));
    if (ev.examples) box.append(el("p", {class: "muted"}, `${ev.examples} audio example(s) kept as configured`));
    return box;
  }

  function collect() {
    return [...list.querySelectorAll(".event-form")].map(box => {
      const ev = {};
      for (const [key, kind] of FIELDS) {
        const v = box.querySelector(`[data-field="${key}"]`).value;
        if (kind === "lines") ev[key] = v.split("\n").map(s => s.trim()).filter(Boolean);
        else if (kind === "number") { if (v !== "") ev[key] = Number(v); }
        else ev[key] = v;
      }
      return ev;
    });
  }

  function show(data) {
    list.replaceChildren(...data.events.map(eventForm));
    gate.value = data.gate.min_dbfs === null ? "" : data.gate.min_dbfs;
    info.textContent = `scoring mode ${data.scoring_mode}; ` + (data.file ? `saves go to ${data.file}` : "changes live in memory only (no config file)");
  }

  save.addEventListener("click", async () => {
    for (const e of main.querySelectorAll(".field-error")) e.textContent = "";
    // renumber so error keys match what was sent
    [...list.querySelectorAll(".event-form")].forEach((box, i) => {
      for (const err of box.querySelectorAll(".field-error")) err.dataset.key = err.dataset.key.replace(/events\[\d+\]/, `events[${i}]`);
    });
    try {
      const r = await api("/api/settings", {method: "POST", body: {events: collect(),
        gate: {min_dbfs: gate.value === "" ? null : Number(gate.value)}}});
      show(r);
      toast(r.saved_to ? `applied and saved to ${r.saved_to}` : "applied (not saved: no config file)");
    } catch (e) {
      const problems = (e.data && e.data.problems) || [];
      for (const p of problems) {
        const target = main.querySelector(`.field-error[data-key="${p.key}"]`) ||
                       main.querySelector(`.field-error[data-key^="${p.key.split(".")[0]}"]`);
        if (target) target.textContent = p.message; else toast(`${p.key}: ${p.message}`);
      }
      if (!problems.length) toast(e.message);
    }
  });
  addBtn.addEventListener("click", () => list.append(eventForm({label: "", prompts: [], negatives: [], threshold: 0.5},
                                                               list.children.length)));
  api("/api/settings").then(show).catch(e => toast(e.message));
}
