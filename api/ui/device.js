// One device: summary, operations, the parameter tree (edit a value, refresh a subtree),
// tasks, history, session transcripts and backups. Live through the event stream.
import {
  all, api, attempt, bytes, can, clear, confirm, field, h, json, notify, onLeave, pager, reload, section,
  select, stateBadge, statusBadge, table, time, when,
} from "./lib.js";

const MAX_PARAMETERS = 5000; // the browser holds at most this many of a device's tree
const TASK_WAIT = 30; // seconds a write waits for the CPE's answer before showing "queued"
const TABS = [["parameters", "Parameters"], ["tasks", "Tasks"], ["history", "History"], ["sessions", "Sessions"], ["backups", "Backups"]];

export async function devicePage({ params: [id], query }) {
  const device = await api(`/inventory_device/${id}/`);
  const tab = TABS.some(([t]) => t === query.get("tab")) ? query.get("tab") : "parameters";
  const summary = h("div", { class: "summary-wrap" });
  const panel = h("div", { id: "tab-panel", role: "tabpanel", tabindex: "0" });
  const root = h("div", { class: "page" },
    h("p", { class: "crumbs" }, h("a", { href: "#/devices" }, "Devices"), " / "),
    h("h1", {}, device.serial_number, " ", h("span", { id: "device-status" }, statusBadge(device.status))),
    summary,
    can.operate() ? operations(device) : null,
    tabs(id, tab), panel);
  renderSummary(summary, device);
  const loaders = { parameters: parametersTab, tasks: tasksTab, history: historyTab, sessions: sessionsTab, backups: backupsTab };
  await loaders[tab](panel, device, query);

  // Status, contact and task changes of this device: summary and the open tab again.
  const stream = window.EventSource ? new EventSource("/api/v1/events/") : null;
  let pending = null;
  const refresh = () => {
    pending = null;
    api(`/inventory_device/${id}/`).then(d => {
      renderSummary(summary, d);
      root.querySelector("#device-status").replaceChildren(statusBadge(d.status));
    }).catch(() => {});
    if (tab === "tasks" || tab === "history") loaders[tab](panel, device, query).catch(() => {});
  };
  for (const type of ["device.status_changed", "device.informed", "task.queued", "task.done", "task.failed"]) {
    stream?.addEventListener(type, event => {
      if (JSON.parse(event.data).device === Number(id)) pending = pending || setTimeout(refresh, 500);
    });
  }
  onLeave(() => { stream?.close(); clearTimeout(pending); });
  return root;
}

function tabs(id, current) {
  return h("nav", { class: "tabs", "aria-label": "Device sections" }, TABS.map(([name, label]) =>
    h("a", { href: `#/devices/${id}?tab=${name}`, "aria-current": name === current ? "page" : null }, label)));
}

function renderSummary(el, d) {
  const rows = [
    ["Status", h("span", {}, statusBadge(d.status), " since ", time(d.status_change))],
    ["Last contact", time(d.last_connection)],
    ["Address", d.address || "—"],
    ["Manufacturer", d.manufacturer || "—"],
    ["Product class", d.product_class || "—"],
    ["Hardware version", d.hardware_version || "—"],
    ["Software version", d.software_version || "—"],
    ["Unique identifier", d.unique_identifier || "—"],
    ["Name", d.name || "—"],
    ["Device type", d.type_short_name || "—"],
    ["Location", d.location_name || "—"],
    ["Coordinates", d.latitude != null && d.longitude != null ? `${d.latitude}, ${d.longitude}` : "—"],
    ["Inform interval", d.update_frequency ? `${d.update_frequency} s` : "—"],
    ["Pending work", (d.pending_settings || []).join(", ") || "none"],
    ["Firmware image", d.firmware_image ? `#${d.firmware_image}${d.firmware_image_is_pending ? " (upgrade pending)" : ""}` : "—"],
    ["Tags", tagEditor(d)],
  ];
  clear(el, h("section", { class: "card summary", "aria-label": "Summary" },
    h("dl", {}, rows.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]))));
}

function tagEditor(d) {
  const wrap = h("span", { class: "tags" });
  const draw = tags => {
    clear(wrap, tags.map(t => h("span", { class: "tag" }, t, can.operate()
      ? h("button", { type: "button", class: "link", "aria-label": `Remove tag ${t}`, onclick: async () => {
        const ok = await attempt(() => api(`/inventory_device/${d.id}/tags/${encodeURIComponent(t)}/`, { method: "DELETE" }));
        if (ok !== undefined) draw(tags.filter(x => x !== t));
      } }, "×") : null)));
    if (can.operate()) {
      const input = h("input", { "aria-label": "New tag", placeholder: "add tag", size: 10 });
      const form = h("form", { class: "inline" }, input, h("button", { type: "submit" }, "Add"));
      form.addEventListener("submit", async e => {
        e.preventDefault();
        const tag = input.value.trim();
        if (!tag) return;
        const ok = await attempt(() => api(`/inventory_device/${d.id}/tags/`, { method: "POST", body: { tags: [tag] } }));
        if (ok !== undefined) draw([...new Set([...tags, tag])]);
      });
      wrap.append(form);
    }
  };
  draw(d.tags || []);
  return wrap;
}

// Queue a task and wait up to TASK_WAIT seconds for its end: the task as it then is.
export async function runTask(deviceId, body) {
  const query = new URLSearchParams({ timeout: TASK_WAIT });
  return api(`/inventory_device/${deviceId}/tasks/`, { method: "POST", body, query });
}

function taskOutcome(task, what) {
  if (task.state === "done") notify(`${what}: done.`);
  else if (task.state === "failed") notify(`${what} failed: ${task.fault_code || ""} ${task.fault_string || ""}`.trim(), "error");
  else notify(`${what}: queued (task ${task.id}, ${task.state}); the device has not answered yet.`);
}

function operations(device) {
  const simple = [
    ["reboot", "Reboot", "Reboot this device?"],
    ["factory_reset", "Factory reset", "Factory-reset this device? Its configuration is erased."],
    ["refresh", "Refresh all parameters", null],
  ];
  const buttons = simple.map(([kind, label, question]) => h("button", { type: "button", "data-op": kind, onclick: async () => {
    if (question && !(await confirm(question))) return;
    const task = await attempt(() => runTask(device.id, { kind }));
    if (!task) return;
    if (task.state === "done" && kind === "refresh") await reload();
    taskOutcome(task, label);
  } }, label));

  const firmware = select("firmware_image", [["", "Firmware image…"]]);
  firmware.setAttribute("aria-label", "Firmware image");
  all("/firmware_image/").then(images => firmware.append(...images.map(i =>
    h("option", { value: i.id }, `${i.name || i.filename || "image"} ${i.version || ""} (#${i.id})`)))).catch(() => {});
  const upgrade = h("button", { type: "button", onclick: async () => {
    if (!firmware.value) { notify("Choose a firmware image first.", "error"); return; }
    const label = firmware.selectedOptions[0].textContent;
    if (!(await confirm(`Upgrade ${device.serial_number} to ${label}?`))) return;
    await attempt(() => api(`/inventory_device/${device.id}/`, { method: "PATCH", body: { firmware_image: Number(firmware.value), firmware_image_is_pending: true } }),
      "Firmware upgrade queued; follow it under Tasks.");
  } }, "Upgrade firmware");

  const backup = h("button", { type: "button", onclick: async () => {
    await attempt(() => api(`/inventory_device/${device.id}/backups/`, { method: "POST", body: {} }), "Backup queued; see Backups.");
  } }, "Back up configuration");

  const host = h("input", { name: "ping_host", placeholder: "host to ping", "aria-label": "Host to ping", size: 16 });
  const ping = h("form", { class: "inline" }, host, h("button", { type: "submit" }, "Ping"));
  ping.addEventListener("submit", async e => {
    e.preventDefault();
    if (!host.value.trim()) return;
    const task = await attempt(() => runTask(device.id, { kind: "diagnostics", test: "ip_ping", host: host.value.trim() }));
    if (task) taskOutcome(task, "Ping");
  });

  const debug = h("label", { class: "inline" }, h("input", { type: "checkbox", checked: device.debug, onchange: async e => {
    const ok = await attempt(() => api(`/inventory_device/${device.id}/`, { method: "PATCH", body: { debug: e.target.checked } }),
      e.target.checked ? "Session transcripts are kept from the next session." : "Transcripts off.");
    if (ok === undefined) e.target.checked = !e.target.checked;
  } }), " Keep session transcripts");

  return h("section", { class: "card ops", "aria-label": "Operations" },
    h("h2", {}, "Operations"),
    h("div", { class: "actions" }, buttons, firmware, upgrade, backup, ping, debug));
}

// --- parameters ----------------------------------------------------------------------------

async function loadParameters(deviceId, prefix) {
  const query = p => new URLSearchParams({ limit: 100, offset: p * 100, ...(prefix ? { path: prefix } : {}) });
  const first = await api(`/inventory_device/${deviceId}/parameters/`, { query: query(0) });
  const pages = Math.min(Math.ceil(first.count / 100), MAX_PARAMETERS / 100);
  const rest = [];
  for (let p = 1; p < pages; p += 6) {
    const batch = [];
    for (let q = p; q < Math.min(p + 6, pages); q++) batch.push(api(`/inventory_device/${deviceId}/parameters/`, { query: query(q) }));
    rest.push(...(await Promise.all(batch)));
  }
  return { count: first.count, results: [first, ...rest].flatMap(page => page.results) };
}

// The flat path list as a tree: {name, path, param?, children: Map}.
function buildTree(parameters) {
  const root = { name: "", path: "", children: new Map() };
  for (const p of parameters) {
    const parts = p.path.replace(/\.$/, "").split(".");
    let node = root;
    parts.forEach((part, i) => {
      if (!node.children.has(part)) {
        const path = parts.slice(0, i + 1).join(".") + (i < parts.length - 1 || p.path.endsWith(".") ? "." : "");
        node.children.set(part, { name: part, path, children: new Map() });
      }
      node = node.children.get(part);
    });
    node.param = p;
  }
  return root;
}

async function parametersTab(panel, device, query) {
  const prefix = query.get("path") || "";
  const data = await loadParameters(device.id, prefix);
  const filter = h("input", { name: "path", value: prefix, placeholder: "Device.WiFi.", "aria-label": "Path prefix" });
  const form = h("form", { class: "inline", role: "search" }, filter, h("button", { type: "submit" }, "Show"));
  form.addEventListener("submit", e => {
    e.preventDefault();
    location.hash = `#/devices/${device.id}?tab=parameters${filter.value ? `&path=${encodeURIComponent(filter.value)}` : ""}`;
  });
  const note = data.count > data.results.length ? h("p", { class: "muted" }, `Showing ${data.results.length} of ${data.count}; narrow with a path prefix.`) : null;
  const tree = h("ul", { class: "tree", "aria-label": "Parameter tree" });
  const reloadTree = async () => parametersTab(panel, device, query);
  drawChildren(tree, buildTree(data.results), { device, reloadTree, prefix }, 0);
  clear(panel, h("div", { class: "card" }, h("h2", {}, "Parameters"), form, note,
    data.results.length ? tree : h("p", { class: "muted" }, "No parameters stored yet: refresh the device.")));
}

// Branches open: the first level, and the way down to the prefix asked for.
function drawChildren(list, node, view, depth) {
  const { device, reloadTree, prefix } = view;
  const children = [...node.children.values()].sort((a, b) => a.name.localeCompare(b.name, undefined, { numeric: true }));
  for (const child of children) {
    if (child.children.size) {
      const inner = h("ul", {});
      const details = h("details", { open: depth < 1 || prefix.startsWith(child.path) },
        h("summary", {}, h("span", { class: "node" }, child.name), can.operate()
          ? h("button", { type: "button", class: "link small", "aria-label": `Refresh ${child.path}`, onclick: async e => {
            e.preventDefault();
            const task = await attempt(() => runTask(device.id, { kind: "refresh", parameter_path: child.path }));
            if (!task) return;
            if (task.state === "done") await reloadTree();
            taskOutcome(task, `Refresh of ${child.path}`);
          } }, "refresh") : null),
        inner);
      let drawn = false;
      const draw = () => { if (!drawn && details.open) { drawn = true; drawChildren(inner, child, view, depth + 1); } };
      details.addEventListener("toggle", draw);
      draw();
      list.append(h("li", {}, details));
    } else {
      list.append(h("li", { class: "leaf" }, leaf(child, device, reloadTree)));
    }
  }
}

function leaf(node, device, reloadTree) {
  const p = node.param || { path: node.path };
  const value = h("span", { class: "value" }, p.value ?? "");
  const row = h("div", { class: "param", "data-path": p.path },
    h("span", { class: "node", title: p.path }, node.name), value,
    h("span", { class: "muted type" }, (p.type || "").replace(/^xsd:/, "")),
    h("span", { class: "muted" }, p.writable ? "writable" : p.writable === false ? "read-only" : ""),
    h("span", { class: "muted" }, p.updated ? time(p.updated) : ""));
  if (p.writable && can.operate()) {
    row.append(h("button", { type: "button", class: "link small", "aria-label": `Edit ${p.path}`, onclick: () => editValue(row, value, p, device, reloadTree) }, "edit"));
  }
  return row;
}

function editValue(row, valueEl, p, device, reloadTree) {
  if (row.querySelector("form")) return;
  const input = p.type === "xsd:boolean"
    ? select("value", [["true", "true"], ["false", "false"]], ["1", "true"].includes(p.value) ? "true" : "false")
    : h("input", { name: "value", value: p.value ?? "", size: 24 });
  input.setAttribute("aria-label", `New value of ${p.path}`);
  const status = h("span", { class: "muted", role: "status" });
  const form = h("form", { class: "inline edit" }, input, h("button", { type: "submit", class: "primary" }, "Set"),
    h("button", { type: "button", onclick: () => form.remove() }, "Cancel"), status);
  form.addEventListener("submit", async e => {
    e.preventDefault();
    status.textContent = "Sending…";
    const body = { kind: "set_parameter_values", parameters: [{ name: p.path, value: input.value, ...(p.type ? { type: p.type } : {}) }] };
    const task = await attempt(() => runTask(device.id, body));
    if (!task) { status.textContent = ""; return; }
    if (task.state === "done") {
      const fresh = await api(`/inventory_device/${device.id}/parameters/`, { query: new URLSearchParams({ path: p.path, limit: 1 }) });
      const stored = fresh.results.find(r => r.path === p.path);
      valueEl.textContent = stored ? stored.value ?? "" : input.value;
      p.value = valueEl.textContent;
      form.remove();
      notify(`${p.path} = ${valueEl.textContent}`);
    } else {
      status.textContent = task.state === "failed" ? `Failed: ${task.fault_code || ""} ${task.fault_string || ""}` : `Queued as task ${task.id}`;
    }
  });
  row.append(form);
  input.focus();
}

// --- tasks, history, sessions, backups -----------------------------------------------------

async function pagedTab(panel, device, query, { path, title, columns, tab, empty }) {
  const offset = Number(query.get("offset") || 0);
  const page = await api(`/inventory_device/${device.id}/${path}/`, { query: new URLSearchParams({ limit: 20, ...(offset ? { offset } : {}) }) });
  clear(panel, section(title, table(columns, page.results, { empty }),
    pager(page, offset, 20, next => { location.hash = `#/devices/${device.id}?tab=${tab}${next ? `&offset=${next}` : ""}`; })));
}

function tasksTab(panel, device, query) {
  const reloadTab = () => tasksTab(panel, device, query);
  return pagedTab(panel, device, query, {
    path: "tasks", title: "Tasks", tab: "tasks", empty: "No tasks.",
    columns: [
      { label: "Id", cell: t => String(t.id) },
      { label: "Kind", cell: t => t.kind },
      { label: "State", cell: t => stateBadge(t.state) },
      { label: "Queued", cell: t => time(t.created) },
      { label: "Finished", cell: t => (t.finished ? time(t.finished) : "—") },
      { label: "By", cell: t => t.actor },
      { label: "Fault", cell: t => (t.fault_code ? `${t.fault_code} ${t.fault_string || ""}` : "—") },
      { label: "Result", cell: t => (t.result ? h("details", {}, h("summary", {}, "show"), json(t.result)) : "—") },
      { label: "", cell: t => taskActions(device, t, reloadTab) },
    ],
  });
}

function taskActions(device, task, reloadTab) {
  if (!can.operate()) return "";
  if (task.state === "pending") {
    return h("button", { type: "button", class: "link", onclick: async () => {
      if (!(await confirm(`Cancel task ${task.id} (${task.kind})?`))) return;
      if (await attempt(() => api(`/inventory_device/${device.id}/tasks/${task.id}/`, { method: "DELETE" }), "Cancelled.") !== undefined) reloadTab();
    } }, "cancel");
  }
  if (task.state === "failed") {
    return h("button", { type: "button", class: "link", onclick: async () => {
      if (await attempt(() => api(`/inventory_device/${device.id}/tasks/${task.id}/retry/`, { method: "POST" }), "Queued again.") !== undefined) reloadTab();
    } }, "retry");
  }
  return "";
}

function historyTab(panel, device, query) {
  return pagedTab(panel, device, query, {
    path: "history", title: "History", tab: "history", empty: "No history.",
    columns: [
      { label: "Time", cell: e => when(e.time) },
      { label: "By", cell: e => e.actor },
      { label: "What", cell: e => e.action },
      { label: "Detail", cell: e => h("code", { class: "detail" }, JSON.stringify(e.detail)) },
    ],
  });
}

function sessionsTab(panel, device, query) {
  return pagedTab(panel, device, query, {
    path: "sessions", title: "Session transcripts", tab: "sessions",
    empty: device.debug ? "No session since transcripts were switched on." : "Transcripts are kept only while \"Keep session transcripts\" is on.",
    columns: [
      { label: "Started", cell: s => when(s.started) },
      { label: "Transcript", cell: s => h("details", {}, h("summary", {}, "show"), h("pre", { class: "transcript" }, s.transcript)) },
    ],
  });
}

function backupsTab(panel, device, query) {
  const reloadTab = () => backupsTab(panel, device, query);
  return pagedTab(panel, device, query, {
    path: "backups", title: "Configuration backups", tab: "backups", empty: "No backups.",
    columns: [
      { label: "Id", cell: b => String(b.id) },
      { label: "Taken", cell: b => when(b.created) },
      { label: "Size", cell: b => bytes(b.size) },
      { label: "", cell: b => (can.operate() ? h("button", { type: "button", class: "link", onclick: async () => {
        if (!(await confirm(`Restore backup ${b.id} to ${device.serial_number}?`))) return;
        if (await attempt(() => api(`/inventory_device/${device.id}/backups/${b.id}/restore/`, { method: "POST", body: {} }), "Restore queued.") !== undefined) reloadTab();
      } }, "restore") : "") },
    ],
  });
}
