// The overview: devices by status, product class and software version, activity over the
// last hours, and the devices that went Down last (GET /overview/).
import { api, h, onLeave, section, statusBadge, svg, table, time } from "./lib.js";

const REFRESH_MS = 15000;

export async function overviewPage() {
  const root = h("div", { class: "page" }, h("h1", {}, "Overview"));
  const body = h("div", { class: "grid" });
  root.append(body);
  await fill(body);
  const timer = setInterval(() => fill(body).catch(() => {}), REFRESH_MS);
  onLeave(() => clearInterval(timer));
  return root;
}

async function fill(body) {
  const data = await api("/overview/", { query: new URLSearchParams({ hours: 6 }) });
  const link = query => `#/devices?${new URLSearchParams(query)}`;
  const cards = h("section", { class: "card stats", "aria-label": "Devices by status" },
    stat("Devices", data.devices, "#/devices"),
    stat("Up", data.by_status.Up, link({ status: "1" }), "up"),
    stat("Down", data.by_status.Down, link({ status: "0" }), "down"));
  const parts = [
    cards,
    section("By product class", bars(data.by_product_class, v => link({ product_class: v }))),
    section("By software version", bars(data.by_software_version, v => link({ software_version: v }))),
  ];
  if (data.series) parts.push(...activity(data.series));
  parts.push(section("Recently Down", table([
    { label: "Device", cell: d => h("a", { href: `#/devices/${d.id}` }, d.serial_number) },
    { label: "Product class", cell: d => d.product_class || "—" },
    { label: "Went Down", cell: d => time(d.status_change) },
    { label: "Status", cell: () => statusBadge("Down") },
  ], data.recently_down, { empty: "No device is Down." })));
  body.replaceChildren(...parts);
}

function stat(label, value, href, kind = "") {
  return h("a", { class: `stat ${kind}`, href, "aria-label": `${value} ${label}` }, h("span", { class: "value" }, String(value)), h("span", { class: "label" }, label));
}

// Horizontal bars, one per value (the top ones and "others"), each a link to the list.
function bars(group, href) {
  const rows = group.values.map(v => [v.value, v.count, href(v.value)]);
  if (group.others) rows.push(["others", group.others, null]);
  if (!rows.length) return h("p", { class: "muted" }, "No devices yet.");
  const max = Math.max(...rows.map(r => r[1]));
  const lineHeight = 26;
  const chart = svg("svg", { viewBox: `0 0 400 ${rows.length * lineHeight}`, class: "bars", role: "img",
    "aria-label": rows.map(r => `${r[0]}: ${r[1]}`).join(", ") });
  rows.forEach(([label, count], i) => {
    const y = i * lineHeight;
    chart.append(
      svg("text", { x: 0, y: y + 17, class: "bar-label" }, truncate(label, 22)),
      svg("rect", { x: 160, y: y + 4, height: 18, width: Math.max(2, (200 * count) / max), class: "bar", rx: 2 }),
      svg("text", { x: 366, y: y + 17, class: "bar-value", "text-anchor": "end" }, String(count)));
  });
  const list = h("ul", { class: "bar-links" }, rows.filter(r => r[2]).map(([label, count, url]) =>
    h("li", {}, h("a", { href: url }, `${label} (${count})`))));
  return [chart, list];
}

function truncate(text, n) {
  const s = String(text ?? "");
  return s.length > n ? s.slice(0, n - 1) + "…" : s;
}

// Sessions, 503s, faults and tasks by state per interval, as small line charts.
function activity(series) {
  const points = series.points || [];
  const sum = key => points.reduce((n, p) => n + (p[key] || 0), 0);
  const lines = [
    ["CWMP sessions", p => p.sessions, `${sum("sessions")} in the last ${hoursOf(series)}`],
    ["Refused (503)", p => p.rejected_503, `${sum("rejected_503")} in the last ${hoursOf(series)}`],
    ["CWMP faults", p => p.faults, `${sum("faults")} in the last ${hoursOf(series)}`],
  ];
  const charts = lines.map(([title, pick, caption]) => section(title, lineChart(points, [[pick, "line"]], title), h("p", { class: "muted" }, caption)));
  const states = Object.keys((points[points.length - 1] || {}).tasks || {});
  if (states.length) {
    const picks = states.map((s, i) => [p => (p.tasks || {})[s] || 0, `line series-${i % 4}`]);
    const last = points[points.length - 1].tasks;
    charts.push(section("Tasks by state", lineChart(points, picks, "Tasks by state"),
      h("ul", { class: "legend" }, states.map((s, i) => h("li", { class: `series-${i % 4}` }, `${s}: ${last[s]}`)))));
  }
  return charts;
}

function hoursOf(series) {
  const n = Math.round(((series.points || []).length * (series.interval || 60)) / 3600);
  return n <= 1 ? "hour" : `${n} hours`;
}

function lineChart(points, picks, label) {
  const width = 400, height = 100;
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height + 16}`, class: "lines", role: "img", "aria-label": label });
  if (points.length < 2) {
    chart.append(svg("text", { x: 0, y: 20, class: "bar-label" }, "Not enough samples yet."));
    return chart;
  }
  const max = Math.max(1, ...points.flatMap(p => picks.map(([pick]) => pick(p) || 0)));
  const x = i => (i * width) / (points.length - 1);
  const y = v => height - (height * v) / max;
  chart.append(svg("line", { x1: 0, y1: height, x2: width, y2: height, class: "axis" }));
  for (const [pick, cls] of picks) {
    chart.append(svg("polyline", { points: points.map((p, i) => `${x(i).toFixed(1)},${y(pick(p) || 0).toFixed(1)}`).join(" "), class: cls }));
  }
  chart.append(svg("text", { x: 0, y: height + 14, class: "bar-label" }, new Date(points[0].at).toLocaleTimeString()),
    svg("text", { x: width, y: height + 14, class: "bar-label", "text-anchor": "end" }, `max ${max}`));
  return chart;
}
