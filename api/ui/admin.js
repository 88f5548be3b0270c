// Administration (admins): organizations, device types, locations, operator accounts and
// API tokens. Each is a list with a create form and a delete (or disable/revoke) action.
import { all, api, attempt, clear, confirm, field, h, reload, section, select, table, when } from "./lib.js";

const ROLES = [["viewer", "viewer"], ["operator", "operator"], ["admin", "admin"]];

// Per resource: its path, columns, the create form's inputs and the row action.
const RESOURCES = {
  organizations: {
    title: "Organizations", path: "/organization/",
    columns: [["Id", o => String(o.id)], ["Name", o => o.name], ["Code", o => o.code || "—"]],
    inputs: () => [["Name", h("input", { name: "name", required: true })], ["Code", h("input", { name: "code" })]],
    action: ["delete", o => `organization ${o.name}`, o => api(`/organization/${o.id}/`, { method: "DELETE" })],
  },
  device_types: {
    title: "Device types", path: "/device_type/",
    columns: [["Id", t => String(t.id)], ["Name", t => t.name], ["Short name", t => t.short_name || "—"],
      ["Manufacturer", t => t.manufacturer || "—"], ["Product class", t => t.product_class || "—"],
      ["Inform interval", t => (t.update_frequency ? `${t.update_frequency} s` : "—")]],
    inputs: () => [["Name", h("input", { name: "name", required: true })], ["Short name", h("input", { name: "short_name" })],
      ["Manufacturer", h("input", { name: "manufacturer" })], ["Product class", h("input", { name: "product_class" })],
      ["Inform interval (s)", h("input", { name: "update_frequency", type: "number", min: "1", "data-number": true })]],
    action: ["delete", t => `device type ${t.name}`, t => api(`/device_type/${t.id}/`, { method: "DELETE" })],
  },
  locations: {
    title: "Locations", path: "/location/",
    columns: [["Id", l => String(l.id)], ["Name", l => l.name], ["Short name", l => l.short_name || "—"],
      ["Coordinates", l => (l.latitude != null ? `${l.latitude}, ${l.longitude}` : "—")]],
    inputs: () => [["Name", h("input", { name: "name", required: true })], ["Short name", h("input", { name: "short_name" })],
      ["Latitude", h("input", { name: "latitude", inputmode: "decimal" })], ["Longitude", h("input", { name: "longitude", inputmode: "decimal" })]],
    action: ["delete", l => `location ${l.name}`, l => api(`/location/${l.id}/`, { method: "DELETE" })],
  },
  users: {
    title: "Users", path: "/user/",
    columns: [["Id", u => String(u.id)], ["Name", u => u.username], ["Role", u => u.role],
      ["Organizations", u => (u.organization_ids || []).join(", ") || "all"], ["Enabled", u => (u.enabled ? "yes" : "no")],
      ["Created", u => when(u.created)]],
    inputs: orgs => [["User name", h("input", { name: "username", required: true, autocomplete: "off" })],
      ["Password", h("input", { name: "password", type: "password", required: true, minlength: 8, autocomplete: "new-password" })],
      ["Role", select("role", ROLES, "viewer")], ["Organizations", orgPicker(orgs)]],
    action: ["disable", u => `user ${u.username}`, u => api(`/user/${u.id}/`, { method: "PATCH", body: { enabled: false } }), u => u.enabled],
  },
  tokens: {
    title: "API tokens", path: "/token/",
    columns: [["Id", t => String(t.id)], ["Name", t => t.name], ["Role", t => t.role],
      ["Organizations", t => (t.organization_ids || []).join(", ") || "all"], ["State", t => (t.revoked ? "revoked" : "active")],
      ["Created", t => when(t.created)]],
    inputs: orgs => [["Name", h("input", { name: "name", required: true })], ["Role", select("role", ROLES, "viewer")],
      ["Organizations", orgPicker(orgs)]],
    action: ["revoke", t => `token ${t.name}`, t => api(`/token/${t.id}/`, { method: "DELETE" }), t => !t.revoked],
    created: t => `Token created. Copy it now, it is not shown again: ${t.token}`,
  },
};

function orgPicker(orgs) {
  const picker = h("select", { name: "organization_ids", multiple: true, size: Math.min(4, Math.max(2, orgs.length)) },
    orgs.map(o => h("option", { value: o.id }, o.name)));
  return picker;
}

export async function adminPage({ params: [which] }) {
  const name = RESOURCES[which] ? which : "organizations";
  const spec = RESOURCES[name];
  const [rows, orgs] = await Promise.all([all(spec.path), all("/organization/")]);
  const nav = h("nav", { class: "tabs", "aria-label": "Administration sections" },
    Object.entries(RESOURCES).map(([key, r]) => h("a", { href: `#/admin/${key}`, "aria-current": key === name ? "page" : null }, r.title)));
  const [verb, describe, act, applies = () => true] = spec.action;
  const columns = [...spec.columns.map(([label, cell]) => ({ label, cell })), { label: "", cell: row => (applies(row)
    ? h("button", { type: "button", class: "link", onclick: async () => {
      if (!(await confirm(`${verb[0].toUpperCase()}${verb.slice(1)} ${describe(row)}?`))) return;
      if (await attempt(() => act(row), `${describe(row)}: ${verb}d.`) !== undefined) reload();
    } }, verb) : "") }];
  const secret = h("div", { role: "status", class: "secret" });
  const list = h("div", {}, table(columns, rows, { empty: "None yet." }));
  // After a create: the list again, in place (a new token's secret stays on the page).
  const redraw = async () => list.replaceChildren(table(columns, await all(spec.path), { empty: "None yet." }));
  return h("div", { class: "page" }, h("h1", {}, "Administration"), nav, section(spec.title, list),
    createForm(spec, orgs, secret, redraw), secret);
}

function createForm(spec, orgs, secret, redraw) {
  const inputs = spec.inputs(orgs);
  const form = h("form", { class: "card", "aria-label": `New ${spec.title}` }, h("h2", {}, `New: ${spec.title.toLowerCase()}`),
    h("div", { class: "filter-grid" }, inputs.map(([label, input]) => field(label, input))),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Create")));
  form.addEventListener("submit", async e => {
    e.preventDefault();
    const body = {};
    for (const [, input] of inputs) {
      if (input.multiple) body[input.name] = [...input.selectedOptions].map(o => Number(o.value));
      else if (input.value !== "") body[input.name] = input.dataset.number !== undefined ? Number(input.value) : input.value;
    }
    const created = await attempt(() => api(spec.path, { method: "POST", body }), "Created.");
    if (!created) return;
    clear(secret, spec.created ? h("p", {}, spec.created(created)) : null);
    form.reset();
    await redraw();
  });
  return form;
}
