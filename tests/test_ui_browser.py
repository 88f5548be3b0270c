"""The dashboard in a real browser (tests/uibrowser.py: Debian's headless Chromium through
Playwright, against ``acs serve`` and a ``cpe-sim`` fleet on loopback): the acceptance walk
of issue 13, as an operator, an admin and a viewer would do it. Every test also checks that
the page made no request to another host and raised no script error."""

from __future__ import annotations

import re
from typing import Any

from uibrowser import (  # noqa: F401 (fixtures)
    FLEET,
    USERS,
    Stack,
    api_from_page,
    browser,
    confirm,
    expect,
    logged_in,
    login,
    open_device,
    page,
    stack,
    toast,
)

from cpe_sim.firmware import build_image

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


# What the page downloaded so far, by the browser's own count (the Resource Timing API).
TRANSFERRED = """() => performance.getEntriesByType("navigation")
    .concat(performance.getEntriesByType("resource"))
    .reduce((sum, entry) => sum + entry.transferSize, 0)"""


def test_the_first_page_is_small(page: Any, stack: Stack) -> None:
    stack.start_fleet()
    page.goto("/")
    expect(page.get_by_label("User name")).to_be_visible()
    login_page = page.evaluate(TRANSFERRED)  # the whole app: every script and the styles
    logged_in(page, "operator")  # a new document: the count starts again
    expect(page.get_by_label(f"{FLEET} Devices")).to_be_visible()  # the charts drawn too
    overview = page.evaluate(TRANSFERRED)
    assert login_page > 20_000 and login_page + overview < 300_000, (login_page, overview)


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
    page.get_by_role("button", name="Filter", exact=True).click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("SIM000001")
    expect(page).to_have_url(re.compile(r"#/devices\?q=SIM000001$"))

    page.get_by_role("button", name="Clear").click()
    expect(rows).to_have_count(FLEET)
    page.get_by_label("Status").select_option("Down")
    page.get_by_role("button", name="Filter", exact=True).click()
    expect(page.get_by_text("No device matches.")).to_be_visible()

    # A parameter of the stored tree, and a tag given in bulk, filter too.
    page.goto("/#/devices")
    page.get_by_label("Select SIM000002").check()
    page.get_by_label("Tag to add").fill("lab-b")
    page.get_by_role("button", name="Add tag").click()
    expect(toast(page, 'Tagged 1 devices "lab-b".')).to_be_visible()
    page.get_by_label("Tags", exact=True).fill("lab-b")
    page.get_by_role("button", name="Filter", exact=True).click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("SIM000002")

    # Sorted by the API (the whole list, not the page), both ways.
    page.goto("/#/devices")
    expect(rows).to_have_count(FLEET)
    page.get_by_role("button", name="Serial number").click()
    expect(page.locator("th[aria-sort=ascending]")).to_contain_text("Serial number")
    expect(rows.first).to_contain_text("SIM000000")
    page.get_by_role("button", name="Serial number").click()
    expect(page).to_have_url(re.compile(r"sort=-serial_number"))
    expect(rows.first).to_contain_text(f"SIM{FLEET - 1:06d}")

    # Picked devices, not a filter, make a campaign.
    for serial in ("SIM000000", "SIM000002"):
        page.get_by_label(f"Select {serial}").check()
    page.get_by_role("button", name="Campaign over these…").click()
    found = [
        page.request.get(f"/api/v1/inventory_device/?q={serial}").json()["results"][0]["id"]
        for serial in ("SIM000000", "SIM000002")
    ]
    form = page.get_by_role("form", name="New campaign")
    expect(form.get_by_label("Devices (filter)")).to_have_value(f'{{"id":[{found[0]},{found[1]}]}}')


HOLD_LISTS = """() => {
  const real = window.fetch;
  window.heldLists = [];
  window.releaseLists = () => { window.fetch = real; window.heldLists.forEach(go => go()); };
  window.fetch = (url, options) => String(url).includes("/inventory_device/?")
    ? new Promise(resolve => window.heldLists.push(() => resolve(real(url, options))))
    : real(url, options);
}"""


def test_a_page_being_replaced_takes_no_clicks(page: Any, stack: Stack) -> None:
    """Until the next page is there, the one it replaces stays in view, inert: a click on
    the filtered list's sort button would otherwise sort with the old filter."""
    stack.start_fleet()
    logged_in(page, "operator")
    page.goto("/#/devices?q=SIM000001")
    rows = page.locator("tbody tr[data-id]")
    expect(rows).to_have_count(1)
    # The page's next device lists wait for the test (their fetch held in the page).
    page.evaluate(HOLD_LISTS)
    page.goto("/#/devices")
    main = page.locator("main")
    expect(main).to_have_attribute("aria-busy", "true")
    assert page.evaluate("document.querySelector('main').inert")
    page.wait_for_function("window.heldLists.length > 0")  # the new list was asked for
    expect(rows).to_have_count(1)  # and the old page is still shown
    page.evaluate("window.releaseLists()")
    expect(rows).to_have_count(FLEET)
    expect(main).not_to_have_attribute("aria-busy", "true")
    assert not page.evaluate("document.querySelector('main').inert")
    expect(main).to_be_focused()  # where a navigation puts the keyboard
    page.get_by_role("button", name="Serial number").click()
    expect(page).to_have_url(re.compile(r"#/devices\?sort=serial_number$"))


def test_skip_to_content_moves_the_focus_and_stays_on_the_page(page: Any, stack: Stack) -> None:
    logged_in(page, "operator")
    page.goto("/#/files")
    expect(page.get_by_role("heading", name="Firmware images")).to_be_visible()
    page.get_by_role("link", name="Skip to content").focus()  # shown only when focused
    page.keyboard.press("Enter")
    expect(page.locator("main")).to_be_focused()
    expect(page).to_have_url(re.compile(r"#/files$"))
    expect(page.get_by_role("heading", name="Firmware images")).to_be_visible()


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
    page.get_by_role("button", name="Campaign from this filter…").click()
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


# Form controls with no accessible name: no <label>, no aria-label(ledby), no title.
UNLABELLED = """() => [...document.querySelectorAll("input, select, textarea, button")]
    .filter(e => e.type !== "hidden" && !e.labels?.length && !e.getAttribute("aria-label")
        && !e.getAttribute("aria-labelledby") && !e.title && !e.textContent.trim())
    .map(e => e.outerHTML.slice(0, 120))"""
# How far the document is wider than the window (a page that scrolls sideways).
OVERFLOW = "() => document.documentElement.scrollWidth - window.innerWidth"


def test_keyboard_only_and_a_tablet_width(page: Any, stack: Stack) -> None:
    stack.start_fleet()
    page.set_viewport_size({"width": 768, "height": 1024})
    page.goto("/")
    # Logged in with the keyboard alone: the user name has the focus, Tab, Enter.
    expect(page.get_by_label("User name")).to_be_focused()
    page.keyboard.type("admin")
    page.keyboard.press("Tab")
    page.keyboard.type(USERS["admin"])
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    for url, heading in (
        ("/#/", "Overview"),
        ("/#/devices", "Devices"),
        ("/#/devices/1", "SIM"),
        ("/#/files", "Firmware images"),
        ("/#/campaigns", "All campaigns"),
        ("/#/admin/users", "Users"),
    ):
        page.goto(url)
        expect(page.get_by_role("heading", name=heading).first).to_be_visible()
        expect(page.locator("main .muted", has_text="Loading")).to_have_count(0)
        assert page.evaluate(UNLABELLED) == [], url
        assert page.evaluate(OVERFLOW) <= 0, url
    # The device list works from the keyboard: focus a device's link and follow it.
    page.goto("/#/devices")
    link = page.get_by_role("link", name="SIM000001")
    link.focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="SIM000001")).to_be_visible()
