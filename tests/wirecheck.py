"""Session-level CWMP conformance: every body on the wire, valid for the session's version.

``SessionConformance`` follows CWMP sessions as HTTP exchanges (the CPE's POST body, the
ACS's answer) and validates every SOAP body against the XSD of the version in force for
that session, found from the wire alone, as spec/cwmp.md §1.4 has it:

* the Inform's namespace ``cwmp-1-0`` / ``cwmp-1-1`` means 1.0 / 1.1;
* ``cwmp-1-2`` (and the non-normative ``cwmp-1-3`` / ``cwmp-1-4`` aliases, validated as
  ``cwmp-1-2``, the namespace the 1.3 and 1.4 schemas target) means 1.2, or 1.3 when the
  Inform carries ``SessionTimeout``, or, when it carries ``SupportedCWMPVersions``, the
  version of the InformResponse's ``UseCWMPVersion`` (1.4 when the ACS refused the Inform
  with a Fault, since only a 1.4 CPE offers versions).

Beyond the schema it checks what the schema's lax SOAP header cannot: each header element is
one that version declares, sent in its direction only (``HoldRequests`` and
``UseCWMPVersion`` by the ACS, ``SessionTimeout`` and ``SupportedCWMPVersions`` in the CPE's
Inform), and every CWMP element of the session stays in the Inform's namespace.

``ConformanceTap`` wraps the ACS's CWMP resource to feed the checker: the e2e harness and
the CWMP-resource tests install it, and a failure names the session, the direction, the
message and the schema error. It reads what crossed HTTP, not the ACS's internals.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass, field
from typing import Any

from lxml import etree
from twisted.web.resource import Resource
from twisted.web.server import Request
from xsd import NS_SOAP_ENV, defined_elements, validate_message

_CWMP_NS = re.compile(r"^urn:dslforum-org:cwmp-(\d+)-(\d+)$")
_NORMATIVE_1_2 = "urn:dslforum-org:cwmp-1-2"
_PARSER = etree.XMLParser(no_network=True, resolve_entities=False, huge_tree=False)

# Who may send each header element, and in which message ("*": any).
_HEADER_RULES: dict[str, tuple[str, str]] = {
    "ID": ("both", "*"),
    "HoldRequests": ("acs", "*"),
    "UseCWMPVersion": ("acs", "InformResponse"),
    "SessionTimeout": ("cpe", "Inform"),
    "SupportedCWMPVersions": ("cpe", "Inform"),
}


@dataclass
class _Session:
    """What the checker knows of one session, from its Inform and InformResponse."""

    key: str
    ns: str
    offered: tuple[str, ...] | None
    session_timeout: bool
    version: str | None = None  # known once the InformResponse (or a refusal) is seen
    messages: list[str] = field(default_factory=list)


@dataclass
class _Body:
    root: etree._Element
    method: str  # local name of the Body's child ("Fault" for a SOAP Fault)
    headers: dict[str, str]  # local name -> namespace URI


class SessionConformance:
    """Validates the bodies of CWMP sessions. ``failures`` lists what was wrong."""

    def __init__(self, *, check_cpe: bool = True) -> None:
        # The CPE side is checked only where the CPE is ours (cpe_sim); the resource tests
        # send hostile bodies on purpose and check only what the ACS answers.
        self.check_cpe = check_cpe
        self.failures: list[str] = []
        self.checked: dict[str, list[str]] = {"acs": [], "cpe": []}  # methods validated
        self._by_key: dict[str, _Session] = {}
        self._count = 0

    # --- input ----------------------------------------------------------------------------

    def exchange(
        self,
        cpe_body: bytes,
        acs_body: bytes,
        *,
        acs_xml: bool,
        cookies: list[str],
        set_cookie: str | None,
        channel: object,
    ) -> None:
        """One HTTP exchange: the CPE's POST body and what the ACS answered.

        ``acs_xml``: the answer was served as text/xml (it must then be a CWMP envelope);
        ``cookies``: the session cookie values the CPE sent; ``set_cookie``: the one the ACS
        set; ``channel``: the TCP connection (the fallback key, as for the ACS).
        """
        cpe = self._parse(cpe_body) if cpe_body.strip() else None
        session: _Session | None
        if cpe is not None and cpe.method == "Inform":
            session = self._start(cpe, channel)
        else:
            session = next((self._by_key[c] for c in cookies if c in self._by_key), None)
            if session is None:
                session = self._by_key.get(_channel_key(channel))
        if session is None:
            if acs_xml:
                self.failures.append(f"XML answer outside any session: {acs_body[:200]!r}")
            return
        acs = self._parse(acs_body) if acs_xml else None
        if cpe is not None and cpe.method == "Inform":
            session.version = self._version_of(session, acs)
            if set_cookie:
                self._by_key[set_cookie] = session
        if cpe is not None and self.check_cpe:
            self._check(session, "cpe", cpe_body, cpe)
        if acs_xml:
            if acs is None:
                self.failures.append(f"{session.key}: ACS sent text/xml that is not XML")
                return
            self._check(session, "acs", acs_body, acs)

    def assert_clean(self) -> None:
        """Raise an AssertionError naming every failure so far (each one is raised once)."""
        if self.failures:
            failures, self.failures = self.failures, []
            shown = "\n\n".join(failures[:10])
            more = len(failures) - 10
            extra = f"\n\n... and {more} more" if more > 0 else ""
            raise AssertionError(f"CWMP conformance failures:\n\n{shown}{extra}")

    # --- sessions ---------------------------------------------------------------------------

    def _start(self, inform: _Body, channel: object) -> _Session:
        self._count += 1
        header = {
            etree.QName(el).localname: (el.text or "").strip()
            for el in inform.root.iterfind(f"{{{NS_SOAP_ENV}}}Header/*")
        }
        offered = header.get("SupportedCWMPVersions")
        session = _Session(
            key=f"session {self._count}",
            ns=_body_ns(inform.root),
            offered=tuple(v.strip() for v in offered.split(",")) if offered is not None else None,
            session_timeout="SessionTimeout" in header,
        )
        self._by_key[_channel_key(channel)] = session
        return session

    def _version_of(self, session: _Session, answer: _Body | None) -> str | None:
        m = _CWMP_NS.match(session.ns)
        if m is None:
            return None  # refused by the ACS, or reported by _check if it answered in XML
        major, minor = int(m.group(1)), int(m.group(2))
        if (major, minor) < (1, 2):
            return f"{major}.{minor}"
        if session.offered is not None:
            if answer is None or answer.method == "Fault":
                return "1.4"
            use = _header_text(answer.root, "UseCWMPVersion")
            if use is None:
                self.failures.append(
                    f"{session.key}: the CPE offered {','.join(session.offered)} but the "
                    "InformResponse has no UseCWMPVersion"
                )
                return "1.3" if session.session_timeout else "1.2"
            if use not in session.offered or use not in ("1.2", "1.3", "1.4"):
                self.failures.append(
                    f"{session.key}: UseCWMPVersion {use!r} is not one the CPE offered "
                    f"({','.join(session.offered)}) in namespace {session.ns}"
                )
                return None
            return use
        if session.session_timeout:
            return "1.3"
        return "1.2" if minor == 2 else f"1.{min(minor, 4)}"

    # --- one body ---------------------------------------------------------------------------

    def _check(self, session: _Session, side: str, data: bytes, body: _Body) -> None:
        where = f"{session.key} ({session.ns}, CWMP {session.version}), {side} {body.method}"
        session.messages.append(f"{side}:{body.method}")
        if session.version is None:
            self.failures.append(f"{where}: no CWMP version could be established")
            return
        problems = []
        for el in body.root.iter():
            if not isinstance(el.tag, str):
                continue
            ns = etree.QName(el).namespace
            if ns is not None and _CWMP_NS.match(ns) and ns != session.ns:
                problems.append(f"element {etree.QName(el).localname} in {ns}, not {session.ns}")
                break
        declared = defined_elements(session.version)
        for name, ns in body.headers.items():
            rule = _HEADER_RULES.get(name)
            if _CWMP_NS.match(ns or "") and name not in declared:
                problems.append(f"header {name} is not declared by CWMP {session.version}")
            elif rule is not None and (
                rule[0] not in ("both", side) or rule[1] not in ("*", body.method)
            ):
                problems.append(f"header {name} may not be sent by the {side} in {body.method}")
        wire = data
        if session.ns != _NORMATIVE_1_2 and session.version in ("1.2", "1.3", "1.4"):
            wire = data.replace(session.ns.encode(), _NORMATIVE_1_2.encode())
        try:
            validate_message(wire, session.version)
        except AssertionError as exc:
            problems.append(str(exc))
        if problems:
            self.failures.append(
                f"{where}:\n  " + "\n  ".join(problems) + f"\n  body: {data[:600]!r}"
            )
        else:
            self.checked[side].append(body.method)

    def _parse(self, data: bytes) -> _Body | None:
        try:
            root = etree.fromstring(data, _PARSER)
        except etree.XMLSyntaxError:
            return None
        body = root.find(f"{{{NS_SOAP_ENV}}}Body")
        child = (
            next((c for c in body if isinstance(c.tag, str)), None) if body is not None else None
        )
        method = etree.QName(child).localname if child is not None else "?"
        headers = {
            etree.QName(el).localname: etree.QName(el).namespace or ""
            for el in root.iterfind(f"{{{NS_SOAP_ENV}}}Header/*")
        }
        return _Body(root, method, headers)


def _channel_key(channel: object) -> str:
    return f"channel:{id(channel)}"


def _body_ns(root: etree._Element) -> str:
    body = root.find(f"{{{NS_SOAP_ENV}}}Body")
    for child in body if body is not None else ():
        if isinstance(child.tag, str):
            return etree.QName(child).namespace or ""
    return ""


def _header_text(root: etree._Element, name: str) -> str | None:
    for el in root.iterfind(f"{{{NS_SOAP_ENV}}}Header/*"):
        if etree.QName(el).localname == name:
            return (el.text or "").strip()
    return None


def _decoded(data: bytes, encoding: bytes | None) -> bytes:
    encoding = (encoding or b"").strip().lower()
    try:
        if encoding in (b"gzip", b"x-gzip"):
            return zlib.decompress(data, 16 + zlib.MAX_WBITS)
        if encoding == b"deflate":
            return zlib.decompress(data)
    except zlib.error:
        return b""
    return data


class ConformanceTap(Resource):
    """Wraps the CWMP resource: each finished exchange goes to ``checker``."""

    isLeaf = True

    def __init__(self, inner: Resource, checker: SessionConformance) -> None:
        super().__init__()
        self.inner = inner
        self.checker = checker

    def render(self, request: Request) -> Any:
        content = request.content
        cpe_body = b""
        if content is not None:
            cpe_body = content.read()
            content.seek(0)
        cpe_body = _decoded(cpe_body, request.getHeader(b"content-encoding"))
        written: list[bytes] = []
        write = request.write
        channel = request.channel  # gone from the request once it is finished

        def tapped_write(data: bytes) -> None:
            written.append(data)
            write(data)

        request.write = tapped_write  # type: ignore[method-assign]

        def finished(_: object) -> None:
            ctype = request.responseHeaders.getRawHeaders(b"content-type") or [b""]
            set_cookie = None
            for raw in request.cookies:
                name, _, rest = raw.decode("latin-1").partition("=")
                if name == "session":
                    set_cookie = rest.split(";")[0]
            self.checker.exchange(
                cpe_body,
                b"".join(written),
                acs_xml=ctype[0].startswith(b"text/xml"),
                cookies=_cookie_values(request),
                set_cookie=set_cookie,
                channel=channel,
            )

        # A lost connection is no exchange: only finished responses are checked.
        request.notifyFinish().addCallbacks(finished, lambda _: None)
        return self.inner.render(request)


def _cookie_values(request: Request) -> list[str]:
    values = []
    for raw in request.requestHeaders.getRawHeaders(b"cookie") or []:
        for part in raw.decode("latin-1").replace(",", ";").split(";"):
            key, sep, value = part.partition("=")
            if sep and key.strip() == "session":
                values.append(value.strip().strip('"'))
    return values
