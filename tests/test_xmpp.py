"""XMPP connection requests (TR-069 Annex K, acs/xmpp.py): the stanzas, what each answer
means, and the ACS's session against a real prosody on loopback (tests/xmppserver.py),
with a plain twisted.words client standing for the CPE."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest
from factories import give_type, wakeable_device
from twisted.internet import defer
from twisted.internet import reactor as _reactor
from twisted.internet.task import Clock
from twisted.trial import unittest
from twisted.words.protocols.jabber import client, jid, xmlstream
from twisted.words.xish import domish
from xmppserver import prosody

from acs import xmpp as xmpp_module
from acs.config import ConfigError, XmppConfig, parse_config
from acs.connreq import ConnectionRequester
from acs.cwmp.paths import JABBER_ID
from acs.store import Store
from acs.store.models import UP
from acs.xmpp import (
    NS_CONNREQ,
    NS_STANZAS,
    Answer,
    XmppClient,
    answer,
    connection_request,
    device_account,
    device_jid,
    trust,
)
from bench.pgcluster import fixed_port

reactor: Any = _reactor
WAIT = 20.0
T0 = 1_700_000_000.0


def test_a_device_jid_is_a_full_jid_within_bounds() -> None:
    assert device_jid("cpe-1@acs.test/cwmp") == jid.JID("cpe-1@acs.test/cwmp")
    assert device_jid(" CPE-1@ACS.test/cwmp ") == jid.JID("cpe-1@acs.test/cwmp")  # nodeprep
    for bad in (None, "", "acs.test", "cpe@acs.test", "acs.test/cwmp", "a@@b/c", "@x/y"):
        assert device_jid(bad) is None, bad
    assert device_jid("u@" + "d" * 3100 + "/r") is None


def test_a_device_account_is_derived_from_the_secret_and_the_identity() -> None:
    one = device_account(b"k" * 32, "00D09E-HG-SN1")
    assert one == device_account(b"k" * 32, "00D09E-HG-SN1")  # every node, every time
    assert one != device_account(b"k" * 32, "00D09E-HG-SN2")
    assert one != device_account(b"j" * 32, "00D09E-HG-SN1")
    username, password = one
    assert jid.JID(f"{username}@acs.test").user == username  # a valid localpart as it is
    assert len(password) == 32 and password not in username


def test_the_request_is_the_annex_k_iq() -> None:
    iq = connection_request(jid.JID("cpe@acs.test/cwmp"), "id1", "user", "p<&>w")
    assert (iq["type"], iq["to"], iq["id"]) == ("get", "cpe@acs.test/cwmp", "id1")
    [request] = iq.elements()
    assert (request.uri, request.name) == (NS_CONNREQ, "connectionRequest")
    assert [(c.name, str(c)) for c in request.elements()] == [
        ("username", "user"),
        ("password", "p<&>w"),
    ]
    assert b"p&lt;&amp;&gt;w" in iq.toXml().encode()


def _error(condition: str, uri: str = NS_STANZAS) -> domish.Element:
    iq = domish.Element((None, "iq"), attribs={"type": "error", "id": "x"})
    error = iq.addElement("error")
    error["type"] = "cancel"
    error.addElement((uri, condition))
    return iq


def test_each_answer_is_an_outcome() -> None:
    result = domish.Element((None, "iq"), attribs={"type": "result", "id": "x"})
    assert answer(result) == Answer("answered")
    assert answer(_error("not-authorized")).outcome == "auth_failed"
    unavailable = answer(_error("service-unavailable"))
    assert unavailable.outcome == "error" and "ConnReqAllowedJabberIDs" in unavailable.reason
    assert answer(_error("item-not-found")) == Answer("error", "XMPP error item-not-found")
    # A condition outside the stanza-errors namespace is no condition.
    assert answer(_error("not-authorized", "urn:x")).outcome == "error"


def test_the_xmpp_section_is_checked() -> None:
    ok = {"server": "xmpp.example.net", "jid": "acs@xmpp.example.net", "password": "pw"}
    assert parse_config({"xmpp": ok}).xmpp.server == "xmpp.example.net"
    assert parse_config({}).xmpp.server == ""  # off by default
    for change, message in [
        ({"server": "xmpp.example.net:0"}, "port must be 1-65535"),
        ({"server": "two words"}, "expected HOST or HOST:PORT"),
        ({"jid": "xmpp.example.net"}, "expected user@domain"),
        ({"jid": "a@b@c"}, "expected user@domain"),
        ({"password": ""}, "password must not be empty"),
    ]:
        with pytest.raises(ConfigError, match=message):
            parse_config({"xmpp": {**ok, **change}})


def test_an_unreadable_ca_file_is_a_config_error(tmp_path: Path) -> None:
    base = XmppConfig(server="x", jid="acs@x", password="p")
    with pytest.raises(ConfigError, match="ca_file"):
        trust(XmppConfig(**{**base.__dict__, "ca_file": str(tmp_path / "missing.pem")}))
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    with pytest.raises(ConfigError, match="no PEM certificate"):
        trust(XmppConfig(**{**base.__dict__, "ca_file": str(junk)}))


class Cpe:
    """A twisted.words client standing for a CPE: answers each connectionRequest IQ with
    what ``reply`` makes of it (None: no answer)."""

    def __init__(self, reply: Callable[[domish.Element], domish.Element | None]) -> None:
        self.reply = reply
        self.asked: list[domish.Element] = []
        self.stream: xmlstream.XmlStream | None = None
        self._waiting: list[defer.Deferred[domish.Element]] = []

    def next_request(self) -> defer.Deferred[domish.Element]:
        """Fires with the next connectionRequest IQ this CPE gets (bounded)."""
        d: defer.Deferred[domish.Element] = defer.Deferred()
        self._waiting.append(d)
        return d.addTimeout(WAIT, reactor)

    def on_iq(self, iq: domish.Element) -> None:
        self.asked.append(iq)
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(iq)
        answer = self.reply(iq)
        if answer is not None and self.stream is not None:
            self.stream.send(answer)


def result_for(iq: domish.Element) -> domish.Element:
    return domish.Element(
        (None, "iq"), attribs={"type": "result", "id": iq["id"], "to": iq["from"]}
    )


def error_for(condition: str) -> Callable[[domish.Element], domish.Element]:
    def reply(iq: domish.Element) -> domish.Element:
        out = _error(condition)
        out["id"], out["to"] = iq["id"], iq["from"]
        return out

    return reply


class AcsSessionTests(unittest.TestCase):
    """The ACS's XmppClient against prosody."""

    def setUp(self) -> None:
        # trial's mktemp() is relative to the working directory: keep the checkout clean.
        tmp = Path(tempfile.mkdtemp(prefix="acs-xmpp-"))
        self.addCleanup(shutil.rmtree, tmp, ignore_errors=True)
        self.server = self.enterContext(prosody(tmp))
        self.server.register("acs", "acs-password")
        self.server.register("cpe1", "cpe-password")
        self.server.register("other", "other-password")

    def config(self, **change: str) -> XmppConfig:
        values = {
            "server": f"127.0.0.1:{self.server.port}",
            "jid": "acs@acs.test/acs",
            "password": "acs-password",
            "ca_file": str(self.server.ca_file),
            **change,
        }
        return XmppConfig(**values)

    async def acs(self, **change: str) -> XmppClient:
        seen: list[bool] = []
        acs = XmppClient(reactor, self.config(**change), observe=seen.append)
        acs.startService()
        self.addCleanup(acs.stopService)
        await acs.when_logged_in().addTimeout(WAIT, reactor)
        self.assertTrue(acs.connected)
        self.assertEqual(seen, [True])
        self.assertTrue(acs.when_logged_in().called)
        return acs

    async def login(self, user: str, password: str, cpe: Cpe | None = None) -> jid.JID:
        """Log ``user`` in (resource "cwmp"); its stream answers IQs through ``cpe``."""
        me = jid.JID(f"{user}@acs.test/cwmp")
        factory = client.XMPPClientFactory(me, password, trust(self.config()))
        ready: defer.Deferred[xmlstream.XmlStream] = defer.Deferred()
        factory.addBootstrap(xmlstream.STREAM_AUTHD_EVENT, ready.callback)
        factory.addBootstrap(xmlstream.INIT_FAILED_EVENT, ready.errback)
        connector = reactor.connectTCP("127.0.0.1", self.server.port, factory)
        self.addCleanup(connector.disconnect)
        self.addCleanup(factory.stopTrying)
        stream = await ready.addTimeout(WAIT, reactor)
        if cpe is not None:
            cpe.stream = stream
            stream.addObserver(
                f"/iq[@type='get']/connectionRequest[@xmlns='{NS_CONNREQ}']", cpe.on_iq
            )
        return me

    async def test_device_accounts_are_made_by_in_band_registration(self) -> None:
        acs = await self.acs()
        username, password = device_account(b"k" * 32, "00D09E-HG-SN1")
        self.assertEqual(await acs.register(username, password), "created")
        self.assertEqual(await acs.register(username, password), "exists")
        refused = await acs.register("not a localpart", password)
        self.assertTrue(refused.startswith("refused: "), refused)
        # The account logs in: it is the CPE's now.
        await self.login(username, password)

    async def test_a_registration_that_cannot_be_made_says_why(self) -> None:
        nowhere = XmppClient(reactor, self.config(server=f"127.0.0.1:{fixed_port()}"))
        nowhere.startService()
        self.addCleanup(nowhere.stopService)
        outcome = await nowhere.register("cpe-1", "pw").addTimeout(WAIT, reactor)
        self.assertTrue(outcome.startswith("not registered: "), outcome)
        # Stopping abandons a registration under way.
        acs = XmppClient(reactor, self.config())
        acs.startService()
        under_way = acs.register("cpe-2", "pw")
        await acs.stopService()
        self.assertEqual(self.successResultOf(under_way), "not registered: the appliance stopped")

    async def test_a_connection_request_the_cpe_accepts_is_answered(self) -> None:
        acs = await self.acs()
        cpe = Cpe(result_for)
        me = await self.login("cpe1", "cpe-password", cpe)
        outcome = await acs.request(me, "cr-user", "cr-pass").addTimeout(WAIT, reactor)
        self.assertEqual(outcome, Answer("answered"))
        [iq] = cpe.asked
        # The server stamps who sent it: the ACS's bare JID, with a resource of its own.
        sender = jid.JID(iq["from"])
        self.assertEqual(sender.userhost(), "acs@acs.test")
        self.assertTrue(str(sender.resource).startswith("acs-"), sender.resource)
        request = next(iq.elements())
        credentials = {c.name: str(c) for c in request.elements()}
        self.assertEqual(credentials, {"username": "cr-user", "password": "cr-pass"})

    async def test_refusals_are_their_outcomes(self) -> None:
        acs = await self.acs()
        wrong = Cpe(error_for("not-authorized"))
        me = await self.login("cpe1", "cpe-password", wrong)
        self.assertEqual((await acs.request(me, "u", "p")).outcome, "auth_failed")
        not_allowed = Cpe(error_for("service-unavailable"))
        other = await self.login("other", "other-password", not_allowed)
        self.assertEqual((await acs.request(other, "u", "p")).outcome, "error")
        # No such session on the server: the server itself answers service-unavailable.
        gone = await acs.request(jid.JID("nobody@acs.test/cwmp"), "u", "p")
        self.assertEqual(gone.outcome, "error")
        self.assertIn("service-unavailable", gone.reason)

    async def test_only_the_jid_asked_answers_its_request(self) -> None:
        acs = await self.acs()
        silent = Cpe(lambda iq: None)
        me = await self.login("cpe1", "cpe-password", silent)
        asked = silent.next_request()
        pending = acs.request(me, "u", "p")
        iq = await asked
        # Another account answers the id in flight: the server stamps its own JID as from.
        other = Cpe(lambda _: None)
        await self.login("other", "other-password", other)
        assert other.stream is not None
        forged = result_for(iq)
        forged["from"] = me.full()  # the server overwrites it with the real sender
        other.stream.send(forged)
        # The real CPE answers afterwards: that is the answer taken.
        assert silent.stream is not None
        silent.stream.send(_error_reply(iq, "not-authorized"))
        self.assertEqual((await pending.addTimeout(WAIT, reactor)).outcome, "auth_failed")

    async def test_a_request_cancelled_is_forgotten(self) -> None:
        acs = await self.acs()
        me = await self.login("cpe1", "cpe-password", Cpe(lambda iq: None))
        pending = acs.request(me, "u", "p")
        pending.cancel()
        self.failureResultOf(pending, defer.CancelledError)
        self.assertEqual(acs._pending, {})

    async def test_in_flight_requests_are_bounded(self) -> None:
        acs = await self.acs()
        me = await self.login("cpe1", "cpe-password", Cpe(lambda iq: None))
        self.patch(xmpp_module, "MAX_PENDING", 2)
        first = [acs.request(me, "u", "p") for _ in range(2)]
        refused = await acs.request(me, "u", "p")
        self.assertEqual(refused, Answer("error", "too many XMPP connection requests in flight"))
        for d in first:
            d.cancel()
            self.failureResultOf(d, defer.CancelledError)
        self.assertEqual(acs._pending, {})

    async def test_an_iq_to_the_acs_gets_service_unavailable(self) -> None:
        acs = await self.acs()
        reply_d: defer.Deferred[domish.Element] = defer.Deferred()
        cpe = Cpe(lambda iq: None)
        await self.login("cpe1", "cpe-password", cpe)
        assert cpe.stream is not None
        cpe.stream.addOnetimeObserver("/iq[@type='error']", reply_d.callback)
        probe = domish.Element(
            (None, "iq"), attribs={"type": "get", "id": "q1", "to": acs.jid.full()}
        )
        probe.addElement(("jabber:iq:version", "query"))
        cpe.stream.send(probe)
        reply = await reply_d.addTimeout(WAIT, reactor)
        self.assertEqual(reply["id"], "q1")
        error = next(reply.elements())
        self.assertEqual(
            [(c.uri, c.name) for c in error.elements()], [(NS_STANZAS, "service-unavailable")]
        )

    async def refused_login(self, **change: str) -> XmppClient:
        """An ACS whose first login attempt failed."""
        failed: defer.Deferred[None] = defer.Deferred()

        def observe(connected: bool) -> None:
            self.assertFalse(connected)
            if not failed.called:
                failed.callback(None)

        acs = XmppClient(reactor, self.config(**change), observe=observe)
        acs.startService()
        self.addCleanup(acs.stopService)
        await failed.addTimeout(WAIT, reactor)
        return acs

    async def test_a_wrong_password_means_no_session_and_requests_fail_at_once(self) -> None:
        acs = await self.refused_login(password="wrong-password")
        self.assertFalse(acs.connected)
        outcome = await acs.request(jid.JID("cpe1@acs.test/cwmp"), "u", "p")
        self.assertEqual(outcome.outcome, "error")
        self.assertIn("not logged in", outcome.reason)

    async def test_a_certificate_not_trusted_means_no_session(self) -> None:
        # The system's trust store does not know the test server's self-signed certificate.
        acs = await self.refused_login(ca_file="")
        self.assertFalse(acs.connected)

    async def test_a_lost_session_fails_its_requests_and_comes_back(self) -> None:
        acs = await self.acs()
        seen: list[bool] = []
        acs._observe = seen.append
        me = await self.login("cpe1", "cpe-password", Cpe(lambda iq: None))
        pending = acs.request(me, "u", "p")
        transport: Any = acs._stream.transport if acs._stream is not None else None
        transport.loseConnection()
        lost = await pending.addTimeout(WAIT, reactor)
        self.assertEqual(lost.outcome, "error")
        self.assertIn("ended", lost.reason)
        back = acs.when_logged_in()
        self.assertNoResult(back)  # not before the back-off
        await back.addTimeout(WAIT, reactor)
        self.assertEqual(seen, [False, True])
        self.assertTrue(acs.connected)


def _error_reply(iq: domish.Element, condition: str) -> domish.Element:
    return error_for(condition)(iq)


class FakeXmpp:
    """Stands for XmppClient in ConnectionRequester: records each request, answers with
    ``answers`` in turn (None: never)."""

    jid = jid.JID("acs@acs.test/acs-1")

    def __init__(self, *answers: Answer | None) -> None:
        self.answers = list(answers)
        self.asked: list[tuple[str, str, str]] = []
        self.cancelled = 0

    def request(self, to: jid.JID, username: str, password: str) -> defer.Deferred[Answer]:
        self.asked.append((to.full(), username, password))
        reply = self.answers.pop(0)
        if reply is None:
            return defer.Deferred(lambda _d: self._cancelled())
        return defer.succeed(reply)

    def _cancelled(self) -> None:
        self.cancelled += 1


class RequesterTests(unittest.TestCase):
    """How ConnectionRequester uses XMPP: when, in which order, and what is recorded."""

    JID = "cpe-1@acs.test/cwmp"

    def setUp(self) -> None:
        self.store = Store.open(":memory:")
        self.addCleanup(self.store.close)
        self.clock = Clock()
        self.clock.advance(T0)
        self.observed: list[tuple[str, str]] = []
        self.device = wakeable_device(self.store, now=T0)

    def requester(self, xmpp: FakeXmpp) -> ConnectionRequester:
        requester = ConnectionRequester(
            reactor, self.store, timeout=5, clock=self.clock, xmpp=cast(Any, xmpp),
            observe=lambda outcome, via: self.observed.append((outcome, via)),
        )  # fmt: skip
        self.addCleanup(requester.stop)
        return requester

    def report_jid(self, value: str = JID) -> None:
        self.store.upsert_parameters(
            self.device, [(f"Device.{JABBER_ID}", value, "xsd:string", False)], now=T0
        )

    def entries(self) -> list[tuple[str, str]]:
        history = reversed(self.store.history(self.device))
        return [
            (e.detail["via"], e.detail["outcome"])
            for e in history
            if e.action == "connection_request"
        ]

    def typed(self, *order: str) -> None:
        give_type(self.store, self.device, *order, now=T0)

    async def test_a_device_with_a_jid_is_asked_by_xmpp_first(self) -> None:
        self.report_jid()
        xmpp = FakeXmpp(Answer("answered"))
        self.assertEqual(await self.requester(xmpp).wake(self.device), "answered")
        self.assertEqual(xmpp.asked, [(self.JID, "cr", "crpw")])
        self.assertEqual(self.entries(), [("xmpp", "answered")])
        self.assertEqual(self.observed, [("answered", "xmpp")])
        device = self.store.get_device(self.device)
        assert device is not None
        self.assertEqual(device.status, UP)

    async def test_xmpp_not_reaching_the_cpe_falls_back_to_http(self) -> None:
        self.report_jid()
        xmpp = FakeXmpp(Answer("error", "service-unavailable"))
        self.assertEqual(await self.requester(xmpp).wake(self.device), "no_url")
        self.assertEqual(self.entries(), [("xmpp", "error"), ("http", "no_url")])

    async def test_an_unanswered_xmpp_request_times_out_and_is_dropped(self) -> None:
        self.report_jid()
        xmpp = FakeXmpp(None)
        woken = self.requester(xmpp).wake(self.device)
        self.assertNoResult(woken)
        self.clock.advance(5)
        self.assertEqual(self.successResultOf(woken), "no_url")
        self.assertEqual(xmpp.cancelled, 1)
        self.assertEqual(self.entries(), [("xmpp", "timeout"), ("http", "no_url")])

    async def test_credentials_refused_end_the_attempts(self) -> None:
        self.report_jid()
        xmpp = FakeXmpp(Answer("auth_failed", "no"))
        self.assertEqual(await self.requester(xmpp).wake(self.device), "auth_failed")
        self.assertEqual(self.entries(), [("xmpp", "auth_failed")])

    async def test_the_device_types_order_comes_first(self) -> None:
        self.report_jid()
        self.typed("http", "xmpp")
        xmpp = FakeXmpp(Answer("answered"))
        self.assertEqual(await self.requester(xmpp).wake(self.device), "answered")
        self.assertEqual(self.entries(), [("http", "no_url"), ("xmpp", "answered")])

    async def test_without_a_usable_jid_xmpp_is_skipped(self) -> None:
        self.report_jid("not a jid")
        xmpp = FakeXmpp()
        self.assertEqual(await self.requester(xmpp).wake(self.device), "no_url")
        self.assertEqual((xmpp.asked, self.entries()), ([], [("http", "no_url")]))
        # A JID of another domain: the device's requests (and credentials) stay here.
        self.report_jid("cpe-1@elsewhere.example/cwmp")
        self.assertEqual(await self.requester(xmpp).wake(self.device), "no_url")
        self.assertEqual(xmpp.asked, [])
        self.typed("xmpp")
        self.assertEqual(await self.requester(xmpp).wake(self.device), "no_url")
        last = next(e for e in self.store.history(self.device) if e.action == "connection_request")
        self.assertEqual(last.detail["via"], "xmpp")
        self.assertIn("ConnReqJabberID", last.detail["reason"])
