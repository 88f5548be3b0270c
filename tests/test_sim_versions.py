"""CWMP versions in the simulator: what each version announces and what the CPE adopts.

The per-version sessions run against the real ACS resource (``CwmpResource`` behind
``CwmpSite``, real store and task engine) on loopback; the step-down cases use a scripted
in-memory ACS that answers in a lower version than the CPE's.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
from twisted.internet import reactor, task
from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure
from twisted.trial import unittest

from acs.config import CwmpConfig
from acs.cwmp import rpc, soap
from acs.cwmp.versions import adopt_version
from acs.cwmp_http import CwmpResource
from acs.cwmp_site import CwmpSite
from acs.store import Store
from acs.tasks import TaskEngine
from cpe_sim.cpe import (
    HttpResponse,
    Profile,
    SessionClient,
    SimulatedCPE,
    TreqSessionClient,
)
from cpe_sim.datamodel import load_template
from cpe_sim.fleet import Fleet

REACTOR: Any = reactor
WAIT = 10.0  # bound on every wait; reached only when something is broken
ALL = "1.0,1.1,1.2,1.3,1.4"


# --- the adoption rule ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("own", "acs_ns", "use_version", "adopted"),
    [
        ("1.4", soap.CWMP_NS["1.2"], "1.4", "1.4"),  # both speak 1.4
        ("1.4", soap.CWMP_NS["1.2"], "1.3", "1.3"),  # the ACS picked lower
        ("1.4", soap.CWMP_NS["1.2"], None, "1.2"),  # the ACS ignored the offer
        ("1.4", soap.CWMP_NS["1.0"], "1.4", "1.0"),  # contradictory: the lower wins
        ("1.4", "urn:dslforum-org:cwmp-1-3", None, "1.3"),  # GenieACS-style namespace
        ("1.3", soap.CWMP_NS["1.2"], None, "1.3"),  # same namespace: nothing to adopt
        ("1.3", soap.CWMP_NS["1.2"], "1.2", "1.3"),  # UseCWMPVersion only answers an offer
        ("1.2", soap.CWMP_NS["1.1"], None, "1.1"),
        ("1.0", soap.CWMP_NS["1.2"], None, "1.0"),  # never higher than the CPE
    ],
)
def test_cpe_adopts_the_lower_of_its_version_and_the_acs_answer(
    own: str, acs_ns: str, use_version: str | None, adopted: str
) -> None:
    assert adopt_version(own, acs_ns, use_version) == adopted


def test_fleet_version_defaults_by_root_and_can_be_set() -> None:
    clock = task.Clock()
    mixed = Fleet(clock, acs_url="http://127.0.0.1:7547/", count=2, model="mixed")
    assert [c.cwmp_version for c in mixed.cpes] == ["1.3", "1.0"]
    assert [c.ns for c in mixed.cpes] == [soap.CWMP_NS["1.2"], soap.CWMP_NS["1.0"]]
    v11 = Fleet(clock, acs_url="http://127.0.0.1:7547/", count=2, model="mixed", cwmp_version="1.1")
    assert [c.cwmp_version for c in v11.cpes] == ["1.1", "1.1"]
    assert {c.ns for c in v11.cpes} == {soap.CWMP_NS["1.1"]}


@pytest.mark.parametrize("bad", ["2.0", "1.5", "1", ""])
def test_unknown_cwmp_version_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="cwmp_version"):
        Fleet(task.Clock(), acs_url="http://127.0.0.1:7547/", count=1, cwmp_version=bad)


# --- against the real ACS resource ------------------------------------------------------------


@dataclass(frozen=True)
class Exchange:
    body: bytes | None  # what the CPE POSTed (None: empty POST)
    response: HttpResponse

    @property
    def sent(self) -> soap.Envelope | None:
        return soap.parse(self.body) if self.body else None

    @property
    def answer(self) -> soap.Envelope | None:
        if self.response.code != 200 or not self.response.body.strip():
            return None
        return soap.parse(self.response.body)


class RecordingClient:
    """A ``SessionClient`` that keeps every exchange of the session it carries."""

    def __init__(self, inner: SessionClient, log: list[Exchange]) -> None:
        self.inner = inner
        self.log = log

    def request(
        self, method: str, url: str, body: bytes | None, headers: Mapping[str, str]
    ) -> Deferred[HttpResponse]:
        def record(response: HttpResponse) -> HttpResponse:
            self.log.append(Exchange(body, response))
            return response

        return self.inner.request(method, url, body, headers).addCallback(record)

    def close(self) -> Deferred[None]:
        return self.inner.close()


class _TrackingSite(CwmpSite):
    """Lets the test wait until the ACS side of every connection is closed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.closed: list[Deferred[None]] = []

    def buildProtocol(self, addr: Any) -> Any:
        protocol = super().buildProtocol(addr)
        closed: Deferred[None] = Deferred()
        self.closed.append(closed)
        lost = protocol.connectionLost

        def connection_lost(reason: Failure) -> None:
            lost(reason)
            closed.callback(None)

        protocol.connectionLost = connection_lost
        return protocol


class RealAcsVersionTests(unittest.TestCase):
    def setUp(self) -> None:
        # ACS timers (session timeout, nonces) on a Clock; HTTP on the real reactor.
        clock = task.Clock()
        clock.advance(1_700_000_000)
        self.store = Store.open(":memory:")
        self.addCleanup(self.store.close)
        resource = CwmpResource(
            store=self.store,
            tasks=TaskEngine(self.store, cast(IReactorTime, clock)),
            config=CwmpConfig(),
            reactor=cast(IReactorTime, clock),
            secret=b"k" * 32,
        )
        self.addCleanup(resource.stop)
        site = _TrackingSite(resource, reactor=clock)
        port: Any = REACTOR.listenTCP(0, site, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.addCleanup(lambda: self.bounded(gatherResults(site.closed)))
        self.url = f"http://127.0.0.1:{port.getHost().port}/"

    @staticmethod
    async def bounded(d: Deferred[Any]) -> Any:
        d.addTimeout(WAIT, REACTOR)
        return await d

    async def session(self, version: str) -> tuple[SimulatedCPE, list[Exchange]]:
        log: list[Exchange] = []
        profile = Profile(
            reactor=REACTOR,
            acs_url=self.url,
            periodic=False,
            cwmp_version=version,
            client_factory=lambda: RecordingClient(TreqSessionClient(REACTOR, WAIT), log),
        )
        cpe = SimulatedCPE(f"VER{version.replace('.', '')}", load_template("tr181"), profile)
        self.addCleanup(cpe.stop)
        await self.bounded(cpe.inform())
        self.assertEqual((cpe.sessions_ok, cpe.sessions_failed), (1, 0), cpe.last_error)
        return cpe, log

    async def assert_session_in_version(self, version: str) -> None:
        ns = soap.CWMP_NS[version]
        cpe, log = await self.session(version)
        inform, inform_response = log[0].sent, log[0].answer
        assert inform is not None and inform_response is not None
        self.assertIsInstance(inform.message, rpc.Inform)
        self.assertEqual(inform.ns, ns)
        # SessionTimeout from 1.3 (XSD-1.3), SupportedCWMPVersions from 1.4 (XSD-1.4).
        self.assertEqual(inform.header.session_timeout is not None, version >= "1.3")
        self.assertEqual(inform.header.supported_versions, ALL if version == "1.4" else None)
        self.assertIsInstance(inform_response.message, rpc.InformResponse)
        self.assertEqual(inform_response.header.use_version, "1.4" if version == "1.4" else None)
        # The bootstrap session provisions the CPE: real RPCs both ways, all in one namespace.
        acs_rpcs = [e.answer for e in log[1:] if e.answer is not None]
        self.assertTrue(acs_rpcs)
        self.assertEqual({e.ns for e in acs_rpcs if e is not None}, {ns})
        self.assertEqual({e.sent.ns for e in log if e.sent is not None}, {ns})
        self.assertEqual(log[-1].response.code, 204)
        self.assertEqual((cpe.session_version, cpe.session_ns), (version, ns))
        device = self.store.find_device_by_serial(cpe.serial)
        assert device is not None
        self.assertTrue(device.provisioned)

    async def test_cwmp_1_0_session_completes_in_the_1_0_namespace(self) -> None:
        await self.assert_session_in_version("1.0")

    async def test_cwmp_1_1_session_completes_in_the_1_1_namespace(self) -> None:
        await self.assert_session_in_version("1.1")

    async def test_cwmp_1_2_session_completes_in_the_1_2_namespace(self) -> None:
        await self.assert_session_in_version("1.2")

    async def test_cwmp_1_3_session_sends_session_timeout(self) -> None:
        await self.assert_session_in_version("1.3")

    async def test_cwmp_1_4_session_negotiates_1_4_with_use_cwmp_version(self) -> None:
        await self.assert_session_in_version("1.4")


# --- stepping down to a lower ACS -----------------------------------------------------------


@dataclass
class LowerAcs:
    """Answers the Inform in ``ns`` (with ``use_version``), then one RPC, then 204."""

    ns: str
    use_version: str | None = None
    sent: list[soap.Envelope] = field(default_factory=list)  # CPE envelopes after the Inform
    _rpc_sent: bool = False

    def client(self) -> LowerClient:
        return LowerClient(self)

    def answer(self, body: bytes | None) -> HttpResponse:
        if body:
            envelope = soap.parse(body)
            if isinstance(envelope.message, rpc.Inform):
                header = soap.Header(id=envelope.header.id, use_version=self.use_version)
                return self._reply(rpc.InformResponse(1), header)
            self.sent.append(envelope)
        if self._rpc_sent:
            return HttpResponse(204, {}, b"")
        self._rpc_sent = True
        return self._reply(rpc.GetRPCMethods(), soap.Header(id="acs-1"))

    def _reply(self, message: rpc.Message, header: soap.Header) -> HttpResponse:
        return HttpResponse(200, {}, soap.serialize(soap.Envelope(message, header, self.ns)))


class LowerClient:
    def __init__(self, acs: LowerAcs) -> None:
        self.acs = acs

    def request(
        self, method: str, url: str, body: bytes | None, headers: object
    ) -> Deferred[HttpResponse]:
        return succeed(self.acs.answer(body))

    def close(self) -> Deferred[None]:
        return succeed(None)


class StepDownTests(unittest.TestCase):
    def run_against(self, acs: LowerAcs, version: str) -> SimulatedCPE:
        profile = Profile(
            reactor=task.Clock(),
            acs_url="http://127.0.0.1:7547/",
            periodic=False,
            rng=random.Random(1),
            cwmp_version=version,
            client_factory=acs.client,
        )
        cpe = SimulatedCPE("DOWN00001", load_template("tr181"), profile)
        self.addCleanup(cpe.stop)
        cpe.inform()
        self.assertEqual(cpe.sessions_ok, 1, cpe.last_error)
        return cpe

    def test_cpe_1_4_answers_in_the_lower_namespace_of_a_1_0_acs(self) -> None:
        acs = LowerAcs(soap.CWMP_NS["1.0"])
        cpe = self.run_against(acs, "1.4")
        self.assertEqual((cpe.session_version, cpe.session_ns), ("1.0", soap.CWMP_NS["1.0"]))
        [response] = acs.sent
        self.assertIsInstance(response.message, rpc.GetRPCMethodsResponse)
        self.assertEqual(response.ns, soap.CWMP_NS["1.0"])
        # The next session still offers everything it speaks.
        self.assertEqual(cpe.inform_header().supported_versions, ALL)

    def test_cpe_1_4_takes_the_acs_use_cwmp_version(self) -> None:
        acs = LowerAcs(soap.CWMP_NS["1.2"], use_version="1.3")
        cpe = self.run_against(acs, "1.4")
        self.assertEqual((cpe.session_version, cpe.session_ns), ("1.3", soap.CWMP_NS["1.2"]))
        self.assertEqual(acs.sent[0].ns, soap.CWMP_NS["1.2"])

    def test_cpe_1_2_follows_an_acs_answering_in_1_1(self) -> None:
        acs = LowerAcs(soap.CWMP_NS["1.1"])
        cpe = self.run_against(acs, "1.2")
        self.assertEqual(cpe.session_version, "1.1")
        self.assertEqual(acs.sent[0].ns, soap.CWMP_NS["1.1"])
