"""The CWMP SOAP codec: bytes <-> ``Envelope`` (header fields + one ``rpc`` message).

Owns the SOAP 1.1 envelope format used by TR-069 in both directions (ACS and CPE simulator):
namespaces and CWMP versions, the hardened XML parser, decoding every ``acs.cwmp.rpc`` message
from real-world (often non-conforming) CPE XML, and encoding messages as schema-valid XML.

Sans-IO: pure functions of bytes and dataclasses. ``parse`` raises only ``SoapError``.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from lxml import etree

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
_INT_RE = re.compile(rb"[+-]?[0-9]+\Z")
# XML 1.0 forbids most C0 controls, lone surrogates and U+FFFE/U+FFFF even as references.
_INVALID_XML_CHARS = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_INT_MIN = -(2**63)
_INT_MAX = 2**63 - 1  # the store keeps ints in SQLite INTEGER columns


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
        message = _INVALID_XML_CHARS.sub("?", message)[:500]
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


# =========================================================================================
# Parsing
# =========================================================================================

_local = threading.local()


def _parser() -> etree.XMLParser:
    # lxml parsers must not be shared between threads; one per thread, reused.
    p: etree.XMLParser | None = getattr(_local, "parser", None)
    if p is None:
        p = etree.XMLParser(
            resolve_entities=False,
            no_network=True,
            load_dtd=False,
            dtd_validation=False,
            huge_tree=False,
            remove_blank_text=True,
        )
        _local.parser = p
    return p


# True when an element is nested deeper than MAX_DEPTH (the root is at depth 1).
_TOO_DEEP_EXPR = "boolean(" + "/*" * (MAX_DEPTH + 1) + ")"


def _too_deep(root: etree._Element) -> bool:
    # Compiled XPath evaluators are per thread, like parsers.
    xp: etree.XPath | None = getattr(_local, "too_deep", None)
    if xp is None:
        xp = _local.too_deep = etree.XPath(_TOO_DEEP_EXPR)
    return bool(xp(root))


class _Bad(Exception):
    """Internal: invalid message content; turned into SoapError(8003) by ``parse``."""


# Local names by qualified tag: a CPE uses a few dozen distinct tags, looked up on every
# element of every message. Bounded, since the tags come from the peer.
_LNAMES: dict[str, str] = {}
_LNAMES_MAX = 4096


def _lname(tag: str) -> str:
    name = _LNAMES.get(tag)
    if name is None:
        name = tag.rpartition("}")[2]
        if len(_LNAMES) < _LNAMES_MAX:
            _LNAMES[tag] = name
    return name


def _nsof(tag: str) -> str | None:
    return tag[1:].partition("}")[0] if tag.startswith("{") else None


def _elements(el: etree._Element) -> Iterable[etree._Element]:
    # Skip comments, processing instructions and entity references (lxml filters in C).
    return el.iterchildren(etree.Element)


class _Kids:
    """An element's children looked up by local name (CPEs reorder and qualify them)."""

    __slots__ = ("by_name", "owner")

    def __init__(self, el: etree._Element) -> None:
        self.owner = _lname(el.tag)
        by_name: dict[str, etree._Element] = {}
        for c in el.iterchildren(etree.Element):
            name = _lname(c.tag)
            if name not in by_name:  # the first one counts
                by_name[name] = c
        self.by_name = by_name

    def get(self, name: str) -> etree._Element | None:
        return self.by_name.get(name)

    def need(self, name: str) -> etree._Element:
        c = self.by_name.get(name)
        if c is None:
            raise _Bad(f"{self.owner}: missing {name}")
        return c

    def text(self, name: str, default: str | None = None) -> str:
        c = self.by_name.get(name)
        if c is None:
            if default is None:
                raise _Bad(f"{self.owner}: missing {name}")
            return default
        return c.text or ""

    def integer(self, name: str, default: int | None = None, *, unsigned: bool = False) -> int:
        c = self.by_name.get(name)
        if c is None:
            if default is None:
                raise _Bad(f"{self.owner}: missing {name}")
            return default
        return _to_int(c.text, f"{self.owner}/{name}", unsigned=unsigned)

    def boolean(self, name: str, default: bool | None = None) -> bool:
        c = self.by_name.get(name)
        if c is None:
            if default is None:
                raise _Bad(f"{self.owner}: missing {name}")
            return default
        return _to_bool(c.text, f"{self.owner}/{name}")

    def array(self, name: str) -> list[etree._Element]:
        # Never trust soap-enc:arrayType counts: the members are whatever children are there.
        c = self.by_name.get(name)
        return [] if c is None else list(_elements(c))


def _to_int(text: str | None, what: str, *, unsigned: bool = False) -> int:
    raw = (text or "").strip().encode("ascii", "replace")
    if not _INT_RE.match(raw):
        raise _Bad(f"{what}: not an integer: {(text or '')[:40]!r}")
    v = int(raw)
    if v < (0 if unsigned else _INT_MIN) or v > _INT_MAX:
        raise _Bad(f"{what}: integer out of range: {v}")
    return v


def _to_bool(text: str | None, what: str) -> bool:
    t = (text or "").strip().lower()
    if t in ("true", "1"):
        return True
    if t in ("false", "0"):
        return False
    raise _Bad(f"{what}: not a boolean: {(text or '')[:40]!r}")


def _strings(kids: _Kids, name: str) -> tuple[str, ...]:
    return tuple(m.text or "" for m in kids.array(name))


def _xsi_type(value_el: etree._Element) -> str:
    raw = value_el.get(f"{{{NS_XSI}}}type")
    if raw is None:
        return "xsd:string"  # missing xsi:type = string (GA does the same)
    raw = raw.strip()
    prefix, sep, local = raw.rpartition(":")
    if not sep:
        return f"xsd:{raw}" if raw else "xsd:string"
    uri = value_el.nsmap.get(prefix)
    # Keep the conventional prefixes whatever the CPE called them: CPEs and ACSs compare
    # xsi:type values textually ("xsd:unsignedInt").
    if uri == NS_XSD or uri is None:
        return f"xsd:{local}"
    if uri == NS_SOAP_ENC:
        return f"soap-enc:{local}"
    return raw


def _parameter_values(kids: _Kids, name: str = "ParameterList") -> tuple[rpc.ParameterValue, ...]:
    # The hottest loop of the codec (every Inform, every GetParameterValuesResponse): the
    # two children are picked without building a _Kids per struct; same rules (first Name
    # and first Value count, in any order and namespace).
    out = []
    container = kids.get(name)
    if container is None:
        return ()
    for m in container.iterchildren(etree.Element):
        name_el = value_el = None
        for c in m.iterchildren(etree.Element):
            local = _lname(c.tag)
            if local == "Name":
                if name_el is None:
                    name_el = c
            elif local == "Value" and value_el is None:
                value_el = c
        if name_el is None:
            raise _Bad(f"{_lname(m.tag)}: missing Name")
        out.append(
            rpc.ParameterValue(
                name=name_el.text or "",
                value="" if value_el is None else (value_el.text or ""),
                type="xsd:string" if value_el is None else _xsi_type(value_el),
            )
        )
    return tuple(out)


def _fault_struct(kids: _Kids) -> rpc.FaultStruct:
    fs = kids.get("FaultStruct")
    if fs is None:
        return rpc.FaultStruct()
    k = _Kids(fs)
    return rpc.FaultStruct(code=k.integer("FaultCode", 0), string=k.text("FaultString", ""))


def _d_empty(cls: type) -> Callable[[_Kids], Any]:
    return lambda _k: cls()


def _d_inform(k: _Kids) -> rpc.Inform:
    d = _Kids(k.need("DeviceId"))
    if d.get("OUI") is None or d.get("SerialNumber") is None:
        raise _Bad("Inform: DeviceId needs OUI and SerialNumber")
    events = []
    for m in k.array("Event"):
        ek = _Kids(m)
        # An EventStruct without EventCode is tolerated (seen in the field); code "".
        events.append(
            rpc.EventStruct(
                code=ek.text("EventCode", "").strip(), command_key=ek.text("CommandKey", "")
            )
        )
    return rpc.Inform(
        device_id=rpc.DeviceId(
            manufacturer=d.text("Manufacturer", ""),
            oui=d.text("OUI").strip(),
            product_class=d.text("ProductClass", ""),
            serial_number=d.text("SerialNumber").strip(),
        ),
        events=tuple(events),
        current_time=k.text("CurrentTime", rpc.UNKNOWN_TIME).strip(),
        retry_count=k.integer("RetryCount", 0, unsigned=True),
        parameters=_parameter_values(k),
        max_envelopes=k.integer("MaxEnvelopes", 1, unsigned=True),
    )


def _d_transfer_complete(k: _Kids) -> rpc.TransferComplete:
    return rpc.TransferComplete(
        command_key=k.text("CommandKey", ""),
        fault=_fault_struct(k),
        start_time=k.text("StartTime", rpc.UNKNOWN_TIME).strip(),
        complete_time=k.text("CompleteTime", rpc.UNKNOWN_TIME).strip(),
    )


def _d_autonomous_transfer_complete(k: _Kids) -> rpc.AutonomousTransferComplete:
    return rpc.AutonomousTransferComplete(
        announce_url=k.text("AnnounceURL", ""),
        transfer_url=k.text("TransferURL", ""),
        is_download=k.boolean("IsDownload"),
        file_type=k.text("FileType"),
        file_size=k.integer("FileSize", 0, unsigned=True),
        target_file_name=k.text("TargetFileName", ""),
        fault=_fault_struct(k),
        start_time=k.text("StartTime", rpc.UNKNOWN_TIME).strip(),
        complete_time=k.text("CompleteTime", rpc.UNKNOWN_TIME).strip(),
    )


def _d_request_download(k: _Kids) -> rpc.RequestDownload:
    args = []
    for m in k.array("FileTypeArg"):
        ak = _Kids(m)
        args.append((ak.text("Name", ""), ak.text("Value", "")))
    return rpc.RequestDownload(file_type=k.text("FileType"), file_type_args=tuple(args))


def _d_parameter_attributes(k: _Kids) -> rpc.GetParameterAttributesResponse:
    out = []
    for m in k.array("ParameterList"):
        a = _Kids(m)
        out.append(
            rpc.ParameterAttribute(
                name=a.text("Name"),
                notification=a.integer("Notification"),
                access_list=_strings(a, "AccessList"),
            )
        )
    return rpc.GetParameterAttributesResponse(parameters=tuple(out))


def _d_set_parameter_attributes(k: _Kids) -> rpc.SetParameterAttributes:
    out = []
    for m in k.array("ParameterList"):
        a = _Kids(m)
        out.append(
            rpc.SetParameterAttributesStruct(
                name=a.text("Name"),
                notification_change=a.boolean("NotificationChange"),
                notification=a.integer("Notification"),
                access_list_change=a.boolean("AccessListChange", False),
                access_list=_strings(a, "AccessList"),
            )
        )
    return rpc.SetParameterAttributes(parameters=tuple(out))


def _d_download(k: _Kids) -> rpc.Download:
    return rpc.Download(
        command_key=k.text("CommandKey", ""),
        file_type=k.text("FileType"),
        url=k.text("URL"),
        username=k.text("Username", ""),
        password=k.text("Password", ""),
        file_size=k.integer("FileSize", 0, unsigned=True),
        target_file_name=k.text("TargetFileName", ""),
        delay_seconds=k.integer("DelaySeconds", 0, unsigned=True),
        success_url=k.text("SuccessURL", ""),
        failure_url=k.text("FailureURL", ""),
    )


def _d_upload(k: _Kids) -> rpc.Upload:
    return rpc.Upload(
        command_key=k.text("CommandKey", ""),
        file_type=k.text("FileType"),
        url=k.text("URL"),
        username=k.text("Username", ""),
        password=k.text("Password", ""),
        delay_seconds=k.integer("DelaySeconds", 0, unsigned=True),
    )


_DECODERS: dict[type, Callable[[_Kids], Any]] = {
    rpc.GetRPCMethods: _d_empty(rpc.GetRPCMethods),
    rpc.GetRPCMethodsResponse: lambda k: rpc.GetRPCMethodsResponse(
        methods=tuple(s.strip() for s in _strings(k, "MethodList"))
    ),
    rpc.GetParameterNames: lambda k: rpc.GetParameterNames(
        path=k.text("ParameterPath", ""), next_level=k.boolean("NextLevel")
    ),
    rpc.GetParameterNamesResponse: lambda k: rpc.GetParameterNamesResponse(
        parameters=tuple(
            rpc.ParameterInfo(name=(pk := _Kids(m)).text("Name"), writable=pk.boolean("Writable"))
            for m in k.array("ParameterList")
        )
    ),
    rpc.GetParameterValues: lambda k: rpc.GetParameterValues(names=_strings(k, "ParameterNames")),
    rpc.GetParameterValuesResponse: lambda k: rpc.GetParameterValuesResponse(
        parameters=_parameter_values(k)
    ),
    rpc.SetParameterValues: lambda k: rpc.SetParameterValues(
        parameters=_parameter_values(k), parameter_key=k.text("ParameterKey", "")
    ),
    rpc.SetParameterValuesResponse: lambda k: rpc.SetParameterValuesResponse(
        status=k.integer("Status")
    ),
    rpc.GetParameterAttributes: lambda k: rpc.GetParameterAttributes(
        names=_strings(k, "ParameterNames")
    ),
    rpc.GetParameterAttributesResponse: _d_parameter_attributes,
    rpc.SetParameterAttributes: _d_set_parameter_attributes,
    rpc.SetParameterAttributesResponse: _d_empty(rpc.SetParameterAttributesResponse),
    rpc.AddObject: lambda k: rpc.AddObject(
        object_name=k.text("ObjectName"), parameter_key=k.text("ParameterKey", "")
    ),
    rpc.AddObjectResponse: lambda k: rpc.AddObjectResponse(
        instance_number=k.integer("InstanceNumber", unsigned=True), status=k.integer("Status")
    ),
    rpc.DeleteObject: lambda k: rpc.DeleteObject(
        object_name=k.text("ObjectName"), parameter_key=k.text("ParameterKey", "")
    ),
    rpc.DeleteObjectResponse: lambda k: rpc.DeleteObjectResponse(status=k.integer("Status")),
    rpc.Reboot: lambda k: rpc.Reboot(command_key=k.text("CommandKey", "")),
    rpc.RebootResponse: _d_empty(rpc.RebootResponse),
    rpc.FactoryReset: _d_empty(rpc.FactoryReset),
    rpc.FactoryResetResponse: _d_empty(rpc.FactoryResetResponse),
    rpc.Download: _d_download,
    rpc.DownloadResponse: lambda k: rpc.DownloadResponse(
        status=k.integer("Status"),
        start_time=k.text("StartTime", rpc.UNKNOWN_TIME).strip(),
        complete_time=k.text("CompleteTime", rpc.UNKNOWN_TIME).strip(),
    ),
    rpc.Upload: _d_upload,
    rpc.UploadResponse: lambda k: rpc.UploadResponse(
        status=k.integer("Status"),
        start_time=k.text("StartTime", rpc.UNKNOWN_TIME).strip(),
        complete_time=k.text("CompleteTime", rpc.UNKNOWN_TIME).strip(),
    ),
    rpc.ScheduleInform: lambda k: rpc.ScheduleInform(
        delay_seconds=k.integer("DelaySeconds", unsigned=True), command_key=k.text("CommandKey", "")
    ),
    rpc.ScheduleInformResponse: _d_empty(rpc.ScheduleInformResponse),
    rpc.Inform: _d_inform,
    rpc.InformResponse: lambda k: rpc.InformResponse(
        max_envelopes=k.integer("MaxEnvelopes", 1, unsigned=True)
    ),
    rpc.TransferComplete: _d_transfer_complete,
    rpc.TransferCompleteResponse: _d_empty(rpc.TransferCompleteResponse),
    rpc.AutonomousTransferComplete: _d_autonomous_transfer_complete,
    rpc.AutonomousTransferCompleteResponse: _d_empty(rpc.AutonomousTransferCompleteResponse),
    rpc.RequestDownload: _d_request_download,
    rpc.RequestDownloadResponse: _d_empty(rpc.RequestDownloadResponse),
    rpc.Kicked: lambda k: rpc.Kicked(
        command=k.text("Command", ""),
        referer=k.text("Referer", ""),
        arg=k.text("Arg", ""),
        next=k.text("Next", ""),
    ),
    rpc.KickedResponse: lambda k: rpc.KickedResponse(next_url=k.text("NextURL", "")),
}


def _d_fault(body_el: etree._Element) -> tuple[rpc.Fault, str | None]:
    """A SOAP Fault -> (rpc.Fault, namespace of its cwmp:Fault detail)."""
    k = _Kids(body_el)
    code_text = k.text("faultcode", "Server").strip()
    # "Client", "soap-env:Client", "SOAP-ENV:Client.Auth"... all mean the requester erred.
    faultcode = "Client" if code_text.rpartition(":")[2].startswith("Client") else "Server"
    detail = k.get("detail")
    cwmp_fault = None if detail is None else _Kids(detail).get("Fault")
    if cwmp_fault is None:
        raise _Bad("SOAP Fault without a cwmp:Fault detail")
    f = _Kids(cwmp_fault)
    spv = []
    for m in _elements(cwmp_fault):
        if _lname(m.tag) == "SetParameterValuesFault":
            sk = _Kids(m)
            spv.append(
                rpc.SetParameterValuesFault(
                    name=sk.text("ParameterName", ""),
                    code=sk.integer("FaultCode"),
                    string=sk.text("FaultString", ""),
                )
            )
    fault = rpc.Fault(
        code=f.integer("FaultCode"),
        string=f.text("FaultString", ""),
        faultcode=faultcode,
        set_parameter_values_faults=tuple(spv),
    )
    return fault, _nsof(cwmp_fault.tag)


def _prepare(data: bytes) -> bytes:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise SoapError(f"envelope must be bytes, not {type(data).__name__}")
    if len(data) > MAX_ENVELOPE_BYTES:
        raise SoapError(
            f"envelope larger than {MAX_ENVELOPE_BYTES} bytes", fault_code=8004, http_status=413
        )
    data = bytes(data)
    # Field quirks: whitespace before <?xml (a syntax error for libxml2) and trailing NULs.
    # Not for UTF-16 (BOM-marked), where every other byte is a NUL; libxml2 decodes it.
    if not data.startswith((b"\xff\xfe", b"\xfe\xff")):
        if data.startswith(b"\xef\xbb\xbf"):
            data = data[3:]
        data = data.lstrip().rstrip(b"\0 \t\r\n")
    if not data:
        raise SoapError("empty envelope")
    # Refuse DTDs outright so entity expansion (billion laughs) and XXE can't happen.
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise SoapError("DOCTYPE/ENTITY declarations are not allowed")
    return data


def parse(data: bytes) -> Envelope:
    """Decode one CWMP SOAP envelope. Raises ``SoapError`` and nothing else."""
    try:
        return _parse(data)
    except SoapError:
        raise
    except _Bad as e:
        raise SoapError(str(e)) from None
    except Exception as e:  # never let lxml/ValueError/RecursionError... escape
        raise SoapError(f"cannot decode envelope: {type(e).__name__}: {e}"[:300]) from None


def _parse(data: bytes) -> Envelope:
    data = _prepare(data)
    try:
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as e:
        raise SoapError(f"malformed XML: {e}"[:300]) from None
    if root.getroottree().docinfo.internalDTD is not None:
        raise SoapError("DOCTYPE declarations are not allowed")
    if _too_deep(root):
        raise SoapError(f"XML nested deeper than {MAX_DEPTH} levels", fault_code=8004)

    if not isinstance(root.tag, str) or _lname(root.tag) != "Envelope":
        raise SoapError("not a SOAP Envelope")
    env_ns = _nsof(root.tag)
    if env_ns != NS_SOAP_ENV:
        if env_ns == NS_SOAP12_ENV:
            raise SoapError("SOAP 1.2 envelopes are not supported (CWMP uses SOAP 1.1)")
        raise SoapError(f"wrong SOAP envelope namespace: {env_ns!r}")

    header_el = body_el = None
    for c in _elements(root):
        if c.tag == f"{{{NS_SOAP_ENV}}}Header" and header_el is None:
            header_el = c
        elif c.tag == f"{{{NS_SOAP_ENV}}}Body" and body_el is None:
            body_el = c

    header, id_ns = _parse_header(header_el)
    if body_el is None:
        raise SoapError("SOAP Envelope without Body", cwmp_id=header.id, ns=id_ns)
    items = list(_elements(body_el))
    if not items:
        raise SoapError("empty SOAP Body", cwmp_id=header.id, ns=id_ns)
    if len(items) > 1:
        raise SoapError("SOAP Body with more than one element", cwmp_id=header.id, ns=id_ns)
    item = items[0]
    ns, name = _nsof(item.tag), _lname(item.tag)

    try:
        if ns == NS_SOAP_ENV and name == "Fault":
            fault, detail_ns = _d_fault(item)
            msg_ns = id_ns or (detail_ns if is_cwmp_namespace(detail_ns) else None)
            return Envelope(message=fault, header=header, ns=msg_ns or CWMP_NS["1.0"])
        if not is_cwmp_namespace(ns):
            raise SoapError(
                f"body element {name!r} is not in a CWMP namespace (namespace {ns!r})",
                cwmp_id=header.id,
                ns=id_ns,
            )
        assert ns is not None
        cls = rpc.MESSAGE_TYPES.get(name)
        if cls is None:
            raise SoapError(
                f"method not supported: {name}", fault_code=8000, cwmp_id=header.id, ns=ns
            )
        message = _DECODERS[cls](_Kids(item))
    except _Bad as e:
        raise SoapError(
            str(e), cwmp_id=header.id, ns=ns if is_cwmp_namespace(ns) else id_ns
        ) from None
    return Envelope(message=message, header=header, ns=ns)


def _parse_header(header_el: etree._Element | None) -> tuple[Header, str | None]:
    """Header fields plus the namespace of cwmp:ID (if any)."""
    if header_el is None:
        return Header(), None
    found: dict[str, etree._Element] = {}
    for c in _elements(header_el):
        ns = _nsof(c.tag)
        if ns is None or is_cwmp_namespace(ns):
            found.setdefault(_lname(c.tag), c)
    id_el = found.get("ID")
    cwmp_id = None if id_el is None else (id_el.text or "")
    id_ns = None if id_el is None else _nsof(id_el.tag)
    try:
        hold = found.get("HoldRequests")
        timeout = found.get("SessionTimeout")
        sup = found.get("SupportedCWMPVersions")
        use = found.get("UseCWMPVersion")
        nmr = found.get("NoMoreRequests")
        header = Header(
            id=cwmp_id,
            hold_requests=None if hold is None else _to_bool(hold.text, "HoldRequests"),
            session_timeout=None
            if timeout is None
            else _to_int(timeout.text, "SessionTimeout", unsigned=True),
            supported_versions=None if sup is None else (sup.text or "").strip(),
            use_version=None if use is None else (use.text or "").strip(),
            # Some stacks send an empty <NoMoreRequests/>; presence alone means "yes".
            no_more_requests=nmr is not None
            and ((nmr.text or "").strip().lower() not in ("0", "false")),
        )
    except _Bad as e:
        raise SoapError(
            str(e), cwmp_id=cwmp_id, ns=id_ns if is_cwmp_namespace(id_ns) else None
        ) from None
    return header, (id_ns if is_cwmp_namespace(id_ns) else None)


# =========================================================================================
# Serialization (string building: fast, and the output is schema-valid by construction)
# =========================================================================================

_TEXT_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#13;"})
_ATTR_ESCAPES = str.maketrans(
    {
        "&": "&amp;",
        "<": "&lt;",
        ">": "&gt;",
        '"': "&quot;",
        "\r": "&#13;",
        "\n": "&#10;",
        "\t": "&#9;",
    }
)


def _check_chars(s: str) -> None:
    m = _INVALID_XML_CHARS.search(s)
    if m is not None:
        raise ValueError(
            f"character U+{ord(m.group()):04X} cannot be represented in XML (in {s[:60]!r})"
        )


def _x(s: str) -> str:
    """Escape element text (``\\r`` as a reference so it survives end-of-line normalization)."""
    if not isinstance(s, str):
        raise TypeError(f"expected str, got {type(s).__name__}: {s!r}")
    _check_chars(s)
    return s.translate(_TEXT_ESCAPES)


def _a(s: str) -> str:
    if not isinstance(s, str):
        raise TypeError(f"expected str, got {type(s).__name__}: {s!r}")
    _check_chars(s)
    return s.translate(_ATTR_ESCAPES)


def _i(v: int) -> str:
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError(f"expected int, got {type(v).__name__}: {v!r}")
    return str(v)


def _b(v: bool) -> str:
    if not isinstance(v, bool):
        raise TypeError(f"expected bool, got {type(v).__name__}: {v!r}")
    return "true" if v else "false"


def _el(name: str, text: str) -> str:
    return f"<{name}>{text}</{name}>"


def _array(name: str, item_type: str, items: list[str]) -> str:
    return (
        f'<{name} soap-enc:arrayType="{item_type}[{len(items)}]">' + "".join(items) + f"</{name}>"
    )


def _string_array(name: str, values: Iterable[str]) -> str:
    return _array(name, "xsd:string", [_el("string", _x(v)) for v in values])


def _pv_list(name: str, params: Iterable[rpc.ParameterValue]) -> str:
    return _array(
        name,
        "cwmp:ParameterValueStruct",
        [
            f"<ParameterValueStruct><Name>{_x(p.name)}</Name>"
            f'<Value xsi:type="{_a(p.type)}">{_x(p.value)}</Value></ParameterValueStruct>'
            for p in params
        ],
    )


def _fault_struct_xml(f: rpc.FaultStruct) -> str:
    return (
        f"<FaultStruct><FaultCode>{_i(f.code)}</FaultCode>"
        f"<FaultString>{_x(f.string)}</FaultString></FaultStruct>"
    )


def _fields(m: Any, *spec: tuple[str, str, str]) -> str:
    """Simple scalar children: (element name, attribute, kind s|i|b)."""
    out = []
    for elname, attr, kind in spec:
        v = getattr(m, attr)
        text = _x(v) if kind == "s" else _i(v) if kind == "i" else _b(v)
        out.append(f"<{elname}>{text}</{elname}>")
    return "".join(out)


def _e_inform(m: rpc.Inform) -> str:
    d = m.device_id
    events = _array(
        "Event",
        "cwmp:EventStruct",
        [
            f"<EventStruct><EventCode>{_x(e.code)}</EventCode>"
            f"<CommandKey>{_x(e.command_key)}</CommandKey></EventStruct>"
            for e in m.events
        ],
    )
    return (
        f"<DeviceId><Manufacturer>{_x(d.manufacturer)}</Manufacturer><OUI>{_x(d.oui)}</OUI>"
        f"<ProductClass>{_x(d.product_class)}</ProductClass>"
        f"<SerialNumber>{_x(d.serial_number)}</SerialNumber></DeviceId>"
        f"{events}<MaxEnvelopes>{_i(m.max_envelopes)}</MaxEnvelopes>"
        f"<CurrentTime>{_x(m.current_time)}</CurrentTime><RetryCount>{_i(m.retry_count)}</RetryCount>"
        + _pv_list("ParameterList", m.parameters)
    )


def _e_gpa_response(m: rpc.GetParameterAttributesResponse) -> str:
    return _array(
        "ParameterList",
        "cwmp:ParameterAttributeStruct",
        [
            f"<ParameterAttributeStruct><Name>{_x(p.name)}</Name>"
            f"<Notification>{_i(p.notification)}</Notification>"
            + _string_array("AccessList", p.access_list)
            + "</ParameterAttributeStruct>"
            for p in m.parameters
        ],
    )


def _e_spa(m: rpc.SetParameterAttributes) -> str:
    return _array(
        "ParameterList",
        "cwmp:SetParameterAttributesStruct",
        [
            f"<SetParameterAttributesStruct><Name>{_x(p.name)}</Name>"
            f"<NotificationChange>{_b(p.notification_change)}</NotificationChange>"
            f"<Notification>{_i(p.notification)}</Notification>"
            f"<AccessListChange>{_b(p.access_list_change)}</AccessListChange>"
            + _string_array("AccessList", p.access_list)
            + "</SetParameterAttributesStruct>"
            for p in m.parameters
        ],
    )


def _e_atc(m: rpc.AutonomousTransferComplete) -> str:
    return (
        _fields(
            m,
            ("AnnounceURL", "announce_url", "s"),
            ("TransferURL", "transfer_url", "s"),
            ("IsDownload", "is_download", "b"),
            ("FileType", "file_type", "s"),
            ("FileSize", "file_size", "i"),
            ("TargetFileName", "target_file_name", "s"),
        )
        + _fault_struct_xml(m.fault)
        + _fields(m, ("StartTime", "start_time", "s"), ("CompleteTime", "complete_time", "s"))
    )


def _e_transfer_response(m: rpc.DownloadResponse | rpc.UploadResponse) -> str:
    return _fields(
        m,
        ("Status", "status", "i"),
        ("StartTime", "start_time", "s"),
        ("CompleteTime", "complete_time", "s"),
    )


def _nothing(_m: Any) -> str:
    return ""


_ENCODERS: dict[type, Callable[[Any], str]] = {
    rpc.GetRPCMethods: _nothing,
    rpc.GetRPCMethodsResponse: lambda m: _string_array("MethodList", m.methods),
    rpc.GetParameterNames: lambda m: _fields(
        m, ("ParameterPath", "path", "s"), ("NextLevel", "next_level", "b")
    ),
    rpc.GetParameterNamesResponse: lambda m: _array(
        "ParameterList",
        "cwmp:ParameterInfoStruct",
        [
            f"<ParameterInfoStruct><Name>{_x(p.name)}</Name>"
            f"<Writable>{_b(p.writable)}</Writable></ParameterInfoStruct>"
            for p in m.parameters
        ],
    ),
    rpc.GetParameterValues: lambda m: _string_array("ParameterNames", m.names),
    rpc.GetParameterValuesResponse: lambda m: _pv_list("ParameterList", m.parameters),
    rpc.SetParameterValues: lambda m: (
        _pv_list("ParameterList", m.parameters) + _fields(m, ("ParameterKey", "parameter_key", "s"))
    ),
    rpc.SetParameterValuesResponse: lambda m: _fields(m, ("Status", "status", "i")),
    rpc.GetParameterAttributes: lambda m: _string_array("ParameterNames", m.names),
    rpc.GetParameterAttributesResponse: _e_gpa_response,
    rpc.SetParameterAttributes: _e_spa,
    rpc.SetParameterAttributesResponse: _nothing,
    rpc.AddObject: lambda m: _fields(
        m, ("ObjectName", "object_name", "s"), ("ParameterKey", "parameter_key", "s")
    ),
    rpc.AddObjectResponse: lambda m: _fields(
        m, ("InstanceNumber", "instance_number", "i"), ("Status", "status", "i")
    ),
    rpc.DeleteObject: lambda m: _fields(
        m, ("ObjectName", "object_name", "s"), ("ParameterKey", "parameter_key", "s")
    ),
    rpc.DeleteObjectResponse: lambda m: _fields(m, ("Status", "status", "i")),
    rpc.Reboot: lambda m: _fields(m, ("CommandKey", "command_key", "s")),
    rpc.RebootResponse: _nothing,
    rpc.FactoryReset: _nothing,
    rpc.FactoryResetResponse: _nothing,
    rpc.Download: lambda m: _fields(
        m,
        ("CommandKey", "command_key", "s"),
        ("FileType", "file_type", "s"),
        ("URL", "url", "s"),
        ("Username", "username", "s"),
        ("Password", "password", "s"),
        ("FileSize", "file_size", "i"),
        ("TargetFileName", "target_file_name", "s"),
        ("DelaySeconds", "delay_seconds", "i"),
        ("SuccessURL", "success_url", "s"),
        ("FailureURL", "failure_url", "s"),
    ),
    rpc.DownloadResponse: _e_transfer_response,
    rpc.Upload: lambda m: _fields(
        m,
        ("CommandKey", "command_key", "s"),
        ("FileType", "file_type", "s"),
        ("URL", "url", "s"),
        ("Username", "username", "s"),
        ("Password", "password", "s"),
        ("DelaySeconds", "delay_seconds", "i"),
    ),
    rpc.UploadResponse: _e_transfer_response,
    rpc.ScheduleInform: lambda m: _fields(
        m, ("DelaySeconds", "delay_seconds", "i"), ("CommandKey", "command_key", "s")
    ),
    rpc.ScheduleInformResponse: _nothing,
    rpc.Inform: _e_inform,
    rpc.InformResponse: lambda m: _fields(m, ("MaxEnvelopes", "max_envelopes", "i")),
    rpc.TransferComplete: lambda m: (
        _fields(m, ("CommandKey", "command_key", "s"))
        + _fault_struct_xml(m.fault)
        + _fields(m, ("StartTime", "start_time", "s"), ("CompleteTime", "complete_time", "s"))
    ),
    rpc.TransferCompleteResponse: _nothing,
    rpc.AutonomousTransferComplete: _e_atc,
    rpc.AutonomousTransferCompleteResponse: _nothing,
    rpc.RequestDownload: lambda m: (
        _fields(m, ("FileType", "file_type", "s"))
        + _array(
            "FileTypeArg",
            "cwmp:ArgStruct",
            [
                f"<ArgStruct><Name>{_x(n)}</Name><Value>{_x(v)}</Value></ArgStruct>"
                for n, v in m.file_type_args
            ],
        )
    ),
    rpc.RequestDownloadResponse: _nothing,
    rpc.Kicked: lambda m: _fields(
        m,
        ("Command", "command", "s"),
        ("Referer", "referer", "s"),
        ("Arg", "arg", "s"),
        ("Next", "next", "s"),
    ),
    rpc.KickedResponse: lambda m: _fields(m, ("NextURL", "next_url", "s")),
}


def _e_fault(m: rpc.Fault) -> str:
    if m.faultcode not in ("Client", "Server"):
        raise ValueError(f"Fault.faultcode must be 'Client' or 'Server', not {m.faultcode!r}")
    spv = "".join(
        f"<SetParameterValuesFault><ParameterName>{_x(f.name)}</ParameterName>"
        f"<FaultCode>{_i(f.code)}</FaultCode><FaultString>{_x(f.string)}</FaultString>"
        "</SetParameterValuesFault>"
        for f in m.set_parameter_values_faults
    )
    return (
        f"<soap-env:Fault><faultcode>{m.faultcode}</faultcode><faultstring>CWMP fault</faultstring>"
        f"<detail><cwmp:Fault><FaultCode>{_i(m.code)}</FaultCode>"
        f"<FaultString>{_x(m.string)}</FaultString>{spv}</cwmp:Fault></detail></soap-env:Fault>"
    )


def _hdr(name: str, must_understand: str, text: str) -> str:
    return f'<cwmp:{name} soap-env:mustUnderstand="{must_understand}">{text}</cwmp:{name}>'


def _e_header(h: Header) -> str:
    # mustUnderstand values are the ones the XSDs fix for each header element.
    parts = []
    if h.id is not None:
        parts.append(_hdr("ID", "1", _x(h.id)))
    if h.hold_requests is not None:
        parts.append(_hdr("HoldRequests", "1", _b(h.hold_requests)))
    if h.session_timeout is not None:
        parts.append(_hdr("SessionTimeout", "0", _i(h.session_timeout)))
    if h.supported_versions is not None:
        parts.append(_hdr("SupportedCWMPVersions", "0", _x(h.supported_versions)))
    if h.use_version is not None:
        parts.append(_hdr("UseCWMPVersion", "1", _x(h.use_version)))
    if h.no_more_requests:
        parts.append("<cwmp:NoMoreRequests>1</cwmp:NoMoreRequests>")
    return f"<soap-env:Header>{''.join(parts)}</soap-env:Header>" if parts else ""


def serialize(envelope: Envelope) -> bytes:
    """Encode an Envelope as UTF-8 XML (with declaration and a trailing newline).

    Raises ValueError/TypeError for values XML cannot carry (e.g. control characters) or of
    the wrong type; never emits malformed XML.
    """
    if not is_cwmp_namespace(envelope.ns):
        raise ValueError(f"not a CWMP namespace: {envelope.ns!r}")
    m = envelope.message
    if isinstance(m, rpc.Fault):
        body = _e_fault(m)
    else:
        enc = _ENCODERS.get(type(m))
        if enc is None:
            raise TypeError(f"not a CWMP message: {type(m).__name__}")
        name = type(m).__name__
        inner = enc(m)
        body = f"<cwmp:{name}>{inner}</cwmp:{name}>" if inner else f"<cwmp:{name}/>"
    return (
        _envelope_head(envelope.ns)
        + f"{_e_header(envelope.header)}<soap-env:Body>{body}</soap-env:Body></soap-env:Envelope>\n"
    ).encode()


def _envelope_open(ns: str) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<soap-env:Envelope xmlns:soap-env="{NS_SOAP_ENV}" xmlns:soap-enc="{NS_SOAP_ENC}" '
        f'xmlns:xsd="{NS_XSD}" xmlns:xsi="{NS_XSI}" xmlns:cwmp="{ns}">'
    )


# The envelope's opening for each standard namespace, built once (every message needs one).
_ENVELOPE_HEADS: dict[str, str] = {ns: _envelope_open(ns) for ns in CWMP_NS.values()}


def _envelope_head(ns: str) -> str:
    head = _ENVELOPE_HEADS.get(ns)
    return _envelope_open(ns) if head is None else head


# Fixed InformResponses (the answer to every Inform) by (namespace, cwmp:ID, HoldRequests,
# UseCWMPVersion) minus the ID: only the ID differs between sessions.
_INFORM_RESPONSE_PARTS: dict[tuple[str, bool, str | None], tuple[bytes, bytes]] = {}


def inform_response(
    ns: str, cwmp_id: str | None, *, hold_requests: bool = False, use_version: str | None = None
) -> bytes:
    """The InformResponse (MaxEnvelopes 1), byte for byte what ``serialize`` gives for
    ``Envelope(InformResponse(1), Header(id, hold_requests or None, use_version=...), ns)``,
    from a cached template: only the cwmp:ID is escaped and inserted per call."""
    if cwmp_id is None:
        header = Header(hold_requests=True if hold_requests else None, use_version=use_version)
        return serialize(Envelope(rpc.InformResponse(max_envelopes=1), header, ns))
    key = (ns, hold_requests, use_version)
    parts = _INFORM_RESPONSE_PARTS.get(key)
    if parts is None:
        sample = serialize(
            Envelope(
                rpc.InformResponse(max_envelopes=1),
                Header(
                    id="",
                    hold_requests=True if hold_requests else None,
                    use_version=use_version,
                ),
                ns,
            )
        ).decode()
        # With an empty ID the text goes right before the only "</cwmp:ID>": split there.
        at = sample.index("</cwmp:ID>")
        parts = (sample[:at].encode(), sample[at:].encode())
        if ns in _ENVELOPE_HEADS and len(_INFORM_RESPONSE_PARTS) < 64:
            _INFORM_RESPONSE_PARTS[key] = parts
    return parts[0] + _x(cwmp_id).encode() + parts[1]
