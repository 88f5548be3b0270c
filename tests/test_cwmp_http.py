"""The CWMP HTTP resource over real HTTP on 127.0.0.1, with the real store and task engine.

The resource gets a ``task.Clock`` as its reactor (session timers, "now", nonce times) while
the HTTP traffic runs on the real reactor: timeouts are driven by advancing the clock.
"""

from __future__ import annotations

import base64
import gzip
import random
from dataclasses import replace
from typing import Any, cast

from cwmpharness import NS, REACTOR, SECRET, T0, CwmpResourceCase, Reply, make_inform, wire
from twisted.internet import task
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.interfaces import IHalfCloseableProtocol, IReactorTime
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial import unittest
from twisted.web.client import HTTPConnectionPool
from twisted.web.test.requesthelper import DummyRequest
from zope.interface import implementer

from acs import httpdigest
from acs.config import CwmpConfig
from acs.cwmp import rpc, soap
from acs.cwmp_http import CwmpResource
from acs.cwmp_site import CwmpSite, RetryPacer
from acs.httplimits import LINGER_BYTES, LINGER_SECONDS
from acs.store import IN_PROGRESS, PENDING, Device, Store
from acs.tasks import TaskEngine


class _Unreadable:
    def read(self, size: int = -1) -> bytes:
        raise AssertionError("the body must not be read")


class CwmpHttpTests(CwmpResourceCase):
    # --- the happy path ---------------------------------------------------------------------

    async def test_full_session_sends_queued_rpc_then_204(self) -> None:
        device = self.provisioned_device()
        reboot = self.engine.queue(device.id, "reboot", actor="test", wake=False, now=T0)

        inform = await self.request(wire(make_inform(), cwmp_id="inf-1"))
        self.assertEqual(inform.code, 200)
        self.assertEqual(inform.header("content-type"), 'text/xml; charset="utf-8"')
        self.assertEqual(inform.length, len(inform.body))
        self.assertEqual(inform.envelope().header.id, "inf-1")
        set_cookie = inform.header("set-cookie") or ""
        self.assertRegex(set_cookie, r"^session=[0-9]+\.[0-9a-f]{32};")
        self.assertIn("Path=/", set_cookie)
        self.assertIn("HttpOnly", set_cookie)
        self.assertTrue(self.resource.in_session(device.id))

        request = await self.request(b"", cookie=inform.cookie)
        sent = request.envelope()
        self.assertIsInstance(sent.message, rpc.Reboot)
        self.assertEqual(request.length, len(request.body))

        done = await self.request(wire(rpc.RebootResponse(), sent.header.id), cookie=inform.cookie)
        self.assertEqual((done.code, done.body), (204, b""))
        self.assertFalse(self.resource.in_session(device.id))
        self.assertEqual(self.resource.active_sessions(), 0)
        # Acknowledged reboot waits for its "M Reboot" Inform.
        task_row = self.store.get_task(reboot.id)
        assert task_row is not None
        self.assertEqual(task_row.state, IN_PROGRESS)

    async def test_inform_is_recorded_with_address_versions_and_root(self) -> None:
        self.provisioned_device()
        await self.start_session(
            ns="urn:dslforum-org:cwmp-1-2", supported_versions="1.0,1.1,1.2,1.3,1.4"
        )
        device = self.store.find_device_by_serial("SN0001")
        assert device is not None
        self.assertEqual(device.address, "127.0.0.1")
        self.assertEqual(device.software_version, "2.1")
        self.assertEqual(device.hardware_version, "hw3")
        self.assertEqual(device.connection_request_url, "http://127.0.0.1:7548/cr")
        self.assertEqual(device.data_model_root, "Device.")
        self.assertEqual(device.last_connection, T0)

    async def test_response_uses_cpe_namespace_and_use_cwmp_version(self) -> None:
        self.provisioned_device()
        reply = await self.start_session(
            ns="urn:dslforum-org:cwmp-1-4", supported_versions="1.0,1.2,1.4"
        )
        envelope = reply.envelope()
        self.assertEqual(envelope.ns, "urn:dslforum-org:cwmp-1-4")
        self.assertEqual(envelope.header.use_version, "1.4")

    async def test_unknown_device_is_auto_registered_in_default_organization(self) -> None:
        await self.start_session("NEW-1")
        device = self.store.find_device_by_serial("NEW-1")
        assert device is not None
        self.assertEqual(device.name, "NEW-1")
        org = self.store.get_organization(device.organization_id)
        assert org is not None
        self.assertEqual(org.name, "Default")

    async def test_cpe_request_is_answered_with_id_echo(self) -> None:
        self.provisioned_device()
        inform = await self.start_session()
        tc = rpc.TransferComplete("k1", rpc.FaultStruct(0, ""))
        reply = await self.request(wire(tc, "tc-7"), cookie=inform.cookie)
        envelope = reply.envelope()
        self.assertEqual(envelope.message, rpc.TransferCompleteResponse())
        self.assertEqual(envelope.header.id, "tc-7")

    # --- session tracking -------------------------------------------------------------------

    async def test_cookie_less_cpe_works_on_one_kept_alive_connection(self) -> None:
        device = self.provisioned_device()
        self.engine.queue(device.id, "reboot", actor="test", wake=False, now=T0)
        pool = HTTPConnectionPool(REACTOR, persistent=True)
        pool.maxPersistentPerHost = 1
        pool.retryAutomatically = False
        self.addCleanup(pool.closeCachedConnections)

        await self.request(wire(make_inform()), pool=pool)
        sent = (await self.request(b"", pool=pool)).envelope()
        self.assertIsInstance(sent.message, rpc.Reboot)
        done = await self.request(wire(rpc.RebootResponse(), sent.header.id), pool=pool)
        self.assertEqual(done.code, 204)

    async def test_without_cookie_on_a_new_connection_there_is_no_session(self) -> None:
        self.provisioned_device()
        await self.start_session()
        # Non-persistent pool: a new TCP connection and no cookie.
        self.assertEqual((await self.request(b"")).code, 204)
        reply = await self.request(wire(rpc.RebootResponse()))
        self.assertEqual(reply.code, 400)

    async def test_cookie_header_with_comma_separators_is_understood(self) -> None:
        device = self.provisioned_device()
        self.engine.queue(device.id, "reboot", actor="test", wake=False, now=T0)
        inform = await self.start_session()
        reply = await self.request(b"", cookie=f"lang=en, {inform.cookie}; x=1")
        self.assertIsInstance(reply.envelope().message, rpc.Reboot)

    async def test_new_inform_with_stale_cookie_starts_a_new_session(self) -> None:
        self.provisioned_device()
        first = await self.start_session()
        self.assertEqual((await self.request(b"", cookie=first.cookie)).code, 204)
        second = await self.request(wire(make_inform()), cookie=first.cookie)
        self.assertEqual(second.code, 200)
        self.assertNotEqual(second.cookie, first.cookie)
        self.assertEqual(self.resource.active_sessions(), 1)

    async def test_new_inform_replaces_live_session_and_retries_its_task(self) -> None:
        device = self.provisioned_device()
        refresh = self.engine.queue(device.id, "refresh", actor="test", wake=False, now=T0)
        first = await self.start_session()
        sent = (await self.request(b"", cookie=first.cookie)).envelope()
        self.assertIsInstance(sent.message, rpc.GetParameterNames)

        second = await self.start_session()
        self.assertEqual(self.resource.active_sessions(), 1)
        # The old cookie is dead: its late answer finds no session.
        late = await self.request(
            wire(rpc.GetParameterNamesResponse(()), sent.header.id), cookie=first.cookie
        )
        self.assertEqual(late.code, 400)
        # The interrupted task went back to the queue with a retry delay...
        row = self.store.get_task(refresh.id)
        assert row is not None and row.next_attempt_at is not None
        self.assertEqual(row.state, PENDING)
        self.assertEqual((await self.request(b"", cookie=second.cookie)).code, 204)
        # ...and runs again in the first session after it.
        self.clock.advance(row.next_attempt_at - self.clock.seconds())
        third = await self.start_session()
        again = (await self.request(b"", cookie=third.cookie)).envelope()
        self.assertIsInstance(again.message, rpc.GetParameterNames)

    # --- HTTP surface -------------------------------------------------------------------------

    async def test_get_is_405_with_allow_post(self) -> None:
        reply = await self.request(method="GET")
        self.assertEqual(reply.code, 405)
        self.assertEqual(reply.header("allow"), "POST")

    async def test_empty_post_without_session_is_204(self) -> None:
        reply = await self.request(b"")
        self.assertEqual((reply.code, reply.body), (204, b""))

    async def test_non_inform_without_session_is_400(self) -> None:
        reply = await self.request(wire(rpc.TransferComplete("k")))
        self.assertEqual(reply.code, 400)
        self.assertIn(b"Inform", reply.body)

    async def test_gzip_request_body_is_accepted(self) -> None:
        reply = await self.request(
            gzip.compress(wire(make_inform())), headers={"Content-Encoding": "gzip"}
        )
        self.assertEqual(reply.code, 200)

    async def test_unknown_content_encoding_is_415(self) -> None:
        reply = await self.request(wire(make_inform()), headers={"Content-Encoding": "br"})
        self.assertEqual(reply.code, 415)
        self.assertEqual(self.store.count_devices(), 0)

    async def test_transcript_is_kept_for_debug_devices(self) -> None:
        device = self.provisioned_device(debug=True)
        inform = await self.start_session()
        await self.request(b"", cookie=inform.cookie)
        await self.resource.settled()  # the transcript is saved by a unit of its own
        transcripts = self.store.session_transcripts(device.id)
        self.assertEqual(len(transcripts), 1)
        self.assertIn("InformResponse", transcripts[0].transcript)
        self.assertIn("SN0001", transcripts[0].transcript)

    async def test_no_transcript_without_debug(self) -> None:
        device = self.provisioned_device()
        inform = await self.start_session()
        await self.request(b"", cookie=inform.cookie)
        self.assertEqual(self.store.session_transcripts(device.id), [])

    # --- authentication and admission -------------------------------------------------------

    def with_credentials(self) -> None:
        self.serve(replace(CwmpConfig(), username="cpe", password="s3cret"))

    async def test_missing_credentials_get_a_digest_challenge_only_over_plain_http(self) -> None:
        self.with_credentials()
        reply = await self.request(wire(make_inform()))
        self.assertEqual(reply.code, 401)
        challenges = reply.headers.getRawHeaders("www-authenticate") or []
        self.assertEqual(len(challenges), 1)
        self.assertTrue(challenges[0].startswith("Digest "))
        self.assertIn('realm="acs"', challenges[0])
        self.assertIn('qop="auth"', challenges[0])
        self.assertIsNone(reply.header("set-cookie"))
        self.assertEqual(self.store.count_devices(), 0)

    async def test_basic_is_offered_when_configured(self) -> None:
        self.serve(replace(CwmpConfig(), username="cpe", password="s3cret", allow_basic_auth=True))
        reply = await self.request(wire(make_inform()))
        challenges = reply.headers.getRawHeaders("www-authenticate") or []
        self.assertEqual([c.split()[0] for c in challenges], ["Digest", "Basic"])

    async def digest_inform(self, password: str) -> Reply:
        challenge_reply = await self.request(wire(make_inform()))
        values = challenge_reply.headers.getRawHeaders("www-authenticate") or []
        self.assertEqual(httpdigest.parse_challenge(values[0])[0], "digest")
        auth = httpdigest.authorization_for(
            values[0],
            method="POST",
            uri="/",
            username="cpe",
            password=password,
            cnonce="0a4f113b",
        )
        return await self.request(wire(make_inform()), headers={"Authorization": auth})

    async def test_digest_credentials_are_accepted(self) -> None:
        self.with_credentials()
        reply = await self.digest_inform("s3cret")
        self.assertEqual(reply.code, 200)
        self.assertEqual(self.store.count_devices(), 1)

    async def test_basic_credentials_are_accepted_only_when_configured(self) -> None:
        self.with_credentials()
        token = base64.b64encode(b"cpe:s3cret").decode()
        basic = {"Authorization": f"Basic {token}"}
        # A password in clear over plain HTTP: refused, even when right.
        self.assertEqual((await self.request(wire(make_inform()), headers=basic)).code, 401)
        self.assertEqual(self.store.count_devices(), 0)
        self.serve(replace(CwmpConfig(), username="cpe", password="s3cret", allow_basic_auth=True))
        self.assertEqual((await self.request(wire(make_inform()), headers=basic)).code, 200)

    async def test_a_captured_digest_header_cannot_be_replayed(self) -> None:
        self.with_credentials()
        first = await self.request(wire(make_inform()))
        challenge = (first.headers.getRawHeaders("www-authenticate") or [""])[0]
        answer = {"method": "POST", "uri": "/", "username": "cpe", "password": "s3cret"}
        auth = httpdigest.authorization_for(challenge, cnonce="c1", nc=1, **answer)
        ok = await self.request(wire(make_inform()), headers={"Authorization": auth})
        self.assertEqual(ok.code, 200)
        await self.request(b"", cookie=ok.cookie)
        # The same header again (another serial, even): a fresh challenge, no session.
        replay = await self.request(wire(make_inform("SN-OTHER")), headers={"Authorization": auth})
        self.assertEqual(replay.code, 401)
        self.assertIn("stale=true", (replay.header("www-authenticate") or "").lower())
        self.assertEqual(self.store.count_devices(), 1)
        # The CPE that holds the password goes on with the same nonce and a higher nc.
        auth2 = httpdigest.authorization_for(challenge, cnonce="c2", nc=2, **answer)
        again = await self.request(wire(make_inform()), headers={"Authorization": auth2})
        self.assertEqual(again.code, 200)

    async def test_qop_less_digest_is_refused(self) -> None:
        self.with_credentials()
        first = await self.request(wire(make_inform()))
        challenge = (first.headers.getRawHeaders("www-authenticate") or [""])[0]
        # The RFC 2069 form (no qop, so no nc): answering a challenge without qop.
        legacy = challenge.replace('qop="auth", ', "")
        auth = httpdigest.authorization_for(
            legacy, method="POST", uri="/", username="cpe", password="s3cret", cnonce="c"
        )
        self.assertNotIn("qop", auth)
        reply = await self.request(wire(make_inform()), headers={"Authorization": auth})
        self.assertEqual(reply.code, 401)
        self.assertEqual(self.store.count_devices(), 0)

    async def test_repeated_failures_from_one_address_are_throttled(self) -> None:
        self.with_credentials()
        throttle = self.resource.auth_throttle
        bad = {"Authorization": "Basic " + base64.b64encode(b"cpe:guess").decode()}
        codes = [(await self.request(wire(make_inform()), headers=bad)).code for _ in range(8)]
        # The first failures cost nothing; then the source waits, growing per failure.
        self.assertEqual(codes[: throttle.free + 1], [401] * (throttle.free + 1))
        self.assertEqual(codes[throttle.free + 1 :], [503] * (7 - throttle.free))
        blocked = await self.request(wire(make_inform()), headers=bad)
        self.assertEqual(blocked.header("retry-after"), "1")
        # Not even a challenge until the wait is over.
        self.assertEqual((await self.request(wire(make_inform()))).code, 503)
        self.clock.advance(2)
        self.assertEqual((await self.digest_inform("s3cret")).code, 200)
        self.assertEqual(throttle.failures_total, throttle.free + 1)
        self.assertGreaterEqual(throttle.refused_total, 3)

    async def test_wrong_password_is_401_and_nothing_is_stored(self) -> None:
        self.with_credentials()
        before = self.snapshot()
        self.assertEqual((await self.digest_inform("wrong")).code, 401)
        token = base64.b64encode(b"cpe:wrong").decode()
        basic = await self.request(wire(make_inform()), headers={"Authorization": f"Basic {token}"})
        self.assertEqual(basic.code, 401)
        self.assertEqual(self.snapshot(), before)
        self.assertEqual(self.resource.active_sessions(), 0)

    async def test_expired_nonce_is_answered_stale(self) -> None:
        self.with_credentials()
        first = await self.request(wire(make_inform()))
        challenge = (first.headers.getRawHeaders("www-authenticate") or [""])[0]
        self.clock.advance(301)
        auth = httpdigest.authorization_for(
            challenge, method="POST", uri="/", username="cpe", password="s3cret", cnonce="c1"
        )
        reply = await self.request(wire(make_inform()), headers={"Authorization": auth})
        self.assertEqual(reply.code, 401)
        self.assertIn("stale=true", (reply.header("www-authenticate") or "").lower())

    async def test_forged_nonce_is_refused(self) -> None:
        self.with_credentials()
        challenge = httpdigest.digest_challenge("acs", f"{int(T0):x}-{'0' * 32}")
        auth = httpdigest.authorization_for(
            challenge, method="POST", uri="/", username="cpe", password="s3cret", cnonce="c1"
        )
        reply = await self.request(wire(make_inform()), headers={"Authorization": auth})
        self.assertEqual(reply.code, 401)

    async def test_digest_for_another_uri_is_refused(self) -> None:
        self.with_credentials()
        first = await self.request(wire(make_inform()))
        challenge = (first.headers.getRawHeaders("www-authenticate") or [""])[0]
        auth = httpdigest.authorization_for(
            challenge,
            method="POST",
            uri="/elsewhere",
            username="cpe",
            password="s3cret",
            cnonce="c",
        )
        reply = await self.request(wire(make_inform()), headers={"Authorization": auth})
        self.assertEqual(reply.code, 401)

    async def test_digest_with_absolute_uri_is_accepted(self) -> None:
        self.with_credentials()
        first = await self.request(wire(make_inform()))
        challenge = (first.headers.getRawHeaders("www-authenticate") or [""])[0]
        auth = httpdigest.authorization_for(
            challenge, method="POST", uri=self.url, username="cpe", password="s3cret", cnonce="c"
        )
        reply = await self.request(wire(make_inform()), headers={"Authorization": auth})
        self.assertEqual(reply.code, 200)

    async def test_device_credentials_take_precedence_over_global(self) -> None:
        self.with_credentials()
        self.serve(replace(CwmpConfig(), username="cpe", password="s3cret", allow_basic_auth=True))
        self.provisioned_device(username="dev", password="devpw")
        globl = base64.b64encode(b"cpe:s3cret").decode()
        refused = await self.request(
            wire(make_inform()), headers={"Authorization": f"Basic {globl}"}
        )
        self.assertEqual(refused.code, 401)
        own = base64.b64encode(b"dev:devpw").decode()
        ok = await self.request(wire(make_inform()), headers={"Authorization": f"Basic {own}"})
        self.assertEqual(ok.code, 200)

    async def test_own_credentials_cost_no_factory_reset_lookup(self) -> None:
        self.provisioned_device(username="dev", password="devpw")
        asked: list[int] = []
        real = self.engine.factory_reset_under_way
        self.engine.factory_reset_under_way = lambda device_id: (
            asked.append(device_id)
            or real(  # type: ignore[method-assign]
                device_id
            )
        )

        async def inform_with(password: str) -> int:
            # The challenge round asks (a reset CPE without credentials sends none).
            first = await self.request(wire(make_inform()))
            challenge = (first.headers.getRawHeaders("www-authenticate") or [""])[0]
            auth = httpdigest.authorization_for(
                challenge, method="POST", uri="/", username="dev", password=password, cnonce="c"
            )
            asked.clear()
            return (await self.request(wire(make_inform()), headers={"Authorization": auth})).code

        self.assertEqual(await inform_with("devpw"), 200)
        self.assertEqual(asked, [])  # the right credentials: no query for a reset under way
        self.assertEqual(await inform_with("wrong"), 401)
        self.assertEqual(asked, [1])

    async def test_unknown_device_is_403_when_auto_register_is_off(self) -> None:
        self.serve(replace(CwmpConfig(), auto_register=False))
        reply = await self.request(wire(make_inform()))
        self.assertEqual(reply.code, 403)
        self.assertEqual(self.store.count_devices(), 0)

    async def test_decommissioned_device_is_403_and_unchanged(self) -> None:
        self.provisioned_device(operational_status="decommissioned")
        before = self.snapshot()
        reply = await self.request(wire(make_inform()))
        self.assertEqual(reply.code, 403)
        self.assertEqual(self.snapshot(), before)

    # --- bad input -------------------------------------------------------------------------

    async def assert_refused_cleanly(self, body: bytes, *, codes: tuple[int, ...]) -> Reply:
        before = self.snapshot()
        reply = await self.request(body)
        self.assertIn(reply.code, codes, reply.body)
        self.assertNotIn(b"Traceback", reply.body)
        self.assertEqual(reply.length, len(reply.body))
        self.assertEqual(self.snapshot(), before)
        return reply

    async def test_bad_input_is_refused_cleanly_and_server_keeps_serving(self) -> None:
        self.provisioned_device()
        inform = wire(make_inform())
        bomb = (
            b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
            + b"".join(
                b'<!ENTITY lol%d "%s">' % (i, b"".join(b"&lol%d;" % (i - 1) for _ in range(10)))
                for i in range(1, 10)
            ).replace(b"&lol0;", b"&lol;")
            + b"]>"
            + inform.replace(b"SN0001", b"&lol9;").split(b"?>", 1)[1]
        )
        xxe = (
            b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
            + inform.replace(b"SN0001", b"&xxe;").split(b"?>", 1)[1]
        )
        cases = {
            "xml bomb": bomb,
            "xxe": xxe,
            "truncated": inform[: len(inform) // 2],
            "wrong namespace": inform.replace(NS.encode(), b"urn:example:not-cwmp"),
            "not xml": b"\x00\xff garbage",
            "unknown rpc": wire(rpc.GetRPCMethods()).replace(b"GetRPCMethods", b"X_Frob"),
            "orphan response": wire(rpc.RebootResponse()),
        }
        for name, body in cases.items():
            with self.subTest(name):
                await self.assert_refused_cleanly(body, codes=(400,))
        await self.start_session()

    async def test_oversize_body_is_413(self) -> None:
        await self.assert_refused_cleanly(b" " * (10 * 1024 * 1024), codes=(413,))
        self.assertEqual((await self.request(wire(make_inform()))).code, 200)

    def test_declared_oversize_length_is_413_without_reading_the_body(self) -> None:
        request: Any = DummyRequest([])
        request.method = b"POST"
        request.requestHeaders.setRawHeaders(b"content-length", [b"999999999"])
        request.content = _Unreadable()
        body = self.resource.render(request)
        self.assertEqual(request.responseCode, 413)
        self.assertIn(b"too large", body)

    async def test_unknown_rpc_in_session_gets_fault_8000_and_session_continues(self) -> None:
        device = self.provisioned_device()
        self.engine.queue(device.id, "reboot", actor="test", wake=False, now=T0)
        inform = await self.start_session()
        body = wire(rpc.GetRPCMethods(), "u-1").replace(b"GetRPCMethods", b"X_Frob")
        fault = (await self.request(body, cookie=inform.cookie)).envelope()
        assert isinstance(fault.message, rpc.Fault)
        self.assertEqual(fault.message.code, 8000)
        self.assertEqual(fault.header.id, "u-1")
        nxt = await self.request(b"", cookie=inform.cookie)
        self.assertIsInstance(nxt.envelope().message, rpc.Reboot)

    async def test_the_acs_faults_are_valid_in_every_cwmp_version(self) -> None:
        # The conformance tap validates each answer against the session's version's schema.
        atc = rpc.AutonomousTransferComplete("", "http://127.0.0.1/f", True, "1 Firmware", 1)
        for minor in range(5):
            ns = f"urn:dslforum-org:cwmp-1-{minor}"
            offer = {"supported_versions": "1.2,1.3,1.4"} if minor == 4 else {}
            inform = await self.start_session(f"SN-V{minor}", ns=ns, **offer)
            unknown = wire(rpc.GetRPCMethods(), "u-1", ns).replace(b"GetRPCMethods", b"X_Frob")
            acs_only = wire(rpc.Reboot("k"), "u-2", ns)
            newer = wire(atc, "u-3", ns)
            codes = []
            for body in (unknown, acs_only, newer):
                answer = (await self.request(body, cookie=inform.cookie)).envelope()
                assert isinstance(
                    answer.message, rpc.Fault | rpc.AutonomousTransferCompleteResponse
                )
                codes.append(getattr(answer.message, "code", None))
            # AutonomousTransferComplete is CWMP 1.1: a 1.0 session does not have it.
            self.assertEqual(codes, [8000, 8000, 8000 if minor == 0 else None])
        refused = await self.request(
            wire(make_inform("SN-8006"), ns=soap.CWMP_NS["1.4"], supported_versions="2.0")
        )
        message = refused.envelope().message
        assert isinstance(message, rpc.Fault)
        self.assertEqual(message.code, 8006)
        # A 1.0 namespace has no version negotiation: the offer is ignored, not refused.
        await self.start_session("SN-1-0-offer", ns=soap.CWMP_NS["1.0"], supported_versions="2.0")
        self.assertEqual(len(self.conformance.checked["acs"]), 5 * 4 + 2)

    async def test_response_to_rpc_never_sent_is_400_and_ends_session(self) -> None:
        device = self.provisioned_device()
        inform = await self.start_session()
        reply = await self.request(wire(rpc.RebootResponse()), cookie=inform.cookie)
        self.assertEqual(reply.code, 400)
        await self.resource.settled()
        self.assertFalse(self.resource.in_session(device.id))

    async def test_mismatched_response_id_is_400_and_task_is_retried(self) -> None:
        device = self.provisioned_device()
        task_row = self.engine.queue(
            device.id,
            "set_parameter_values",
            {"parameters": [{"name": "Device.X.Y", "value": "1"}]},
            actor="test",
            wake=False,
            now=T0,
        )
        inform = await self.start_session()
        await self.request(b"", cookie=inform.cookie)
        reply = await self.request(
            wire(rpc.SetParameterValuesResponse(0), "bogus"), cookie=inform.cookie
        )
        self.assertEqual(reply.code, 400)
        await self.resource.settled()
        row = self.store.get_task(task_row.id)
        assert row is not None
        self.assertEqual(row.state, PENDING)
        self.assertEqual(self.store.get_parameter(device.id, "Device.X.Y"), None)

    async def test_internal_error_is_500_without_traceback_and_session_is_dropped(self) -> None:
        device = self.provisioned_device()
        inform = await self.start_session()

        def explode(*args: Any, **kwargs: Any) -> rpc.Message:
            raise RuntimeError("boom")

        live_tasks = self.resource._by_device[device.id].tasks
        self.patch(live_tasks, "on_cpe_request", explode)
        reply = await self.request(wire(rpc.GetRPCMethods()), cookie=inform.cookie)
        self.assertEqual(reply.code, 500)
        self.assertNotIn(b"boom", reply.body)
        await self.resource.settled()
        self.assertFalse(self.resource.in_session(device.id))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        # And the next session works.
        await self.start_session()

    async def test_failed_inform_step_rolls_back_auto_registration(self) -> None:
        def explode(*args: Any, **kwargs: Any) -> Device:
            raise RuntimeError("disk on fire")

        self.patch(self.store, "record_inform_leased", explode)
        reply = await self.request(wire(make_inform("NEW-9")))
        self.assertEqual(reply.code, 500)
        self.assertIsNone(reply.header("set-cookie"))
        self.assertEqual(self.store.count_devices(), 0)
        self.assertEqual(self.resource.active_sessions(), 0)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    # --- timers and caps ---------------------------------------------------------------------

    async def test_session_timeout_frees_slot_and_retries_in_flight_task(self) -> None:
        device = self.provisioned_device()
        task_row = self.engine.queue(device.id, "refresh", actor="test", wake=False, now=T0)
        inform = await self.start_session()
        await self.request(b"", cookie=inform.cookie)
        self.clock.advance(self.config.session_timeout - 1)
        self.assertTrue(self.resource.in_session(device.id))
        self.clock.advance(2)
        await self.resource.settled()
        self.assertFalse(self.resource.in_session(device.id))
        self.assertEqual(self.resource.active_sessions(), 0)
        row = self.store.get_task(task_row.id)
        assert row is not None
        self.assertEqual(row.state, PENDING)
        self.assertIsNotNone(row.next_attempt_at)
        # The dead cookie gets nothing back.
        self.assertEqual((await self.request(b"", cookie=inform.cookie)).code, 204)

    async def test_every_message_resets_the_inactivity_timer(self) -> None:
        device = self.provisioned_device()
        inform = await self.start_session()
        for _ in range(3):
            self.clock.advance(20)
            await self.request(wire(rpc.GetRPCMethods()), cookie=inform.cookie)
        self.assertTrue(self.resource.in_session(device.id))
        self.clock.advance(31)
        await self.resource.settled()
        self.assertFalse(self.resource.in_session(device.id))

    async def test_cpe_session_timeout_overrides_the_configured_one(self) -> None:
        device = self.provisioned_device()
        await self.start_session(ns="urn:dslforum-org:cwmp-1-2", session_timeout=5)
        self.clock.advance(6)
        await self.resource.settled()
        self.assertFalse(self.resource.in_session(device.id))

    async def test_rpc_cap_ends_session_and_requeues_in_flight_task(self) -> None:
        self.serve(CwmpConfig(), max_rpcs=1)
        device = self.provisioned_device()
        task_row = self.engine.queue(device.id, "refresh", actor="test", wake=False, now=T0)
        inform = await self.start_session()
        sent = (await self.request(b"", cookie=inform.cookie)).envelope()
        gpn = rpc.GetParameterNamesResponse((rpc.ParameterInfo("Device.X", False),))
        reply = await self.request(wire(gpn, sent.header.id), cookie=inform.cookie)
        self.assertEqual(reply.code, 204)
        await self.resource.settled()
        self.assertFalse(self.resource.in_session(device.id))
        row = self.store.get_task(task_row.id)
        assert row is not None
        self.assertEqual(row.state, PENDING)

    async def test_stop_cancels_timers(self) -> None:
        self.provisioned_device()
        await self.start_session()
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.resource.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.resource.active_sessions(), 0)

    # --- admission control ([cwmp] max_sessions) --------------------------------------------

    async def test_inform_beyond_max_sessions_gets_503_retry_after_and_nothing_stored(
        self,
    ) -> None:
        self.serve(CwmpConfig(max_sessions=2))
        await self.start_session("NEW-1")
        await self.start_session("NEW-2")
        before = self.snapshot()

        reply = await self.request(wire(make_inform("NEW-3", events=("0 BOOTSTRAP",))))

        self.assertEqual(reply.code, 503)
        retry_after = reply.header("retry-after")
        assert retry_after is not None and retry_after.isdigit(), retry_after
        upper = self.resource.pacer.initial
        self.assertTrue(upper // 2 <= int(retry_after) <= upper, retry_after)
        self.assertIsNone(reply.header("set-cookie"))
        self.assertIsNone(self.store.find_device_by_serial("NEW-3"))
        self.assertEqual(self.snapshot(), before)
        self.assertEqual(self.resource.busy_rejections, 1)
        self.assertEqual(self.resource.active_sessions(), 2)

    async def test_retry_after_is_jittered(self) -> None:
        self.serve(CwmpConfig(max_sessions=1))
        await self.start_session("NEW-1")
        values = set()
        for _ in range(30):
            reply = await self.request(wire(make_inform("NEW-2")))
            self.assertEqual(reply.code, 503)
            values.add(reply.header("retry-after"))
        self.assertGreater(len(values), 1)

    async def test_at_the_cap_a_new_session_is_refused_before_its_body_is_parsed(self) -> None:
        self.serve(CwmpConfig(max_sessions=1))
        await self.start_session("NEW-1")
        # Without the cap this is a 400 (unparseable); at it, the body is never looked at.
        reply = await self.request(b"<not-xml")
        self.assertEqual(reply.code, 503)

    async def test_admitted_sessions_carry_on_at_the_cap_and_free_their_slot(self) -> None:
        self.serve(CwmpConfig(max_sessions=1))
        device = self.provisioned_device()
        self.engine.queue(device.id, "reboot", actor="test", wake=False, now=T0)
        inform = await self.start_session()
        self.assertEqual((await self.request(wire(make_inform("NEW-2")))).code, 503)

        sent = (await self.request(b"", cookie=inform.cookie)).envelope()
        self.assertIsInstance(sent.message, rpc.Reboot)
        done = await self.request(wire(rpc.RebootResponse(), sent.header.id), cookie=inform.cookie)
        self.assertEqual(done.code, 204)

        await self.start_session("NEW-2")
        self.assertIsNotNone(self.store.find_device_by_serial("NEW-2"))

    async def test_new_inform_of_a_live_session_is_admitted_at_the_cap(self) -> None:
        self.serve(CwmpConfig(max_sessions=1))
        self.provisioned_device()
        first = await self.start_session()
        # It replaces the CPE's own session: the number of live sessions does not grow.
        again = await self.request(wire(make_inform()), cookie=first.cookie)
        self.assertEqual(again.code, 200)
        self.assertNotEqual(again.cookie, first.cookie)
        self.assertEqual(self.resource.active_sessions(), 1)

    async def test_a_timed_out_session_frees_its_slot(self) -> None:
        self.serve(CwmpConfig(max_sessions=1, session_timeout=30))
        await self.start_session("NEW-1")
        self.assertEqual((await self.request(wire(make_inform("NEW-2")))).code, 503)
        self.clock.advance(31)
        await self.start_session("NEW-2")

    # --- log volume: one info line at the Inform, one at the end ------------------------------

    async def test_a_session_logs_info_at_inform_and_end_and_per_rpc_lines_at_debug(
        self,
    ) -> None:
        events: list[dict[str, Any]] = []

        def observe(event: dict[str, Any]) -> None:
            if event.get("log_namespace") == "acs.cwmp":
                events.append(event)

        publisher: Any = globalLogPublisher  # Any: ILogObserver is a zope interface
        publisher.addObserver(observe)
        self.addCleanup(publisher.removeObserver, observe)
        device = self.provisioned_device()
        self.engine.queue(device.id, "reboot", actor="test", wake=False, now=T0)
        inform = await self.start_session()
        tc = rpc.TransferComplete("k1", rpc.FaultStruct(0, ""))
        await self.request(wire(tc, "tc-1"), cookie=inform.cookie)
        sent = (await self.request(b"", cookie=inform.cookie)).envelope()
        self.clock.advance(2)
        await self.request(wire(rpc.RebootResponse(), sent.header.id), cookie=inform.cookie)

        info = [e for e in events if e["log_level"] == LogLevel.info]
        debug = [e for e in events if e["log_level"] == LogLevel.debug]
        self.assertEqual(
            [formatEvent(e).split()[0] for e in info],
            ["Inform", "Session"],
            [*map(formatEvent, info)],
        )
        self.assertIn("events=2 PERIODIC", formatEvent(info[0]))
        self.assertEqual((info[1]["rpcs"], info[1]["duration"]), (2, 2.0))
        self.assertEqual(len(debug), 3)  # TransferComplete answered, Reboot sent, its response
        session_id = inform.cookie.partition("=")[2]
        for event in events:
            self.assertEqual(
                (event["device_id"], event["session_id"]), (device.id, session_id), event
            )

    async def test_auto_registration_is_told_on_the_inform_line(self) -> None:
        events: list[dict[str, Any]] = []
        publisher: Any = globalLogPublisher  # Any: ILogObserver is a zope interface
        publisher.addObserver(events.append)
        self.addCleanup(publisher.removeObserver, events.append)
        await self.start_session("NEW-1")
        lines = [formatEvent(e) for e in events if e.get("log_namespace") == "acs.cwmp"]
        self.assertEqual(len(lines), 1, lines)
        self.assertIn("Inform NEW-1", lines[0])
        self.assertIn("auto-registered in Default", lines[0])


# --- early refusal of oversize bodies (CwmpSite / CwmpRequest) ------------------------------

WAIT = 10.0  # bound on every wait below; reached only when something is broken
LIMIT = soap.MAX_ENVELOPE_BYTES


class _RawClient(Protocol):
    """Writes ``data`` as soon as connected and collects everything the server answers."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.received = b""
        self.done: Deferred[bytes] = Deferred()

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(self.data)

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.done.callback(self.received)


@implementer(IHalfCloseableProtocol)
class _StubbornClient(_RawClient):
    """Keeps its side open after the server's FIN (a client that never closes).

    Twisted stops reading a half-closed socket, so this client does not notice when the
    server later drops the connection: tests watch the server side and then close it.
    """

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.eof: Deferred[None] = Deferred()

    def readConnectionLost(self) -> None:
        self.eof.callback(None)

    def writeConnectionLost(self) -> None:
        pass


class _TrackingSite(CwmpSite):
    """CwmpSite that lets a test wait until the server side of each connection is gone."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.closed: list[Deferred[None]] = []
        self.first_closed: Deferred[None] = Deferred()

    def buildProtocol(self, addr: Any) -> Any:
        protocol = super().buildProtocol(addr)
        closed: Deferred[None] = Deferred()
        self.closed.append(closed)
        lost = protocol.connectionLost

        def connection_lost(reason: Failure) -> None:
            lost(reason)
            closed.callback(None)
            if not self.first_closed.called:
                self.first_closed.callback(None)

        protocol.connectionLost = connection_lost
        return protocol


def _head(*headers: str) -> bytes:
    lines = ["POST / HTTP/1.1", "Host: 127.0.0.1", 'Content-Type: text/xml; charset="utf-8"']
    return ("\r\n".join([*lines, *headers]) + "\r\n\r\n").encode()


def _chunked(size: int, *, last: bool) -> bytes:
    """``size`` bytes of whitespace as 64 KiB chunks; with the final 0-chunk when ``last``."""
    chunk = 64 * 1024
    parts = []
    while size > 0:
        n = min(chunk, size)
        parts.append(b"%x\r\n%s\r\n" % (n, b" " * n))
        size -= n
    if last:
        parts.append(b"0\r\n\r\n")
    return b"".join(parts)


class EarlyRefusalTests(unittest.TestCase):
    """Raw HTTP over loopback against ``CwmpSite``; its timers run on a ``task.Clock``."""

    def setUp(self) -> None:
        self.clock = task.Clock()
        self.clock.advance(T0)
        self.store = Store.open(":memory:")
        self.addCleanup(self.store.close)
        resource = CwmpResource(
            store=self.store,
            tasks=TaskEngine(self.store, cast(IReactorTime, self.clock)),
            config=CwmpConfig(),
            reactor=cast(IReactorTime, self.clock),
            secret=SECRET,
        )
        self.addCleanup(resource.stop)
        self.site = _TrackingSite(resource, reactor=self.clock)
        port: Any = REACTOR.listenTCP(0, self.site, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.port = port.getHost().port
        # Runs before the store closes: the server side of every connection must be gone.
        self.addCleanup(self.connections_closed)

    async def connections_closed(self) -> None:
        await self.bounded(gatherResults(self.site.closed))

    @staticmethod
    async def bounded(d: Deferred[Any]) -> Any:
        d.addTimeout(WAIT, REACTOR)
        return await d

    async def exchange(self, client: _RawClient) -> bytes:
        endpoint = TCP4ClientEndpoint(REACTOR, "127.0.0.1", self.port)
        await self.bounded(connectProtocol(endpoint, client))
        received: bytes = await self.bounded(client.done)
        return received

    def assert_413(self, received: bytes) -> None:
        head, _, body = received.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 413 "), received[:200])
        self.assertIn(b"Connection: close", head)
        self.assertEqual(body, b"Request body too large\n")
        self.assertEqual(self.store.count_devices(), 0)

    async def test_declared_oversize_length_gets_413_before_the_body_is_sent(self) -> None:
        # No body at all: the answer can only come from the headers.
        received = await self.exchange(_RawClient(_head("Content-Length: 20000000")))
        self.assert_413(received)

    async def test_oversize_length_with_expect_continue_gets_413_and_no_100_continue(
        self,
    ) -> None:
        client = _RawClient(_head("Content-Length: 20000000", "Expect: 100-continue"))
        received = await self.exchange(client)
        self.assert_413(received)
        self.assertNotIn(b"100 Continue", received)

    async def test_chunked_body_is_refused_once_past_the_limit_without_waiting_for_its_end(
        self,
    ) -> None:
        # One byte over the limit and no final chunk: only an early refusal can answer.
        client = _RawClient(_head("Transfer-Encoding: chunked") + _chunked(LIMIT + 1, last=False))
        self.assert_413(await self.exchange(client))

    async def test_chunked_body_at_the_limit_reaches_the_resource(self) -> None:
        # All whitespace: the resource reads it as an empty POST without a session (204).
        data = _head("Transfer-Encoding: chunked", "Connection: close") + _chunked(LIMIT, last=True)
        received = await self.exchange(_RawClient(data))
        self.assertTrue(received.startswith(b"HTTP/1.1 204 "), received[:200])

    async def test_declared_length_at_the_limit_reaches_the_resource(self) -> None:
        data = _head(f"Content-Length: {LIMIT}", "Connection: close") + b" " * LIMIT
        received = await self.exchange(_RawClient(data))
        self.assertTrue(received.startswith(b"HTTP/1.1 204 "), received[:200])

    async def test_a_normal_inform_is_served_through_the_site(self) -> None:
        body = wire(make_inform())
        data = _head(f"Content-Length: {len(body)}", "Connection: close") + body
        received = await self.exchange(_RawClient(data))
        self.assertTrue(received.startswith(b"HTTP/1.1 200 "), received[:200])
        self.assertEqual(self.store.count_devices(), 1)

    async def stubborn(self, data: bytes) -> _StubbornClient:
        client = _StubbornClient(data)
        self.addCleanup(self.close_client, client)
        endpoint = TCP4ClientEndpoint(REACTOR, "127.0.0.1", self.port)
        await self.bounded(connectProtocol(endpoint, client))
        return client

    async def close_client(self, client: _StubbornClient) -> None:
        if not client.done.called:
            assert client.transport is not None
            client.transport.abortConnection()
        await self.bounded(client.done)

    async def test_client_that_never_closes_is_cut_off_after_the_linger_time(self) -> None:
        client = await self.stubborn(_head("Content-Length: 20000000"))
        await self.bounded(client.eof)  # the 413 and the server's FIN are in
        self.assert_413(client.received)
        self.assertFalse(self.site.first_closed.called)
        self.clock.advance(LINGER_SECONDS)
        await self.bounded(self.site.first_closed)

    async def test_body_sent_anyway_is_dropped_and_cut_off_past_the_linger_budget(
        self,
    ) -> None:
        # The client ignores the 413 and keeps sending: dropped unparsed, then the connection
        # is cut without waiting for the linger timer (whose clock never moves here).
        await self.stubborn(_head("Content-Length: 20000000") + b"x" * (LINGER_BYTES + 65536))
        await self.bounded(self.site.first_closed)
        self.assertEqual(self.store.count_devices(), 0)


# --- RetryPacer: Retry-After sized to the turn-away pressure ---------------------------------


def test_pacer_answers_within_the_initial_bound_when_calm() -> None:
    pacer = RetryPacer(initial=10, rng=random.Random(1))
    values = {pacer.retry_after(now=0.0) for _ in range(50)}
    assert min(values) >= 5 and max(values) <= 10 and len(values) > 1


def test_pacer_widens_while_turn_aways_outnumber_admissions_and_narrows_after() -> None:
    pacer = RetryPacer(initial=10, ceiling=60, window=10, rng=random.Random(1))
    now = 0.0
    for _ in range(6):  # six windows of 100 refusals against 5 admissions each
        for _ in range(5):
            pacer.admitted(now)
        for _ in range(100):
            pacer.retry_after(now)
        now += 10
    pacer.admitted(now)  # rolls the last window
    assert pacer.upper == 60  # capped at the ceiling
    assert all(30 <= pacer.retry_after(now) <= 60 for _ in range(20))
    for _ in range(8):  # calm windows: admissions at least match refusals
        now += 10
        for _ in range(5):
            pacer.admitted(now)
    pacer.admitted(now + 10)
    assert pacer.upper == 10
