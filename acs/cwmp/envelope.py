"""The CWMP SOAP envelope's vocabulary, shared by the decoder and the encoder.

Owns the namespaces and CWMP versions (``CWMP_NS``, ``version_of``), the size and depth
limits, the ``Header``/``Envelope`` dataclasses both directions use and ``SoapError``, the
one exception the decoder raises. Sans-IO.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from acs.cwmp import rpc

NS_SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
NS_SOAP_ENC = "http://schemas.xmlsoap.org/soap/encoding/"
NS_XSD = "http://www.w3.org/2001/XMLSchema"
NS_XSI = "http://www.w3.org/2001/XMLSchema-instance"
NS_SOAP12_ENV = "http://www.w3.org/2003/05/soap-envelope"

# CWMP 1.3 and 1.4 deliberately keep the 1.2 namespace (XSD-1.3/1.4 "extend namespace v1.2").
CWMP_NS: dict[str, str] = {
    "1.0": "urn:dslforum-org:cwmp-1-0",
    "1.1": "urn:dslforum-org:cwmp-1-1",
    "1.2": "urn:dslforum-org:cwmp-1-2",
    "1.3": "urn:dslforum-org:cwmp-1-2",
    "1.4": "urn:dslforum-org:cwmp-1-2",
}

MAX_ENVELOPE_BYTES = 8 * 1024 * 1024  # bodies above this are refused
MAX_DEPTH = 64  # deeper element nesting is refused

_CWMP_NS_RE = re.compile(r"urn:dslforum-org:cwmp-(\d{1,3})-(\d{1,3})\Z")
# XML 1.0 forbids most C0 controls, lone surrogates and U+FFFE/U+FFFF even as references.
INVALID_XML_CHARS = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


@dataclass(frozen=True)
class Header:
    id: str | None = None  # cwmp:ID (echoed by the peer's response; may be absent)
    hold_requests: bool | None = None  # cwmp:HoldRequests (ACS -> CPE only)
    session_timeout: int | None = None  # cwmp:SessionTimeout (CPE Inform, CWMP 1.3+)
    supported_versions: str | None = None  # cwmp:SupportedCWMPVersions (CPE Inform, 1.4)
    use_version: str | None = None  # cwmp:UseCWMPVersion (InformResponse, 1.4)
    no_more_requests: bool = False  # deprecated; parsed and ignored


@dataclass(frozen=True)
class Envelope:
    message: rpc.Message  # exactly one body element
    header: Header = Header()
    ns: str = CWMP_NS["1.0"]  # the cwmp namespace URI used (as seen on the wire)


class SoapError(Exception):
    """Input that cannot be turned into an Envelope.

    `fault_code` is the CWMP 8000-series code the ACS should answer with (8000 method not
    supported, 8003 invalid arguments, 8004 resources exceeded, 8002 internal), `http_status`
    the status to use when no fault can be sent (400, or 413 for size). `cwmp_id` is the
    cwmp:ID if it could be read, `ns` the cwmp namespace if it could be read (so the fault can
    be sent in the peer's version).
    """

    def __init__(
        self,
        message: str,
        *,
        fault_code: int = 8003,
        http_status: int = 400,
        cwmp_id: str | None = None,
        ns: str | None = None,
    ) -> None:
        # Callers echo the message in a Fault's FaultString: keep it XML-safe and short.
        message = INVALID_XML_CHARS.sub("?", message)[:500]
        super().__init__(message)
        self.message = message
        self.fault_code = fault_code
        self.http_status = http_status
        self.cwmp_id = cwmp_id
        self.ns = ns

    def __repr__(self) -> str:
        return (
            f"SoapError({self.message!r}, fault_code={self.fault_code}, "
            f"http_status={self.http_status}, cwmp_id={self.cwmp_id!r}, ns={self.ns!r})"
        )


def is_cwmp_namespace(ns: str | None) -> bool:
    """True for any ``urn:dslforum-org:cwmp-<maj>-<min>`` (devices send 1-3, 1-4 too)."""
    return ns is not None and _CWMP_NS_RE.match(ns) is not None


def version_of(ns: str) -> str:
    """``"urn:dslforum-org:cwmp-1-2"`` -> ``"1.2"``; raises ValueError for a non-cwmp URI."""
    m = _CWMP_NS_RE.match(ns)
    if m is None:
        raise ValueError(f"not a CWMP namespace: {ns!r}")
    return f"{int(m.group(1))}.{int(m.group(2))}"
