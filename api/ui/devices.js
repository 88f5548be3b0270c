// The device list: every filter of GET /inventory_device/, paginated, sorted by the API
// (?ordering=), live through the event stream; select devices to tag them, queue an
// operation on them or start a campaign over them, or start one from the filter.
import {
  all, api, attempt, can, confirm, field, h, notify, onLeave, pager, select, statusBadge, table,
  time,
} from "./lib.js";

const LIMIT = 50;
const TEXT_FILTERS = [
  ["q", "Search", "Serial, name, identifier or description"],
  ["product_class", "Product class"],
  ["software_version", "Software version"],
  ["hardware_version", "Hardware version"],
  ["manufacturer", "Manufacturer"],
  ["tag", "Tags", "Comma-separated; every one must match"],
];
const OPERATIONS = [["reboot", "Reboot"], ["refresh", "Refresh parameters"], ["factory_reset", "Factory reset"]];

// The API's query for the filters in the page's own query (#/devices?status=Up&tag=a,b).
export function apiFilters(query) {
  const out = new URLSearchParams();
  for (const [key, value] of query) {
    if (!value || key === "offset" || key === "sort") continue;
    if (key === "tag") for (const tag of value.split(",").map(t => t.trim()).filter(Boolean)) out.append("tag", tag);
    else if (key === "param_path") continue;
    else out.append(key, value);
  }
  const path = query.get("param_path");
  if (path && query.has("param_value")) {
    out.delete("param_value");
    out.delete("param_match");
    out.append(`param.${path}${query.get("param_match") === "prefix" ? "__startswith" : ""}`, query.get("param_value"));
  }
  return out;
}

// The same filters as the JSON object of POST /tags/ and of a campaign.
export function filterObject(query) {
  const out = {};
  for (const [key, value] of apiFilters(query)) {
    if (key === "tag") (out.tag = out.tag || []).push(value);
    else out[key] = value;
  }
  return out;
}

export async function devicesPage({ query }) {
  const [organizations, types] = await Promise.all([all("/organization/"), all("/device_type/")]);
  const offset = Number(query.get("offset") || 0);
  const sort = query.get("sort") || "";
  const apiQuery = apiFilters(query);
  apiQuery.set("limit", LIMIT);
  if (offset) apiQuery.set("offset", offset);
  if (sort) apiQuery.set("ordering", sort);

  const root = h("div", { class: "page" }, h("h1", {}, "Devices"));
  root.append(filterForm(query, organizations, types));
  const selected = new Set();
  const columns = [
    ...(can.operate() ? [{ label: h("span", { class: "sr-only" }, "Select"), cell: d => h("input", {
      type: "checkbox", "aria-label": `Select ${d.serial_number}`, checked: selected.has(d.id),
      onchange: e => { e.target.checked ? selected.add(d.id) : selected.delete(d.id); bulk.update(); },
    }) }] : []),
    column("Serial number", "serial_number", sort, query, d => h("a", { href: `#/devices/${d.id}` }, d.serial_number)),
    column("Name", "name", sort, query, d => d.name || "—"),
    column("Product class", "product_class", sort, query, d => d.product_class || "—"),
    column("Software", "software_version", sort, query, d => d.software_version || "—"),
    column("Status", "status", sort, query, d => h("span", { class: "status-cell" }, statusBadge(d.status))),
    column("Last contact", "last_connection", sort, query, d => h("span", { class: "contact-cell" }, time(d.last_connection))),
    { label: "Tags", cell: d => h("span", { class: "tags" }, (d.tags || []).map(t => h("span", { class: "tag" }, t))) },
  ];
  const bulk = bulkBar(selected, query, () => draw());
  if (can.operate()) root.append(bulk.element);
  const listBox = h("div", { class: "device-list" });
  root.append(listBox);
  const shown = new Set();
  // The page of devices, read again in place when the event stream tells of new ones.
  const draw = async () => {
    const page = await api("/inventory_device/", { query: apiQuery });
    shown.clear();
    for (const d of page.results) shown.add(d.id);
    for (const id of [...selected]) if (!shown.has(id)) selected.delete(id);
    bulk.update();
    const focused = focusedIn(listBox);
    listBox.replaceChildren(
      table(columns, page.results, { caption: `${page.count} devices`, empty: "No device matches.", rowId: d => d.id }),
      pager(page, offset, LIMIT, next => go(query, { offset: next || null })));
    refocus(listBox, focused);
  };
  await draw();
  live(listBox, shown, draw);
  return root;
}

// A live redraw replaces the table: the control that had the keyboard focus in it gets it
// back (same row, same link, checkbox or button), or a keyboard user would lose their place.
const focusLabel = el => el.getAttribute("href") || el.getAttribute("aria-label") || el.textContent;

function focusedIn(root) {
  const el = document.activeElement;
  if (!el || el === root || !root.contains(el)) return null;
  return { row: el.closest("tr[data-id]")?.dataset.id, tag: el.tagName, label: focusLabel(el) };
}

function refocus(root, focused) {
  if (!focused) return;
  const scope = focused.row ? root.querySelector(`tr[data-id="${focused.row}"]`) : root;
  const match = [...(scope?.querySelectorAll(focused.tag) || [])].find(el => focusLabel(el) === focused.label);
  match?.focus();
}

function column(label, key, sort, query, cell) {
  const state = sort === key ? "ascending" : sort === `-${key}` ? "descending" : "none";
  const next = sort === key ? `-${key}` : key;
  const button = h("button", { type: "button", class: "sort", title: `Sort by ${label.toLowerCase()}`,
    onclick: () => go(query, { sort: next, offset: null }) }, label, state === "none" ? "" : state === "ascending" ? " ▲" : " ▼");
  return { label: button, cell, sortState: state };
}

function go(query, changes) {
  const next = new URLSearchParams(query);
  for (const [key, value] of Object.entries(changes)) {
    if (value === null || value === "") next.delete(key); else next.set(key, value);
  }
  location.hash = `#/devices?${next}`;
}

function filterForm(query, organizations, types) {
  const inputs = TEXT_FILTERS.map(([name, label, hint]) =>
    field(label, h("input", { name, value: query.get(name) || "", type: name === "q" ? "search" : "text" }), hint));
  const status = field("Status", select("status", [["", "Any"], ["1", "Up"], ["0", "Down"]], query.get("status")));
  const org = field("Organization", select("organization", [["", "Any"], ...organizations.map(o => [o.id, o.name])], query.get("organization")));
  const type = field("Device type", select("type", [["", "Any"], ...types.map(t => [t.id, t.name])], query.get("type")));
  const paramPath = field("Parameter", h("input", { name: "param_path", value: query.get("param_path") || "", placeholder: "Device.DeviceInfo.ModelName" }));
  const paramValue = field("Parameter value", h("input", { name: "param_value", value: query.get("param_value") || "" }));
  const paramMatch = field("Match", select("param_match", [["exact", "is"], ["prefix", "starts with"]], query.get("param_match")));
  const form = h("form", { class: "filters card", role: "search", "aria-label": "Filter devices" },
    h("div", { class: "filter-grid" }, inputs, status, org, type, paramPath, paramMatch, paramValue),
    h("div", { class: "actions" },
      h("button", { type: "submit", class: "primary" }, "Filter"),
      h("button", { type: "button", onclick: () => { location.hash = "#/devices"; } }, "Clear")));
  form.addEventListener("submit", event => {
    event.preventDefault();
    const next = new URLSearchParams();
    for (const [key, value] of new FormData(form)) if (value && !(key === "param_match" && value === "exact")) next.set(key, value);
    if (!next.get("param_path")) { next.delete("param_value"); next.delete("param_match"); }
    if (query.get("sort")) next.set("sort", query.get("sort"));
    location.hash = `#/devices?${next}`;
  });
  return form;
}

function bulkBar(selected, query, redraw) {
  const count = h("span", {}, "0 selected");
  const tagInput = h("input", { name: "bulk_tag", placeholder: "tag", "aria-label": "Tag to add" });
  const operation = select("bulk_operation", [["", "Operation…"], ...OPERATIONS]);
  operation.setAttribute("aria-label", "Operation to queue");
  const buttons = [];
  const button = (label, onclick) => { const b = h("button", { type: "button", onclick }, label); buttons.push(b); return b; };
  const element = h("div", { class: "bulk card", role: "group", "aria-label": "Selected devices" },
    count,
    tagInput, button("Add tag", async () => {
      const tag = tagInput.value.trim();
      if (!tag) { notify("Type a tag first.", "error"); return; }
      const done = await attempt(() => Promise.all([...selected].map(id => api(`/inventory_device/${id}/tags/`, { method: "POST", body: { tags: [tag] } }))));
      // The list is read again in place: the filter form keeps whatever is being typed in it.
      if (done) { await redraw().catch(() => {}); notify(`Tagged ${selected.size} devices "${tag}".`); }
    }),
    operation, button("Queue", async () => {
      const kind = operation.value;
      if (!kind) { notify("Choose an operation first.", "error"); return; }
      const label = OPERATIONS.find(o => o[0] === kind)[1];
      if (!(await confirm(`${label}: ${selected.size} devices?`))) return;
      await attempt(() => Promise.all([...selected].map(id => api(`/inventory_device/${id}/tasks/`, { method: "POST", body: { kind } }))),
        `${label} queued for ${selected.size} devices.`);
    }),
    button("Campaign over these…", () => campaignFrom({ id: [...selected] })),
    h("button", { type: "button", onclick: () => campaignFrom(filterObject(query)) }, "Campaign from this filter…"));
  const update = () => {
    count.textContent = `${selected.size} selected`;
    for (const b of buttons) b.disabled = selected.size === 0;
  };
  update();
  return { element, update };
}

function campaignFrom(filter) {
  location.hash = `#/campaigns?${new URLSearchParams({ filter: JSON.stringify(filter) })}`;
}

// Live status: the event stream tells of status changes and new devices; a row whose device
// changed is read again (the stream's detail is not the list's representation), and new
// devices read the page again (at most once a second). The stream stays open meanwhile, so
// no registration falls between two reads.
function live(listBox, shown, draw) {
  if (!window.EventSource) return;
  const stream = new EventSource("/api/v1/events/?types=device.status_changed,device.informed,device.registered");
  const refresh = async id => {
    try {
      const device = await api(`/inventory_device/${id}/`);
      const row = listBox.querySelector(`tr[data-id="${id}"]`);
      row?.querySelector(".status-cell")?.replaceChildren(statusBadge(device.status));
      row?.querySelector(".contact-cell")?.replaceChildren(time(device.last_connection));
    } catch { /* gone or out of scope */ }
  };
  const onDevice = event => {
    const data = JSON.parse(event.data);
    if (shown.has(data.device)) refresh(data.device);
  };
  stream.addEventListener("device.status_changed", onDevice);
  stream.addEventListener("device.informed", onDevice);
  // Opened (or reopened after a drop): what registered before it is read once.
  stream.addEventListener("open", () => draw().catch(() => {}));
  let pending = null;
  stream.addEventListener("device.registered", () => {
    pending = pending || setTimeout(() => { pending = null; draw().catch(() => {}); }, 1000);
  });
  onLeave(() => { stream.close(); clearTimeout(pending); });
}
