// Talking to the daemon: JSON in and out, the CSRF token on every change, a toast for failures.
export const state = {session: null};

export async function loadSession() {
  const res = await fetch("/api/session", {credentials: "same-origin"});
  if (res.status === 401) { location.href = "/login"; return null; }
  state.session = await res.json();
  return state.session;
}

export class ApiError extends Error {
  constructor(status, data) { super(data.error || `HTTP ${status}`); this.status = status; this.data = data; }
}

async function send(path, method, type, body) {
  const headers = {};
  if (method !== "GET") {
    headers["Content-Type"] = type;
    headers["X-CSRF-Token"] = state.session ? state.session.csrf : "";
  }
  const res = await fetch(path, {method, headers, credentials: "same-origin", body});
  if (res.status === 401) { location.href = "/login"; throw new ApiError(401, {error: "log in"}); }
  const data = await res.json().catch(() => ({}));
  if (!res.ok) throw new ApiError(res.status, data);
  return data;
}

export function api(path, {method = "GET", body} = {}) {
  return send(path, method, "application/json", body === undefined ? undefined : JSON.stringify(body));
}

// A file as the raw body (the server's upload paths take application/octet-stream, with the CSRF token).
export function upload(path, file) { return send(path, "POST", "application/octet-stream", file); }

export function isAdmin() { return state.session && state.session.role === "admin"; }

export function toast(text) {
  const el = document.getElementById("toast");
  el.textContent = text;
  el.classList.remove("hidden");
  clearTimeout(el._timer);
  el._timer = setTimeout(() => el.classList.add("hidden"), 4000);
}

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null && v !== false) node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

export function decode(b64) {
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

export function fmtTime(iso) { return new Date(iso).toLocaleString(); }
export function fmtScore(v) { return v === null || v === undefined ? "–" : Number(v).toFixed(3); }
