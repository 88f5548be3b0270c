"""Encoding CWMP messages: ``Envelope`` -> SOAP bytes.

String building rather than a DOM: fast, and the output is schema-valid by construction
(every ``acs.cwmp.rpc`` message has its encoder in ``_ENCODERS``). ``inform_response`` is
the hot path's cached InformResponse. Sans-IO; used through :mod:`acs.cwmp.soap`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from acs.cwmp import rpc
from acs.cwmp.envelope import (
    CWMP_NS,
    INVALID_XML_CHARS,
    NS_SOAP_ENC,
    NS_SOAP_ENV,
    NS_XSD,
    NS_XSI,
    Envelope,
    Header,
    is_cwmp_namespace,
)

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
    m = INVALID_XML_CHARS.search(s)
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


# The leading children Upload, Download and ScheduleDownload share (the last two: and more).
_TRANSFER_FIELDS = (
    ("CommandKey", "command_key", "s"),
    ("FileType", "file_type", "s"),
    ("URL", "url", "s"),
    ("Username", "username", "s"),
    ("Password", "password", "s"),
)
_DOWNLOAD_FIELDS = (
    *_TRANSFER_FIELDS,
    ("FileSize", "file_size", "i"),
    ("TargetFileName", "target_file_name", "s"),
)


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


def _optional(m: Any, *spec: tuple[str, str]) -> str:
    """String children left out when empty: (element name, attribute)."""
    return "".join(
        f"<{elname}>{_x(v)}</{elname}>" for elname, attr in spec if (v := getattr(m, attr)) != ""
    )


# The children of each OperationStruct, in schema order; the required ones first.
_DU_OPERATION_FIELDS: dict[type, tuple[tuple[str, str], ...]] = {
    rpc.InstallOp: (
        ("UUID", "uuid"),
        ("Username", "username"),
        ("Password", "password"),
        ("ExecutionEnvRef", "execution_env_ref"),
    ),
    rpc.UpdateOp: (
        ("UUID", "uuid"),
        ("Version", "version"),
        ("URL", "url"),
        ("Username", "username"),
        ("Password", "password"),
    ),
    rpc.UninstallOp: (("Version", "version"), ("ExecutionEnvRef", "execution_env_ref")),
}


def _e_du_operation(op: rpc.DUOperation) -> str:
    required = (
        _fields(op, ("URL", "url", "s"))
        if isinstance(op, rpc.InstallOp)
        else _fields(op, ("UUID", "uuid", "s"))
        if isinstance(op, rpc.UninstallOp)
        else ""
    )
    return (
        f'<Operations xsi:type="cwmp:{type(op).__name__}Struct">'
        + required
        + _optional(op, *_DU_OPERATION_FIELDS[type(op)])
        + "</Operations>"
    )


def _e_op_results(results: Iterable[rpc.OpResult], *, autonomous: bool) -> str:
    return "".join(
        "<Results>"
        + _fields(
            r,
            ("UUID", "uuid", "s"),
            ("DeploymentUnitRef", "deployment_unit_ref", "s"),
            ("Version", "version", "s"),
            ("CurrentState", "current_state", "s"),
            ("Resolved", "resolved", "b"),
            ("ExecutionUnitRefList", "execution_unit_refs", "s"),
            ("StartTime", "start_time", "s"),
            ("CompleteTime", "complete_time", "s"),
        )
        + f"<Fault><FaultCode>{_i(r.fault.code)}</FaultCode>"
        f"<FaultString>{_x(r.fault.string)}</FaultString></Fault>"
        + (_fields(r, ("OperationPerformed", "operation_performed", "s")) if autonomous else "")
        + "</Results>"
        for r in results
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
        *_DOWNLOAD_FIELDS,
        ("DelaySeconds", "delay_seconds", "i"),
        ("SuccessURL", "success_url", "s"),
        ("FailureURL", "failure_url", "s"),
    ),
    rpc.DownloadResponse: _e_transfer_response,
    rpc.Upload: lambda m: _fields(m, *_TRANSFER_FIELDS, ("DelaySeconds", "delay_seconds", "i")),
    rpc.UploadResponse: _e_transfer_response,
    rpc.GetQueuedTransfers: _nothing,
    rpc.GetQueuedTransfersResponse: lambda m: _array(
        "TransferList",
        "cwmp:QueuedTransferStruct",
        [
            f"<QueuedTransferStruct><CommandKey>{_x(t.command_key)}</CommandKey>"
            f"<State>{_i(t.state)}</State></QueuedTransferStruct>"
            for t in m.transfers
        ],
    ),
    rpc.ScheduleInform: lambda m: _fields(
        m, ("DelaySeconds", "delay_seconds", "i"), ("CommandKey", "command_key", "s")
    ),
    rpc.ScheduleInformResponse: _nothing,
    rpc.GetAllQueuedTransfers: _nothing,
    rpc.GetAllQueuedTransfersResponse: lambda m: _array(
        "TransferList",
        "cwmp:AllQueuedTransferStruct",
        [
            "<AllQueuedTransferStruct>"
            + _fields(
                t,
                ("CommandKey", "command_key", "s"),
                ("State", "state", "i"),
                ("IsDownload", "is_download", "b"),
                ("FileType", "file_type", "s"),
                ("FileSize", "file_size", "i"),
                ("TargetFileName", "target_file_name", "s"),
            )
            + "</AllQueuedTransferStruct>"
            for t in m.transfers
        ],
    ),
    rpc.ScheduleDownload: lambda m: (
        _fields(m, *_DOWNLOAD_FIELDS)
        + _array(
            "TimeWindowList",
            "cwmp:TimeWindowStruct",
            [
                "<TimeWindowStruct>"
                + _fields(
                    w,
                    ("WindowStart", "window_start", "i"),
                    ("WindowEnd", "window_end", "i"),
                    ("WindowMode", "mode", "s"),
                    ("UserMessage", "user_message", "s"),
                    ("MaxRetries", "max_retries", "i"),
                )
                + "</TimeWindowStruct>"
                for w in m.time_windows
            ],
        )
    ),
    rpc.ScheduleDownloadResponse: _nothing,
    rpc.CancelTransfer: lambda m: _fields(m, ("CommandKey", "command_key", "s")),
    rpc.CancelTransferResponse: _nothing,
    rpc.ChangeDUState: lambda m: (
        "".join(_e_du_operation(op) for op in m.operations)
        + _fields(m, ("CommandKey", "command_key", "s"))
    ),
    rpc.ChangeDUStateResponse: _nothing,
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
    rpc.DUStateChangeComplete: lambda m: (
        _e_op_results(m.results, autonomous=False) + _fields(m, ("CommandKey", "command_key", "s"))
    ),
    rpc.DUStateChangeCompleteResponse: _nothing,
    rpc.AutonomousDUStateChangeComplete: lambda m: _e_op_results(m.results, autonomous=True),
    rpc.AutonomousDUStateChangeCompleteResponse: _nothing,
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
