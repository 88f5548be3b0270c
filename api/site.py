"""The API listener's site and the address helper of every listener.

:class:`ApiSite`: a declared ``Content-Length`` over the limit is answered 413 from the
headers (and a chunked body once past it), before Twisted buffers anything. The limit is
``[files] max_upload`` for the upload routes (``api.uploads``) and 1 MiB for every other route (the
JSON routes' own limit). Twisted's parsing of form bodies into ``request.args`` (which reads
a whole multipart body into memory) is switched off: the API never uses form arguments.
"""

from __future__ import annotations

from typing import Any, cast

from twisted.web.resource import Resource

from acs.httplimits import BoundedRequest, BoundedSite
from api.base import MAX_BODY_BYTES
from api.uploads import UPLOAD_PATHS


def port_address(port: Any) -> str:
    """``host:port`` of a listening port (IPv6 hosts in brackets)."""
    host: Any = cast(Any, port).getHost()  # Any: zope interfaces are opaque to mypy
    name = getattr(host, "host", "")
    number = getattr(host, "port", None)
    if number is None:
        return str(host)
    return f"[{name}]:{number}" if ":" in name else f"{name}:{number}"


_UPLOADS = tuple(path.encode() for path in UPLOAD_PATHS)


class ApiBoundedRequest(BoundedRequest):
    """API requests: 413 (a JSON error) from the headers over the route's limit."""

    refusal_type = b"application/json"
    what = "API request"

    def body_limit(self) -> int:
        upload_limit = super().body_limit()
        path = self.request_line_path().rstrip(b"/")
        if not path:
            # Unknown request line: the bigger limit; the routes still check their own.
            limit = max(upload_limit, MAX_BODY_BYTES)
        elif self.request_line_method() == b"POST" and path in _UPLOADS:
            limit = upload_limit
        else:
            limit = MAX_BODY_BYTES
        text = "1 MiB" if limit == MAX_BODY_BYTES else f"{limit} bytes"
        self.refusal_body = f'{{"detail": "Request body exceeds {text}."}}'.encode()
        return limit


class ApiSite(BoundedSite):
    """The API listener's site (see the module docstring): JSON bodies up to 1 MiB, file
    uploads up to ``max_upload``."""

    requestFactory = ApiBoundedRequest

    def __init__(self, resource: Resource, *, max_upload: int) -> None:
        super().__init__(resource, max_body=max_upload)
