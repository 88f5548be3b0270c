"""The dashboard's files on the API listener (in memory): what is served, with which headers,
and that the files themselves reference nothing outside the page's own origin."""

from __future__ import annotations

import re

import pytest
from apiharness import ApiHarness, harness  # noqa: F401 (fixture)

from api.dashboard import ASSETS, CSP, UI_DIR

# An import of another module of the UI: `from "./lib.js"`.
_IMPORT = re.compile(r"""from\s+"\./([^"]+)"|import\s*\(\s*"\./([^"]+)"\s*\)""")
# Any absolute URL or protocol-relative reference (the SVG namespace is a name, not a fetch).
_URL = re.compile(r"""(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}""", re.IGNORECASE)
_SVG_NAMESPACE = "http://www.w3.org/2000/svg"


def test_the_page_is_served_at_the_root_with_a_strict_policy(
    harness: ApiHarness,  # noqa: F811
) -> None:
    reply = harness.call("GET", "/")
    assert reply.status == 200
    assert reply.header("content-type") == "text/html; charset=utf-8"
    assert reply.header("content-security-policy") == CSP.decode()
    assert "default-src 'self'" in CSP.decode()
    assert reply.header("x-content-type-options") == "nosniff"
    assert reply.header("x-frame-options") == "DENY"
    assert b'<script type="module" src="/ui/app.js">' in reply.raw


@pytest.mark.parametrize(
    ("name", "content_type"),
    [("app.js", "text/javascript; charset=utf-8"), ("app.css", "text/css; charset=utf-8")],
)
def test_assets_are_served_with_their_type(
    harness: ApiHarness,  # noqa: F811
    name: str,
    content_type: str,
) -> None:
    reply = harness.call("GET", f"/ui/{name}")
    assert reply.status == 200
    assert reply.header("content-type") == content_type
    assert reply.raw == (UI_DIR / name).read_bytes()


def test_an_unchanged_asset_is_revalidated_with_its_etag(
    harness: ApiHarness,  # noqa: F811
) -> None:
    first = harness.call("GET", "/ui/lib.js")
    etag = first.header("etag")
    assert etag
    again = harness.call("GET", "/ui/lib.js", headers={"If-None-Match": etag})
    assert again.status == 304
    assert again.raw == b""
    other = harness.call("GET", "/ui/lib.js", headers={"If-None-Match": '"other"'})
    assert other.status == 200


@pytest.mark.parametrize(
    "path", ["/ui/nope.js", "/ui/index.html", "/ui/..%2Fdashboard.py", "/ui/", "/ui/x/app.js"]
)
def test_anything_else_under_ui_is_a_json_404(
    harness: ApiHarness,  # noqa: F811
    path: str,
) -> None:
    reply = harness.call("GET", path)
    assert reply.status == 404
    assert reply.json == {"detail": "Not found."}


def test_head_sends_no_body(harness: ApiHarness) -> None:  # noqa: F811
    reply = harness.call("HEAD", "/ui/app.css")
    assert reply.status == 200
    assert reply.raw == b""


def test_every_module_the_scripts_import_is_served() -> None:
    imported = set()
    for name, asset in ASSETS.items():
        if name.endswith(".js"):
            for match in _IMPORT.finditer(asset.content.decode()):
                imported.add(match.group(1) or match.group(2))
    assert imported, "the UI's modules import each other"
    assert imported <= set(ASSETS), f"missing: {imported - set(ASSETS)}"
    # ...and every module is reachable from app.js (no dead files shipped).
    scripts = {n for n in ASSETS if n.endswith(".js")}
    assert scripts - imported == {"app.js"}


def test_the_files_name_no_other_host_and_stay_small() -> None:
    for name, asset in ASSETS.items():
        text = asset.content.decode().replace(_SVG_NAMESPACE, "")
        assert not _URL.findall(text), f"{name} names another host"
    total = sum(len(a.content) for a in ASSETS.values())
    assert total < 300 * 1024, f"the UI is {total} bytes"
