"""The CWMP SOAP codec: bytes <-> ``Envelope`` (header fields + one ``rpc`` message).

Owns the SOAP 1.1 envelope format used by TR-069 in both directions (ACS and CPE simulator)
and is the codec's one entry point: ``parse`` (here: the hardened XML parser, decoding every
``acs.cwmp.rpc`` message from real-world, often non-conforming, CPE XML) and ``serialize`` /
``inform_response`` (:mod:`acs.cwmp.soap_encode`), over the vocabulary of
:mod:`acs.cwmp.envelope` (namespaces, versions, ``Header``, ``Envelope``, ``SoapError``),
which it re-exports.

Sans-IO: pure functions of bytes and dataclasses. ``parse`` raises only ``SoapError``.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable
from typing import Any

from lxml import etree

from acs.cwmp import rpc
from acs.cwmp.envelope import (
    CWMP_NS,
    MAX_DEPTH,
    MAX_ENVELOPE_BYTES,
    NS_SOAP12_ENV,
    NS_SOAP_ENC,
    NS_SOAP_ENV,
    NS_XSD,
    NS_XSI,
    Envelope,
    Header,
    SoapError,
    is_cwmp_namespace,
    version_of,
)
from acs.cwmp.soap_encode import inform_response, serialize

__all__ = [
    "CWMP_NS",
    "MAX_DEPTH",
    "MAX_ENVELOPE_BYTES",
    "NS_SOAP12_ENV",
    "NS_SOAP_ENC",
    "NS_SOAP_ENV",
    "NS_XSD",
    "NS_XSI",
    "Envelope",
    "Header",
    "SoapError",
    "inform_response",
    "is_cwmp_namespace",
    "parse",
    "serialize",
    "version_of",
]

_INT_RE = re.compile(rb"[+-]?[0-9]+\Z")
_INT_MIN = -(2**63)
_INT_MAX = 2**63 - 1  # the store keeps ints in SQLite INTEGER columns

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

    __slots__ = ("by_name", "el", "owner")

    def __init__(self, el: etree._Element) -> None:
        self.el = el
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

    def every(self, name: str) -> list[etree._Element]:
        """Every child called ``name``: an element repeated in place of a SOAP array."""
        return [c for c in _elements(self.el) if _lname(c.tag) == name]

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


def _transfer(k: _Kids, *, download: bool) -> dict[str, Any]:
    """The fields Download, Upload and ScheduleDownload share (the first two not in Upload)."""
    fields: dict[str, Any] = {
        "command_key": k.text("CommandKey", ""),
        "file_type": k.text("FileType"),
        "url": k.text("URL"),
        "username": k.text("Username", ""),
        "password": k.text("Password", ""),
    }
    if download:
        fields["file_size"] = k.integer("FileSize", 0, unsigned=True)
        fields["target_file_name"] = k.text("TargetFileName", "")
    return fields


def _d_download(k: _Kids) -> rpc.Download:
    return rpc.Download(
        **_transfer(k, download=True),
        delay_seconds=k.integer("DelaySeconds", 0, unsigned=True),
        success_url=k.text("SuccessURL", ""),
        failure_url=k.text("FailureURL", ""),
    )


def _d_upload(k: _Kids) -> rpc.Upload:
    return rpc.Upload(
        **_transfer(k, download=False), delay_seconds=k.integer("DelaySeconds", 0, unsigned=True)
    )


def _d_schedule_download(k: _Kids) -> rpc.ScheduleDownload:
    return rpc.ScheduleDownload(
        **_transfer(k, download=True),
        time_windows=tuple(
            rpc.TimeWindow(
                window_start=(w := _Kids(m)).integer("WindowStart", unsigned=True),
                window_end=w.integer("WindowEnd", unsigned=True),
                mode=w.text("WindowMode"),
                user_message=w.text("UserMessage", ""),
                max_retries=w.integer("MaxRetries", -1),
            )
            for m in k.array("TimeWindowList")
        ),
    )


def _d_all_queued_transfers(k: _Kids) -> rpc.GetAllQueuedTransfersResponse:
    return rpc.GetAllQueuedTransfersResponse(
        transfers=tuple(
            rpc.AllQueuedTransfer(
                command_key=(t := _Kids(m)).text("CommandKey", ""),
                state=t.integer("State"),
                is_download=t.boolean("IsDownload"),
                file_type=t.text("FileType", ""),
                file_size=t.integer("FileSize", 0, unsigned=True),
                target_file_name=t.text("TargetFileName", ""),
            )
            for m in k.array("TransferList")
        )
    )


def _d_du_operation(el: etree._Element) -> rpc.DUOperation:
    k = _Kids(el)
    raw = (el.get(f"{{{NS_XSI}}}type") or "").strip()
    cls = rpc.DU_OPERATION_TYPES.get(raw.rpartition(":")[2])
    if cls is None:
        raise _Bad(f"ChangeDUState: Operations of unknown xsi:type {raw[:60]!r}")
    if cls is rpc.InstallOp:
        return rpc.InstallOp(
            url=k.text("URL"),
            uuid=k.text("UUID", "").strip(),
            username=k.text("Username", ""),
            password=k.text("Password", ""),
            execution_env_ref=k.text("ExecutionEnvRef", ""),
        )
    if cls is rpc.UpdateOp:
        return rpc.UpdateOp(
            uuid=k.text("UUID", "").strip(),
            version=k.text("Version", ""),
            url=k.text("URL", ""),
            username=k.text("Username", ""),
            password=k.text("Password", ""),
        )
    return rpc.UninstallOp(
        uuid=k.text("UUID").strip(),
        version=k.text("Version", ""),
        execution_env_ref=k.text("ExecutionEnvRef", ""),
    )


def _d_change_du_state(k: _Kids) -> rpc.ChangeDUState:
    operations = tuple(_d_du_operation(m) for m in k.every("Operations"))
    if not operations:
        raise _Bad("ChangeDUState: no Operations")
    return rpc.ChangeDUState(operations=operations, command_key=k.text("CommandKey", ""))


def _op_results(k: _Kids) -> tuple[rpc.OpResult, ...]:
    out = []
    for m in k.every("Results"):
        r = _Kids(m)
        fault = r.get("Fault")
        f = None if fault is None else _Kids(fault)
        out.append(
            rpc.OpResult(
                uuid=r.text("UUID", "").strip(),
                deployment_unit_ref=r.text("DeploymentUnitRef", ""),
                version=r.text("Version", ""),
                current_state=r.text("CurrentState", "").strip(),
                resolved=r.boolean("Resolved", False),
                execution_unit_refs=r.text("ExecutionUnitRefList", ""),
                start_time=r.text("StartTime", rpc.UNKNOWN_TIME).strip(),
                complete_time=r.text("CompleteTime", rpc.UNKNOWN_TIME).strip(),
                fault=rpc.FaultStruct()
                if f is None
                else rpc.FaultStruct(f.integer("FaultCode", 0), f.text("FaultString", "")),
                operation_performed=r.text("OperationPerformed", "").strip(),
            )
        )
    return tuple(out)


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
    rpc.GetQueuedTransfers: _d_empty(rpc.GetQueuedTransfers),
    rpc.GetQueuedTransfersResponse: lambda k: rpc.GetQueuedTransfersResponse(
        transfers=tuple(
            rpc.QueuedTransfer(
                command_key=(qk := _Kids(m)).text("CommandKey", ""), state=qk.integer("State")
            )
            for m in k.array("TransferList")
        )
    ),
    rpc.ScheduleInform: lambda k: rpc.ScheduleInform(
        delay_seconds=k.integer("DelaySeconds", unsigned=True), command_key=k.text("CommandKey", "")
    ),
    rpc.ScheduleInformResponse: _d_empty(rpc.ScheduleInformResponse),
    rpc.GetAllQueuedTransfers: _d_empty(rpc.GetAllQueuedTransfers),
    rpc.GetAllQueuedTransfersResponse: _d_all_queued_transfers,
    rpc.ScheduleDownload: _d_schedule_download,
    rpc.ScheduleDownloadResponse: _d_empty(rpc.ScheduleDownloadResponse),
    rpc.CancelTransfer: lambda k: rpc.CancelTransfer(command_key=k.text("CommandKey", "")),
    rpc.CancelTransferResponse: _d_empty(rpc.CancelTransferResponse),
    rpc.ChangeDUState: _d_change_du_state,
    rpc.ChangeDUStateResponse: _d_empty(rpc.ChangeDUStateResponse),
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
    rpc.DUStateChangeComplete: lambda k: rpc.DUStateChangeComplete(
        results=_op_results(k), command_key=k.text("CommandKey", "")
    ),
    rpc.DUStateChangeCompleteResponse: _d_empty(rpc.DUStateChangeCompleteResponse),
    rpc.AutonomousDUStateChangeComplete: lambda k: rpc.AutonomousDUStateChangeComplete(
        results=_op_results(k)
    ),
    rpc.AutonomousDUStateChangeCompleteResponse: _d_empty(
        rpc.AutonomousDUStateChangeCompleteResponse
    ),
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
