"""The operator dashboard: the web UI's static files, served by the API listener.

``/`` is the single page (``api/ui/index.html``) and ``/ui/<name>`` its scripts and style
sheet; everything else the page shows it reads from ``/api/v1`` on the same origin, logged
in with the session cookie of :mod:`api.auth`. The files are plain HTML, CSS and JavaScript
modules shipped as package data (no build step), read once at import and kept in memory:
a few tens of kilobytes.

Every answer carries a Content-Security-Policy of ``default-src 'self'`` (no inline script
or style, no other host: the UI works on an appliance without internet access, and an
injected string cannot run), refuses framing, and is revalidated by ETag (an upgraded
appliance serves its new files at once). These routes need no login: the page itself asks
for one.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from twisted.web.iweb import IRequest
from twisted.web.server import Request

from api.base import Api, respond

UI_DIR = Path(__file__).with_name("ui")
CONTENT_TYPES = {
    ".html": b"text/html; charset=utf-8",
    ".js": b"text/javascript; charset=utf-8",
    ".css": b"text/css; charset=utf-8",
    ".svg": b"image/svg+xml",
}
CSP = (
    b"default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
    b"form-action 'self'; frame-ancestors 'none'"
)
INDEX = "index.html"
# The dashboard's routes: pages, not API operations (the OpenAPI document leaves them out).
PAGE_RULES = ("/", "/ui/<string:name>")


@dataclass(frozen=True)
class Asset:
    content: bytes
    content_type: bytes
    etag: bytes


def load_assets(directory: Path = UI_DIR) -> dict[str, Asset]:
    """The UI's files by name (only the types the UI uses; no subdirectories)."""
    assets = {}
    for path in sorted(directory.iterdir()):
        content_type = CONTENT_TYPES.get(path.suffix)
        if content_type is None or not path.is_file():
            continue
        content = path.read_bytes()
        etag = b'"' + hashlib.sha256(content).hexdigest()[:32].encode() + b'"'
        assets[path.name] = Asset(content, content_type, etag)
    return assets


ASSETS = load_assets()


def serve(request: Request, asset: Asset) -> bytes:
    request.setHeader(b"Content-Security-Policy", CSP)
    request.setHeader(b"X-Content-Type-Options", b"nosniff")
    request.setHeader(b"X-Frame-Options", b"DENY")
    request.setHeader(b"Referrer-Policy", b"no-referrer")
    request.setHeader(b"Cache-Control", b"no-cache")
    request.setHeader(b"ETag", asset.etag)
    sent = request.getHeader(b"if-none-match") or b""
    if asset.etag in (tag.strip().removeprefix(b"W/") for tag in sent.split(b",")):
        request.setResponseCode(304)
        return b""
    request.setHeader(b"Content-Type", asset.content_type)
    return b"" if request.method == b"HEAD" else asset.content


@Api.app.route(PAGE_RULES[0], methods=["GET", "HEAD"])
def index(api: Api, request: IRequest) -> bytes:
    return serve(cast(Request, request), ASSETS[INDEX])


@Api.app.route(PAGE_RULES[1], methods=["GET", "HEAD"])
def asset(api: Api, request: IRequest, name: str) -> Any:
    found = ASSETS.get(name)
    if found is None or name == INDEX:
        return respond(cast(Request, request), 404, {"detail": "Not found."})
    return serve(cast(Request, request), found)
