// Firmware images and other files the ACS serves to CPEs: list, upload, delete (admins).
import { all, api, attempt, bytes, can, confirm, field, h, reload, section, select, table, when } from "./lib.js";

const FILE_TYPES = ["2 Web Content", "3 Vendor Configuration File", "4 Tone File", "5 Ringer File"];

export async function filesPage() {
  const [images, files, types] = await Promise.all([all("/firmware_image/"), all("/file/"), all("/device_type/")]);
  const typeName = id => (types.find(t => t.id === id) || {}).name || "—";
  const remove = (path, what) => async () => {
    if (!(await confirm(`Delete ${what}?`))) return;
    if (await attempt(() => api(path, { method: "DELETE" }), `Deleted ${what}.`) !== undefined) reload();
  };
  const imageTable = table([
    { label: "Id", cell: i => String(i.id) },
    { label: "Name", cell: i => i.name },
    { label: "Version", cell: i => i.version },
    { label: "Device type", cell: i => typeName(i.device_type) },
    { label: "Size", cell: i => bytes(i.size) },
    { label: "SHA-256", cell: i => h("code", { title: i.sha256 }, i.sha256.slice(0, 12) + "…") },
    { label: "Uploaded", cell: i => when(i.created) },
    ...(can.admin() ? [{ label: "", cell: i => h("button", { type: "button", class: "link", onclick: remove(`/firmware_image/${i.id}/`, `firmware image ${i.name} ${i.version}`) }, "delete") }] : []),
  ], images, { empty: "No firmware image uploaded." });
  const fileTable = table([
    { label: "Id", cell: f => String(f.id) },
    { label: "Name", cell: f => f.name },
    { label: "File type", cell: f => f.file_type },
    { label: "For", cell: f => [f.oui, f.product_class].filter(Boolean).join(" ") || "any CPE" },
    { label: "Size", cell: f => bytes(f.size) },
    { label: "Uploaded", cell: f => when(f.created) },
    ...(can.admin() ? [{ label: "", cell: f => h("button", { type: "button", class: "link", onclick: remove(`/file/${f.id}/`, `file ${f.name}`) }, "delete") }] : []),
  ], files, { empty: "No file uploaded." });
  return h("div", { class: "page" }, h("h1", {}, "Firmware and files"),
    section("Firmware images", imageTable, can.admin() ? imageUpload(types) : null),
    section("Other files", fileTable, can.admin() ? fileUpload() : null));
}

function uploadForm(title, path, fields, fileLabel) {
  const file = h("input", { type: "file", name: "file", required: true });
  const progress = h("span", { class: "muted", role: "status" });
  const button = h("button", { type: "submit", class: "primary" }, "Upload");
  const form = h("form", { class: "upload", "aria-label": title }, h("h3", {}, title), fields, field(fileLabel, file), button, progress);
  form.addEventListener("submit", async e => {
    e.preventDefault();
    const body = new FormData();
    for (const [key, value] of new FormData(form)) if (key !== "file" && value !== "") body.append(key, value);
    body.append("file", file.files[0]);
    button.disabled = true;
    progress.textContent = "Uploading…";
    const done = await attempt(() => api(path, { method: "POST", body }), "Uploaded.");
    button.disabled = false;
    progress.textContent = "";
    if (done !== undefined) reload();
  });
  return form;
}

function imageUpload(types) {
  return uploadForm("Upload a firmware image", "/firmware_image/", [
    field("Name", h("input", { name: "name", required: true })),
    field("Version", h("input", { name: "version", required: true }), "The software version the CPE reports once upgraded"),
    field("Device type", select("device_type", [["", "Any"], ...types.map(t => [t.id, t.name])])),
  ], "Image file");
}

function fileUpload() {
  return uploadForm("Upload a file", "/file/", [
    field("Name", h("input", { name: "name", required: true })),
    field("File type", select("file_type", FILE_TYPES.map(t => [t, t]))),
    field("Manufacturer OUI", h("input", { name: "oui", pattern: "[0-9A-F]{6}", placeholder: "00D09E" }), "Optional: only CPEs of this OUI"),
    field("Product class", h("input", { name: "product_class" }), "Optional"),
    field("Version", h("input", { name: "version" }), "Optional"),
  ], "File");
}
