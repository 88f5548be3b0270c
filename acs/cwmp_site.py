"""The CWMP listener's HTTP plumbing, below the session logic of :mod:`acs.cwmp_http`.

Owns the listener's site and request classes (``CwmpRequest`` refuses an oversize body
with 413 before buffering it; ``CwmpSite`` uses it and keeps no access log), the pacing of
Retry-After at the session cap (``RetryPacer``), and the small HTTP readers and writers the
resource uses: gzip/deflate bodies (bounded like plain ones), cookies as CPEs send them, the
Digest ``uri`` and ``nc`` checks, the client address, and XML/text/empty answers.
"""

from __future__ import annotations

import random
import zlib
from typing import Any
from urllib.parse import urlsplit

from twisted.web.resource import Resource
from twisted.web.server import Request

from acs.cwmp import soap
from acs.httplimits import TEXT_CONTENT_TYPE, BoundedRequest, BoundedSite

XML_CONTENT_TYPE = b'text/xml; charset="utf-8"'


class RetryPacer:
    """Sizes the Retry-After of 503s at the session cap.

    A fixed short Retry-After is right for a handful of CPEs, but in a boot storm thousands of
    turned-away CPEs come back every few seconds, and answering them takes the CPU the admitted
    sessions need. So every ``window`` seconds the pacer compares the 503s it answered with the
    sessions it admitted: while turn-aways outnumber admissions more than twice, the upper
    bound grows by half (up to ``ceiling``); once they don't, it shrinks back towards
    ``initial``. Each answer is a random whole number of seconds in [upper / 2, upper], so CPEs
    turned away together don't come back together. Pure logic: the caller passes the time.
    """

    def __init__(
        self,
        *,
        initial: float = 10.0,
        ceiling: float = 300.0,
        window: float = 10.0,
        rng: random.Random | None = None,
    ) -> None:
        self.initial = initial
        self.ceiling = ceiling
        self.window = window
        self.upper = initial
        self._rng = rng or random.Random()
        self._started: float | None = None
        self._refused = 0
        self._admitted = 0

    def admitted(self, now: float) -> None:
        self._roll(now)
        self._admitted += 1

    def retry_after(self, now: float) -> int:
        """Seconds for the Retry-After of one 503 (at least 1)."""
        self._roll(now)
        self._refused += 1
        high = max(1, int(self.upper))
        return self._rng.randint(max(1, high // 2), high)

    def _roll(self, now: float) -> None:
        if self._started is None:
            self._started = now
        if now - self._started < self.window:
            return
        if self._refused > 2 * max(self._admitted, 1):
            self.upper = min(self.ceiling, self.upper * 1.5)
        elif self._refused <= self._admitted:
            self.upper = max(self.initial, self.upper / 1.5)
        self._started, self._refused, self._admitted = now, 0, 0


class CwmpRequest(BoundedRequest):
    """A CWMP request: bodies above ``soap.MAX_ENVELOPE_BYTES`` get 413 before buffering."""

    what = "CWMP request"
    # CWMP bodies are SOAP, never forms: skip twisted.web's Content-Type parsing (through
    # email.headerregistry, ~5% of the ACS's CPU in a boot storm) for form arguments.
    _parsePOSTFormSubmission = False


class CwmpSite(BoundedSite):
    """The CWMP listener's site: bounded envelopes, no access log."""

    requestFactory = CwmpRequest

    def __init__(self, resource: Resource, **kwargs: Any) -> None:
        super().__init__(resource, max_body=soap.MAX_ENVELOPE_BYTES, access_log=False, **kwargs)


# --- readers and writers ------------------------------------------------------------------


def decompress(data: bytes, encoding: bytes) -> bytes | None:
    """gzip/deflate request bodies (GA accepts them), bounded like plain ones."""
    if encoding in (b"gzip", b"x-gzip"):
        wbits = 16 + zlib.MAX_WBITS
    elif encoding == b"deflate":
        wbits = zlib.MAX_WBITS
    else:
        return None
    try:
        inflater = zlib.decompressobj(wbits)
        out = inflater.decompress(data, soap.MAX_ENVELOPE_BYTES + 1)
    except zlib.error:
        return None
    # Stops at MAX + 1 bytes so a zip bomb costs nothing; the caller answers 413.
    return out


def cookie_values(request: Request, name: str) -> list[str]:
    """Values of cookie ``name``; CPEs separate cookies with ';' or ',' (Twisted only ';')."""
    values: list[str] = []
    for raw in request.requestHeaders.getRawHeaders(b"cookie") or []:
        text = raw.decode("latin-1")
        for part in text.replace(",", ";").split(";"):
            key, sep, value = part.partition("=")
            if sep and key.strip() == name:
                values.append(value.strip().strip('"'))
    return values


def digest_uri_matches(given: str, request: Request) -> bool:
    actual = request.uri.decode("latin-1")
    if given == actual:
        return True
    # Some clients put the absolute URL in the digest uri.
    parts = urlsplit(given)
    if not (parts.scheme and parts.netloc):
        return False
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return path == actual


def nonce_count(value: str | None) -> int | None:
    """A Digest ``nc`` (8 hex digits) as a number, None if absent or garbled."""
    if value is None or not 1 <= len(value) <= 8:
        return None
    try:
        return int(value, 16)
    except ValueError:
        return None


def client_host(request: Request) -> str | None:
    address: Any = request.getClientAddress()
    host = getattr(address, "host", None)
    return host if isinstance(host, str) else None


def xml_response(request: Request, body: bytes, status: int = 200) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", XML_CONTENT_TYPE)
    request.setHeader(b"Content-Length", str(len(body)).encode())
    return body


def empty_response(request: Request) -> bytes:
    request.setResponseCode(204)
    return b""


def text_response(request: Request, status: int, text: str) -> bytes:
    body = (text + "\n").encode("utf-8")
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", TEXT_CONTENT_TYPE)
    request.setHeader(b"Content-Length", str(len(body)).encode())
    return body
