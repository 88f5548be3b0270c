// The dashboard's shell: who is logged in, the navigation, and a hash router
// (#/devices?status=Up, #/devices/12, ...) whose pages live in the other modules.
import { api, can, clear, errorText, field, h, leave, session, setRenderer, whenUnauthorized } from "./lib.js";
import { overviewPage } from "./overview.js";
import { devicesPage } from "./devices.js";
import { devicePage } from "./device.js";
import { filesPage } from "./files.js";
import { campaignPage, campaignsPage } from "./campaigns.js";
import { adminPage } from "./admin.js";

const main = document.getElementById("main");
const header = document.querySelector("header.top");

const ROUTES = [
  [/^\/$/, overviewPage, "Overview"],
  [/^\/devices$/, devicesPage, "Devices"],
  [/^\/devices\/(\d+)$/, devicePage, "Device"],
  [/^\/files$/, filesPage, "Files"],
  [/^\/campaigns$/, campaignsPage, "Campaigns"],
  [/^\/campaigns\/(\d+)$/, campaignPage, "Campaign"],
  [/^\/admin(?:\/([a-z_]+))?$/, adminPage, "Administration"],
];
const NAV = [["#/", "Overview"], ["#/devices", "Devices"], ["#/files", "Files"], ["#/campaigns", "Campaigns"]];

function parseHash() {
  const raw = location.hash.replace(/^#/, "") || "/";
  const [path, query = ""] = raw.split("?");
  return { path, query: new URLSearchParams(query) };
}

// While a page loads, the one it replaces stays in view but inert: its controls would act
// on the query it was made for (a sort button keeps its page's filter), not the new one.
function loading(busy) {
  main.inert = busy;
  if (busy) main.setAttribute("aria-busy", "true");
  else main.removeAttribute("aria-busy");
}

async function render() {
  leave();
  const token = {};
  render.current = token;
  loading(false);
  const { path, query } = parseHash();
  if (!session.user) {
    showLogin();
    return;
  }
  if (path === "/login") { location.replace("#/"); return; }
  showShell(path);
  const found = ROUTES.map(([re, page, title]) => [path.match(re), page, title]).find(([m]) => m);
  if (!found) {
    clear(main, h("h1", {}, "Not found"), h("p", {}, h("a", { href: "#/" }, "Back to the overview")));
    return token;
  }
  const [match, page, title] = found;
  document.title = `${title} · ACS`;
  loading(true);
  try {
    const content = await page({ params: match.slice(1), query });
    if (render.current === token) clear(main, content);
  } catch (err) {
    if (render.current === token && session.user) {
      clear(main, h("h1", {}, title), h("p", { class: "error", role: "alert" }, err.message || String(err)));
    }
  } finally {
    if (render.current === token) loading(false);
  }
  return token;
}

function showShell(path) {
  header.hidden = false;
  const items = can.admin() ? [...NAV, ["#/admin", "Administration"]] : NAV;
  clear(document.getElementById("nav"), items.map(([href, label]) => {
    const target = href.slice(1);
    const current = target === "/" ? path === "/" : path.startsWith(target);
    return h("li", {}, h("a", { href, "aria-current": current ? "page" : null }, label));
  }));
  document.getElementById("who").textContent = `${session.user.username} (${session.user.role})`;
}

function showLogin() {
  header.hidden = true;
  document.title = "Log in · ACS";
  const error = h("p", { class: "error", role: "alert", id: "login-error" });
  const username = h("input", { name: "username", autocomplete: "username", required: true, autofocus: true });
  const password = h("input", { name: "password", type: "password", autocomplete: "current-password", required: true });
  const button = h("button", { type: "submit", class: "primary" }, "Log in");
  const form = h("form", { class: "login card", "aria-labelledby": "login-title" },
    h("h1", { id: "login-title" }, "Log in to the ACS"),
    field("User name", username),
    field("Password", password),
    error, button);
  form.addEventListener("submit", async event => {
    event.preventDefault();
    button.disabled = true;
    error.textContent = "";
    try {
      const who = await api("/auth/login/", { method: "POST", body: { username: username.value, password: password.value } });
      session.user = who;
      session.csrf = who.csrf_token;
      password.value = "";
      if (parseHash().path === "/login") location.hash = "#/";
      render();
    } catch (err) {
      error.textContent = err.status === 429
        ? `Too many failed logins; try again in ${err.retryAfter || "a few"} seconds.`
        : errorText(err.body) || err.message;
      password.select();
    } finally {
      button.disabled = false;
    }
  });
  clear(main, form);
  username.focus();
}

async function logout() {
  try { await api("/auth/logout/", { method: "POST" }); } catch { /* already ended */ }
  session.user = null;
  session.csrf = null;
  location.hash = "#/login";
  render();
}

whenUnauthorized(() => {
  if (!session.user) return;
  session.user = null;
  session.csrf = null;
  render();
});

setRenderer(render);
document.getElementById("logout").addEventListener("click", logout);
window.addEventListener("hashchange", async () => {
  // Focus moves to the new page once it is there (an inert one takes no focus), unless a
  // later navigation superseded it.
  const token = await render();
  if (token !== undefined && render.current === token) main.focus({ preventScroll: true });
});
// "Skip to content" moves the focus; as a link to #main it would be a route (Not found).
document.querySelector("a.skip").addEventListener("click", event => {
  event.preventDefault();
  main.focus();
});

async function start() {
  try {
    const who = await api("/auth/session/");
    if (who.csrf_token) {
      session.user = who;
      session.csrf = who.csrf_token;
    }
  } catch { /* not logged in */ }
  render();
}

start();
