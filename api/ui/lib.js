// Shared helpers of the dashboard: the API client (session cookie + CSRF header), DOM
// building without innerHTML (every string a CPE or a user sent is text, never markup),
// formatting, tables, pagination, confirmation and notices.

export const session = { user: null, csrf: null };

export class ApiError extends Error {
  constructor(status, body, retryAfter) {
    super(errorText(body) || `HTTP ${status}`);
    this.status = status;
    this.body = body;
    this.retryAfter = retryAfter;
  }
}

// A DRF-style error body as one line: {"detail": "..."} or {"field": ["msg", ...]}.
export function errorText(body) {
  if (body == null) return "";
  if (typeof body === "string") return body;
  if (body.detail) return String(body.detail);
  return Object.entries(body)
    .map(([field, msgs]) => `${field}: ${[].concat(msgs).map(m => typeof m === "string" ? m : JSON.stringify(m)).join(" ")}`)
    .join("; ");
}

// What the current page asked to be closed when the page changes (event streams, timers).
const cleanups = [];
export function onLeave(callback) { cleanups.push(callback); }
export function leave() { for (const cleanup of cleanups.splice(0)) cleanup(); }

// Render the current page again (after a write it shows, or news from the event stream).
let renderer = () => {};
export function setRenderer(callback) { renderer = callback; }
export function reload() { return renderer(); }

let onUnauthorized = () => {};
export function whenUnauthorized(callback) { onUnauthorized = callback; }

// fetch() of /api/v1<path>: JSON in and out; writes carry the CSRF token; a 401 (the
// session ended) sends the page back to the login form.
export async function api(path, { method = "GET", body, query } = {}) {
  const headers = { Accept: "application/json" };
  let payload = body;
  if (body !== undefined && !(body instanceof FormData)) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  if (method !== "GET" && session.csrf) headers["X-CSRFToken"] = session.csrf;
  const url = "/api/v1" + path + (query ? "?" + query.toString() : "");
  const response = await fetch(url, { method, headers, body: payload, credentials: "same-origin" });
  const text = await response.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch { data = text; }
  }
  if (!response.ok) {
    if (response.status === 401 && !path.startsWith("/auth/login")) onUnauthorized();
    throw new ApiError(response.status, data, response.headers.get("Retry-After"));
  }
  return data;
}

export const can = {
  operate: () => session.user && ["operator", "admin"].includes(session.user.role),
  admin: () => session.user && session.user.role === "admin",
};

// h("a", {href: "#/x", class: "c", onclick: f}, "text", child...): an element.
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (key === "class") {
      el.className = value;
    } else if (key in el && typeof value !== "string") {
      el[key] = value;
    } else {
      el.setAttribute(key, value === true ? "" : String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function clear(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

const SVG = "http://www.w3.org/2000/svg";
export function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) el.setAttribute(key, String(value));
  append(el, children);
  return el;
}

// --- formatting --------------------------------------------------------------------------

export function when(iso) {
  if (!iso) return "—";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return iso;
  return date.toLocaleString();
}

export function ago(iso) {
  if (!iso) return "never";
  const seconds = Math.round((Date.now() - new Date(iso).getTime()) / 1000);
  if (Number.isNaN(seconds)) return iso;
  if (seconds < 60) return `${Math.max(seconds, 0)} s ago`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.round(seconds / 3600)} h ago`;
  return `${Math.round(seconds / 86400)} d ago`;
}

export function time(iso) {
  return h("time", { datetime: iso || "", title: when(iso) }, ago(iso));
}

export function bytes(n) {
  if (n == null) return "—";
  const units = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}

export function statusBadge(status) {
  const cls = status === "Up" ? "badge up" : status === "Down" ? "badge down" : "badge";
  return h("span", { class: cls }, status || "—");
}

export function stateBadge(state) {
  return h("span", { class: `badge state-${state}` }, state);
}

// --- widgets -----------------------------------------------------------------------------

// columns: [{label, cell: row => node|string, sort?: row => value}]; rows: objects.
export function table(columns, rows, { caption, empty = "Nothing here yet.", rowId } = {}) {
  const head = h("tr", {}, columns.map(c => h("th", { scope: "col", ...(c.sortState ? { "aria-sort": c.sortState } : {}) }, c.label)));
  const body = h("tbody", {});
  for (const row of rows) {
    body.append(h("tr", rowId ? { "data-id": rowId(row) } : {}, columns.map(c => h("td", { "data-label": labelText(c.label) }, c.cell(row)))));
  }
  if (!rows.length) body.append(h("tr", {}, h("td", { colspan: columns.length, class: "muted" }, empty)));
  return h("div", { class: "table-wrap" },
    h("table", {}, caption ? h("caption", {}, caption) : null, h("thead", {}, head), body));
}

function labelText(label) {
  return typeof label === "string" ? label : label.textContent.replace(/ [▲▼]$/, "");
}

// DRF pagination controls for a page of `count` results at `offset`.
export function pager(page, offset, limit, go) {
  const last = Math.min(offset + page.results.length, page.count);
  return h("nav", { class: "pager", "aria-label": "Pages" },
    h("span", {}, page.count ? `${offset + 1}–${last} of ${page.count}` : "0 results"),
    h("button", { type: "button", disabled: !page.previous, onclick: () => go(Math.max(offset - limit, 0)) }, "‹ Previous"),
    h("button", { type: "button", disabled: !page.next, onclick: () => go(offset + limit) }, "Next ›"));
}

export function field(label, input, hint) {
  const id = input.id || `f-${Math.random().toString(36).slice(2, 9)}`;
  input.id = id;
  return h("div", { class: "field" }, h("label", { for: id }, label), input, hint ? h("small", { class: "muted" }, hint) : null);
}

export function select(name, options, value) {
  return h("select", { name },
    options.map(([v, label]) => h("option", { value: v, selected: String(v) === String(value ?? "") }, label)));
}

export function confirm(message) {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-text").textContent = message;
  dialog.returnValue = "";
  dialog.showModal();
  document.getElementById("confirm-ok").focus();
  return new Promise(resolve => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
  });
}

export function notify(message, kind = "ok") {
  const box = h("div", { class: `toast ${kind}`, role: kind === "error" ? "alert" : "status" }, message);
  document.getElementById("toasts").append(box);
  setTimeout(() => box.remove(), kind === "error" ? 8000 : 4000);
}

// Run an API write from a form or a button: errors are shown, not thrown.
export async function attempt(action, success) {
  try {
    const result = await action();
    if (success) notify(success);
    return result;
  } catch (err) {
    notify(err.message || String(err), "error");
    return undefined;
  }
}

export function section(title, ...children) {
  return h("section", { class: "card" }, h("h2", {}, title), children);
}

export function json(value) {
  return h("pre", { class: "json" }, JSON.stringify(value, null, 2));
}

// Every page of a list (for small admin lists: organizations, types) up to `max` rows.
export async function all(path, max = 500) {
  const rows = [];
  for (let offset = 0; offset < max; offset += 100) {
    const page = await api(path, { query: new URLSearchParams({ limit: 100, offset }) });
    rows.push(...page.results);
    if (!page.next) break;
  }
  return rows;
}
