"""``make screenshots``: the dashboard's main pages as PNG files, taken from a running
appliance with a simulated fleet (tests/uibrowser.py), into ``docs/screenshots/`` or the
directory ``SCREENSHOTS`` names; and the first page's figures (bytes transferred, time
until the login form and then the overview can be used), printed. Marked
``screenshots``: the default suite leaves it out."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from uibrowser import (  # noqa: F401 (fixtures)
    FLEET,
    Stack,
    browser,
    expect,
    logged_in,
    page,
    stack,
    toast,
)

pytestmark = pytest.mark.screenshots
REPO = Path(__file__).resolve().parent.parent
PAGES = [
    ("overview", "/#/"),
    ("devices", "/#/devices"),
    ("device", "/#/devices/1?path=Device.DHCPv4.Server.Pool.1."),
    ("files", "/#/files"),
    ("campaign", "/#/campaigns/1"),
    ("admin", "/#/admin/users"),
]


def test_screenshots_of_each_main_page(page: Any, stack: Stack) -> None:
    out = Path(os.environ.get("SCREENSHOTS") or REPO / "docs" / "screenshots")
    out.mkdir(parents=True, exist_ok=True)
    stack.start_fleet()
    logged_in(page, "admin")
    # Something to show: a full parameter tree and a draft campaign.
    page.goto("/#/devices/1")
    page.get_by_role("button", name="Refresh all parameters").click()
    expect(toast(page, "Refresh all parameters: done.")).to_be_visible()
    page.goto("/#/campaigns")
    form = page.get_by_role("form", name="New campaign")
    form.get_by_label("Name").fill("Nightly reboot")
    form.get_by_label("Window opens").fill("02:00")
    form.get_by_label("Window closes").fill("05:00")
    form.get_by_role("button", name="Create draft").click()
    expect(page.get_by_role("heading", name="Preview: 3 devices")).to_be_visible()
    expect(page.locator(".toast")).to_have_count(0)  # gone by themselves before the pictures
    for name, url in PAGES:
        page.goto(url)
        expect(page.locator("main h1")).to_be_visible()
        expect(page.locator("main .muted", has_text="Loading")).to_have_count(0)
        path = out / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        assert path.stat().st_size > 10_000, f"{name}: an empty picture?"


# Milliseconds since this document's navigation began, and the bytes it transferred.
FIGURES = """() => [performance.now(), performance.getEntriesByType("navigation")
    .concat(performance.getEntriesByType("resource"))
    .reduce((sum, entry) => sum + entry.transferSize, 0)]"""


def test_the_first_page_figures(
    page: Any, stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    stack.start_fleet()
    page.goto("/")
    # Interactive: the login form is in the document. A locator waits without eval, which the
    # UI's Content-Security-Policy forbids (wait_for_function's polling is an eval).
    page.locator("form.login input[name=password]").wait_for(state="attached")
    login_ms, login_bytes = page.evaluate(FIGURES)
    logged_in(page, "operator")
    page.reload()  # a cold start of the overview page, logged in
    page.locator(f'a.stat[aria-label="{FLEET} Devices"]').wait_for(state="attached")
    overview_ms, overview_bytes = page.evaluate(FIGURES)
    with capsys.disabled():
        print(
            f"\nlogin page: {login_bytes / 1000:.0f} KB transferred, usable after "
            f"{login_ms:.0f} ms; overview (logged in, reloaded): {overview_bytes / 1000:.0f} KB, "
            f"drawn after {overview_ms:.0f} ms"
        )
