"""The dashboard in a real browser: Debian's headless Chromium, driven by Playwright, against
``acs serve`` and a ``cpe-sim`` fleet on loopback (real processes, real HTTP, real CWMP).

Each test gets a fresh browser context (no cookie), logs in through the login form, and is
checked on the way out for two things: the page raised no JavaScript error, and the browser
asked nothing of any host but the appliance's own origin. Waits are Playwright's: a locator
or an assertion retried until it holds or its timeout passes, never a sleep.

The browser must be installed (``.ci/run`` installs Debian's ``chromium``; a test never
downloads one). Without it these tests skip, unless ``ACS_BROWSER_REQUIRED`` is set, as CI
sets it: then they fail.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from procharness import Output, running, write_config

from cpe_sim.firmware import build_image

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect

BIN = Path(sys.executable).parent
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Headless, and quiet: no update checks, sync or other calls home (they would show up as
# requests to other hosts, and CI machines are offline).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
USERS = {"admin": "admin-password-1", "operator": "operator-password-1", "viewer": "viewer-pw-1"}
FLEET = 3
START_BUDGET = 30.0  # seconds for the appliance and the fleet to be up
SESSION_DONE = re.compile(r"Session done device_id=(\d+) ")
WAIT_MS = 30_000  # the longest a page may take to show what a test waits for
expect.set_options(timeout=WAIT_MS)


def _require_browser() -> None:
    missing = []
    if CHROMIUM is None:
        missing.append("chromium (apt-get install chromium)")
    if not (BIN / "acs").exists() or not (BIN / "cpe-sim").exists():
        missing.append("the console scripts (pip install -e .)")
    if missing:
        reason = "browser tests need " + " and ".join(missing)
        if os.environ.get("ACS_BROWSER_REQUIRED"):
            pytest.fail(reason)
        pytest.skip(reason)


def _free_port() -> int:
    # The files listener's port must be known before start: firmware URLs name it.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Stack:
    """The appliance under test, and its fleet once a test asks for it."""

    tmp: Path
    ui: str
    cwmp: str
    acs_out: Output
    exits: ExitStack
    fleet_started: bool = False
    errors: list[str] = field(default_factory=list)

    def start_fleet(self) -> None:
        """Start the cpe-sim fleet (once) and wait until every CPE's bootstrap is done."""
        if not self.fleet_started:
            self.fleet_started = True
            argv = [str(BIN / "cpe-sim"), "--acs", self.cwmp, "--count", str(FLEET)]
            argv += ["--model", "tr181", "--interval", "600", "--reboot-delay", "0.5"]
            argv += ["--duration", "600", "--seed", "7"]
            self.exits.enter_context(running(argv, self.tmp))

        def registered(lines: list[str]) -> bool:
            return len({m.group(1) for m in map(SESSION_DONE.search, lines) if m}) >= FLEET

        deadline = time.monotonic() + START_BUDGET
        self.acs_out.wait_for(registered, deadline, f"{FLEET} bootstrapped CPEs")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    _require_browser()
    tmp = tmp_path_factory.mktemp("ui")
    config = write_config(tmp, ports={"files": _free_port()})
    for name, password in USERS.items():
        argv = [str(BIN / "acs"), "user", "create", name, "--role", name]
        subprocess.run(
            [*argv, "--password-stdin", "--config", str(config)],
            input=password + "\n",
            text=True,
            check=True,
            capture_output=True,
            timeout=60,
        )
    with ExitStack() as exits:
        argv = [str(BIN / "acs"), "serve", "--config", str(config)]
        _acs, acs_out, _acs_err = exits.enter_context(running(argv, tmp))
        deadline = time.monotonic() + START_BUDGET
        acs_out.wait_for(
            lambda lines: any(line.startswith("API token:") for line in lines),
            deadline,
            "the banner of acs serve",
        )
        banner = "\n".join(acs_out.lines)
        ui = re.search(r"^UI +(http://127\.0\.0\.1:\d+)/$", banner, re.MULTILINE)
        cwmp = re.search(r"^CWMP +(http://127\.0\.0\.1:\d+/)$", banner, re.MULTILINE)
        assert ui is not None and cwmp is not None, banner
        yield Stack(tmp, ui.group(1), cwmp.group(1), acs_out, exits)
        text = "\n".join(acs_out.lines)
        assert "Traceback" not in text, text


@pytest.fixture(scope="module")
def browser(stack: Stack) -> Iterator[Any]:
    with playwright_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(stack: Stack, browser: Any) -> Iterator[Any]:
    """A page in a fresh context; on the way out: no script error, no other host asked."""
    context = browser.new_context(base_url=stack.ui, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(WAIT_MS)
    requested: list[str] = []
    context.on("request", lambda request: requested.append(request.url))
    tab = context.new_page()
    script_errors: list[str] = []
    tab.on("pageerror", lambda error: script_errors.append(str(error)))
    yield tab
    context.close()
    assert not script_errors, script_errors
    assert requested, "the page made no request at all?"
    foreign = [url for url in requested if not url.startswith(stack.ui + "/")]
    assert not foreign, f"requests to other hosts: {foreign}"


def login(page: Any, user: str, password: str | None = None) -> None:
    page.goto("/")
    page.get_by_label("User name").fill(user)
    page.get_by_label("Password").fill(password or USERS[user])
    page.get_by_role("button", name="Log in").click()


def logged_in(page: Any, user: str) -> None:
    login(page, user)
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    expect(page.locator("#who")).to_have_text(f"{user} ({user})")


def toast(page: Any, text: str) -> Any:
    return page.locator(".toast", has_text=text)


def confirm(page: Any) -> None:
    dialog = page.locator("dialog#confirm")
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name="Confirm").click()


def open_device(page: Any, serial: str) -> None:
    page.goto("/#/devices")
    page.get_by_role("link", name=serial, exact=True).click()
    expect(page.get_by_role("heading", name=re.compile(serial))).to_be_visible()


def api_from_page(page: Any, method: str, path: str, *, csrf: bool) -> dict[str, Any]:
    """A fetch() made by the page's own script context, with its session cookie; with the
    session's CSRF token in X-CSRFToken or without it."""
    result: dict[str, Any] = page.evaluate(
        """async ([method, path, csrf]) => {
            const who = await (await fetch("/api/v1/auth/session/")).json();
            const headers = {"Content-Type": "application/json"};
            if (csrf) headers["X-CSRFToken"] = who.csrf_token;
            const body = method === "GET" ? undefined : JSON.stringify({kind: "get_rpc_methods"});
            const r = await fetch(path, {method, headers, body});
            return {status: r.status, body: await r.json()};
        }""",
        [method, path, csrf],
    )
    return result


# --- the tests -----------------------------------------------------------------------------


def test_login_refuses_a_wrong_password_then_logs_in_and_out(page: Any) -> None:
    login(page, "admin", "not-the-password")
    expect(page.locator("#login-error")).to_have_text("Invalid user name or password.")
    logged_in(page, "admin")
    # A reload keeps the session (the cookie is HttpOnly: the page asks who it is).
    page.reload()
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("heading", name="Log in to the ACS")).to_be_visible()
    # Ended on the server: the cookie, if the browser still sent one, is worth nothing.
    assert page.request.get("/api/v1/auth/session/").status == 401
    page.goto("/#/devices")
    expect(page.get_by_role("heading", name="Log in to the ACS")).to_be_visible()


def test_the_fleet_appears_live_and_the_list_filters(page: Any, stack: Stack) -> None:
    logged_in(page, "operator")
    page.get_by_role("link", name="Devices", exact=True).click()
    expect(page.get_by_role("heading", name="Devices")).to_be_visible()
    stack.start_fleet()
    # Registrations reach the open list through the event stream: no reload by the test.
    rows = page.locator("tbody tr[data-id]")
    expect(rows).to_have_count(FLEET)
    expect(page.locator("caption")).to_have_text(f"{FLEET} devices")

    page.get_by_label("Search").fill("SIM000001")
    page.get_by_role("button", name="Filter").click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("SIM000001")
    expect(page).to_have_url(re.compile(r"#/devices\?q=SIM000001$"))

    page.get_by_role("button", name="Clear").click()
    expect(rows).to_have_count(FLEET)
    page.get_by_label("Status").select_option("Down")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_text("No device matches.")).to_be_visible()

    # A parameter of the stored tree, and a tag given in bulk, filter too.
    page.goto("/#/devices")
    page.get_by_label("Select SIM000002").check()
    page.get_by_label("Tag to add").fill("lab-b")
    page.get_by_role("button", name="Add tag").click()
    expect(toast(page, 'Tagged 1 devices "lab-b".')).to_be_visible()
    page.get_by_label("Tags", exact=True).fill("lab-b")
    page.get_by_role("button", name="Filter").click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("SIM000002")


def test_edit_a_parameter_reboot_and_upgrade_firmware(page: Any, stack: Stack) -> None:
    stack.start_fleet()
    logged_in(page, "admin")
    # A firmware image to upgrade to, uploaded through the Files page.
    image = stack.tmp / "hg-2.0.0.bin"
    image.write_bytes(build_image("2.0.0", b"\x7fELF" + bytes(4096)))
    page.get_by_role("link", name="Files").click()
    upload = page.get_by_role("form", name="Upload a firmware image")
    upload.get_by_label("Name").fill("HG firmware")
    upload.get_by_label("Version").fill("2.0.0")
    upload.get_by_label("Image file").set_input_files(str(image))
    upload.get_by_role("button", name="Upload").click()
    expect(page.get_by_role("cell", name="HG firmware")).to_be_visible()

    open_device(page, "SIM000000")
    page.get_by_role("button", name="Refresh all parameters").click()
    expect(toast(page, "Refresh all parameters: done.")).to_be_visible()

    # Edit a writable value: a set_parameter_values task, answered by the CPE.
    path = "Device.DHCPv4.Server.Pool.1.DomainName"
    page.get_by_label("Path prefix").fill("Device.DHCPv4.Server.Pool.1.")
    page.get_by_role("button", name="Show").click()
    row = page.locator(f'.param[data-path="{path}"]')
    expect(row.locator(".value")).to_have_text("lan")
    row.get_by_role("button", name=f"Edit {path}").click()
    row.get_by_label(f"New value of {path}").fill("lab.internal")
    row.get_by_role("button", name="Set").click()
    expect(toast(page, f"{path} = lab.internal")).to_be_visible()
    expect(row.locator(".value")).to_have_text("lab.internal")
    # Read back from the CPE itself: a refresh of the subtree asks it again.
    page.get_by_role("button", name="Refresh Device.DHCPv4.Server.Pool.1.").click()
    expect(toast(page, "Refresh of Device.DHCPv4.Server.Pool.1.: done.")).to_be_visible()
    expect(page.locator(f'.param[data-path="{path}"] .value')).to_have_text("lab.internal")

    # Reboot, confirmed; the task ends once the CPE is back, and the page shows it.
    page.get_by_role("button", name="Reboot").click()
    confirm(page)
    expect(toast(page, "Reboot: done.")).to_be_visible()
    page.get_by_role("link", name="Tasks").click()
    reboot = page.locator("tbody tr", has=page.get_by_role("cell", name="reboot", exact=True))
    expect(reboot.first.locator(".badge")).to_have_text("done")
    expect(page.locator("#device-status")).to_have_text("Up")

    # The firmware upgrade: the summary shows the new version once the CPE informs it.
    page.get_by_label("Firmware image").select_option(label="HG firmware 2.0.0 (#1)")
    page.get_by_role("button", name="Upgrade firmware").click()
    confirm(page)
    expect(toast(page, "Firmware upgrade queued")).to_be_visible()
    version = page.locator(".summary dt", has_text="Software version").locator("+ dd")
    expect(version).to_have_text("2.0.0")
    firmware = page.locator("tbody tr", has=page.get_by_role("cell", name="firmware_update"))
    expect(firmware.locator(".badge")).to_have_text("done")


def test_a_campaign_over_three_devices(page: Any, stack: Stack) -> None:
    stack.start_fleet()
    logged_in(page, "operator")
    page.goto("/#/devices?product_class=HG-181")
    expect(page.locator("tbody tr[data-id]")).to_have_count(FLEET)
    page.get_by_role("link", name="Campaign from this filter…").click()
    form = page.get_by_role("form", name="New campaign")
    expect(form.get_by_label("Devices (filter)")).to_have_value('{"product_class":"HG-181"}')
    form.get_by_label("Name").fill("Night reboot")
    form.get_by_label("Task", exact=True).select_option("firmware")
    expect(form.get_by_label("Firmware image")).to_be_visible()
    form.get_by_label("Task", exact=True).select_option("reboot")
    expect(form.get_by_label("Firmware image")).to_be_hidden()
    expect(form.get_by_label("Task (JSON)")).to_be_hidden()
    form.get_by_label("Devices per minute").fill("600")
    form.get_by_role("button", name="Create draft").click()
    expect(page.get_by_role("heading", name=f"Preview: {FLEET} devices")).to_be_visible()
    page.get_by_role("button", name="Start").click()
    confirm(page)
    # Progress is polled while it runs; the page turns to "done" by itself.
    expect(page.locator("h1 .badge")).to_have_text("done")
    progress = page.locator(".summary dt", has_text="Progress").locator("+ dd")
    expect(progress).to_have_text(f"{FLEET} of {FLEET} finished ({FLEET} done, 0 failed)")
    rows = page.locator("tbody tr", has=page.locator(".badge", has_text="done"))
    expect(rows).to_have_count(FLEET)


def test_a_viewer_sees_no_write_controls_and_the_api_refuses_its_writes(
    page: Any, stack: Stack
) -> None:
    stack.start_fleet()
    logged_in(page, "viewer")
    expect(page.get_by_role("link", name="Administration")).to_have_count(0)
    page.goto("/#/devices")
    expect(page.locator("tbody tr[data-id]")).to_have_count(FLEET)
    expect(page.locator("input[type=checkbox]")).to_have_count(0)
    expect(page.get_by_role("group", name="Selected devices")).to_have_count(0)
    open_device(page, "SIM000001")
    expect(page.get_by_role("heading", name="Parameters")).to_be_visible()
    expect(page.get_by_role("region", name="Operations")).to_have_count(0)
    expect(page.get_by_role("button", name=re.compile("^(Edit|Refresh) "))).to_have_count(0)
    expect(page.get_by_role("button", name="Add")).to_have_count(0)
    page.goto("/#/files")
    expect(page.get_by_role("heading", name="Firmware images")).to_be_visible()
    expect(page.get_by_role("button", name="Upload")).to_have_count(0)
    page.goto("/#/campaigns")
    expect(page.get_by_role("heading", name="All campaigns")).to_be_visible()
    expect(page.get_by_role("form", name="New campaign")).to_have_count(0)
    # What the page does not offer, the API refuses anyway (with a valid CSRF token).
    devices = page.request.get("/api/v1/inventory_device/?q=SIM000001").json()
    device_id = devices["results"][0]["id"]
    answer = api_from_page(page, "POST", f"/api/v1/inventory_device/{device_id}/tasks/", csrf=True)
    assert answer == {"status": 403, "body": {"detail": "This action needs the operator role."}}


def test_a_cookie_write_without_the_csrf_header_is_refused(page: Any, stack: Stack) -> None:
    stack.start_fleet()
    logged_in(page, "operator")
    device_id = page.request.get("/api/v1/inventory_device/").json()["results"][0]["id"]
    tasks = f"/api/v1/inventory_device/{device_id}/tasks/"
    refused = api_from_page(page, "POST", tasks, csrf=False)
    assert refused == {
        "status": 403,
        "body": {"detail": "CSRF Failed: CSRF token missing or incorrect."},
    }
    assert api_from_page(page, "GET", tasks, csrf=False)["status"] == 200
    assert api_from_page(page, "POST", tasks, csrf=True)["status"] == 202


def test_every_page_renders_and_an_admin_manages_accounts(page: Any, stack: Stack) -> None:
    stack.start_fleet()
    logged_in(page, "admin")
    expect(page.get_by_role("link", name=f"{FLEET} Devices")).to_be_visible()
    expect(page.get_by_role("img", name=re.compile("HG-181: 3"))).to_be_visible()
    for tab in ("history", "sessions", "backups", "tasks"):
        page.goto(f"/#/devices/1?tab={tab}")
        expect(page.locator("#tab-panel h2")).to_be_visible()
    page.get_by_role("link", name="Administration").click()
    for section in ("Organizations", "Device types", "Locations", "Users", "API tokens"):
        page.get_by_role("navigation", name="Administration sections").get_by_role(
            "link", name=section
        ).click()
        expect(page.get_by_role("heading", name=section, exact=True)).to_be_visible()

    page.get_by_role("link", name="Organizations").click()
    page.get_by_role("form", name="New Organizations").get_by_label("Name").fill("East")
    page.get_by_role("button", name="Create").click()
    expect(page.get_by_role("cell", name="East", exact=True)).to_be_visible()

    page.get_by_role("link", name="Users").click()
    form = page.get_by_role("form", name="New Users")
    form.get_by_label("User name").fill("night shift")
    form.get_by_label("Password").fill("long-enough-password")
    form.get_by_role("button", name="Create").click()
    expect(toast(page, "username:")).to_be_visible()  # the API's own message, shown
    form.get_by_label("User name").fill("night-shift")
    form.get_by_label("Role").select_option("operator")
    form.get_by_role("button", name="Create").click()
    expect(page.get_by_role("cell", name="night-shift")).to_be_visible()

    page.get_by_role("link", name="API tokens").click()
    form = page.get_by_role("form", name="New API tokens")
    form.get_by_label("Name").fill("monitoring")
    form.get_by_role("button", name="Create").click()
    secret = page.locator(".secret")
    expect(secret).to_contain_text("Token created. Copy it now")
    token = secret.inner_text().rsplit(" ", 1)[-1]
    reply = page.request.get("/healthz")
    assert reply.status == 200
    # The token shown works as a bearer token, and revoking it from the page ends it.
    headers = {"Authorization": f"Bearer {token}"}
    assert page.request.get("/api/v1/overview/", headers=headers).status == 200
    row = page.locator("tbody tr", has=page.get_by_role("cell", name="monitoring"))
    row.get_by_role("button", name="revoke").click()
    confirm(page)
    expect(row.get_by_role("cell", name="revoked")).to_be_visible()
    assert page.request.get("/api/v1/overview/", headers=headers).status == 401
