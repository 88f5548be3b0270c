"""The simulator over real loopback HTTP against a small scripted fake ACS.

The fake ACS is a twisted.web resource using the codec: it answers the Inform, then sends
its scripted RPCs one per HTTP response and ends with 204, recording everything it saw.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

import treq
from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.trial import unittest
from twisted.web.client import HTTPConnectionPool, ResponseNeverReceived
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from acs import httpdigest
from acs.cwmp import rpc, soap
from acs.listen import LISTEN_BACKLOG
from cpe_sim.cpe import Profile, SimulatedCPE
from cpe_sim.datamodel import load_template
from cpe_sim.fleet import Fleet

WAIT = 10.0
REALM = "fake-acs"


@dataclass
class Post:
    """One POST the fake ACS received."""

    body: bytes
    content_type: str | None
    soap_action: str | None
    cookie: bytes | None
    authorization: str | None
    envelope: soap.Envelope | None = None


@dataclass
class FakeAcs(Resource):
    """A scripted ACS: InformResponse, then ``script`` RPCs, then 204."""

    script: list[rpc.Message] = field(default_factory=list)
    credentials: tuple[str, str] | None = None  # require Digest with these when set
    posts: list[Post] = field(default_factory=list)
    informs: list[rpc.Inform] = field(default_factory=list)
    answers: list[rpc.Message] = field(default_factory=list)
    challenges: int = 0

    isLeaf = True

    def __post_init__(self) -> None:
        Resource.__init__(self)
        self._queue: list[rpc.Message] = []
        self._nonce = secrets.token_hex(8)

    def render_POST(self, request: Request) -> bytes:
        body = request.content.read() if request.content is not None else b""
        header = request.getHeader("authorization")
        post = Post(
            body=body,
            content_type=request.getHeader("content-type"),
            soap_action=request.getHeader("soapaction"),
            cookie=request.getCookie(b"acs_session"),
            authorization=header,
        )
        self.posts.append(post)
        if self.credentials is not None and not self._authorized(header):
            self.challenges += 1
            request.setResponseCode(401)
            request.setHeader(b"WWW-Authenticate", httpdigest.digest_challenge(REALM, self._nonce))
            return b""
        if not body.strip():
            return self._next(request, "urn:dslforum-org:cwmp-1-0")
        envelope = soap.parse(body)
        post.envelope = envelope
        if isinstance(envelope.message, rpc.Inform):
            self.informs.append(envelope.message)
            self._queue = list(self.script)
            request.addCookie(b"acs_session", secrets.token_hex(4).encode(), path=b"/")
            return self._reply(request, rpc.InformResponse(1), envelope.header.id, envelope.ns)
        self.answers.append(envelope.message)
        return self._next(request, envelope.ns)

    def _authorized(self, header: str | None) -> bool:
        creds = httpdigest.parse_authorization(header)
        if creds is None or self.credentials is None or creds.username != self.credentials[0]:
            return False
        return httpdigest.check_credentials(
            creds, method="POST", password=self.credentials[1], realm=REALM
        )

    def _next(self, request: Request, ns: str) -> bytes:
        if not self._queue:
            request.setResponseCode(204)
            return b""
        message = self._queue.pop(0)
        return self._reply(request, message, f"acs-{len(self.answers)}", ns)

    @staticmethod
    def _reply(request: Request, message: rpc.Message, cwmp_id: str | None, ns: str) -> bytes:
        request.setHeader(b"Content-Type", b'text/xml; charset="utf-8"')
        return soap.serialize(soap.Envelope(message, soap.Header(id=cwmp_id), ns))


class _QuietSite(Site):
    noisy = False

    def log(self, request: Any) -> None:
        pass


class LoopbackTestCase(unittest.TestCase):
    async def serve(self, acs: FakeAcs) -> str:
        port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(_QuietSite(acs))
        self.addCleanup(port.stopListening)
        return f"http://127.0.0.1:{port.getHost().port}/acs"

    @staticmethod
    async def bounded(d: defer.Deferred[Any]) -> Any:
        d.addTimeout(WAIT, reactor)
        return await d

    def cpe(self, url: str, model: str = "tr181", **profile: Any) -> SimulatedCPE:
        cpe = SimulatedCPE("LOOP000001", load_template(model), Profile(reactor, url, **profile))
        self.addCleanup(cpe.stop)
        return cpe


class SessionOverHttpTests(LoopbackTestCase):
    async def test_bootstrap_session_runs_gpv_and_spv_then_ends_on_204(self) -> None:
        interval = "Device.ManagementServer.PeriodicInformInterval"
        acs = FakeAcs(
            script=[
                rpc.GetParameterValues(("Device.DeviceInfo.SerialNumber",)),
                rpc.SetParameterValues(
                    (rpc.ParameterValue(interval, "600", "xsd:unsignedInt"),), "pk1"
                ),
            ]
        )
        cpe = self.cpe(await self.serve(acs), periodic=False)

        await self.bounded(cpe.inform())

        self.assertEqual((cpe.sessions_ok, cpe.sessions_failed), (1, 0), cpe.last_error)
        [inform] = acs.informs
        self.assertEqual([e.code for e in inform.events], ["0 BOOTSTRAP"])
        self.assertEqual(inform.device_id.serial_number, "LOOP000001")
        self.assertEqual(inform.device_id.oui, "00D09E")
        self.assertIn(
            "Device.ManagementServer.ConnectionRequestURL", {p.name for p in inform.parameters}
        )
        gpv, spv = acs.answers
        assert isinstance(gpv, rpc.GetParameterValuesResponse)
        self.assertEqual(gpv.parameters[0].value, "LOOP000001")
        self.assertEqual(spv, rpc.SetParameterValuesResponse(0))
        self.assertEqual(cpe.value(interval), "600")
        self.assertEqual(cpe.value("Device.ManagementServer.ParameterKey"), "pk1")
        # BOOTSTRAP was delivered by the successful session.
        self.assertEqual(cpe.pending_events, ())

    async def test_headers_cookie_and_ids_follow_cwmp_rules(self) -> None:
        acs = FakeAcs(script=[rpc.GetRPCMethods()])
        cpe = self.cpe(await self.serve(acs), periodic=False)

        await self.bounded(cpe.inform())

        inform_post, empty_post, answer_post = acs.posts
        assert inform_post.envelope is not None and answer_post.envelope is not None
        # CWMP 1.2 namespace with SessionTimeout for a TR-181 CPE.
        self.assertEqual(inform_post.envelope.ns, "urn:dslforum-org:cwmp-1-2")
        self.assertIsNotNone(inform_post.envelope.header.session_timeout)
        self.assertTrue(inform_post.envelope.header.id)
        self.assertEqual(inform_post.content_type, 'text/xml; charset="utf-8"')
        self.assertEqual(inform_post.soap_action, "")
        self.assertIsNone(inform_post.cookie)
        # The empty POST has neither Content-Type nor SOAPAction, but carries the cookie.
        self.assertEqual(empty_post.body, b"")
        self.assertIsNone(empty_post.content_type)
        self.assertIsNone(empty_post.soap_action)
        self.assertIsNotNone(empty_post.cookie)
        # The response echoes the request's cwmp:ID and sends the cookie back.
        self.assertEqual(answer_post.envelope.header.id, "acs-0")
        self.assertEqual(answer_post.cookie, empty_post.cookie)
        self.assertEqual(answer_post.soap_action, "")
        self.assertIsInstance(answer_post.envelope.message, rpc.GetRPCMethodsResponse)

    async def test_tr098_cpe_speaks_cwmp_1_0_without_session_timeout(self) -> None:
        acs = FakeAcs()
        cpe = self.cpe(await self.serve(acs), model="tr098", periodic=False)
        await self.bounded(cpe.inform())
        envelope = acs.posts[0].envelope
        assert envelope is not None
        self.assertEqual(envelope.ns, "urn:dslforum-org:cwmp-1-0")
        self.assertIsNone(envelope.header.session_timeout)
        names = {p.name for p in acs.informs[0].parameters}
        self.assertIn(
            "InternetGatewayDevice.WANDevice.1.WANConnectionDevice.1.WANIPConnection.1"
            ".ExternalIPAddress",
            names,
        )

    async def test_digest_challenge_is_answered_with_management_server_credentials(self) -> None:
        acs = FakeAcs(script=[rpc.GetRPCMethods()], credentials=("cpe-user", "s3cret"))
        cpe = self.cpe(
            await self.serve(acs), acs_username="cpe-user", acs_password="s3cret", periodic=False
        )

        await self.bounded(cpe.inform())

        self.assertEqual(cpe.sessions_ok, 1, cpe.last_error)
        self.assertEqual(acs.challenges, 1)  # later POSTs answer the same challenge (nc=2,3)
        self.assertEqual(len(acs.answers), 1)
        self.assertTrue(all(p.authorization for p in acs.posts[1:]))

    async def test_wrong_password_fails_the_session_after_the_second_401(self) -> None:
        acs = FakeAcs(credentials=("cpe-user", "s3cret"))
        cpe = self.cpe(
            await self.serve(acs), acs_username="cpe-user", acs_password="wrong", periodic=False
        )

        await self.bounded(cpe.inform())

        self.assertEqual((cpe.sessions_ok, cpe.sessions_failed), (0, 1))
        assert cpe.last_error is not None
        self.assertIn("401", cpe.last_error)
        self.assertEqual(acs.challenges, 2)
        # The failed session keeps BOOTSTRAP and counts a retry.
        self.assertEqual([e.code for e in cpe.pending_events], ["0 BOOTSTRAP"])
        self.assertEqual(cpe.retry_count, 1)

    async def test_unreachable_acs_fails_the_session_without_raising(self) -> None:
        port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            _QuietSite(FakeAcs())
        )
        url = f"http://127.0.0.1:{port.getHost().port}/acs"
        await port.stopListening()  # nothing listens there any more
        cpe = self.cpe(url, periodic=False)
        await self.bounded(cpe.inform())
        self.assertEqual(cpe.sessions_failed, 1)
        self.assertIsNotNone(cpe.last_error)


class ConnectionRequestTests(LoopbackTestCase):
    async def start_fleet(self, acs: FakeAcs, count: int = 2) -> Fleet:
        fleet = Fleet(
            reactor, acs_url=await self.serve(acs), count=count, periodic=False, reboot_delay=0.2
        )
        first = [c.next_session() for c in fleet.cpes]
        await self.bounded(fleet.start())
        self.addCleanup(fleet.stop)
        await self.bounded(defer.gatherResults(first))
        pool = HTTPConnectionPool(reactor, persistent=False)
        self.addCleanup(pool.closeCachedConnections)
        self.pool = pool
        return fleet

    async def get(self, url: str, **kwargs: Any) -> Any:
        d = treq.get(url, pool=self.pool, **kwargs)
        response = await self.bounded(d)
        await self.bounded(treq.content(response))
        return response

    async def test_connection_request_with_digest_wakes_the_cpe(self) -> None:
        acs = FakeAcs()
        fleet = await self.start_fleet(acs)
        cpe = fleet.cpes[1]
        r = cpe.root
        cpe.model.set_raw(r + "ManagementServer.ConnectionRequestUsername", "acs")
        cpe.model.set_raw(r + "ManagementServer.ConnectionRequestPassword", "pw")
        url = cpe.value(r + "ManagementServer.ConnectionRequestURL")
        assert url is not None
        self.assertEqual(url, f"{fleet.connection_request_base}{cpe.serial}")

        unauthenticated = await self.get(url)
        self.assertEqual(unauthenticated.code, 401)
        challenge = unauthenticated.headers.getRawHeaders(b"www-authenticate")[0].decode()
        woken = cpe.next_session()
        authorization = httpdigest.authorization_for(
            challenge,
            method="GET",
            uri=f"/{cpe.serial}",
            username="acs",
            password="pw",
            cnonce="abc",
            nc=1,
        )
        response = await self.get(url, headers={"Authorization": authorization})
        self.assertEqual(response.code, 200)
        await self.bounded(woken)

        self.assertEqual(cpe.sessions_ok, 2)
        self.assertEqual([e.code for e in acs.informs[-1].events], ["6 CONNECTION REQUEST"])
        self.assertEqual(acs.informs[-1].device_id.serial_number, cpe.serial)

    async def test_the_shared_listener_has_the_appliance_backlog(self) -> None:
        fleet = await self.start_fleet(FakeAcs())
        port: Any = fleet._port  # Any: the backlog is only visible on the listening port
        self.assertEqual(port.backlog, LISTEN_BACKLOG)

    async def test_wrong_digest_password_is_refused(self) -> None:
        fleet = await self.start_fleet(FakeAcs())
        cpe = fleet.cpes[0]
        r = cpe.root
        cpe.model.set_raw(r + "ManagementServer.ConnectionRequestUsername", "acs")
        cpe.model.set_raw(r + "ManagementServer.ConnectionRequestPassword", "pw")
        url = f"{fleet.connection_request_base}{cpe.serial}"
        challenge = (await self.get(url)).headers.getRawHeaders(b"www-authenticate")[0].decode()
        authorization = httpdigest.authorization_for(
            challenge,
            method="GET",
            uri=f"/{cpe.serial}",
            username="acs",
            password="nope",
            cnonce="abc",
        )
        response = await self.get(url, headers={"Authorization": authorization})
        self.assertEqual(response.code, 401)
        self.assertFalse(cpe.busy)

    async def test_requests_before_the_session_coalesce_and_unset_credentials_need_no_auth(
        self,
    ) -> None:
        acs = FakeAcs()
        fleet = await self.start_fleet(acs)
        cpe = fleet.cpes[0]
        url = f"{fleet.connection_request_base}{cpe.serial}"
        woken = cpe.next_session()
        # Both GETs are answered before the session starts (it opens on a later turn).
        gets = [defer.Deferred.fromCoroutine(self.get(url)) for _ in range(2)]
        responses = await self.bounded(defer.gatherResults(gets))
        self.assertEqual([r.code for r in responses], [200, 200])
        await self.bounded(woken)
        informs = [i for i in acs.informs if i.device_id.serial_number == cpe.serial]
        self.assertEqual(len(informs), 2)  # bootstrap + exactly one connection-request session

    async def test_unknown_serial_is_404_and_rebooting_cpe_drops_the_connection(self) -> None:
        acs = FakeAcs()
        fleet = await self.start_fleet(acs, count=1)
        acs.script = [rpc.Reboot("rk")]
        self.assertEqual((await self.get(f"{fleet.connection_request_base}NOPE")).code, 404)
        cpe = fleet.cpes[0]
        url = f"{fleet.connection_request_base}{cpe.serial}"
        rebooted = cpe.next_session()
        self.assertEqual((await self.get(url)).code, 200)
        await self.bounded(rebooted)
        self.assertFalse(cpe.online)
        with self.assertRaises(ResponseNeverReceived):
            await self.get(url)
        acs.script = []
        back = cpe.next_session()
        await self.bounded(back)
        self.assertTrue(cpe.online)
        self.assertEqual(cpe.reboots, 1)
        codes = [(e.code, e.command_key) for e in acs.informs[-1].events]
        self.assertEqual(codes, [("1 BOOT", ""), ("M Reboot", "rk")])
