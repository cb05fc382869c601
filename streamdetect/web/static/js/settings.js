// Settings: every detection key the detector applies live, as a form drawn from the config schema the server
// sends (kind, choices, default, description). The schema's errors appear next to their field; a save is
// applied live and written to the YAML file (comments kept). An event's audio examples are listed by the ids the
// server gives them; an upload is stored at once and becomes the event's example with the next save.
import {api, el, isAdmin, toast, upload} from "./api.js";

const player = new Audio();

function exampleItem(x, fresh) {
  const li = el("li", {class: "example", "data-id": x.id}, el("span", {class: "example-name"}, x.name),
                x.duration_s === null || x.duration_s === undefined ? "" : ` · ${Number(x.duration_s).toFixed(1)} s`,
                fresh ? el("span", {class: "muted"}, " · new: kept on Apply") : "");
  if (x.playable) {
    li.append(" ", el("button", {class: "secondary", type: "button", title: "play",
                                 onclick: () => { player.src = `/api/settings/examples/${x.id}/audio`; player.play(); }},
                      "▶"));
  }
  li.append(" ", el("button", {class: "secondary example-remove", type: "button", disabled: !isAdmin(),
                               onclick: () => li.remove()}, "remove"));
  return li;
}

function input(field, value, id) {
  const attrs = {"data-field": field.key, id, title: field.description};
  if (field.kind === "lines") return el("textarea", {...attrs, rows: 2}, (value || []).join("\n"));
  if (field.kind === "bool") return el("input", {...attrs, type: "checkbox", checked: !!value});
  if (field.kind === "choice") {
    return el("select", attrs, field.options.map(o => el("option", {value: o, selected: o === value}, o)));
  }
  const numeric = field.kind === "number" || field.kind === "integer";
  return el("input", {...attrs, type: "text", inputmode: numeric ? "decimal" : undefined,
                      placeholder: field.nullable ? "none" : (field.default ?? ""),
                      value: value === undefined || value === null ? "" : value});
}

function read(field, node) {
  if (field.kind === "bool") return node.checked;
  if (field.kind === "choice") return node.value;
  if (field.kind === "lines") {
    const lines = node.value.split("\n").map(s => s.trim()).filter(Boolean);
    return field.nullable && !lines.length ? null : lines;
  }
  const text = node.value.trim();
  if (text === "") return field.nullable ? null : undefined;  // undefined: left out, so the default applies
  if (field.kind === "text") return node.value;
  const n = Number(text);
  return Number.isNaN(n) ? text : n;  // a typo goes to the server, whose schema names the mistake
}

function fieldBox(field, value, errorKey) {
  return el("label", {class: `field field-${field.kind}`}, field.key, input(field, value, `set-${errorKey}`),
            el("small", {class: "hint"}, field.description),
            el("div", {class: "field-error", "data-key": errorKey}));
}

export function settingsPage(main) {
  const list = el("div", {id: "settings-events"});
  const sections = el("div", {id: "settings-sections"});
  const problems = el("ul", {class: "error", id: "settings-problems"});
  const save = el("button", {id: "settings-save", disabled: !isAdmin()}, "Apply and save");
  const addBtn = el("button", {class: "secondary", id: "settings-add", disabled: !isAdmin()}, "Add event");
  const info = el("p", {class: "muted", id: "settings-info"});
  main.append(el("h2", {}, "Settings"), info, el("h3", {}, "Events"), list, el("div", {class: "actions"}, addBtn),
              sections, problems, el("div", {class: "actions"}, save));
  let schema = null;

  let limits = {max_upload_kb: 0, examples_dir: ""};

  function examplesField(box, ev, i) {
    const items = el("ul", {class: "examples", "data-field": "examples"}, ...(ev.examples || []).map(x => exampleItem(x, false)));
    const error = el("div", {class: "field-error", "data-key": `events[${i}].examples`});
    const file = el("input", {type: "file", class: "example-upload", multiple: true,
                              accept: "audio/*,.wav,.flac,.ogg,.mp3", disabled: !isAdmin()});
    file.addEventListener("change", async () => {
      error.textContent = "";
      const label = box.querySelector('[data-field="label"]').value;
      for (const f of file.files) {
        if (f.size > limits.max_upload_kb * 1024) { error.textContent = `${f.name}: over ${limits.max_upload_kb} KiB`; continue; }
        try {
          const x = await upload(`/api/settings/examples?label=${encodeURIComponent(label)}&name=${encodeURIComponent(f.name)}`, f);
          if (!items.querySelector(`[data-id="${x.id}"]`)) items.append(exampleItem(x, true));
        } catch (e) {
          const found = (e.data && e.data.problems) || [];
          error.textContent = `${f.name}: ${found.length ? found.map(p => p.message).join("; ") : e.message}`;
        }
      }
      file.value = "";
    });
    return el("div", {class: "field field-examples"}, "examples", items, isAdmin() ? file : "",
              el("small", {class: "hint"}, "audio files of the sound (query by example): WAV, FLAC, OGG or MP3 up to " +
                 `${(limits.max_upload_kb / 1024).toFixed(1)} MiB each, stored in ${limits.examples_dir}; ` +
                 "added or removed on Apply"), error);
  }

  function eventForm(ev, i) {
    const box = el("div", {class: "panel event-form", "data-index": i});
    for (const field of schema.events) box.append(fieldBox(field, ev[field.key], `events[${i}].${field.key}`));
    box.append(examplesField(box, ev, i));
    box.append(el("button", {class: "secondary", disabled: !isAdmin(), onclick: () => { box.remove(); }}, "Remove"));
    return box;
  }

  function sectionForm(name, values) {
    const box = el("div", {class: "panel section-form", "data-section": name});
    box.append(el("h3", {class: "section-title"}, name));
    for (const field of schema.sections[name]) box.append(fieldBox(field, values[field.key], `${name}.${field.key}`));
    return box;
  }

  function collect() {
    const body = {events: [...list.querySelectorAll(".event-form")].map(box => {
      const ev = {};
      for (const field of schema.events) {
        const v = read(field, box.querySelector(`[data-field="${field.key}"]`));
        if (v !== undefined) ev[field.key] = v;
      }
      ev.examples = [...box.querySelectorAll("li.example")].map(li => li.dataset.id);
      return ev;
    })};
    for (const box of sections.querySelectorAll(".section-form")) {
      const values = {};
      for (const field of schema.sections[box.dataset.section]) {
        const v = read(field, box.querySelector(`[data-field="${field.key}"]`));
        if (v !== undefined) values[field.key] = v;
      }
      body[box.dataset.section] = values;
    }
    return body;
  }

  function show(data) {
    schema = data.schema || schema;
    if (data.examples_dir) limits = {max_upload_kb: data.max_upload_kb, examples_dir: data.examples_dir};
    list.replaceChildren(...data.events.map(eventForm));
    sections.replaceChildren(...Object.keys(schema.sections).map(name => sectionForm(name, data[name])));
    info.textContent = "Applied live, without a restart. " +
      (data.file ? `Saves go to ${data.file} (comments kept).` : "Changes live in memory only (no config file).");
  }

  save.addEventListener("click", async () => {
    for (const e of main.querySelectorAll(".field-error")) e.textContent = "";
    problems.replaceChildren();
    // renumber so error keys match what is sent (an event may have been removed)
    [...list.querySelectorAll(".event-form")].forEach((box, i) => {
      box.dataset.index = i;
      for (const err of box.querySelectorAll(".field-error")) err.dataset.key = err.dataset.key.replace(/events\[\d+\]/, `events[${i}]`);
    });
    try {
      const r = await api("/api/settings", {method: "POST", body: collect()});
      show(r);
      toast(r.saved_to ? `applied and saved to ${r.saved_to}` : `${r.status} (not saved: no config file)`);
    } catch (e) {
      const found = (e.data && e.data.problems) || [];
      for (const p of found) {
        // a key inside a field (events[0].prompts[1]) belongs to that field
        const field = p.key.match(/^(events\[\d+\]\.\w+|\w+\.\w+)/);
        const target = field && main.querySelector(`.field-error[data-key="${field[1]}"]`);
        if (target) target.textContent = target.textContent ? `${target.textContent}; ${p.message}` : p.message;
        else problems.append(el("li", {}, p.key ? `${p.key}: ${p.message}` : p.message));
      }
      toast(found.length ? "not applied: see the marked fields" : e.message);
    }
  });
  addBtn.addEventListener("click", () => list.append(eventForm({label: "", prompts: [], negatives: [], threshold: 0.5, examples: []},
                                                               list.children.length)));
  api("/api/settings").then(show).catch(e => toast(e.message));
}
