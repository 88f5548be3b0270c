"""The dashboard in a real browser, for tests/test_ui_browser.py and `make screenshots`:
``acs serve`` and a ``cpe-sim`` fleet on loopback (real processes), Debian's headless
Chromium driven by Playwright, and the steps the tests share (log in, confirm a dialog...).

The ``page`` fixture gives each test a fresh browser context (no cookie) and checks it on the
way out: the page raised no JavaScript error, and the browser asked nothing of any host but
the appliance's own origin. Waits are Playwright's: a locator or an assertion retried until
it holds or its timeout passes, never a sleep.

The browser must be installed (``.ci/run`` installs Debian's ``chromium``; a test never
downloads one). Without it the tests skip, unless ``ACS_BROWSER_REQUIRED`` is set, as CI
sets it: then they fail.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from procharness import Output, listening, running, sessions_done, write_config

from bench.pgcluster import fixed_port

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

        deadline = time.monotonic() + START_BUDGET
        self.acs_out.wait_for(sessions_done(FLEET), deadline, f"{FLEET} bootstrapped CPEs")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    _require_browser()
    tmp = tmp_path_factory.mktemp("ui")
    config = write_config(tmp, ports={"files": fixed_port()})
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
        urls = listening(acs_out, time.monotonic() + START_BUDGET)
        yield Stack(tmp, urls["ui"], urls["cwmp"], acs_out, exits)
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
