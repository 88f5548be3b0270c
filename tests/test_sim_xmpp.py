"""``cpe-sim --xmpp``: a simulated CPE's XMPP connection and TR-069 Annex K requests.

Three levels: the pure parts (accounts, ConnReqAllowedJabberIDs, the answers to IQs); one
CPE on a ``MemoryReactorClock`` whose stream is a real Twisted ``XmlStream`` over a
``StringTransport`` (what it sends is captured, the server's side is fed to it), for the
data model, the notifications, the back-off and the closes; and a small fleet against a
real prosody (tests/xmppserver.py; skipped without one), woken by a real XMPP client.
"""

from __future__ import annotations

import random
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from selfsigned import self_signed
from twisted.internet import defer
from twisted.internet import reactor as _reactor
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone, ConnectionLost, ConnectionRefusedError
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.trial import unittest
from twisted.words.protocols.jabber import client, error, xmlstream
from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish
from xmppserver import XmppServer, prosody

from acs.cwmp import rpc, soap
from cpe_sim import xmpp
from cpe_sim.cli import make_fleet, parse_args
from cpe_sim.cpe import HttpResponse, Profile, SimulatedCPE
from cpe_sim.datamodel import load_template
from cpe_sim.fleet import Fleet
from cpe_sim.xmpp import XmppOptions

reactor: Any = _reactor

ACS_URL = "http://127.0.0.1:7547/acs"
MS = "Device.ManagementServer."
CONNECTION = "Device.XMPP.Connection.1."
CR_USERNAME, CR_PASSWORD = "cr-user", "cr-secret"
ACS_JID = "acs@acs.test/acs"
OPTIONS = XmppOptions("127.0.0.1", 5222, "acs.test")
SERIAL = "SIM000001"
BOUND_JID = "cpe-sim000001@acs.test/cwmp"
NS = xmpp.NS_CONNECTION_REQUEST


# --- a fake ACS: each serial provisioned in its first session ------------------------------------


def provisioning(allowed: str = "acs@acs.test", *extra: rpc.ParameterValue) -> list[rpc.Message]:
    """What the ACS sets at the bootstrap: connection-request credentials and who may send."""
    values = (
        rpc.ParameterValue(MS + "ConnectionRequestUsername", CR_USERNAME, "xsd:string"),
        rpc.ParameterValue(MS + "ConnectionRequestPassword", CR_PASSWORD, "xsd:string"),
        rpc.ParameterValue(MS + "ConnReqAllowedJabberIDs", allowed, "xsd:string"),
        *extra,
    )
    return [rpc.SetParameterValues(values, "xmpp")]


@dataclass
class Acs:
    """Answers CPE sessions in memory: InformResponse, then ``first`` in a serial's first
    session (``later[serial]`` in the next one), then 204."""

    first: list[rpc.Message] = field(default_factory=provisioning)
    later: dict[str, list[rpc.Message]] = field(default_factory=dict)
    informs: dict[str, list[rpc.Inform]] = field(default_factory=dict)

    def client(self) -> _Session:
        return _Session(self)

    def events(self, serial: str, index: int = -1) -> list[str]:
        return [e.code for e in self.informs[serial][index].events]

    def reported(self, serial: str, name: str) -> list[str]:
        """The values of ``name`` that VALUE CHANGE Informs carried."""
        return [
            p.value
            for inform in self.informs.get(serial, [])
            if "4 VALUE CHANGE" in [e.code for e in inform.events]
            for p in inform.parameters
            if p.name == name
        ]


class _Session:
    def __init__(self, acs: Acs) -> None:
        self.acs = acs
        self.queue: list[rpc.Message] = []
        self.ns = "urn:dslforum-org:cwmp-1-2"

    def request(
        self, method: str, url: str, body: bytes | None, headers: object
    ) -> defer.Deferred[HttpResponse]:
        return defer.succeed(self.answer(body))

    def answer(self, body: bytes | None) -> HttpResponse:
        if body:
            envelope = soap.parse(body)
            if isinstance(envelope.message, rpc.Inform):
                serial = envelope.message.device_id.serial_number
                first = serial not in self.acs.informs
                self.acs.informs.setdefault(serial, []).append(envelope.message)
                self.queue = list(self.acs.first) if first else self.acs.later.pop(serial, [])
                self.ns = envelope.ns
                return self.reply(rpc.InformResponse(1), envelope.header.id)
        if not self.queue:
            return HttpResponse(204, {}, b"")
        return self.reply(self.queue.pop(0), "acs")

    def reply(self, message: rpc.Message, cwmp_id: str | None) -> HttpResponse:
        envelope = soap.Envelope(message, soap.Header(id=cwmp_id), self.ns)
        return HttpResponse(200, {}, soap.serialize(envelope))

    def close(self) -> defer.Deferred[None]:
        return defer.succeed(None)


# --- IQs as the stream parses them ---------------------------------------------------------


def parse(xml: str) -> domish.Element:
    """``xml`` as the stanza an ``XmlStream`` would dispatch (jabber:client namespace)."""
    got: list[domish.Element] = []
    stream = domish.elementStream()
    stream.DocumentStartEvent = lambda root: None
    stream.ElementEvent = got.append
    stream.DocumentEndEvent = lambda: None
    stream.parse(b"<stream xmlns='jabber:client'>" + xml.encode())
    [element] = got
    return element


def request_xml(
    username: str = CR_USERNAME,
    password: str = CR_PASSWORD,
    *,
    sender: str = ACS_JID,
    kind: str = "get",
    body: str | None = None,
) -> str:
    if body is None:
        body = f"<username>{username}</username><password>{password}</password>"
    return (
        f"<iq type='{kind}' id='cr1' from='{sender}' to='{BOUND_JID}'>"
        f"<connectionRequest xmlns='{NS}'>{body}</connectionRequest></iq>"
    )


def condition(response: domish.Element) -> tuple[str, str]:
    """(error type, RFC 6120 condition) of an error answer."""
    assert response["type"] == "error"
    [problem] = [e for e in response.elements() if e.name == "error"]
    [cause] = list(problem.elements())
    assert cause.uri == xmpp.NS_STANZAS
    return problem["type"], cause.name


# --- one CPE on a memory reactor, its stream over a StringTransport --------------------------


STREAM_HEADER = (
    b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'"
    b" from='acs.test' id='s1' version='1.0'>"
)


@dataclass
class Rig:
    clock: MemoryReactorClock
    acs: Acs
    cpe: SimulatedCPE

    @property
    def xmpp(self) -> xmpp.Xmpp:
        assert self.cpe.xmpp is not None
        return self.cpe.xmpp

    def accept(self) -> tuple[Any, StringTransport]:
        """The server accepts the latest TCP connection and opens its stream."""
        host, port, wrapping, timeout, _ = self.clock.tcpClients[-1]
        assert (host, port, timeout) == ("127.0.0.1", 5222, xmpp.CONNECT_TIMEOUT)
        factory: Any = wrapping  # the endpoint's, around the stream's
        protocol = factory.buildProtocol(IPv4Address("TCP", host, port))
        transport = StringTransport()
        protocol.makeConnection(transport)
        stream = protocol._wrappedProtocol
        stream.dataReceived(STREAM_HEADER)
        return stream, transport

    def bind(self, jid: str = BOUND_JID) -> tuple[Any, StringTransport]:
        """Accept, and end the login as a server does: with ``jid`` bound (TLS, SASL and
        bind themselves need the real server: see ``RealServer``)."""
        stream, transport = self.accept()
        stream.authenticator.jid = JID(jid)
        stream.dispatch(stream, xmlstream.STREAM_AUTHD_EVENT)
        self.clock.advance(0)  # the VALUE CHANGE session, if any
        transport.clear()
        return stream, transport

    def refuse(self) -> None:
        """The latest TCP connection attempt is refused."""
        factory = self.clock.tcpClients[-1][2]
        factory.clientConnectionFailed(self.clock.connectors[-1], Failure(ConnectionRefusedError()))

    def value(self, name: str) -> str | None:
        return self.cpe.value(name)


def timers(clock: MemoryReactorClock) -> list[Any]:
    """The clock's pending calls (Any: Twisted types them as a zope Interface)."""
    calls: Sequence[Any] = clock.getDelayedCalls()
    return [c for c in calls if c.active()]


def make(**profile: Any) -> Rig:
    """A TR-181 CPE of ``cpe-sim --xmpp`` whose bootstrap session provisioned it and whose
    first TCP connection to the XMPP server is under way."""
    clock = MemoryReactorClock()
    clock.advance(1_700_000_000)
    acs = Acs()
    settings: dict[str, Any] = {
        "reactor": clock,
        "acs_url": ACS_URL,
        "periodic": False,
        "reboot_delay": 5.0,
        "rng": random.Random(3),
        "client_factory": acs.client,
        "xmpp": OPTIONS,
        "seed": 7,
        **profile,
    }
    cpe = SimulatedCPE(SERIAL, load_template("tr181"), Profile(**settings))
    cpe.start()
    clock.advance(0)
    assert cpe.sessions_ok == 1
    return Rig(clock, acs, cpe)


# --- accounts, senders ---------------------------------------------------------------------


def test_the_account_is_derived_from_the_serial_and_the_seed() -> None:
    assert xmpp.account_username("SIM000001") == "cpe-sim000001"
    odd = xmpp.account_username("Lab @/Ü:1")
    assert odd == "cpe-lab-----1"
    JID(tuple=(odd, "acs.test", "cwmp"))  # a valid local part
    password = xmpp.account_password(0, "SIM000001")
    assert len(password) == 32 and int(password, 16) >= 0
    assert xmpp.account_password(0, "SIM000001") == password  # the same on a re-run
    assert xmpp.account_password(1, "SIM000001") != password
    assert xmpp.account_password(0, "SIM000002") != password


EXAMPLE = "ACS1@tr069.example.com, ACS2@tr069.example.com/resource1"
OTHERS = [f"n{i}@acs.test" for i in range(32)]


@pytest.mark.parametrize(
    ("sender", "allowed", "ok"),
    [
        # TR-181's example for ConnReqAllowedJabberIDs.
        ("ACS1@tr069.example.com/resource1", EXAMPLE, True),
        ("ACS1@tr069.example.com/resource2", EXAMPLE, True),
        ("ACS2@tr069.example.com/resource1", EXAMPLE, True),
        ("ACS2@tr069.example.com/resource2", EXAMPLE, False),
        ("ACS@tr069.example.com/resource", EXAMPLE, False),
        # Empty: everybody, even without a from.
        ("anyone@else.test/x", "", True),
        (None, " , ", True),
        # Local part and domain compare case-insensitively, the resource exactly.
        ("acs@acs.test/acs", "ACS@ACS.TEST", True),
        ("ACS@Acs.Test/acs", "acs@acs.test/acs", True),
        ("acs@acs.test/ACS", "acs@acs.test/acs", False),
        # A bare sender matches a bare entry only; a full entry wants a resource.
        ("acs@acs.test", "acs@acs.test", True),
        ("acs@acs.test", "acs@acs.test/acs", False),
        # Not JIDs: an entry matches nothing, a sender is not allowed.
        ("acs@acs.test/acs", "a@b@c, acs@acs.test", True),
        ("acs@acs.test/acs", "a@b@c", False),
        ("@acs.test", "acs@acs.test", False),
        (None, "acs@acs.test", False),
        ("x" * 4000 + "@acs.test", "acs@acs.test", False),
        # Only the list's 32 items count.
        ("acs@acs.test/acs", ",".join([*OTHERS, "acs@acs.test"]), False),
        ("acs@acs.test/acs", ",".join([*OTHERS[1:], "acs@acs.test"]), True),
    ],
)  # fmt: skip
def test_allowed_senders_follow_conn_req_allowed_jabber_ids(
    sender: str | None, allowed: str, ok: bool
) -> None:
    assert xmpp.sender_allowed(sender, allowed) is ok


@pytest.mark.parametrize(
    "make_options",
    [
        lambda: XmppOptions("10.0.0.1", 5222, "acs.test"),
        lambda: XmppOptions("localhost", 5222, "acs.test"),
        lambda: XmppOptions("::1", 5222, "acs.test"),
        lambda: XmppOptions("127.0.0.1", 0, "acs.test"),
        lambda: XmppOptions("127.0.0.1", 65536, "acs.test"),
        lambda: XmppOptions("127.0.0.1", 5222, "user@acs.test"),
        lambda: XmppOptions("127.0.0.1", 5222, ""),
        lambda: XmppOptions("127.0.0.1", 5222, "acs.test", b"not a certificate"),
    ],
)
def test_options_are_checked(make_options: Callable[[], XmppOptions]) -> None:
    with pytest.raises(ValueError):
        make_options()


# --- the answers to IQs -------------------------------------------------------------------


def test_a_good_request_is_answered_with_a_result_and_wakes_the_cpe() -> None:
    rig = make()
    rig.bind()
    response = rig.xmpp.answer(parse(request_xml()))
    assert response is not None
    assert (response["type"], response["id"], response["to"]) == ("result", "cr1", ACS_JID)
    assert list(response.elements()) == []  # an empty result (Annex K)
    rig.clock.advance(0)
    assert rig.acs.events(SERIAL) == ["6 CONNECTION REQUEST"]
    assert rig.xmpp.counters.accepted == 1
    assert rig.xmpp.counters.rejected == {}


UNAVAILABLE = ("cancel", "service-unavailable")
NOT_AUTHORIZED = ("cancel", "not-authorized")
BAD_REQUEST = ("modify", "bad-request")
USER = f"<username>{CR_USERNAME}</username>"
PASSWORD = f"<password>{CR_PASSWORD}</password>"


@pytest.mark.parametrize(
    ("xml", "reason", "error"),
    [
        (request_xml(sender="intruder@acs.test/x"), "not_allowed", UNAVAILABLE),
        (request_xml(sender="acs@evil.test/acs"), "not_allowed", UNAVAILABLE),
        (request_xml(password="guess"), "unauthorized", NOT_AUTHORIZED),
        (request_xml(username="CR-USER"), "unauthorized", NOT_AUTHORIZED),
        (request_xml(password=CR_PASSWORD + "x" * 300), "unauthorized", NOT_AUTHORIZED),
        (request_xml(kind="set"), "malformed", BAD_REQUEST),
        (request_xml(body=f"<username>{CR_USERNAME}</username>"), "malformed", BAD_REQUEST),
        (request_xml(body=USER + USER + PASSWORD), "malformed", BAD_REQUEST),
        (request_xml(body="<username><b>a</b></username>" + PASSWORD), "malformed", BAD_REQUEST),
        (request_xml(body=USER + PASSWORD + "<x/>"), "malformed", BAD_REQUEST),
    ],
)  # fmt: skip
def test_refused_requests_say_why_and_wake_nobody(
    xml: str, reason: str, error: tuple[str, str]
) -> None:
    rig = make()
    rig.bind()
    response = rig.xmpp.answer(parse(xml))
    assert response is not None
    assert (response["id"], response["to"]) == ("cr1", parse(xml)["from"])
    assert condition(response) == error
    # The request's element comes back, emptied: the credentials are not echoed.
    [echo] = [e for e in response.elements() if e.name == "connectionRequest"]
    assert echo.uri == NS
    assert [(e.name, str(e)) for e in echo.elements()] == [("username", ""), ("password", "")]
    rig.clock.advance(0)
    assert len(rig.acs.informs[SERIAL]) == 2  # the bootstrap and the JID's VALUE CHANGE
    assert rig.xmpp.counters.rejected == {reason: 1}
    assert rig.xmpp.counters.accepted == 0


def test_an_oversized_username_is_refused_even_when_it_is_the_right_one() -> None:
    rig = make()
    rig.cpe.model.set_raw(MS + "ConnectionRequestUsername", "u" * 300)
    response = rig.xmpp.answer(parse(request_xml(username="u" * 300)))
    assert response is not None and condition(response) == ("cancel", "not-authorized")
    assert rig.xmpp.counters.rejected == {"unauthorized": 1}


def test_an_empty_allowed_list_lets_every_sender_in() -> None:
    rig = make()
    rig.cpe.model.set_raw(MS + "ConnReqAllowedJabberIDs", "")
    response = rig.xmpp.answer(parse(request_xml(sender="someone@else.test/x")))
    assert response is not None and response["type"] == "result"


def test_a_request_while_the_cpe_is_offline_is_service_unavailable() -> None:
    rig = make()
    rig.cpe.online = False
    response = rig.xmpp.answer(parse(request_xml()))
    assert response is not None and condition(response) == ("cancel", "service-unavailable")
    assert rig.xmpp.counters.rejected == {"offline": 1}


def test_other_requests_are_service_unavailable_and_answers_are_not_answered() -> None:
    rig = make()
    ping = rig.xmpp.answer(
        parse("<iq type='get' id='p1' from='a@acs.test/x'><ping xmlns='urn:xmpp:ping'/></iq>")
    )
    assert ping is not None and condition(ping) == ("cancel", "service-unavailable")
    assert [e.name for e in ping.elements()] == ["error"]  # no connectionRequest echo
    empty = rig.xmpp.answer(parse("<iq type='set' id='e1' from='a@acs.test/x'/>"))
    assert empty is not None and condition(empty) == ("modify", "bad-request")
    assert rig.xmpp.answer(parse("<iq type='result' id='r1' from='a@acs.test/x'/>")) is None
    assert rig.xmpp.answer(parse("<iq type='error' id='r2' from='a@acs.test/x'/>")) is None
    without_id = parse(request_xml().replace("id='cr1' ", ""))
    assert rig.xmpp.answer(without_id) is None  # nothing to answer to
    assert rig.xmpp.counters.unsupported == 1
    assert rig.xmpp.counters.rejected == {"malformed": 2}
    assert rig.xmpp.counters.accepted == 0


# --- the connection, the data model and its notifications ----------------------------------


def test_the_factory_configuration_points_connection_1_at_the_fleets_server() -> None:
    rig = make()
    assert rig.value(CONNECTION + "Enable") == "true"
    assert rig.value(CONNECTION + "Username") == "cpe-sim000001"
    assert rig.value(CONNECTION + "Password") == xmpp.account_password(7, SERIAL)
    assert rig.value(CONNECTION + "Domain") == "acs.test"
    assert rig.value(CONNECTION + "Resource") == "cwmp"
    assert rig.value(CONNECTION + "Server.1.ServerAddress") == "127.0.0.1"
    assert rig.value(CONNECTION + "Server.1.Port") == "5222"
    assert rig.value(MS + "ConnReqXMPPConnection") == "Device.XMPP.Connection.1"
    assert rig.value(MS + "SupportedConnReqMethods") == "HTTP,XMPP"
    assert rig.value(CONNECTION + "Status") == "Connecting"
    assert rig.value(MS + "ConnReqJabberID") == ""
    # The password is a secret: read back empty.
    [secret] = rig.cpe.model.get_parameter_values([CONNECTION + "Password"])
    assert secret.value == ""


def test_conn_req_jabber_id_is_actively_notified_by_default() -> None:
    cpe = SimulatedCPE(
        "SIM000009", load_template("tr181"), Profile(reactor=MemoryReactorClock(), acs_url=ACS_URL)
    )
    assert cpe.model.notification(MS + "ConnReqJabberID") == 2  # forceDefaultEnabled
    assert cpe.model.notification(MS + "ConnReqAllowedJabberIDs") == 0
    [attribute] = cpe.model.get_parameter_attributes([MS + "ConnReqJabberID"])
    assert attribute.notification == 2
    cpe.model.set_parameter_attributes(
        [rpc.SetParameterAttributesStruct(MS + "ConnReqJabberID", True, 0)]
    )
    assert cpe.model.notification(MS + "ConnReqJabberID") == 0  # the ACS may turn it off
    cpe.model.reset()
    assert cpe.model.notification(MS + "ConnReqJabberID") == 2  # until a factory reset


def test_the_bound_jid_is_reported_in_a_value_change_inform() -> None:
    rig = make()
    waiting = rig.xmpp.bound()
    assert not waiting.called
    rig.bind()
    assert waiting.result == JID(BOUND_JID)
    assert rig.xmpp.jid == JID(BOUND_JID)
    assert rig.xmpp.bound().result == JID(BOUND_JID)
    assert rig.value(CONNECTION + "JabberID") == BOUND_JID
    assert rig.value(CONNECTION + "Status") == "Enabled"
    assert rig.value(CONNECTION + "TLSEstablished") == "true"
    assert rig.value(CONNECTION + "LastChangeDate") != rpc.UNKNOWN_TIME
    assert rig.acs.events(SERIAL) == ["4 VALUE CHANGE"]
    assert rig.acs.reported(SERIAL, MS + "ConnReqJabberID") == [BOUND_JID]
    assert rig.xmpp.counters.bound == 1


def test_a_wait_for_the_bind_can_be_cancelled() -> None:
    rig = make()
    waiting = rig.xmpp.bound()
    waiting.cancel()
    assert isinstance(waiting.result, Failure) and waiting.result.check(defer.CancelledError)
    waiting.addErrback(lambda _: None)
    rig.bind()  # nothing left to call back


def test_the_stream_answers_requests_once_bound() -> None:
    rig = make()
    stream, transport = rig.bind()
    stream.dataReceived(request_xml().encode())
    answer = parse(transport.value().decode())
    assert (answer["type"], answer["id"], answer["to"]) == ("result", "cr1", ACS_JID)
    transport.clear()
    stream.dataReceived(request_xml(password="guess").encode())
    assert condition(parse(transport.value().decode())) == ("cancel", "not-authorized")
    rig.clock.advance(0)
    assert rig.acs.events(SERIAL) == ["6 CONNECTION REQUEST"]


def test_a_lost_stream_reconnects_and_the_same_jid_is_no_value_change() -> None:
    rig = make()
    stream, _ = rig.bind()
    informs = len(rig.acs.informs[SERIAL])
    stream.connectionLost(Failure(ConnectionLost()))
    assert rig.xmpp.jid is None
    assert rig.value(CONNECTION + "Status") == "Connecting"
    assert rig.value(CONNECTION + "TLSEstablished") == "false"
    assert rig.value(MS + "ConnReqJabberID") == BOUND_JID  # unchanged until the next bind
    assert rig.xmpp.counters.lost == 1
    rig.clock.advance(xmpp.RETRY_INITIAL)  # the first wait: at most the initial interval
    assert len(rig.clock.tcpClients) == 2
    rig.bind()
    assert rig.xmpp.jid == JID(BOUND_JID)
    assert len(rig.acs.informs[SERIAL]) == informs  # no VALUE CHANGE: the same JID
    assert rig.cpe.pending_events == ()


def test_a_new_jid_after_a_reconnection_is_reported() -> None:
    rig = make()
    stream, _ = rig.bind()
    stream.connectionLost(Failure(ConnectionLost()))
    rig.clock.advance(xmpp.RETRY_INITIAL)
    rig.bind("cpe-sim000001@acs.test/cwmp-2")  # a server may bind another resource
    assert rig.acs.reported(SERIAL, MS + "ConnReqJabberID") == [
        BOUND_JID,
        "cpe-sim000001@acs.test/cwmp-2",
    ]


def test_refused_connections_are_retried_with_a_growing_bounded_wait() -> None:
    rig = make()
    windows = []
    for _ in range(10):
        rig.refuse()
        assert rig.value(CONNECTION + "Status") == "ServerNotPresent"
        [retry] = [c for c in timers(rig.clock) if c.func == rig.xmpp._retry]
        windows.append(retry.getTime() - rig.clock.seconds())
        rig.clock.advance(retry.getTime() - rig.clock.seconds())
    # The n-th wait is in [0, 2 * 2^(n-1)], capped at the factory's 60 s.
    limits = [min(2 * 2**n, 60) for n in range(10)]
    assert all(0 <= w <= limit for w, limit in zip(windows, limits, strict=True)), windows
    assert len(rig.clock.tcpClients) == 11
    assert rig.xmpp.counters.failed == 10
    assert rig.xmpp.counters.connects == 11


def test_a_login_that_does_not_finish_is_aborted_and_retried() -> None:
    rig = make()
    stream, transport = rig.accept()
    rig.clock.advance(xmpp.LOGIN_TIMEOUT - 0.1)
    assert not transport.disconnected
    rig.clock.advance(0.1)
    assert transport.disconnected  # aborted
    assert rig.xmpp.counters.failed == 0  # counted once the connection is gone
    stream.connectionLost(Failure(ConnectionLost()))
    assert rig.xmpp.counters.failed == 1
    assert rig.value(CONNECTION + "Status") == "Error"
    assert "no resource bound within 30 s" in (rig.xmpp.last_problem or "")
    rig.clock.advance(xmpp.RETRY_INITIAL)
    assert len(rig.clock.tcpClients) == 2


def test_settings_the_acs_changes_are_followed() -> None:
    rig = make()
    stream, transport = rig.bind()
    rig.acs.later[SERIAL] = [
        rpc.SetParameterValues(
            (rpc.ParameterValue(CONNECTION + "Enable", "false", "xsd:boolean"),), "off"
        )
    ]
    assert rig.cpe.connection_request()
    rig.clock.advance(0)
    # Disabled: the stream is closed cleanly, and the JID is no more the ConnReqJabberID.
    assert transport.value().endswith(b"</stream:stream>")
    assert transport.disconnecting
    assert rig.value(CONNECTION + "Status") == "Disabled"
    rig.clock.advance(0)
    assert rig.acs.reported(SERIAL, MS + "ConnReqJabberID") == [BOUND_JID, ""]
    stream.connectionLost(Failure(ConnectionDone()))
    assert rig.xmpp.counters.lost == 0  # closed on purpose
    assert timers(rig.clock) == []
    # A server off loopback is not tried: misconfigured.
    rig.acs.later[SERIAL] = [
        rpc.SetParameterValues(
            (
                rpc.ParameterValue(CONNECTION + "Enable", "true", "xsd:boolean"),
                rpc.ParameterValue(
                    CONNECTION + "Server.1.ServerAddress", "xmpp.example.net", "xsd:string"
                ),
            ),
            "elsewhere",
        )
    ]
    assert rig.cpe.connection_request()
    rig.clock.advance(0)
    assert rig.value(CONNECTION + "Status") == "Error_Misconfigured"
    assert len(rig.clock.tcpClients) == 1
    assert "loopback" in (rig.xmpp.last_problem or "")


def test_a_reboot_closes_the_stream_and_reconnects_after() -> None:
    rig = make()
    stream, transport = rig.bind()
    rig.acs.later[SERIAL] = [rpc.Reboot("r")]
    assert rig.cpe.connection_request()
    rig.clock.advance(0)
    assert not rig.cpe.online
    assert transport.disconnecting and rig.xmpp.jid is None
    stream.connectionLost(Failure(ConnectionDone()))
    rig.clock.advance(5.0)  # the reboot delay
    assert rig.cpe.online and len(rig.clock.tcpClients) == 2
    rig.bind()
    assert rig.xmpp.counters.bound == 2 and rig.xmpp.counters.lost == 0
    assert "4 VALUE CHANGE" not in rig.acs.events(SERIAL)  # the BOOT Inform, same JID


def test_stop_closes_the_stream_and_cancels_every_timer() -> None:
    rig = make()
    stream, transport = rig.bind()
    stopped = rig.cpe.stop()
    assert not stopped.called  # until the socket is closed
    assert transport.value().endswith(b"</stream:stream>") and transport.disconnecting
    stream.connectionLost(Failure(ConnectionDone()))
    assert stopped.called
    assert timers(rig.clock) == []


def test_stop_aborts_a_stream_that_does_not_close() -> None:
    rig = make()
    stream, transport = rig.bind()
    stopped = rig.cpe.stop()
    rig.clock.advance(xmpp.CLOSE_TIMEOUT - 0.1)
    assert transport.disconnecting and not transport.disconnected
    rig.clock.advance(0.1)
    assert transport.disconnected  # aborted
    stream.connectionLost(Failure(ConnectionLost()))
    assert stopped.called
    assert timers(rig.clock) == []


def test_stop_cancels_a_connection_under_way() -> None:
    rig = make()
    assert rig.cpe.stop().called  # nothing to wait for
    assert rig.clock.connectors[-1].stoppedConnecting
    assert timers(rig.clock) == []
    assert rig.xmpp.counters.failed == 0  # stopped, not failed


def test_tr098_cpes_of_a_mixed_fleet_have_no_xmpp() -> None:
    fleet = Fleet(MemoryReactorClock(), acs_url=ACS_URL, count=2, model="mixed", xmpp=OPTIONS)
    tr181, tr098 = fleet.cpes
    assert tr181.xmpp is not None and tr098.xmpp is None
    assert tr098.value("InternetGatewayDevice.ManagementServer.ConnReqXMPPConnection") == ""
    assert "xmpp bound 0/1 logins 0 wakes 0 rejected 0" in fleet.summary()
    with pytest.raises(ValueError):
        Fleet(MemoryReactorClock(), acs_url=ACS_URL, count=1001, xmpp=OPTIONS)
    nat = Fleet(MemoryReactorClock(), acs_url=ACS_URL, count=1, xmpp=OPTIONS, nat=True)
    assert nat.cpes[0].value(MS + "SupportedConnReqMethods") == "HTTP,STUN,XMPP"


# --- the command line ------------------------------------------------------------------------

BASE = ["--acs", "http://127.0.0.1:7547/", "--count", "2"]


def test_xmpp_options_build_an_xmpp_fleet(tmp_path: Path) -> None:
    args = parse_args([*BASE, "--xmpp", "127.0.0.1:5222"])
    assert args.xmpp == ("127.0.0.1", 5222)
    fleet = make_fleet(MemoryReactorClock(), args)
    assert fleet.profile.xmpp == XmppOptions("127.0.0.1", 5222, "127.0.0.1")  # domain: host
    assert all(c.xmpp is not None for c in fleet.cpes)
    ca = tmp_path / "ca.pem"
    ca.write_bytes(CERTIFICATE)
    args = parse_args(
        [*BASE, "--xmpp", "127.0.0.2:5999", "--xmpp-domain", "acs.test", "--xmpp-ca", str(ca)]
    )
    assert make_fleet(MemoryReactorClock(), args).profile.xmpp == XmppOptions(
        "127.0.0.2", 5999, "acs.test", CERTIFICATE
    )
    assert parse_args(BASE).xmpp is None


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--xmpp", "10.1.2.3:5222"], "IPv4 loopback"),
        (["--xmpp", "localhost:5222"], "IPv4 loopback"),
        (["--xmpp", "[::1]:5222"], "IPv4 loopback"),
        (["--xmpp", "127.0.0.1"], "HOST:PORT"),
        (["--xmpp", "127.0.0.1:0"], "HOST:PORT"),
        (["--xmpp", "127.0.0.1:65536"], "HOST:PORT"),
        (["--xmpp-domain", "acs.test"], "need --xmpp"),
        (["--xmpp", "127.0.0.1:5222", "--xmpp-domain", "a@b"], "not an XMPP domain"),
        (["--xmpp", "127.0.0.1:5222", "--model", "tr098"], "TR-098 has no XMPP"),
        (["--xmpp", "127.0.0.1:5222", "--count", "1001"], "at most 1000"),
        (["--xmpp", "127.0.0.1:5222", "--xmpp-ca", "/nonexistent/ca.pem"], "cannot read"),
    ],
)
def test_bad_xmpp_options_are_refused_with_a_reason(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        parse_args(["--acs", "http://127.0.0.1:7547/", "--count", "2", *argv])
    assert message in capsys.readouterr().err


def test_a_ca_file_without_a_certificate_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("hello")
    with pytest.raises(SystemExit):
        parse_args([*BASE, "--xmpp", "127.0.0.1:5222", "--xmpp-ca", str(bad)])
    assert "no PEM certificate" in capsys.readouterr().err


_, CERTIFICATE = self_signed("acs.test")


# --- a small fleet against a real server -----------------------------------------------------

WAIT = 20.0


async def bounded(d: defer.Deferred[Any], seconds: float = WAIT) -> Any:
    return await d.addTimeout(seconds, reactor)


class AcsClient:
    """The ACS's side: a Twisted XMPP client logged in to the server."""

    def __init__(self, stream: Any, factory: Any, ended: defer.Deferred[None]) -> None:
        self.stream = stream
        self.factory = factory
        self.ended = ended

    @classmethod
    async def login(cls, server: XmppServer, user: str, password: str) -> AcsClient:
        jid = JID(f"{user}@{server.domain}/acs")
        tls = xmpp.tls_options(server.domain, server.ca)
        factory = client.XMPPClientFactory(jid, password, configurationForTLS=tls)
        factory.maxRetries = 0  # one connection: no reconnecting behind the test's back
        authenticated: defer.Deferred[Any] = defer.Deferred()
        ended: defer.Deferred[None] = defer.Deferred()
        factory.addBootstrap(xmlstream.STREAM_AUTHD_EVENT, authenticated.callback)
        factory.addBootstrap(xmlstream.INIT_FAILED_EVENT, authenticated.errback)
        factory.addBootstrap(xmlstream.STREAM_END_EVENT, lambda _: ended.callback(None))
        reactor.connectTCP(server.host, server.port, factory)
        return cls(await bounded(authenticated), factory, ended)

    async def close(self) -> None:
        self.factory.stopTrying()
        self.stream.sendFooter()
        self.stream.transport.loseConnection()
        await bounded(self.ended)

    async def wake(self, to: JID, username: str = CR_USERNAME, password: str = CR_PASSWORD) -> str:
        """Send a connection request; "result" or the error's condition."""
        iq = xmlstream.IQ(self.stream, "get")
        request = iq.addElement((NS, "connectionRequest"))
        request.addElement("username", content=username)
        request.addElement("password", content=password)
        try:
            answer = await bounded(iq.send(to.full()))
        except error.StanzaError as refused:
            return str(refused.condition)
        return str(answer["type"])


class RealServer(unittest.TestCase):
    """Three TR-181 CPEs against prosody: in-band registration, bind, the JID reported,
    woken by the ACS's XMPP client, refused for others."""

    def setUp(self) -> None:
        # Not trial's mktemp(): relative to the working directory, it would litter the checkout.
        home = Path(tempfile.mkdtemp(prefix="cpe-sim-xmpp-"))
        self.addCleanup(shutil.rmtree, home, ignore_errors=True)
        self.server = self.enterContext(prosody(home))  # skips without prosody
        self.server.register("acs", "acs-password")
        self.server.register("intruder", "intruder-password")
        self.options = XmppOptions(
            self.server.host, self.server.port, self.server.domain, self.server.ca
        )

    async def start(self, acs: Acs, *, count: int = 3, seed: int = 0) -> Fleet:
        fleet = Fleet(
            reactor,
            acs_url=ACS_URL,
            count=count,
            periodic=False,
            seed=seed,
            reboot_delay=0.2,
            xmpp=self.options,
        )
        fleet.profile.client_factory = acs.client
        await fleet.start()
        self.addCleanup(fleet.stop)
        return fleet

    async def quiet(self, cpe: SimulatedCPE) -> None:
        """Until no session is in flight or due (bounded: a few sessions)."""
        for _ in range(5):
            if not cpe.busy and not cpe.pending_events:
                return
            await bounded(cpe.next_session())
        raise AssertionError(f"{cpe.serial} keeps informing")

    async def test_a_fleet_registers_binds_reports_its_jid_and_is_woken(self) -> None:
        acs = Acs()
        fleet = await self.start(acs)
        jids = [await bounded(c.xmpp.bound()) for c in fleet.cpes if c.xmpp is not None]
        self.assertEqual(
            [j.full() for j in jids], [f"cpe-sim{i:06d}@acs.test/cwmp" for i in range(3)]
        )
        for cpe, jid in zip(fleet.cpes, jids, strict=True):
            assert cpe.xmpp is not None
            await self.quiet(cpe)
            self.assertEqual(acs.reported(cpe.serial, MS + "ConnReqJabberID"), [jid.full()])
            self.assertEqual(cpe.value(CONNECTION + "Status"), "Enabled")
            self.assertEqual(cpe.value(CONNECTION + "TLSEstablished"), "true")
            self.assertEqual(cpe.xmpp.counters.registered, 1)  # its account, in-band
        ours = await AcsClient.login(self.server, "acs", "acs-password")
        self.addCleanup(ours.close)
        theirs = await AcsClient.login(self.server, "intruder", "intruder-password")
        self.addCleanup(theirs.close)
        for cpe, jid in zip(fleet.cpes, jids, strict=True):
            assert cpe.xmpp is not None
            woken = cpe.next_session()
            self.assertEqual(await ours.wake(jid), "result")
            await bounded(woken)
            self.assertEqual(acs.events(cpe.serial), ["6 CONNECTION REQUEST"])
            self.assertEqual(await theirs.wake(jid), "service-unavailable")
            self.assertEqual(await ours.wake(jid, password="guess"), "not-authorized")
            self.assertEqual(cpe.xmpp.counters.accepted, 1)
            self.assertEqual(cpe.xmpp.counters.rejected, {"not_allowed": 1, "unauthorized": 1})
        self.assertIn("xmpp bound 3/3 logins 3 wakes 3 rejected 6", fleet.summary())

    async def test_a_reboot_and_a_rerun_log_into_the_same_account_and_jid(self) -> None:
        acs = Acs()
        fleet = await self.start(acs, count=1)
        [cpe] = fleet.cpes
        assert cpe.xmpp is not None
        jid = await bounded(cpe.xmpp.bound())
        await self.quiet(cpe)
        ours = await AcsClient.login(self.server, "acs", "acs-password")
        self.addCleanup(ours.close)
        acs.later[cpe.serial] = [rpc.Reboot("xmpp")]
        woken = cpe.next_session()
        self.assertEqual(await ours.wake(jid), "result")
        await bounded(woken)  # the session that asked for the reboot: offline, disconnected
        self.assertIsNone(cpe.xmpp.jid)
        self.assertEqual(await bounded(cpe.xmpp.bound()), jid)  # back, the same JID
        await self.quiet(cpe)
        self.assertEqual(acs.reported(cpe.serial, MS + "ConnReqJabberID"), [jid.full()])
        self.assertEqual((cpe.xmpp.counters.bound, cpe.xmpp.counters.registered), (2, 1))
        await fleet.stop()
        # A re-run with the same seed: the account exists (conflict), the login works.
        again = await self.start(Acs(), count=1)
        assert again.cpes[0].xmpp is not None
        self.assertEqual(await bounded(again.cpes[0].xmpp.bound()), jid)
        self.assertEqual(again.cpes[0].xmpp.counters.registered, 0)

    async def test_another_seed_cannot_log_into_the_accounts(self) -> None:
        first = await self.start(Acs(), count=1)
        assert first.cpes[0].xmpp is not None
        await bounded(first.cpes[0].xmpp.bound())
        await first.stop()
        # Its Status actively notified: every change is a session to wait for.
        active = rpc.SetParameterAttributesStruct(CONNECTION + "Status", True, 2)
        acs = Acs(first=[*provisioning(), rpc.SetParameterAttributes((active,))])
        [cpe] = (await self.start(acs, count=1, seed=1)).cpes
        assert cpe.xmpp is not None
        for _ in range(10):
            if cpe.xmpp.status == xmpp.AUTHENTICATION_FAILURE:
                break
            await bounded(cpe.next_session())
        self.assertEqual(cpe.xmpp.status, xmpp.AUTHENTICATION_FAILURE)
        self.assertIsNone(cpe.xmpp.jid)
        self.assertIn("SASL", cpe.xmpp.last_problem or "")
