// Campaigns: one task over the devices a filter selects, in service windows, paced, with a
// stop rule. Create a draft (from the device list's filter), preview it, start it, watch its
// progress, pause, resume or cancel it.
import {
  all, api, attempt, can, confirm, field, h, onLeave, pager, reload, section, select, stateBadge,
  table, time, when,
} from "./lib.js";

const KINDS = [
  ["reboot", "Reboot", null],
  ["refresh", "Refresh parameters", null],
  ["firmware", "Firmware upgrade (download an image)", null],
  ["factory_reset", "Factory reset", null],
  ["custom", "Other task (JSON)", '{"kind": "set_parameter_values", "parameters": [{"name": "Device.ManagementServer.PeriodicInformInterval", "value": "3600"}]}'],
];
const POLL_MS = 3000;

export async function campaignsPage({ query }) {
  const offset = Number(query.get("offset") || 0);
  const page = await api("/campaign/", { query: new URLSearchParams({ limit: 20, ...(offset ? { offset } : {}) }) });
  const list = table([
    { label: "Id", cell: c => String(c.id) },
    { label: "Name", cell: c => h("a", { href: `#/campaigns/${c.id}` }, c.name) },
    { label: "Task", cell: c => c.task.kind },
    { label: "State", cell: c => stateBadge(c.state) },
    { label: "Progress", cell: c => progressText(c.progress) },
    { label: "Created", cell: c => time(c.created) },
  ], page.results, { empty: "No campaign yet." });
  return h("div", { class: "page" }, h("h1", {}, "Campaigns"),
    can.operate() ? await createForm(query) : null,
    section("All campaigns", list, pager(page, offset, 20, next => { location.hash = `#/campaigns${next ? `?offset=${next}` : ""}`; })));
}

function progressText(p) {
  const finished = (p.done || 0) + (p.failed || 0) + (p.cancelled || 0);
  return `${finished} of ${p.total} finished (${p.done || 0} done, ${p.failed || 0} failed)`;
}

async function createForm(query) {
  const images = await all("/firmware_image/");
  const name = h("input", { name: "name", required: true });
  const filter = h("textarea", { name: "filter", rows: 2 }, query.get("filter") || "{}");
  const kind = select("kind", KINDS.map(([k, label]) => [k, label]));
  const image = select("firmware_image", images.map(i => [i.id, `${i.name} ${i.version}`]));
  const custom = h("textarea", { name: "task", rows: 3 }, KINDS.find(k => k[0] === "custom")[2]);
  const imageField = field("Firmware image", image);
  const customField = field("Task (JSON)", custom, "As POST /inventory_device/{id}/tasks/ takes it");
  const showKind = () => {
    imageField.hidden = kind.value !== "firmware";
    customField.hidden = kind.value !== "custom";
  };
  kind.addEventListener("change", showKind);
  showKind();
  const start = h("input", { name: "window_start", type: "time" });
  const end = h("input", { name: "window_end", type: "time" });
  const zone = h("input", { name: "timezone", placeholder: "UTC", value: "UTC" });
  const rate = h("input", { name: "rate", type: "number", min: "0.01", step: "any", value: "60", required: true });
  const inFlight = h("input", { name: "max_in_flight", type: "number", min: "1", value: "10" });
  const maxFailures = h("input", { name: "max_failures", type: "number", min: "0" });
  const ratio = h("input", { name: "max_failure_ratio", type: "number", min: "0", max: "1", step: "any", placeholder: "0.05" });
  const sample = h("input", { name: "min_sample", type: "number", min: "1", placeholder: "20" });
  const error = h("p", { class: "error", role: "alert" });
  const form = h("form", { class: "card campaign-form", "aria-labelledby": "new-campaign" },
    h("h2", { id: "new-campaign" }, "New campaign"),
    h("div", { class: "filter-grid" },
      field("Name", name),
      field("Devices (filter)", filter, 'As the device list filters, e.g. {"product_class": "HG-181", "tag": ["lab"]}'),
      field("Task", kind), imageField, customField,
      field("Window opens", start, "Empty: any time"), field("Window closes", end), field("Time zone", zone),
      field("Devices per minute", rate), field("At most in flight", inFlight),
      field("Stop after failures", maxFailures), field("Stop over failure ratio", ratio), field("Minimum sample", sample)),
    error,
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Create draft")));
  form.addEventListener("submit", async e => {
    e.preventDefault();
    error.textContent = "";
    let body;
    try {
      body = campaignBody({ name, filter, kind, image, custom, start, end, zone, rate, inFlight, maxFailures, ratio, sample });
    } catch (err) {
      error.textContent = err.message;
      return;
    }
    const created = await attempt(() => api("/campaign/", { method: "POST", body }), "Draft created; preview it, then start it.");
    if (created) location.hash = `#/campaigns/${created.id}`;
  });
  return form;
}

function campaignBody(f) {
  const parse = (text, what) => {
    try { return JSON.parse(text); } catch { throw new Error(`${what} is not valid JSON.`); }
  };
  let task;
  if (f.kind.value === "firmware") {
    if (!f.image.value) throw new Error("Upload a firmware image first (Files).");
    task = { kind: "download", firmware_image: Number(f.image.value) };
  } else if (f.kind.value === "custom") {
    task = parse(f.custom.value, "The task");
  } else {
    task = { kind: f.kind.value };
  }
  const body = { name: f.name.value, filter: parse(f.filter.value || "{}", "The filter"), task, rate: Number(f.rate.value) };
  if (f.inFlight.value) body.max_in_flight = Number(f.inFlight.value);
  if (f.start.value || f.end.value) {
    body.window = [{ start: f.start.value, end: f.end.value, timezone: f.zone.value || "UTC" }];
  }
  const rule = {};
  if (f.maxFailures.value) rule.max_failures = Number(f.maxFailures.value);
  if (f.ratio.value) rule.max_failure_ratio = Number(f.ratio.value);
  if (f.sample.value) rule.min_sample = Number(f.sample.value);
  if (Object.keys(rule).length) body.stop_rule = rule;
  return body;
}

export async function campaignPage({ params: [id], query }) {
  const campaign = await api(`/campaign/${id}/`);
  const root = h("div", { class: "page" },
    h("p", { class: "crumbs" }, h("a", { href: "#/campaigns" }, "Campaigns"), " / "),
    h("h1", {}, campaign.name, " ", stateBadge(campaign.state)));
  const body = h("div", {});
  root.append(body);
  await fill(body, campaign, query);
  if (["running", "paused"].includes(campaign.state)) {
    const timer = setInterval(async () => {
      try {
        const fresh = await api(`/campaign/${id}/`);
        if (fresh.state !== campaign.state) { reload(); return; }
        await fill(body, fresh, query);
      } catch { /* shown at the next success */ }
    }, POLL_MS);
    onLeave(() => clearInterval(timer));
  }
  return root;
}

async function fill(body, c, query) {
  const offset = Number(query.get("offset") || 0);
  const draft = c.state === "draft";
  const devices = draft
    ? await api(`/campaign/${c.id}/preview/`, { query: new URLSearchParams({ limit: 20, ...(offset ? { offset } : {}) }) })
    : await api(`/campaign/${c.id}/devices/`, { query: new URLSearchParams({ limit: 20, ...(offset ? { offset } : {}) }) });
  const action = (verb, label, question) => h("button", { type: "button", class: verb === "start" ? "primary" : "", onclick: async () => {
    if (question && !(await confirm(question))) return;
    if (await attempt(() => api(`/campaign/${c.id}/${verb}/`, { method: "POST" }), `${label}: done.`) !== undefined) reload();
  } }, label);
  const buttons = !can.operate() ? [] : [
    draft ? action("start", "Start", `Start "${c.name}" on ${devices.count} devices?`) : null,
    c.state === "running" ? action("pause", "Pause") : null,
    c.state === "paused" ? action("resume", "Resume") : null,
    ["draft", "running", "paused"].includes(c.state) ? action("cancel", "Cancel", `Cancel "${c.name}"? Its queued tasks are cancelled.`) : null,
  ];
  const p = c.progress;
  const facts = [
    ["Task", JSON.stringify(c.task)],
    ["Filter", JSON.stringify(c.filter)],
    ["Window", c.window.length ? c.window.map(w => `${w.start}–${w.end} ${w.timezone || "UTC"}${w.days ? " " + w.days.join(",") : ""}`).join("; ") : "any time"],
    ["Pace", `${c.rate} devices/min, at most ${c.max_in_flight} in flight`],
    ["Stop rule", Object.keys(c.stop_rule || {}).length ? JSON.stringify(c.stop_rule) : "none"],
    ["State", c.reason ? `${c.state}: ${c.reason}` : c.state + (c.held ? " (held: outside its window or paused)" : "")],
    ["Progress", progressText(p)],
    ["Failures", Object.keys(c.failures).length ? Object.entries(c.failures).map(([code, n]) => `${code}: ${n}`).join(", ") : "none"],
    ["ETA", c.eta ? when(c.eta) : "—"],
    ["Started", when(c.started)], ["Finished", when(c.finished)], ["Created by", c.created_by],
  ];
  const meter = p.total ? h("progress", { max: p.total, value: (p.done || 0) + (p.failed || 0) + (p.cancelled || 0), "aria-label": "Finished devices" }) : null;
  const deviceTable = table([
    { label: "Device", cell: d => h("a", { href: `#/devices/${d.device ?? d.id}` }, d.serial_number) },
    ...(draft ? [{ label: "Product class", cell: d => d.product_class || "—" }, { label: "Software", cell: d => d.software_version || "—" }]
      : [{ label: "State", cell: d => stateBadge(d.state) }, { label: "Fault", cell: d => (d.fault_code ? `${d.fault_code} ${d.fault_string || ""}` : "—") }]),
  ], devices.results, { empty: draft ? "The filter selects no device." : "No device." });
  body.replaceChildren(
    h("div", { class: "actions" }, buttons),
    h("section", { class: "card summary", "aria-label": "Campaign" }, meter, h("dl", {}, facts.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]))),
    section(draft ? `Preview: ${devices.count} devices` : "Devices", deviceTable,
      pager(devices, offset, 20, next => { location.hash = `#/campaigns/${c.id}${next ? `?offset=${next}` : ""}`; })));
}
